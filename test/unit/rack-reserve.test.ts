import { describe, expect, it } from 'vitest';
import { RackReserve } from '../../seeder/rack-reserve.ts';

const racks: Record<string, string> = { mate: 'r0', far1: 'r1', far2: 'r1', other: 'r2' };
const reserve = (rack: string | undefined) =>
  new RackReserve({ reserveAfterMs: 2000, rack, rackOf: (p) => racks[p] });

describe('RackReserve', () => {
  it('sends a chunk into another rack once per reserve, counted from the first send', () => {
    const r = reserve('r0');
    expect(r.take('c1', 0, 'far1')).toBe(true);
    expect(r.take('c1', 10, 'far2')).toBe(false); // same rack r1, 10 ms later: its rack-mate has it coming
    expect(r.take('c1', 10, 'far1')).toBe(false); // the same asker again (an endgame copy)
    expect(r.take('c2', 10, 'far2')).toBe(true); // another chunk
    expect(r.take('c1', 10, 'other')).toBe(true); // another rack
    expect(r.take('c1', 1999, 'far2')).toBe(false);
    expect(r.take('c1', 2000, 'far2')).toBe(true); // the reserve ran out (the first receiver may be gone)
    expect(r.take('c1', 2500, 'far1')).toBe(true); // counted from the first send: no wait restarts
  });

  it('serves its own rack, peers of unknown rack, and everyone when it has no rack itself', () => {
    const r = reserve('r0');
    for (let t = 0; t < 3; t++) {
      expect(r.take('c', t, 'mate')).toBe(true);
      expect(r.take('c', t, 'stranger')).toBe(true);
      expect(r.take('c', t)).toBe(true);
    }
    const rackless = reserve(undefined);
    expect([rackless.take('c', 0, 'far1'), rackless.take('c', 1, 'far2')]).toEqual([true, true]);
  });

  it('refuses a bad reserve', () => {
    expect(() => new RackReserve({ reserveAfterMs: -1, rack: 'r0', rackOf: () => undefined })).toThrow(
      RangeError,
    );
  });
});
