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
 * nodes competing for a chunk could keep restarting each other's wait.) And a node that says it is leaving (left(): its
 * announce with stage `stopped`) frees the chunks first sent to it: nobody will get them from it, so the next asker
 * gets them from the head at once and becomes their first receiver (a fetch right after another that exited waited
 * out the whole delay: ~5 s at 0 bytes, then a chunk a second, docs/BENCHMARKS.md "Fetch").
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
  /** Chunk → when it was first sent (ms), and to whom (if known). */
  readonly #sent = new Map<string, { at: number; peer: string | undefined }>();
  /** Peer → the chunks first sent to it (some may have been forgotten or re-sent since: checked in left()). */
  readonly #byPeer = new Map<string, string[]>();

  constructor(init: SuperSeedingInit) {
    if (!(init.reserveAfterMs >= 0 && Number.isFinite(init.reserveAfterMs)))
      throw new RangeError(`reserveAfterMs must be a finite number ≥ 0: ${init.reserveAfterMs}`);
    this.#reserveAfterMs = init.reserveAfterMs;
  }

  /** Whether to send `chunk` (to `peer`) now; if so it counts as sent at `now`. */
  take(chunk: string, now: number, peer?: string): boolean {
    const first = this.#sent.get(chunk);
    if (first !== undefined) return now - first.at >= this.#reserveAfterMs;
    this.#sent.set(chunk, { at: now, peer });
    if (peer !== undefined) {
      const list = this.#byPeer.get(peer);
      if (list) list.push(chunk);
      else this.#byPeer.set(peer, [chunk]);
    }
    if (this.#sent.size > PRUNE_AT) this.#prune(now);
    return true;
  }

  /** `peer` has left the swarm: the chunks first sent to it are no longer reserved for it to pass on. */
  left(peer: string): void {
    const list = this.#byPeer.get(peer);
    if (!list) return;
    this.#byPeer.delete(peer);
    for (const chunk of list) if (this.#sent.get(chunk)?.peer === peer) this.#sent.delete(chunk);
  }

  #prune(now: number): void {
    for (const [chunk, first] of this.#sent)
      if (now - first.at >= this.#reserveAfterMs) this.#sent.delete(chunk);
    for (const [peer, list] of this.#byPeer) {
      const kept = list.filter((chunk) => this.#sent.get(chunk)?.peer === peer);
      if (kept.length > 0) this.#byPeer.set(peer, kept);
      else this.#byPeer.delete(peer);
    }
  }
}
