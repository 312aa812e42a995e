import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTree, mksquashfs, mutateTree } from '../fixtures/tree.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';

let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let pub: string;
let token: string;
const nodes: ChildProcess[] = [];
const RACKS = ['r1', 'r1', 'r2'];

/** A node that fetched img@1 and keeps running (seeding) for `--linger`: the kind a preheat reaches. */
function startNode(i: number): Promise<void> {
  const proc = spawn(
    process.execPath,
    [
      join(projectRoot, 'bin/rackswarm.js'),
      'fetch',
      'img@1',
      '--head',
      head.url,
      '--trust',
      pub,
      '--out',
      join(t.dir, `node${i}.img`),
      '--cache',
      join(t.dir, `cache${i}`),
      '--rack',
      RACKS[i],
      '--linger',
      '300',
      '--json',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  nodes.push(proc);
  let stderr = '';
  proc.stderr?.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${i} did not finish fetching: ${stderr}`)), 90_000);
    proc.stdout?.on('data', (d: Buffer) => {
      if (
        d
          .toString()
          .split('\n')
          .some((l) => l.includes('"bytesFromSeeder"') && !l.includes('"progress"'))
      ) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', (code) => reject(new Error(`node ${i} exited with ${code}: ${stderr}`)));
  });
}

beforeAll(async () => {
  t = tempDir('rsw-preheat-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  pub = join(t.dir, 'keys/publisher.pub');
  token = join(t.dir, 'head/admin-token');
  const tree = join(t.dir, 'tree');
  makeTree(tree, { files: 300, seed: 41 });
  mksquashfs(tree, join(t.dir, 'v1.sqfs'));
  mutateTree(tree, { fraction: 0.2, seed: 42 }); // a big update: the preheat has real bytes to move
  mksquashfs(tree, join(t.dir, 'v2.sqfs'));
  // Announce every second, so instructions and reports travel fast in a test.
  const config = join(t.dir, 'head.json');
  writeFileSync(config, JSON.stringify({ tracker: { announceIntervalSeconds: 1 } }));
  head = await startHead(join(t.dir, 'head'), [], ['--config', config]);
  for (const v of [1, 2]) {
    const p = await publishToHead(
      head.url,
      token,
      join(t.dir, `v${v}.sqfs`),
      'img',
      join(t.dir, 'keys/publisher.key'),
    );
    expect(p.code, p.stderr).toBe(0);
  }
  await Promise.all(RACKS.map((_, i) => startNode(i)));
}, 180_000);

afterAll(async () => {
  for (const p of nodes) p.kill('SIGKILL');
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('rackswarm preheat', () => {
  it('running nodes of rack r1 fetch v2 into their caches; the barrier completes; then fetching v2 moves ~0 bytes', async () => {
    const r = await runCli(
      [
        'preheat',
        'img@2',
        '--nodes',
        'rack=r1',
        '--head',
        head.url,
        '--token-file',
        token,
        '--timeout',
        '120',
        '--json',
      ],
      { timeoutMs: 150_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(job.complete).toBe(true);
    expect(job.targets.map((x: { rack: string; state: string }) => [x.rack, x.state])).toEqual([
      ['r1', 'done'],
      ['r1', 'done'],
    ]);

    // The reboot wave: each node stops and fetches v2 with its cache, into the same output (in place).
    const v2 = readFileSync(join(t.dir, 'v2.sqfs'));
    for (const i of [0, 1, 2]) {
      const exited = new Promise((resolve) => nodes[i].once('exit', resolve));
      nodes[i].kill('SIGTERM');
      await exited;
      const out = join(t.dir, `node${i}.img`);
      const f = await runCli(
        [
          'fetch',
          'img@2',
          '--head',
          head.url,
          '--trust',
          pub,
          '--out',
          out,
          '--cache',
          join(t.dir, `cache${i}`),
          '--linger',
          '0',
          '--json',
        ],
        { timeoutMs: 60_000 },
      );
      expect(f.code, f.stderr).toBe(0);
      const s = JSON.parse(f.stdout.trim().split('\n').pop() as string);
      const moved = s.bytesFromPeers + s.bytesFromSeeder;
      if (RACKS[i] === 'r1') expect(moved).toBe(0);
      else expect(moved).toBeGreaterThan(0); // not preheated: it downloads what changed
      expect(readFileSync(out).equals(v2)).toBe(true);
    }
  }, 240_000);
});
