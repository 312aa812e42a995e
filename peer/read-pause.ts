/**
 * A receive low-water mark in user space for the bulk reader (peer/bulk-client.ts). On a slow link (a 50 Mbit/s host
 * link brings a ~6 KB TSO packet about every millisecond) the socket becomes readable every packet or few, and the
 * process is woken for each (docs/BENCHMARKS.md, "Session 8: where a node's CPU goes on the shaped link"). SO_RCVLOWAT
 * would let the kernel gather them; Node has no setsockopt, so after a read that brought little of the body in
 * progress the reader stops reading for a while and the kernel gathers the packets meanwhile: the next read (libuv
 * reads in a loop) takes them all in one wake-up. Measured in "Session 10: batched bulk reads": a lone node on a
 * 50 Mbit/s link has half the wake-ups and ~15 % less CPU; a node in a 16-node swarm on 2 busy cores neither.
 *
 * Pure: the caller passes the clock. The pause is what the measured arrival rate needs to bring gatherBytes (or
 * what is left of the body, if less), at most maxPauseMs, and none when that is under minPauseMs (READ_PAUSE):
 *   - a read that finished what it was reading into (a header, the end of a body) never pauses, and the read that
 *     brings a body's last bytes waits at most for those bytes to arrive (and never longer than maxPauseMs);
 *   - on a fast link (loopback at GB/s) the pause is under minPauseMs and nothing pauses; the rate is measured
 *     only while reading runs (ArrivalRate), so a pause that let the kernel's buffer fill does not make it look slow;
 *   - until a rate has been measured (RATE_MIN_SAMPLES reads while reading ran) nothing pauses.
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

/** Reads measured before the arrival rate is trusted. */
export const RATE_MIN_SAMPLES = 3;
/** Reads closer together than this count as this far apart (two reads in one loop turn). */
const MIN_GAP_MS = 0.05;

/**
 * The rate bytes arrive at on one connection while it is read, bytes per ms: each measured read's bytes over the time
 * since the read before it, averaged with the estimate before (each read weighs half). Only reads while reading ran
 * count: the first read after reading stopped (a pause, waiting for the caller, the idle time between batches:
 * restart()) brings what piled up meanwhile and is left out. So a pause never makes the link look slower, and if the
 * kernel's buffer filled during one (a sender faster than the pause assumed: the sender waited), the next read comes
 * at once and the rate is seen high again.
 */
export class ArrivalRate {
  #last: number | undefined;
  #rate = 0;
  #samples = 0;

  /** Bytes per ms; undefined until RATE_MIN_SAMPLES reads were measured. */
  get bytesPerMs(): number | undefined {
    return this.#samples < RATE_MIN_SAMPLES ? undefined : this.#rate;
  }

  /** Reading starts (again) now: the next read is not measured, only the reads after it. */
  restart(): void {
    this.#last = undefined;
  }

  /** `bytes` were read at `now`; `measure` false: the read only marks the time (a 5-byte header, read at once). */
  add(bytes: number, now: number, measure = true): void {
    if (this.#last !== undefined && measure) {
      const sample = bytes / Math.max(MIN_GAP_MS, now - this.#last);
      this.#rate = this.#samples === 0 ? sample : (this.#rate + sample) / 2;
      this.#samples++;
    }
    this.#last = now;
  }
}
