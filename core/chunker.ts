/*
 * DEV DOCS — content-defined chunking (FastCDC: Xia et al., USENIX ATC 2016; IEEE TPDS 2020).
 *
 * Images are cut at content-defined boundaries, so an update that inserts, deletes or rewrites a few bytes only
 * changes the chunks around the edit, and a peer holding v1 fetches only those chunks of v2.
 *
 * - Gear rolling hash, 32-bit: `h = ((h << 1) + GEAR[byte]) | 0`. Each byte shifts older ones a bit up, so bit k
 *   of `h` depends on the last k + 1 bytes and the whole hash on the last 32: a sliding window for free. Int32
 *   arithmetic keeps V8 on its integer fast path (a 64-bit gear would need BigInt or two halves).
 * - Cut-point skipping: the first `minSize` bytes of a chunk are not hashed (a quarter of the input with min =
 *   avg / 4); the hash starts from 0 at `minSize`, so a boundary depends only on the bytes since the previous one.
 * - Normalized chunking, level 2: from `minSize` to `avgSize` a cut needs log2(avg) + 2 mask bits zero (rarer),
 *   from `avgSize` on log2(avg) - 2 (likelier), which squeezes sizes towards `avgSize`; `maxSize` forces a cut.
 *   The cut falls after the byte whose hash matched, so chunk lengths are in (min, max]. The mean comes out at
 *   ~1.1 x avgSize (1.10-1.14 MiB for 256K/1M/4M, on random data and on squashfs images alike).
 * - Masks with spread-out bits: the n mask bits are spread evenly over bits 1..30, bit 30 always in, so every
 *   test reads the widest window (31 bytes), not just the last few bytes. Bit 31 stays out, which keeps the
 *   2020 paper's two-bytes-per-iteration loop (it tests `mask << 1`) possible without changing any boundary.
 * - GEAR[i] = the high 32 bits of the i-th output (i = 0..255) of SplitMix64 (Steele, Lea & Flood, OOPSLA 2014)
 *   seeded with 0x7261636b73776172 ("rackswar" in ASCII).
 * - Format: the boundaries are part of the image format. Changing the table, the masks, the skip or the cut
 *   rule re-chunks every image, so peers stop sharing chunks across versions; test/unit/chunker.test.ts pins them.
 *
 * Speed (bench/chunker.ts, 2-core shared box, Node 22, 1 GiB in memory, median of 5, 256K/1M/4M): findCut
 * alone 2.0 GB/s; chunkStream 1.6 GB/s with 4 MiB pieces and 1.4 GB/s with 64 KiB ones (it copies each chunk
 * once). The scan reads aligned 32-bit words and splits them with shifts; the first version, which loaded
 * bytes two per iteration with the paper's trick, ran findCut at 1.1-1.2 GB/s. The two-byte trick was worth
 * ~14 % over one byte per iteration with byte loads, nothing on top of word loads (the hash step is a single
 * `lea` either way), so the loop stays one byte per step. Publish does not use chunkStream: core/file-chunker.ts
 * calls findCut on large reused read buffers and copies no chunk.
 */

/**
 * Chunk size bounds, in bytes; the defaults live in core/config.ts. Boundaries depend on all three: changing them
 * re-chunks every image.
 */
export interface ChunkerParams {
  /** No chunk is shorter, except the last one of an input. At least 64. */
  minSize: number;
  /** Target mean; a power of two between minSize and maxSize. */
  avgSize: number;
  /** No chunk is longer. At most 64 MiB. */
  maxSize: number;
}

/** One chunk of the input. `data` is owned by the consumer: the chunker never touches it after yielding it. */
export interface Chunk {
  /** Position of the chunk's first byte in the whole input. */
  offset: number;
  length: number;
  data: Buffer;
}

const MIN_MIN_SIZE = 64;
const MAX_MAX_SIZE = 64 * 1024 * 1024;
/** Normalization level of FastCDC: mask bits added before avgSize and removed after it. */
const NC_LEVEL = 2;

/** SplitMix64: the generator of the GEAR table (see DEV DOCS). Never change it: it defines chunk boundaries. */
function makeGear(): Int32Array {
  const m64 = (1n << 64n) - 1n;
  let state = 0x7261636b73776172n;
  const gear = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    state = (state + 0x9e3779b97f4a7c15n) & m64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & m64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & m64;
    z ^= z >> 31n;
    gear[i] = Number(BigInt.asIntN(32, z >> 32n));
  }
  return gear;
}

const GEAR = makeGear();

/** A mask of `n` one-bits spread evenly over bits 1..30, highest first (bit 30 always set). */
function spreadMask(n: number): number {
  let mask = 0;
  for (let k = 0; k < n; k++) mask |= 1 << (30 - Math.round((k * 29) / (n - 1)));
  return mask;
}

interface Masks {
  small: number;
  large: number;
}

const maskCache = new Map<number, Masks>();

function masksFor(avgSize: number): Masks {
  let masks = maskCache.get(avgSize);
  if (masks === undefined) {
    const bits = Math.log2(avgSize);
    masks = { small: spreadMask(bits + NC_LEVEL), large: spreadMask(bits - NC_LEVEL) };
    maskCache.set(avgSize, masks);
  }
  return masks;
}

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Throws a plain Error saying what is wrong unless 64 <= min < avg < max <= 64 MiB, integers, avg a power of two. */
export function validateChunkerParams(p: ChunkerParams): void {
  const { minSize, avgSize, maxSize } = p;
  for (const [name, v] of [
    ['minSize', minSize],
    ['avgSize', avgSize],
    ['maxSize', maxSize],
  ] as const) {
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new Error(`chunker: ${name} must be a positive integer, got ${v}`);
  }
  if (!isPowerOfTwo(avgSize)) throw new Error(`chunker: avgSize must be a power of two, got ${avgSize}`);
  if (minSize < MIN_MIN_SIZE)
    throw new Error(`chunker: minSize must be at least ${MIN_MIN_SIZE}, got ${minSize}`);
  if (maxSize > MAX_MAX_SIZE) throw new Error(`chunker: maxSize must be at most 64 MiB, got ${maxSize}`);
  if (!(minSize < avgSize && avgSize < maxSize)) {
    throw new Error(`chunker: need minSize < avgSize < maxSize, got ${minSize} / ${avgSize} / ${maxSize}`);
  }
}

/** Word loads in scan() assume little-endian byte order; big-endian hosts take the byte loop (same result). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** Running hash at the end of the last scan() that found no cut, so a stream can resume in its next piece. */
let scanHash = 0;

/**
 * Gear-scans `buf[from..to)` starting from hash `h`; returns the index just past the first byte whose hash has
 * all `mask` bits zero, or -1 (and the running hash in `scanHash`). One typed-array load per four bytes (aligned
 * 32-bit words taken apart with shifts) instead of four (findCut 2.0 vs 1.2 GB/s here).
 */
function scan(buf: Uint8Array, from: number, to: number, h: number, mask: number): number {
  let i = from;
  if (LITTLE_ENDIAN) {
    const head = Math.min(to, from + ((4 - ((buf.byteOffset + from) & 3)) & 3));
    for (; i < head; i++) {
      h = ((h << 1) + GEAR[buf[i]]) | 0;
      if ((h & mask) === 0) return i + 1;
    }
    const n = (to - i) >> 2;
    if (n > 0) {
      const words = new Uint32Array(buf.buffer, buf.byteOffset + i, n);
      for (let j = 0; j < n; j++) {
        const w = words[j];
        h = ((h << 1) + GEAR[w & 255]) | 0;
        if ((h & mask) === 0) return i + 4 * j + 1;
        h = ((h << 1) + GEAR[(w >>> 8) & 255]) | 0;
        if ((h & mask) === 0) return i + 4 * j + 2;
        h = ((h << 1) + GEAR[(w >>> 16) & 255]) | 0;
        if ((h & mask) === 0) return i + 4 * j + 3;
        h = ((h << 1) + GEAR[w >>> 24]) | 0;
        if ((h & mask) === 0) return i + 4 * j + 4;
      }
      i += 4 * n;
    }
  }
  for (; i < to; i++) {
    h = ((h << 1) + GEAR[buf[i]]) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  scanHash = h;
  return -1;
}

/**
 * Length of the chunk that starts at `buf[start]`, looking no further than `buf[end - 1]`. Returns `end - start`
 * when no boundary occurs before `end` and `end - start < maxSize`: that is a boundary only if `end` is the end of
 * the input. Pure; `p` is assumed valid (see validateChunkerParams).
 */
export function findCut(buf: Uint8Array, start: number, end: number, p: ChunkerParams): number {
  const available = end - start;
  if (available <= p.minSize) return available;
  const limit = start + Math.min(available, p.maxSize);
  const normal = start + Math.min(p.avgSize, limit - start);
  const { small, large } = masksFor(p.avgSize);
  let cut = scan(buf, start + p.minSize, normal, 0, small);
  if (cut < 0) cut = scan(buf, normal, limit, scanHash, large);
  return (cut < 0 ? limit : cut) - start;
}

/** Chunks a whole in-memory input. Chunks are copies: `buf` may be reused afterwards. */
export function chunkBuffer(buf: Uint8Array, p: ChunkerParams): Chunk[] {
  validateChunkerParams(p);
  const chunks: Chunk[] = [];
  for (let offset = 0; offset < buf.length; ) {
    const length = findCut(buf, offset, buf.length, p);
    chunks.push({ offset, length, data: Buffer.from(buf.subarray(offset, offset + length)) });
    offset += length;
  }
  return chunks;
}

/**
 * Chunks a stream; yields exactly the chunks chunkBuffer would yield for the concatenated input, whatever the
 * piece sizes. The gear scan runs over each piece in place and carries its hash across piece edges, so no piece
 * is concatenated before scanning; each chunk is copied once into a buffer of its own (so sources may reuse
 * their piece buffers). Holds at most the pending chunk (< maxSize) plus the current piece.
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array>,
  p: ChunkerParams,
): AsyncGenerator<Chunk> {
  validateChunkerParams(p);
  const { minSize, avgSize, maxSize } = p;
  const { small, large } = masksFor(avgSize);
  // The pending chunk: its start in the input, the bytes of earlier pieces that belong to it, and the scan state.
  let chunkOffset = 0;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let h = 0;

  const take = (piece: Uint8Array, from: number, to: number): Chunk => {
    const length = pendingBytes + (to - from);
    const data = Buffer.allocUnsafe(length);
    let at = 0;
    for (const part of pending) {
      data.set(part, at);
      at += part.length;
    }
    data.set(piece.subarray(from, to), at);
    const chunk = { offset: chunkOffset, length, data };
    chunkOffset += length;
    pending = [];
    pendingBytes = 0;
    h = 0;
    return chunk;
  };

  for await (const piece of source) {
    let pos = 0; // first byte of `piece` not yet in the pending chunk
    while (pos < piece.length) {
      // Chunk-relative position reached so far is pendingBytes; scan this piece from max(min, there) on.
      const rel = pendingBytes;
      const scanFrom = pos + Math.max(0, minSize - rel);
      if (scanFrom >= piece.length) break;
      const normalAt = pos + (avgSize - rel); // piece index where the large mask takes over (may be out of range)
      const maxAt = pos + (maxSize - rel);
      let cut = -1;
      if (scanFrom < normalAt) {
        const to = Math.min(normalAt, piece.length);
        cut = scan(piece, scanFrom, to, h, small);
        if (cut < 0) {
          h = scanHash;
          if (to < normalAt) break; // piece exhausted before avgSize
        }
      }
      if (cut < 0) {
        const from = Math.max(scanFrom, normalAt);
        const to = Math.min(maxAt, piece.length);
        cut = scan(piece, from, to, h, large);
        if (cut < 0) {
          h = scanHash;
          if (to < maxAt) break; // piece exhausted before maxSize
          cut = maxAt;
        }
      }
      yield take(piece, pos, cut);
      pos = cut;
    }
    if (pos < piece.length) {
      // The rest of the piece belongs to the pending chunk. Copied, because the source may reuse `piece`.
      pending.push(Buffer.from(piece.subarray(pos)));
      pendingBytes += piece.length - pos;
    }
  }
  if (pendingBytes > 0) yield take(new Uint8Array(0), 0, 0);
}
