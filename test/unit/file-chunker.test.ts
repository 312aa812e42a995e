import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ChunkerParams, chunkBuffer } from '../../core/chunker.ts';
import { loadConfig } from '../../core/config.ts';
import { type Cutter, cdcCutter, chunkFile, type SlabBatch, slabBytesFor } from '../../core/file-chunker.ts';
import { hash, hashHex } from '../../core/hash.ts';
import { HashPool } from '../../core/hash-pool.ts';
import { SlabPool } from '../../core/slab-pool.ts';
import { chunkRegions, planSquashfsChunks, regionCutter } from '../../core/squashfs-chunker.ts';
import { squashfsLayout } from '../../core/squashfs-layout.ts';
import { makeTree, mksquashfs } from '../fixtures/tree.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const KiB = 1024;
const SMALL: ChunkerParams = { minSize: 2 * KiB, avgSize: 8 * KiB, maxSize: 32 * KiB };
const t = tempDir('rsw-file-chunker-');
afterAll(() => t.cleanup());

interface Cut {
  offset: number;
  length: number;
  hash: string;
}

/** Every chunk chunkFile yields, hashed from its slab, each slab released once read (as publish does). */
async function cutFile(
  file: string,
  size: number,
  cutter: Cutter,
  readBytes: number,
  slabs = 3,
): Promise<Cut[]> {
  const pool = new SlabPool(slabs, slabBytesFor(cutter, readBytes));
  const fh = await open(file, 'r');
  try {
    const out: Cut[] = [];
    for await (const b of chunkFile(fh, size, cutter, pool)) {
      for (const c of b.chunks)
        out.push({
          offset: c.offset,
          length: c.length,
          hash: hashHex(b.slab.subarray(c.at, c.at + c.length)),
        });
      pool.release(b.slab);
    }
    return out;
  } finally {
    await fh.close();
  }
}

const cuts = (chunks: { offset: number; length: number; data: Buffer }[]): Cut[] =>
  chunks.map((c) => ({ offset: c.offset, length: c.length, hash: hashHex(c.data) }));

describe('chunkFile', () => {
  // Random bytes with a long zero run in the middle (forced maxSize cuts) and a short tail.
  const data = Buffer.concat([
    pseudoRandomBytes(600 * KiB, 3),
    Buffer.alloc(200 * KiB),
    pseudoRandomBytes(77_777, 4),
  ]);
  const file = join(t.dir, 'data.bin');
  writeFileSync(file, data);

  it.each([
    ['reads of maxSize + 1 bytes', SMALL.maxSize + 1],
    ['exactly maxSize per read', SMALL.maxSize],
    ['reads of an odd size', 3 * SMALL.maxSize + 7],
    ['the whole file in one read', 2 * data.length],
  ])('gives the same chunks as chunkBuffer: %s', async (_what, readBytes) => {
    expect(await cutFile(file, data.length, cdcCutter(SMALL), readBytes)).toEqual(
      cuts(chunkBuffer(data, SMALL)),
    );
  });

  it('gives the same chunks as chunkBuffer with the shipped defaults over several slabs', async () => {
    const p = loadConfig().chunker;
    const big = pseudoRandomBytes(9 * p.maxSize + 12_345, 5);
    const bigFile = join(t.dir, 'big.bin');
    writeFileSync(bigFile, big);
    expect(await cutFile(bigFile, big.length, cdcCutter(p), p.maxSize + 4096)).toEqual(
      cuts(chunkBuffer(big, p)),
    );
  });

  it('cuts inputs shorter than minSize, and of one byte, into one chunk', async () => {
    for (const n of [1, SMALL.minSize - 1, SMALL.minSize]) {
      const f = join(t.dir, `short-${n}.bin`);
      writeFileSync(f, data.subarray(0, n));
      expect(await cutFile(f, n, cdcCutter(SMALL), SMALL.maxSize)).toEqual(
        cuts(chunkBuffer(data.subarray(0, n), SMALL)),
      );
    }
  });

  it('cuts a real SquashFS image exactly as chunkRegions does', async () => {
    const P = loadConfig().chunker.squashfs;
    const tree = join(t.dir, 'tree');
    makeTree(tree, { files: 120, seed: 21 });
    const img = join(t.dir, 'tree.squashfs');
    mksquashfs(tree, img);
    const fh = await open(img, 'r');
    try {
      const { size } = await fh.stat();
      const layout = await squashfsLayout(async (o, l) => {
        const b = Buffer.alloc(Math.min(l, size - o));
        await fh.read(b, 0, b.length, o);
        return b;
      }, size);
      if (!layout) throw new Error('mksquashfs made an image whose layout cannot be read');
      const regions = planSquashfsChunks(layout, size, P);
      const expected: Cut[] = [];
      for await (const c of chunkRegions(fh, regions, P)) expected.push(...cuts([c]));
      expect(expected.length).toBeGreaterThan(20);
      for (const readBytes of [P.maxSize, 1024 * KiB])
        expect(await cutFile(img, size, regionCutter(regions, P), readBytes)).toEqual(expected);
    } finally {
      await fh.close();
    }
  });

  it('holds no more slabs than the pool has: it waits for the consumer to give one back', async () => {
    const cutter = cdcCutter(SMALL);
    const pool = new SlabPool(2, slabBytesFor(cutter, SMALL.maxSize));
    const fh = await open(file, 'r');
    try {
      const gen = chunkFile(fh, data.length, cutter, pool);
      const first = await gen.next(); // the reader holds the other slab, reading ahead
      const pending = gen.next();
      const state = await Promise.race([
        pending.then(() => 'yielded'),
        new Promise((r) => setImmediate(r, 'waiting')),
      ]);
      expect(state).toBe('waiting');
      pool.release((first.value as SlabBatch).slab);
      expect((await pending).done).toBe(false);
      await gen.return(undefined);
    } finally {
      await fh.close();
    }
  });

  it('says the image changed when it is shorter than its size', async () => {
    await expect(cutFile(file, data.length + 100_000, cdcCutter(SMALL), SMALL.maxSize)).rejects.toMatchObject(
      {
        code: 'RSW_ERR_FILE_UNREADABLE',
      },
    );
  });
});

describe('HashPool', () => {
  it.each([0, 1, 2])(
    'gives BLAKE3 of each range with %i threads, and the slab stays readable',
    async (threads) => {
      const pool = new SlabPool(2, 1024 * KiB);
      const slab = await pool.acquire();
      pseudoRandomBytes(slab.length, 9).copy(slab);
      const ranges = [0, 1, 5, 1000, 4096, 500 * KiB, 1024 * KiB - 7, 7];
      const hasher = new HashPool({ threads });
      try {
        const results = await Promise.all([
          hasher.hashRanges(slab, ranges),
          hasher.hashRanges(slab, ranges.slice(2)),
        ]);
        const expected = (rs: number[]) =>
          Buffer.concat(
            Array.from({ length: rs.length / 2 }, (_, k) =>
              hash(slab.subarray(rs[2 * k], rs[2 * k] + rs[2 * k + 1])),
            ),
          );
        expect(results[0].equals(expected(ranges))).toBe(true);
        expect(results[1].equals(expected(ranges.slice(2)))).toBe(true);
      } finally {
        await hasher.close();
      }
    },
  );

  it('refuses, with threads, a buffer that is not a shared slab', async () => {
    const hasher = new HashPool({ threads: 1 });
    try {
      await expect(hasher.hashRanges(Buffer.alloc(10), [0, 10])).rejects.toThrow(/SharedArrayBuffer/);
    } finally {
      await hasher.close();
    }
  });
});
