import { cpSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chunkBuffer } from '../../core/chunker.ts';
import { loadConfig } from '../../core/config.ts';
import { hashHex } from '../../core/hash.ts';
import { chunkRegions, planSquashfsChunks } from '../../core/squashfs-chunker.ts';
import { squashfsLayout } from '../../core/squashfs-layout.ts';
import { makeTree, mksquashfs, mutateTree } from '../fixtures/tree.ts';
import { tempDir } from '../helpers/cli.ts';

const KiB = 1024;
const P = loadConfig().chunker.squashfs;
const t = tempDir('rsw-sqfs-chunker-');
afterAll(() => t.cleanup());

async function blockChunks(file: string) {
  const image = readFileSync(file);
  const layout = await squashfsLayout(async (o, l) => image.subarray(o, o + l), image.length);
  if (!layout) return undefined;
  const fh = await open(file, 'r');
  try {
    const chunks: { offset: number; length: number; hash: string; data: Buffer }[] = [];
    for await (const c of chunkRegions(fh, planSquashfsChunks(layout, image.length, P), P))
      chunks.push({ ...c, hash: hashHex(c.data) });
    return { image, layout, chunks };
  } finally {
    await fh.close();
  }
}

function newShare(prev: { hash: string }[], next: { hash: string; length: number }[]): number {
  const known = new Set(prev.map((c) => c.hash));
  const total = next.reduce((s, c) => s + c.length, 0);
  return next.filter((c) => !known.has(c.hash)).reduce((s, c) => s + c.length, 0) / total;
}

describe('planSquashfsChunks', () => {
  it('cuts at block boundaries, merges small blocks, leaves long stretches and the metadata to FastCDC', () => {
    const layout = {
      boundaries: [96, 50_000, 60_000, 61_000, 200_000, 330_000],
      metadataStart: 330_000,
      bytesUsed: 339_000,
    };
    expect(
      planSquashfsChunks(layout, 340_000, { minSize: 8 * KiB, avgSize: 32 * KiB, maxSize: 128 * KiB }),
    ).toEqual([
      { start: 0, end: 96, mode: 'block' }, // the superblock alone: it changes with every version
      { start: 96, end: 50_000, mode: 'block' },
      { start: 50_000, end: 60_000, mode: 'block' },
      { start: 60_000, end: 200_000, mode: 'cdc' }, // 1000-byte block merged on, then longer than maxSize
      { start: 200_000, end: 330_000, mode: 'block' },
      { start: 330_000, end: 340_000, mode: 'cdc' }, // inode, directory, fragment, id tables and padding
    ]);
  });
});

describe('SquashFS block layout of real mksquashfs images', () => {
  const tree = join(t.dir, 'tree');
  makeTree(tree, { files: 300, seed: 11 });

  it.each([['gzip'], ['zstd']])(
    '%s: chunks tile the image exactly and start at block boundaries',
    async (comp) => {
      const file = join(t.dir, `${comp}.sqfs`);
      mksquashfs(tree, file, ['-comp', comp]);
      const got = await blockChunks(file);
      expect(got).toBeDefined();
      const { image, layout, chunks } = got as NonNullable<typeof got>;
      expect(Buffer.concat(chunks.map((c) => c.data)).equals(image)).toBe(true);
      let at = 0;
      for (const c of chunks) {
        expect(c.offset).toBe(at);
        at += c.length;
      }
      expect(layout.boundaries.length).toBeGreaterThan(100);
      expect(layout.boundaries.every((b, i) => i === 0 || b > layout.boundaries[i - 1])).toBe(true);
      const blockStarts = new Set(layout.boundaries);
      const dataChunks = chunks.filter((c) => c.offset < layout.metadataStart);
      expect(dataChunks.every((c) => c.offset === 0 || blockStarts.has(c.offset))).toBe(true);
    },
  );

  it('xz metadata is not read: the caller falls back to FastCDC', async () => {
    const small = join(t.dir, 'small-tree');
    makeTree(small, { files: 20, seed: 13 });
    const file = join(t.dir, 'xz.sqfs');
    mksquashfs(small, file, ['-comp', 'xz']);
    expect(await blockChunks(file)).toBeUndefined();
  });

  it('a 1 % update costs fewer bytes cut at blocks than cut by FastCDC of the same sizes', async () => {
    const v1 = join(t.dir, 'v1.sqfs');
    const v2 = join(t.dir, 'v2.sqfs');
    mksquashfs(tree, v1);
    const tree2 = join(t.dir, 'tree2');
    cpSync(tree, tree2, { recursive: true });
    mutateTree(tree2, { fraction: 0.01, seed: 12 });
    mksquashfs(tree2, v2);
    const b1 = await blockChunks(v1);
    const b2 = await blockChunks(v2);
    const blocks = newShare(b1?.chunks ?? [], b2?.chunks ?? []);
    const cdc = newShare(
      chunkBuffer(readFileSync(v1), P).map((c) => ({ hash: hashHex(c.data) })),
      chunkBuffer(readFileSync(v2), P).map((c) => ({ hash: hashHex(c.data), length: c.length })),
    );
    expect(blocks).toBeGreaterThan(0);
    expect(blocks).toBeLessThan(cdc);
  });
});
