/*
 * DEV DOCS — the peer's chunk scheduler: which chunk to ask which neighbour for, and when. A pure policy (no I/O,
 * no timers, no randomness of its own: `random` is injected and every call that depends on time is given `now` in
 * ms), so the fetcher and the swarm simulator in bench/ drive the exact same code.
 *
 * What it owns:
 *   - per chunk: its state (missing, in flight, have), its availability (how many connected, non-banned neighbours
 *     other than the seeder hold it) and, while in flight, the requests for it (one, or up to `endgameCopies` in
 *     endgame);
 *   - per peer: what it holds (bitfield from the have-exchange, minus what it answered not-found or sent corrupt),
 *     its requests in flight (in issue order), its measured throughput, its busy back-off, its count of bad chunks;
 *   - missing chunks that are not in flight sit in buckets by availability, each bucket in random order (a chunk
 *     enters a bucket at a random place), so "rarest first, ties broken randomly" is a walk up the buckets taking
 *     what the peer holds. Each peer keeps `wanted`, the number of pickable chunks it holds, so a peer with nothing
 *     to offer costs nothing.
 *
 * How a request flows:
 *   addPeer(p) → peerHave(p, bitfield), peerHave(p, increments)…
 *   next(p, now) → indices; each is now in flight to p (the caller fetches them in one batch over one stream)
 *     → received(p, i, now): the caller verified and wrote it. 'new', with the other copies to cancel (endgame), or
 *       'duplicate' (a copy that lost the race). Arrival times feed p's measured rate, which sizes p's budget.
 *     → failed(p, i, reason, now): the chunk returns to the pool; busy/error back p off, not-found/corrupt clear p's
 *       bit (corrupt also counts toward a ban), timeout halves p's measured rate. A busy back-off is short
 *       (hungryBackoffMs) for a node short of sources, and for one behind its neighbours by the counts they told
 *       (peerProgress; the pace, `behindShare`).
 *   overdue(now) lists requests outstanding far longer than their peer's rate predicts: the caller may cancel them
 *   (failed(…, 'timeout')) so a faster peer gets the chunk.
 *
 * The rules of next(p, now), in order:
 * 1. Nothing for a banned peer, an unknown one, one backed off after `busy`/`error`, or one whose in-flight budget is
 *    full: bytes in flight below clamp(rate × targetQueueMs, minInFlightBytes, maxInFlightBytes) and fewer than
 *    maxInFlightChunks requests (the last chunk may overshoot the byte budget: a peer always gets at least one).
 *    The rate is measured from received() timings (initialRateBps until the first arrival), so a fast peer keeps
 *    a deep queue and a slow one a short queue: slow peers hold few requests, and the rest go to faster ones.
 *    Nor for a peer without requests in flight while `maxSources` peers have some (config `peer.maxSources`: 4).
 * 2. Until `randomFirst` chunks are verified here, picks are uniformly random among the chunks the peer holds: the
 *    rarest chunks are by definition held by few neighbours, so newcomers starting on them would all converge on
 *    the same one or two holders; a few random chunks spread the first requests and give a node something to trade.
 * 3. Then rarest first among the chunks the peer holds, ties in random order.
 * 4. The seeder (the head) holds everything but is not counted in availability, and it is offered only chunks that
 *    no connected, non-banned neighbour holds: the head's egress goes to chunks the swarm lacks, never to what a
 *    neighbour could give. The exception keeps a node from stalling: when no request is in flight to any neighbour
 *    and none has been for `seederGraceMs` (neighbours absent, backed off, or holding nothing we miss), the seeder
 *    is offered everything, rarest first. The grace absorbs the moment between one batch ending and the next being
 *    asked for, and is longer than the first busy back-off, so a neighbour briefly busy does not send a node to
 *    the head. And a chunk whose requests at neighbours failed `stuckAfter` times (error, timeout) is offered to the
 *    seeder too: a neighbour failing fast every time (refused dial, broken server) is retried within its back-off
 *    cap, shorter than the grace, so the node was never starved and never asked the head for the chunks only that
 *    neighbour held (a node of the testbed waited for ever). Nor, unless starved, is the seeder offered a chunk it
 *    refused within `seederRefusalMs`: it refuses what it has sent already (super-seeding), so the node's next
 *    request to it is for a chunk it may still send (at 1,000 nodes the head's 64 chunks took 0.5 s to leave it).
 * 5. Endgame — every missing chunk is in flight — a peer with nothing in flight gets duplicates of the oldest
 *    outstanding requests it can serve, up to `endgameCopies` requests per chunk and its budget; not of a request
 *    at a faster peer (measured rates) unless that request is overdue; a peer in another rack only of chunks no
 *    rack-mate holds (rule 6). The seeder duplicates only overdue requests
 *    (head egress again: a thousand nodes finishing together would otherwise each pull their last chunks twice).
 * 6. Racks: a neighbour the fetcher marks remote (another rack: from the tracker's handout, or as the neighbour says
 *    in the have exchange's opening message) is offered only chunks
 *    that no neighbour in this node's rack holds, so a rack pulls each chunk across its uplink about once and
 *    spreads it inside (the testbed's 2 racks × 8 nodes pulled 3.6 × racks × image across the spine without it).
 *    Nor one a rack-mate is fetching from another rack (it says so: rackMateImporting, over the have exchange):
 *    without it a rack's gateways pulled the same chunk at the same time (simulator, 2 racks × 8: 51 of 115 requests
 *    across racks were for a chunk already on its way into the rack). The seeder's starvation exception applies.
 *    The head is outside every rack too: a node tells its rack-mates of the chunks it asks the head for, and,
 *    unless starved, the seeder is not offered a chunk a rack-mate is fetching from outside the rack (the head or
 *    another rack) — without it a rack took the same chunk from the head and from another rack at once when the
 *    spread was slow (testbed, 2 racks × 8: the head's repeats after its super-seeding reserve).
 * A chunk is never in flight to two peers outside endgame, nor twice to one peer ever.
 *
 * Cost: next() walks the buckets from the rarest up and stops once the budget is filled or the peer's `wanted`
 * chunks are exhausted; a pick or a return to the pool updates the `wanted` of every peer holding that chunk
 * (O(its holders), from the holder bits in the chunk's record); a have increment is O(1) and touches a few cache
 * lines (the chunk's record, its two buckets, the peer's state: bench/sim makes ~60 per verified chunk, each in a
 * scheduler not touched for a while, so the layout is what it costs); removePeer and a ban are O(chunks ×
 * holders). askable() lists the peers next() may give something to, so a caller need not ask the others. Measured on these machines (2 cores,
 * under load) with 20,000 chunks and 50 neighbours: next() 2.6 µs for a 2-chunk batch from a full peer, 0.1 µs for a
 * peer with nothing we miss, ~55 µs in the worst case (a peer holding one chunk, at the far end of the walk); a whole
 * download driven by a crude tick loop averaged 3.5–6.6 µs per next() call; removePeer of a full peer ~1 ms.
 */

/** Knobs for the fetcher and the simulator; the fetcher uses the defaults. */
export interface SchedulerTunables {
  /** Chunks picked uniformly at random (rule 2) until this many are verified here. @default 4 */
  randomFirst: number;
  /**
   * Data kept in flight to a peer, in ms of its measured rate: covers the gap between one batch's end and the
   * caller's next request plus the peer's disk reads. A starting point for the simulator to tune. @default 200
   */
  targetQueueMs: number;
  /**
   * Lower bound of a peer's in-flight byte budget: about two average chunks, one on the wire while the next is read
   * from the peer's disk. @default 1048576 (1 MiB)
   */
  minInFlightBytes: number;
  /** Upper bound of a peer's in-flight byte budget. @default 67108864 (64 MiB) */
  maxInFlightBytes: number;
  /** Requests in flight to one peer: one request frame (MAX_HASHES_PER_REQUEST in core/wire.ts). @default 64 */
  maxInFlightChunks: number;
  /**
   * Peers with requests in flight at once, the seeder and endgame copies included (rule 1). In bench/sim a cap of
   * 4 (with nodes serving 4 streams) passes chunks on sooner — without it a node took every missing chunk from ~40
   * neighbours at once, each at 1/40 of its downlink, and could pass none on while they trickled in: 1,000 nodes
   * 2.35 → 1.70 × T_min with 64 MiB chunks, 1.68 → 1.26 × with 8 MiB ones; the testbed (16 nodes, 0.57 MiB chunks)
   * the same within its noise on the idle machine (slower in 7 of 10 pairs on a loaded one: docs/BENCHMARKS.md,
   * follow-up D). Real nodes and the simulator take config `peer.maxSources` (4). @default Infinity (this class)
   */
  maxSources: number;
  /** A peer's rate (bytes/s) assumed before its first arrival: a 2 MiB budget at 200 ms. @default 10485760 */
  initialRateBps: number;
  /** Back-off after a `busy` or `error`, doubled for each consecutive one. @default 250 */
  busyBackoffMs: number;
  /**
   * Cap of that doubling. A busy neighbour is one serving its limit of streams, free again within a chunk's time:
   * an 8 s cap left the last of 16 nodes 9 s behind the median in bench/sim (at 500 ms: 2 s). @default 500
   */
  maxBackoffMs: number;
  /** Corrupt chunks after which a peer is banned. @default 3 */
  banAfter: number;
  /**
   * A request is overdue after overdueFactor × (its peer's bytes queued up to it ÷ the peer's rate) + overdueSlackMs.
   * @default 3
   */
  overdueFactor: number;
  /** The slack of overdueFactor: start-up, disk and scheduling hiccups that no rate predicts. @default 2000 */
  overdueSlackMs: number;
  /** No neighbour request in flight for this long: the seeder is offered any chunk (rule 4). @default 1000 */
  seederGraceMs: number;
  /** Requests for one chunk at once in endgame (rule 5); 1 turns duplicates off. @default 2 */
  endgameCopies: number;
  /** Requests in flight to peers in other racks at once (rule 6). @default 1 */
  maxRemoteRequests: number;
  /** Failed requests (error, timeout) at neighbours after which a chunk is offered to the seeder (rule 4). @default 3 */
  stuckAfter: number;
  /**
   * A chunk the seeder refused (`busy`: super-seeding, it has sent it already) is not offered to it again for this
   * long, unless starved (rule 4): the next request to the head is for a chunk it may still send. bench/sim, 1,000
   * nodes: 2.43 → 2.35 × T_min (seeds 1–3 each 0.08–0.15 × better); 8 and 16 nodes unchanged. @default 2000
   */
  seederRefusalMs: number;
  /**
   * The busy back-off of a node with at most half of `maxSources` sources in flight, not doubled: below
   * busyBackoffMs, a starved node asks again sooner than the well-fed ones, who win the freed serving slots otherwise
   * (bench/sim, 1,000 nodes, 256 chunks: nodes held at 2 sources for 3 s, backed off from 28 of the 30 neighbours
   * holding what they lacked, while their rack-mates took every slot that freed). Only with a finite maxSources (the
   * real node's config `peer.maxSources`); not below busyBackoffMs: off. With the chunk server's turnover and the
   * fetcher's wake-up at a back-off's end (wakeAt), 1,000 nodes 1.36 / 1.35 / 1.41 → 1.31 / 1.32 / 1.37 × T_min with
   * 256 chunks; 25 ms did as well there (1.34 / 1.34 / 1.31 ×) with 25 % more events at 64 chunks, over the 10,000-node
   * run's 5 minutes (docs/BENCHMARKS.md, "Session 11"). @default 50
   */
  hungryBackoffMs: number;
  /**
   * The pace: a node holding at least this share of the image fewer chunks than its neighbours on average, as they
   * told it (peerProgress: the have exchange's counted haves, /rackswarm/have/1.2.0), backs off hungryBackoffMs
   * after `busy` (not doubled), as a starved node does: the nodes behind win the serving slots that free, so the
   * swarm's nodes keep closer to one pace. Only with a finite maxSources and a neighbour's count. bench/sim, 1,000
   * nodes, 256 chunks, at 0.005: 1.31 / 1.32 / 1.37 → 1.25 / 1.24 / 1.24 × T_min (seeds 1–3; the median node the
   * same, the 10th to 90th percentile of the nodes' progress ~40 → ~30 chunks apart); 0 (every node at or below the
   * mean) 1.25 / 1.24 / 1.25 with 5 % more events; 0.01 1.27 / 1.27 / 1.25 (docs/BENCHMARKS.md, "Session 13"). Real
   * nodes and the simulator take config `peer.paceBehindShare`. @default Infinity (off, this class)
   */
  behindShare: number;
}

export const SCHEDULER_DEFAULTS: Readonly<SchedulerTunables> = {
  randomFirst: 4,
  targetQueueMs: 200,
  minInFlightBytes: 1 << 20,
  maxInFlightBytes: 64 << 20,
  maxInFlightChunks: 64,
  maxSources: Number.POSITIVE_INFINITY,
  initialRateBps: 10 << 20,
  busyBackoffMs: 250,
  maxBackoffMs: 500,
  banAfter: 3,
  overdueFactor: 3,
  overdueSlackMs: 2000,
  seederGraceMs: 1000,
  endgameCopies: 2,
  maxRemoteRequests: 1,
  stuckAfter: 3,
  seederRefusalMs: 2000,
  hungryBackoffMs: 50,
  behindShare: Number.POSITIVE_INFINITY,
};

export interface SchedulerInit extends Partial<SchedulerTunables> {
  /** Byte length of each chunk, in manifest order; chunk i is index i everywhere. */
  chunkLengths: readonly number[];
  /** Uniform in [0, 1): Math.random in the fetcher, a seeded generator in tests and the simulator. */
  random: () => number;
  /** The head's peer id: a source that holds every chunk (rule 4). */
  seederId: string;
}

export type FailReason = 'busy' | 'not-found' | 'corrupt' | 'timeout' | 'error';

export interface Received {
  /** 'duplicate': the chunk was already here (an endgame copy that lost the race, or a resend). */
  status: 'new' | 'duplicate';
  /** Peers whose copy of this request the caller should cancel (endgame); they are already off the books. */
  cancel: string[];
}

export interface PeerStats {
  peerId: string;
  seeder: boolean;
  inFlight: number;
  inFlightBytes: number;
  /** Measured rate, bytes/s; 0 before the first arrival. */
  rateBps: number;
  /** Pickable chunks it holds (0: nothing to ask it for). */
  wanted: number;
  /** Chunks it delivered first. */
  received: number;
  bad: number;
  banned: boolean;
}

export interface SchedulerStats {
  have: number;
  remaining: number;
  /** Chunks in flight (a chunk duplicated in endgame counts once). */
  inFlight: number;
  endgame: boolean;
  perPeer: PeerStats[];
}

const MISSING = 0;
const IN_FLIGHT = 1;
const HAVE = 2;
/** Weight of the past in a peer's rate, per arrival: about the last five arrivals count. */
const RATE_MEMORY = 0.8;
/** Peers' byte arrays per buffer (Scheduler #bytes). */
const SLAB_PEERS = 16;
/** The fields of a chunk's record (Scheduler #chunk), and its length. */
const STATE = 0;
/** How many connected, non-banned neighbours other than the seeder hold it. */
const AVAIL = 1;
/** How many connected, non-banned neighbours in this node's rack hold it (rule 6). */
const LOCAL_AVAIL = 2;
/** How many rack-mates are fetching it from another rack (rule 6). */
const LOCAL_PENDING = 3;
/** Its place in its bucket, while pickable. */
const POS = 4;
/** Failed requests (error, timeout) at neighbours since it last arrived; those past stuckAfter (rule 4). */
const FAILS = 5;
/** Then the chunk's holder bits (Scheduler #words words). */
const HOLD = 6;
/** A record's length for `words` words of holder bits: a multiple of 4 (16 bytes). */
const recordLength = (words: number): number => (HOLD + words + 3) & ~3;
/** Random draws per random-first pick before falling back to the bucket walk (the peer holds few pickable chunks). */
const RANDOM_TRIES = 32;

interface Request {
  peer: PeerState;
  index: number;
  at: number;
}

interface PeerState {
  id: string;
  seeder: boolean;
  /** In another rack (rule 6). */
  remote: boolean;
  /** Its place in #list (and its bit among a chunk's holder bits). */
  slot: number;
  /** In issue order (overdue() relies on it). */
  reqs: Map<number, Request>;
  /** reqs.size, read without touching the map (bench/sim: a have increment's test of it was a memory wait). */
  requests: number;
  inFlightBytes: number;
  /** Decayed sums of bytes received and of the ms they took; rate = bytes / ms. */
  rateBytes: number;
  rateMs: number;
  measured: boolean;
  lastArrival: number;
  backoffUntil: number;
  backoffs: number;
  received: number;
  bad: number;
  banned: boolean;
  /** Chunks this rack-mate said it is fetching from another rack and does not hold yet (rule 6): 1 each. */
  importing?: Uint8Array;
  /** Removed (removePeer): its handle (peerHandle) is stale. */
  gone: boolean;
  /** The chunks it said it holds (peerProgress), −1 before it said. */
  told: number;
}

/** A neighbour's entry in one Scheduler (peerHandle), opaque to the caller. */
export type PeerHandle = { readonly __peerHandle: true };

export class Scheduler {
  /**
   * Per chunk, #rec numbers (the fields STATE .. HOLD): its state, availability, availability in the rack,
   * rack-mates importing it, place in its bucket, failures, holders. One record per chunk instead of an array per
   * field, and these fields first in the object: a have increment reads and writes most of them for one chunk of a scheduler not
   * touched for a while (bench/sim: 60 of them per verified chunk, most of its CPU waiting for memory).
   */
  #chunk: Int32Array;
  /**
   * The record's length. Its last #words words (from HOLD on) are bits, one per place in #list: the peers holding
   * the chunk (what their haves said, minus not-found and corrupt answers), the seeder included. A pick or a return
   * to the pool updates the `wanted` of those alone (a loop over every peer for each was a fifth of a 10,000-node
   * simulation's CPU). In the record instead of a byte array per peer and a list of holders per chunk: a have
   * increment tests and sets its bit where it reads the chunk's state (bench/sim, 1,000 nodes, 256 chunks: the
   * increments' loads of those were a third of the CPU; 10,000 nodes: the bits in an array of their own, a tenth).
   */
  #rec = recordLength(1);
  /** Words of holder bits per record: 32 peers each. */
  #words = 1;
  /**
   * The buckets: bucket a holds the pickable chunks (missing, not in flight) held by a neighbours, in random order,
   * at #slots[base + j] for j < size, with room for cap, where base, size and cap are #bucketOf[3a .. 3a + 2].
   * Two typed arrays for all of them instead of an array per bucket: a have increment moves a chunk up a bucket,
   * and the walk to a bucket's array and its elements was a tenth of bench/sim's CPU at 3,000 nodes.
   */
  #slots: Int32Array;
  /** The first free place in #slots. */
  #slotsTop = 0;
  #bucketOf: Int32Array;
  /** Buckets (availabilities 0 .. #bucketCount − 1). */
  #bucketCount = 1;
  #pickable = 0;
  readonly #random: () => number;
  readonly #len: readonly number[];
  readonly #o: SchedulerTunables;
  /** #o.maxSources, here: a have increment reads it, and #o is another object (another cache line to wait for). */
  readonly #maxSources: number;
  readonly #seederId: string;
  #have = 0;
  /** The neighbours' progress as they told it (peerProgress): Σ of their counts, and how many told one. */
  #toldSum = 0;
  #told = 0;
  /** behindShare in chunks. */
  readonly #behindChunks: number;
  /** Chunks in flight → their requests; in order of first issue, so endgame can take the oldest. */
  readonly #flight = new Map<number, Request[]>();
  readonly #peers = new Map<string, PeerState>();
  /** The same peers, for the O(peers) loops. */
  readonly #list: PeerState[] = [];
  /**
   * Per place in #list: how many pickable chunks its peer holds (0: nothing to ask it for), kept here rather than in
   * the peer's state: a pick or a return to the pool updates it for every holder of the chunk (bench/sim: a load of
   * each holder's state per pick, a tenth of the CPU).
   */
  readonly #wanted: number[] = [];
  /**
   * Per place in #list: from when its peer may be offered a pickable chunk — the end of its back-off if it holds
   * one (`wanted` > 0), never if not. askable()'s walk reads this one array instead of every peer's state (the
   * walk over the peers' own fields was a tenth of a 10,000-node simulation's CPU: most of them are backed off).
   */
  readonly #askAt: number[] = [];
  /** The same for endgame copies: the end of its back-off if it has no requests in flight (and is not banned). */
  readonly #idleAt: number[] = [];
  readonly #banned = new Set<string>();
  /** Requests in flight to neighbours (not the seeder), and since when there have been none (rule 4). */
  #neighbourRequests = 0;
  /** Requests in flight to peers in other racks (rule 6). */
  #remoteRequests = 0;
  #neighboursIdleSince = Number.NaN;
  /** Peers with requests in flight (rule 1; askable()). */
  readonly #sources: PeerState[] = [];
  readonly #stuck = new Set<number>();
  /** Per chunk: when the seeder last refused it (rule 4). */
  readonly #refusedAt: Float64Array;
  /** The buffer the peers' byte arrays (importing) are cut from (#bytes), and the next free byte in it. */
  #slab: ArrayBuffer | undefined;
  #slabAt = 0;

  constructor(init: SchedulerInit, have: Iterable<number> = []) {
    this.#o = checkTunables({ ...SCHEDULER_DEFAULTS, ...definedOnly(init) });
    this.#maxSources = this.#o.maxSources;
    const n = init.chunkLengths.length;
    this.#behindChunks = this.#o.behindShare * n;
    for (const l of init.chunkLengths) {
      if (!(Number.isInteger(l) && l >= 0)) throw new RangeError(`chunk length must be an integer ≥ 0: ${l}`);
    }
    this.#len = init.chunkLengths;
    this.#random = init.random;
    this.#seederId = init.seederId;
    this.#chunk = new Int32Array(n * this.#rec);
    // bucket 0 starts with room for every chunk (they all start there), the rest of #slots for the others
    this.#slots = new Int32Array(Math.max(2 * n, 16));
    this.#bucketOf = new Int32Array(3 * 8);
    this.#bucketOf[2] = n;
    this.#slotsTop = n;
    this.#refusedAt = new Float64Array(n).fill(Number.NEGATIVE_INFINITY);
    for (const i of have) {
      this.#check(i);
      if (this.#chunk[i * this.#rec + STATE] !== HAVE) {
        this.#chunk[i * this.#rec + STATE] = HAVE;
        this.#have++;
      }
    }
    for (let i = 0; i < n; i++) if (this.#chunk[i * this.#rec + STATE] === MISSING) this.#insert(i);
  }

  /** Peers known (the seeder included): askable()'s `start` is a slot below this. */
  get peerCount(): number {
    return this.#list.length;
  }

  get done(): boolean {
    return this.#have === this.#len.length;
  }

  /** Chunks not yet received (in flight or not). */
  get remaining(): number {
    return this.#len.length - this.#have;
  }

  /** Every missing chunk is in flight (rule 5). */
  get endgame(): boolean {
    return this.#pickable === 0 && this.#have < this.#len.length;
  }

  /**
   * A new neighbour (or the seeder, which holds everything). A banned peer stays banned. `remote`: it is in another
   * rack (rule 6); a peer whose rack is unknown counts as local.
   */
  addPeer(peerId: string, now: number, remote = false): void {
    if (this.#peers.has(peerId)) return;
    const seeder = peerId === this.#seederId;
    const p: PeerState = {
      id: peerId,
      seeder,
      remote: remote && !seeder,
      slot: this.#list.length,
      reqs: new Map(),
      requests: 0,
      inFlightBytes: 0,
      rateBytes: 0,
      rateMs: 0,
      measured: false,
      lastArrival: Number.NEGATIVE_INFINITY,
      backoffUntil: Number.NEGATIVE_INFINITY,
      backoffs: 0,
      received: 0,
      bad: 0,
      banned: this.#banned.has(peerId),
      gone: false,
      told: -1,
    };
    this.#peers.set(peerId, p);
    if (p.slot >= this.#words * 32) this.#widen();
    this.#list.push(p);
    this.#wanted.push(0);
    this.#askAt.push(Number.POSITIVE_INFINITY);
    this.#idleAt.push(Number.POSITIVE_INFINITY);
    this.#setAskAt(p);
    if (Number.isNaN(this.#neighboursIdleSince)) this.#neighboursIdleSince = now;
    if (seeder && !p.banned) this.#gainAll(p);
  }

  /**
   * Whether a neighbour is in another rack (rule 6), as it says in the have exchange's opening message: also for a
   * neighbour that reached us first, whose rack the handout did not tell.
   */
  setRemote(peerId: string, remote: boolean): void {
    const p = this.#peers.get(peerId);
    if (!p || p.seeder || p.remote === remote) return;
    const n = this.#len.length;
    if (!p.banned)
      for (let i = 0; i < n; i++)
        if (this.#holds(p, i)) this.#chunk[i * this.#rec + LOCAL_AVAIL] += remote ? -1 : 1;
    this.#remoteRequests += remote ? p.reqs.size : -p.reqs.size;
    p.remote = remote;
    if (remote) this.#dropImports(p);
  }

  /** Whether the neighbour is in another rack (rule 6). */
  isRemote(peerId: string): boolean {
    return this.#peers.get(peerId)?.remote === true;
  }

  /**
   * A rack-mate is fetching `indices` from outside the rack, another rack or the head (`on`), or stopped without
   * them (rules 4 and 6; its have of a chunk ends its intent too). Ignored from a neighbour in another rack.
   */
  rackMateImporting(peerId: string, indices: Iterable<number>, on: boolean): void {
    const p = this.#peers.get(peerId);
    if (p !== undefined) this.#importing(p, indices, on);
  }

  /** rackMateImporting() by the handle peerHandle() gave (of this scheduler). */
  rackMateImportingAt(handle: PeerHandle, indices: Iterable<number>, on: boolean): void {
    this.#importing(handle as unknown as PeerState, indices, on);
  }

  #importing(p: PeerState, indices: Iterable<number>, on: boolean): void {
    if (p.gone || p.seeder || p.remote || p.banned) return;
    const n = this.#len.length;
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= n) continue;
      if (on && !this.#holds(p, i) && p.importing?.[i] !== 1) {
        p.importing ??= this.#bytes();
        p.importing[i] = 1;
        this.#chunk[i * this.#rec + LOCAL_PENDING]++;
      } else if (!on && p.importing?.[i] === 1) {
        p.importing[i] = 0;
        this.#chunk[i * this.#rec + LOCAL_PENDING]--;
      }
    }
  }

  /** Rule 6: a rack-mate holds chunk i, or is fetching it from another rack. */
  #inRack(i: number): boolean {
    return this.#chunk[i * this.#rec + LOCAL_AVAIL] > 0 || this.#chunk[i * this.#rec + LOCAL_PENDING] > 0;
  }

  #dropImports(p: PeerState): void {
    const importing = p.importing;
    if (importing === undefined) return;
    for (let i = 0; i < importing.length; i++)
      if (importing[i] === 1) this.#chunk[i * this.#rec + LOCAL_PENDING]--;
    p.importing = undefined;
  }

  /** The neighbour is gone: its requests return to the pool, its chunks no longer count. */
  removePeer(peerId: string, now: number): void {
    const p = this.#peers.get(peerId);
    if (!p) return;
    this.#forget(p, now);
    this.#untold(p);
    p.gone = true;
    this.#peers.delete(peerId);
    const last = this.#list.pop() as PeerState;
    const lastWanted = this.#wanted.pop() as number;
    const lastAt = this.#askAt.pop() as number;
    const lastIdle = this.#idleAt.pop() as number;
    if (last !== p) {
      this.#moveBits(last.slot, p.slot);
      this.#list[p.slot] = last;
      this.#wanted[p.slot] = lastWanted;
      this.#askAt[p.slot] = lastAt;
      this.#idleAt[p.slot] = lastIdle;
      last.slot = p.slot;
    }
  }

  /**
   * What a neighbour holds, from the have-exchange: its bitfield (as indices, or 'all'), then increments.
   * Unknown or banned peers and out-of-range indices are ignored (a have message may race a disconnect).
   */
  peerHave(peerId: string, indices: Iterable<number> | 'all'): void {
    const p = this.#peers.get(peerId);
    if (!p || p.banned || p.seeder) return;
    if (indices === 'all') {
      this.#gainAll(p);
      return;
    }
    const n = this.#len.length;
    for (const i of indices) if (Number.isInteger(i) && i >= 0 && i < n) this.#gain(p, i);
  }

  /**
   * peerHave() of one chunk (a have increment), then whether next(peerId, now) may offer that peer anything (false:
   * it would return nothing before any work). One call where a caller told of a neighbour's fresh chunk would call
   * peerHave(), isBanned() and next(): bench/sim's hottest loop (~60 neighbours told per verified chunk, most of
   * them with their sources full, so next() returned nothing).
   */
  peerHaveOne(peerId: string, index: number, now: number): boolean {
    const p = this.#peers.get(peerId);
    return p !== undefined && this.#haveOne(p, index, now);
  }

  /**
   * A neighbour's entry, for peerHaveAt(): the lookup by id done once (it was a tenth of bench/sim's CPU at fine
   * chunks, a first touch of another node's peer map per have increment). Valid until removePeer() of that peer
   * (then ignored); undefined for a peer not added.
   */
  peerHandle(peerId: string): PeerHandle | undefined {
    return this.#peers.get(peerId) as unknown as PeerHandle | undefined;
  }

  /** peerHaveOne() by the handle peerHandle() gave (of this scheduler). */
  peerHaveAt(handle: PeerHandle, index: number, now: number): boolean {
    return this.#haveOne(handle as unknown as PeerState, index, now);
  }

  #haveOne(p: PeerState, index: number, now: number): boolean {
    if (p.gone || p.banned || p.seeder) return false;
    if (Number.isInteger(index) && index >= 0 && index < this.#len.length) this.#gain(p, index);
    return !this.done && this.#offerable(p, now);
  }

  /** A neighbour says it holds `held` chunks (its progress, for the pace: behindShare). */
  peerProgress(peerId: string, held: number): void {
    const p = this.#peers.get(peerId);
    if (p !== undefined) this.#progress(p, held);
  }

  /** peerProgress() by the handle peerHandle() gave (of this scheduler). */
  peerProgressAt(handle: PeerHandle, held: number): void {
    this.#progress(handle as unknown as PeerState, held);
  }

  #progress(p: PeerState, held: number): void {
    if (p.gone || p.seeder || p.banned || !(Number.isInteger(held) && held >= 0 && held <= this.#len.length))
      return;
    if (p.told < 0) this.#told++;
    else this.#toldSum -= p.told;
    this.#toldSum += held;
    p.told = held;
  }

  /** Whether `peerId` holds chunk `index`, as far as this node knows (its haves; minus not-found and corrupt answers). */
  holds(peerId: string, index: number): boolean {
    const p = this.#peers.get(peerId);
    return (
      p !== undefined &&
      Number.isInteger(index) &&
      index >= 0 &&
      index < this.#len.length &&
      this.#holds(p, index)
    );
  }

  /** Chunk indices to request from `peerId` now (possibly none), by the rules above; they are now in flight to it. */
  next(peerId: string, now: number): number[] {
    const p = this.#peers.get(peerId);
    return p === undefined ? [] : this.#next(p, now);
  }

  /** next() by the handle peerHandle() gave (of this scheduler): the same answer without the lookup by id. */
  nextAt(handle: PeerHandle, now: number): number[] {
    return this.#next(handle as unknown as PeerState, now);
  }

  #next(p: PeerState, now: number): number[] {
    const out: number[] = [];
    if (p.gone || p.banned || now < p.backoffUntil || this.done) return out;
    const idle = p.requests === 0;
    // Nothing pickable it holds, and no endgame for it: most calls (a poke on every have increment and every tick
    // asks every idle neighbour) end here, before any work (bench/sim: 10,000 nodes).
    if (this.#wanted[p.slot] === 0 && !(idle && this.#pickable === 0)) return out;
    const budget = this.#budget(p);
    if (!this.#room(p, budget)) return out;
    // Rule 6: a peer in another rack is offered only chunks no neighbour in this rack holds (unless starved), one
    // request across the racks at a time.
    const localOnly = p.remote && !this.#starved(now);
    if (localOnly && this.#remoteRequests >= this.#o.maxRemoteRequests) return out;
    // Rule 4: the seeder is offered only bucket 0 (chunks no neighbour holds) unless the node is starved.
    const sparing = p.seeder && !this.#starved(now);
    const top = sparing ? 1 : this.#bucketCount;
    // Rule 4: nor, unless starved, a chunk it refused within seederRefusalMs.
    const refusedSince = sparing ? now - this.#o.seederRefusalMs : Number.POSITIVE_INFINITY;
    if (this.#wanted[p.slot] > 0 && this.#have < this.#o.randomFirst) {
      // Rejection sampling; `avail < top` keeps the seeder to bucket 0 as the walk below does.
      const n = this.#len.length;
      for (let misses = 0; misses < RANDOM_TRIES && this.#wanted[p.slot] > 0 && this.#room(p, budget); ) {
        const i = Math.min(Math.floor(this.#random() * n), n - 1);
        if (
          this.#chunk[i * this.#rec + STATE] === MISSING &&
          this.#holds(p, i) &&
          this.#chunk[i * this.#rec + AVAIL] < top &&
          !(this.#refusedAt[i] > refusedSince) &&
          !(sparing && this.#chunk[i * this.#rec + LOCAL_PENDING] > 0) &&
          !(localOnly && this.#inRack(i))
        )
          this.#take(p, i, now, out);
        else misses++;
      }
    }
    // Neighbours hold nothing in bucket 0 (availability counts them), so they start at 1.
    const chunk = this.#chunk;
    const rec = this.#rec;
    const word = HOLD + (p.slot >>> 5);
    const bit = 1 << (p.slot & 31);
    walk: for (let a = p.seeder ? 0 : 1; a < top && this.#wanted[p.slot] > 0 && this.#room(p, budget); a++) {
      // (a pick only takes chunks out of buckets, so the bucket's place in #slots stays)
      const slots = this.#slots;
      const base = this.#bucketOf[3 * a];
      for (let j = 0; j < this.#bucketOf[3 * a + 1]; ) {
        const i = slots[base + j];
        if (
          (chunk[i * rec + word] & bit) === 0 ||
          (localOnly && this.#inRack(i)) ||
          (sparing && (this.#refusedAt[i] > refusedSince || this.#chunk[i * this.#rec + LOCAL_PENDING] > 0))
        ) {
          j++;
          continue;
        }
        this.#take(p, i, now, out); // moves the bucket's last chunk to j
        if (this.#wanted[p.slot] === 0 || !this.#room(p, budget)) break walk;
      }
    }
    if (p.seeder && top === 1 && this.#stuck.size > 0) {
      for (const i of this.#stuck) {
        if (!this.#room(p, budget)) break;
        if (this.#chunk[i * this.#rec + STATE] === MISSING) this.#take(p, i, now, out);
      }
    }
    if (out.length === 0 && idle && this.#pickable === 0) this.#endgame(p, now, budget, out, localOnly);
    return out;
  }

  /**
   * The peers next() may offer something now, in list order (as stats() shows it) from slot `start` round to the
   * one before it (the fetcher and bench/sim start each turn at a random place: peer/source-order.ts), each
   * checked when the iteration reaches it (a pick for one changes what the next may get): calling next() for these
   * alone gives the same answers as calling it for every peer, without the calls that return nothing before any
   * work — a fetch loop over 60 neighbours after every refusal made 15 million such calls at 1,000 nodes in
   * bench/sim, 70 per pick. Between its steps the caller calls next() only (nothing that adds to what a peer holds).
   */
  *askable(now: number, start = 0): Generator<string, void, undefined> {
    if (this.done) return;
    // While chunks are pickable, only peers holding one (`wanted` > 0) may be offered anything, and next() only
    // lowers `wanted` and adds sources: those peers, in list order, each checked as the walk reaches it (a filtered
    // copy of the list per call was the top function of a 10,000-node simulation's profile, 13 % of its CPU).
    // Once nothing is pickable (endgame, maybe reached by a pick made here), any idle peer may get endgame copies:
    // the rest of the list, one by one.
    const list = this.#list;
    const n = list.length;
    if (n === 0) return;
    const maxSources = this.#maxSources;
    const first = Number.isInteger(start) && start > 0 ? start % n : 0;
    // step s of the walk is slot (first + s) mod n
    const slotAt = (s: number): number => (first + s < n ? first + s : first + s - n);
    let s = 0;
    if (this.#pickable > 0) {
      const askAt = this.#askAt;
      for (; s < n && this.#sources.length < maxSources; s++) {
        const k = slotAt(s);
        if (now < askAt[k]) continue; // holds nothing pickable, or backed off
        const p = list[k];
        if (!this.#offerable(p, now)) continue;
        yield p.id;
        if (this.#pickable === 0) {
          s++;
          break;
        }
      }
      if (this.#pickable > 0 && s < n) {
        // Rule 1: with maxSources peers in flight, only they can be offered anything, and no other can join them
        // while this runs (next() only adds requests): those at step s or later, in walk order, instead of the
        // rest of the walk. Then nothing is left for endgame copies either (the walk below stops at once).
        const step = (p: PeerState): number => (p.slot >= first ? p.slot - first : p.slot - first + n);
        const from = s;
        const sources = this.#sources.filter((p) => step(p) >= from).sort((a, b) => step(a) - step(b));
        for (const p of sources) {
          if (this.#wanted[p.slot] === 0 || !this.#offerable(p, now)) continue;
          yield p.id;
          if (this.#pickable === 0) break;
        }
        return;
      }
      if (this.#pickable > 0) return;
    }
    // Nothing pickable: every `wanted` is 0, so only a peer without requests may get endgame copies, and none
    // while maxSources peers have some (next() only adds sources: once full, nothing more here).
    const idleAt = this.#idleAt;
    for (; s < n && this.#sources.length < maxSources; s++) {
      const k = slotAt(s);
      if (now < idleAt[k]) continue; // requests in flight, banned, or backed off
      const p = list[k];
      if (this.#offerable(p, now)) yield p.id;
    }
  }

  /**
   * When askable() may next yield a peer it would not yield at `now`, for want of anything else changing: the end of
   * the first back-off of a neighbour holding a pickable chunk (or, in endgame, of an idle one), while this node has
   * fewer than `maxSources` sources; +Infinity if none. A fetch loop woken then asks it as soon as it may — woken
   * only by arrivals, batch ends and a 200 ms tick, a node short of sources waited up to a tick past the back-offs.
   * O(peers).
   */
  wakeAt(now: number): number {
    if (this.done || this.#sources.length >= this.#maxSources) return Number.POSITIVE_INFINITY;
    const at = this.#pickable > 0 ? this.#askAt : this.#idleAt;
    let t = Number.POSITIVE_INFINITY;
    for (let k = 0; k < at.length; k++) if (at[k] > now && at[k] < t) t = at[k];
    return t;
  }

  /** next(p) does more than return nothing at once (its first checks). */
  #offerable(p: PeerState, now: number): boolean {
    if (p.banned || now < p.backoffUntil) return false;
    if (p.requests === 0 && this.#sources.length >= this.#maxSources) return false;
    return this.#wanted[p.slot] > 0 || (p.requests === 0 && this.#pickable === 0);
  }

  #room(p: PeerState, budget: number): boolean {
    return (
      p.inFlightBytes < budget &&
      p.requests < this.#o.maxInFlightChunks &&
      (p.requests > 0 || this.#sources.length < this.#maxSources)
    );
  }

  #untold(p: PeerState): void {
    if (p.told < 0) return;
    this.#told--;
    this.#toldSum -= p.told;
    p.told = -1;
  }

  /**
   * This node's lead over its neighbours' mean progress as they told it (peerProgress), in chunks; undefined before
   * any told it. For the pace (behindShare) and the simulator's samples.
   */
  paceLead(): number | undefined {
    return this.#told === 0 ? undefined : this.#have - this.#toldSum / this.#told;
  }

  /** The pace (behindShare): this node is that far behind its neighbours. */
  #behind(): boolean {
    const lead = this.paceLead();
    return lead !== undefined && lead <= -this.#behindChunks;
  }

  #take(p: PeerState, i: number, now: number, out: number[]): void {
    this.#remove(i);
    this.#setState(i, IN_FLIGHT);
    this.#flight.set(i, []);
    this.#request(p, i, now);
    out.push(i);
  }

  /**
   * The caller verified and wrote chunk `index` from `peerId`. 'new' also lists the peers whose endgame copies to
   * cancel; 'duplicate' means it was already here. Counts toward the peer's measured rate if it was asked for.
   */
  received(peerId: string, index: number, now: number): Received {
    return this.#received(this.#peers.get(peerId), index, now);
  }

  /** received() by the handle peerHandle() gave (of this scheduler): the same without the lookup by id. */
  receivedAt(handle: PeerHandle, index: number, now: number): Received {
    const p = handle as unknown as PeerState;
    return this.#received(p.gone ? undefined : p, index, now);
  }

  #received(p: PeerState | undefined, index: number, now: number): Received {
    this.#check(index);
    const req = p?.reqs.get(index);
    if (p && req) {
      const bytes = this.#len[index];
      const ms = Math.max(0, now - Math.max(req.at, p.lastArrival));
      p.rateBytes = p.rateBytes * RATE_MEMORY + bytes;
      p.rateMs = p.rateMs * RATE_MEMORY + ms;
      p.measured = true;
      p.lastArrival = now;
      p.backoffs = 0;
    }
    if (p && !p.banned) this.#gain(p, index);
    if (this.#chunk[index * this.#rec + STATE] === HAVE) return { status: 'duplicate', cancel: [] };
    this.#stuck.delete(index);
    const cancel: string[] = [];
    if (this.#chunk[index * this.#rec + STATE] === IN_FLIGHT) {
      for (const r of this.#flight.get(index) as Request[]) {
        this.#offBooks(r, now);
        if (r !== req) cancel.push(r.peer.id);
      }
      this.#flight.delete(index);
    } else {
      this.#remove(index);
    }
    this.#setState(index, HAVE);
    this.#have++;
    if (p) p.received++;
    return { status: 'new', cancel };
  }

  /**
   * A request failed (or was cancelled by the caller). The chunk returns to the pool unless another copy is in
   * flight. busy / error: the peer is backed off, doubling with each back-off until an arrival resets it.
   * not-found: the peer does not hold it. corrupt: the same, and it counts against the peer, banned after
   * `banAfter` (its requests are dropped: the caller should close its streams). timeout (the caller gave up, e.g.
   * after overdue()): the peer's rate is halved. A request already off the books (cancelled in endgame, dropped by
   * a ban) only applies the reason to the peer.
   */
  failed(peerId: string, index: number, reason: FailReason, now: number): void {
    this.#check(index);
    const p = this.#peers.get(peerId);
    if (p) this.#failed(p, index, reason, now);
  }

  /** failed() by the handle peerHandle() gave (of this scheduler): the same without the lookup by id. */
  failedAt(handle: PeerHandle, index: number, reason: FailReason, now: number): void {
    this.#check(index);
    const p = handle as unknown as PeerState;
    if (!p.gone) this.#failed(p, index, reason, now);
  }

  #failed(p: PeerState, index: number, reason: FailReason, now: number): void {
    const req = p.reqs.get(index);
    if (req) this.#unrequest(req, now);
    if (
      req &&
      !p.seeder &&
      (reason === 'error' || reason === 'timeout') &&
      this.#chunk[index * this.#rec + STATE] === MISSING
    ) {
      if (this.#chunk[index * this.#rec + FAILS] < 255) this.#chunk[index * this.#rec + FAILS]++;
      if (this.#chunk[index * this.#rec + FAILS] >= this.#o.stuckAfter) this.#stuck.add(index);
    }
    switch (reason) {
      case 'busy':
      case 'error':
        // The rest of a busy batch answers busy too (chunk-client): one back-off per batch, not one per chunk.
        if (now < p.backoffUntil) break;
        // The head answers busy for a chunk it has already sent (super-seeding, seeder/super-seeding.ts): a refusal
        // of that chunk, not overload, so no doubling — doubled back-offs left the head idle for seconds while it
        // held chunks no node had yet (bench/sim, 16 nodes: the last node 9 s behind the median).
        if (p.seeder && reason === 'busy') {
          this.#refusedAt[index] = now;
          p.backoffUntil = now + this.#o.busyBackoffMs;
          this.#setAskAt(p);
          break;
        }
        if (
          this.#o.hungryBackoffMs < this.#o.busyBackoffMs &&
          Number.isFinite(this.#o.maxSources) &&
          (this.#sources.length * 2 <= this.#o.maxSources || this.#behind())
        )
          p.backoffUntil = now + this.#o.hungryBackoffMs;
        else {
          p.backoffUntil = now + Math.min(this.#o.busyBackoffMs * 2 ** p.backoffs, this.#o.maxBackoffMs);
          p.backoffs++;
        }
        this.#setAskAt(p);
        break;
      case 'not-found':
        this.#lose(p, index);
        break;
      case 'corrupt':
        this.#lose(p, index);
        p.bad++;
        if (p.bad >= this.#o.banAfter && !p.banned) {
          p.banned = true;
          this.#untold(p);
          this.#banned.add(p.id);
          this.#forget(p, now);
          this.#setAskAt(p);
        }
        break;
      case 'timeout':
        if (req) {
          if (!p.measured) {
            p.rateBytes = this.#o.initialRateBps; // one second's worth
            p.rateMs = 1000;
            p.measured = true;
          }
          p.rateBytes /= 2;
        }
        break;
    }
  }

  /**
   * Requests outstanding far longer than their peer's rate predicts: for each peer, in issue order, a request is
   * overdue when the time since it was issued, or since the peer's last arrival if later, exceeds overdueFactor ×
   * (bytes queued at that peer up to and including it ÷ its rate) + overdueSlackMs. The caller may cancel them
   * with failed(…, 'timeout'); they stay listed until it does or they arrive.
   */
  overdue(now: number): Array<{ peerId: string; index: number }> {
    const out: Array<{ peerId: string; index: number }> = [];
    this.#eachOverdue(now, (r) => out.push({ peerId: r.peer.id, index: r.index }));
    return out;
  }

  isBanned(peerId: string): boolean {
    return this.#banned.has(peerId);
  }

  stats(): SchedulerStats {
    return {
      have: this.#have,
      remaining: this.remaining,
      inFlight: this.#flight.size,
      endgame: this.endgame,
      perPeer: this.#list.map((p) => ({
        peerId: p.id,
        seeder: p.seeder,
        inFlight: p.reqs.size,
        inFlightBytes: p.inFlightBytes,
        rateBps: p.measured ? this.#rate(p) : 0,
        wanted: this.#wanted[p.slot],
        received: p.received,
        bad: p.bad,
        banned: p.banned,
      })),
    };
  }

  /**
   * Neighbours (not the seeder, not banned) holding a chunk this node may ask for now (`wanted` > 0), and how many of
   * those are backed off after a `busy` or `error`: why a node with nothing in flight is idle (the fetcher's flow
   * counters, for the testbed's per-node time series); `idle`: of the others, those with no request in flight (a
   * source slot they could fill). O(peers).
   */
  holders(now: number): { holding: number; backedOff: number; idle: number } {
    let holding = 0;
    let backedOff = 0;
    let idle = 0;
    for (const p of this.#list) {
      if (p.seeder || p.banned || this.#wanted[p.slot] === 0) continue;
      holding++;
      if (now < p.backoffUntil) backedOff++;
      else if (p.reqs.size === 0) idle++;
    }
    return { holding, backedOff, idle };
  }

  #rate(p: PeerState): number {
    if (!p.measured) return this.#o.initialRateBps;
    return Math.max(1, (p.rateBytes / Math.max(p.rateMs, 1)) * 1000);
  }

  #budget(p: PeerState): number {
    const { targetQueueMs, minInFlightBytes, maxInFlightBytes } = this.#o;
    return Math.min(maxInFlightBytes, Math.max(minInFlightBytes, (this.#rate(p) * targetQueueMs) / 1000));
  }

  #starved(now: number): boolean {
    return this.#neighbourRequests === 0 && now - this.#neighboursIdleSince >= this.#o.seederGraceMs;
  }

  /** Rule 5, for an idle peer: copies of the oldest outstanding requests it may take. */
  #endgame(p: PeerState, now: number, budget: number, out: number[], localOnly: boolean): void {
    if (this.#o.endgameCopies < 2) return;
    let late: Set<Request> | undefined; // O(requests in flight): built only when a copy's lateness matters
    const rate = this.#rate(p);
    for (const [i, copies] of this.#flight) {
      if (!this.#room(p, budget)) break;
      if (!this.#holds(p, i) || copies.length >= this.#o.endgameCopies || copies.some((r) => r.peer === p))
        continue;
      if (localOnly && this.#inRack(i)) continue; // rule 6 holds in endgame too
      const outpaced =
        p.seeder || (p.measured && copies.some((r) => r.peer.measured && this.#rate(r.peer) > rate));
      if (outpaced) {
        if (!late) {
          const overdue = new Set<Request>();
          this.#eachOverdue(now, (r) => overdue.add(r));
          late = overdue;
        }
        if (!copies.some((r) => late?.has(r))) continue;
      }
      this.#request(p, i, now);
      out.push(i);
    }
  }

  #eachOverdue(now: number, each: (r: Request) => void): void {
    const { overdueFactor, overdueSlackMs } = this.#o;
    for (const p of this.#list) {
      if (p.reqs.size === 0) continue;
      const msPerByte = 1000 / this.#rate(p);
      let queued = 0;
      for (const r of p.reqs.values()) {
        queued += this.#len[r.index];
        if (now - Math.max(r.at, p.lastArrival) > overdueFactor * queued * msPerByte + overdueSlackMs)
          each(r);
      }
    }
  }

  #request(p: PeerState, i: number, now: number): void {
    const r: Request = { peer: p, index: i, at: now };
    (this.#flight.get(i) as Request[]).push(r);
    if (p.requests === 0) this.#sources.push(p);
    p.reqs.set(i, r);
    p.requests++;
    if (p.requests === 1) this.#setAskAt(p);
    p.inFlightBytes += this.#len[i];
    if (!p.seeder) this.#neighbourRequests++;
    if (p.remote) this.#remoteRequests++;
  }

  /** Takes `r` off the books; its chunk returns to the pool if that was its last copy. */
  #unrequest(r: Request, now: number): void {
    this.#offBooks(r, now);
    const copies = this.#flight.get(r.index) as Request[];
    copies.splice(copies.indexOf(r), 1);
    if (copies.length === 0) {
      this.#flight.delete(r.index);
      this.#setState(r.index, MISSING);
      this.#insert(r.index);
    }
  }

  /** Takes `r` off its peer's books only. */
  #offBooks(r: Request, now: number): void {
    const p = r.peer;
    p.reqs.delete(r.index);
    p.requests--;
    if (p.requests === 0) {
      this.#sources.splice(this.#sources.indexOf(p), 1);
      this.#setAskAt(p);
    }
    p.inFlightBytes -= this.#len[r.index];
    if (p.remote) this.#remoteRequests--;
    if (!p.seeder && --this.#neighbourRequests === 0) this.#neighboursIdleSince = now;
  }

  /** Drops a banned or departed peer's requests and holdings. */
  #forget(p: PeerState, now: number): void {
    this.#dropImports(p);
    for (const r of [...p.reqs.values()]) this.#unrequest(r, now);
    const n = this.#len.length;
    for (let i = 0; i < n; i++) if (this.#holds(p, i)) this.#lose(p, i);
  }

  #gainAll(p: PeerState): void {
    const n = this.#len.length;
    for (let i = 0; i < n; i++) this.#gain(p, i);
  }

  #gain(p: PeerState, i: number): void {
    const at = i * this.#rec + HOLD + (p.slot >>> 5);
    const bit = 1 << (p.slot & 31);
    if ((this.#chunk[at] & bit) !== 0) return;
    this.#chunk[at] |= bit;
    // (no rack-mate importing it, none of them is: LOCAL_PENDING counts their importing bytes)
    if (this.#chunk[i * this.#rec + LOCAL_PENDING] > 0 && p.importing?.[i] === 1) {
      p.importing[i] = 0;
      this.#chunk[i * this.#rec + LOCAL_PENDING]--;
    }
    const missing = this.#chunk[i * this.#rec + STATE] === MISSING;
    if (missing) this.#want(p, 1);
    if (p.seeder) return;
    if (missing) this.#remove(i);
    this.#chunk[i * this.#rec + AVAIL]++;
    if (!p.remote) this.#chunk[i * this.#rec + LOCAL_AVAIL]++;
    if (missing) this.#insert(i);
  }

  #lose(p: PeerState, i: number): void {
    const at = i * this.#rec + HOLD + (p.slot >>> 5);
    const bit = 1 << (p.slot & 31);
    if ((this.#chunk[at] & bit) === 0) return;
    this.#chunk[at] &= ~bit;
    const missing = this.#chunk[i * this.#rec + STATE] === MISSING;
    if (missing) this.#want(p, -1);
    if (p.seeder) return;
    if (missing) this.#remove(i);
    this.#chunk[i * this.#rec + AVAIL]--;
    if (!p.remote) this.#chunk[i * this.#rec + LOCAL_AVAIL]--;
    if (missing) this.#insert(i);
  }

  /** Keeps every peer's `wanted` (pickable chunks it holds) right as chunk `i` leaves or re-enters the pool. */
  #setState(i: number, to: number): void {
    const from = this.#chunk[i * this.#rec + STATE];
    this.#chunk[i * this.#rec + STATE] = to;
    const delta = to === MISSING ? 1 : from === MISSING ? -1 : 0;
    if (delta === 0) return;
    const words = this.#words;
    const at = i * this.#rec + HOLD;
    for (let w = 0; w < words; w++) {
      for (let bits = this.#chunk[at + w]; bits !== 0; bits &= bits - 1) {
        this.#wantAt(w * 32 + (31 - Math.clz32(bits & -bits)), delta);
      }
    }
  }

  /** Whether peer p holds chunk i (its bit in the chunk's record). */
  #holds(p: PeerState, i: number): boolean {
    return (this.#chunk[i * this.#rec + HOLD + (p.slot >>> 5)] & (1 << (p.slot & 31))) !== 0;
  }

  /** One more word of holder bits per record (room for 32 more peers): every record moved to the new length. */
  #widen(): void {
    const n = this.#len.length;
    const rec = this.#rec;
    const words = this.#words + 1;
    const wider = recordLength(words);
    const chunk = new Int32Array(n * wider);
    for (let i = 0; i < n; i++)
      chunk.set(this.#chunk.subarray(i * rec, i * rec + HOLD + words - 1), i * wider);
    this.#chunk = chunk;
    this.#rec = wider;
    this.#words = words;
  }

  /** The holder bits of place `from` moved to place `to` (removePeer: the last peer takes the removed one's place). */
  #moveBits(from: number, to: number): void {
    const n = this.#len.length;
    const rec = this.#rec;
    const fromBit = 1 << (from & 31);
    const toBit = 1 << (to & 31);
    for (let i = 0; i < n; i++) {
      const f = i * rec + HOLD + (from >>> 5);
      const t = i * rec + HOLD + (to >>> 5);
      const set = (this.#chunk[f] & fromBit) !== 0;
      this.#chunk[f] &= ~fromBit;
      if (set) this.#chunk[t] |= toBit;
      else this.#chunk[t] &= ~toBit;
    }
  }

  #want(p: PeerState, delta: number): void {
    this.#wantAt(p.slot, delta);
  }

  /** #want() of the peer at place `slot` in #list (its state is read only when `wanted` goes to or from 0). */
  #wantAt(slot: number, delta: number): void {
    const was = this.#wanted[slot];
    this.#wanted[slot] = was + delta;
    if (was === 0 || was + delta === 0) this.#setAskAt(this.#list[slot]);
  }

  /** Brings #askAt and #idleAt up to date for `p` (its wanted, back-off, requests or ban changed). */
  #setAskAt(p: PeerState): void {
    this.#askAt[p.slot] = this.#wanted[p.slot] > 0 ? p.backoffUntil : Number.POSITIVE_INFINITY;
    this.#idleAt[p.slot] = p.requests === 0 && !p.banned ? p.backoffUntil : Number.POSITIVE_INFINITY;
  }

  /** Puts pickable chunk `i` at a uniformly random place in its bucket (which keeps each bucket a random order). */
  #insert(i: number): void {
    const a = this.#chunk[i * this.#rec + AVAIL];
    if (a >= this.#bucketCount) this.#addBuckets(a + 1);
    const k = 3 * a;
    if (this.#bucketOf[k + 1] === this.#bucketOf[k + 2]) this.#growBucket(a);
    const of = this.#bucketOf;
    const slots = this.#slots;
    const base = of[k];
    const size = of[k + 1];
    const j = Math.min(Math.floor(this.#random() * (size + 1)), size);
    if (j < size) {
      const moved = slots[base + j];
      this.#chunk[moved * this.#rec + POS] = size;
      slots[base + size] = moved;
      slots[base + j] = i;
    } else {
      slots[base + size] = i;
    }
    of[k + 1] = size + 1;
    this.#chunk[i * this.#rec + POS] = j;
    this.#pickable++;
  }

  #remove(i: number): void {
    const k = 3 * this.#chunk[i * this.#rec + AVAIL];
    const of = this.#bucketOf;
    const slots = this.#slots;
    const base = of[k];
    const size = of[k + 1] - 1;
    of[k + 1] = size;
    const at = this.#chunk[i * this.#rec + POS];
    const last = slots[base + size];
    if (at < size) {
      slots[base + at] = last;
      this.#chunk[last * this.#rec + POS] = at;
    }
    this.#pickable--;
  }

  /** Buckets up to availability count − 1 (empty, no room yet). */
  #addBuckets(count: number): void {
    if (3 * count > this.#bucketOf.length) {
      const wider = new Int32Array(Math.max(3 * count, 2 * this.#bucketOf.length));
      wider.set(this.#bucketOf);
      this.#bucketOf = wider;
    }
    this.#bucketCount = count;
  }

  /** Twice the room for bucket a, at the end of #slots; when that is full, every bucket moved into a new #slots. */
  #growBucket(a: number): void {
    const of = this.#bucketOf;
    const cap = Math.max(4, 2 * of[3 * a + 2]);
    if (this.#slotsTop + cap > this.#slots.length) {
      // room for twice each bucket's size (and cap for this one), then as much again free
      let total = 0;
      for (let b = 0; b < this.#bucketCount; b++) total += b === a ? cap : Math.max(4, 2 * of[3 * b + 1]);
      const slots = new Int32Array(2 * total);
      let top = 0;
      for (let b = 0; b < this.#bucketCount; b++) {
        const k = 3 * b;
        slots.set(this.#slots.subarray(of[k], of[k] + of[k + 1]), top);
        of[k] = top;
        of[k + 2] = b === a ? cap : Math.max(4, 2 * of[k + 1]);
        top += of[k + 2];
      }
      this.#slots = slots;
      this.#slotsTop = top;
      return;
    }
    const k = 3 * a;
    this.#slots.copyWithin(this.#slotsTop, of[k], of[k] + of[k + 1]);
    of[k] = this.#slotsTop;
    of[k + 2] = cap;
    this.#slotsTop += cap;
  }

  /**
   * A zeroed byte per chunk, for a peer's `importing` (made when a rack-mate first says it imports): views of one
   * buffer for many peers, not a buffer of its own each (when every peer also had such a `has` array, 10,000
   * schedulers in bench/sim held ~700,000 of them, and their own buffers were a sixth of the CPU in its start,
   * allocation and garbage collection). A removed peer's bytes are not reused.
   */
  #bytes(): Uint8Array {
    const n = this.#len.length;
    if (this.#slab === undefined || this.#slabAt + n > this.#slab.byteLength) {
      this.#slab = new ArrayBuffer(Math.max(n, 1) * SLAB_PEERS);
      this.#slabAt = 0;
    }
    const bytes = new Uint8Array(this.#slab, this.#slabAt, n);
    this.#slabAt += n;
    return bytes;
  }

  #check(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.#len.length)) {
      throw new RangeError(`chunk index out of range 0..${this.#len.length - 1}: ${i}`);
    }
  }
}

function definedOnly(init: SchedulerInit): Partial<SchedulerTunables> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SCHEDULER_DEFAULTS)) {
    const v = (init as unknown as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = v;
  }
  return out as Partial<SchedulerTunables>;
}

function checkTunables(o: SchedulerTunables): SchedulerTunables {
  const bad = (name: string, what: string): never => {
    throw new RangeError(`${name} must be ${what}: ${o[name as keyof SchedulerTunables]}`);
  };
  for (const k of [
    'randomFirst',
    'maxInFlightChunks',
    'banAfter',
    'endgameCopies',
    'maxRemoteRequests',
    'stuckAfter',
  ] as const) {
    if (!Number.isInteger(o[k]) || o[k] < (k === 'randomFirst' ? 0 : 1))
      bad(k, k === 'randomFirst' ? 'an integer ≥ 0' : 'an integer ≥ 1');
  }
  for (const k of [
    'targetQueueMs',
    'minInFlightBytes',
    'busyBackoffMs',
    'overdueSlackMs',
    'seederGraceMs',
    'seederRefusalMs',
    'hungryBackoffMs',
  ] as const) {
    if (!(o[k] >= 0 && Number.isFinite(o[k]))) bad(k, 'a finite number ≥ 0');
  }
  if (!(o.behindShare >= 0 && o.behindShare <= 1) && o.behindShare !== Number.POSITIVE_INFINITY)
    bad('behindShare', 'a number in [0, 1] or Infinity');
  for (const k of ['initialRateBps', 'overdueFactor'] as const) {
    if (!(o[k] > 0 && Number.isFinite(o[k]))) bad(k, 'a finite number > 0');
  }
  if (!(o.maxInFlightBytes >= o.minInFlightBytes && Number.isFinite(o.maxInFlightBytes)))
    bad('maxInFlightBytes', `finite and ≥ minInFlightBytes (${o.minInFlightBytes})`);
  if (!(o.maxSources === Number.POSITIVE_INFINITY || (Number.isInteger(o.maxSources) && o.maxSources >= 1)))
    bad('maxSources', 'an integer ≥ 1 or Infinity');
  if (!(o.maxBackoffMs >= o.busyBackoffMs && Number.isFinite(o.maxBackoffMs)))
    bad('maxBackoffMs', `finite and ≥ busyBackoffMs (${o.busyBackoffMs})`);
  return o;
}
