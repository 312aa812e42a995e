import type { FileHandle } from 'node:fs/promises';
import { type Chunk, type ChunkerParams, chunkStream, findCut, validateChunkerParams } from './chunker.ts';
import type { Cutter } from './file-chunker.ts';
import type { SquashfsLayout } from './squashfs-layout.ts';

/**
 * Chunk boundaries for a SquashFS image from its block layout (core/squashfs-layout.ts): in the data area a chunk
 * is one compressed block (a file's data block or a fragment block), small neighbours merged up to `minSize`; the
 * superblock is a chunk of its own (it changes with every version); the metadata tables after the data, and any
 * stretch longer than `maxSize`, are cut content-defined (FastCDC with the same parameters).
 *
 * Why: a security update rewrites a few files spread over the image. With block-aligned chunks a rewritten file
 * costs exactly its own blocks and the fragment block holding its tail; content-defined chunks cut through blocks,
 * so each rewritten file also drags in the neighbouring chunks' bytes (measured in docs/BENCHMARKS.md).
 */
export interface Region {
  start: number;
  end: number;
  /** `block`: the region is one chunk; `cdc`: FastCDC cuts it. */
  mode: 'block' | 'cdc';
}

/** Pure: the regions an image of `imageSize` bytes with `layout` is cut into, in order, covering it exactly. */
export function planSquashfsChunks(layout: SquashfsLayout, imageSize: number, p: ChunkerParams): Region[] {
  const regions: Region[] = [];
  const dataEnd = Math.min(layout.metadataStart, imageSize);
  const cuts = layout.boundaries.filter((b) => b > 0 && b < dataEnd);
  cuts.push(dataEnd);
  const push = (start: number, end: number) =>
    regions.push({ start, end, mode: end - start > p.maxSize ? 'cdc' : 'block' });
  let start = 0;
  for (let k = 0; k < cuts.length; k++) {
    const end = cuts[k];
    if (k === 0 || k === cuts.length - 1 || end - start >= p.minSize) {
      push(start, end);
      start = end;
    }
  }
  if (dataEnd < imageSize) regions.push({ start: dataEnd, end: imageSize, mode: 'cdc' });
  return regions.filter((r) => r.end > r.start);
}

/**
 * The same boundaries as chunkRegions, for core/file-chunker.ts: a `block` region is one chunk, a `cdc` region is
 * cut by FastCDC as if it were a file of its own.
 */
export function regionCutter(regions: readonly Region[], p: ChunkerParams): Cutter {
  validateChunkerParams(p);
  let k = 0; // the region holding the last chunk start asked about (chunks are asked for in order)
  return {
    maxSize: p.maxSize,
    cut(buf, i, end, at) {
      while (k < regions.length && regions[k].end <= at) k++;
      const r = regions[k];
      if (!r || at < r.start) throw new Error(`regionCutter: offset ${at} is in no region`);
      const regionEnd = i + (r.end - at); // where the region ends, in buf
      if (r.mode === 'block') return regionEnd <= end ? r.end - at : -1;
      const stop = Math.min(end, regionEnd);
      const n = findCut(buf, i, stop, p);
      return i + n === stop && stop < regionEnd && n < p.maxSize ? -1 : n;
    },
  };
}

const READ_PIECE = 4 * 1024 * 1024;

async function* readRange(fh: FileHandle, start: number, end: number): AsyncGenerator<Buffer> {
  for (let at = start; at < end; ) {
    const want = Math.min(READ_PIECE, end - at);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await fh.read(buf, 0, want, at);
    if (bytesRead === 0) throw new Error(`image ended at ${at}, expected ${end} bytes`);
    yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    at += bytesRead;
  }
}

/**
 * Chunks an open image along `regions` (from planSquashfsChunks); yields chunks in order, as chunkStream does. The
 * streaming reference form: publish cuts with regionCutter in core/file-chunker.ts, which gives the same chunks
 * (test/unit/file-chunker.test.ts) without copying them.
 */
export async function* chunkRegions(
  fh: FileHandle,
  regions: readonly Region[],
  p: ChunkerParams,
): AsyncGenerator<Chunk> {
  for (const r of regions) {
    if (r.mode === 'block') {
      const parts: Buffer[] = [];
      for await (const piece of readRange(fh, r.start, r.end)) parts.push(piece);
      const data = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      yield { offset: r.start, length: data.length, data };
    } else {
      for await (const c of chunkStream(readRange(fh, r.start, r.end), p)) {
        yield { offset: r.start + c.offset, length: c.length, data: c.data };
      }
    }
  }
}
