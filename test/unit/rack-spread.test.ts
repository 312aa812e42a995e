import { describe, expect, it } from 'vitest';
import { RackSpread } from '../../seeder/rack-spread.ts';

const racks: Record<string, string> = {
  a1: 'A',
  a2: 'A',
  a3: 'A',
  a4: 'A',
  b1: 'B',
  b2: 'B',
  c1: 'C',
  c2: 'C',
};
const spread = (slots = 4, windowMs = 1000) => new RackSpread({ slots, windowMs, rackOf: (p) => racks[p] });
/** An ask that is admitted is started at once (as the chunk server does with a free slot): its rack, or false. */
const ask = (s: RackSpread, peer: string, now: number): string | undefined | false =>
  s.admits(peer, now) ? s.started(peer, now) : false;

describe('RackSpread', () => {
  it('gives a rack asking alone every slot (work-conserving)', () => {
    const s = spread(4);
    expect([ask(s, 'a1', 0), ask(s, 'a2', 0), ask(s, 'a3', 0), ask(s, 'a4', 0)]).toEqual([
      'A',
      'A',
      'A',
      'A',
    ]);
    expect(s.streams('A')).toBe(4);
    expect(s.share(0)).toBe(4);
  });

  it('holds each asking rack to slots / racks streams', () => {
    const s = spread(6);
    // B's and C's nodes announced (about to ask) before A's requests came: 3 racks, 6 / 3 = 2 each
    s.asking('b1', 0);
    s.asking('c1', 0);
    expect([ask(s, 'a1', 1), ask(s, 'a2', 1), ask(s, 'a3', 1)]).toEqual(['A', 'A', false]);
    expect([ask(s, 'b1', 2), ask(s, 'b2', 2), ask(s, 'c1', 2)]).toEqual(['B', 'B', 'C']);
    expect([s.streams('A'), s.streams('B'), s.streams('C')]).toEqual([2, 2, 1]);
    s.ended('A'); // a stream of A's ends: A may take one again, not two
    expect([ask(s, 'a3', 3), ask(s, 'a4', 3)]).toEqual(['A', false]);
  });

  it('gives the slots that do not divide evenly to the racks served least, not to the first askers', () => {
    const s = spread(4);
    // 3 racks asking, 4 slots: 1 each, the 4th to the rack given the fewest streams so far
    s.asking('b1', 0);
    s.asking('c1', 0);
    // A asks first: one stream, not two (B and C are owed theirs, and one of them the 4th)
    expect([ask(s, 'a1', 1), ask(s, 'a2', 1)]).toEqual(['A', false]);
    // B then: one (C, with none yet, is owed two now)
    expect([ask(s, 'b1', 2), ask(s, 'b2', 2)]).toEqual(['B', false]);
    // C: one; the 4th slot is now A's, whose stream started longest ago (all three had one)
    expect([ask(s, 'c1', 3), ask(s, 'c2', 3)]).toEqual(['C', false]);
    expect(ask(s, 'b2', 4)).toBe(false);
    expect(ask(s, 'a2', 5)).toBe('A');
    expect([s.streams('A'), s.streams('B'), s.streams('C')]).toEqual([2, 1, 1]);
    s.ended('A'); // A's stream ends: the extra slot goes to B now (its last started before C's), not back to A
    expect([ask(s, 'a3', 6), ask(s, 'c1', 6), ask(s, 'b2', 6)]).toEqual([false, false, 'B']);
  });

  it('rotates the slots when more racks ask than there are slots', () => {
    const s = spread(2);
    s.asking('b1', 0);
    s.asking('c1', 0);
    // none served yet: the two slots are owed to the racks seen first (B and C announced before A asked)
    expect([ask(s, 'a1', 1), ask(s, 'b1', 1), ask(s, 'c1', 1)]).toEqual([false, 'B', 'C']);
    s.ended('B');
    // B asks again at once after its batch: the free slot is A's, which has had none
    expect(ask(s, 'b2', 2)).toBe(false);
    expect(ask(s, 'a1', 3)).toBe('A');
    s.ended('C');
    expect(ask(s, 'c1', 4)).toBe(false); // C had one; B had one too, and is before it
    expect(ask(s, 'b1', 5)).toBe('B');
  });

  it('keeps the slots free for no rack that stopped asking (work-conserving)', () => {
    const s = spread(4, 1000);
    s.asking('b1', 0);
    s.asking('c1', 0);
    expect([ask(s, 'a1', 1), ask(s, 'a2', 1)]).toEqual(['A', false]);
    // B and C never ask: after the window A alone gets every slot
    expect([ask(s, 'a2', 1001), ask(s, 'a3', 1001), ask(s, 'a4', 1001)]).toEqual(['A', 'A', 'A']);
  });

  it('gives the share of a rack that stopped asking to the others after the window', () => {
    const s = spread(4, 1000);
    expect(ask(s, 'b1', 0)).toBe('B');
    s.ended('B'); // B got what it needed and asks no more
    expect([ask(s, 'a1', 10), ask(s, 'a2', 10), ask(s, 'a3', 10)]).toEqual(['A', 'A', false]); // 2 racks: 2 each
    expect(ask(s, 'a3', 1000)).toBe(false); // B asked 1000 ms ago: still within the window
    expect(s.share(1001)).toBe(4);
    expect([ask(s, 'a3', 1001), ask(s, 'a4', 1001)]).toEqual(['A', 'A']); // A alone now
    expect(ask(s, 'b1', 1002)).toBe('B'); // B back (the server's own limit is the caller's)
    expect(ask(s, 'a1', 1003)).toBe(false); // and A held to 2 again (it has 4)
  });

  it('counts an ask the server is too full for as asking', () => {
    const s = spread(4);
    expect([ask(s, 'a1', 0), ask(s, 'a2', 0)]).toEqual(['A', 'A']);
    expect(s.admits('b1', 1)).toBe(true); // admissible by rack, but the server turned it away (full)
    expect(ask(s, 'a3', 2)).toBe(false); // A at its share of 2 while B asks
  });

  it('admits askers of no known rack, uncounted, and ends a stream once', () => {
    const s = spread(2);
    s.asking('b1', 0);
    expect(ask(s, 'a1', 0)).toBe('A');
    expect(ask(s, 'a2', 0)).toBe(false);
    for (let i = 0; i < 3; i++) expect(ask(s, 'stranger', 1)).toBeUndefined();
    s.ended(undefined);
    s.ended('A');
    s.ended('A'); // (never below 0)
    expect(s.streams('A')).toBe(0);
  });

  it('refuses bad slots or a bad window', () => {
    expect(() => spread(0)).toThrow(RangeError);
    expect(() => spread(1.5)).toThrow(RangeError);
    expect(() => spread(4, 0)).toThrow(RangeError);
    expect(() => spread(4, Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});
