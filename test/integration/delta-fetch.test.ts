import { spawn } from 'node:child_process';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { makeTree, mksquashfs, mutateTree } from '../fixtures/tree.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';

let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let pub: string;
let v1: Buffer;
let v2: Buffer;

async function fetch(ref: string, out: string, cache: string): Promise<FetchSummary> {
  const r = await runCli(
    [
      'fetch',
      ref,
      '--head',
      head.url,
      '--trust',
      pub,
      '--out',
      out,
      '--cache',
      cache,
      '--linger',
      '0',
      '--json',
    ],
    { timeoutMs: 120_000 },
  );
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as FetchSummary;
}

const downloaded = (s: FetchSummary): number => s.bytesFromPeers + s.bytesFromSeeder;

beforeAll(async () => {
  t = tempDir('rsw-delta-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  pub = join(t.dir, 'keys/publisher.pub');
  // A security update: 1 % of a generated OS-like tree's files rewritten (sizes kept, grown or shrunk), picked
  // uniformly over the tree (the worst case for dedup), each version built by mksquashfs with its defaults.
  const tree = join(t.dir, 'tree');
  makeTree(tree, { files: 1000, seed: 21 });
  mksquashfs(tree, join(t.dir, 'v1.sqfs'));
  const tree2 = join(t.dir, 'tree2');
  cpSync(tree, tree2, { recursive: true });
  mutateTree(tree2, { fraction: 0.01, seed: 22 });
  mksquashfs(tree2, join(t.dir, 'v2.sqfs'));
  v1 = readFileSync(join(t.dir, 'v1.sqfs'));
  v2 = readFileSync(join(t.dir, 'v2.sqfs'));
  head = await startHead(join(t.dir, 'head'));
  for (const v of ['v1', 'v2']) {
    const p = await publishToHead(
      head.url,
      join(t.dir, 'head/admin-token'),
      join(t.dir, `${v}.sqfs`),
      'compute',
      join(t.dir, 'keys/publisher.key'),
    );
    expect(p.code, p.stderr).toBe(0);
  }
}, 180_000);

afterAll(async () => {
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('delta fetch (fetch --cache)', () => {
  it('a node holding v1 fetches v2 in place, downloading ≤ 5 % of it, and the result is bit-identical', async () => {
    const out = join(t.dir, 'node-a.img');
    const cache = join(t.dir, 'cache-a');
    const first = await fetch('compute@1', out, cache);
    expect(downloaded(first)).toBe(v1.length);
    expect(readFileSync(out).equals(v1)).toBe(true);

    const second = await fetch('compute@2', out, cache);
    expect(readFileSync(out).equals(v2)).toBe(true);
    const share = downloaded(second) / v2.length;
    process.stderr.write(
      `delta fetch: v2 ${v2.length} bytes, downloaded ${downloaded(second)} (${(share * 100).toFixed(2)} %), reused ${second.bytesReused}\n`,
    );
    expect(share).toBeLessThanOrEqual(0.05);
    expect(second.bytesReused + downloaded(second)).toBeGreaterThanOrEqual(v2.length);
  }, 240_000);

  it('a fetch stopped by SIGTERM while it lingers has recorded its version for the next delta', async () => {
    // The copy into the cache runs after the linger (cli/fetch-image.ts): a clean stop during it must still run it.
    const out = join(t.dir, 'node-c.img');
    const cache = join(t.dir, 'cache-c');
    const args = ['fetch', 'compute@1', '--head', head.url, '--trust', pub, '--out', out, '--cache', cache];
    const child = spawn(
      process.execPath,
      [join(projectRoot, 'bin/rackswarm.js'), ...args, '--linger', '3600', '--json'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('"seconds"')) resolve(); // complete and reported: now lingering
      });
      child.on('close', () => resolve());
    });
    child.kill('SIGTERM');
    const code = await exited;
    clearTimeout(timer);
    expect(code, stderr).toBe(0);
    expect(readFileSync(out).equals(v1)).toBe(true);

    const second = await fetch('compute@2', out, cache);
    expect(readFileSync(out).equals(v2)).toBe(true);
    expect(downloaded(second) / v2.length).toBeLessThanOrEqual(0.05);
  }, 240_000);

  it('without cached chunks, the previous output is the seed (desync-style)', async () => {
    const cache = join(t.dir, 'cache-b');
    await fetch('compute@1', join(t.dir, 'node-b-v1.img'), cache);
    rmSync(join(cache, 'chunks'), { recursive: true, force: true });
    const out2 = join(t.dir, 'node-b-v2.img');
    const second = await fetch('compute@2', out2, cache);
    expect(readFileSync(out2).equals(v2)).toBe(true);
    expect(downloaded(second) / v2.length).toBeLessThanOrEqual(0.05);
  }, 240_000);
});
