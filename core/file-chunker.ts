import type { FileHandle } from 'node:fs/promises';
import { type ChunkerParams, findCut, validateChunkerParams } from './chunker.ts';
import { RswError } from './errors.ts';
import type { SlabPool } from './slab-pool.ts';

/**
 * Chunks a file the way publish needs it fast: large reads into reused slabs (core/slab-pool.ts), boundaries found
 * in place, and chunks handed out as positions in the slab, never copied. The read of the next slab is in flight
 * (libuv's pool) while this one is cut (main thread), and the consumer hashes and writes a slab (other threads)
 * while later ones are read and cut.
 *
 * Slab layout: [room for one unfinished chunk: maxSize bytes][read area]. A chunk that runs past the end of the read
 * area is copied (< maxSize bytes, once per slab) to the end of the next slab's room, just before the bytes read
 * after it, and cut there. The bytes are the same whatever the slab size, and boundaries depend only on the bytes
 * (Cutter), so the chunks equal chunkBuffer's (test/unit/file-chunker.test.ts).
 */
export interface Cutter {
  /** No chunk is longer (the room kept at the start of each slab). */
  readonly maxSize: number;
  /**
   * Length of the chunk that starts at `buf[i]` (offset `at` in the file), seeing the bytes up to `buf[end - 1]`;
   * or -1 when they are too few to decide. `final`: `end` is the end of the file.
   */
  cut(buf: Uint8Array, i: number, end: number, at: number, final: boolean): number;
}

/** FastCDC over the whole file (core/chunker.ts): the same boundaries as chunkBuffer and chunkStream. */
export function cdcCutter(p: ChunkerParams): Cutter {
  validateChunkerParams(p);
  return {
    maxSize: p.maxSize,
    cut(buf, i, end, _at, final) {
      const n = findCut(buf, i, end, p);
      // findCut answers end - i both for "a boundary exactly at end" and "none before end": ask again with more.
      return !final && i + n === end && n < p.maxSize ? -1 : n;
    },
  };
}

/** A chunk in a slab: `length` bytes at `slab[at]`, from offset `offset` of the file. */
export interface SlabChunk {
  offset: number;
  length: number;
  at: number;
}

/** One slab's worth of chunks. The consumer owns `slab` and gives it back with SlabPool.release(). */
export interface SlabBatch {
  slab: Buffer;
  chunks: SlabChunk[];
}

/** Bytes read per slab: large reads, few messages to the hashing thread. */
export const SLAB_READ_BYTES = 8 * 1024 * 1024;

/** The slab size chunkFile() needs for `cutter`. */
export function slabBytesFor(cutter: Cutter, readBytes = SLAB_READ_BYTES): number {
  return cutter.maxSize + Math.max(readBytes, cutter.maxSize);
}

/**
 * The chunks of the first `size` bytes of `fh`, in order, a slab at a time. Holds at most two slabs itself (the one
 * being cut and the one being read); every slab it yields is the consumer's to release.
 */
export async function* chunkFile(
  fh: FileHandle,
  size: number,
  cutter: Cutter,
  pool: SlabPool,
): AsyncGenerator<SlabBatch> {
  const room = cutter.maxSize;
  const readBytes = pool.slabBytes - room;
  if (readBytes < cutter.maxSize)
    throw new Error(`chunkFile: slabs of ${pool.slabBytes} bytes are too small`);

  /** A slab with the file's bytes [pos, pos + n) at [room, room + n). */
  const readSlab = async (pos: number): Promise<{ slab: Buffer; n: number }> => {
    const slab = await pool.acquire();
    const n = Math.min(readBytes, size - pos);
    try {
      for (let got = 0; got < n; ) {
        const { bytesRead } = await fh.read(slab, room + got, n - got, pos + got);
        if (bytesRead === 0) {
          throw new RswError(
            'RSW_ERR_FILE_UNREADABLE',
            `the image ended at byte ${pos + got} of ${size}: it changed while being read`,
          );
        }
        got += bytesRead;
      }
    } catch (e) {
      pool.release(slab);
      throw e;
    }
    return { slab, n };
  };

  let readPos = 0; // next byte of the file to read
  let next: Promise<{ slab: Buffer; n: number }> | undefined = readSlab(0);
  let cur: Buffer | undefined;
  try {
    let { slab, n } = await next;
    next = undefined;
    cur = slab;
    readPos = n;
    let start = room; // first byte of cur not yet in a chunk
    let at = 0; // its offset in the file
    let end = room + n;
    for (;;) {
      const final = readPos === size;
      if (!final) {
        next = readSlab(readPos); // overlaps the cutting below
        next.catch(() => {}); // awaited below; never an unhandled rejection if cutting throws first
      }
      const chunks: SlabChunk[] = [];
      let i = start;
      while (i < end) {
        const len = cutter.cut(cur, i, end, at, final);
        if (len < 0) break;
        chunks.push({ offset: at, length: len, at: i });
        i += len;
        at += len;
      }
      if (final) {
        if (i < end) throw new Error(`chunkFile: the cutter left bytes ${at}.. of ${size} in no chunk`);
        const batch = { slab: cur, chunks };
        cur = undefined;
        yield batch;
        return;
      }
      ({ slab, n } = await (next as Promise<{ slab: Buffer; n: number }>));
      next = undefined;
      const carry = end - i;
      cur.copy(slab, room - carry, i, end);
      const batch = { slab: cur, chunks };
      cur = slab;
      readPos += n;
      start = room - carry;
      end = room + n;
      if (chunks.length > 0) yield batch;
      else pool.release(batch.slab);
    }
  } finally {
    if (cur) pool.release(cur);
    if (next)
      await next.then(
        (r) => pool.release(r.slab),
        () => {},
      );
  }
}
