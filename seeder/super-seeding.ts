/**
 * Super-seeding, the head's serving policy: during the first `reserveAfterMs` after it first sent a chunk, it does not
 * send that chunk again; after that, to anyone who asks.
 * A pure policy (the clock is passed in), so the swarm simulator in bench/ runs this exact code.
 *
 * Why: nodes that boot together all start with nothing, so every one of them finds every chunk held by no
 * neighbour and asks the head (peer/scheduler.ts rule 4) — the head would send each chunk to many nodes at once,
 * and its uplink, the scarcest link of the cluster, would carry the image several times over (1.5–2 × in the testbed
 * and the simulator at 16 nodes). Serving each chunk once and answering `busy` for a repeat makes the nodes take
 * repeats from each other, so the head's uplink carries new chunks only. The delay counts from the first send, not
 * the last, so it bounds any wait: a node that cannot reach a holder (its only receiver left before passing it on,
 * its neighbours unreachable) gets the chunk from the head once the delay has run out. (Counted from the last send,
 * nodes competing for a chunk could keep restarting each other's wait.)
 */
export interface SuperSeedingInit {
  /** A chunk already sent is sent again only this long after its first send. */
  reserveAfterMs: number;
}

/**
 * Past this many remembered chunks, those whose delay has run out are forgotten (servable anyway; a later request
 * starts a new delay: a rare refusal, in exchange for bounded memory).
 */
const PRUNE_AT = 200_000;

export class SuperSeeding {
  readonly #reserveAfterMs: number;
  /** Chunk → when it was first sent (ms). */
  readonly #sent = new Map<string, number>();

  constructor(init: SuperSeedingInit) {
    if (!(init.reserveAfterMs >= 0 && Number.isFinite(init.reserveAfterMs)))
      throw new RangeError(`reserveAfterMs must be a finite number ≥ 0: ${init.reserveAfterMs}`);
    this.#reserveAfterMs = init.reserveAfterMs;
  }

  /** Whether to send `chunk` now; if so it counts as sent at `now`. */
  take(chunk: string, now: number): boolean {
    const first = this.#sent.get(chunk);
    if (first !== undefined) return now - first >= this.#reserveAfterMs;
    this.#sent.set(chunk, now);
    if (this.#sent.size > PRUNE_AT) this.#prune(now);
    return true;
  }

  #prune(now: number): void {
    for (const [chunk, at] of this.#sent) if (now - at >= this.#reserveAfterMs) this.#sent.delete(chunk);
  }
}
