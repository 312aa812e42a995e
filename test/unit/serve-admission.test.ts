import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../peer/scheduler.ts';
import { ServeAdmission } from '../../seeder/serve-admission.ts';

describe('serve admission (a node’s last serving slots to the askers holding least, once they are refused)', () => {
  const init = { reserved: 1, hungryShare: 0.25, holdMs: 500 };

  it('is first come, first served until a hungry asker is refused; then keeps the last slot for the next hungry one', () => {
    const a = new ServeAdmission(init); // 4 slots, neighbours holding 64 on average: hungry below 16
    expect([0, 1, 2, 3].map((s) => a.admits(0, s, 4, 60, 64))).toEqual([true, true, true, true]);
    expect(a.admits(0, 4, 4, 60, 64)).toBe(false); // full: a sated asker's refusal reserves nothing
    expect(a.admits(1, 3, 4, 60, 64)).toBe(true);
    expect(a.admits(10, 4, 4, 15, 64)).toBe(false); // full, and a hungry asker refused: the last slot is kept
    expect(a.admits(20, 2, 4, 60, 64)).toBe(true); // the unreserved slots are anyone's
    expect(a.admits(20, 3, 4, 16, 64)).toBe(false); // a quarter of the typical is not hungry
    expect(a.admits(20, 3, 4, 15, 64)).toBe(true); // a hungry one takes it: the slot is anyone's again
    expect(a.admits(21, 3, 4, 60, 64)).toBe(true);
    expect(a.admits(30, 4, 4, 0, 0)).toBe(false); // holding nothing is hungry, even when nobody holds more
    expect(a.admits(31, 3, 4, 60, 64)).toBe(false);
    expect(a.admits(32, 3, 4, undefined, 64)).toBe(true); // haves not known yet: a node that just arrived
    expect(a.admits(40, 4, 4, 1, 64)).toBe(false);
    expect(a.admits(539, 3, 4, 60, 64)).toBe(false);
    expect(a.admits(540, 3, 4, 60, 64)).toBe(true); // holdMs after the refusal, anyone's again
  });

  it('keeps one slot anyone’s however many are reserved; none reserved is first come, first served', () => {
    const all = new ServeAdmission({ reserved: 9, hungryShare: 0.5, holdMs: 100 });
    expect(all.admits(0, 4, 4, 0, 64)).toBe(false);
    expect(all.admits(1, 0, 4, 64, 64)).toBe(true);
    expect(all.admits(1, 1, 4, 64, 64)).toBe(false);
    expect(all.admits(1, 3, 4, 1, 64)).toBe(true);
    const none = new ServeAdmission({ reserved: 0, hungryShare: 0.5, holdMs: 100 });
    expect(none.admits(0, 4, 4, 0, 64)).toBe(false);
    expect([0, 1, 2, 3, 4].map((s) => none.admits(1, s, 4, 64, 64))).toEqual([true, true, true, true, false]);
    expect(() => new ServeAdmission({ reserved: -1, hungryShare: 0.5, holdMs: 1 })).toThrow(/reserved/);
  });

  it('reads what the asker holds from the scheduler’s haves (peerHeld, meanPeerHeld), minus chunks it turned out not to hold', () => {
    const s = new Scheduler({ chunkLengths: new Array(8).fill(1024), random: () => 0.5, seederId: 'head' });
    expect(s.peerHeld('a')).toBeUndefined();
    s.addPeer('a', 0);
    expect(s.peerHeld('a')).toBe(0);
    s.peerHave('a', [0, 1, 2, 2]);
    s.peerHaveOne('a', 5, 0);
    expect(s.peerHeld('a')).toBe(4);
    const [i] = s.next('a', 0);
    s.failed('a', i, 'not-found', 1);
    expect(s.peerHeld('a')).toBe(3);
    s.peerHave('a', 'all');
    expect(s.peerHeld('a')).toBe(8);
    // the typical neighbour: the seeder (holding everything) not counted
    s.addPeer('head', 0);
    s.addPeer('b', 0);
    s.peerHave('b', [3, 4]);
    expect(s.meanPeerHeld()).toBe(5);
    s.removePeer('a', 2);
    expect(s.peerHeld('a')).toBeUndefined();
    expect(s.meanPeerHeld()).toBe(2);
    s.removePeer('b', 2);
    expect(s.meanPeerHeld()).toBe(0);
  });
});
