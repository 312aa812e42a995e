import { describe, expect, it } from 'vitest';
import { nodeTurnover, ServeTurnover } from '../../seeder/serve-turnover.ts';

/** Batches from `peer` back to back from `from` to `to` ms, each `every` ms long, as the server sees them. */
function serveInARow(t: ServeTurnover, peer: string, from: number, to: number, every: number): void {
  for (let now = from; now < to; now += every) {
    expect(t.admits(peer, now)).toBe(true);
    t.started(peer, now);
    t.ended(peer, now + every);
  }
}

describe('ServeTurnover', () => {
  it('keeps a peer its slot from batch to batch while nobody waits', () => {
    const t = new ServeTurnover({ turnoverMs: 100, waitingMs: 100, gapMs: 5 });
    serveInARow(t, 'a', 0, 1000, 50);
    expect(t.admits('a', 1000)).toBe(true);
  });

  it('has a peer served turnoverMs in a row yield its slot while another was refused within waitingMs', () => {
    const t = new ServeTurnover({ turnoverMs: 100, waitingMs: 100, gapMs: 5 });
    serveInARow(t, 'a', 0, 100, 50); // a's batches 0–50, 50–100
    t.refused(80); // b refused
    expect(t.admits('a', 100)).toBe(false); // a's third batch in a row: the slot goes to the next asker
    t.refused(100);
    expect(t.admits('b', 120)).toBe(true); // b starts a service of its own
    t.started('b', 120);
    expect(t.admits('a', 250)).toBe(true); // not a continuation (after the gap): a new service
  });

  it('keeps a continuation shorter than turnoverMs, and any once the refusal is older than waitingMs', () => {
    const t = new ServeTurnover({ turnoverMs: 100, waitingMs: 30, gapMs: 5 });
    t.started('a', 0);
    t.ended('a', 50);
    t.refused(40);
    expect(t.admits('a', 52)).toBe(true); // 52 ms in a row
    t.started('a', 52);
    t.ended('a', 110);
    expect(t.admits('a', 110)).toBe(true); // 110 ms in a row, but the refusal is 70 ms old
    t.refused(110);
    expect(t.admits('a', 110)).toBe(false);
  });

  it('is off with turnoverMs 0, and refuses bad limits', () => {
    const t = new ServeTurnover({ turnoverMs: 0, waitingMs: 100, gapMs: 5 });
    serveInARow(t, 'a', 0, 1000, 50);
    t.refused(1000);
    expect(t.admits('a', 1000)).toBe(true);
    expect(() => new ServeTurnover({ turnoverMs: -1, waitingMs: 1, gapMs: 1 })).toThrow(RangeError);
    expect(() => new ServeTurnover({ turnoverMs: 1, waitingMs: Number.NaN, gapMs: 1 })).toThrow(RangeError);
  });

  it("is a node's, as config peer.serveTurnoverMs sets it: none for 0, else others refused as recently count", () => {
    expect(nodeTurnover(0)).toBeUndefined();
    const t = nodeTurnover(100) as ServeTurnover;
    serveInARow(t, 'a', 0, 100, 50);
    t.refused(60); // 40 ms ago: within the 100 ms
    expect(t.admits('a', 100)).toBe(false); // its pipelined batch, at once
    expect(t.admits('a', 102)).toBe(true); // asked 2 ms after the last one ended: a new service (gap 1 ms)
  });
});
