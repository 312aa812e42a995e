import { RswError } from './errors.ts';
import { HASH_BYTES, hash } from './hash.ts';

/**
 * An image manifest and its canonical bytes. The bytes are a fixed big-endian layout, so one manifest has exactly one
 * encoding and its id (BLAKE3 of the bytes) is stable:
 *
 *   "RSWM" | u8 encoding=1 | u8 format | u8 nameLen | name (ASCII) | u64 version | u64 size | u32 count |
 *   count × (u32 length | 32-byte BLAKE3 hash)
 *
 * Offsets are not stored: they are the running sum of lengths, so they cannot disagree with them.
 *
 * An encrypted image (core/chunk-cipher.ts) has encoding 2, with `u8 cipher=1 | 16-byte key id` between the count
 * and the entries; its chunks, lengths and size are the ciphertext's (each plaintext chunk + 48 bytes). The key id
 * names the image key without revealing it; the key itself is never in a manifest. Plain images keep encoding 1, so
 * their bytes and ids are unchanged.
 */
export const IMAGE_FORMATS = ['squashfs', 'raw', 'file'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export interface ChunkRef {
  offset: number;
  length: number;
  /** BLAKE3-256 of the chunk's bytes, lowercase hex. */
  hash: string;
}

export interface Manifest {
  name: string;
  /** Monotonic per name, from 1. */
  version: number;
  format: ImageFormat;
  /** Image size in bytes: the sum of the chunk lengths. */
  size: number;
  chunks: ChunkRef[];
  /** Present when the chunks are sealed with an image key (core/chunk-cipher.ts). */
  encryption?: { cipher: 'chunk-v1'; keyId: string };
}

const MAGIC = Buffer.from('RSWM');
const ENCODING = 1;
const ENCODING_ENCRYPTED = 2;
const CIPHER_CHUNK_V1 = 1;
const ENCRYPTION_BYTES = 1 + 16;
/** Every sealed chunk carries this many bytes more than its plaintext (core/chunk-cipher.ts). */
const SEALED_OVERHEAD = 48;
const HEADER_FIXED = 4 + 1 + 1 + 1 + 8 + 8 + 4;
const ENTRY_BYTES = 4 + HASH_BYTES;
/** Hard ceiling on one chunk, whatever the chunker settings: wire messages are capped by it. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
export const MAX_NAME_LENGTH = 128;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Checks an image name: 1–128 of [A-Za-z0-9._-], starting alphanumeric, no "..". Throws RSW_ERR_INVALID_NAME. */
export function validateImageName(name: string): void {
  const shown = JSON.stringify(name);
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !NAME_RE.test(name) || name.includes('..')) {
    throw new RswError(
      'RSW_ERR_INVALID_NAME',
      `image name ${shown} is invalid: use 1-${MAX_NAME_LENGTH} of A-Z a-z 0-9 . _ - starting with a letter or digit, no ".."`,
    );
  }
}

/** Checks a version: an integer from 1 to 2^53-1. Throws RSW_ERR_INVALID_VERSION. */
export function validateVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new RswError('RSW_ERR_INVALID_VERSION', `version ${version} is invalid: it must be an integer ≥ 1`);
  }
}

/** Parses a version given as text (CLI, URL): digits only. */
export function parseVersion(text: string): number {
  if (!/^[0-9]{1,16}$/.test(text)) {
    throw new RswError('RSW_ERR_INVALID_VERSION', `version "${text}" is invalid: it must be an integer ≥ 1`);
  }
  const v = Number(text);
  validateVersion(v);
  return v;
}

function invalid(why: string): RswError {
  return new RswError('RSW_ERR_MANIFEST_INVALID', `manifest invalid: ${why}`);
}

/** Canonical bytes of `m` (validated first: an inconsistent manifest is never encoded). */
export function encodeManifest(m: Manifest): Buffer {
  validateImageName(m.name);
  validateVersion(m.version);
  const formatIndex = IMAGE_FORMATS.indexOf(m.format);
  if (formatIndex < 0) throw invalid(`unknown format ${JSON.stringify(m.format)}`);
  if (m.chunks.length === 0) throw invalid('no chunks');
  const enc = m.encryption;
  if (enc && (enc.cipher !== 'chunk-v1' || !/^[0-9a-f]{32}$/.test(enc.keyId)))
    throw invalid('encryption must be {cipher: "chunk-v1", keyId: 32 hex digits}');
  const buf = Buffer.alloc(
    HEADER_FIXED + m.name.length + (enc ? ENCRYPTION_BYTES : 0) + m.chunks.length * ENTRY_BYTES,
  );
  let p = MAGIC.copy(buf, 0);
  p = buf.writeUInt8(enc ? ENCODING_ENCRYPTED : ENCODING, p);
  p = buf.writeUInt8(formatIndex, p);
  p = buf.writeUInt8(m.name.length, p);
  p += buf.write(m.name, p, 'ascii');
  p = buf.writeBigUInt64BE(BigInt(m.version), p);
  p = buf.writeBigUInt64BE(BigInt(m.size), p);
  p = buf.writeUInt32BE(m.chunks.length, p);
  if (enc) {
    p = buf.writeUInt8(CIPHER_CHUNK_V1, p);
    p += buf.write(enc.keyId, p, 'hex');
  }
  const minLength = enc ? SEALED_OVERHEAD + 1 : 1;
  let offset = 0;
  for (const c of m.chunks) {
    if (c.offset !== offset) throw invalid(`chunk at ${c.offset} should start at ${offset}`);
    if (!Number.isSafeInteger(c.length) || c.length < minLength || c.length > MAX_CHUNK_BYTES) {
      throw invalid(`chunk length ${c.length} out of range`);
    }
    if (!/^[0-9a-f]{64}$/.test(c.hash))
      throw invalid(`chunk hash ${JSON.stringify(c.hash)} is not 64 hex digits`);
    p = buf.writeUInt32BE(c.length, p);
    p += buf.write(c.hash, p, 'hex');
    offset += c.length;
  }
  if (offset !== m.size) throw invalid(`chunk lengths add up to ${offset}, size says ${m.size}`);
  return buf;
}

/**
 * Parses canonical manifest bytes. The size cap is checked before anything is read, then every field strictly: the
 * bytes must be exactly what encodeManifest would produce for the result.
 */
export function decodeManifest(bytes: Uint8Array, maxBytes: number): Manifest {
  if (bytes.length > maxBytes) {
    throw new RswError(
      'RSW_ERR_MANIFEST_TOO_LARGE',
      `manifest is ${bytes.length} bytes, the cap is ${maxBytes}`,
    );
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf.length < HEADER_FIXED) throw invalid('truncated header');
  if (!buf.subarray(0, 4).equals(MAGIC)) throw invalid('bad magic');
  let p = 4;
  const encoding = buf.readUInt8(p++);
  if (encoding !== ENCODING && encoding !== ENCODING_ENCRYPTED)
    throw invalid(`unsupported encoding ${encoding}`);
  const format = IMAGE_FORMATS[buf.readUInt8(p++)];
  if (!format) throw invalid('unknown format');
  const nameLen = buf.readUInt8(p++);
  if (buf.length < HEADER_FIXED + nameLen) throw invalid('truncated header');
  const nameBytes = buf.subarray(p, p + nameLen);
  if (nameBytes.some((b) => b > 0x7e || b < 0x20)) throw invalid('name is not printable ASCII');
  const name = nameBytes.toString('ascii');
  p += nameLen;
  const version = buf.readBigUInt64BE(p);
  p += 8;
  const size = buf.readBigUInt64BE(p);
  p += 8;
  const count = buf.readUInt32BE(p);
  p += 4;
  if (version > BigInt(Number.MAX_SAFE_INTEGER) || size > BigInt(Number.MAX_SAFE_INTEGER))
    throw invalid('too big');
  let encryption: Manifest['encryption'];
  if (encoding === ENCODING_ENCRYPTED) {
    if (buf.length < p + ENCRYPTION_BYTES) throw invalid('truncated header');
    if (buf.readUInt8(p) !== CIPHER_CHUNK_V1) throw invalid(`unknown cipher ${buf.readUInt8(p)}`);
    encryption = { cipher: 'chunk-v1', keyId: buf.toString('hex', p + 1, p + ENCRYPTION_BYTES) };
    p += ENCRYPTION_BYTES;
  }
  const minLength = encryption ? SEALED_OVERHEAD + 1 : 1;
  if (buf.length !== p + count * ENTRY_BYTES) throw invalid(`length does not match ${count} chunks`);
  try {
    validateImageName(name);
    validateVersion(Number(version));
  } catch (e) {
    throw invalid((e as Error).message);
  }
  if (count === 0) throw invalid('no chunks');
  const chunks: ChunkRef[] = new Array(count);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const length = buf.readUInt32BE(p);
    if (length < minLength || length > MAX_CHUNK_BYTES)
      throw invalid(`chunk ${i} length ${length} out of range`);
    chunks[i] = { offset, length, hash: buf.toString('hex', p + 4, p + ENTRY_BYTES) };
    offset += length;
    p += ENTRY_BYTES;
  }
  if (BigInt(offset) !== size) throw invalid(`chunk lengths add up to ${offset}, size says ${size}`);
  const m: Manifest = { name, version: Number(version), format, size: Number(size), chunks };
  if (encryption) m.encryption = encryption;
  return m;
}

/** The image id: BLAKE3 of the canonical manifest bytes, hex. */
export function manifestId(canonical: Uint8Array): string {
  return hash(canonical).toString('hex');
}

/** Distinct chunk hashes of a manifest, in first-seen order (identical chunks are stored and sent once). */
export function uniqueChunks(m: Manifest): ChunkRef[] {
  const seen = new Set<string>();
  return m.chunks.filter((c) => !seen.has(c.hash) && seen.add(c.hash));
}
