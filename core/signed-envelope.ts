import { type KeyObject, sign, verify } from 'node:crypto';
import { ED25519_PUBLIC_BYTES, rawPublicKey } from './keys.ts';

/**
 * The signed envelope every rackswarm statement travels in — manifests (core/signed-manifest.ts), channel pointers
 * (core/channel.ts), revocations (core/revocation.ts):
 *
 *   magic (4 bytes, one per kind) | u8 encoding=1 | u8 alg=1 (ed25519) | 32-byte signer | 64-byte signature | canonical
 *
 * The signature covers the kind's domain || canonical: a domain per kind, so no signature made for one kind can be
 * replayed as another, even under the same key.
 */
const ENCODING = 1;
const ALG_ED25519 = 1;
const SIG_BYTES = 64;
export const ENVELOPE_HEADER_BYTES = 4 + 1 + 1 + ED25519_PUBLIC_BYTES + SIG_BYTES;

export interface EnvelopeKind {
  magic: Buffer;
  domain: Buffer;
}

export interface EnvelopeParts {
  /** Raw ed25519 public key the envelope says signed it (a copy). */
  publisher: Buffer;
  signature: Buffer;
  /** The signed bytes (a view of the envelope). */
  canonical: Buffer;
}

/** Signs `canonical` with `key` and wraps it in an envelope of `kind`. */
export function sealEnvelope(kind: EnvelopeKind, canonical: Uint8Array, key: KeyObject): Buffer {
  const signature = sign(null, Buffer.concat([kind.domain, canonical]), key);
  const head = Buffer.alloc(ENVELOPE_HEADER_BYTES);
  kind.magic.copy(head, 0);
  head.writeUInt8(ENCODING, 4);
  head.writeUInt8(ALG_ED25519, 5);
  rawPublicKey(key).copy(head, 6);
  signature.copy(head, 6 + ED25519_PUBLIC_BYTES);
  return Buffer.concat([head, canonical]);
}

/** Whether `bytes` is long enough for an envelope and starts with `kind`'s magic (nothing else checked). */
export function hasEnvelopeMagic(bytes: Uint8Array, kind: EnvelopeKind): boolean {
  return bytes.length >= ENVELOPE_HEADER_BYTES && Buffer.from(bytes.subarray(0, 4)).equals(kind.magic);
}

/**
 * An envelope of `kind` cut into its parts — NOT verified. `fail` words the error for the caller's kind: 'magic' (too
 * short, or another magic) or 'format' (an unsupported encoding or algorithm).
 */
export function splitEnvelope(
  envelope: Uint8Array,
  kind: EnvelopeKind,
  fail: (problem: 'magic' | 'format') => Error,
): EnvelopeParts {
  const buf = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.length);
  if (!hasEnvelopeMagic(buf, kind)) throw fail('magic');
  if (buf.readUInt8(4) !== ENCODING || buf.readUInt8(5) !== ALG_ED25519) throw fail('format');
  return {
    publisher: Buffer.from(buf.subarray(6, 6 + ED25519_PUBLIC_BYTES)),
    signature: buf.subarray(6 + ED25519_PUBLIC_BYTES, ENVELOPE_HEADER_BYTES),
    canonical: buf.subarray(ENVELOPE_HEADER_BYTES),
  };
}

/** Whether the envelope's signature, by `signer`, covers `kind`'s domain and its canonical bytes. */
export function envelopeVerifies(kind: EnvelopeKind, parts: EnvelopeParts, signer: KeyObject): boolean {
  return verify(null, Buffer.concat([kind.domain, parts.canonical]), signer, parts.signature);
}
