/**
 * The head's send order: one chunk after another, each at the link's full rate, to the streams in the order they
 * asked (a FIFO of turns; a stream that sent a chunk queues again behind the others, so streams take turns).
 * A pure policy (no I/O, no timers): the chunk server and the swarm simulator in bench/ run this exact code.
 *
 * Why: with 13–16 streams sharing the head's uplink, every chunk took 16 chunk-times to arrive, so for the first
 * 2.5 s no node held a chunk it could pass on and the nodes' links were 6 % used (bench/sim, 16 nodes at 50 Mbit/s).
 * One send at a time puts a whole chunk in a node's hands every chunk-time; the head's link stays as busy (the next
 * turn starts as the last one ends), and super-seeding (super-seeding.ts) still keeps every turn a new chunk.
 */
export interface HeadServingInit {
  /** Chunks sent at once. @default 1 */
  sendsAtOnce?: number;
  /**
   * New streams waiting for a turn beyond which a new stream is refused (`busy`): a long line makes each request
   * wait many chunk-times, and nodes ask the head only for chunks no neighbour holds — by then others do (bench/sim, 16
   * nodes: the head's last send at 16.4–16.9 s with 1 waiting, 10.8 s = F/u_s with none). @default 0
   */
  maxWaiting?: number;
  /**
   * Sends completed per extra send at once, from 1 up to sendsAtOnce (a slow start: the first chunks reach nodes
   * whole and early, later ones share the link with the nodes' own traffic); 0: sendsAtOnce from the start.
   * @default 0
   */
  rampEvery?: number;
}

export class HeadServing<T> {
  readonly #sendsAtOnce: number;
  readonly #maxWaiting: number;
  readonly #rampEvery: number;
  #completed = 0;
  #sending = 0;
  readonly #waiting: T[] = [];
  #head = 0;

  constructor(init: HeadServingInit = {}) {
    const n = init.sendsAtOnce ?? 1;
    if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`sendsAtOnce must be an integer ≥ 1: ${n}`);
    this.#sendsAtOnce = n;
    const w = init.maxWaiting ?? 0;
    if (!(Number.isInteger(w) && w >= 0)) throw new RangeError(`maxWaiting must be an integer ≥ 0: ${w}`);
    this.#maxWaiting = w;
    const r = init.rampEvery ?? 0;
    if (!(r >= 0 && Number.isFinite(r))) throw new RangeError(`rampEvery must be a finite number ≥ 0: ${r}`);
    this.#rampEvery = r;
  }

  /** Sends allowed at once now. */
  get limit(): number {
    if (this.#rampEvery === 0) return this.#sendsAtOnce;
    return Math.min(this.#sendsAtOnce, 1 + Math.floor(this.#completed / this.#rampEvery));
  }

  /** Chunks being sent now. */
  get sending(): number {
    return this.#sending;
  }

  /** Turns waiting. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  /** Whether a new stream may queue for turns (else answer it `busy`). */
  admits(): boolean {
    return this.#sending + this.waiting < this.limit + this.#maxWaiting;
  }

  /** `turn` wants to send one chunk: true, it may now (call done() after); false, it waits (done() hands it on). */
  ask(turn: T): boolean {
    if (this.#sending < this.limit && this.waiting === 0) {
      this.#sending++;
      return true;
    }
    this.#waiting.push(turn);
    return false;
  }

  /** A send ended (sent or failed): the turns that may send now (counted as sending), in order; often one or none. */
  done(): T[] {
    if (this.#sending === 0) throw new Error('done() without a send in progress');
    this.#sending--;
    this.#completed++;
    const go: T[] = [];
    for (let t = this.#next(); t !== undefined; t = this.#next()) go.push(t);
    return go;
  }

  /** The next waiting turn, if a send slot is free (it is counted as sending). */
  #next(): T | undefined {
    if (this.waiting === 0 || this.#sending >= this.limit) return undefined;
    const next = this.#waiting[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting.splice(0, this.#head);
      this.#head = 0;
    }
    this.#sending++;
    return next;
  }

  /** A waiting turn is abandoned (its stream closed): true if it was waiting. */
  cancel(turn: T): boolean {
    const at = this.#waiting.indexOf(turn, this.#head);
    if (at < 0) return false;
    this.#waiting.splice(at, 1);
    return true;
  }
}

/**
 * The head's send order as config `seeder` sets it (`sendsAtOnce`, 0: none, every admitted stream at once;
 * `sendRampEvery`; new streams may wait for a turn up to `maxConcurrentTotal`): what cli/head-node.ts gives the chunk
 * server and bench/sim the simulated head.
 */
export function configuredHeadServing<T>(seeder: {
  sendsAtOnce: number;
  sendRampEvery: number;
  maxConcurrentTotal: number;
}): HeadServing<T> | undefined {
  return seeder.sendsAtOnce > 0
    ? new HeadServing<T>({
        sendsAtOnce: seeder.sendsAtOnce,
        maxWaiting: seeder.maxConcurrentTotal,
        rampEvery: seeder.sendRampEvery,
      })
    : undefined;
}
