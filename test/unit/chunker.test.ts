import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Chunk,
  type ChunkerParams,
  chunkBuffer,
  chunkStream,
  findCut,
  validateChunkerParams,
} from '../../core/chunker.ts';
import { loadConfig } from '../../core/config.ts';
import { hashHex } from '../../core/hash.ts';
import { makeTree, mksquashfs, mutateTree, prng, seededBytes } from '../fixtures/tree.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The shipped defaults, from the one place that defines them. */
const DEFAULTS: ChunkerParams = loadConfig().chunker;
/** Small chunks, so that a few MiB of input gives hundreds of them. */
const SMALL: ChunkerParams = { minSize: 2 * KiB, avgSize: 8 * KiB, maxSize: 32 * KiB };

/** Feeds `data` to a consumer in pieces whose sizes come from `nextSize`. */
async function* inPieces(data: Uint8Array, nextSize: () => number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; ) {
    const size = Math.max(1, nextSize());
    yield data.subarray(at, at + size);
    at += size;
  }
}

async function collect(source: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const out: Chunk[] = [];
  for await (const c of source) out.push(c);
  return out;
}

const lengths = (chunks: Chunk[]): number[] => chunks.map((c) => c.length);
const hashes = (chunks: Chunk[]): string[] => chunks.map((c) => hashHex(c.data));

describe('chunkBuffer', () => {
  const data = seededBytes(4 * MiB, 1);

  it('cuts random data into chunks of minSize..maxSize bytes, only the last one may be shorter', () => {
    const chunks = chunkBuffer(data, SMALL);
    expect(chunks.length).toBeGreaterThan(100);
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThan(SMALL.minSize);
      expect(c.length).toBeLessThanOrEqual(SMALL.maxSize);
    }
    expect(chunks.at(-1)?.length).toBeLessThanOrEqual(SMALL.maxSize);
  });

  it('gives chunks that concatenate back to the input, each at its offset', () => {
    const chunks = chunkBuffer(data, SMALL);
    let offset = 0;
    for (const c of chunks) {
      expect(c.offset).toBe(offset);
      expect(c.data.length).toBe(c.length);
      offset += c.length;
    }
    expect(Buffer.concat(chunks.map((c) => c.data)).equals(data)).toBe(true);
  });

  it('averages close to avgSize on random data (normalized chunking)', () => {
    const chunks = chunkBuffer(data, SMALL);
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(0.8 * SMALL.avgSize);
    expect(mean).toBeLessThan(1.4 * SMALL.avgSize);
  });

  it('cuts an all-zero input at maxSize', () => {
    const max = DEFAULTS.maxSize;
    expect(lengths(chunkBuffer(Buffer.alloc(2.5 * max + 5), DEFAULTS))).toEqual([max, max, max / 2 + 5]);
    expect(new Set(lengths(chunkBuffer(Buffer.alloc(SMALL.maxSize * 10), SMALL)))).toEqual(
      new Set([SMALL.maxSize]),
    );
  });

  it('returns one chunk for an input no longer than minSize, and none for an empty one', () => {
    expect(lengths(chunkBuffer(data.subarray(0, SMALL.minSize), SMALL))).toEqual([SMALL.minSize]);
    expect(chunkBuffer(new Uint8Array(0), SMALL)).toEqual([]);
  });

  it('copies chunk data, so the input buffer may be reused', () => {
    const input = Buffer.from(data.subarray(0, 256 * KiB));
    const chunks = chunkBuffer(input, SMALL);
    const before = hashes(chunks);
    input.fill(0xaa);
    expect(hashes(chunks)).toEqual(before);
  });

  it('does not depend on where the input sits in memory (word-aligned or not)', () => {
    const expected = lengths(chunkBuffer(data.subarray(0, MiB), SMALL));
    for (const shift of [1, 2, 3, 5]) {
      const shifted = new Uint8Array(MiB + shift).subarray(shift);
      shifted.set(data.subarray(0, MiB));
      expect(lengths(chunkBuffer(shifted, SMALL))).toEqual(expected);
    }
  });
});

describe('findCut', () => {
  const data = seededBytes(MiB, 2);

  it('returns what is available when no more than minSize bytes are left', () => {
    expect(findCut(data, 100, 100 + SMALL.minSize, SMALL)).toBe(SMALL.minSize);
    expect(findCut(data, 100, 107, SMALL)).toBe(7);
    expect(findCut(data, 100, 100, SMALL)).toBe(0);
  });

  it('depends only on the bytes from start on, not on the offset of start', () => {
    for (const start of [0, 1, 4097, 300_001]) {
      const own = findCut(data.subarray(start), 0, data.length - start, SMALL);
      expect(findCut(data, start, data.length, SMALL)).toBe(own);
    }
  });

  it('never looks past end: a cut short of maxSize is only "end" when the data runs out', () => {
    const full = findCut(data, 0, data.length, SMALL);
    expect(findCut(data, 0, full, SMALL)).toBe(full);
    expect(findCut(data, 0, full - 1, SMALL)).toBe(full - 1);
  });
});

describe('chunkStream', () => {
  const data = seededBytes(3 * MiB + 12345, 3);

  it('yields exactly the chunks of chunkBuffer, however the input is split into pieces', async () => {
    const expected = lengths(chunkBuffer(data, SMALL));
    for (const seed of [1, 2, 3, 4]) {
      const next = prng(seed);
      const chunks = await collect(
        chunkStream(
          inPieces(data, () => next() % (3 * SMALL.maxSize)),
          SMALL,
        ),
      );
      expect(lengths(chunks)).toEqual(expected);
      expect(Buffer.concat(chunks.map((c) => c.data)).equals(data)).toBe(true);
    }
  });

  it('handles 1-byte pieces', async () => {
    const small = data.subarray(0, 200 * KiB);
    const chunks = await collect(
      chunkStream(
        inPieces(small, () => 1),
        SMALL,
      ),
    );
    expect(lengths(chunks)).toEqual(lengths(chunkBuffer(small, SMALL)));
    expect(chunks.map((c) => c.offset)).toEqual(chunkBuffer(small, SMALL).map((c) => c.offset));
  });

  it('handles pieces as large as maxSize and larger (default params)', async () => {
    const max = DEFAULTS.maxSize;
    const big = seededBytes(6 * max, 4);
    const expected = lengths(chunkBuffer(big, DEFAULTS));
    for (const pieceSize of [max, max + max / 4 + 3, 2 * max + 1]) {
      const chunks = await collect(
        chunkStream(
          inPieces(big, () => pieceSize),
          DEFAULTS,
        ),
      );
      expect(lengths(chunks)).toEqual(expected);
    }
  });

  it('keeps yielded chunks intact when the source reuses its piece buffer', async () => {
    const reused = Buffer.alloc(5000);
    async function* reusingSource(): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < data.length; at += reused.length) {
        const n = data.copy(reused, 0, at, at + reused.length);
        yield reused.subarray(0, n);
      }
    }
    const chunks = await collect(chunkStream(reusingSource(), SMALL));
    expect(hashes(chunks)).toEqual(hashes(chunkBuffer(data, SMALL)));
  });

  it('yields nothing for an empty source and rejects bad params before reading', async () => {
    expect(
      await collect(
        chunkStream(
          inPieces(new Uint8Array(0), () => 1),
          SMALL,
        ),
      ),
    ).toEqual([]);
    await expect(
      collect(
        chunkStream(
          inPieces(data, () => 1),
          { ...SMALL, avgSize: 9000 },
        ),
      ),
    ).rejects.toThrow(/power of two/);
  });
});

describe('edits to a 16 MiB image change only the chunks around them', () => {
  const original = seededBytes(16 * MiB, 5);

  /**
   * Indexes of the chunks of `edited` that are not chunks of `original`, relative to the chunk holding byte `at`
   * (where the edit is): [0] or [0, 1] when only the chunks around the edit changed.
   */
  function changedAround(edited: Uint8Array, at: number, p: ChunkerParams): number[] {
    const known = new Set(hashes(chunkBuffer(original, p)));
    const chunks = chunkBuffer(edited, p);
    const hit = chunks.findIndex((c) => c.offset + c.length > at);
    return chunks.flatMap((c, i) => (known.has(hashHex(c.data)) ? [] : [i - hit]));
  }

  for (const [name, p] of [
    ['default params', DEFAULTS],
    ['small chunks', SMALL],
  ] as const) {
    it(`inserting 7 bytes at 100 KiB changes only the chunk there and maybe the next (${name})`, () => {
      const at = 100 * KiB;
      const edited = Buffer.concat([original.subarray(0, at), Buffer.from('rackswm'), original.subarray(at)]);
      expect([[0], [0, 1]]).toContainEqual(changedAround(edited, at, p));
    });

    it(`deleting 300 bytes at 1 MiB changes only the chunk there and maybe the next (${name})`, () => {
      const at = 1 * MiB;
      const edited = Buffer.concat([original.subarray(0, at), original.subarray(at + 300)]);
      expect([[0], [0, 1]]).toContainEqual(changedAround(edited, at, p));
    });
  }
});

describe('pinned boundaries: part of the image format, must never change silently', () => {
  // If these fail after a change to core/chunker.ts, that change re-chunks every published image: peers would
  // no longer share chunks across versions. Only update the pins with a deliberate, announced format change.
  const input = seededBytes(8 * MiB, 0x5eed);

  it('uses the same input as when the pins were taken', () => {
    expect(hashHex(input)).toBe('86fecc3547827a1b702023034cc91650a132fb8fef224b3997122d05c1989f51');
  });

  it('cuts the pinned input at the same places with 256K / 1M / 4M', () => {
    expect(lengths(chunkBuffer(input, { minSize: 256 * KiB, avgSize: 1 * MiB, maxSize: 4 * MiB }))).toEqual([
      1054846, 809523, 1068577, 1297426, 1635938, 590961, 1141165, 790172,
    ]);
  });

  it('cuts the pinned input at the same places with 128K / 512K / 2M', () => {
    expect(lengths(chunkBuffer(input, { minSize: 128 * KiB, avgSize: 512 * KiB, maxSize: 2 * MiB }))).toEqual(
      [
        620618, 712127, 577055, 219524, 703251, 538294, 607417, 470881, 551058, 576921, 652668, 500431,
        552245, 567945, 538173,
      ],
    );
  });

  it('cuts the pinned input at the same places with small chunks', () => {
    const chunks = chunkBuffer(input, SMALL);
    expect(lengths(chunks).slice(0, 8)).toEqual([10212, 10764, 6024, 7421, 10510, 7432, 12184, 12447]);
    expect({ count: chunks.length, digest: hashHex(Buffer.from(lengths(chunks).join(','))) }).toEqual({
      count: 899,
      digest: '7b71120c51afb5b877deb7ab0578614581bdf22486581b4fdac551a0bf699dfc',
    });
  });
});

describe('validateChunkerParams', () => {
  it('accepts the defaults and the small test params', () => {
    expect(() => validateChunkerParams(DEFAULTS)).not.toThrow();
    expect(() => validateChunkerParams(SMALL)).not.toThrow();
  });

  it.each([
    [{ minSize: 32, avgSize: 128, maxSize: 512 }, /minSize must be at least 64/],
    [{ minSize: 256 * KiB, avgSize: 1000 * KiB, maxSize: 4 * MiB }, /avgSize must be a power of two/],
    [{ minSize: 1 * MiB, avgSize: 1 * MiB, maxSize: 4 * MiB }, /minSize < avgSize < maxSize/],
    [{ minSize: 256 * KiB, avgSize: 1 * MiB, maxSize: 1 * MiB }, /minSize < avgSize < maxSize/],
    [{ minSize: 2 * MiB, avgSize: 1 * MiB, maxSize: 4 * MiB }, /minSize < avgSize < maxSize/],
    [{ minSize: 256 * KiB, avgSize: 32 * MiB, maxSize: 128 * MiB }, /maxSize must be at most 64 MiB/],
    [{ minSize: 1.5, avgSize: 1 * MiB, maxSize: 4 * MiB }, /minSize must be a positive integer/],
    [{ minSize: 256 * KiB, avgSize: Number.NaN, maxSize: 4 * MiB }, /avgSize must be a positive integer/],
  ])('rejects %o', (p, message) => {
    expect(() => validateChunkerParams(p)).toThrow(message);
  });
});

describe('test fixtures the chunker benchmark relies on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rsw-chunker-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makeTree + mksquashfs give byte-identical images for the same seed, another after mutateTree', () => {
    const image = (name: string, seed: number, mutate: boolean): Buffer => {
      const tree = join(dir, name);
      makeTree(tree, { files: 40, seed, meanSize: 16 * KiB });
      if (mutate) expect(mutateTree(tree, { fraction: 0.1, seed: 9 })).toEqual({ changedFiles: 4 });
      mksquashfs(tree, `${tree}.sqfs`);
      return readFileSync(`${tree}.sqfs`);
    };
    const a = image('a', 1, false);
    expect(image('b', 1, false).equals(a)).toBe(true);
    expect(image('c', 1, true).equals(a)).toBe(false);
  });
});
