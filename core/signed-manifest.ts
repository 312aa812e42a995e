import { type KeyObject, sign, verify } from 'node:crypto';
import { RswError } from './errors.ts';
import { ED25519_PUBLIC_BYTES, publicKeyFromRaw, rawPublicKey } from './keys.ts';
import { decodeManifest, encodeManifest, type Manifest, manifestId } from './manifest.ts';

/**
 * A signed manifest ("envelope"): what the head stores and serves, and what a node verifies before trusting a byte.
 *
 *   "RSWS" | u8 encoding=1 | u8 alg=1 (ed25519) | 32-byte public key | 64-byte signature | canonical manifest bytes
 *
 * The signature covers DOMAIN || manifest bytes; the domain prefix keeps a manifest signature from ever being valid
 * for another message signed with the same key.
 */
const MAGIC = Buffer.from('RSWS');
const ENCODING = 1;
const ALG_ED25519 = 1;
const SIG_BYTES = 64;
const HEADER = 4 + 1 + 1 + ED25519_PUBLIC_BYTES + SIG_BYTES;
export const SIGNATURE_DOMAIN = Buffer.from('rackswarm/manifest/v1\0');

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
  const signature = sign(null, Buffer.concat([SIGNATURE_DOMAIN, canonical]), privateKey);
  const head = Buffer.alloc(HEADER);
  MAGIC.copy(head, 0);
  head.writeUInt8(ENCODING, 4);
  head.writeUInt8(ALG_ED25519, 5);
  rawPublicKey(privateKey).copy(head, 6);
  signature.copy(head, 6 + ED25519_PUBLIC_BYTES);
  return Buffer.concat([head, canonical]);
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
  if (envelope.length > opts.maxBytes + HEADER) {
    throw new RswError(
      'RSW_ERR_MANIFEST_TOO_LARGE',
      `signed manifest is ${envelope.length} bytes, the cap is ${opts.maxBytes}`,
    );
  }
  const buf = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.length);
  if (buf.length < HEADER || !buf.subarray(0, 4).equals(MAGIC)) {
    throw new RswError('RSW_ERR_MANIFEST_INVALID', 'not a signed rackswarm manifest');
  }
  if (buf.readUInt8(4) !== ENCODING || buf.readUInt8(5) !== ALG_ED25519) {
    throw new RswError('RSW_ERR_MANIFEST_INVALID', 'unsupported signed manifest encoding or algorithm');
  }
  const publisher = Buffer.from(buf.subarray(6, 6 + ED25519_PUBLIC_BYTES));
  const signature = buf.subarray(6 + ED25519_PUBLIC_BYTES, HEADER);
  const canonical = buf.subarray(HEADER);
  const signer = trusted.find((k) => rawPublicKey(k).equals(publisher));
  if (!signer) {
    throw new RswError(
      'RSW_ERR_UNTRUSTED_KEY',
      `manifest signed by ${publisher.toString('hex').slice(0, 16)}, which is not pinned`,
    );
  }
  if (!verify(null, Buffer.concat([SIGNATURE_DOMAIN, canonical]), signer, signature)) {
    throw new RswError('RSW_ERR_SIGNATURE_INVALID', 'manifest signature does not verify');
  }
  checkNotRevoked(publisher, opts.revoked, 'manifest');
  const manifest = decodeManifest(canonical, opts.maxBytes);
  return { manifest, id: manifestId(canonical), publisher, envelope: Buffer.from(buf) };
}

/**
 * The key an envelope says signed it — NOT a trust decision: only for a head with no pinned keys, which then pins
 * the first key per image name (the registry refuses another one for that name).
 */
export function envelopeSigner(envelope: Uint8Array): KeyObject {
  if (envelope.length < HEADER || !Buffer.from(envelope.subarray(0, 4)).equals(MAGIC)) {
    throw new RswError('RSW_ERR_MANIFEST_INVALID', 'not a signed rackswarm manifest');
  }
  return publicKeyFromRaw(envelope.subarray(6, 6 + ED25519_PUBLIC_BYTES));
}

/**
 * The canonical manifest bytes inside an envelope, NOT verified: for a node's own copy of a manifest it verified
 * earlier, whose id (BLAKE3 of these bytes) the caller checks against the one it recorded.
 */
export function envelopeCanonical(envelope: Uint8Array): Buffer {
  if (envelope.length < HEADER || !Buffer.from(envelope.subarray(0, 4)).equals(MAGIC)) {
    throw new RswError('RSW_ERR_MANIFEST_INVALID', 'not a signed rackswarm manifest');
  }
  return Buffer.from(envelope.subarray(HEADER));
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
