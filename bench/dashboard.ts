import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { encodeAnnounceHave } from '../core/tracker-messages.ts';
import { prng } from '../test/fixtures/tree.ts';
import { buildSnapshot } from '../tracker/dashboard-snapshot.ts';
import type { ImageRecord } from '../tracker/registry.ts';
import { type Announce, type PeerStage, SwarmState } from '../tracker/swarm-state.ts';
import { ThroughputHistory } from '../tracker/throughput-history.ts';
import { fmt, median, repeat } from './lib/stats.ts';

const IMAGE = 'cd'.repeat(32);
// A 4 GiB image at the default 512 KiB average chunk: 8,192 chunks, a 1 KiB bitfield (1,368 base64 characters).
const CHUNKS = 8192;
const RECORD: ImageRecord = {
  name: 'compute',
  version: 7,
  id: IMAGE,
  format: 'raw',
  size: CHUNKS * 512 * 1024,
  chunks: CHUNKS,
  publisher: 'ee'.repeat(32),
  publishedAt: '2026-11-22T00:00:00.000Z',
};
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** `n` nodes in racks of 40 mid-wave: a third done, the rest fetching with a bitfield (or none, `withHave` false). */
function fleet(n: number, seed: number, withHave: boolean): Announce[] {
  const next = prng(seed);
  const rand = () => next() / 2 ** 32;
  return Array.from({ length: n }, (_, i) => {
    let peerId = '12D3KooW';
    while (peerId.length < 52) peerId += B58[next() % 58];
    const stage: PeerStage = i % 3 === 0 ? 'done' : 'fetching';
    const progress = stage === 'done' ? 1 : rand();
    return {
      peerId,
      imageId: IMAGE,
      addrs: [`/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/4001/p2p/${peerId}`],
      rack: `rack-${String(Math.floor(i / 40)).padStart(3, '0')}`,
      host: `node${String(i).padStart(5, '0')}`,
      progress,
      bytesDone: Math.floor(progress * RECORD.size),
      downRate: 1.2e8 * rand(),
      upRate: 1.1e8 * rand(),
      bytesFromPeers: Math.floor(progress * 0.9 * RECORD.size),
      bytesFromSeeder: Math.floor(progress * 0.1 * RECORD.size),
      stage,
      have:
        withHave && stage === 'fetching' ? encodeAnnounceHave(CHUNKS, () => rand() < progress) : undefined,
    };
  });
}

function state(): SwarmState {
  return new SwarmState({ chunkCount: (id) => (id === IMAGE ? CHUNKS : undefined) });
}

/** Announces per second for ~`ms`: every node re-announces in turn (fresh objects, as JSON.parse gives). */
function announceRate(nodes: Announce[], ms: number): number {
  const s = state();
  for (const a of nodes) s.announce(a);
  let ops = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let j = 0; j < 200; j++, ops++) {
      const a = nodes[(ops * 7919) % nodes.length];
      s.announce({ ...a, bytesDone: a.bytesDone + ops });
    }
    t = performance.now();
  }
  return (ops / (t - t0)) * 1000;
}

interface SnapshotFigures {
  nodes: number;
  buildMs: number;
  jsonMs: number;
  bytes: number;
}

/** One snapshot of a swarm of `n` nodes: build, serialise, size (what each dashboard client receives per second). */
function snapshotFigures(n: number, runs: number): SnapshotFigures {
  const s = state();
  for (const a of fleet(n, n, true)) s.announce(a);
  const history = new ThroughputHistory(300);
  for (let i = 0; i <= 300; i++) history.sample(i * 1000, i * 5e7, 4e9);
  const build = () =>
    buildSnapshot({
      now: Date.now(),
      swarm: s,
      images: [RECORD],
      head: { bytesServed: 1e12, egressRate: 1.1e9 },
      history: history.view(),
      links: { headUplink: 1.25e9, nodeLink: 1.25e9 },
    });
  for (let i = 0; i < 3; i++) JSON.stringify(build()); // warm up
  const builds: number[] = [];
  const jsons: number[] = [];
  let bytes = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const snap = build();
    const t1 = performance.now();
    bytes = Buffer.byteLength(JSON.stringify(snap));
    jsons.push(performance.now() - t1);
    builds.push(t1 - t0);
  }
  return { nodes: n, buildMs: median(builds), jsonMs: median(jsons), bytes };
}

/** In a child with --expose-gc: heap (and array buffers) per fetching node with and without bitfields. */
function memoryChild(n: number): { withHave: number; without: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const heap = () => {
    for (let i = 0; i < 3; i++) gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers; // a typed array's bytes live outside the JS heap
  };
  const perNode = (withHave: boolean) => {
    // Announces made, serialised and parsed 1,000 at a time, as the wire brings them: only the state keeps anything.
    const s = state();
    const before = heap();
    for (let start = 0; start < n; start += 1_000) {
      for (const a of fleet(Math.min(1_000, n - start), start + 1, withHave)) {
        const fetching = { ...a, stage: 'fetching', progress: 0.5 };
        if (withHave) fetching.have = encodeAnnounceHave(CHUNKS, (c) => c % 2 === 0);
        s.announce(JSON.parse(JSON.stringify(fetching)));
      }
    }
    const after = heap();
    if (s.size !== n) throw new Error('lost nodes');
    return (after - before) / n;
  };
  perNode(true); // warm up
  return { withHave: perNode(true), without: perNode(false) };
}

export async function benchDashboard(opts: { quick: boolean }): Promise<string> {
  const runs = opts.quick ? 3 : 5;
  const sizes = [100, 1_000, 10_000];
  const rows: string[] = [];
  for (const n of sizes) {
    const withHave = fleet(n, 3, true);
    const without = fleet(n, 3, false);
    const a = median(await repeat(runs, () => announceRate(withHave, opts.quick ? 300 : 1000)));
    const b = median(await repeat(runs, () => announceRate(without, opts.quick ? 300 : 1000)));
    const s = snapshotFigures(n, runs * 4);
    rows.push(
      `| ${n.toLocaleString('en-US')} | ${Math.round(a).toLocaleString('en-US')} | ${Math.round(b).toLocaleString('en-US')} | ` +
        `${fmt(s.buildMs)} ms | ${fmt(s.jsonMs)} ms | ${(s.bytes / 1024).toFixed(1)} KiB |`,
    );
  }
  const self = fileURLToPath(import.meta.url);
  const mem = await repeat(runs, () =>
    JSON.parse(
      execFileSync(process.execPath, ['--expose-gc', self, '--memory-child', '10000'], { encoding: 'utf8' }),
    ),
  );
  const withHave = median(mem.map((m) => m.withHave));
  const without = median(mem.map((m) => m.without));
  const cmd = `node bench/dashboard.ts${opts.quick ? ' --quick' : ''}`;
  return [
    '## Dashboard (tracker/availability.ts, tracker/dashboard-snapshot.ts)',
    '',
    'Synthetic announces through the real SwarmState for an image of 8,192 chunks (4 GiB at 512 KiB): racks of 40,',
    'a third of the nodes done, the others fetching and sending a 1 KiB bitfield (1,368 base64 characters) in every',
    'announce, which the tracker reduces to held-chunk counts per heat-map cell (≤ 512 cells). "Announces/s" is the',
    `tracker's rate with and without those bitfields (median of ${runs}). Then one dashboard snapshot — what GET`,
    '/api/events sends each client once per second, built and serialised once however many clients listen: a tile',
    'per node up to 5,000 nodes, a row per node up to 64 (else the 64 needing attention), per-rack aggregates,',
    `the heat map and five minutes of throughput history. Build and JSON times are medians of ${runs * 4}.`,
    '',
    '| nodes | announces/s with bitfield | announces/s without | snapshot build | JSON.stringify | snapshot size |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    `Memory per fetching node (JS heap + array buffers, 10,000 nodes, GC forced, median of ${runs}): ${Math.round(withHave)} B`,
    `with bitfields, ${Math.round(without)} B without; a node's cells are freed once it is done (it holds every chunk).`,
    '',
    `Reproduce: \`${cmd}\` (or \`npm run bench${opts.quick ? ' -- --quick' : ''}\` for every section).`,
  ].join('\n');
}

if (import.meta.main) {
  const at = process.argv.indexOf('--memory-child');
  if (at > 0) process.stdout.write(JSON.stringify(memoryChild(Number(process.argv[at + 1]))));
  else process.stdout.write(`${await benchDashboard({ quick: process.argv.includes('--quick') })}\n`);
}
