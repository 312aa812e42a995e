// Default linger: a node that finished keeps serving while any peer of its swarm still fetches, then leaves on its
// own (the tracker answers its announces with the count of peers still working).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let pub: string;
let imageHash: string;

interface Run {
  code: number | null;
  /** ms since the test's start: the final summary line, and the process exit. */
  summaryAt: number;
  exitAt: number;
  stdout: string;
  stderr: string;
}

function fetchNode(
  n: string,
  started: number,
  extra: string[] = [],
): { child: ChildProcess; run: Run; done: Promise<Run> } {
  const args = ['fetch', 'img', '--head', head.url, '--trust', pub, '--json'];
  args.push('--out', join(t.dir, `out-${n}`), '--cache', join(t.dir, `cache-${n}`), ...extra);
  const child = spawn(process.execPath, [join(projectRoot, 'bin/rackswarm.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = { code: null, summaryAt: Number.NaN, exitAt: Number.NaN, stdout: '', stderr: '' };
  const done = new Promise<Run>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.stdout.on('data', (d) => {
      run.stdout += d;
      if (Number.isNaN(run.summaryAt) && run.stdout.includes('"seconds"'))
        run.summaryAt = Date.now() - started;
    });
    child.stderr.on('data', (d) => {
      run.stderr += d;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      run.code = code;
      run.exitAt = Date.now() - started;
      resolve(run);
    });
  });
  return { child, run, done };
}

async function peersAnnounced(): Promise<number> {
  const swarm = (await (await fetch(`${head.url}/api/swarm`)).json()) as { images: { peers: unknown[] }[] };
  return swarm.images[0]?.peers.length ?? 0;
}

beforeAll(async () => {
  t = tempDir('rsw-linger-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  pub = join(t.dir, 'keys/publisher.pub');
  const data = pseudoRandomBytes(SIZE, 11);
  writeFileSync(join(t.dir, 'img'), data);
  imageHash = hashHex(data);
  // Announces every second; the head sends at most 4 MiB/s per peer, so a fetch takes a few seconds.
  const config = join(t.dir, 'head.json');
  writeFileSync(
    config,
    JSON.stringify({ tracker: { announceIntervalSeconds: 1 }, seeder: { perPeerBytesPerSecond: 4 * MiB } }),
  );
  const p = await runCli([
    'publish',
    join(t.dir, 'img'),
    '--name',
    'img',
    '--key',
    join(t.dir, 'keys/publisher.key'),
    '--data',
    join(t.dir, 'head'),
  ]);
  expect(p.code, p.stderr).toBe(0);
  head = await startHead(join(t.dir, 'head'), [], ['--config', config]);
}, 120_000);
afterAll(async () => {
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('fetch without --linger', () => {
  it('keeps serving until no peer of the swarm still fetches, then exits by itself', async () => {
    const started = Date.now();
    const a = fetchNode('a', started);
    const b = fetchNode('b', started);
    // Once both have announced, b is frozen mid-fetch (SIGSTOP): the tracker still counts it as fetching.
    await vi.waitFor(async () => expect(await peersAnnounced()).toBe(2), { timeout: 60_000, interval: 200 });
    b.child.kill('SIGSTOP');
    try {
      await vi.waitFor(() => expect(a.run.summaryAt).toBeGreaterThan(0), { timeout: 60_000, interval: 100 });
      // Three announce intervals after a completed, it still serves: b has not finished.
      await new Promise((r) => setTimeout(r, 3000));
      expect(a.child.exitCode).toBeNull();
    } finally {
      b.child.kill('SIGCONT');
    }
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    for (const n of ['a', 'b']) expect(hashHex(readFileSync(join(t.dir, `out-${n}`)))).toBe(imageHash);
    expect(ra.exitAt).toBeGreaterThan(rb.summaryAt); // a left only after b was complete, on its own
    expect(ra.exitAt).toBeLessThan(120_000); // long before the 600 s bound
    // While lingering, a served b: after the thaw b took most of the rest from a, not from the 4 MiB/s head.
    const bSummary = JSON.parse(rb.stdout.trim().split('\n').pop() as string);
    expect(bSummary.bytesFromPeers).toBeGreaterThan(SIZE / 2);
  }, 180_000);
});
