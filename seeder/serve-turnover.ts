/*
 * DEV DOCS — a node's serving turnover: a pure policy (no I/O, no timers; `now` in ms is given) for the chunk
 * server's admission of a batch. A peer that keeps its requests pipelined keeps its serving slot from one batch to
 * the next (the next batch is waiting when the last one ends, and takes the slot it frees), so a node's few slots
 * stay with the askers that took them first while the others are refused `busy` and back off. bench/sim, 1,000 nodes
 * with 256 chunks of 16 MiB: nodes held at 2 sources for 3 s, backed off from 28 of the 30 neighbours holding what
 * they lacked, finished 0.8 s after the median.
 *
 * The rule: while another peer was refused within `waitingMs`, a batch that continues a peer's service (it comes
 * within `gapMs` of that peer's last batch's end) is refused too once the peer has been served for `turnoverMs` in a
 * row, so the slot goes to whoever asks next. Off with turnoverMs 0.
 */

/**
 * gapMs of a node's turnover: a pipelined batch is taken up the moment the last one ends (bench/sim: at once; the
 * chunk server: the same turn of its loop), so 1 ms covers it; a batch asked only after the last one ended (no
 * pipelining) starts a new service.
 */
export const TURNOVER_GAP_MS = 1;

export interface ServeTurnoverInit {
  /** Continuous service after which a peer yields its slot when others wait, ms; 0: off. */
  turnoverMs: number;
  /** A refusal this recent means others wait, ms. */
  waitingMs: number;
  /** A batch this soon after the same peer's last one ended continues its service, ms. */
  gapMs: number;
}

export class ServeTurnover {
  readonly #o: ServeTurnoverInit;
  #refusedAt = Number.NEGATIVE_INFINITY;
  /** Per peer: since when it has been served without a break, and when its last batch ended (undefined: in one). */
  readonly #since = new Map<string, number>();
  readonly #endedAt = new Map<string, number>();

  constructor(init: ServeTurnoverInit) {
    for (const [k, v] of Object.entries(init))
      if (!(Number.isFinite(v) && v >= 0))
        throw new RangeError(`ServeTurnover ${k} must be a finite number ≥ 0: ${v}`);
    this.#o = { ...init };
  }

  /** Whether a batch from `peer` that the server's limits admit may take the slot now. */
  admits(peer: string, now: number): boolean {
    if (this.#o.turnoverMs <= 0 || now - this.#refusedAt > this.#o.waitingMs) return true;
    const ended = this.#endedAt.get(peer);
    if (ended === undefined || now - ended > this.#o.gapMs) return true;
    return now - (this.#since.get(peer) ?? now) < this.#o.turnoverMs;
  }

  /** A batch was refused (the server full, or by admits()). */
  refused(now: number): void {
    this.#refusedAt = now;
  }

  /** A batch from `peer` was admitted. */
  started(peer: string, now: number): void {
    const ended = this.#endedAt.get(peer);
    if (ended === undefined || now - ended > this.#o.gapMs) this.#since.set(peer, now);
    this.#endedAt.delete(peer);
  }

  /** The batch from `peer` ended. */
  ended(peer: string, now: number): void {
    this.#endedAt.set(peer, now);
  }
}

/**
 * A node's serving turnover as config `peer.serveTurnoverMs` sets it (others refused within the same span count as
 * waiting), or none for 0: what cli/fetch-image.ts gives a node's chunk server and bench/sim each simulated node.
 */
export function nodeTurnover(turnoverMs: number): ServeTurnover | undefined {
  return turnoverMs > 0
    ? new ServeTurnover({ turnoverMs, waitingMs: turnoverMs, gapMs: TURNOVER_GAP_MS })
    : undefined;
}
