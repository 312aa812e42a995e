import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../seeder/rate-limit.ts';

const bucket = (bytesPerSecond: number, burstBytes: number) =>
  new TokenBucket({ bytesPerSecond, burstBytes, now: 0 });

describe('token bucket', () => {
  it('lets a burst through at once, then makes the next bytes wait for their share of the rate', () => {
    const b = bucket(1000, 500);
    expect(b.take(500, 0)).toBe(0);
    expect(b.take(100, 0)).toBe(100); // 100 bytes at 1000 B/s
    expect(b.take(100, 0)).toBe(200); // queued behind the previous 100
  });

  it('refills with time, but never beyond the burst', () => {
    const b = bucket(1000, 500);
    b.take(500, 0);
    expect(b.available(250)).toBe(250);
    expect(b.take(250, 250)).toBe(0);
    expect(b.available(10_000)).toBe(500);
    expect(b.take(600, 10_000)).toBe(100);
  });

  it('holds a sender to the rate over many takes', () => {
    const b = bucket(1_000_000, 64_000);
    let now = 0;
    for (let i = 0; i < 100; i++) now += b.take(100_000, now); // 10 MB
    expect(now).toBeGreaterThanOrEqual(9_900);
    expect(now).toBeLessThanOrEqual(10_000);
  });

  it('is unlimited at rate 0', () => {
    const b = bucket(0, 1);
    expect(b.unlimited).toBe(true);
    expect(b.take(1e12, 0)).toBe(0);
  });

  it('refills nothing when the clock steps back', () => {
    const b = new TokenBucket({ bytesPerSecond: 1000, burstBytes: 100, now: 5000 });
    b.take(100, 5000);
    expect(b.take(100, 4000)).toBe(100);
  });

  it('refuses a negative rate or an empty burst', () => {
    expect(() => bucket(-1, 10)).toThrow(RangeError);
    expect(() => bucket(10, 0)).toThrow(RangeError);
    expect(() => bucket(Number.NaN, 10)).toThrow(RangeError);
  });
});
