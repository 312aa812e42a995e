// Head node memory: a whole head (store, LevelDB registry, libp2p node, seeder, tracker, HTTP API) started
// in-process, idle and then with 10,000 tracked peers fed straight into its swarm state.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, median } from './lib/stats.ts';

const self = fileURLToPath(import.meta.url);

async function child(peers: number): Promise<void> {
  const { startHead } = await import('../cli/head-node.ts');
  const { loadConfig } = await import('../core/config.ts');
  const gc = (globalThis as { gc?: () => void }).gc as () => void;
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-head-'));
  const head = await startHead(
    { data: dir, http: '127.0.0.1:0', listen: ['/ip4/127.0.0.1/tcp/0'] },
    loadConfig(),
    false,
  );
  const rss = () => {
    gc();
    gc();
    return process.memoryUsage();
  };
  const idle = rss();
  const imageId = 'ab'.repeat(32);
  for (let i = 0; i < peers; i++) {
    const peerId = `12D3KooW${i.toString(36).padStart(44, 'x')}`;
    head.swarm.announce({
      peerId,
      imageId,
      addrs: [
        `/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/7481/p2p/${peerId}`,
        `/ip6/fd00::${i.toString(16)}/tcp/7481/p2p/${peerId}`,
      ],
      rack: `rack-${i % 40}`,
      host: `node${i}`,
      progress: (i % 100) / 100,
      bytesDone: i * 1000,
      downRate: 50e6,
      upRate: 40e6,
      bytesFromPeers: i * 900,
      bytesFromSeeder: i * 100,
      stage: 'fetching',
    });
  }
  const loaded = rss();
  console.log(
    JSON.stringify({
      idleRss: idle.rss,
      idleHeap: idle.heapUsed,
      loadedRss: loaded.rss,
      loadedHeap: loaded.heapUsed,
      tracked: head.swarm.size,
    }),
  );
  await head.stop();
  rmSync(dir, { recursive: true, force: true });
}

export async function benchHead(opts: { quick?: boolean }): Promise<string> {
  const runs = opts.quick ? 1 : 3;
  const peers = 10_000;
  const results: {
    idleRss: number;
    loadedRss: number;
    idleHeap: number;
    loadedHeap: number;
    tracked: number;
  }[] = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(process.execPath, ['--expose-gc', self, '--child', String(peers)], {
      encoding: 'utf8',
    });
    results.push(JSON.parse(out.trim().split('\n').pop() as string));
    process.stderr.write(
      `head: idle ${fmt(results[i].idleRss / 2 ** 20, 0)} MiB, ${peers} peers ${fmt(results[i].loadedRss / 2 ** 20, 0)} MiB\n`,
    );
  }
  const mib = (f: (r: (typeof results)[0]) => number) => fmt(median(results.map(f)) / 2 ** 20, 1);
  return [
    '## Head node memory',
    '',
    `A whole head (chunk store, LevelDB registry, libp2p node, seeder, tracker service, HTTP API) started in-process,`,
    `then ${peers.toLocaleString('en')} peers announced straight into its swarm state (2 multiaddrs, rack, host each);`,
    `GC forced before each reading; median of ${runs}. Open libp2p connections are extra: ~60-200 KB each`,
    `(LIBP2P-NOTES.md), which is why peers need not hold a connection to the head between announces.`,
    '',
    '| figure | RSS MiB | heap MiB |',
    '|---|---|---|',
    `| idle head | ${mib((r) => r.idleRss)} | ${mib((r) => r.idleHeap)} |`,
    `| with ${peers.toLocaleString('en')} tracked peers | ${mib((r) => r.loadedRss)} | ${mib((r) => r.loadedHeap)} |`,
    '',
    'Reproduce: `node bench/head.ts`.',
  ].join('\n');
}

if (process.argv[2] === '--child') {
  await child(Number(process.argv[3]));
} else if (import.meta.main) {
  console.log(await benchHead({ quick: process.argv.includes('--quick') }));
}
