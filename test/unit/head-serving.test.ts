import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { configuredHeadServing, HeadServing } from '../../seeder/head-serving.ts';

describe('head serving (one chunk after another, the streams taking turns)', () => {
  it('lets one send go at a time and hands the next turn to the stream that asked first', () => {
    const h = new HeadServing<string>({ sendsAtOnce: 1, maxWaiting: 2 });
    expect(h.ask('a')).toBe(true);
    expect(h.ask('b')).toBe(false);
    expect(h.ask('c')).toBe(false);
    expect([h.sending, h.waiting]).toEqual([1, 2]);
    expect(h.ask('a')).toBe(false); // a's next chunk queues behind b and c
    expect(h.done()).toEqual(['b']);
    expect(h.done()).toEqual(['c']);
    expect(h.done()).toEqual(['a']);
    expect(h.done()).toEqual([]);
    expect([h.sending, h.waiting]).toEqual([0, 0]);
    expect(h.ask('d')).toBe(true);
  });

  it('admits a new stream only while a send slot or a waiting place is free (maxWaiting, default 0)', () => {
    const h = new HeadServing<string>();
    expect(h.admits()).toBe(true);
    expect(h.ask('a')).toBe(true);
    expect(h.admits()).toBe(false); // the head answers the new stream busy
    h.done();
    expect(h.admits()).toBe(true);
    const w = new HeadServing<string>({ sendsAtOnce: 2, maxWaiting: 1 });
    w.ask('a');
    expect(w.admits()).toBe(true);
    w.ask('b');
    expect(w.admits()).toBe(true);
    w.ask('c');
    expect(w.admits()).toBe(false);
  });

  it('drops a cancelled turn, keeps the order of the others across many turns', () => {
    const h = new HeadServing<number>({ sendsAtOnce: 1, maxWaiting: 5000 });
    h.ask(-1);
    for (let i = 0; i < 3000; i++) expect(h.ask(i)).toBe(false);
    expect(h.cancel(1)).toBe(true);
    expect(h.cancel(1)).toBe(false);
    const order: number[] = [];
    for (let t = h.done(); t.length > 0; t = h.done()) order.push(...t);
    expect(order.length).toBe(2999);
    expect(order.slice(0, 3)).toEqual([0, 2, 3]);
    expect(order.at(-1)).toBe(2999);
  });

  it('ramps up from one send at a time by one for every rampEvery sends completed', () => {
    const h = new HeadServing<string>({ sendsAtOnce: 3, maxWaiting: 10, rampEvery: 2 });
    expect(h.ask('a')).toBe(true);
    for (const t of ['b', 'c', 'd', 'e', 'f']) expect(h.ask(t)).toBe(false);
    expect(h.limit).toBe(1);
    expect(h.done()).toEqual(['b']); // 1 completed: still 1 at once
    expect(h.done()).toEqual(['c', 'd']); // 2 completed: 2 at once
    expect(h.sending).toBe(2);
    expect(h.done()).toEqual(['e']);
    expect(h.done()).toEqual(['f']); // 4 completed: 3 at once, but only f waits
    expect([h.limit, h.sending, h.waiting]).toEqual([3, 2, 0]);
    expect(h.ask('g')).toBe(true);
    expect(h.ask('h')).toBe(false);
  });

  it('refuses done() without a send, and bad limits', () => {
    expect(() => new HeadServing<string>().done()).toThrow(Error);
    expect(() => new HeadServing<string>({ sendsAtOnce: 0 })).toThrow(RangeError);
    expect(() => new HeadServing<string>({ maxWaiting: -1 })).toThrow(RangeError);
    expect(() => new HeadServing<string>({ sendsAtOnce: 1.5 })).toThrow(RangeError);
    expect(() => new HeadServing<string>({ rampEvery: Number.NaN })).toThrow(RangeError);
  });

  it('as the default config sets it: one send at first, one more every 2 sends, 8 at most, 32 streams in line', () => {
    const h = configuredHeadServing<number>(loadConfig().seeder);
    if (h === undefined) throw new Error('the default config sends every stream at once');
    // completed sends → sends at once
    const ramp: [number, number][] = [
      [0, 1],
      [1, 1],
      [2, 2],
      [4, 3],
      [13, 7],
      [14, 8],
      [40, 8],
    ];
    let completed = 0;
    for (const [after, limit] of ramp) {
      for (; completed < after; completed++) {
        h.ask(completed);
        h.done();
      }
      expect([after, h.limit]).toEqual([after, limit]);
    }
    for (let i = 0; i < 8; i++) expect(h.ask(i)).toBe(true);
    for (let i = 0; i < 32; i++) {
      expect(h.admits()).toBe(true);
      expect(h.ask(100 + i)).toBe(false);
    }
    expect(h.admits()).toBe(false);
    expect(configuredHeadServing(loadConfig({ seeder: { sendsAtOnce: 0 } }).seeder)).toBeUndefined();
  });
});
