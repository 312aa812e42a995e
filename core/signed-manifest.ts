import type { KeyObject } from 'node:crypto';
import { RswError } from './errors.ts';
import { ED25519_PUBLIC_BYTES, publicKeyFromRaw, rawPublicKey } from './keys.ts';
import { decodeManifest, encodeManifest, type Manifest, manifestId } from './manifest.ts';
import {
  ENVELOPE_HEADER_BYTES,
  type EnvelopeKind,
  envelopeVerifies,
  hasEnvelopeMagic,
  sealEnvelope,
  splitEnvelope,
} from './signed-envelope.ts';

/**
 * A signed manifest ("envelope"): what the head stores and serves, and what a node verifies before trusting a byte.
 *
 *   "RSWS" | u8 encoding=1 | u8 alg=1 (ed25519) | 32-byte public key | 64-byte signature | canonical manifest bytes
 *
 * The signature covers DOMAIN || manifest bytes; the domain prefix keeps a manifest signature from ever being valid
 * for another message signed with the same key.
 */
export const SIGNATURE_DOMAIN = Buffer.from('rackswarm/manifest/v1\0');
const KIND: EnvelopeKind = { magic: Buffer.from('RSWS'), domain: SIGNATURE_DOMAIN };
const NOT_A_MANIFEST = 'not a signed rackswarm manifest';

export interface OpenedManifest {
  manifest: Manifest;
  /** Image id: BLAKE3 of the canonical manifest bytes, hex. */
  id: string;
  /** Raw ed25519 public key of the signer. */
  publisher: Buffer;
  /** The envelope bytes as verified (store and forward these). */
  envelope: Buffer;
}

/** Wraps canonical manifest bytes with the publisher's ed25519 signature. */
export function signManifest(canonical: Uint8Array, privateKey: KeyObject): Buffer {
  return sealEnvelope(KIND, canonical, privateKey);
}

/** Encodes, signs and wraps a manifest in one step (the publisher's side of openSignedManifest). */
export function createSignedManifest(manifest: Manifest, privateKey: KeyObject): OpenedManifest {
  const canonical = encodeManifest(manifest);
  return {
    manifest,
    id: manifestId(canonical),
    publisher: rawPublicKey(privateKey),
    envelope: signManifest(canonical, privateKey),
  };
}

/** The keys a node has seen revoked (core/revocation.ts `Revocations`). */
export interface RevokedKeys {
  has(publisher: Uint8Array | string): boolean;
}

/** Refuses what a revoked key signed, with its own code: the signature is valid, the key no longer is. */
export function checkNotRevoked(publisher: Uint8Array, revoked: RevokedKeys | undefined, what: string): void {
  if (revoked?.has(publisher)) {
    throw new RswError(
      'RSW_ERR_KEY_REVOKED',
      `${what} signed by ${Buffer.from(publisher).toString('hex').slice(0, 16)}, which is revoked`,
    );
  }
}

/**
 * Verifies an envelope against the pinned keys and only then parses the manifest. Order matters: size cap, then the
 * signer must be pinned, then the signature must verify over the exact bytes, then the signer must not be revoked,
 * and only then is any field read.
 */
export function openSignedManifest(
  envelope: Uint8Array,
  trusted: readonly KeyObject[],
  opts: { maxBytes: number; revoked?: RevokedKeys },
): OpenedManifest {
  if (envelope.length > opts.maxBytes + ENVELOPE_HEADER_BYTES) {
    throw new RswError(
      'RSW_ERR_MANIFEST_TOO_LARGE',
      `signed manifest is ${envelope.length} bytes, the cap is ${opts.maxBytes}`,
    );
  }
  const parts = splitEnvelope(envelope, KIND, (problem) =>
    problem === 'magic'
      ? new RswError('RSW_ERR_MANIFEST_INVALID', NOT_A_MANIFEST)
      : new RswError('RSW_ERR_MANIFEST_INVALID', 'unsupported signed manifest encoding or algorithm'),
  );
  const { publisher, canonical } = parts;
  const signer = trusted.find((k) => rawPublicKey(k).equals(publisher));
  if (!signer) {
    throw new RswError(
      'RSW_ERR_UNTRUSTED_KEY',
      `manifest signed by ${publisher.toString('hex').slice(0, 16)}, which is not pinned`,
    );
  }
  if (!envelopeVerifies(KIND, parts, signer)) {
    throw new RswError('RSW_ERR_SIGNATURE_INVALID', 'manifest signature does not verify');
  }
  checkNotRevoked(publisher, opts.revoked, 'manifest');
  const manifest = decodeManifest(canonical, opts.maxBytes);
  return { manifest, id: manifestId(canonical), publisher, envelope: Buffer.from(envelope) };
}

/**
 * The key an envelope says signed it — NOT a trust decision: only for a head with no pinned keys, which then pins
 * the first key per image name (the registry refuses another one for that name).
 */
export function envelopeSigner(envelope: Uint8Array): KeyObject {
  if (!hasEnvelopeMagic(envelope, KIND)) throw new RswError('RSW_ERR_MANIFEST_INVALID', NOT_A_MANIFEST);
  return publicKeyFromRaw(envelope.subarray(6, 6 + ED25519_PUBLIC_BYTES));
}

/**
 * The canonical manifest bytes inside an envelope, NOT verified: for a node's own copy of a manifest it verified
 * earlier, whose id (BLAKE3 of these bytes) the caller checks against the one it recorded.
 */
export function envelopeCanonical(envelope: Uint8Array): Buffer {
  if (!hasEnvelopeMagic(envelope, KIND)) throw new RswError('RSW_ERR_MANIFEST_INVALID', NOT_A_MANIFEST);
  return Buffer.from(envelope.subarray(ENVELOPE_HEADER_BYTES));
}

/** Refuses a manifest older than the newest version this node has seen of that image (rollback protection). */
export function checkNotRollback(manifest: Manifest, newestSeen: number | undefined): void {
  if (newestSeen !== undefined && manifest.version < newestSeen) {
    throw new RswError(
      'RSW_ERR_ROLLBACK',
      `${manifest.name} version ${manifest.version} is older than version ${newestSeen} already seen`,
    );
  }
}
