import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeAnnounceHave } from '../core/tracker-messages.ts';
import { launchChromium } from '../test/helpers/chromium.ts';
import { startSyntheticHead, syntheticAnnounces, syntheticImage } from '../test/helpers/synthetic-swarm.ts';
import { buildSnapshot } from '../tracker/dashboard-snapshot.ts';
import { type Announce, SwarmState } from '../tracker/swarm-state.ts';
import { ThroughputHistory } from '../tracker/throughput-history.ts';
import { fmt, median, repeat } from './lib/stats.ts';

const IMAGE = 'cd'.repeat(32);
// A 4 GiB image at the default 512 KiB average chunk: 8,192 chunks, a 1 KiB bitfield (1,368 base64 characters).
const CHUNKS = 8192;
const RECORD = syntheticImage(IMAGE, CHUNKS);
function fleet(n: number, seed: number, withHave: boolean): Announce[] {
  return syntheticAnnounces(n, { image: RECORD, seed, withHave });
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
export function snapshotFigures(n: number, runs: number): SnapshotFigures {
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

/**
 * The page itself: a synthetic swarm of `n` nodes behind the real HTTP API and feed, Debian's Chromium on the
 * dashboard; per update, the page's own parse + render time (body[data-render-ms]) and the event's size.
 */
async function browserRender(n: number, updates: number): Promise<{ renderMs: number; eventBytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-dash-'));
  const swarm = state();
  for (const a of fleet(n, 11, true)) swarm.announce(a);
  const head = await startSyntheticHead(dir, swarm, [RECORD]);
  const chromium = await launchChromium();
  try {
    const page = await chromium.browser.newPage();
    await page.goto(`${head.url}/`);
    const times: number[] = [];
    let eventBytes = 0;
    for (let k = 2; k < updates + 2; k++) {
      // The first update also builds the chart; count the steady ones.
      await page.waitForFunction(`Number(document.body.dataset.updates) >= ${k}`, undefined, {
        timeout: 30_000,
      });
      const got = await page.evaluate(`[document.body.dataset.renderMs, document.body.dataset.eventBytes]`);
      const [ms, bytes] = got as [string, string];
      times.push(Number(ms));
      eventBytes = Number(bytes);
    }
    return { renderMs: median(times), eventBytes };
  } finally {
    await chromium.close();
    await head.stop();
    rmSync(dir, { recursive: true, force: true });
  }
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
  const pages: string[] = [];
  for (const n of [100, 1_000, 5_000]) {
    const r = await browserRender(n, opts.quick ? 4 : 10);
    pages.push(
      `| ${n.toLocaleString('en-US')} | ${fmt(r.renderMs, 1)} ms | ${(r.eventBytes / 1024).toFixed(1)} KiB |`,
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
    `The page in Debian's Chromium (headless, 2 cores shared), fed by the real HTTP API and feed over the same kind of`,
    `swarm: time to parse and redraw one update (median of ${opts.quick ? 4 : 10} consecutive updates, one per second).`,
    '',
    '| nodes | parse + render per update | event size |',
    '|---|---|---|',
    ...pages,
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
