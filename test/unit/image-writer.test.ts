import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import type { ChunkRef } from '../../core/manifest.ts';
import { blockDeviceSize, ImageWriter, isAllZero } from '../../peer/image-writer.ts';
import { ResumeState } from '../../peer/resume-state.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir('rsw-writer-');
});
afterEach(() => t.cleanup());

/** Runs a command as root; throws (fails the test) when it is missing or fails. */
function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** An image of `lengths` chunks: pseudo-random, except the chunks listed in `zero`. */
function makeImage(lengths: number[], zero: number[] = []): { bytes: Buffer; chunks: ChunkRef[] } {
  const parts = lengths.map((len, i) =>
    zero.includes(i) ? Buffer.alloc(len) : pseudoRandomBytes(len, i + 1),
  );
  let offset = 0;
  const chunks = parts.map((p) => {
    const c = { offset, length: p.length, hash: hashHex(p) };
    offset += p.length;
    return c;
  });
  return { bytes: Buffer.concat(parts), chunks };
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

async function writeChunks(w: ImageWriter, img: { bytes: Buffer; chunks: ChunkRef[] }, which: number[]) {
  await Promise.all(
    which.map((i) =>
      w.write(
        img.chunks[i].offset,
        img.bytes.subarray(img.chunks[i].offset, img.chunks[i].offset + img.chunks[i].length),
      ),
    ),
  );
}

describe('image writer: regular file', () => {
  it('out-of-order concurrent positional writes produce the image, readable chunk by chunk', async () => {
    const img = makeImage([100 * KiB, 300 * KiB, 1, 64 * KiB + 7, 513 * KiB, 200 * KiB]);
    const out = join(t.dir, 'image.raw');
    const w = await ImageWriter.open(out, img.bytes.length);
    expect(w.kind).toBe('file');
    await writeChunks(w, img, shuffled([0, 1, 2, 3, 4, 5], 7));
    for (const c of img.chunks) expect(hashHex(await w.read(c.offset, c.length))).toBe(c.hash);
    await w.sync();
    await w.close();
    expect(readFileSync(out).equals(img.bytes)).toBe(true);
    expect(w.stats()).toEqual({ bytesWritten: img.bytes.length, bytesSkippedZero: 0 });
  });

  it('skips all-zero chunks on a fresh sparse file: they read back as zeros and allocate nothing', async () => {
    const img = makeImage([MiB, 2 * MiB, MiB, 4 * MiB], [1, 3]);
    const out = join(t.dir, 'sparse.raw');
    const w = await ImageWriter.open(out, img.bytes.length);
    await writeChunks(w, img, shuffled([0, 1, 2, 3], 3));
    await w.close();
    expect(w.stats()).toEqual({ bytesWritten: 2 * MiB, bytesSkippedZero: 6 * MiB });
    expect(readFileSync(out).equals(img.bytes)).toBe(true);
    expect(statSync(out).blocks * 512).toBeLessThan(3 * MiB); // the zero chunks stayed holes
  });

  it('keeps existing content on reopen (resume); a zero chunk is written over old bytes, skipped over a hole', async () => {
    const img = makeImage([MiB, MiB, MiB, MiB], [2, 3]);
    const out = join(t.dir, 'resume.raw');
    const w1 = await ImageWriter.open(out, img.bytes.length);
    await writeChunks(w1, img, [0]);
    await w1.close();
    // Something non-zero where chunk 2 (all zeros) goes; chunk 3's region is still a hole.
    const fh = await open(out, 'r+');
    await fh.write(Buffer.alloc(1000, 0xee), 0, 1000, img.chunks[2].offset + 5000);
    await fh.close();

    const w2 = await ImageWriter.open(out, img.bytes.length);
    expect(statSync(out).size).toBe(img.bytes.length);
    expect((await w2.read(0, MiB)).equals(img.bytes.subarray(0, MiB))).toBe(true); // not truncated
    await writeChunks(w2, img, [1, 2, 3]);
    await w2.close();
    expect(w2.stats()).toEqual({ bytesWritten: 2 * MiB, bytesSkippedZero: MiB });
    expect(readFileSync(out).equals(img.bytes)).toBe(true);
  });

  it('grows or shrinks an existing file of another size to the image size', async () => {
    const out = join(t.dir, 'other.raw');
    writeFileSync(out, Buffer.alloc(10 * KiB, 0xaa));
    const w = await ImageWriter.open(out, 20 * KiB);
    await w.write(16 * KiB, Buffer.alloc(4 * KiB)); // past the old end: a hole this writer made
    expect(w.stats().bytesSkippedZero).toBe(4 * KiB);
    await w.close();
    expect(
      readFileSync(out)
        .subarray(0, 10 * KiB)
        .equals(Buffer.alloc(10 * KiB, 0xaa)),
    ).toBe(true);
    await (await ImageWriter.open(out, 5 * KiB)).close();
    expect(statSync(out).size).toBe(5 * KiB);
  });

  it('refuses writes and reads outside the image', async () => {
    const w = await ImageWriter.open(join(t.dir, 'small.raw'), 100);
    await expect(w.write(90, Buffer.alloc(11, 1))).rejects.toThrow(RangeError);
    await expect(w.read(-1, 10)).rejects.toThrow(RangeError);
    await w.close();
  });

  it('refuses a directory, a character device and a missing directory with clear codes', async () => {
    await expect(ImageWriter.open(t.dir, 100)).rejects.toMatchObject({ code: 'RSW_ERR_NOT_A_FILE' });
    await expect(ImageWriter.open('/dev/null', 100)).rejects.toMatchObject({ code: 'RSW_ERR_NOT_A_FILE' });
    await expect(ImageWriter.open(join(t.dir, 'no', 'such', 'dir', 'x.raw'), 100)).rejects.toMatchObject({
      code: 'RSW_ERR_DATA_UNWRITABLE',
    });
  });

  it('detects all-zero data at any alignment and length', () => {
    expect(isAllZero(new Uint8Array(0))).toBe(true);
    const big = Buffer.alloc(3 * MiB + 5);
    expect(isAllZero(big.subarray(3))).toBe(true);
    big[big.length - 1] = 1;
    expect(isAllZero(big.subarray(3))).toBe(false);
    expect(isAllZero(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 2]))).toBe(false);
  });
});

describe('image writer: block device (loop device)', () => {
  const dir = tempDir('rsw-loop-');
  const backing = join(dir.dir, 'disk.img');
  let dev = '';
  beforeAll(() => {
    writeFileSync(backing, Buffer.alloc(4 * MiB, 0xff)); // a used disk: nothing reads as zero
    dev = sh('losetup', '--find', '--show', backing);
  });
  afterAll(() => {
    if (dev) sh('losetup', '--detach', dev);
    dir.cleanup();
  });

  it('reads the device size from sysfs, and by probing when sysfs is missing', async () => {
    const fh = await open(dev, 'r');
    const { rdev } = statSync(dev);
    expect(await blockDeviceSize(fh, rdev)).toBe(4 * MiB);
    expect(await blockDeviceSize(fh, rdev, join(dir.dir, 'no-sysfs'))).toBe(4 * MiB);
    await fh.close();
  });

  it('is not assumed zeroed: zero chunks are written, and the content is right', async () => {
    const img = makeImage([MiB, MiB, 512 * KiB], [1]);
    const w = await ImageWriter.open(dev, img.bytes.length);
    expect(w.kind).toBe('block');
    await writeChunks(w, img, [2, 1, 0]);
    await w.sync();
    await w.close();
    expect(w.stats()).toEqual({ bytesWritten: img.bytes.length, bytesSkippedZero: 0 });
    const onDisk = readFileSync(backing);
    expect(onDisk.subarray(0, img.bytes.length).equals(img.bytes)).toBe(true);
    expect(onDisk[img.bytes.length]).toBe(0xff); // untouched past the image
  });

  it('skips zero chunks when the caller says the device is zeroed', async () => {
    const w = await ImageWriter.open(dev, 2 * MiB, { assumeZeroed: true });
    await w.write(0, Buffer.alloc(MiB));
    await w.close();
    expect(w.stats()).toEqual({ bytesWritten: 0, bytesSkippedZero: MiB });
  });

  it('opens the device exclusively: a device in use is refused', async () => {
    const w = await ImageWriter.open(dev, MiB);
    await expect(ImageWriter.open(dev, MiB)).rejects.toMatchObject({
      code: 'RSW_ERR_DATA_UNWRITABLE',
      message: expect.stringContaining('in use'),
    });
    await w.close();
  });

  it('refuses a device smaller than the image', async () => {
    await expect(ImageWriter.open(dev, 4 * MiB + 1)).rejects.toMatchObject({
      code: 'RSW_ERR_DISK_FULL',
      message: expect.stringContaining('smaller than the image'),
    });
  });
});

describe('image writer: read-only and full filesystems (tmpfs)', () => {
  const dir = tempDir('rsw-mnt-');
  const ro = join(dir.dir, 'ro');
  const small = join(dir.dir, 'small');
  const mounted: string[] = [];
  beforeAll(() => {
    mkdirSync(ro);
    mkdirSync(small);
    sh('mount', '-t', 'tmpfs', '-o', 'size=4m', 'rsw-test-ro', ro);
    mounted.push(ro);
    writeFileSync(join(ro, 'existing.raw'), Buffer.alloc(1000));
    sh('mount', '-o', 'remount,ro', ro);
    sh('mount', '-t', 'tmpfs', '-o', 'size=1m', 'rsw-test-small', small);
    mounted.push(small);
  });
  afterAll(() => {
    for (const m of mounted) sh('umount', m);
    rmdirSync(ro);
    rmdirSync(small);
    dir.cleanup();
  });

  it('a read-only filesystem → RSW_ERR_DATA_UNWRITABLE, for a new file and an existing one', async () => {
    await expect(ImageWriter.open(join(ro, 'new.raw'), 1000)).rejects.toMatchObject({
      code: 'RSW_ERR_DATA_UNWRITABLE',
    });
    await expect(ImageWriter.open(join(ro, 'existing.raw'), 1000)).rejects.toMatchObject({
      code: 'RSW_ERR_DATA_UNWRITABLE',
    });
  });

  it('a full filesystem → RSW_ERR_DISK_FULL on write (the sparse file opened fine)', async () => {
    const w = await ImageWriter.open(join(small, 'big.raw'), 4 * MiB);
    await expect(w.write(0, pseudoRandomBytes(2 * MiB, 5))).rejects.toMatchObject({
      code: 'RSW_ERR_DISK_FULL',
    });
    await w.close();
  });
});

describe('resume record', () => {
  it('round trip: recorded batches survive a reopen; duplicates are ignored; remove deletes it', async () => {
    const file = join(t.dir, 'cache', 'img.resume');
    const s1 = await ResumeState.open(file, ID_A, 20_000);
    expect(s1.origin).toBe('new');
    await s1.markVerified([5, 3, 19_999]);
    await Promise.all([s1.markVerified([3, 7]), s1.markVerified([0])]);
    expect(s1.count).toBe(5);
    await s1.close();

    const s2 = await ResumeState.open(file, ID_A, 20_000);
    expect(s2.origin).toBe('resumed');
    expect(s2.indices()).toEqual([0, 3, 5, 7, 19_999]);
    expect(s2.has(7) && !s2.has(8)).toBe(true);
    await s2.markVerified(Array.from({ length: 20_000 }, (_, i) => i));
    expect(s2.count).toBe(20_000);
    await s2.close();
    expect(statSync(file).size).toBeLessThan(100 * KiB); // 20,000 chunks: 4 bytes each, plus headers
    const s3 = await ResumeState.open(file, ID_A, 20_000);
    expect(s3.count).toBe(20_000);
    await s3.remove();
    expect(() => statSync(file)).toThrow();
  });

  it('discards a record of another image (id or chunk count) and takes the file over', async () => {
    const file = join(t.dir, 'img.resume');
    const a = await ResumeState.open(file, ID_A, 10);
    await a.markVerified([1, 2]);
    await a.close();
    const b = await ResumeState.open(file, ID_B, 10);
    expect([b.origin, b.count]).toEqual(['foreign', 0]);
    await b.close();
    const a2 = await ResumeState.open(file, ID_A, 10); // A's claims did not survive B's start
    expect([a2.origin, a2.count]).toEqual(['foreign', 0]);
    await a2.markVerified([4]);
    await a2.close();
    const a3 = await ResumeState.open(file, ID_A, 11);
    expect([a3.origin, a3.count]).toEqual(['foreign', 0]);
    await a3.close();
  });

  it('discards a corrupt record, and keeps only the good prefix of a torn or damaged log', async () => {
    const file = join(t.dir, 'img.resume');
    writeFileSync(file, pseudoRandomBytes(500, 9));
    const garbage = await ResumeState.open(file, ID_A, 100);
    expect([garbage.origin, garbage.count]).toEqual(['corrupt', 0]);
    await garbage.close();
    writeFileSync(file, Buffer.alloc(0));
    const empty = await ResumeState.open(file, ID_A, 100);
    expect([empty.origin, empty.count]).toEqual(['corrupt', 0]);

    await empty.markVerified([1, 2]);
    await empty.markVerified([3]);
    await empty.markVerified([4, 5]);
    await empty.close();
    const good = readFileSync(file);
    const entry3 = 4 + 4 * 2 + 16; // the last entry: [4, 5]
    // Torn tail: the last entry half written.
    writeFileSync(file, good.subarray(0, good.length - entry3 / 2));
    const torn = await ResumeState.open(file, ID_A, 100);
    expect([torn.origin, torn.indices()]).toEqual(['resumed', [1, 2, 3]]);
    await torn.close();
    // A flipped bit in the second entry ([3]) drops it and everything after it.
    const damaged = Buffer.from(good);
    damaged[good.length - entry3 - 24 + 7] ^= 1; // the low byte of index 3
    writeFileSync(file, damaged);
    const d = await ResumeState.open(file, ID_A, 100);
    expect(d.indices()).toEqual([1, 2]);
    await d.close();
  });

  it('refuses indices outside the image', async () => {
    const s = await ResumeState.open(join(t.dir, 'r'), ID_A, 10);
    await expect(s.markVerified([10])).rejects.toThrow(RangeError);
    await s.close();
  });

  it('verifyRecorded drops recorded chunks that are not intact in the output', async () => {
    const img = makeImage([64 * KiB, 64 * KiB, 64 * KiB, 64 * KiB], [3]);
    const out = join(t.dir, 'out.raw');
    const w = await ImageWriter.open(out, img.bytes.length);
    await writeChunks(w, img, [0, 1, 2, 3]);
    await w.sync();
    const s = await ResumeState.open(join(t.dir, 'r'), ID_A, 4);
    await s.markVerified([0, 1, 2, 3]);
    const fh = await open(out, 'r+');
    await fh.write(Buffer.from('rot'), 0, 3, img.chunks[1].offset + 100); // another writer got there
    await fh.close();
    expect(await s.verifyRecorded(w, { chunks: img.chunks })).toEqual([1]);
    expect(s.indices()).toEqual([0, 2, 3]);
    await s.close();
    const again = await ResumeState.open(join(t.dir, 'r'), ID_A, 4);
    expect(again.indices()).toEqual([0, 2, 3]);
    await again.close();
    await w.close();
  });
});
