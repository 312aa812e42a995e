import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { asDataError, RswError } from './errors.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import { asBuffer } from './hash.ts';

/**
 * Chunk encryption for confidential images (`publish --encrypt`): each chunk is sealed, *then* hashed, so the
 * manifest names ciphertext and every peer relays and verifies bytes it cannot read.
 *
 * Construction ("chunk cipher v1": a deterministic AEAD in the SIV style, AES-256-GCM from node:crypto):
 *   sivKey, encKey, keyId  = BLAKE3-derive_key(context_i, imageKey)        three independent subkeys
 *   S                      = BLAKE3-keyed(sivKey, plaintext)                32 bytes, a PRF of the plaintext
 *   chunkKey               = BLAKE3-keyed(encKey, S)                        one AES key per distinct plaintext
 *   sealed                 = S || AES-256-GCM(chunkKey, nonce = 0¹², plaintext) || tag(16)     (+48 bytes)
 * A fixed nonce is safe because a GCM key is never used for two different plaintexts: distinct plaintexts give
 * distinct S except with probability ~2⁻¹²⁸ (S is a PRF output under a secret key), hence distinct keys. Opening
 * checks the tag, then that S is the plaintext's own — so re-sealing a plaintext always gives the same bytes, which
 * is what lets a node keep plaintext in its output and still serve (and verify) the exact ciphertext chunks.
 *
 * Trade-off, deliberately: being deterministic, equal plaintext chunks under the same image key are equal
 * ciphertext. That is what keeps dedup and delta updates working across versions *if the publisher reuses the image
 * key* (`--encrypt KEYFILE`), and it tells an observer which chunks did not change between those versions. A fresh key
 * per version (`--encrypt` alone) leaks nothing across versions and dedups nothing. Chunk lengths are visible
 * (ciphertext = plaintext + 48 bytes). Without the key nobody can test a guess of a chunk's content (S is keyed),
 * unlike plain convergent encryption.
 */
export const CHUNK_CIPHER_OVERHEAD = 48;
export const IMAGE_KEY_BYTES = 32;
const SIV_BYTES = 32;
const TAG_BYTES = 16;
const NONCE = Buffer.alloc(12);
const CONTEXT = {
  siv: 'rackswarm 2026-11 chunk cipher v1 synthetic iv',
  enc: 'rackswarm 2026-11 chunk cipher v1 chunk key',
  id: 'rackswarm 2026-11 chunk cipher v1 key id',
};
const KEY_ID_RE = /^[0-9a-f]{32}$/;

function keyed(key: Buffer, data: Uint8Array): Buffer {
  return Blake3Hasher.newKeyed(key).update(asBuffer(data)).digestBuffer();
}

/** The public name of an image key (in the manifest): 16 bytes derived from it, hex. Reveals nothing of the key. */
export function imageKeyId(imageKey: Uint8Array): string {
  checkKey(imageKey);
  return Blake3Hasher.deriveKey(CONTEXT.id, asBuffer(imageKey)).subarray(0, 16).toString('hex');
}

export function isImageKeyId(s: unknown): s is string {
  return typeof s === 'string' && KEY_ID_RE.test(s);
}

function checkKey(key: Uint8Array): void {
  if (key.length !== IMAGE_KEY_BYTES)
    throw new RswError('RSW_ERR_KEY_INVALID', `an image key is ${IMAGE_KEY_BYTES} bytes, not ${key.length}`);
}

export function generateImageKey(): Buffer {
  return randomBytes(IMAGE_KEY_BYTES);
}

export class ChunkCipher {
  readonly keyId: string;
  readonly #sivKey: Buffer;
  readonly #encKey: Buffer;

  constructor(imageKey: Uint8Array) {
    checkKey(imageKey);
    const k = asBuffer(imageKey);
    this.#sivKey = Blake3Hasher.deriveKey(CONTEXT.siv, k);
    this.#encKey = Blake3Hasher.deriveKey(CONTEXT.enc, k);
    this.keyId = imageKeyId(k);
  }

  /** plaintext → S || ciphertext || tag; deterministic. */
  seal(plain: Uint8Array): Buffer {
    return this.sealInto(plain, Buffer.allocUnsafe(plain.length + CHUNK_CIPHER_OVERHEAD));
  }

  /**
   * Seals into `out` (plain.length + 48 bytes), which may hold the plaintext itself at offset 48 — a reader fills
   * the tail of the caller's buffer and seals in place, without a buffer of its own.
   */
  sealInto(plain: Uint8Array, out: Buffer): Buffer {
    if (out.length !== plain.length + CHUNK_CIPHER_OVERHEAD)
      throw new RangeError(
        `sealing ${plain.length} bytes needs ${plain.length + CHUNK_CIPHER_OVERHEAD}, not ${out.length}`,
      );
    const s = keyed(this.#sivKey, plain);
    const cipher = createCipheriv('aes-256-gcm', keyed(this.#encKey, s), NONCE);
    const body = cipher.update(plain); // reads all of `plain` before `out` is written
    s.copy(out, 0);
    let o = SIV_BYTES + body.copy(out, SIV_BYTES);
    o += cipher.final().copy(out, o);
    cipher.getAuthTag().copy(out, o);
    return out;
  }

  /** The plaintext of a sealed chunk; RSW_ERR_DECRYPT_FAILED if it does not authenticate under this key. */
  open(sealed: Uint8Array): Buffer {
    if (sealed.length < CHUNK_CIPHER_OVERHEAD)
      throw new RswError('RSW_ERR_DECRYPT_FAILED', `a sealed chunk of ${sealed.length} bytes is too short`);
    const buf = asBuffer(sealed);
    const s = buf.subarray(0, SIV_BYTES);
    const body = buf.subarray(SIV_BYTES, buf.length - TAG_BYTES);
    let plain: Buffer;
    try {
      const d = createDecipheriv('aes-256-gcm', keyed(this.#encKey, s), NONCE);
      d.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
      plain = d.update(body);
      d.final(); // checks the tag; GCM has nothing left to output
    } catch {
      throw new RswError(
        'RSW_ERR_DECRYPT_FAILED',
        'a chunk does not decrypt under the image key (tag mismatch)',
      );
    }
    if (!timingSafeEqual(keyed(this.#sivKey, plain), s))
      throw new RswError('RSW_ERR_DECRYPT_FAILED', 'a chunk’s synthetic IV does not match its plaintext');
    return plain;
  }
}

/** Where each sealed chunk's plaintext goes: offsets shift by 48 bytes per chunk before it. */
export function plainLayout(chunks: readonly { offset: number; length: number }[]): {
  offsets: number[];
  size: number;
} {
  const offsets = chunks.map((c, i) => c.offset - i * CHUNK_CIPHER_OVERHEAD);
  const last = chunks.length - 1;
  return { offsets, size: last < 0 ? 0 : offsets[last] + chunks[last].length - CHUNK_CIPHER_OVERHEAD };
}

/** An image key file: 64 hex digits and a newline, mode 0600. */
export async function readImageKeyFile(path: string): Promise<Buffer> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new RswError('RSW_ERR_FILE_NOT_FOUND', `image key file ${path} does not exist`);
    throw new RswError('RSW_ERR_FILE_UNREADABLE', `cannot read image key file ${path}: ${code}`);
  }
  if (!/^[0-9a-f]{64}$/.test(text))
    throw new RswError('RSW_ERR_KEY_INVALID', `${path} is not an image key (64 hex digits)`);
  return Buffer.from(text, 'hex');
}

export async function writeImageKeyFile(path: string, key: Uint8Array): Promise<void> {
  checkKey(key);
  await writeFileAtomic(path, `${Buffer.from(key).toString('hex')}\n`, { mode: 0o600 }).catch((e) => {
    throw asDataError(e, `cannot write ${path}`);
  });
}
