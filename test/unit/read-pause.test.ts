import { describe, expect, it } from 'vitest';
import { ArrivalRate, RATE_WINDOW_MS, READ_PAUSE, readPauseMs } from '../../peer/read-pause.ts';

// The bulk reader's receive low-water mark in user space (peer/read-pause.ts): when to stop reading after a read, and
// the arrival rate that sizes the pause.

const KiB = 1024;
/** 50 Mbit/s in bytes per ms. */
const SLOW = 50e6 / 8 / 1000;

describe('readPauseMs', () => {
  it('pauses after a small read on a slow link, long enough to gather GATHER bytes, at most the longest pause', () => {
    // 6 KB of a 580 KB body at 6.25 KB/ms: 256 KiB would take 42 ms, so the longest pause
    expect(readPauseMs({ bytes: 6000, left: 580_000, bytesPerMs: SLOW })).toBe(READ_PAUSE.maxPauseMs);
    // at 25 KB/ms (200 Mbit/s) 256 KiB takes 10.5 ms
    expect(readPauseMs({ bytes: 24_000, left: 580_000, bytesPerMs: 25_000 })).toBeCloseTo(
      (256 * KiB) / 25_000,
    );
  });

  it('never pauses after a read that finished what it read into, nor before a rate is known', () => {
    expect(readPauseMs({ bytes: 5, left: 0, bytesPerMs: SLOW })).toBe(0); // a header
    expect(readPauseMs({ bytes: 6000, left: 0, bytesPerMs: SLOW })).toBe(0); // a body's last bytes
    expect(readPauseMs({ bytes: 6000, left: 580_000, bytesPerMs: undefined })).toBe(0);
    expect(readPauseMs({ bytes: 6000, left: 580_000, bytesPerMs: 0 })).toBe(0);
  });

  it('waits for the end of a body no longer than those bytes take to arrive', () => {
    // 50 KB left at 6.25 KB/ms: 8 ms, not the longest pause
    expect(readPauseMs({ bytes: 6000, left: 50_000, bytesPerMs: SLOW })).toBeCloseTo(8);
    // 25 KB left: 4 ms, under the shortest pause worth a timer, read on
    expect(readPauseMs({ bytes: 6000, left: 25_000, bytesPerMs: SLOW })).toBe(0);
  });

  it('does not pause on a fast link or after a read that already brought plenty', () => {
    // loopback at ~1 GB/s: 256 KiB arrive in 0.26 ms; even a loaded 100 MB/s link brings them in 2.6 ms
    expect(readPauseMs({ bytes: 6000, left: 4_000_000, bytesPerMs: 1_000_000 })).toBe(0);
    expect(readPauseMs({ bytes: 6000, left: 4_000_000, bytesPerMs: 100_000 })).toBe(0);
    expect(readPauseMs({ bytes: 256 * KiB, left: 400_000, bytesPerMs: SLOW })).toBe(0);
  });

  it('honours other limits', () => {
    const limits = { gatherBytes: 64 * KiB, maxPauseMs: 20, minPauseMs: 2 };
    expect(readPauseMs({ bytes: 1000, left: 1_000_000, bytesPerMs: 1000 }, limits)).toBe(20);
    expect(readPauseMs({ bytes: 1000, left: 1_000_000, bytesPerMs: 8 * KiB }, limits)).toBe(8);
    expect(readPauseMs({ bytes: 1000, left: 1_000_000, bytesPerMs: 64 * KiB }, limits)).toBe(0);
  });
});

describe('ArrivalRate', () => {
  it('measures bytes per ms over windows, pauses included, and averages each window with the estimate before', () => {
    const r = new ArrivalRate();
    r.add(6000, 0); // the first read: its bytes came over an unknown time, it only starts the window
    expect(r.bytesPerMs).toBeUndefined();
    r.add(6000, 1);
    r.add(60_000, 10); // read after a pause: what piled up meanwhile
    expect(r.bytesPerMs).toBeUndefined(); // under RATE_WINDOW_MS so far
    r.add(60_000, RATE_WINDOW_MS);
    expect(r.bytesPerMs).toBeCloseTo(126_000 / RATE_WINDOW_MS);
    r.add(20_000, 2 * RATE_WINDOW_MS);
    expect(r.bytesPerMs).toBeCloseTo((126_000 / RATE_WINDOW_MS + 20_000 / RATE_WINDOW_MS) / 2);
  });

  it('restart() leaves out the idle time between batches but keeps the estimate', () => {
    const r = new ArrivalRate();
    r.restart(0);
    r.add(125_000, RATE_WINDOW_MS);
    const before = r.bytesPerMs;
    expect(before).toBeCloseTo(125_000 / RATE_WINDOW_MS);
    r.restart(60_000); // a minute idle on a pooled connection
    expect(r.bytesPerMs).toBe(before);
    r.add(125_000, 60_000 + RATE_WINDOW_MS);
    expect(r.bytesPerMs).toBeCloseTo(125_000 / RATE_WINDOW_MS); // not 125 KB over a minute
  });
});
