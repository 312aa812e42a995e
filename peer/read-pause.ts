/**
 * A receive low-water mark in user space for the bulk reader (peer/bulk-client.ts). On a slow link (a 50 Mbit/s host
 * link brings a ~6 KB TSO packet about every millisecond) the socket becomes readable every packet or few, and each
 * wake-up of the process costs far more than its read (docs/BENCHMARKS.md, "Session 8: where a node's CPU goes on the
 * shaped link"). SO_RCVLOWAT would let the kernel gather them; Node has no setsockopt, so after a read that brought
 * little of the body in progress the reader stops reading for a while and the kernel gathers the packets meanwhile:
 * the next read (libuv reads in a loop) takes them all in one wake-up.
 *
 * Pure: the caller passes the clock. The pause is what the measured arrival rate needs to bring gatherBytes (or
 * what is left of the body, if less), at most maxPauseMs, and none when that is under minPauseMs (READ_PAUSE):
 *   - a read that finished what it was reading into (a header, the end of a body) never pauses, and the read that
 *     brings a body's last bytes waits at most for those bytes to arrive (and never longer than maxPauseMs);
 *   - on a fast link (loopback at GB/s) the pause is under minPauseMs and nothing pauses; the rate is measured
 *     only while the reader wants bytes (bulk-client.ts starts its window again after waiting for its caller);
 *   - until a rate has been measured (the first RATE_WINDOW_MS of a connection) nothing pauses.
 */

export interface ReadPauseLimits {
  /** A pause aims to let this much pile up in the kernel's buffer for the next read. */
  gatherBytes: number;
  /** The longest pause: what the end of a body can be held up by, and what a slow rate estimate can cost. */
  maxPauseMs: number;
  /**
   * Shorter pauses are not worth a timer: a pause costs two wake-ups (the stopped socket's next packet still wakes the
   * loop once, libuv takes it out of epoll only then; then the timer), and on a fast link (over ~400 Mbit/s with the
   * defaults) or at a body's last few KB reads already bring plenty.
   */
  minPauseMs: number;
}

/** The defaults (docs/BENCHMARKS.md, "Session 10: batched bulk reads": why these). */
export const READ_PAUSE: ReadPauseLimits = {
  gatherBytes: 256 * 1024,
  maxPauseMs: 40,
  minPauseMs: 5,
};

/**
 * How many ms to stop reading after a read of `bytes` that left `left` bytes of the body in progress still to come
 * (0: the read finished what it read into), given the arrival rate in bytes per ms (undefined: not measured yet).
 * 0 reads on at once.
 */
export function readPauseMs(
  read: { bytes: number; left: number; bytesPerMs: number | undefined },
  limits: ReadPauseLimits = READ_PAUSE,
): number {
  const { bytes, left, bytesPerMs } = read;
  if (left <= 0 || bytes >= limits.gatherBytes || bytesPerMs === undefined || bytesPerMs <= 0) return 0;
  const ms = Math.min(limits.maxPauseMs, Math.min(left, limits.gatherBytes) / bytesPerMs);
  return ms < limits.minPauseMs ? 0 : ms;
}

/** Windows over which the arrival rate is measured (they span pauses: what piled up is read after them). */
export const RATE_WINDOW_MS = 20;

/**
 * The rate bytes arrive at on one connection, bytes per ms: the bytes read over windows of at least RATE_WINDOW_MS,
 * each window's rate averaged with the estimate before it. restart() leaves out the time between batches (a
 * persistent connection idles between them) without forgetting the estimate.
 */
export class ArrivalRate {
  #from: number | undefined;
  #bytes = 0;
  #rate: number | undefined;

  /** Bytes per ms; undefined until a window has been measured. */
  get bytesPerMs(): number | undefined {
    return this.#rate;
  }

  /** A window starts now (a batch starts: what came before was idle time). */
  restart(now: number): void {
    this.#from = now;
    this.#bytes = 0;
  }

  /** `bytes` were read at `now`. */
  add(bytes: number, now: number): void {
    if (this.#from === undefined) {
      this.#from = now;
      this.#bytes = 0;
      return; // these bytes arrived over an unknown time before the window
    }
    this.#bytes += bytes;
    const dt = now - this.#from;
    if (dt < RATE_WINDOW_MS) return;
    const sample = this.#bytes / dt;
    this.#rate = this.#rate === undefined ? sample : (this.#rate + sample) / 2;
    this.#from = now;
    this.#bytes = 0;
  }
}
