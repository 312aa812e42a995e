// The scheduler's books with many neighbours and many chunks: who holds what (bits per chunk, 32 peers a word, the
// last peer taking a removed one's place), the buckets (one array for all, moved and compacted as they grow) and
// every peer's count of pickable chunks it holds, against a plain model, through random traffic.
import { describe, expect, it } from 'vitest';
import { Scheduler } from '../../peer/scheduler.ts';
import { prng } from '../fixtures/tree.ts';

const MiB = 1 << 20;

function traffic(seed: number, chunks: number, peers: number): void {
  const next = prng(seed);
  const random = (): number => next() / 2 ** 32;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const own = prng(seed + 1);
  const s = new Scheduler({
    chunkLengths: Array.from({ length: chunks }, () => MiB),
    random: () => own() / 2 ** 32,
    seederId: 'seeder',
    randomFirst: 0,
    maxInFlightChunks: 4,
  });
  const ids = Array.from({ length: peers }, (_, k) => `p${k}`);
  const holds = new Map<string, Set<number>>();
  const outstanding = new Map<string, Set<number>>();
  const here = new Set<number>();
  const join = (id: string, t: number): void => {
    s.addPeer(id, t);
    const h = new Set<number>();
    for (let i = 0; i < chunks; i++) if (random() < 0.2) h.add(i);
    s.peerHave(id, [...h]);
    holds.set(id, h);
    outstanding.set(id, new Set());
  };
  for (const id of ids) join(id, 0);
  const check = (): void => {
    const inFlight = new Set([...outstanding.values()].flatMap((o) => [...o]));
    for (const p of s.stats().perPeer) {
      const h = holds.get(p.peerId) as Set<number>;
      const wanted = [...h].filter((i) => !here.has(i) && !inFlight.has(i)).length;
      expect([p.peerId, p.wanted, p.inFlight]).toEqual([p.peerId, wanted, outstanding.get(p.peerId)?.size]);
    }
    for (const id of ids) {
      const h = holds.get(id) as Set<number>;
      const wrong = Array.from({ length: chunks }, (_, i) => i).filter((i) => s.holds(id, i) !== h.has(i));
      expect([id, wrong]).toEqual([id, []]);
    }
  };
  for (let t = 1; t < 3_000 && !s.done; t++) {
    const id = pick(ids);
    const mine = outstanding.get(id) as Set<number>;
    const roll = random();
    if (roll < 0.3) {
      for (const i of s.next(id, t)) {
        expect(holds.get(id)?.has(i)).toBe(true);
        mine.add(i);
      }
    } else if (roll < 0.6 && mine.size > 0) {
      const i = pick([...mine]);
      if (random() < 0.7) {
        s.received(id, i, t);
        here.add(i);
        for (const o of outstanding.values()) o.delete(i);
      } else {
        s.failed(id, i, 'not-found', t);
        holds.get(id)?.delete(i);
        mine.delete(i);
      }
    } else if (roll < 0.95) {
      const i = Math.floor(random() * chunks);
      s.peerHave(id, [i]);
      holds.get(id)?.add(i);
    } else {
      s.removePeer(id, t);
      join(id, t);
    }
    if (t % 50 === 0) check();
  }
  check();
}

describe('Scheduler books', () => {
  it('keeps who holds what and each peer’s pickable count right with 70 neighbours, through removals', () => {
    for (let seed = 1; seed <= 3; seed++) traffic(seed, 300, 70);
  });

  it('does the same with a few chunks and a few peers', () => {
    for (let seed = 4; seed <= 6; seed++) traffic(seed, 5, 3);
  });
});
