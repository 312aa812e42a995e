import { CHUNK_CIPHER_OVERHEAD, type ChunkCipher, plainLayout } from './chunk-cipher.ts';
import { RswError } from './errors.ts';
import type { Manifest } from './manifest.ts';

/** What a fetch writes an image into (peer/image-writer.ts's ImageWriter has this shape). */
export interface ImageTarget {
  readonly path: string;
  readonly size: number;
  write(offset: number, data: Uint8Array): Promise<void>;
  read(offset: number, length: number): Promise<Buffer>;
  readInto(buf: Buffer, offset: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * An encrypted image's output, seen in the manifest's (ciphertext) coordinates: a verified sealed chunk written at
 * its manifest offset is opened and its plaintext written at the plaintext offset of the output (which holds the
 * usable image); a chunk read back is the plaintext re-sealed — deterministic (core/chunk-cipher.ts), so it is byte
 * for byte the ciphertext the manifest names. Everything above it (serving onward, resume checks, the cache's
 * prefill and absorb, the final verification) keeps working on ciphertext and BLAKE3 names, unchanged.
 * Reads and writes are whole chunks, as the fetcher makes them.
 */
export class DecryptingTarget implements ImageTarget {
  readonly path: string;
  readonly size: number;
  readonly #inner: ImageTarget;
  readonly #cipher: ChunkCipher;
  readonly #chunk = new Map<number, { plainOffset: number; length: number }>();

  constructor(inner: ImageTarget, manifest: Manifest, cipher: ChunkCipher) {
    if (manifest.encryption?.keyId !== cipher.keyId) {
      throw new RswError(
        'RSW_ERR_IMAGE_KEY_WRONG',
        `${manifest.name}@${manifest.version} is sealed with key ${manifest.encryption?.keyId ?? '(none)'}, this key is ${cipher.keyId}`,
      );
    }
    const { offsets, size } = plainLayout(manifest.chunks);
    if (inner.size !== size)
      throw new RangeError(`the plaintext target holds ${inner.size} bytes, not ${size}`);
    manifest.chunks.forEach((c, i) => {
      this.#chunk.set(c.offset, { plainOffset: offsets[i], length: c.length });
    });
    this.path = inner.path;
    this.size = manifest.size;
    this.#inner = inner;
    this.#cipher = cipher;
  }

  #at(offset: number, length: number) {
    const c = this.#chunk.get(offset);
    if (!c || c.length !== length)
      throw new RangeError(`${offset}+${length} is not a chunk of the encrypted image (whole chunks only)`);
    return c;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const c = this.#at(offset, data.length);
    await this.#inner.write(c.plainOffset, this.#cipher.open(data));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const c = this.#at(offset, length);
    return this.#cipher.seal(await this.#inner.read(c.plainOffset, length - CHUNK_CIPHER_OVERHEAD));
  }

  /** Into the caller's (pooled) buffer: the plaintext is read into its tail and sealed in place. */
  async readInto(buf: Buffer, offset: number): Promise<void> {
    const c = this.#at(offset, buf.length);
    const plain = buf.subarray(CHUNK_CIPHER_OVERHEAD);
    await this.#inner.readInto(plain, c.plainOffset);
    this.#cipher.sealInto(plain, buf);
  }

  sync(): Promise<void> {
    return this.#inner.sync();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
