import { describe, expect, it } from 'vitest';
import {
  type HandoutCandidate,
  HandoutPool,
  type HandoutSelf,
  handout,
  PoolMember,
} from '../../tracker/handout-policy.ts';
import { prng } from '../fixtures/tree.ts';

/** A swarm from a table, one peer a line: `name rack progress` ('-' = no rack; a trailing '!' = no addresses). */
function swarm(table: string): HandoutCandidate[] {
  return table
    .trim()
    .split('\n')
    .map((line) => {
      const [peerId, rack, progress, flag] = line.trim().split(/\s+/);
      return {
        peerId,
        rack: rack === '-' ? undefined : rack,
        progress: Number(progress),
        addrs: flag === '!' ? [] : [`/ip4/10.0.0.1/tcp/4001/p2p/${peerId}`],
      };
    });
}

const seeded = (seed: number): (() => number) => {
  const next = prng(seed);
  return () => next() / 2 ** 32;
};

/** Names handed to `self`; `explore: 0` unless given, so the ranking alone decides. */
function pick(self: HandoutSelf, peers: HandoutCandidate[], k: number, seed = 1, explore = 0): string[] {
  return handout(self, peers, k, seeded(seed), { explore }).map((p) => p.peerId);
}

const many = (n: number, rack: string, progress: number, prefix = rack): HandoutCandidate[] =>
  Array.from({ length: n }, (_, i) => ({
    peerId: `${prefix}-${i}`,
    rack,
    progress,
    addrs: ['/ip4/10.0.0.1'],
  }));

describe('handout', () => {
  const peers = swarm(`
    a r1 0.90
    b r1 0.20
    c r2 1
    d r2 0.60
    e -  0.95
    f r1 0.10 !
  `);

  it('ranks the own rack first, then other racks; within each, complete then higher quartiles', () => {
    expect(pick({ peerId: 'me', rack: 'r1' }, peers, 5)).toEqual(['a', 'b', 'c', 'e', 'd']);
    expect(pick({ peerId: 'me', rack: 'r2' }, peers, 5)).toEqual(['c', 'd', 'e', 'a', 'b']);
    const rackless = pick({ peerId: 'me' }, peers, 5); // a (0.90) and e (0.95) share the top quartile
    expect([rackless[0], new Set(rackless.slice(1, 3)), ...rackless.slice(3)]).toEqual([
      'c',
      new Set(['a', 'e']),
      'd',
      'b',
    ]);
  });

  it('never hands out the asker itself, nor a peer without addresses', () => {
    const got = pick({ peerId: 'a', rack: 'r1' }, peers, 30);
    expect(got).toEqual(['b', 'c', 'e', 'd']);
  });

  it('hands out at most k peers, and all of them when there are fewer', () => {
    expect(pick({ peerId: 'me', rack: 'r1' }, peers, 2)).toEqual(['a', 'b']);
    expect(pick({ peerId: 'me', rack: 'r1' }, peers, 30, 1, 0.25)).toHaveLength(5);
    const fromMany = handout({ peerId: 'me' }, many(500, 'r1', 0.5), 30, Math.random);
    expect(new Set(fromMany).size).toBe(30); // 30 distinct peers
    expect(handout({ peerId: 'me' }, many(500, 'r1', 0.5), 2.9, Math.random)).toHaveLength(2);
  });

  it('hands out nothing for an empty swarm, k ≤ 0, or a swarm of only the asker', () => {
    expect(pick({ peerId: 'me' }, [], 30)).toEqual([]);
    expect(pick({ peerId: 'me' }, peers, 0)).toEqual([]);
    expect(pick({ peerId: 'me' }, peers, -1)).toEqual([]);
    expect(pick({ peerId: 'a' }, swarm('a r1 0.5'), 30)).toEqual([]);
  });

  it('gives the same list for the same random sequence', () => {
    const big = [...many(100, 'r1', 0.3), ...many(100, 'r2', 0.7)];
    const self = { peerId: 'me', rack: 'r1' };
    expect(pick(self, big, 30, 7, 0.25)).toEqual(pick(self, big, 30, 7, 0.25));
    expect(pick(self, big, 30, 7, 0.25)).not.toEqual(pick(self, big, 30, 8, 0.25));
  });

  it('treats progress within one quartile as equal, in random order', () => {
    const twins = swarm(`
      x r1 0.30
      y r1 0.45
    `);
    const orders = new Set(
      Array.from({ length: 20 }, (_, seed) => pick({ peerId: 'me' }, twins, 2, seed).join('')),
    );
    expect(orders).toEqual(new Set(['xy', 'yx']));
  });

  it('spreads a boot storm: 300 nodes at progress 0, each asking for 30, load every peer evenly', () => {
    const storm = many(300, 'r1', 0);
    const load = new Map<string, number>();
    for (const [i, self] of storm.entries()) {
      for (const p of handout(self, storm, 30, seeded(i))) load.set(p.peerId, (load.get(p.peerId) ?? 0) + 1);
    }
    expect(load.size).toBe(300); // every equal peer is picked by somebody
    expect(Math.max(...load.values())).toBeLessThan(2 * 30); // mean load is 30 hand-outs per peer
  });

  it('links racks through their gateways: the first members filed; the others get their rack only', () => {
    const racks = [
      ...many(40, 'r1', 0.5),
      ...many(40, 'r2', 0.5),
      ...many(40, 'r3', 0.5),
      ...many(40, 'r4', 0.5),
    ];
    const pool = HandoutPool.of(racks); // 4 gateways a rack: r1-0..r1-3, r2-0..r2-3, …
    const member = handout({ peerId: 'r1-20', rack: 'r1' }, pool, 30, seeded(3));
    expect(member.every((p) => p.rack === 'r1')).toBe(true);
    expect(new Set(member.map((p) => p.peerId)).size).toBe(30);
    const gateway = handout({ peerId: 'r1-0', rack: 'r1' }, pool, 30, seeded(3)); // explore 0.25: 7 across
    const names = gateway.map((p) => p.peerId);
    expect(names.slice(0, 3).sort()).toEqual(['r1-1', 'r1-2', 'r1-3']); // its rack's other gateways first
    expect(gateway.slice(0, 23).every((p) => p.rack === 'r1')).toBe(true);
    expect(names.slice(23).every((n) => /^r[234]-[0-3]$/.test(n))).toBe(true); // other racks' gateways
    expect(names.slice(23)).toHaveLength(7);
  });

  it('gives a large rack one gateway per gatewayEvery members', () => {
    const racks = [...many(100, 'r1', 0.5), ...many(100, 'r2', 0.5)];
    const pool = HandoutPool.of(racks, 4, 4, 16); // 7 gateways a rack of 100: the first 4, the 65th, 81st and 97th
    const across = (peerId: string) =>
      handout({ peerId, rack: 'r1' }, pool, 30, seeded(2)).filter((p) => p.rack === 'r2');
    for (const g of ['r1-0', 'r1-64', 'r1-96']) {
      expect(across(g).length).toBeGreaterThan(0);
      expect(across(g).every((p) => /^r2-([0-3]|64|80|96)$/.test(p.peerId))).toBe(true);
    }
    expect(across('r1-5')).toEqual([]);
    expect(across('r1-63')).toEqual([]);
    const four = HandoutPool.of(racks, 4, 4, Number.POSITIVE_INFINITY); // off: 4 gateways
    expect(handout({ peerId: 'r1-4', rack: 'r1' }, four, 30, seeded(2)).every((p) => p.rack === 'r1')).toBe(
      true,
    );
  });

  it("links a rack's first members across racks to gateways only, as later ones (earlyGateways)", () => {
    const pool = HandoutPool.of(many(40, 'r1', 0)); // r1-0..r1-3 its gateways
    const first = new PoolMember(many(1, 'r2', 0)[0]); // the first of rack r2 to announce: a gateway
    pool.set(first);
    const names = handout({ peerId: 'r2-0', rack: 'r2' }, pool, 30, seeded(4)).map((p) => p.peerId);
    expect(names.sort()).toEqual(['r1-0', 'r1-1', 'r1-2', 'r1-3']);
    pool.earlyGateways = false; // before session 14: any member of the other racks
    const before = handout({ peerId: 'r2-0', rack: 'r2' }, pool, 30, seeded(4));
    expect(before).toHaveLength(30);
    expect(before.every((p) => p.rack === 'r1')).toBe(true);
  });

  it('replaces a gateway that leaves by another member of its rack, and keeps one whose progress moves', () => {
    const members = [...many(6, 'r1', 0.1), ...many(6, 'r2', 0.1)].map((c) => new PoolMember(c));
    const pool = new HandoutPool<HandoutCandidate>(4, 2);
    for (const m of members) pool.set(m);
    const across = (peerId: string) =>
      handout({ peerId, rack: 'r1' }, pool, 30, seeded(1))
        .filter((p) => p.rack === 'r2')
        .map((p) => p.peerId)
        .sort();
    expect(across('r1-0')).toEqual(['r2-0', 'r2-1']);
    expect(across('r1-4')).toEqual([]);
    members[6].value = { ...members[6].value, progress: 1 };
    pool.set(members[6]); // r2-0 moves up a tier and stays a gateway
    expect(across('r1-0')).toEqual(['r2-0', 'r2-1']);
    pool.delete(members[7]); // r2-1 leaves
    expect(across('r1-0')).toHaveLength(2);
    expect(across('r1-0')).toContain('r2-0');
    expect(across('r1-0')).not.toContain('r2-1');
  });

  it('gives a complete asker only incomplete peers, own rack first, whatever their progress', () => {
    const mixed = swarm(`
      s1 r1 1
      s2 r2 1
      l1 r1 0.1
      l2 r2 0.9
      l3 r1 0.8
    `);
    expect(new Set(pick({ peerId: 'me', rack: 'r1', progress: 1 }, mixed, 2))).toEqual(new Set(['l1', 'l3']));
    expect(pick({ peerId: 'me', rack: 'r1', progress: 1 }, mixed, 30)).toHaveLength(3);
  });

  it('draws uniformly from a large tier', () => {
    const crowd = many(1_000, 'r1', 0.5);
    const pool = HandoutPool.of(crowd);
    const load = new Map<string, number>();
    const random = seeded(11);
    for (let i = 0; i < 3_000; i++) {
      for (const p of handout({ peerId: 'me' }, pool, 10, random))
        load.set(p.peerId, (load.get(p.peerId) ?? 0) + 1);
    }
    // 30,000 picks over 1,000 peers: 30 each on average, binomial standard deviation 5.4.
    expect(load.size).toBe(1_000);
    expect(Math.min(...load.values())).toBeGreaterThan(5);
    expect(Math.max(...load.values())).toBeLessThan(60);
  });

  it('ranks a large swarm the same way: own rack, then the complete peers of other racks', () => {
    const big = [...many(500, 'r1', 0.1), ...many(10, 'r2', 1), ...many(500, 'r3', 0.9)];
    const inR1 = handout({ peerId: 'me', rack: 'r1' }, big, 30, seeded(5), { explore: 0 });
    expect(inR1.every((p) => p.rack === 'r1')).toBe(true);
    const rackless = handout({ peerId: 'me' }, big, 30, seeded(5), { explore: 0 });
    expect(rackless.slice(0, 10).every((p) => p.rack === 'r2')).toBe(true);
    expect(rackless.slice(10).every((p) => p.progress === 0.9)).toBe(true);
  });

  it('keeps a pool filed as its members change progress, rack or addresses, or leave', () => {
    const pool = new HandoutPool<HandoutCandidate>();
    const [a, b, c] = swarm(`
      a r1 0.1
      b r1 0.1
      c r2 0.1
    `).map((p) => new PoolMember(p));
    for (const m of [a, b, c]) pool.set(m);
    const names = (self: HandoutSelf) =>
      handout(self, pool, 3, seeded(1), { explore: 0 }).map((p) => p.peerId);
    expect(names({ peerId: 'me', rack: 'r2' })[0]).toBe('c');
    c.value = { ...c.value, rack: 'r1' };
    b.value = { ...b.value, rack: 'r2', progress: 1 };
    pool.set(c);
    pool.set(b);
    expect(names({ peerId: 'me', rack: 'r2' })[0]).toBe('b');
    expect(names({ peerId: 'me', rack: 'r1' }).slice(0, 2).sort()).toEqual(['a', 'c']);
    a.value = { ...a.value, addrs: [] };
    pool.set(a);
    pool.delete(b);
    pool.delete(b);
    expect(pool.size).toBe(1);
    expect([...pool.values()].map((p) => p.peerId)).toEqual(['c']);
  });

  it('refuses a nonsensical policy', () => {
    expect(() => handout({ peerId: 'me' }, peers, 3, Math.random, { tiers: 0 })).toThrow(/tiers/);
    expect(() => handout({ peerId: 'me' }, peers, 3, Math.random, { explore: 2 })).toThrow(/explore/);
    expect(() => handout({ peerId: 'me' }, peers, 3, Math.random, { gateways: 0 })).toThrow(/gateways/);
    expect(() => handout({ peerId: 'me' }, peers, 3, Math.random, { gatewayEvery: 0 })).toThrow(
      /gatewayEvery/,
    );
  });
});
