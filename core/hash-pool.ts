import { Worker } from 'node:worker_threads';
import { hashHex } from './hash.ts';

/**
 * BLAKE3 on worker threads, so hashing overlaps the chunker on the main thread (publish: the chunker runs at
 * ~1.6 GB/s and BLAKE3 at ~4 GB/s; on one thread they add up to < 1 GB/s). Buffers are transferred to the worker
 * and back, never copied, except one that shares its memory with others (it is copied first).
 */
export class HashPool {
  readonly #workers: Worker[];
  readonly #pending = new Map<
    number,
    { resolve: (r: { hash: string; data: Buffer }) => void; reject: (e: unknown) => void }
  >();
  #next = 0;

  constructor(size = 1) {
    this.#workers = Array.from({ length: size }, () => {
      const w = new Worker(new URL('./hash-worker.ts', import.meta.url));
      w.on('message', (m: { id: number; hash: string; buf: ArrayBuffer }) => {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        p?.resolve({ hash: m.hash, data: Buffer.from(m.buf) });
      });
      w.on('error', (e) => {
        for (const p of this.#pending.values()) p.reject(e);
        this.#pending.clear();
      });
      return w;
    });
  }

  /** BLAKE3 of `data` as hex, and the bytes back (the caller's `data` is detached: use the returned one). */
  hash(data: Buffer): Promise<{ hash: string; data: Buffer }> {
    if (this.#workers.length === 0) return Promise.resolve({ hash: hashHex(data), data });
    const own =
      data.byteOffset === 0 &&
      data.byteLength === data.buffer.byteLength &&
      data.buffer instanceof ArrayBuffer
        ? data.buffer
        : Uint8Array.prototype.slice.call(data).buffer;
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#workers[id % this.#workers.length].postMessage({ id, buf: own }, [own]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
