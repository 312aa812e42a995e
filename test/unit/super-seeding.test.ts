import { describe, expect, it } from 'vitest';
import { SuperSeeding } from '../../seeder/super-seeding.ts';

describe('super-seeding (the head sends each chunk once, again only after the delay)', () => {
  it('sends a chunk the first time, refuses a repeat within reserveAfterMs of that, then sends it to anyone', () => {
    const p = new SuperSeeding({ reserveAfterMs: 1_000 });
    expect(p.take('a', 0)).toBe(true);
    expect(p.take('b', 10)).toBe(true);
    expect(p.take('a', 999)).toBe(false);
    expect(p.take('a', 1_000)).toBe(true);
    expect(p.take('a', 1_001)).toBe(true); // the delay counts from the first send: no wait is ever longer
    expect(p.take('b', 1_009)).toBe(false);
    expect(p.take('b', 1_010)).toBe(true);
  });

  it('with a delay of 0 sends every request', () => {
    const p = new SuperSeeding({ reserveAfterMs: 0 });
    expect([p.take('a', 0), p.take('a', 0), p.take('a', 1)]).toEqual([true, true, true]);
  });

  it('refuses a delay that is negative or not finite', () => {
    expect(() => new SuperSeeding({ reserveAfterMs: -1 })).toThrow(RangeError);
    expect(() => new SuperSeeding({ reserveAfterMs: Number.NaN })).toThrow(RangeError);
  });
});
