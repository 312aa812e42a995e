import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { prng } from '../test/fixtures/tree.ts';
import { type HandoutCandidate, type HandoutSelf, handout } from '../tracker/handout-policy.ts';
import { type Announce, type PeerStage, SwarmState } from '../tracker/swarm-state.ts';
import { fmt, median, repeat } from './lib/stats.ts';

const IMAGE = 'ab'.repeat(32);
const K = 30;
const RACK_SIZE = 40;
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** Announces that look like the real ones: Ed25519 libp2p ids, two multiaddrs, racks of 40, spread progress. */
function fleet(n: number, seed: number, storm: boolean, first = 0): Announce[] {
  const next = prng(seed);
  const rand = () => next() / 2 ** 32;
  return Array.from({ length: n }, (_, at) => {
    const i = first + at;
    let peerId = '12D3KooW';
    while (peerId.length < 52) peerId += B58[next() % 58];
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const progress = storm ? 0 : rand();
    const stage: PeerStage = storm ? 'announced' : progress > 0.98 ? 'seeding' : 'fetching';
    return {
      peerId,
      imageId: IMAGE,
      addrs: [`/ip4/${ip}/tcp/4001/p2p/${peerId}`, `/ip6/fd00::${i.toString(16)}/tcp/4001/p2p/${peerId}`],
      rack: `rack-${String(Math.floor(i / RACK_SIZE)).padStart(3, '0')}`,
      host: `node${String(i).padStart(5, '0')}`,
      progress,
      bytesDone: Math.floor(progress * 4e9),
      downRate: 1.2e8 * rand(),
      upRate: 1.1e8 * rand(),
      bytesFromPeers: Math.floor(progress * 3.6e9),
      bytesFromSeeder: Math.floor(progress * 4e8),
      stage,
    };
  });
}

/** The obvious implementation the policy avoids: decorate every candidate with its key and a random, sort all. */
function handoutBySort<C extends HandoutCandidate>(self: HandoutSelf, cands: readonly C[], k: number): C[] {
  const keyed: { c: C; key: number; r: number }[] = [];
  for (const c of cands) {
    if (c.peerId === self.peerId || c.addrs.length === 0) continue;
    const tier = c.progress >= 1 ? 4 : Math.floor(c.progress * 4);
    keyed.push({ c, key: (c.rack === self.rack ? 0 : 5) + 4 - tier, r: Math.random() });
  }
  keyed.sort((a, b) => a.key - b.key || a.r - b.r);
  return keyed.slice(0, k).map((x) => x.c);
}

const OPS = [
  'announce+handout',
  'announce',
  'handout',
  'handout from an array',
  'handout by full sort',
] as const;
type Op = (typeof OPS)[number];

/** Operations per second for `ms` of wall time over a state holding `peers`: each peer re-announces in turn. */
function rate(op: Op, peers: Announce[], storm: boolean, ms: number): number {
  const state = new SwarmState();
  for (const a of peers) state.announce(a);
  const n = peers.length;
  const pool = state.candidates(IMAGE);
  const flat = [...pool.values()];
  let ops = 0;
  let sink = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let j = 0; j < 1000; j++, ops++) {
      const p = peers[(ops * 7919) % n];
      if (op === 'handout') sink += handout(p, pool, K, Math.random).length;
      else if (op === 'handout from an array') sink += handout(p, flat, K, Math.random).length;
      else if (op === 'handout by full sort') sink += handoutBySort(p, flat, K).length;
      else {
        // A fresh object per announce, as the HTTP layer's JSON.parse would give (parsing itself not counted);
        // progress creeps up 5 % per round of the fleet (wrapping round), so peers move between tiers.
        const rec = state.announce({
          ...p,
          addrs: [p.addrs[0], p.addrs[1]],
          progress: storm ? 0 : (p.progress + ops / (n * 20)) % 1,
          bytesDone: p.bytesDone + ops,
          downRate: p.downRate + (ops & 1023),
        });
        if (op === 'announce+handout') sink += handout(rec, state.candidates(IMAGE), K, Math.random).length;
      }
    }
    t = performance.now();
  }
  if (sink < 0) throw new Error('unreachable');
  return (ops / (t - t0)) * 1000;
}

interface MemoryFigures {
  peers: number;
  rssMiB: number;
  heapMiB: number;
  heapPerPeer: number;
  rssPerPeer: number;
  heapAfterChurnMiB: number;
}

/** Runs in a child with --expose-gc: heap and RSS before and after `n` peers, then after 10 rounds of re-announces. */
async function memoryChild(n: number): Promise<MemoryFigures> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const settle = () => {
    for (let i = 0; i < 3; i++) gc();
    return process.memoryUsage();
  };
  // Each announce is made, serialised and parsed on the spot, so nothing but the state keeps its strings: what the
  // state then holds is what it would hold behind the HTTP layer's JSON.parse.
  const announceAll = (state: SwarmState, round: number) => {
    for (let start = 0; start < n; start += 1_000) {
      for (const a of fleet(Math.min(1_000, n - start), start, false, start)) {
        a.bytesDone += round;
        state.announce(JSON.parse(JSON.stringify(a)));
      }
    }
  };
  const state = new SwarmState();
  announceAll(new SwarmState(), 0); // compile and warm everything up first
  const before = settle();
  announceAll(state, 0);
  const after = settle();
  for (let round = 1; round <= 10; round++) announceAll(state, round);
  const churned = settle();
  if (state.size !== n) throw new Error(`tracked ${state.size}, expected ${n}`);
  const MiB = 2 ** 20;
  return {
    peers: n,
    rssMiB: (after.rss - before.rss) / MiB,
    heapMiB: (after.heapUsed - before.heapUsed) / MiB,
    heapPerPeer: (after.heapUsed - before.heapUsed) / n,
    rssPerPeer: (after.rss - before.rss) / n,
    heapAfterChurnMiB: (churned.heapUsed - before.heapUsed) / MiB,
  };
}

function memory(n: number): MemoryFigures {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', fileURLToPath(import.meta.url), '--memory-child', String(n)],
    {
      encoding: 'utf8',
    },
  );
  return JSON.parse(out) as MemoryFigures;
}

/** Tracker hot path (announce + handout) per second on one core, and the head's memory per tracked peer. */
export async function benchTracker(opts: { quick?: boolean }): Promise<string> {
  const ms = opts.quick ? 300 : 1000;
  const rows: string[] = [];
  for (const [name, storm] of [
    ['mid-transfer (progress uniform 0..1)', false],
    ['boot storm (everyone at 0, one tier)', true],
  ] as const) {
    for (const n of [1_000, 10_000]) {
      const peers = fleet(n, n, storm);
      const cells: string[] = [];
      for (const op of OPS) {
        const runMs = op === 'handout from an array' || op === 'handout by full sort' ? ms / 4 : ms;
        rate(op, peers, storm, runMs / 4); // warm-up
        const runs = await repeat(5, () => rate(op, peers, storm, runMs));
        cells.push(Math.round(median(runs)).toLocaleString('en-US'));
        process.stderr.write(`tracker ${name} n=${n} ${op}: ${Math.round(median(runs))}/s\n`);
      }
      rows.push(`| ${name} | ${n.toLocaleString('en-US')} | ${cells.join(' | ')} |`);
    }
  }

  const mem: MemoryFigures[] = [];
  for (const n of opts.quick ? [10_000] : [10_000, 100_000]) {
    const runs = await repeat(opts.quick ? 3 : 5, () => memory(n));
    const mid = <K extends keyof MemoryFigures>(key: K) => median(runs.map((r) => r[key]));
    mem.push({
      peers: n,
      rssMiB: mid('rssMiB'),
      heapMiB: mid('heapMiB'),
      heapPerPeer: mid('heapPerPeer'),
      rssPerPeer: mid('rssPerPeer'),
      heapAfterChurnMiB: mid('heapAfterChurnMiB'),
    });
    process.stderr.write(
      `tracker memory ${n} peers: heap +${fmt(mid('heapMiB'))} MiB, rss +${fmt(mid('rssMiB'))} MiB\n`,
    );
  }

  const cmd = `node bench/tracker.ts${opts.quick ? ' --quick' : ''}`;
  return [
    '## Tracker (tracker/swarm-state.ts, tracker/handout-policy.ts)',
    '',
    `Announces per second on one core, one image, median of 5 runs of ${ms} ms each. Every peer re-announces in`,
    `turn (a fresh announce object each time, JSON parsing not counted) and gets k = ${K} peers back. Racks of`,
    `${RACK_SIZE} nodes, 2 multiaddrs per peer. "handout" draws from the state's pool (filed by rack and tier as`,
    'peers announce); "from an array" files a flat array into a pool first, as tests and the simulator may; "by full',
    'sort" is the obvious alternative: a key and a random number for every candidate, sort them all, take k. The',
    'last two run a quarter as long. Goal: ≥ 20,000 announce+handout/s with 10,000 peers.',
    '',
    '| swarm | peers | announce+handout /s | announce /s | handout /s | handout from an array /s | handout by full sort /s |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'Head memory for the swarm state alone, in a child process with `--expose-gc`: heap used and RSS after',
    'inserting the peers (announces parsed from JSON one by one, as the HTTP layer would) minus before, GC forced',
    `before each reading, median of ${opts.quick ? 3 : 5}. "After 10 rounds" is heap growth once every peer has`,
    're-announced 10 times: it should equal the first column (records replaced, nothing accumulates).',
    '',
    '| tracked peers | heap used | heap per peer | RSS | RSS per peer | heap after 10 rounds of re-announces |',
    '|---|---|---|---|---|---|',
    ...mem.map(
      (m) =>
        `| ${m.peers.toLocaleString('en-US')} | ${fmt(m.heapMiB, 1)} MiB | ${Math.round(m.heapPerPeer)} B | ` +
        `${fmt(m.rssMiB, 1)} MiB | ${Math.round(m.rssPerPeer)} B | ${fmt(m.heapAfterChurnMiB, 1)} MiB |`,
    ),
    '',
    `Reproduce: \`${cmd}\` (or \`npm run bench${opts.quick ? ' -- --quick' : ''}\` for every section).`,
  ].join('\n');
}

if (import.meta.main) {
  const at = process.argv.indexOf('--memory-child');
  if (at > 0) process.stdout.write(JSON.stringify(await memoryChild(Number(process.argv[at + 1]))));
  else process.stdout.write(`${await benchTracker({ quick: process.argv.includes('--quick') })}\n`);
}
