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

  it('frees the chunks first sent to a peer that leaves: the next asker gets them and becomes their first receiver', () => {
    const p = new SuperSeeding({ reserveAfterMs: 10_000 });
    expect(p.take('a', 0, 'p1')).toBe(true);
    expect(p.take('b', 0, 'p1')).toBe(true);
    expect(p.take('c', 0, 'p2')).toBe(true);
    expect(p.take('a', 100, 'p3')).toBe(false);
    p.left('p2'); // not a's first receiver: a stays reserved
    expect(p.take('a', 200, 'p3')).toBe(false);
    expect(p.take('c', 200, 'p3')).toBe(true); // p2 left with c
    p.left('p1');
    expect(p.take('a', 300, 'p3')).toBe(true);
    expect(p.take('b', 300, 'p4')).toBe(true);
    expect(p.take('a', 400, 'p4')).toBe(false); // reserved for p3 now, from its send at 300
    expect(p.take('a', 10_300, 'p4')).toBe(true);
    p.left('p1'); // again, or a peer never sent anything: nothing changes
    p.left('nobody');
    expect(p.take('b', 500, 'p5')).toBe(false);
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
