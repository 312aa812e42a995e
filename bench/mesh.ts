// Closed mesh (docs/SECURITY.md): what the gate costs a new peer-to-peer connection. In one process: a real head
// (startHead, mesh.closed, two enrolled peers) and two nodes A (listening) and B; B opens a fresh connection to A
// and does one request/response on it, N times. Three ways side by side: open mesh (no gater); closed with the
// answers cached (the steady state); closed and cold (every check asks the head: ttl 1 ms). Figures: median
// wall-clock ms per connection and CPU ms per connection (the whole process: head, A and B), then the ratios.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { startHead } from '../cli/head-node.ts';
import { NodeMesh, Refusals } from '../cli/mesh.ts';
import { createP2PNode, loadOrCreatePeerKey } from '../cli/p2p-node.ts';
import { loadConfig } from '../core/config.ts';
import { fmt, median } from './lib/stats.ts';

const ECHO = '/rackswarm-bench/echo/1.0.0';

async function pair(
  dir: string,
  mesh: (n: string) => NodeMesh | undefined,
): Promise<{ a: Libp2p; b: Libp2p; stop: () => Promise<void> }> {
  const meshA = mesh('a');
  const meshB = mesh('b');
  const a = await createP2PNode({
    keyFile: join(dir, 'a.key'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    connectionGater: meshA?.gater,
  });
  const b = await createP2PNode({ keyFile: join(dir, 'b.key'), listen: [], connectionGater: meshB?.gater });
  meshA?.attach(a);
  meshB?.attach(b);
  await a.handle(ECHO, async (stream) => {
    const lp = lpStream(stream);
    await lp.write(await lp.read());
    await stream.close();
  });
  return {
    a,
    b,
    stop: async () => {
      meshA?.stop();
      meshB?.stop();
      await b.stop();
      await a.stop();
    },
  };
}

async function connectOnce(a: Libp2p, b: Libp2p): Promise<void> {
  await b.hangUp(a.peerId).catch(() => {});
  const stream = await b.dialProtocol(a.getMultiaddrs()[0], ECHO);
  const lp = lpStream(stream);
  await lp.write(Uint8Array.of(1));
  await lp.read();
  await stream.close();
}

export async function benchMesh(opts: { quick?: boolean }): Promise<string> {
  const n = opts.quick ? 15 : 60;
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-mesh-'));
  const config = loadConfig({ mesh: { closed: true } });
  const head = await startHead(
    { data: join(dir, 'head'), http: '127.0.0.1:0', listen: ['/ip4/127.0.0.1/tcp/0'] },
    config,
    false,
  );
  try {
    const token = readFileSync(join(dir, 'head/admin-token'), 'utf8').trim();
    const boot = (await (await fetch(`${head.http}/api/bootstrap`)).json()) as {
      peerId: string;
      addrs: string[];
    };
    const headAddr = multiaddr(boot.addrs[0]);
    const ids = await Promise.all(
      ['a', 'b'].map(async (k) =>
        peerIdFromPrivateKey(await loadOrCreatePeerKey(join(dir, `${k}.key`))).toString(),
      ),
    );
    const r = await fetch(`${head.http}/api/enrollments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ peerIds: ids }),
    });
    if (!r.ok) throw new Error(`enroll: HTTP ${r.status}`);

    const modes = {
      open: () => undefined,
      'closed, cached': () =>
        new NodeMesh({ head: boot.peerId, headAddr, ttlMs: 600_000, refusals: new Refusals(() => {}) }),
      'closed, cold (asks the head every time)': () =>
        new NodeMesh({ head: boot.peerId, headAddr, ttlMs: 1, refusals: new Refusals(() => {}) }),
    } as const;
    const pairs = await Promise.all(Object.values(modes).map((make) => pair(dir, make)));
    const samples = new Map<string, { ms: number[]; cpuMs: number[] }>(
      Object.keys(modes).map((m) => [m, { ms: [], cpuMs: [] }]),
    );
    // Warm-up, then interleave the modes so load drifts hit them alike.
    for (const p of pairs) await connectOnce(p.a, p.b);
    for (let i = 0; i < n; i++) {
      for (const [j, name] of Object.keys(modes).entries()) {
        const { a, b } = pairs[j];
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        await connectOnce(a, b);
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const s = samples.get(name) as { ms: number[]; cpuMs: number[] };
        s.ms.push(ms);
        s.cpuMs.push((cpu.user + cpu.system) / 1000);
      }
    }
    for (const p of pairs) await p.stop();
    const open = samples.get('open') as { ms: number[]; cpuMs: number[] };
    const rows = [...samples].map(
      ([name, s]) =>
        `| ${name} | ${fmt(median(s.ms), 1)} | ${fmt(median(s.cpuMs), 1)} | ${fmt(median(s.ms) / median(open.ms))}× |`,
    );
    return [
      '## Closed mesh (core/mesh-gater.ts: cost of a new peer-to-peer connection)',
      '',
      `\`node bench/mesh.ts\`: one process holds a closed-mesh head and two enrolled nodes; B opens a new connection to A`,
      `and does one request/response, ${n} times per mode, modes interleaved; medians. CPU is the whole process's.`,
      '',
      '| mode | ms per connection | CPU ms per connection | vs open |',
      '|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
  } finally {
    await head.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  console.log(await benchMesh({ quick: process.argv.includes('--quick') }));
  process.exit(0);
}
