// RELIABILITY item 10: a network partition between two racks, then healed. Real namespaces from the testbed's fabric
// (bench/testbed/fabric.ts: 2 racks on a spine, the head on the spine), a real `rackswarm head` and four real
// `rackswarm fetch` processes, two per rack. Mid-fetch, rack 1's link to the spine goes down (every packet dropped
// both ways, no RST: a cut cable), longer than every read timeout; then it comes back. Both sides must complete
// bit-identical, and nobody may be banned: a peer that went silent timed out, it did not lie.
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { publishImage } from '../../bench/lib/publish-image.ts';
import { Fabric } from '../../bench/testbed/fabric.ts';
import { type Proc, Procs } from '../../bench/testbed/procs.ts';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import type { FetchProgress } from '../../peer/fetcher.ts';
import { projectRoot } from '../helpers/cli.ts';

const bin = join(projectRoot, 'bin/rackswarm.js');
const MiB = 1024 * 1024;
/** Longer than the seeder's and tracker's read timeouts (10 s): connections across the cut really time out. */
const PARTITION_MS = 14_000;

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

function lastJson<T>(p: Proc, test: (j: Record<string, unknown>) => boolean): T | undefined {
  for (let i = p.stdout.length - 1; i >= 0; i--) {
    try {
      const j = JSON.parse(p.stdout[i].line);
      if (test(j)) return j as T;
    } catch {}
  }
  return undefined;
}
const progressOf = (p: Proc) =>
  lastJson<{ progress: FetchProgress }>(p, (j) => j.progress !== undefined)?.progress;
const summaryOf = (p: Proc) => lastJson<FetchSummary>(p, (j) => typeof j.seconds === 'number');

async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('network partition between racks', () => {
  it('rack 1 cut off from the spine mid-fetch, then healed: all four nodes complete bit-identical, nobody banned', async () => {
    const work = mkdtempSync(join(tmpdir(), 'rsw-partition-'));
    // 40 Mbit/s links (5 MB/s): a 24 MiB image takes a node ≥ 5 s, so the cut lands mid-fetch.
    const fabric = new Fabric({ nodes: 4, racks: 2, rateMbit: 40, headRateMbit: 40, spineRateMbit: 40 });
    const procs = new Procs();
    cleanup = async () => {
      await Promise.race([procs.killAll('SIGTERM'), new Promise((r) => setTimeout(r, 3000))]);
      await procs.killAll();
      fabric.down();
      rmSync(work, { recursive: true, force: true });
    };

    const bytes = Buffer.alloc(24 * MiB);
    randomFillSync(bytes);
    writeFileSync(join(work, 'image.img'), bytes);
    execFileSync(process.execPath, [bin, 'keys', 'generate', '--out', join(work, 'keys')]);
    const pub = join(work, 'keys/publisher.pub');
    publishImage(join(work, 'image.img'), {
      key: join(work, 'keys/publisher.key'),
      data: join(work, 'head'),
    });

    fabric.up();
    const headUrl = `http://${fabric.head.ip}:7480`;
    const head = procs.start(fabric.head.ns, process.execPath, [
      bin,
      'head',
      '--data',
      join(work, 'head'),
      '--http',
      `${fabric.head.ip}:7480`,
      '--listen',
      `/ip4/${fabric.head.ip}/tcp/7481`,
    ]);
    await head.waitFor(/head ready/, 30_000);

    const peers = fabric.nodes.map((n, i) => {
      const dir = join(work, `node${i}`);
      mkdirSync(dir);
      writeFileSync(
        join(dir, 'config.json'),
        JSON.stringify({ peer: { listen: [`/ip4/${n.ip}/tcp/7482`] } }),
      );
      return procs.start(n.ns, process.execPath, [
        bin,
        '--config',
        join(dir, 'config.json'),
        'fetch',
        'img',
        '--head',
        headUrl,
        '--trust',
        pub,
        '--out',
        join(dir, 'image.out'),
        '--cache',
        join(dir, 'cache'),
        '--rack',
        `r${n.rack}`,
        '--linger',
        '120',
        '--json',
      ]);
    });
    const state = () =>
      peers
        .map((p, i) => {
          const s = summaryOf(p);
          const g = progressOf(p);
          return `n${i} (rack ${fabric.nodes[i].rack}): ${s ? 'complete' : `${g?.stage} ${g?.chunksDone}/${g?.chunks}`}${p.child.exitCode !== null ? ` exited ${p.child.exitCode}: ${p.stderr.slice(-500)}` : ''}`;
        })
        .join('\n');

    // Cut once a rack-1 node is well into the image but not done.
    const rack1 = peers.filter((_, i) => fabric.nodes[i].rack === 1);
    await until(
      () => rack1.some((p) => (progressOf(p)?.chunksDone ?? 0) >= (progressOf(p)?.chunks ?? 1) * 0.15),
      40_000,
      state,
    );
    const atCut = rack1.map((p) => progressOf(p)?.chunksDone ?? 0);
    fabric.setRackLink(1, false);
    await new Promise((r) => setTimeout(r, PARTITION_MS));
    const duringCut = state();
    const rack1Done = rack1.every((p) => summaryOf(p) !== undefined);
    fabric.setRackLink(1, true);
    const healedAt = performance.now();

    await until(
      () => peers.every((p) => summaryOf(p) !== undefined || p.child.exitCode !== null),
      45_000,
      () =>
        `at the cut, rack 1 had ${atCut.join(', ')} chunks\nend of the cut:\n${duringCut}\nnow:\n${state()}`,
    );
    for (const [i, p] of peers.entries()) {
      const s = summaryOf(p);
      expect(s, `n${i} did not complete:\n${state()}`).toBeDefined();
      expect(s?.banned, `n${i} banned a peer that only went silent`).toBe(0);
      expect(readFileSync(join(work, `node${i}`, 'image.out')).equals(bytes), `n${i} output`).toBe(true);
    }
    const doneAt = rack1.map((p) => p.stdout.find((l) => l.line.includes('"seconds":'))?.at ?? Number.NaN);
    console.log(
      `partition: rack 1 held ${atCut.join(', ')}/${progressOf(rack1[0])?.chunks} chunks at the cut; ` +
        `complete ${doneAt.map((t) => ((t - healedAt) / 1000).toFixed(1)).join(', ')} s after the heal`,
    );
    // The cut did isolate rack 1 before it was done (else the test proved nothing about healing).
    expect(rack1Done, `rack 1 finished during the cut:\n${duringCut}`).toBe(false);
    // And the process left nothing behind but what cleanup removes: our namespaces only.
    await cleanup();
    cleanup = undefined;
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(`${fabric.prefix}-`);
  }, 180_000);
});
