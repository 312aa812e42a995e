export interface TokenBucketInit {
  /** Sustained rate; 0 = unlimited (take() always answers 0). */
  bytesPerSecond: number;
  /** Bytes that may go out at once after an idle spell (the bucket's depth). */
  burstBytes: number;
  /** The clock reading (ms) the bucket starts full at. */
  now: number;
}

/**
 * A token bucket for upload rates, pure: the caller passes the clock (ms) in. take() charges the bytes at once and
 * answers how long the caller must wait before sending them; the balance may go negative, so concurrent senders
 * sharing one bucket queue up behind each other instead of all waking at the same moment.
 */
export class TokenBucket {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  #tokens: number;
  #last: number;

  constructor(init: TokenBucketInit) {
    if (!(init.bytesPerSecond >= 0) || !(init.burstBytes > 0)) {
      throw new RangeError('a token bucket needs bytesPerSecond ≥ 0 and burstBytes > 0');
    }
    this.bytesPerSecond = init.bytesPerSecond;
    this.burstBytes = init.burstBytes;
    this.#tokens = init.burstBytes;
    this.#last = init.now;
  }

  get unlimited(): boolean {
    return this.bytesPerSecond === 0;
  }

  /** Tokens available at `now` (negative while senders are queued). */
  available(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  /** Charges `bytes` at `now`; returns the ms to wait before sending them (0 = send now). */
  take(bytes: number, now: number): number {
    if (this.unlimited) return 0;
    this.#refill(now);
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.bytesPerSecond);
  }

  #refill(now: number): void {
    if (now <= this.#last) return; // a clock that steps back refills nothing
    this.#tokens = Math.min(
      this.burstBytes,
      this.#tokens + ((now - this.#last) * this.bytesPerSecond) / 1000,
    );
    this.#last = now;
  }
}
