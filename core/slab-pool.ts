/**
 * A fixed number of equal buffers ("slabs") for reading a file in large pieces, reused across the whole read: the
 * publish pipeline's memory bound. acquire() waits while every slab is out, so a slow consumer (the disk) holds the
 * reader back instead of letting buffers pile up. Slabs are allocated on first use, over SharedArrayBuffers so a
 * worker thread can hash them in place (core/hash-pool.ts).
 */
export class SlabPool {
  readonly slabBytes: number;
  readonly #max: number;
  #made = 0;
  readonly #free: Buffer[] = [];
  readonly #waiting: { resolve: (b: Buffer) => void; reject: (e: unknown) => void }[] = [];
  #failure: unknown;

  constructor(count: number, slabBytes: number) {
    this.#max = count;
    this.slabBytes = slabBytes;
  }

  /** A whole slab (contents undefined); waits for a release when all `count` are out. */
  acquire(): Promise<Buffer> {
    if (this.#failure) return Promise.reject(this.#failure);
    const free = this.#free.pop();
    if (free) return Promise.resolve(free);
    if (this.#made < this.#max) {
      this.#made++;
      return Promise.resolve(Buffer.from(new SharedArrayBuffer(this.slabBytes)));
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  /** Gives a slab from acquire() back, once nothing reads or writes it any more. */
  release(slab: Buffer): void {
    const waiter = this.#waiting.shift();
    if (waiter) waiter.resolve(slab);
    else this.#free.push(slab);
  }

  /** Fails every waiting and later acquire() with `reason` (a consumer failed and will release no more). */
  abort(reason: unknown): void {
    this.#failure ??= reason;
    for (const w of this.#waiting.splice(0)) w.reject(this.#failure);
  }
}
