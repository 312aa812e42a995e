import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { hashHex } from '../../core/hash.ts';
import type { FetchFlow } from '../../peer/fetcher.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let key: string;
let pub: string;
let imageHash: string;
const SIZE = 128 * MiB;

function fetchArgs(n: string, ...extra: string[]): string[] {
  return [
    'fetch',
    'compute',
    '--head',
    head.url,
    '--trust',
    pub,
    '--out',
    join(t.dir, `out-${n}.img`),
    '--cache',
    join(t.dir, `cache-${n}`),
    '--json',
    ...extra,
  ];
}

function lastJson(stdout: string): FetchSummary {
  return JSON.parse(stdout.trim().split('\n').pop() as string) as FetchSummary;
}

beforeAll(async () => {
  t = tempDir('rsw-fetch-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  key = join(t.dir, 'keys/publisher.key');
  pub = join(t.dir, 'keys/publisher.pub');
  const img = join(t.dir, 'image.bin');
  const data = Buffer.concat([pseudoRandomBytes(SIZE - 8 * MiB, 7), Buffer.alloc(8 * MiB)]); // with a zero run
  writeFileSync(img, data);
  imageHash = hashHex(data);
  head = await startHead(join(t.dir, 'head'));
  const p = await publishToHead(head.url, join(t.dir, 'head/admin-token'), img, 'compute', key);
  expect(p.code, p.stderr).toBe(0);
}, 120_000);
afterAll(async () => {
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('rackswarm fetch', () => {
  it('8 nodes fetch a 128 MiB image at once through the swarm, all bit-identical', async () => {
    const runs = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        runCli(fetchArgs(`s${i}`, '--linger', '3', '--rack', `r${i % 2}`), { timeoutMs: 240_000 }),
      ),
    );
    const summaries = runs.map((r, i) => {
      expect(r.code, `node ${i}: ${r.stderr}`).toBe(0);
      return lastJson(r.stdout);
    });
    for (let i = 0; i < 8; i++) {
      expect(hashHex(readFileSync(join(t.dir, `out-s${i}.img`)))).toBe(imageHash);
      const s = summaries[i];
      expect(s.size).toBe(SIZE);
      expect(s.bytesFromPeers + s.bytesFromSeeder + s.bytesReused).toBeGreaterThanOrEqual(SIZE - 8 * MiB);
      // The data phase (first chunk request to last chunk verified) is part of the whole, which also holds the start.
      expect(s.dataSeconds).toBeGreaterThan(0);
      expect(s.dataSeconds).toBeLessThan(s.seconds);
    }
    const fromPeers = summaries.reduce((a, s) => a + s.bytesFromPeers, 0);
    expect(fromPeers).toBeGreaterThan(0); // the swarm served itself, not only the head
    // Each node's last progress line: its flow counters (peer/fetcher.ts FetchFlow). With peer.pipelineBatches 2 (the
    // default) some batches were asked while another was in flight to the same peer, and every chunk that came was
    // counted in a batch (of the bytes it received: endgame copies that lost the race too).
    const flows = runs.map((r) => {
      const line = r.stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{"progress"'))
        .pop() as string;
      return JSON.parse(line).flow as FetchFlow;
    });
    expect(flows.reduce((a, f) => a + f.batchesPipelined, 0)).toBeGreaterThan(0);
    for (const [i, f] of flows.entries()) {
      expect(f.batchChunks).toBeGreaterThan(0);
      // (endgame copies that lost the race count in their batch, not in the summary)
      expect(f.batchBytes).toBeGreaterThanOrEqual(summaries[i].bytesFromPeers + summaries[i].bytesFromSeeder);
    }
  }, 300_000);

  it('resumes after a SIGKILL and fetches only what is missing', async () => {
    // A head of its own whose seeder sends at most 16 MiB/s, so the kill lands mid-way.
    const config = join(t.dir, 'slow-head.json');
    writeFileSync(config, JSON.stringify({ seeder: { totalBytesPerSecond: 16 * MiB } }));
    const slow = await startHead(join(t.dir, 'head-slow'), [], ['--config', config]);
    try {
      const p = await publishToHead(
        slow.url,
        join(t.dir, 'head-slow/admin-token'),
        join(t.dir, 'image.bin'),
        'compute',
        key,
      );
      expect(p.code, p.stderr).toBe(0);
      const args = fetchArgs('k', '--linger', '0').map((a) => (a === head.url ? slow.url : a));
      const child = spawn(process.execPath, [join(projectRoot, 'bin/rackswarm.js'), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const closed = new Promise((r) => child.on('close', r));
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no progress: ${out}`)), 60_000);
        child.stdout.on('data', (d) => {
          out += d;
          const m = [...out.matchAll(/"bytesDone":(\d+)/g)].pop();
          if (m && Number(m[1]) > SIZE / 8) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      child.kill('SIGKILL');
      await closed;
      expect(out).not.toContain('"seconds"'); // killed before its final summary line
      const again = await runCli(args, { timeoutMs: 120_000 });
      expect(again.code, again.stderr).toBe(0);
      const s = lastJson(again.stdout);
      expect(s.bytesReused).toBeGreaterThan(0);
      expect(s.bytesFromPeers + s.bytesFromSeeder).toBeLessThanOrEqual(SIZE - s.bytesReused);
      expect(hashHex(readFileSync(join(t.dir, 'out-k.img')))).toBe(imageHash);
    } finally {
      await slow.stop();
    }
  }, 180_000);

  it('writes the image onto a block device (a real loop device), as a reimage does', async () => {
    const backing = join(t.dir, 'disk.raw');
    writeFileSync(backing, Buffer.alloc(SIZE + 4 * MiB, 0xff)); // a "disk" with old contents, a bit larger than the image
    const dev = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    try {
      const args = fetchArgs('dev', '--linger', '0').map((a) => (a === join(t.dir, 'out-dev.img') ? dev : a));
      const r = await runCli(args, { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const written = readFileSync(backing).subarray(0, SIZE);
      expect(hashHex(written)).toBe(imageHash); // zero runs are written too: a disk is not known to be zeroed
      expect(
        readFileSync(backing)
          .subarray(SIZE)
          .every((b) => b === 0xff),
      ).toBe(true); // nothing past the image
    } finally {
      execFileSync('losetup', ['--detach', dev]);
    }
  }, 180_000);

  it('refuses an unknown image, an untrusted key, an unreachable head and an unwritable target', async () => {
    const unknown = await runCli([
      'fetch',
      'nothere',
      '--head',
      head.url,
      '--trust',
      pub,
      '--out',
      join(t.dir, 'x'),
      '--cache',
      join(t.dir, 'c1'),
    ]);
    expect(unknown.stderr).toMatch(/^error RSW_ERR_IMAGE_NOT_FOUND: /);
    await runCli(['keys', 'generate', '--out', join(t.dir, 'other')]);
    const untrusted = await runCli([
      'fetch',
      'compute',
      '--head',
      head.url,
      '--trust',
      join(t.dir, 'other/publisher.pub'),
      '--out',
      join(t.dir, 'y'),
      '--cache',
      join(t.dir, 'c2'),
    ]);
    expect(untrusted.stderr).toMatch(/^error RSW_ERR_UNTRUSTED_KEY: /);
    const unreachable = await runCli([
      'fetch',
      'compute',
      '--head',
      'http://127.0.0.1:1',
      '--trust',
      pub,
      '--out',
      join(t.dir, 'z'),
      '--cache',
      join(t.dir, 'c3'),
    ]);
    expect(unreachable.stderr).toMatch(/^error RSW_ERR_HEAD_UNREACHABLE: /);
    const dir = await runCli([
      'fetch',
      'compute',
      '--head',
      head.url,
      '--trust',
      pub,
      '--out',
      t.dir,
      '--cache',
      join(t.dir, 'c4'),
    ]);
    expect(dir.code).not.toBe(0);
    expect(dir.stderr).toMatch(/^error RSW_ERR_[A-Z_]+: /);
    for (const r of [unknown, untrusted, unreachable, dir])
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
  }, 120_000);
});
