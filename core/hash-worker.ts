import { parentPort } from 'node:worker_threads';
import { HASH_BYTES, hash } from './hash.ts';

/**
 * The thread behind core/hash-pool.ts: hashes ranges of shared slabs and answers with their digests, `HASH_BYTES`
 * each, in the order of the ranges. A slab's SharedArrayBuffer comes once (`share`), then only its number.
 */
interface Job {
  id: number;
  slab: number;
  share?: SharedArrayBuffer;
  /** start, length, start, length, … (byte offsets in the slab) */
  ranges: number[];
}

const port = parentPort;
if (!port) throw new Error('core/hash-worker.ts runs as a worker thread (see core/hash-pool.ts)');
const slabs = new Map<number, Buffer>();
port.on('message', (job: Job) => {
  try {
    if (job.share) slabs.set(job.slab, Buffer.from(job.share));
    const slab = slabs.get(job.slab);
    if (!slab) throw new Error(`unknown slab ${job.slab}`);
    const digests = Buffer.allocUnsafe((job.ranges.length / 2) * HASH_BYTES);
    for (let k = 0; k < job.ranges.length; k += 2) {
      hash(slab.subarray(job.ranges[k], job.ranges[k] + job.ranges[k + 1])).copy(
        digests,
        (k / 2) * HASH_BYTES,
      );
    }
    port.postMessage({ id: job.id, digests });
  } catch (e) {
    port.postMessage({ id: job.id, error: String((e as Error)?.message ?? e) });
  }
});
