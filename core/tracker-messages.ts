/*
 * The tracker protocol's messages, /rackswarm/tracker/1.0.0. One request and one response per stream, each a
 * length-prefixed JSON object (the chunk protocol's binary codecs are in wire.ts; these are small and rare).
 *
 *   announce:  → {type: "announce", announce: {imageId, addrs, rack?, host?, progress, bytesDone, downRate, upRate,
 *                 bytesFromPeers, bytesFromSeeder, stage, error?, have?}}
 *              ← {ok: true, peers: [{peerId, addrs, rack?, progress}], intervalSeconds, working?}
 *                 working: peers of that image still fetching (announced, fetching, verifying); sent to peers that
 *                 announce done or seeding, which stop seeding once it is 0 (the swarm no longer needs them)
 *              stage "stopped": the peer is leaving (its last announce; the other fields as before): it is no longer
 *                 handed out (its record stays, for the dashboard, until the TTL) and the answer's `peers` is empty.
 *                 A tracker that predates it refuses the announce (an unknown stage); the peer leaves anyway.
 *              Optional, ignored by peers and trackers that do not know them: the announce may carry
 *              `preheat: [{job, state, error?}]` (this node's progress on preheat jobs) and the response
 *              `instructions: [{kind: "preheat", job, name, version, imageId}]` (tracker/preheat.ts).
 *   manifest:  → {type: "manifest", name, version: N | "latest"}
 *              ← {ok: true, id, version, bytes}, then one more message: the signed manifest (`bytes` long)
 *   image key: → {type: "image-key", keyId}   (32 hex: the key id in an encrypted image's manifest)
 *              ← {ok: true, keyId, key}        key: the 32-byte image key, base64; only on a closed mesh (the
 *                 connection is then an enrolled node's, authenticated and encrypted by libp2p), else an error
 *   any error: ← {ok: false, code: "RSW_ERR_…", message}
 *
 * The announcing peer's id is never taken from the message: the tracker uses the connection's authenticated one.
 */
import { ERRORS, type ErrorCode, RswError } from './errors.ts';

export const TRACKER_PROTOCOL = '/rackswarm/tracker/1.0.0';
/** Requests and JSON responses are small; a handout of 200 peers × 16 addresses stays well under this. */
export const MAX_TRACKER_MESSAGE_BYTES = 256 * 1024;

/** What a peer tells the tracker about itself (limits are checked by the tracker's swarm state). */
export interface AnnounceBody {
  /** Image id: BLAKE3 of the manifest, 64 lowercase hex digits. */
  imageId: string;
  /** Multiaddrs to dial it at: ≤ 16, each 1..256 printable characters starting with '/'. */
  addrs: string[];
  /** Rack label (printable ASCII, ≤ 64 characters); '' means none. */
  rack?: string;
  /** Host name for the dashboard (≤ 64 printable characters). */
  host?: string;
  /** 0..1, clamped; 1 when the stage is done or seeding. */
  progress: number;
  bytesDone: number;
  /** Bytes per second, both directions. */
  downRate: number;
  upRate: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  /** announced | fetching | verifying | done | seeding | failed | stopped (leaving: see the protocol above) */
  stage: string;
  /** Why the stage is 'failed' (≤ 256 characters, truncated). */
  error?: string;
  /**
   * Which chunks this node holds, for the dashboard's availability map: base64 of a bitfield, bit i (MSB first) =
   * chunk i, ceil(chunks / 8) bytes. Sent while working (a done or seeding node holds every chunk), and only when it
   * fits MAX_ANNOUNCE_HAVE_BYTES.
   */
  have?: string;
}

/** A bitfield of 512 Ki chunks (256 GiB at 512 KiB) fits: 64 KiB, ~87 KB in base64, well under the message cap. */
export const MAX_ANNOUNCE_HAVE_BYTES = 64 * 1024;

/** The announce's `have`: base64 of a bitfield of `count` chunks, or undefined when it would exceed the cap. */
export function encodeAnnounceHave(count: number, has: (i: number) => boolean): string | undefined {
  const bytes = Math.ceil(count / 8);
  if (bytes > MAX_ANNOUNCE_HAVE_BYTES) return undefined;
  const bits = Buffer.alloc(bytes);
  for (let i = 0; i < count; i++) if (has(i)) bits[i >> 3] |= 0x80 >> (i & 7);
  return bits.toString('base64');
}

/**
 * Decodes an announce's `have` for an image of `count` chunks; undefined unless it is base64 (padded) of exactly
 * ceil(count / 8) bytes with no bit set past `count` (trust nothing: it comes from the network).
 */
export function decodeAnnounceHave(have: string, count: number): Uint8Array | undefined {
  const bytes = Math.ceil(count / 8);
  if (bytes > MAX_ANNOUNCE_HAVE_BYTES || have.length !== 4 * Math.ceil(bytes / 3)) return undefined;
  // Characters outside the alphabet are skipped by the decoder, so they shorten the result: the length check sees them.
  const bits = Buffer.from(have, 'base64');
  if (bits.length !== bytes) return undefined;
  if (count % 8 !== 0 && (bits[bytes - 1] & (0xff >> (count % 8))) !== 0) return undefined;
  return bits;
}

/** An announce with the optional extension fields, which the swarm state does not keep (tracker/preheat.ts does). */
export interface AnnounceBodyExt extends AnnounceBody {
  /** This node's state of the preheat jobs it was given. */
  preheat?: PreheatReport[];
}

export interface PreheatReport {
  job: string;
  state: 'fetching' | 'done' | 'failed';
  error?: string;
}

/** Something the tracker asks a running node to do: fetch a version into its cache (a preheat). */
export interface Instruction {
  kind: 'preheat';
  job: string;
  name: string;
  version: number;
  imageId: string;
}

export type TrackerRequest =
  | { type: 'announce'; announce: AnnounceBody }
  | { type: 'manifest'; name: string; version: number | 'latest' }
  | { type: 'image-key'; keyId: string };

export interface HandedOutPeer {
  peerId: string;
  addrs: string[];
  rack?: string;
  progress: number;
}

export type AnnounceResponse = {
  ok: true;
  peers: HandedOutPeer[];
  intervalSeconds: number;
  /** Peers of the image still fetching; only in answers to a complete (done/seeding) peer. */
  working?: number;
  instructions?: Instruction[];
};
export type ManifestHeader = { ok: true; id: string; version: number; bytes: number };
export type ImageKeyResponse = { ok: true; keyId: string; key: string };
export type TrackerError = { ok: false; code: ErrorCode; message: string };

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export function encodeMessage(value: object): Uint8Array {
  const bytes = enc.encode(JSON.stringify(value));
  if (bytes.length > MAX_TRACKER_MESSAGE_BYTES)
    throw new RswError('RSW_ERR_PROTOCOL', 'tracker message too large');
  return bytes;
}

function parseObject(bytes: Uint8Array): Record<string, unknown> {
  if (bytes.length > MAX_TRACKER_MESSAGE_BYTES)
    throw new RswError('RSW_ERR_PROTOCOL', 'tracker message too large');
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(bytes));
  } catch {
    throw new RswError('RSW_ERR_PROTOCOL', 'tracker message is not UTF-8 JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new RswError('RSW_ERR_PROTOCOL', 'tracker message is not an object');
  return v as Record<string, unknown>;
}

/** Decodes a request; the announce's fields are checked by the swarm state, the shape here. */
export function decodeRequest(bytes: Uint8Array): TrackerRequest {
  const m = parseObject(bytes);
  if (
    m.type === 'announce' &&
    typeof m.announce === 'object' &&
    m.announce !== null &&
    !Array.isArray(m.announce)
  ) {
    return { type: 'announce', announce: m.announce as AnnounceBody };
  }
  if (
    m.type === 'manifest' &&
    typeof m.name === 'string' &&
    (m.version === 'latest' || Number.isSafeInteger(m.version))
  ) {
    return { type: 'manifest', name: m.name, version: m.version as number | 'latest' };
  }
  if (m.type === 'image-key' && typeof m.keyId === 'string' && /^[0-9a-f]{32}$/.test(m.keyId)) {
    return { type: 'image-key', keyId: m.keyId };
  }
  throw new RswError('RSW_ERR_PROTOCOL', 'unknown tracker request');
}

/** Decodes a response: a success object, or the tracker's error as an RswError. */
export function decodeResponse<T extends { ok: true }>(bytes: Uint8Array): T {
  const m = parseObject(bytes);
  if (m.ok === true) return m as T;
  const code =
    typeof m.code === 'string' && Object.hasOwn(ERRORS, m.code) ? (m.code as ErrorCode) : 'RSW_ERR_PROTOCOL';
  throw new RswError(code, typeof m.message === 'string' ? m.message.slice(0, 1000) : 'tracker error');
}
