import { describe, expect, it } from 'vitest';
import { RequestRateLimiter } from '../../tracker/http-rate-limit.ts';

function limiter(o: { requestsPerSecond: number; burst: number; maxClients?: number }) {
  const clock = { now: 0 };
  const l = new RequestRateLimiter({ maxClients: 100, ...o, now: () => clock.now });
  return { l, clock };
}

describe('RequestRateLimiter (per-IP token bucket of the HTTP API)', () => {
  it('admits a burst, refuses past it, and admits again at the sustained rate', () => {
    const { l, clock } = limiter({ requestsPerSecond: 5, burst: 3 });
    expect([1, 2, 3, 4].map(() => l.take('a'))).toEqual([true, true, true, false]);
    expect(l.retryAfterSeconds('a')).toBe(1);
    clock.now = 200; // one token back
    expect([l.take('a'), l.take('a')]).toEqual([true, false]);
    clock.now = 60_000; // never more than the burst
    expect([1, 2, 3, 4].map(() => l.take('a'))).toEqual([true, true, true, false]);
  });

  it('keeps clients apart', () => {
    const { l } = limiter({ requestsPerSecond: 1, burst: 1 });
    expect([l.take('a'), l.take('a'), l.take('b')]).toEqual([true, false, true]);
  });

  it('admits everything at rate 0 and tracks nobody', () => {
    const { l } = limiter({ requestsPerSecond: 0, burst: 1 });
    for (let i = 0; i < 1000; i++) expect(l.take('a')).toBe(true);
    expect(l.size).toBe(0);
  });

  it('tracks at most maxClients however many addresses a spray uses; a client that keeps flooding stays refused', () => {
    const { l, clock } = limiter({ requestsPerSecond: 1, burst: 2, maxClients: 100 });
    expect([l.take('flooder'), l.take('flooder'), l.take('flooder')]).toEqual([true, true, false]);
    for (let i = 0; i < 20_000; i++) {
      l.take(`10.0.${i >> 8}.${i & 255}`);
      if (i % 5 === 0) l.take('flooder'); // still sending: among the recently used, never evicted
      expect(l.size).toBeLessThanOrEqual(100);
      clock.now += 0.001;
    }
    expect(l.take('flooder')).toBe(false);
  });

  it('forgets idle clients first, which only gives them the burst they would have had anyway', () => {
    const { l, clock } = limiter({ requestsPerSecond: 10, burst: 2, maxClients: 2 });
    l.take('idle');
    clock.now = 1000; // 'idle' has refilled by now
    l.take('busy');
    l.take('busy');
    l.take('new'); // the map is full: 'idle' goes, 'busy' (empty bucket) stays
    expect(l.take('busy')).toBe(false);
    expect(l.size).toBe(2);
  });
});
