import { SuperSeeding } from './super-seeding.ts';

/**
 * Super-seeding into racks, a node's serving policy: a chunk this node has sent into another rack is not sent into
 * that rack again for `reserveAfterMs` (counted from the first send, as super-seeding.ts does for the head); a
 * request for it from there is answered `busy`, and the asker gets it from the rack-mate that got it first
 * (scheduler rule 6 spreads it inside the rack). Requests from this node's rack, and from peers whose rack is not
 * known, are served as before. A pure policy (the clock is passed in): the swarm simulator runs this exact code.
 *
 * Why: a chunk that turns up in one rack is seen by several gateways of the other rack at the same moment (the same
 * have, the same latency); each asks the one holder for it before their import intents (have exchange 1.1.0) reach
 * each other, and it crosses the spine twice or more. Simulator, 2 racks × 8 (seeds 1–3): cross-rack 1.12 → 1.00 ×
 * racks × image; every request refused here was issued within one latency of the first.
 */
export interface RackReserveInit {
  /** A chunk sent into a rack is sent into it again only this long after the first send. */
  reserveAfterMs: number;
  /** This node's rack (undefined: not in a known rack; every request is served). */
  rack: string | undefined;
  /** The rack a requesting peer is in, if known. */
  rackOf: (peerId: string) => string | undefined;
}

/** Racks remembered at most (each a SuperSeeding of its own); past it, the policy stops refusing new racks. */
const MAX_RACKS = 1024;

export class RackReserve {
  readonly #init: RackReserveInit;
  readonly #racks = new Map<string, SuperSeeding>();

  constructor(init: RackReserveInit) {
    if (!(init.reserveAfterMs >= 0 && Number.isFinite(init.reserveAfterMs)))
      throw new RangeError(`reserveAfterMs must be a finite number ≥ 0: ${init.reserveAfterMs}`);
    this.#init = init;
  }

  /** Whether to send `chunk` to `peerId` now; if it goes into another rack, it counts as sent into it at `now`. */
  take(chunk: string, now: number, peerId?: string): boolean {
    const own = this.#init.rack;
    const rack = own === undefined || peerId === undefined ? undefined : this.#init.rackOf(peerId);
    if (rack === undefined || rack === own) return true;
    let sent = this.#racks.get(rack);
    if (!sent) {
      if (this.#racks.size >= MAX_RACKS) return true;
      sent = new SuperSeeding({ reserveAfterMs: this.#init.reserveAfterMs });
      this.#racks.set(rack, sent);
    }
    return sent.take(chunk, now, peerId);
  }
}
