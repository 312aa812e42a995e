import type { KeyObject } from 'node:crypto';
import { RswError } from './errors.ts';
import { rawPublicKey } from './keys.ts';
import { validateImageName, validateVersion } from './manifest.ts';
import {
  ENVELOPE_HEADER_BYTES,
  type EnvelopeKind,
  envelopeVerifies,
  hasEnvelopeMagic,
  sealEnvelope,
  splitEnvelope,
} from './signed-envelope.ts';
import { checkNotRevoked, type RevokedKeys } from './signed-manifest.ts';

/**
 * A channel pointer: the publisher's signed statement "channel NAME:CHANNEL is version V (manifest id M), statement
 * number S, valid from T until E". Short-lived by design (TUF's timestamp role): the head only re-serves it, so a
 * head (or a man in the middle) can withhold a new pointer at most until the old one expires (freeze), and cannot
 * send a node back to an older version (rollback) because a node refuses a pointer with a lower sequence than one
 * it has seen. Moving a channel back to an earlier version is a *new* pointer with a higher sequence.
 *
 * Canonical bytes (big-endian):
 *   "RSWC" | u8 encoding=1 | u8 nameLen | name | u8 channelLen | channel | u64 version | 32-byte manifest id |
 *   u64 sequence | u64 issuedAt (ms since epoch) | u64 expiresAt (ms)
 * Envelope: "RSWP" | u8 encoding=1 | u8 alg=1 (ed25519) | 32-byte public key | 64-byte signature | canonical bytes.
 * The signature covers CHANNEL_DOMAIN || canonical bytes: a domain distinct from the manifest's
 * ("rackswarm/manifest/v1\0"), so neither signature can ever be replayed as the other.
 */
export interface ChannelPointer {
  name: string;
  channel: string;
  version: number;
  /** BLAKE3 of the version's canonical manifest bytes, hex: binds the pointer to exactly those bytes. */
  manifestId: string;
  /** Monotonic per NAME:CHANNEL, from 1. */
  sequence: number;
  issuedAt: number;
  expiresAt: number;
}

export interface OpenedChannel {
  pointer: ChannelPointer;
  publisher: Buffer;
  envelope: Buffer;
}

export const CHANNEL_DOMAIN = Buffer.from('rackswarm/channel/v1\0');
const MAGIC = Buffer.from('RSWC');
const ENCODING = 1;
const KIND: EnvelopeKind = { magic: Buffer.from('RSWP'), domain: CHANNEL_DOMAIN };
/** Far above any real pointer (two names ≤ 128 bytes plus fixed fields), checked before parsing. */
export const MAX_CHANNEL_ENVELOPE_BYTES = 1024;
const CHANNEL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function invalid(why: string): RswError {
  return new RswError('RSW_ERR_INVALID_CHANNEL', `channel pointer invalid: ${why}`);
}

/** Checks a channel name: 1–64 of [A-Za-z0-9._-], starting alphanumeric. */
export function validateChannelName(channel: string): void {
  if (!CHANNEL_RE.test(channel) || channel.includes('..')) {
    throw new RswError(
      'RSW_ERR_INVALID_CHANNEL',
      `channel name ${JSON.stringify(channel)} is invalid: use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit`,
    );
  }
}

/** "compute:stable" → {name, channel}. */
export function parseChannelRef(ref: string): { name: string; channel: string } {
  const colon = ref.indexOf(':');
  if (colon < 0) throw new RswError('RSW_ERR_INVALID_CHANNEL', `${JSON.stringify(ref)} is not NAME:CHANNEL`);
  const name = ref.slice(0, colon);
  const channel = ref.slice(colon + 1);
  validateImageName(name);
  validateChannelName(channel);
  return { name, channel };
}

export function encodeChannelPointer(p: ChannelPointer): Buffer {
  validateImageName(p.name);
  validateChannelName(p.channel);
  validateVersion(p.version);
  if (!/^[0-9a-f]{64}$/.test(p.manifestId)) throw invalid('manifest id is not 64 hex digits');
  for (const [what, v] of [
    ['sequence', p.sequence],
    ['issuedAt', p.issuedAt],
    ['expiresAt', p.expiresAt],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${what} ${v} out of range`);
  }
  if (p.sequence < 1) throw invalid('sequence starts at 1');
  if (p.expiresAt <= p.issuedAt) throw invalid('expires before it is issued');
  const buf = Buffer.alloc(4 + 1 + 1 + p.name.length + 1 + p.channel.length + 8 + 32 + 8 + 8 + 8);
  let o = MAGIC.copy(buf, 0);
  o = buf.writeUInt8(ENCODING, o);
  o = buf.writeUInt8(p.name.length, o);
  o += buf.write(p.name, o, 'ascii');
  o = buf.writeUInt8(p.channel.length, o);
  o += buf.write(p.channel, o, 'ascii');
  o = buf.writeBigUInt64BE(BigInt(p.version), o);
  o += buf.write(p.manifestId, o, 'hex');
  o = buf.writeBigUInt64BE(BigInt(p.sequence), o);
  o = buf.writeBigUInt64BE(BigInt(p.issuedAt), o);
  buf.writeBigUInt64BE(BigInt(p.expiresAt), o);
  return buf;
}

export function decodeChannelPointer(bytes: Buffer): ChannelPointer {
  let o = 0;
  const need = (n: number) => {
    if (o + n > bytes.length) throw invalid('truncated');
  };
  need(7);
  if (!bytes.subarray(0, 4).equals(MAGIC)) throw invalid('bad magic');
  o = 4;
  if (bytes.readUInt8(o++) !== ENCODING) throw invalid('unsupported encoding');
  const nameLen = bytes.readUInt8(o++);
  need(nameLen + 1);
  const name = bytes.toString('latin1', o, o + nameLen);
  o += nameLen;
  const chanLen = bytes.readUInt8(o++);
  need(chanLen + 8 + 32 + 24);
  const channel = bytes.toString('latin1', o, o + chanLen);
  o += chanLen;
  const num = () => {
    const v = bytes.readBigUInt64BE(o);
    o += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('number too big');
    return Number(v);
  };
  const version = num();
  const manifestId = bytes.toString('hex', o, o + 32);
  o += 32;
  const pointer = { name, channel, version, manifestId, sequence: num(), issuedAt: num(), expiresAt: num() };
  if (o !== bytes.length) throw invalid('trailing bytes');
  try {
    // Exactly one encoding per pointer: re-encoding must give the same bytes.
    if (!encodeChannelPointer(pointer).equals(bytes)) throw invalid('not canonical');
  } catch (e) {
    throw invalid((e as Error).message);
  }
  return pointer;
}

export function signChannelPointer(p: ChannelPointer, key: KeyObject): OpenedChannel {
  return {
    pointer: p,
    publisher: rawPublicKey(key),
    envelope: sealEnvelope(KIND, encodeChannelPointer(p), key),
  };
}

/**
 * Verifies a signed pointer against the pinned keys, then parses it, then refuses it if it expired at `now`.
 * `trusted` may be a predicate (the head: "the key this image is published under").
 */
export function openSignedChannel(
  envelope: Uint8Array,
  trusted: readonly KeyObject[] | ((publisher: Buffer) => KeyObject | undefined),
  now: number,
  revoked?: RevokedKeys,
): OpenedChannel {
  if (envelope.length > MAX_CHANNEL_ENVELOPE_BYTES) throw invalid(`${envelope.length} bytes is over the cap`);
  const parts = splitEnvelope(envelope, KIND, (problem) =>
    invalid(problem === 'magic' ? 'not a signed pointer' : 'unsupported encoding or algorithm'),
  );
  const { publisher, canonical } = parts;
  const signer =
    typeof trusted === 'function'
      ? trusted(publisher)
      : trusted.find((k) => rawPublicKey(k).equals(publisher));
  if (!signer) {
    throw new RswError(
      'RSW_ERR_UNTRUSTED_KEY',
      `channel pointer signed by ${publisher.toString('hex').slice(0, 16)}, which is not pinned`,
    );
  }
  if (!envelopeVerifies(KIND, parts, signer)) {
    throw new RswError('RSW_ERR_SIGNATURE_INVALID', 'channel pointer signature does not verify');
  }
  checkNotRevoked(publisher, revoked, 'channel pointer');
  const pointer = decodeChannelPointer(Buffer.from(canonical));
  if (now >= pointer.expiresAt) {
    throw new RswError(
      'RSW_ERR_CHANNEL_EXPIRED',
      `${pointer.name}:${pointer.channel} pointer #${pointer.sequence} expired at ${new Date(pointer.expiresAt).toISOString()}`,
    );
  }
  return { pointer, publisher, envelope: Buffer.from(envelope) };
}

/** The pointer inside an envelope, NOT verified: for listing what a head stored after verifying it. */
export function peekChannelPointer(envelope: Uint8Array): ChannelPointer {
  if (!hasEnvelopeMagic(envelope, KIND)) throw invalid('not a signed pointer');
  return decodeChannelPointer(Buffer.from(envelope.subarray(ENVELOPE_HEADER_BYTES)));
}

/** Refuses a pointer older than the newest one seen for its channel (a replayed, older statement). */
export function checkChannelNotStale(p: ChannelPointer, newestSeen: number | undefined): void {
  if (newestSeen !== undefined && p.sequence < newestSeen) {
    throw new RswError(
      'RSW_ERR_CHANNEL_STALE',
      `${p.name}:${p.channel} pointer #${p.sequence} is older than pointer #${newestSeen} already seen`,
    );
  }
}
