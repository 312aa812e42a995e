import { Blake3Hasher, blake3 } from '@napi-rs/blake-hash';

/** Bytes in a BLAKE3-256 digest; chunk names and image ids are this long. */
export const HASH_BYTES = 32;

const HEX_RE = /^[0-9a-f]{64}$/;

/** A Buffer view of the same memory (the native binding takes Buffers; no copy). */
export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** BLAKE3-256 of `data` (native, ~4.3 GB/s on one core here: see docs/BENCHMARKS.md). */
export function hash(data: Uint8Array): Buffer {
  return blake3(asBuffer(data));
}

/** BLAKE3-256 of `data` as 64 lowercase hex characters. */
export function hashHex(data: Uint8Array): string {
  return blake3(asBuffer(data)).toString('hex');
}

/** True when `s` is a well-formed hex digest (64 lowercase hex characters). */
export function isHashHex(s: string): boolean {
  return HEX_RE.test(s);
}

/** Incremental BLAKE3 for data that arrives in pieces (streams, whole-image verification). */
export class StreamHasher {
  readonly #hasher = new Blake3Hasher();

  update(data: Uint8Array): this {
    this.#hasher.update(asBuffer(data));
    return this;
  }

  digest(): Buffer {
    return this.#hasher.digestBuffer();
  }
}

/** Hashes everything `source` yields. */
export async function hashStream(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const h = new StreamHasher();
  for await (const piece of source) h.update(piece);
  return h.digest();
}
