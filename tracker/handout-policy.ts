/**
 * Which peers the tracker hands to a peer that announces: a pure policy over plain data, so the swarm simulator in
 * bench/ runs the exact code the head runs.
 *
 * The rules, in order:
 * 1. Never the asker itself, never a candidate without an address (nothing to dial), never more than `k`.
 * 2. Candidates are ranked by rack, then by progress tier: the asker's own rack first (cheap, top-of-rack bandwidth),
 *    then every other rack (and rack-less peers); within a rack group the complete peers (progress 1) first, then
 *    the progress quartiles from the top down. Peers in the same (rack group, tier) come in uniformly random order.
 *    Tiers are coarse on purpose: with exact progress every asker would get the same few most-advanced peers and
 *    hammer them in a boot storm; with quartiles, the hundreds of nodes that booted together sit in one tier and the
 *    random order spreads them over each other.
 * 3. `k - floor(k × explore)` slots (23 of 30 by default) are filled from that ranking; the others are drawn
 *    uniformly from every candidate not already taken, whatever its rack or progress. They keep the mesh one random
 *    graph: without them a rack with ≥ k nodes only ever hears of itself and becomes an island fed by the head, and
 *    a tier of a handful of advanced peers would fill every asker's list alone.
 * 4. An asker that is itself complete (`self.progress >= 1`, seeding) gets no complete peers (they have nothing to
 *    give each other), and progress does not rank its list: every incomplete peer needs it equally.
 * 5. Racks: in a pool of several racks, the first `gateways` members of each rack to be filed are its gateways (a
 *    gateway that leaves is replaced by another member of its rack). When the asker's rack has more members than
 *    that, only its gateways are linked across racks: a gateway gets the other gateways of its rack first, then the
 *    ranked slots from its rack, then the explore slots from the other racks' gateways; every other member of the
 *    rack gets its rack only (ranked, then explore slots drawn from the rack). With the scheduler's rule 6
 *    (peer/scheduler.ts: a neighbour in another rack is asked only for chunks no rack-mate holds) a rack pulls each
 *    chunk across its uplink about once, through its few gateways, and spreads it inside: without it every node had
 *    a few cross-rack neighbours and the simulator's 4 racks of 250 pulled 40 × racks × image across the spine.
 *    A rack no larger than `gateways` is all gateways and keeps rules 2–3 as they are. A rack has one gateway per
 *    `gatewayEvery` members filed if that is more (the 65th, 81st, … member filed: its imports go through them).
 *    And a gateway is linked across racks only to gateways from the start, while its rack is still that small, once
 *    any rack is larger (`earlyGateways`): the first members filed in each rack were linked to any member of the
 *    racks filed before, so when a cluster's nodes reach the tracker rack by rack the first racks had hundreds of
 *    members linked across and the last a handful, and imported at very different rates (bench/sim, 2,500 nodes in
 *    10 racks, session 14).
 *
 * The result is in that order: ranked slots (best first), then explored slots.
 *
 * Speed: a scan of 10,000 records costs ~45 µs on these machines before any work is done (cache misses), so a
 * handout that looks at every candidate cannot reach 20,000 announces/s. The candidates therefore live in a
 * HandoutPool, filed by (rack, tier) as they announce, and a handout draws from it by rejection sampling: O(k) work
 * and calls of `random`, whatever the swarm's size (bench/tracker.ts). A plain array is accepted too (tests, the
 * simulator): it is filed into a throw-away pool first, O(n).
 */

/** What the tracker knows about a peer it may hand out (a SwarmState PeerRecord is one). */
export interface HandoutCandidate {
  peerId: string;
  rack?: string;
  /** 0..1; 1 means the peer holds the whole image. */
  progress: number;
  addrs: readonly string[];
}

/** The asker (a SwarmState PeerRecord is one). */
export interface HandoutSelf {
  peerId: string;
  rack?: string;
  /** The asker's own progress; 1 means it is seeding (rule 4). Unknown counts as incomplete. */
  progress?: number;
}

/** Knobs for the simulator to tune; the tracker uses the defaults. */
export interface HandoutPolicy {
  /** Progress tiers below complete: 4 = quartiles. A HandoutPool fixes it when built. @default 4 */
  tiers: number;
  /** Share of the k slots drawn uniformly at random instead of by rank, rounded down. @default 0.25 */
  explore: number;
  /** Members of a rack linked to other racks (rule 5), at least. A HandoutPool fixes it when built. @default 4 */
  gateways: number;
  /**
   * And one gateway per this many members of the rack filed (rule 5), when that is more: a rack's imports go through
   * its gateways (the scheduler's rule 6: one request across racks at a time each), and 4 were too few for a rack of
   * 250 whose image comes almost all from other racks (bench/sim, 2,500 nodes in 10 racks: docs/BENCHMARKS.md,
   * "Session 14"). A HandoutPool fixes it when built. @default 16
   */
  gatewayEvery: number;
}

export const HANDOUT_DEFAULTS: Readonly<HandoutPolicy> = {
  tiers: 4,
  explore: 0.25,
  gateways: 4,
  gatewayEvery: 16,
};

/**
 * A candidate's place in a HandoutPool. The fields are the pool's bookkeeping (public so that an owner, such as
 * SwarmState's per-pair entry, can extend this class instead of allocating a second object per peer).
 */
export class PoolMember<C extends HandoutCandidate> {
  value: C;
  /** Tier it is filed under; -1 while outside any pool. */
  tier = -1;
  rack: string | undefined = undefined;
  rackTiers: PoolMember<C>[][] | null = null;
  rackAt = -1;
  allAt = -1;
  /** The last handout that took it (one handout never takes a member twice). */
  stamp = 0;
  /** Place in the pool's list of gateways (rule 5); -1: not a gateway. */
  gatewayAt = -1;

  constructor(value: C) {
    this.value = value;
  }
}

/** The candidates of one image, filed by progress tier, overall and per rack, for O(k) handouts. */
export class HandoutPool<C extends HandoutCandidate> {
  readonly tiers: number;
  /** all[t]: every member in tier t (tier `tiers` = complete), in no order. */
  readonly #all: PoolMember<C>[][];
  readonly #racks = new Map<string, PoolMember<C>[][]>();
  readonly gateways: number;
  /** Every rack's gateways (rule 5), and those of each rack. */
  readonly #gateways: PoolMember<C>[] = [];
  readonly #rackGateways = new Map<string, PoolMember<C>[]>();
  #size = 0;
  /** Rule 5 for a gateway of a rack not yet larger than `gateways` too (see pick); false: as before session 14. */
  earlyGateways = true;
  /** A rack has had more members than `gateways` (earlyGateways applies only then: small racks keep rules 2–3). */
  #anyLarge = false;

  readonly gatewayEvery: number;

  constructor(
    tiers: number = HANDOUT_DEFAULTS.tiers,
    gateways: number = HANDOUT_DEFAULTS.gateways,
    gatewayEvery: number = HANDOUT_DEFAULTS.gatewayEvery,
  ) {
    if (!Number.isInteger(tiers) || tiers < 1 || tiers > 100)
      throw new RangeError(`tiers must be 1..100: ${tiers}`);
    if (!Number.isInteger(gateways) || gateways < 1 || gateways > 1000)
      throw new RangeError(`gateways must be 1..1000: ${gateways}`);
    if (!(gatewayEvery >= 1))
      throw new RangeError(`gatewayEvery must be ≥ 1 (Infinity: off): ${gatewayEvery}`);
    this.tiers = tiers;
    this.gateways = gateways;
    this.gatewayEvery = gatewayEvery;
    this.#all = emptyTiers(tiers);
  }

  /** A pool of the given candidates, in their order (so a seeded handout from it is reproducible). */
  static of<C extends HandoutCandidate>(
    candidates: readonly C[],
    tiers?: number,
    gateways?: number,
    gatewayEvery?: number,
  ): HandoutPool<C> {
    const pool = new HandoutPool<C>(tiers, gateways, gatewayEvery);
    for (const c of candidates) pool.set(new PoolMember(c));
    return pool;
  }

  /** Members in the pool (candidates with at least one address). */
  get size(): number {
    return this.#size;
  }

  tierOf(progress: number): number {
    // `progress > 0` also sends NaN to tier 0.
    return progress >= 1 ? this.tiers : progress > 0 ? Math.floor(progress * this.tiers) : 0;
  }

  /** Files `m` by its current value: adds it, moves it after its progress or rack changed, or (no address) drops it. */
  set(m: PoolMember<C>): void {
    const v = m.value;
    if (v.addrs.length === 0) {
      this.delete(m);
      return;
    }
    const tier = this.tierOf(v.progress);
    if (m.tier >= 0) {
      if (m.tier === tier && m.rack === v.rack) return;
      if (m.rack === v.rack)
        this.#unfile(m); // a new tier only: it stays its rack's gateway if it is one
      else this.delete(m);
    }
    m.tier = tier;
    m.allAt = push(this.#all[tier], m);
    m.rack = v.rack;
    if (v.rack !== undefined) {
      let group = this.#racks.get(v.rack);
      if (!group) {
        group = emptyTiers(this.tiers);
        this.#racks.set(v.rack, group);
      }
      m.rackTiers = group;
      m.rackAt = push(group[tier], m);
      if (sizeOf(group) > this.gateways) this.#anyLarge = true;
      if (m.gatewayAt < 0 && (this.#rackGateways.get(v.rack)?.length ?? 0) < this.#gatewaysOf(group))
        this.#makeGateway(m);
    }
    this.#size++;
  }

  delete(m: PoolMember<C>): void {
    if (m.tier < 0) return;
    const rack = m.rack;
    const group = m.rackTiers;
    const wasGateway = m.gatewayAt >= 0;
    if (wasGateway) {
      swapRemove(this.#gateways, m.gatewayAt, (moved, at) => {
        moved.gatewayAt = at;
      });
      m.gatewayAt = -1;
      const own = this.#rackGateways.get(rack as string) as PoolMember<C>[];
      own.splice(own.indexOf(m), 1);
    }
    this.#unfile(m);
    if (rack !== undefined && !this.#racks.has(rack)) this.#rackGateways.delete(rack);
    else if (wasGateway && group) {
      // Another member of the rack takes its place, the most advanced first.
      for (let t = this.tiers; t >= 0; t--) {
        const next = group[t].find((x) => x.gatewayAt < 0);
        if (next) {
          this.#makeGateway(next);
          break;
        }
      }
    }
  }

  /** Gateways a rack of these members has (rule 5): `gateways`, or one per `gatewayEvery` members if more. */
  #gatewaysOf(group: PoolMember<C>[][]): number {
    return Math.max(this.gateways, Math.ceil(sizeOf(group) / this.gatewayEvery));
  }

  #makeGateway(m: PoolMember<C>): void {
    m.gatewayAt = push(this.#gateways, m);
    const own = this.#rackGateways.get(m.rack as string);
    if (own) own.push(m);
    else this.#rackGateways.set(m.rack as string, [m]);
  }

  /** Takes `m` out of the tier lists (its gateway status is the caller's business). */
  #unfile(m: PoolMember<C>): void {
    swapRemove(this.#all[m.tier], m.allAt, (moved, at) => {
      moved.allAt = at;
    });
    const group = m.rackTiers;
    if (group) {
      swapRemove(group[m.tier], m.rackAt, (moved, at) => {
        moved.rackAt = at;
      });
      if (group.every((list) => list.length === 0)) this.#racks.delete(m.rack as string);
    }
    m.tier = -1;
    m.rack = undefined;
    m.rackTiers = null;
    m.rackAt = -1;
    m.allAt = -1;
    this.#size--;
  }

  *values(): IterableIterator<C> {
    for (const list of this.#all) for (const m of list) yield m.value;
  }

  /** handout() over this pool. */
  pick(self: HandoutSelf, k: number, random: () => number, explore = HANDOUT_DEFAULTS.explore): C[] {
    if (!(explore >= 0 && explore <= 1)) throw new RangeError(`explore must be 0..1: ${explore}`);
    const slots = Math.floor(k);
    if (!(slots > 0) || this.#size === 0) return [];
    const top = this.tiers;
    const selfDone = self.progress !== undefined && self.progress >= 1;
    const same = self.rack === undefined ? undefined : this.#racks.get(self.rack);
    const ranked = slots - Math.floor(slots * explore);
    const draw: Draw<C> = { selfId: self.peerId, stamp: ++stamps, out: [], random };

    // Ranking keys, best first: each tier from the top, or (a seeding asker) all incomplete tiers as one key.
    const keys: number[][] = selfDone
      ? [Array.from({ length: top }, (_, t) => t)]
      : Array.from({ length: top + 1 }, (_, i) => [top - i]);
    /** The best `ranked` of `tiers`, key by key, leaving out `except`. */
    const byRank = (tiers: PoolMember<C>[][], except: PoolMember<C>[][] | null) => {
      for (const key of keys) {
        sample(
          key.map((t) => tiers[t]),
          ranked - draw.out.length,
          except,
          draw,
        );
      }
    };
    const gateways = self.rack === undefined ? undefined : this.#rackGateways.get(self.rack);
    const gateway = gateways?.some((m) => m.value.peerId === self.peerId) === true;
    if (
      same &&
      gateways &&
      this.#racks.size > 1 &&
      (sizeOf(same) > this.gateways || (gateway && this.earlyGateways && this.#anyLarge))
    ) {
      // Rule 5: only the rack's gateways link across racks.
      if (gateway) sample([gateways], gateways.length, null, draw);
      byRank(same, null);
      if (gateway) sample([this.#gateways], slots - draw.out.length, same, draw);
      sample(selfDone ? same.slice(0, top) : same, slots - draw.out.length, null, draw);
      return draw.out;
    }
    if (same) byRank(same, null);
    byRank(this.#all, same ?? null);
    const everyone = selfDone ? this.#all.slice(0, top) : this.#all;
    sample(everyone, slots - draw.out.length, null, draw);
    return draw.out;
  }
}

/**
 * Up to `k` peers for `self` to connect to, by the rules above. `random` is uniform in [0, 1) (Math.random on the
 * head; a seeded generator in tests and the simulator, which makes the result reproducible). Candidates are distinct
 * peers. `policy.tiers`, `policy.gateways` and `policy.gatewayEvery` apply only when `candidates` is an array (a pool
 * has its own).
 */
export function handout<C extends HandoutCandidate>(
  self: HandoutSelf,
  candidates: readonly C[] | HandoutPool<C>,
  k: number,
  random: () => number,
  policy: Partial<HandoutPolicy> = {},
): C[] {
  const pool =
    candidates instanceof HandoutPool
      ? candidates
      : HandoutPool.of(candidates, policy.tiers, policy.gateways, policy.gatewayEvery);
  return pool.pick(self, k, random, policy.explore);
}

interface Draw<C extends HandoutCandidate> {
  selfId: string;
  stamp: number;
  out: C[];
  random: () => number;
}

let stamps = 0;
// Reused by the scans; emptied after each use so it never keeps a member alive.
const scratch: PoolMember<HandoutCandidate>[] = [];

/**
 * Appends to draw.out up to `need` members of the lists chosen uniformly at random, in random order, skipping the
 * asker, those already taken and those of rack group `exclude`. Large lists: rejection sampling, O(need); small
 * lists, or when rejections run out (the lists are mostly ineligible): a scan then a partial Fisher–Yates. Both
 * draw uniformly from what is left, so switching between them mid-way keeps the result uniform.
 */
function sample<C extends HandoutCandidate>(
  lists: readonly (readonly PoolMember<C>[])[],
  need: number,
  exclude: PoolMember<C>[][] | null,
  draw: Draw<C>,
): void {
  if (need <= 0) return;
  let total = 0;
  for (const list of lists) total += list.length;
  if (total === 0) return;
  const { stamp, selfId, out, random } = draw;
  if (total > 4 * need + 64) {
    for (let budget = 8 * need + 64; need > 0 && budget > 0; budget--) {
      let i = Math.min(Math.floor(random() * total), total - 1);
      let l = 0;
      while (i >= lists[l].length) i -= lists[l++].length;
      const m = lists[l][i];
      if (m.stamp === stamp || (exclude !== null && m.rackTiers === exclude) || m.value.peerId === selfId)
        continue;
      m.stamp = stamp;
      out.push(m.value);
      need--;
    }
    if (need === 0) return;
  }
  const pool = scratch as PoolMember<C>[];
  for (const list of lists) {
    for (const m of list) {
      if (m.stamp !== stamp && (exclude === null || m.rackTiers !== exclude) && m.value.peerId !== selfId)
        pool.push(m);
    }
  }
  const n = pool.length;
  for (let j = 0; j < need && j < n; j++) {
    const r = j + Math.min(Math.floor(random() * (n - j)), n - j - 1);
    const m = pool[r];
    pool[r] = pool[j];
    m.stamp = stamp;
    out.push(m.value);
  }
  pool.length = 0;
}

function sizeOf<T>(lists: readonly (readonly T[])[]): number {
  let n = 0;
  for (const list of lists) n += list.length;
  return n;
}

function emptyTiers<C extends HandoutCandidate>(tiers: number): PoolMember<C>[][] {
  return Array.from({ length: tiers + 1 }, () => []);
}

function push<T>(list: T[], item: T): number {
  list.push(item);
  return list.length - 1;
}

/** Removes list[at] by moving the last item into its place; `moved` learns the new index. */
function swapRemove<T>(list: T[], at: number, moved: (item: T, at: number) => void): void {
  const last = list.pop() as T;
  if (at < list.length) {
    list[at] = last;
    moved(last, at);
  }
}
