/**
 * Aggregate throughput over time for the dashboard's chart: one sample per tick in a fixed ring, so the head's
 * memory does not grow with uptime. Pure: the caller passes the clock and the counters.
 */
export interface HistoryView {
  /** Sample times, seconds since the epoch. */
  t: number[];
  /** The head seeder's egress, bytes/s, from its byte counter. */
  egress: number[];
  /** Every node's download rate together, bytes/s, from their latest announces. */
  down: number[];
}

export class ThroughputHistory {
  readonly #capacity: number;
  readonly #t: Float64Array;
  readonly #egress: Float64Array;
  readonly #down: Float64Array;
  #next = 0;
  #count = 0;
  #last: { at: number; served: number } | undefined;

  /** @param capacity samples kept (at one per second, 300 = five minutes) */
  constructor(capacity = 300) {
    this.#capacity = capacity;
    this.#t = new Float64Array(capacity);
    this.#egress = new Float64Array(capacity);
    this.#down = new Float64Array(capacity);
  }

  /** Records a sample: `served` is the seeder's byte counter (monotonic), `down` the nodes' summed rate. */
  sample(nowMs: number, served: number, down: number): void {
    const last = this.#last;
    this.#last = { at: nowMs, served };
    if (!last || nowMs <= last.at) return;
    const egress = Math.max(0, served - last.served) / ((nowMs - last.at) / 1000);
    const i = this.#next;
    this.#t[i] = Math.round(nowMs / 100) / 10;
    this.#egress[i] = Math.round(egress);
    this.#down[i] = Math.round(down);
    this.#next = (i + 1) % this.#capacity;
    this.#count = Math.min(this.#count + 1, this.#capacity);
  }

  /** The head's egress at the latest sample, bytes/s (0 before two samples). */
  get egressRate(): number {
    return this.#count ? this.#egress[(this.#next - 1 + this.#capacity) % this.#capacity] : 0;
  }

  view(): HistoryView {
    const out: HistoryView = { t: [], egress: [], down: [] };
    const first = (this.#next - this.#count + this.#capacity) % this.#capacity;
    for (let k = 0; k < this.#count; k++) {
      const i = (first + k) % this.#capacity;
      out.t.push(this.#t[i]);
      out.egress.push(this.#egress[i]);
      out.down.push(this.#down[i]);
    }
    return out;
  }
}
