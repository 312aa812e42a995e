import { Worker } from 'node:worker_threads';
import { HASH_BYTES, hash } from './hash.ts';

/**
 * BLAKE3 off the main thread, for publish: the main thread cuts chunks (core/file-chunker.ts) while a worker hashes
 * the previous slab's chunks. The native binding (@napi-rs/blake-hash) only hashes synchronously, on the calling
 * thread: on the main thread its ~0.2 CPU s/GiB would add to the chunker's ~0.5 s/GiB there.
 *
 * The slabs are SharedArrayBuffers (core/slab-pool.ts): each is sent to the worker once, then a job is a slab
 * number and a list of ranges, and the answer their digests — one small message each way per ~8 MiB slab, no copy
 * of the data and no new ArrayBuffer per message (transferring slabs back and forth instead made V8 count 8 MiB of
 * "new external memory" per message and run a full GC every few slabs: ~0.8 CPU s/GiB measured).
 * With `threads: 0` the pool hashes inline (same results; for comparison in bench/publish.ts).
 *
 * One thread is enough: BLAKE3 runs at ~4.5 GB/s per core here, the chunker at ~2 GB/s (docs/BENCHMARKS.md).
 */
interface Reply {
  id: number;
  digests?: Uint8Array;
  error?: string;
}

interface Pending {
  resolve: (digests: Buffer) => void;
  reject: (e: Error) => void;
}

export class HashPool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #load: number[] = [];
  /** Per worker: the slabs it has been sent, by number. */
  readonly #shared: Map<SharedArrayBuffer, number>[] = [];
  #nextId = 0;
  #nextSlab = 0;
  #failure: Error | undefined;

  constructor(opts: { threads?: number } = {}) {
    const threads = opts.threads ?? 1;
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL('./hash-worker.ts', import.meta.url));
      w.unref(); // an idle pool never keeps the process alive
      w.on('message', (m: Reply) => this.#settle(i, m));
      w.on('error', (e) => this.#fail(e));
      w.on('exit', (code) => this.#fail(new Error(`hash worker exited with code ${code}`)));
      this.#workers.push(w);
      this.#load.push(0);
      this.#shared.push(new Map());
    }
  }

  /**
   * BLAKE3 of `ranges` (start, length pairs) of `slab`: `HASH_BYTES` per range, in order. With threads, `slab` must
   * be a view of a whole SharedArrayBuffer (core/slab-pool.ts) that nobody writes until the promise settles.
   */
  async hashRanges(slab: Buffer, ranges: number[]): Promise<Buffer> {
    if (this.#failure) throw this.#failure;
    if (this.#workers.length === 0) return hashInline(slab, ranges);
    const sab = slab.buffer;
    if (!(sab instanceof SharedArrayBuffer) || slab.byteOffset !== 0) {
      throw new Error('HashPool.hashRanges needs a slab over a whole SharedArrayBuffer');
    }
    let w = 0;
    for (let i = 1; i < this.#load.length; i++) if (this.#load[i] < this.#load[w]) w = i;
    let num = this.#shared[w].get(sab);
    const share = num === undefined ? sab : undefined;
    if (num === undefined) {
      num = this.#nextSlab++;
      this.#shared[w].set(sab, num);
    }
    const id = this.#nextId++;
    this.#load[w]++;
    this.#workers[w].ref(); // busy: the process waits for the answer
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#workers[w].postMessage({ id, slab: num, share, ranges });
    });
  }

  /** Stops the threads; pending jobs fail. */
  async close(): Promise<void> {
    this.#failure ??= new Error('hash pool closed');
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#rejectAll(this.#failure);
  }

  #settle(worker: number, m: Reply): void {
    if (--this.#load[worker] === 0) this.#workers[worker].unref();
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    if (m.error !== undefined || !m.digests) p.reject(new Error(`hashing failed: ${m.error}`));
    else p.resolve(Buffer.from(m.digests.buffer, m.digests.byteOffset, m.digests.byteLength));
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    this.#rejectAll(e);
  }

  #rejectAll(e: Error): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }
}

function hashInline(slab: Buffer, ranges: number[]): Buffer {
  const digests = Buffer.allocUnsafe((ranges.length / 2) * HASH_BYTES);
  for (let k = 0; k < ranges.length; k += 2) {
    hash(slab.subarray(ranges[k], ranges[k] + ranges[k + 1])).copy(digests, (k / 2) * HASH_BYTES);
  }
  return digests;
}
