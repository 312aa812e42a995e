import { describe, expect, it } from 'vitest';
import { ArrivalRate, RATE_MIN_SAMPLES, READ_PAUSE, readPauseMs } from '../../peer/read-pause.ts';

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
  it('measures the reads while reading runs: bytes over the time since the read before', () => {
    const r = new ArrivalRate();
    r.add(6000, 0); // the first read: its bytes came over an unknown time
    for (let t = 1; t < RATE_MIN_SAMPLES; t++) {
      r.add(6000, t);
      expect(r.bytesPerMs).toBeUndefined(); // too few reads yet
    }
    r.add(6000, RATE_MIN_SAMPLES);
    expect(r.bytesPerMs).toBeCloseTo(6000); // a 6 KB packet a millisecond
    // the link slows to 3 KB/ms: the estimate follows within a few reads
    for (let t = 1; t <= 8; t++) r.add(3000, RATE_MIN_SAMPLES + t);
    expect(r.bytesPerMs).toBeGreaterThan(3000);
    expect(r.bytesPerMs).toBeLessThan(3020);
  });

  it('leaves out the read after reading stopped, so a pause never makes the link look slower', () => {
    const r = new ArrivalRate();
    for (let t = 0; t <= RATE_MIN_SAMPLES; t++) r.add(6000, t);
    r.restart(); // a 40 ms pause: the kernel gathers 250 KB
    r.add(250_000, RATE_MIN_SAMPLES + 40); // not measured (it would say 250 KB over 1 ms, or over 41)
    expect(r.bytesPerMs).toBeCloseTo(6000);
    r.add(6000, RATE_MIN_SAMPLES + 41);
    expect(r.bytesPerMs).toBeCloseTo(6000);
  });

  it('a pause that let the buffer fill (a faster sender than assumed) shows as a high rate at once', () => {
    const r = new ArrivalRate();
    for (let t = 0; t <= RATE_MIN_SAMPLES; t++) r.add(6000, 10 * t); // looked slow: 600 B/ms
    expect(readPauseMs({ bytes: 1000, left: 4_000_000, bytesPerMs: r.bytesPerMs })).toBe(40);
    r.restart();
    r.add(128 * KiB, 100); // the drain, not measured
    r.add(64 * KiB, 100.2); // the waiting sender goes on at once
    expect(readPauseMs({ bytes: 1000, left: 4_000_000, bytesPerMs: r.bytesPerMs })).toBe(0);
  });

  it('a header read marks the time but is not a sample; reads in one loop turn say the bytes come at once', () => {
    const r = new ArrivalRate();
    for (let t = 0; t <= RATE_MIN_SAMPLES; t++) r.add(6000, t);
    r.add(5, RATE_MIN_SAMPLES + 1, false);
    expect(r.bytesPerMs).toBeCloseTo(6000);
    const fast = new ArrivalRate();
    for (let i = 0; i <= RATE_MIN_SAMPLES; i++) fast.add(64 * KiB, 5);
    expect(readPauseMs({ bytes: 1000, left: 100_000, bytesPerMs: fast.bytesPerMs })).toBe(0);
  });
});
