import { describe, expect, it } from 'vitest';
import { rotationStart } from '../../peer/source-order.ts';
import { prng } from '../fixtures/tree.ts';

const seeded = (seed: number): (() => number) => {
  const next = prng(seed);
  return () => next() / 2 ** 32;
};

/** The walk a turn makes from rotationStart (Scheduler.askable(now, start) goes round the list the same way). */
const walk = <T>(list: readonly T[], start: number): T[] =>
  list.map((_, k) => list[(start + k) % list.length]);

describe('rotationStart (where a fetch starts offering its neighbours requests)', () => {
  it('goes round the whole list once, from where random() points', () => {
    const list = ['head', 'a', 'b', 'c', 'd'];
    expect(
      walk(
        list,
        rotationStart(list.length, () => 0),
      ),
    ).toEqual(list);
    expect(
      walk(
        list,
        rotationStart(list.length, () => 0.5),
      ),
    ).toEqual(['b', 'c', 'd', 'head', 'a']);
    expect(
      walk(
        list,
        rotationStart(list.length, () => 0.9999999),
      ),
    ).toEqual(['d', 'head', 'a', 'b', 'c']);
    expect(rotationStart(0, () => 0.3)).toBe(0);
  });

  it('gives every neighbour the first place about equally often (the nodes learnt of first are not favoured)', () => {
    const random = seeded(7);
    const first = new Map<number, number>();
    for (let k = 0; k < 16_000; k++) {
      const s = rotationStart(16, random);
      first.set(s, (first.get(s) ?? 0) + 1);
    }
    expect(first.size).toBe(16);
    for (const count of first.values()) expect(Math.abs(count - 1000)).toBeLessThan(150);
  });

  it('with 4 slots, the holders asked spread over the whole list (the fetcher stops at maxSources)', () => {
    // 16 neighbours all holding what we lack; each turn the first 4 in the order get a batch
    const list = Array.from({ length: 16 }, (_, i) => i);
    const random = seeded(3);
    const asked = new Array<number>(16).fill(0);
    for (let turn = 0; turn < 4000; turn++) {
      for (const p of walk(list, rotationStart(list.length, random)).slice(0, 4)) asked[p]++;
    }
    // from the start of the list, peers 0-3 would take every batch and 4-15 none
    for (const a of asked) expect(Math.abs(a - 1000)).toBeLessThan(150);
  });
});
