import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../peer/scheduler.ts';
import { admitsServe } from '../../seeder/serve-admission.ts';

describe('serve admission (a node’s last serving slots to the askers holding least)', () => {
  const hungry = { reserved: 1, hungryShare: 0.25 };

  it('admits anyone while the unreserved slots are free, only the hungry into the reserved ones, nobody when full', () => {
    // 4 slots, 1 reserved; 64 chunks: hungry below 16
    expect([0, 1, 2].map((s) => admitsServe(hungry, s, 4, 60, 64))).toEqual([true, true, true]);
    expect(admitsServe(hungry, 3, 4, 16, 64)).toBe(false); // a quarter is not hungry
    expect(admitsServe(hungry, 3, 4, 15, 64)).toBe(true);
    expect(admitsServe(hungry, 3, 4, 0, 64)).toBe(true);
    expect(admitsServe(hungry, 4, 4, 0, 64)).toBe(false);
    // an asker whose haves are not known yet (a node that just arrived) counts as hungry
    expect(admitsServe(hungry, 3, 4, undefined, 64)).toBe(true);
  });

  it('keeps one slot open to anyone however many are reserved, and with none reserved is first come, first served', () => {
    const all = { reserved: 9, hungryShare: 0.5 };
    expect(admitsServe(all, 0, 4, 64, 64)).toBe(true);
    expect(admitsServe(all, 1, 4, 64, 64)).toBe(false);
    expect(admitsServe(all, 3, 4, 1, 64)).toBe(true);
    const none = { reserved: 0, hungryShare: 0.5 };
    expect([0, 1, 2, 3, 4].map((s) => admitsServe(none, s, 4, 64, 64))).toEqual([
      true,
      true,
      true,
      true,
      false,
    ]);
  });

  it('reads what the asker holds from the scheduler’s haves (peerHeld), minus chunks it turned out not to hold', () => {
    const s = new Scheduler({ chunkLengths: new Array(8).fill(1024), random: Math.random, seederId: 'head' });
    expect(s.peerHeld('a')).toBeUndefined();
    s.addPeer('a', 0);
    expect(s.peerHeld('a')).toBe(0);
    s.peerHave('a', [0, 1, 2, 2]);
    s.peerHaveOne('a', 5, 0);
    expect(s.peerHeld('a')).toBe(4);
    const [i] = s.next('a', 0);
    s.failed('a', i, 'not-found', 1);
    expect(s.peerHeld('a')).toBe(3);
    expect(admitsServe({ reserved: 1, hungryShare: 0.5 }, 3, 4, s.peerHeld('a'), 8)).toBe(true);
    s.peerHave('a', 'all');
    expect(s.peerHeld('a')).toBe(8);
    expect(admitsServe({ reserved: 1, hungryShare: 0.5 }, 3, 4, s.peerHeld('a'), 8)).toBe(false);
    s.removePeer('a', 2);
    expect(s.peerHeld('a')).toBeUndefined();
  });
});
