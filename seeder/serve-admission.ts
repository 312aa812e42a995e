/**
 * A serving node's admission when its slots are contested (the swarm's ramp-up): once an asker holding little
 * (below `hungryShare` of what the node's neighbours hold on average, or nothing) was refused for want of a slot,
 * the last `reserved` of the node's serving slots go only to such askers, until one of them takes one or `holdMs`
 * has passed — so a node holding nothing is not refused `busy` by every holder while nodes that already have
 * sources fill their slots (bench/sim, 1,000 nodes: 0.9 sources in flight per unfinished node at 0.6 s while 14
 * neighbours held something it lacked). Without such a refusal every slot is anyone's: a slot kept for askers who
 * are not there is upload capacity lost (kept always, 1,000 nodes: t_last 1.64 → 2.07 × T_min, the late nodes,
 * holding most of the image, finding a slot fewer everywhere). Pure (the clock is the caller's); what the asker
 * holds is the caller's too (a node's view of its neighbours' haves: cli/fetch-image.ts, bench/sim).
 */
/** `hungryShare` of a node's admission (cli/fetch-image.ts): below half of what its neighbours hold on average. */
export const HUNGRY_SHARE = 0.5;
/** `holdMs` of a node's admission (cli/fetch-image.ts): about a busy back-off (peer/scheduler.ts, 250 → 500 ms). */
export const HUNGRY_HOLD_MS = 500;

export interface ServeAdmissionInit {
  /** Slots kept for hungry askers (0: first come, first served); at least one slot stays anyone's. */
  reserved: number;
  /**
   * An asker holding fewer than this share of `typicalHeld` (what the server's neighbours hold on average), or
   * nothing, is hungry.
   */
  hungryShare: number;
  /** How long after a hungry asker's refusal the reserved slots stay kept, ms. */
  holdMs: number;
}

export class ServeAdmission {
  readonly #o: ServeAdmissionInit;
  #hungryRefusedAt = Number.NEGATIVE_INFINITY;

  constructor(init: ServeAdmissionInit) {
    for (const [k, v] of Object.entries(init)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`ServeAdmissionInit.${k} must be a number ≥ 0`);
    }
    this.#o = { ...init };
  }

  /**
   * Whether a new batch may take a slot at `now` (ms): `serving` of `maxServing` slots are taken; the asker holds
   * `askerHeld` chunks (undefined: not known yet — a node that just arrived — so hungry), the server's neighbours
   * `typicalHeld` on average.
   */
  admits(
    now: number,
    serving: number,
    maxServing: number,
    askerHeld: number | undefined,
    typicalHeld: number,
  ): boolean {
    const hungry =
      askerHeld === undefined || askerHeld === 0 || askerHeld < this.#o.hungryShare * typicalHeld;
    if (serving >= maxServing) {
      if (hungry) this.#hungryRefusedAt = now;
      return false;
    }
    const reserved = Math.min(this.#o.reserved, maxServing - 1);
    if (serving < maxServing - reserved) return true;
    if (hungry) {
      // the reserved slot went to a hungry asker: kept again only after the next hungry refusal
      this.#hungryRefusedAt = Number.NEGATIVE_INFINITY;
      return true;
    }
    return now - this.#hungryRefusedAt >= this.#o.holdMs;
  }
}
