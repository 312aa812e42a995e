/**
 * Reusable buffers for chunk bodies. A peer moves gigabytes through buffers of 0.1–8 MiB; allocating each one afresh
 * makes V8 run a full mark-compact every ~64 MiB of "external memory pressure" and lets glibc's heap grow with the
 * churn (measured: ~2.3 s of GC per GiB fetched, and most of the fetch process's RSS). A pool keeps a few slabs per
 * power-of-two size class and hands out views of them.
 *
 * Ownership is explicit: whoever takes a buffer from acquire() calls release() once nothing reads it any more (after
 * the write that consumed it resolved). A buffer that is never released is simply garbage collected — forgetting a
 * release costs an allocation, never correctness. Releasing twice, or a buffer the pool did not make, is ignored.
 */

const MIN_CLASS_BYTES = 64 * 1024;

export interface BufferPoolOptions {
  /** Free slabs kept per size class; more are dropped for the GC. @default 4 */
  keepPerClass?: number;
}

export class BufferPool {
  readonly #keep: number;
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** Slabs made here and currently handed out: release() accepts only these (no double release, no strangers). */
  readonly #out = new WeakSet<ArrayBuffer>();

  constructor(opts: BufferPoolOptions = {}) {
    this.#keep = opts.keepPerClass ?? 4;
  }

  /** A buffer of exactly `length` bytes (uninitialised), backed by a pooled slab. */
  acquire(length: number): Buffer {
    const size = classSize(length);
    const slab = this.#free.get(size)?.pop() ?? (Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer);
    this.#out.add(slab);
    return Buffer.from(slab, 0, length);
  }

  /** Gives a buffer from acquire() back. Call only once nothing (a pending write, a caller) still reads it. */
  release(buf: Uint8Array | undefined): void {
    if (!buf) return;
    const slab = buf.buffer as ArrayBuffer;
    if (!this.#out.has(slab)) return;
    this.#out.delete(slab);
    const list = this.#free.get(slab.byteLength) ?? [];
    if (list.length < this.#keep) {
      list.push(slab);
      this.#free.set(slab.byteLength, list);
    }
  }

  /** Bytes held in free slabs (for tests and stats). */
  get pooledBytes(): number {
    let n = 0;
    for (const [size, list] of this.#free) n += size * list.length;
    return n;
  }
}

function classSize(length: number): number {
  let size = MIN_CLASS_BYTES;
  while (size < length) size *= 2;
  return size;
}
