/**
 * The head's streams spread over the racks, its admission policy: a batch (a chunk stream) from a node in rack R is
 * admitted only while R holds fewer of the head's streams than its even share, ceil(slots / racks asking) (where the
 * slots do not divide evenly, the extra ones go to the racks served least: #unevenAdmits); a rack is asking for
 * `windowMs` after one of its nodes asked the head for a batch (admitted or not) or announced itself still fetching to
 * the tracker. Else the batch is answered `busy`, and the slot is kept for the other racks. Askers whose rack is not
 * known are admitted as before, uncounted. A pure policy (the clock is passed in): the chunk server and
 * the swarm simulator in bench/ run this exact code.
 *
 * Why: nodes that start together reach the head in whatever order the network and their boot give, and a rack that
 * comes first takes all of its slots: in bench/sim the nodes arrive in index order, which is rack order, so the head's
 * first 32 streams all went to rack 0, the other racks' askers were refused and backed off (250 ms, most of the head's
 * 0.34 s of sending at 1,000 nodes), and the racks stayed 22–30 chunks apart to the end (1,000 nodes in 4 racks,
 * docs/BENCHMARKS.md "Session 13: the pace"). The announces count as asking because a node's first announce leaves
 * before its first batch to the head, and that batch first asks the head for a bulk token over libp2p and opens a TCP
 * connection (peer/fetcher.ts run(), peer/bulk-client.ts): the head's tracker knows the racks about to ask at least two
 * round trips before their first requests come, so the first burst is split too (bench/sim, 1,000 nodes: 1.17 × T_min
 * with the announces, 1.22 × without, 1.24 × off). A share of the streams now, not a count of turns so far: a count
 * held the rack served first back while the others were still in their back-off, and the head's link sat idle (its
 * last send at 1.35–1.57 s against 0.62–0.72 s; "Session 13: the head's sends spread over the racks"). The window keeps
 * it work-conserving: a rack that stopped asking drops out of the count, and its share goes to the others.
 */
export interface RackSpreadInit {
  /** The head's streams at once (config seeder.maxConcurrentTotal). */
  slots: number;
  /** A rack counts as asking for this long after its last ask or announce, ms. */
  windowMs: number;
  /** The rack a peer is in, if known (the tracker's record of its announces). */
  rackOf: (peerId: string) => string | undefined;
  /**
   * The slots that do not divide evenly go to the racks served least (#unevenAdmits); false: to the first askers
   * under ceil(slots / racks), as until session 14 (an experiment's comparison). @default true
   */
  rotate?: boolean;
}

/** Racks counted at most; past it, askers from new racks are admitted uncounted. */
const MAX_RACKS = 1024;

interface RackState {
  /** The head's streams to the rack now. */
  streams: number;
  /** Its last ask or announce, ms. */
  askedAt: number;
  /** The head's streams it was given so far, and when the last one started (ms; −Infinity: none yet). */
  started: number;
  startedAt: number;
  /** Racks seen before it (a tie-break). */
  seen: number;
}

export class RackSpread {
  readonly #init: RackSpreadInit;
  readonly #racks = new Map<string, RackState>();
  /** Racks seen so far (RackState.seen). */
  #seen = 0;

  constructor(init: RackSpreadInit) {
    if (!(Number.isInteger(init.slots) && init.slots >= 1))
      throw new RangeError(`slots must be an integer ≥ 1: ${init.slots}`);
    if (!(init.windowMs > 0 && Number.isFinite(init.windowMs)))
      throw new RangeError(`windowMs must be a finite number > 0: ${init.windowMs}`);
    this.#init = init;
  }

  /** `peerId` announced itself still fetching at `now`: its rack is about to ask. */
  asking(peerId: string, now: number): void {
    const r = this.#state(this.#init.rackOf(peerId), now);
    if (r !== undefined) r.askedAt = Math.max(r.askedAt, now);
  }

  /**
   * `peerId` asks for a stream at `now` (call it for every new batch, also one the server is too full to admit: the
   * ask is what marks its rack as asking): whether its rack may take a free slot.
   */
  admits(peerId: string, now: number): boolean {
    const r = this.#state(this.#init.rackOf(peerId), now);
    if (r === undefined) return true;
    r.askedAt = Math.max(r.askedAt, now);
    const asking = this.#askingRacks(now);
    if (r.streams >= Math.ceil(this.#init.slots / asking)) return false;
    // (every rack's share is the ceiling: nothing to rank)
    if (this.#init.slots % asking === 0 || this.#init.rotate === false) return true;
    return this.#unevenAdmits(r, now);
  }

  /**
   * The slots do not divide evenly among the A racks asking: each rack's fair share is floor(slots / A), one more
   * for the slots % A racks given the fewest streams so far (ties: the one whose last stream started longest ago,
   * then the one first seen). R is admitted under its fair share if the free slots are more than those owed to the
   * racks before it in that order (what they hold less than their fair share), and over it (under the ceil) only if
   * they are more than all owed (work-conserving). A rack over its floor but under the ceil was admitted first come,
   * first served: the racks whose nodes reach the head first took every slot (bench/sim, 10 racks and 32 slots:
   * racks 0–7 four streams each, racks 8 and 9 none, which ended ~15 chunks behind; 40 racks: racks 0–31 one each,
   * 32–39 none, and they stayed without while the served racks re-asked at once after each batch).
   */
  #unevenAdmits(r: RackState, now: number): boolean {
    const since = now - this.#init.windowMs;
    const asking: RackState[] = [];
    let free = this.#init.slots;
    for (const o of this.#racks.values()) {
      free -= o.streams;
      if (o.askedAt >= since) asking.push(o);
    }
    asking.sort(order);
    const floor = Math.floor(this.#init.slots / asking.length);
    const extra = this.#init.slots - floor * asking.length;
    // (r is among them: admits() has just marked it asking)
    let owed = 0;
    for (let k = 0; k < asking.length; k++) {
      const o = asking[k];
      const share = floor + (k < extra ? 1 : 0);
      if (o !== r) owed += Math.max(0, share - o.streams);
      else if (r.streams < share) return free > owed;
    }
    return free > owed;
  }

  /** The even share of the head's streams per rack asking at `now`. */
  share(now: number): number {
    return Math.ceil(this.#init.slots / this.#askingRacks(now));
  }

  /** Racks asking at `now` (at least 1); racks gone quiet with no stream are forgotten on the way. */
  #askingRacks(now: number): number {
    const since = now - this.#init.windowMs;
    let asking = 0;
    for (const [rack, r] of this.#racks) {
      if (r.askedAt >= since) asking++;
      else if (r.streams === 0) this.#racks.delete(rack);
    }
    return Math.max(1, asking);
  }

  /** A batch of `peerId`'s was admitted: the rack it counts in (pass it to ended()), if any. */
  started(peerId: string, now: number): string | undefined {
    const rack = this.#init.rackOf(peerId);
    const r = this.#state(rack, now);
    if (r === undefined) return undefined;
    r.streams++;
    r.started++;
    r.startedAt = now;
    return rack;
  }

  /** An admitted batch has ended: `rack` is what started() returned for it. */
  ended(rack: string | undefined): void {
    const r = rack === undefined ? undefined : this.#racks.get(rack);
    if (r !== undefined && r.streams > 0) r.streams--;
  }

  /** The head's streams to `rack` now. */
  streams(rack: string): number {
    return this.#racks.get(rack)?.streams ?? 0;
  }

  /** `rack`'s state, made at `now` if new; undefined for no rack, or a new one past MAX_RACKS. */
  #state(rack: string | undefined, now: number): RackState | undefined {
    if (rack === undefined) return undefined;
    let r = this.#racks.get(rack);
    if (r === undefined) {
      if (this.#racks.size >= MAX_RACKS) return undefined;
      r = { streams: 0, askedAt: now, started: 0, startedAt: Number.NEGATIVE_INFINITY, seen: this.#seen++ };
      this.#racks.set(rack, r);
    }
    return r;
  }
}

/** The order the uneven slots go by (#unevenAdmits): fewer streams so far, the longest since the last, first seen. */
function order(x: RackState, y: RackState): number {
  return x.started - y.started || x.startedAt - y.startedAt || x.seen - y.seen;
}
