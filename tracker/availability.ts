/**
 * Chunk availability for the dashboard's heat map: how many nodes hold each chunk of an image. Pure.
 *
 * Memory stays bounded whatever the image size: an image's chunks are cut into at most MAX_BUCKETS contiguous
 * buckets; a working node's bitfield (from its announce) is reduced on arrival to a count of held chunks per bucket
 * (≤ 512 B, ≤ 1 KiB past ~130,000 chunks), and the swarm keeps one running sum per bucket. A node that is done or seeding holds every chunk and
 * stores nothing. A bucket's figure is the mean number of holders over its chunks; with ≤ MAX_BUCKETS chunks each
 * bucket is one chunk and the figures are exact.
 */

/** Cells of the heat map at most (one per chunk below that). */
export const MAX_BUCKETS = 512;

export interface AvailabilityView {
  /** Chunks in the image. */
  chunks: number;
  /** Heat map cells; cell b covers chunks [floor(b·chunks/buckets), floor((b+1)·chunks/buckets)). */
  buckets: number;
  /** Per cell: mean number of nodes holding its chunks (2 decimals). The head's seeder, which has all, is not counted. */
  holders: number[];
  /** Least and most holders over the cells. */
  min: number;
  max: number;
  /** Done or seeding nodes (they hold every chunk). */
  complete: number;
  /** Working nodes whose announce carried a bitfield; working nodes without one count as holding nothing. */
  reporting: number;
}

export function bucketCount(chunks: number): number {
  return Math.min(chunks, MAX_BUCKETS);
}

/** First chunk of cell b. */
export function bucketStart(b: number, chunks: number, buckets: number): number {
  return Math.floor((b * chunks) / buckets);
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, v) => {
  let n = 0;
  for (let x = v; x; x &= x - 1) n++;
  return n;
});

/** Held chunks per cell: one byte a cell while cells hold ≤ 255 chunks (images of up to ~130,000 chunks). */
export type Cells = Uint8Array | Uint16Array;

/** Held chunks per cell, from a bitfield (bit i, MSB first, = chunk i). */
export function countBuckets(bits: Uint8Array, chunks: number): Cells {
  const buckets = bucketCount(chunks);
  const out = Math.ceil(chunks / buckets) <= 255 ? new Uint8Array(buckets) : new Uint16Array(buckets);
  for (let b = 0; b < buckets; b++) {
    const end = bucketStart(b + 1, chunks, buckets);
    let n = 0;
    let i = bucketStart(b, chunks, buckets);
    while (i < end) {
      if ((i & 7) === 0 && i + 8 <= end) {
        n += POPCOUNT[bits[i >> 3]];
        i += 8;
      } else {
        if (bits[i >> 3] & (0x80 >> (i & 7))) n++;
        i++;
      }
    }
    out[b] = n;
  }
  return out;
}

/** The view of an image's availability from the per-cell sums over working nodes and the count of complete ones. */
export function availabilityView(
  chunks: number,
  sums: Uint32Array | null,
  complete: number,
  reporting: number,
): AvailabilityView {
  const buckets = bucketCount(chunks);
  const holders: number[] = new Array(buckets);
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  for (let b = 0; b < buckets; b++) {
    const size = bucketStart(b + 1, chunks, buckets) - bucketStart(b, chunks, buckets);
    const h = Math.round(((sums ? sums[b] : 0) / size + complete) * 100) / 100;
    holders[b] = h;
    if (h < min) min = h;
    if (h > max) max = h;
  }
  return { chunks, buckets, holders, min: buckets ? min : 0, max, complete, reporting };
}
