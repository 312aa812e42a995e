// bench/testbed/testbed.ts headLinkUse and netDevTxBytes: the head's uplink per second of a testbed run, from samples
// of its interface's transmitted bytes, and the reading of a /proc/PID/net/dev.
import { describe, expect, it } from 'vitest';
import { headLinkUse, netDevTxBytes } from '../../bench/testbed/testbed.ts';

describe("the testbed's head link per second", () => {
  it('gives each second its share of the rate, and when 50 / 90 / 99 % had gone out', () => {
    // release at 1000 ms; 100 B/s link: full for 2 s, idle for 1 s, half for 2 s (the last sample at 5 s)
    const samples = [
      { at: 1000, tx: 5000 },
      { at: 2000, tx: 5100 },
      { at: 3000, tx: 5200 },
      { at: 4000, tx: 5200 },
      { at: 5000, tx: 5250 },
      { at: 6000, tx: 5300 },
    ];
    const u = headLinkUse(samples, 1000, 100);
    expect(u.usePerSecond.map((x) => Math.round(x * 100))).toEqual([100, 100, 0, 50, 50]);
    expect(u.sentBy.p50).toBe(2); // 150 of 300 B by 2 s (the first sample at or past the share)
    expect(u.sentBy.p90).toBe(5); // 270 B: in the last second
    expect(u.sentBy.p99).toBe(5);
    // a partial last second counts against the time it had
    expect(headLinkUse([...samples, { at: 6500, tx: 5350 }], 1000, 100).usePerSecond.at(-1)).toBeCloseTo(1);
  });

  it('has nothing to say without two readable samples', () => {
    expect(headLinkUse([{ at: 0, tx: 1 }], 0, 100).usePerSecond).toEqual([]);
    expect(
      headLinkUse(
        [
          { at: 0, tx: Number.NaN },
          { at: 1000, tx: 5 },
        ],
        0,
        100,
      ).usePerSecond,
    ).toEqual([]);
    expect(netDevTxBytes(undefined, 'eth0')).toBeNaN();
    expect(netDevTxBytes(process.pid, 'no-such-device')).toBeNaN();
  });

  it("reads this process's loopback counter from /proc", () => {
    expect(netDevTxBytes(process.pid, 'lo')).toBeGreaterThanOrEqual(0);
  });
});
