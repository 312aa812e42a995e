// RELIABILITY item 11: a whole `rackswarm fetch` that fills its disk. The output lives on a small tmpfs this test
// mounts (and unmounts), partly taken by a filler file: the fetch fails with RSW_ERR_DISK_FULL, prints no summary,
// and records as verified only chunks whose bytes are in the output; once the filler is deleted, the same command
// resumes (reusing those chunks) and finishes bit-identical.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { hashHex } from '../../core/hash.ts';
import { loadPublicKey } from '../../core/keys.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { ResumeState } from '../../peer/resume-state.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let head: RunningHead | undefined;
let mounted: string | undefined;

beforeAll(() => {
  t = tempDir('rsw-disk-full-');
});
afterAll(async () => {
  await head?.stop('SIGKILL');
  if (mounted) execFileSync('umount', [mounted]);
  t?.cleanup();
});

describe('a fetch that fills its disk', () => {
  it('fails with RSW_ERR_DISK_FULL, marks nothing it did not write, and resumes to a bit-identical image once space is freed', async () => {
    const keys = join(t.dir, 'keys');
    expect((await runCli(['keys', 'generate', '--out', keys])).code).toBe(0);
    head = await startHead(join(t.dir, 'head'));
    const image = pseudoRandomBytes(32 * MiB, 1111);
    writeFileSync(join(t.dir, 'image.bin'), image);
    const p = await publishToHead(
      head.url,
      join(t.dir, 'head/admin-token'),
      join(t.dir, 'image.bin'),
      'img',
      join(keys, 'publisher.key'),
    );
    expect(p.code, p.stderr).toBe(0);

    // 40 MiB of tmpfs, 20 MiB of it taken: the 32 MiB image cannot fit until the filler goes.
    const disk = join(t.dir, 'disk');
    mkdirSync(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'rsw-test-disk-full', disk]);
    mounted = disk;
    writeFileSync(join(disk, 'filler'), Buffer.alloc(20 * MiB, 1));
    const cache = join(t.dir, 'cache');
    const args = [
      'fetch',
      'img',
      '--head',
      head.url,
      '--trust',
      join(keys, 'publisher.pub'),
      '--out',
      join(disk, 'image.out'),
      '--cache',
      cache,
      '--linger',
      '0',
      '--json',
    ];

    const full = await runCli(args);
    expect(full.code, full.stderr).not.toBe(0);
    expect(full.stderr).toMatch(/^error RSW_ERR_DISK_FULL: /m);
    const lines = full.stdout.trim().split('\n').filter(Boolean);
    expect(
      lines.some((l) => typeof (JSON.parse(l) as { seconds?: number }).seconds === 'number'),
      'no summary: the fetch did not report itself complete',
    ).toBe(false);

    // Nothing marked complete that is not there: each chunk the resume record calls verified is in the output.
    const res = await fetch(`${head.url}/api/images/img/latest/manifest`);
    const opened = openSignedManifest(
      Buffer.from(await res.arrayBuffer()),
      [await loadPublicKey(join(keys, 'publisher.pub'))],
      {
        maxBytes: 16 * MiB,
      },
    );
    const chunks = opened.manifest.chunks;
    const resume = await ResumeState.open(join(cache, `${opened.id}.resume`), opened.id, chunks.length);
    const recorded = resume.indices();
    await resume.close();
    // The chunks written before the disk filled (~20 MiB of 32) are recorded, not lost with the failure.
    expect(recorded.length, 'chunks written before the disk filled').toBeGreaterThan(chunks.length / 4);
    expect(recorded.length).toBeLessThan(chunks.length);
    const out = await open(join(disk, 'image.out'), 'r');
    try {
      for (const i of recorded) {
        const c = chunks[i];
        const buf = Buffer.alloc(c.length);
        await out.read(buf, 0, c.length, c.offset);
        expect(hashHex(buf), `recorded chunk ${i}`).toBe(c.hash);
      }
    } finally {
      await out.close();
    }

    // Space freed: the same command resumes and completes.
    execFileSync('rm', [join(disk, 'filler')]);
    const again = await runCli(args);
    expect(again.code, again.stderr).toBe(0);
    const summary = JSON.parse(again.stdout.trim().split('\n').pop() as string) as FetchSummary;
    expect(summary.size).toBe(image.length);
    // Every chunk recorded before the disk filled is reused, not fetched again.
    const recordedBytes = recorded.reduce((a, i) => a + chunks[i].length, 0);
    expect(summary.bytesReused).toBeGreaterThanOrEqual(recordedBytes);
    expect(hashHex(readFileSync(join(disk, 'image.out')))).toBe(hashHex(image));
    console.log(
      `disk full: ${recorded.length}/${chunks.length} chunks recorded at the failure; the resume reused ${(summary.bytesReused / MiB).toFixed(1)} MiB and fetched ${((summary.bytesFromPeers + summary.bytesFromSeeder) / MiB).toFixed(1)} MiB`,
    );
  }, 150_000);
});
