/** Options of the HTTP API's per-client limiter (defaults: core/config.ts, head.httpRateLimit). */
export interface RequestRateLimitInit {
  /** Sustained requests per second per client; 0 admits everything. */
  requestsPerSecond: number;
  /** Requests a client may send at once after a quiet spell. */
  burst: number;
  /** Clients tracked at most, so a spray of source addresses cannot grow the map without bound. */
  maxClients: number;
  /** Monotonic clock, ms. @default performance.now */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per client key (the remote IP), a pure policy: `take(key)` says whether one more request is admitted.
 * A bucket left idle long enough to refill is the same as none, so it can be forgotten: when the map is full, full
 * buckets go first, then the least recently used — a forgotten client only gains a fresh burst, never loses one.
 */
export class RequestRateLimiter {
  readonly #o: Required<RequestRateLimitInit>;
  readonly #buckets = new Map<string, Bucket>();

  constructor(init: RequestRateLimitInit) {
    if (!(init.requestsPerSecond >= 0) || !(init.burst >= 1) || !(init.maxClients >= 1))
      throw new RangeError('RequestRateLimitInit needs requestsPerSecond ≥ 0, burst ≥ 1, maxClients ≥ 1');
    this.#o = { now: () => performance.now(), ...init };
  }

  /** Clients currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Admits one request from `key` (and counts it), or refuses it. */
  take(key: string): boolean {
    if (this.#o.requestsPerSecond === 0) return true;
    const now = this.#o.now();
    let b = this.#buckets.get(key);
    if (b) {
      this.#buckets.delete(key); // re-inserted below: Map order is least recently used first
      b.tokens = Math.min(this.#o.burst, b.tokens + ((now - b.at) / 1000) * this.#o.requestsPerSecond);
      b.at = now;
    } else {
      if (this.#buckets.size >= this.#o.maxClients) this.#evict(now);
      b = { tokens: this.#o.burst, at: now };
    }
    this.#buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Seconds until `key` has a token again (for Retry-After). */
  retryAfterSeconds(key: string): number {
    const b = this.#buckets.get(key);
    if (!b || b.tokens >= 1 || this.#o.requestsPerSecond === 0) return 0;
    return Math.ceil((1 - b.tokens) / this.#o.requestsPerSecond);
  }

  #evict(now: number): void {
    const fullAfterMs = (this.#o.burst / this.#o.requestsPerSecond) * 1000;
    for (const [k, b] of this.#buckets) if (now - b.at >= fullAfterMs) this.#buckets.delete(k);
    // Still full: drop the least recently used tenth at once, so a spray costs O(1) amortised per request.
    if (this.#buckets.size >= this.#o.maxClients) {
      let drop = Math.max(1, Math.floor(this.#o.maxClients / 10));
      for (const k of this.#buckets.keys()) {
        if (drop-- <= 0) break;
        this.#buckets.delete(k);
      }
    }
  }
}
