import { isHashHex } from '../core/hash.ts';
import { type AnnounceBody, decodeAnnounceHave, MAX_ANNOUNCE_HAVE_BYTES } from '../core/tracker-messages.ts';
import {
  type AvailabilityView,
  availabilityView,
  bucketCount,
  type Cells,
  countBuckets,
} from './availability.ts';
import { HandoutPool, PoolMember } from './handout-policy.ts';

/**
 * The tracker's in-memory view of every swarm: one record per (peer, image) pair, replaced on each announce, dropped
 * when the peer leaves or falls silent for longer than the TTL. Nothing here touches the network or the disk; the
 * clock is injected. Feeds GET /api/swarm and the dashboard (per-node stage, progress, rates, stuck nodes) and the
 * peer handout (`candidates()` is the pool handout() draws from, kept filed as peers announce).
 *
 * Memory: the head keeps this for months with 10,000+ peers (≈ 800 B of heap per pair: bench/tracker.ts). Records are
 * snapshots that share unchanged strings and address arrays with the record they replace, so a steady announce
 * stream allocates only short-lived garbage; all pairs sit in one list ordered by last announce, which makes
 * expiry and the size cap O(pairs dropped), and empty swarms are removed. Chunk availability (availability.ts) adds
 * ~0.7 KB per working peer whose announce carries a bitfield (512 one-byte cells: bench/dashboard.ts), ≤ 2 KiB per
 * image.
 */

export type PeerStage = 'announced' | 'fetching' | 'verifying' | 'done' | 'seeding' | 'failed';

export const PEER_STAGES: readonly PeerStage[] = [
  'announced',
  'fetching',
  'verifying',
  'done',
  'seeding',
  'failed',
];

/** An announce as the swarm state keeps it: the wire body (core/tracker-messages.ts) plus the authenticated peer id. */
export interface Announce extends Omit<AnnounceBody, 'stage'> {
  /** libp2p peer id (printable ASCII, ≤ 128 characters): the connection's, never the message's. */
  peerId: string;
  stage: PeerStage;
}

export interface PeerRecord extends Announce {
  /** ms, from the injected clock. */
  firstSeen: number;
  lastSeen: number;
  /** When bytesDone last grew or the stage last changed (ms): a dashboard's "stuck since". */
  lastProgressAt: number;
  /** When the peer first announced done or seeding (ms): the end of its part of the wave. */
  completedAt: number | undefined;
}

export interface ImageSwarmSummary {
  imageId: string;
  peers: number;
  byStage: Record<PeerStage, number>;
  /** Peers holding the whole image: stages done and seeding. */
  done: number;
  /** Peers still working (announced, fetching, verifying) whose bytesDone and stage have not moved for stuckAfterMs. */
  stuck: number;
  meanProgress: number;
  /** Sums over the peers, B/s and bytes. */
  downRate: number;
  upRate: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
}

export interface SwarmStateInit {
  /** @default Date.now */
  now?: () => number;
  /** Silent peers expire after this (ms). @default 90_000 */
  ttlMs?: number;
  /** Hard cap on tracked (peer, image) pairs; beyond it the oldest-seen are evicted. @default 100_000 */
  maxPeers?: number;
  /** A working peer whose bytesDone and stage have not changed for this long counts as stuck (ms). @default 60_000 */
  stuckAfterMs?: number;
  /** Chunks of a registered image (to read announces' bitfields); undefined while unknown. @default () => undefined */
  chunkCount?: (imageId: string) => number | undefined;
}

/**
 * An announce that cannot be accepted. A plain Error subclass, not an RswError: the tracker's HTTP layer maps it to
 * a 400 with whatever RSW_ERR_* code the registry gives announces; `field` names the offending field.
 */
export class InvalidAnnounceError extends Error {
  readonly field: string;

  constructor(field: string, message: string) {
    super(message);
    this.name = 'InvalidAnnounceError';
    this.field = field;
  }
}

const TTL_MS = 90_000;
const MAX_PEERS = 100_000;
const STUCK_AFTER_MS = 60_000;
const MAX_ADDRS = 16;
const MAX_ADDR_CHARS = 256;
const MAX_LABEL_CHARS = 64;
const MAX_PEER_ID_CHARS = 128;
const MAX_ERROR_CHARS = 256;
const PRINTABLE = /^[\x21-\x7e]+$/;
const STAGES = new Set<string>(PEER_STAGES);
const WORKING = new Set<PeerStage>(['announced', 'fetching', 'verifying']);
const COMPLETE = new Set<PeerStage>(['done', 'seeding']);

/** One (peer, image) pair: its current record (`value`), its place in the last-seen list and in the handout pool. */
class Entry extends PoolMember<PeerRecord> {
  readonly swarm: Swarm;
  /** Held chunks per availability cell, while the peer is working and reported a bitfield. */
  have: Cells | null = null;
  prev: Entry | null = null;
  next: Entry | null = null;

  constructor(rec: PeerRecord, swarm: Swarm) {
    super(rec);
    this.swarm = swarm;
  }
}

class Swarm {
  readonly imageId: string;
  readonly byPeer = new Map<string, Entry>();
  /** Every peer not failed (and with an address): what handout() draws from. */
  readonly pool = new HandoutPool<PeerRecord>();
  /** Chunks of the image, 0 while unknown; per-cell sums of the working peers' `have`, and how many reported. */
  chunks = 0;
  sums: Uint32Array | null = null;
  reporting = 0;

  constructor(imageId: string) {
    this.imageId = imageId;
  }
}

export class SwarmState {
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #maxPeers: number;
  readonly #stuckAfterMs: number;
  readonly #chunkCount: (imageId: string) => number | undefined;
  readonly #swarms = new Map<string, Swarm>();
  // Doubly linked, oldest announce at the head: expiry and eviction pop from it.
  #oldest: Entry | null = null;
  #newest: Entry | null = null;
  #size = 0;
  #clock = Number.NEGATIVE_INFINITY;

  constructor(init: SwarmStateInit = {}) {
    this.#now = init.now ?? Date.now;
    this.#ttlMs = init.ttlMs ?? TTL_MS;
    this.#maxPeers = init.maxPeers ?? MAX_PEERS;
    this.#stuckAfterMs = init.stuckAfterMs ?? STUCK_AFTER_MS;
    this.#chunkCount = init.chunkCount ?? (() => undefined);
    if (!(this.#ttlMs > 0)) throw new RangeError(`ttlMs must be > 0: ${this.#ttlMs}`);
    if (!Number.isInteger(this.#maxPeers) || this.#maxPeers < 1)
      throw new RangeError(`maxPeers must be a positive integer: ${this.#maxPeers}`);
    if (!(this.#stuckAfterMs > 0)) throw new RangeError(`stuckAfterMs must be > 0: ${this.#stuckAfterMs}`);
  }

  /**
   * Inserts or replaces the record of (a.peerId, a.imageId) and returns it (a snapshot: later announces replace it,
   * never change it). Throws InvalidAnnounceError on a malformed announce, leaving the state as it was.
   */
  announce(a: Announce): PeerRecord {
    checkAnnounce(a);
    const now = this.#tick();
    this.#sweep(now);
    const stage = a.stage;
    const complete = stage === 'done' || stage === 'seeding';
    const progress = complete ? 1 : Math.min(1, Math.max(0, a.progress));
    const rack = a.rack === '' ? undefined : a.rack;
    const error = a.error === undefined ? undefined : a.error.slice(0, MAX_ERROR_CHARS);
    const have = this.#readHave(a);

    let swarm = this.#swarms.get(a.imageId);
    const entry = swarm?.byPeer.get(a.peerId);
    if (swarm && entry) {
      const old = entry.value;
      const moved = a.bytesDone > old.bytesDone || stage !== old.stage;
      // Keep the old strings and array when unchanged: the new ones die young, the old ones are already tenured.
      const rec = record(
        old.peerId,
        old.imageId,
        sameStrings(old.addrs, a.addrs) ? old.addrs : [...a.addrs],
        rack === old.rack ? old.rack : rack,
        a.host === old.host ? old.host : a.host,
        progress,
        a,
        error === old.error ? old.error : error,
        old.firstSeen,
        now,
        moved ? now : old.lastProgressAt,
        old.completedAt ?? (complete ? now : undefined),
      );
      entry.value = rec;
      setHave(entry, have);
      this.#unlink(entry);
      this.#append(entry);
      if (stage === 'failed') swarm.pool.delete(entry);
      else swarm.pool.set(entry);
      return rec;
    }

    if (this.#size >= this.#maxPeers && this.#oldest) {
      this.#drop(this.#oldest);
      swarm = this.#swarms.get(a.imageId); // the evicted pair may have been its swarm's last
    }
    if (!swarm) {
      swarm = new Swarm(a.imageId);
      swarm.chunks = have ? this.#chunkCount(a.imageId) || 0 : 0;
      this.#swarms.set(a.imageId, swarm);
    }
    const rec = record(
      a.peerId,
      swarm.imageId,
      [...a.addrs],
      rack,
      a.host,
      progress,
      a,
      error,
      now,
      now,
      now,
      complete ? now : undefined,
    );
    const added = new Entry(rec, swarm);
    setHave(added, have);
    swarm.byPeer.set(a.peerId, added);
    if (stage !== 'failed') swarm.pool.set(added);
    this.#append(added);
    this.#size++;
    return rec;
  }

  /** Current peers of an image, failed ones included, in order of first announce. */
  peers(imageId: string): PeerRecord[] {
    this.#sweep(this.#tick());
    const swarm = this.#swarms.get(imageId);
    if (!swarm) return [];
    return Array.from(swarm.byPeer.values(), (e) => e.value);
  }

  /**
   * The peers of an image that handout() may offer: every current peer neither failed nor without an address, filed
   * for O(k) handouts. The state's own pool, kept up to date by it: hand it to handout(), do not change it.
   */
  candidates(imageId: string): HandoutPool<PeerRecord> {
    this.#sweep(this.#tick());
    return this.#swarms.get(imageId)?.pool ?? new HandoutPool<PeerRecord>();
  }

  /**
   * How many peers hold each chunk of an image (see availability.ts); undefined while the image's chunk count is
   * unknown (not registered on this head).
   */
  availability(imageId: string): AvailabilityView | undefined {
    this.#sweep(this.#tick());
    const swarm = this.#swarms.get(imageId);
    const chunks = swarm?.chunks || this.#chunkCount(imageId);
    if (!chunks) return undefined;
    let complete = 0;
    if (swarm) for (const { value } of swarm.byPeer.values()) if (COMPLETE.has(value.stage)) complete++;
    return availabilityView(chunks, swarm?.sums ?? null, complete, swarm?.reporting ?? 0);
  }

  /** A working peer whose bytesDone and stage have not moved for stuckAfterMs. */
  isStuck(rec: PeerRecord): boolean {
    return WORKING.has(rec.stage) && this.#tick() - rec.lastProgressAt >= this.#stuckAfterMs;
  }

  peer(peerId: string, imageId: string): PeerRecord | undefined {
    this.#sweep(this.#tick());
    return this.#swarms.get(imageId)?.byPeer.get(peerId)?.value;
  }

  /**
   * The peer said it is leaving (its announce with stage `stopped`): it is no longer handed out; its record stays, as
   * it was, until the TTL (the dashboard still shows it done). A later announce of it files it again. Returns whether
   * the pair was known.
   */
  depart(peerId: string, imageId: string): boolean {
    this.#sweep(this.#tick());
    const swarm = this.#swarms.get(imageId);
    const entry = swarm?.byPeer.get(peerId);
    if (!swarm || !entry) return false;
    swarm.pool.delete(entry);
    return true;
  }

  /** Forgets a peer for one image, or for every image when `imageId` is omitted. */
  leave(peerId: string, imageId?: string): void {
    if (imageId !== undefined) {
      const entry = this.#swarms.get(imageId)?.byPeer.get(peerId);
      if (entry) this.#drop(entry);
      return;
    }
    for (const swarm of [...this.#swarms.values()]) {
      const entry = swarm.byPeer.get(peerId);
      if (entry) this.#drop(entry);
    }
  }

  /**
   * Drops the pairs silent for more than the TTL and returns how many; O(dropped). Every other method does this
   * first, so no read ever returns an expired peer; call it on a timer to free memory and to count departures.
   */
  expire(): number {
    return this.#sweep(this.#tick());
  }

  /** Ids of the images that have at least one current peer. */
  images(): string[] {
    this.#sweep(this.#tick());
    return [...this.#swarms.keys()];
  }

  summary(imageId: string): ImageSwarmSummary {
    const now = this.#tick();
    this.#sweep(now);
    const byStage: Record<PeerStage, number> = {
      announced: 0,
      fetching: 0,
      verifying: 0,
      done: 0,
      seeding: 0,
      failed: 0,
    };
    const s: ImageSwarmSummary = {
      imageId,
      peers: 0,
      byStage,
      done: 0,
      stuck: 0,
      meanProgress: 0,
      downRate: 0,
      upRate: 0,
      bytesFromPeers: 0,
      bytesFromSeeder: 0,
    };
    const swarm = this.#swarms.get(imageId);
    if (!swarm) return s;
    let progress = 0;
    for (const { value: rec } of swarm.byPeer.values()) {
      byStage[rec.stage]++;
      if (WORKING.has(rec.stage) && now - rec.lastProgressAt >= this.#stuckAfterMs) s.stuck++;
      progress += rec.progress;
      s.downRate += rec.downRate;
      s.upRate += rec.upRate;
      s.bytesFromPeers += rec.bytesFromPeers;
      s.bytesFromSeeder += rec.bytesFromSeeder;
    }
    s.peers = swarm.byPeer.size;
    s.done = byStage.done + byStage.seeding;
    s.meanProgress = progress / s.peers;
    return s;
  }

  /** Tracked (peer, image) pairs. */
  get size(): number {
    this.#sweep(this.#tick());
    return this.#size;
  }

  /** The injected clock, never running backwards (a stepped wall clock must not reorder the last-seen list). */
  #tick(): number {
    const t = this.#now();
    if (t > this.#clock) this.#clock = t;
    return this.#clock;
  }

  #sweep(now: number): number {
    let dropped = 0;
    const cutoff = now - this.#ttlMs;
    while (this.#oldest && this.#oldest.value.lastSeen < cutoff) {
      this.#drop(this.#oldest);
      dropped++;
    }
    return dropped;
  }

  /** The announce's bitfield reduced to availability cells, when it is working and its image's size is known. */
  #readHave(a: Announce): Cells | null {
    if (a.have === undefined || !WORKING.has(a.stage)) return null;
    const swarm = this.#swarms.get(a.imageId);
    let chunks = swarm?.chunks || this.#chunkCount(a.imageId) || 0;
    if (!Number.isSafeInteger(chunks) || chunks < 1) chunks = 0;
    if (swarm) swarm.chunks = chunks;
    if (chunks === 0) return null;
    const bits = decodeAnnounceHave(a.have, chunks);
    if (!bits) bad('have', `must be base64 of a ${Math.ceil(chunks / 8)}-byte bitfield of ${chunks} chunks`);
    return countBuckets(bits, chunks);
  }

  #drop(entry: Entry): void {
    const swarm = entry.swarm;
    setHave(entry, null);
    swarm.pool.delete(entry);
    swarm.byPeer.delete(entry.value.peerId);
    if (swarm.byPeer.size === 0) this.#swarms.delete(swarm.imageId);
    this.#unlink(entry);
    this.#size--;
  }

  #append(entry: Entry): void {
    entry.prev = this.#newest;
    entry.next = null;
    if (this.#newest) this.#newest.next = entry;
    else this.#oldest = entry;
    this.#newest = entry;
  }

  #unlink(entry: Entry): void {
    if (entry.prev) entry.prev.next = entry.next;
    else this.#oldest = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.#newest = entry.prev;
    entry.prev = null;
    entry.next = null;
  }
}

/** Builds a record with one fixed property order, so every record shares one hidden class. */
function record(
  peerId: string,
  imageId: string,
  addrs: string[],
  rack: string | undefined,
  host: string | undefined,
  progress: number,
  a: Announce,
  error: string | undefined,
  firstSeen: number,
  lastSeen: number,
  lastProgressAt: number,
  completedAt: number | undefined,
): PeerRecord {
  return {
    peerId,
    imageId,
    addrs,
    rack,
    host,
    progress,
    bytesDone: a.bytesDone,
    downRate: a.downRate,
    upRate: a.upRate,
    bytesFromPeers: a.bytesFromPeers,
    bytesFromSeeder: a.bytesFromSeeder,
    stage: a.stage,
    error,
    firstSeen,
    lastSeen,
    lastProgressAt,
    completedAt,
  };
}

/** Replaces a peer's availability counts in its swarm's sums. */
function setHave(entry: Entry, have: Cells | null): void {
  const swarm = entry.swarm;
  const old = entry.have;
  if (old === have) return;
  if (old && swarm.sums) {
    for (let b = 0; b < old.length; b++) swarm.sums[b] -= old[b];
    swarm.reporting--;
  }
  entry.have = null;
  if (have) {
    swarm.sums ??= new Uint32Array(bucketCount(swarm.chunks));
    if (swarm.sums.length !== have.length) return; // cannot happen: one chunk count per swarm
    for (let b = 0; b < have.length; b++) swarm.sums[b] += have[b];
    swarm.reporting++;
    entry.have = have;
  }
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function bad(field: string, why: string): never {
  throw new InvalidAnnounceError(field, `invalid announce: ${field} ${why}`);
}

function checkLabel(field: string, s: unknown, max: number): void {
  if (typeof s !== 'string' || s.length > max || (s.length > 0 && !PRINTABLE.test(s)))
    bad(field, `must be at most ${max} printable ASCII characters without spaces`);
}

const COUNTERS = ['bytesDone', 'downRate', 'upRate', 'bytesFromPeers', 'bytesFromSeeder'] as const;

/** Checks every field's type and bounds (an announce comes from the network: trust nothing). */
function checkAnnounce(a: Announce): void {
  if (typeof a !== 'object' || a === null) bad('announce', 'must be an object');
  const id = a.peerId;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_PEER_ID_CHARS || !PRINTABLE.test(id))
    bad('peerId', `must be 1..${MAX_PEER_ID_CHARS} printable ASCII characters without spaces`);
  if (typeof a.imageId !== 'string' || !isHashHex(a.imageId))
    bad('imageId', 'must be 64 lowercase hex digits');
  const addrs = a.addrs;
  if (!Array.isArray(addrs) || addrs.length > MAX_ADDRS)
    bad('addrs', `must be an array of at most ${MAX_ADDRS}`);
  for (const addr of addrs) {
    if (typeof addr !== 'string' || addr.length > MAX_ADDR_CHARS || addr[0] !== '/' || !PRINTABLE.test(addr))
      bad('addrs', `must be multiaddrs of at most ${MAX_ADDR_CHARS} printable characters`);
  }
  if (a.rack !== undefined) checkLabel('rack', a.rack, MAX_LABEL_CHARS);
  if (a.host !== undefined) checkLabel('host', a.host, MAX_LABEL_CHARS);
  if (a.error !== undefined && typeof a.error !== 'string') bad('error', 'must be a string');
  if (
    a.have !== undefined &&
    (typeof a.have !== 'string' || a.have.length > (MAX_ANNOUNCE_HAVE_BYTES / 3) * 4 + 4)
  )
    bad('have', 'must be a base64 bitfield of at most 64 KiB');
  if (typeof a.progress !== 'number' || Number.isNaN(a.progress)) bad('progress', 'must be a number in 0..1');
  for (const f of COUNTERS) {
    const v = a[f];
    if (typeof v !== 'number' || !(v >= 0) || v > Number.MAX_SAFE_INTEGER)
      bad(f, 'must be a finite number ≥ 0');
  }
  if (typeof a.stage !== 'string' || !STAGES.has(a.stage))
    bad('stage', `must be one of ${PEER_STAGES.join(', ')}`);
}
