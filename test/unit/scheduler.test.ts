import { describe, expect, it } from 'vitest';
import { MAX_HASHES_PER_REQUEST } from '../../core/wire.ts';
import { type PeerHandle, SCHEDULER_DEFAULTS, Scheduler, type SchedulerInit } from '../../peer/scheduler.ts';
import { rotationStart } from '../../peer/source-order.ts';
import { prng } from '../fixtures/tree.ts';

const MiB = 1 << 20;

const seeded = (seed: number): (() => number) => {
  const next = prng(seed);
  return () => next() / 2 ** 32;
};

const held = (have: string): number[] => [...have].flatMap((c, i) => (c === 'X' ? [i] : []));

type Options = Partial<Omit<SchedulerInit, 'chunkLengths' | 'random' | 'seederId'>> & { seed?: number };

/**
 * A scheduler from have-strings, libtorrent style: the chunks verified here ('X'), then what each neighbour holds.
 * The peer named `seeder` is the head (it holds everything; its string is ignored). Chunks are 1 MiB, every peer is
 * added at t = 0, and random-first is off unless given.
 */
function setup(local: string, peers: Record<string, string>, { seed = 1, ...opts }: Options = {}): Scheduler {
  const s = new Scheduler(
    {
      chunkLengths: Array.from({ length: local.length }, () => MiB),
      random: seeded(seed),
      seederId: 'seeder',
      randomFirst: 0,
      ...opts,
    },
    held(local),
  );
  for (const [id, have] of Object.entries(peers)) {
    s.addPeer(id, 0);
    s.peerHave(id, held(have));
  }
  return s;
}

/** Budgets wide enough to take every pick in one call. */
const wide: Options = { minInFlightBytes: 64 * MiB };
const one: Options = { maxInFlightChunks: 1 };
const all = (n: number): string => 'X'.repeat(n);
const peerStats = (s: Scheduler, id: string) => s.stats().perPeer.find((p) => p.peerId === id);

describe('Scheduler', () => {
  it('picks the rarest chunks the peer holds first', () => {
    const peers = { a: 'XXXXXXXX', b: 'XX..XX..', c: 'X.X.X.X.' };
    const a = setup('........', peers, wide).next('a', 0);
    expect([new Set(a.slice(0, 2)), new Set(a.slice(2, 6)), new Set(a.slice(6))]).toEqual([
      new Set([3, 7]),
      new Set([1, 2, 5, 6]),
      new Set([0, 4]),
    ]);
    const b = setup('........', peers, wide).next('b', 0);
    expect([new Set(b.slice(0, 2)), new Set(b.slice(2))]).toEqual([new Set([1, 5]), new Set([0, 4])]);
  });

  it('breaks ties at random', () => {
    const firsts = new Set(
      Array.from({ length: 30 }, (_, seed) => setup('....', { a: 'XXXX' }, { seed }).next('a', 0)[0]),
    );
    expect(firsts).toEqual(new Set([0, 1, 2, 3]));
  });

  it('picks the first chunks at random, then rarest first', () => {
    const peers = { a: all(16), b: 'XXXXXXXXXXXX....' }; // 12..15 are the rarest
    const runs = Array.from({ length: 10 }, (_, seed) => {
      const s = setup('.'.repeat(16), peers, { seed, randomFirst: 4, minInFlightBytes: 4 * MiB });
      const first = s.next('a', 0);
      for (const [k, i] of first.entries()) s.received('a', i, k + 1);
      return { first, after: s.next('a', 10) };
    });
    expect(runs.every((r) => r.first.length === 4)).toBe(true);
    expect(new Set(runs.map((r) => r.first.join())).size).toBeGreaterThan(5);
    expect(runs.some((r) => r.first.some((i) => i < 12))).toBe(true); // not rarest first
    for (const { first, after } of runs) {
      const rareLeft = [12, 13, 14, 15].filter((i) => !first.includes(i));
      expect(new Set(after.slice(0, rareLeft.length))).toEqual(new Set(rareLeft));
    }
  });

  it('never has a chunk in flight to two peers, nor twice to one, outside endgame', () => {
    const s = setup('.'.repeat(12), { a: all(12), b: all(12), c: all(12) });
    const holder = new Map<number, string>();
    for (let t = 0; !s.stats().endgame; t++) {
      for (const peer of ['a', 'b', 'c']) {
        for (const i of s.next(peer, t)) {
          expect(holder.get(i)).toBeUndefined();
          holder.set(i, peer);
        }
      }
      const [i, peer] = holder.entries().next().value as [number, string]; // the oldest request arrives
      holder.delete(i);
      s.received(peer, i, t + 1);
    }
    expect(holder.size).toBe(s.remaining);
  });

  it('offers the seeder only chunks no neighbour holds', () => {
    const s = setup('........', { seeder: '', a: 'XXXX....', b: 'XX......' }, wide);
    expect(new Set(s.next('seeder', 0))).toEqual(new Set([4, 5, 6, 7]));
    expect(new Set(s.next('a', 0))).toEqual(new Set([0, 1, 2, 3]));
    expect(s.next('seeder', 5_000)).toEqual([]); // the rest is in flight at a
  });

  it('offers the seeder what neighbours hold once none has had a request for seederGraceMs', () => {
    const s = setup('......', { seeder: '', a: 'XXXXXX' });
    expect(s.next('seeder', 0)).toEqual([]);
    for (const i of s.next('a', 0)) s.failed('a', i, 'busy', 10);
    expect(s.next('seeder', 500)).toEqual([]);
    const rescued = s.next('seeder', 1_010); // no neighbour request since t = 10
    expect(rescued).toHaveLength(2);
    const fromA = s.next('a', 1_010); // back from its back-off
    expect(fromA).toHaveLength(2);
    expect(fromA.some((i) => rescued.includes(i))).toBe(false);
    for (const i of rescued) s.received('seeder', i, 1_020);
    expect(s.next('seeder', 5_000)).toEqual([]); // a has requests in flight again, and holds the last two
  });

  it("sizes a peer's in-flight budget from its measured throughput, between the min and the max", () => {
    const n = 400;
    const s = setup('.'.repeat(n), { fast: all(n), mid: all(n), slow: all(n) });
    /** Rounds of: take what next() gives, receive each `msPerChunk` after the last. Returns the batch sizes. */
    let t = 0;
    /** Rounds of: take what next() gives, receive each `msPerChunk` after the last. Returns the batch sizes. */
    const drive = (peer: string, msPerChunk: number): number[] => {
      const sizes: number[] = [];
      for (let round = 0; round < 4; round++) {
        const batch = s.next(peer, t);
        sizes.push(batch.length);
        for (const i of batch) {
          t += msPerChunk;
          s.received(peer, i, t);
        }
      }
      return sizes;
    };
    // initialRateBps 10 MiB/s × targetQueueMs 200 = 2 MiB before any arrival.
    expect(drive('fast', 1)).toEqual([2, 64, 64, 64]); // ~1 GiB/s: over the 64 MiB cap; 64 chunks a frame
    expect(drive('mid', 30)).toEqual([2, 7, 7, 7]); // 33 MiB/s × 200 ms = 6.7 MiB
    expect(drive('slow', 1_000)).toEqual([2, 1, 1, 1]); // 1 MiB/s: the 1 MiB minimum
    expect(peerStats(s, 'mid')?.rateBps).toBeCloseTo(MiB / 0.03, 0);
  });

  it('fetches from at most maxSources peers at once, the seeder included', () => {
    const s = setup(
      '......',
      { seeder: '', a: 'XX....', b: '..XX..', c: '....X.' },
      { ...one, maxSources: 2, seederGraceMs: 0 },
    );
    const [x] = s.next('a', 0);
    const [y] = s.next('b', 0);
    expect(s.next('c', 0)).toEqual([]); // two sources busy
    expect(s.next('seeder', 0)).toEqual([]); // chunk 5 is the seeder's alone, but it would be a third source
    expect([...s.askable(0)]).not.toContain('c');
    s.received('a', x, 10);
    expect(s.next('c', 10)).toEqual([4]); // a is done: a source is free
    expect(s.next('a', 10)).toEqual([]); // and taken
    s.received('c', 4, 20);
    expect(s.next('seeder', 20)).toHaveLength(1);
    s.received('b', y, 30);
    const rest = s.next('a', 30);
    expect(rest).toHaveLength(1);
    expect(s.stats().perPeer.filter((p) => p.inFlight > 0)).toHaveLength(2);
    expect(s.next('b', 30)).toEqual([]); // its other chunk waits for a free source
  });

  it('counts the neighbours holding something to ask for, and those backed off (holders)', () => {
    const s = setup('XX..', { seeder: '', a: 'XXX.', b: 'XX..', c: '...X' });
    expect(s.holders(0)).toEqual({ holding: 2, backedOff: 0, idle: 2 }); // a and c; b holds nothing missing, the head is no neighbour
    for (const i of s.next('a', 0)) s.failed('a', i, 'busy', 0);
    expect(s.holders(100)).toEqual({ holding: 2, backedOff: 1, idle: 1 });
    expect(s.holders(300)).toEqual({ holding: 2, backedOff: 0, idle: 2 }); // the first back-off is 250 ms
    expect(s.next('c', 300)).toEqual([3]);
    expect(s.holders(300)).toEqual({ holding: 1, backedOff: 0, idle: 1 }); // c: its one chunk is in flight
  });

  it('backs a busy peer off, doubling, once per batch; an arrival forgives it', () => {
    const s = setup('....', { a: 'XXXX' });
    for (const i of s.next('a', 0)) s.failed('a', i, 'busy', 0); // both chunks of the batch: one back-off
    expect(s.next('a', 249)).toEqual([]);
    const again = s.next('a', 250);
    expect(again).toHaveLength(2);
    s.failed('a', again[0], 'busy', 250);
    expect(s.next('a', 749)).toEqual([]); // 500 ms
    s.received('a', again[1], 750);
    const third = s.next('a', 750);
    s.failed('a', third[0], 'error', 760);
    expect(s.next('a', 1_009)).toEqual([]);
    expect(s.next('a', 1_010)).not.toEqual([]); // back to 250 ms
  });

  it('backs off briefly, without doubling, a node with at most half its sources (hungryBackoffMs)', () => {
    const opts: Options = { maxSources: 4, hungryBackoffMs: 25, ...one };
    const s = setup('........', { a: 'XXXXXXXX', b: 'XXXXXXXX', c: 'XXXXXXXX', d: 'XXXXXXXX' }, opts);
    s.failed('a', s.next('a', 0)[0], 'busy', 0); // no source left: hungry
    expect(s.next('a', 24)).toEqual([]);
    s.failed('a', s.next('a', 25)[0], 'busy', 25); // again: 25 ms, not doubled
    expect(s.next('a', 49)).toEqual([]);
    expect(s.next('a', 50)).toHaveLength(1);
    s.next('b', 50);
    s.next('c', 50); // a, b, c in flight: 3 of 4 sources, not hungry
    s.failed('d', s.next('d', 50)[0], 'busy', 50);
    expect(s.next('d', 299)).toEqual([]); // busyBackoffMs
    expect(s.next('d', 300)).toHaveLength(1);
    // off by default in this class (maxSources Infinity), as before
    const plain = setup('....', { a: 'XXXX' }, { hungryBackoffMs: 25 });
    for (const i of plain.next('a', 0)) plain.failed('a', i, 'busy', 0);
    expect(plain.next('a', 249)).toEqual([]);
  });

  it('backs off briefly a node behind its neighbours as they told their counts (behindShare)', () => {
    const opts: Options = { maxSources: 3, hungryBackoffMs: 25, behindShare: 0.25, ...one };
    const peers = { a: 'XXXXXXXX', b: 'XXXXXXXX', c: 'XXXXXXXX' };
    // 4 of 8 here; a and b in flight: 2 of 3 sources, not starved; c refuses its batch
    const refused = (s: Scheduler, t: number): void => s.failed('c', s.next('c', t)[0], 'busy', t);
    const s = setup('XXXX....', peers, opts);
    s.next('a', 0);
    s.next('b', 0);
    expect(s.paceLead()).toBeUndefined(); // no count told: no pace
    refused(s, 0);
    expect(s.next('c', 249)).toEqual([]); // busyBackoffMs
    s.peerProgress('a', 6);
    s.peerProgress('b', 6);
    s.peerProgress('c', 6);
    expect(s.paceLead()).toBe(-2); // 4 against 6: a quarter of the image behind
    s.peerProgress('seeder', 8); // the head's count is not a neighbour's
    s.peerProgress('a', 9); // nor a count above the image's
    expect(s.paceLead()).toBe(-2);
    refused(s, 250);
    expect(s.next('c', 274)).toEqual([]);
    refused(s, 275); // 25 ms, not doubled
    s.peerProgress('a', 5);
    s.peerProgress('b', 5);
    s.peerProgress('c', 5); // 4 against 5: an eighth behind, the busy back-off again (doubled: 500 ms)
    expect(s.next('c', 299)).toEqual([]);
    refused(s, 300);
    expect(s.next('c', 799)).toEqual([]);
    expect(s.next('c', 800)).toHaveLength(1);
    s.removePeer('c', 900);
    s.removePeer('b', 900);
    expect(s.paceLead()).toBe(-1); // a's count alone
    // off (Infinity): the busy back-off whatever the counts
    const off = setup('XXXX....', peers, { ...opts, behindShare: Infinity });
    off.next('a', 0);
    off.next('b', 0);
    for (const id of ['a', 'b', 'c']) off.peerProgress(id, 8);
    refused(off, 0);
    expect(off.next('c', 249)).toEqual([]);
    expect(() => setup('.', {}, { behindShare: 1.5 })).toThrow(/behindShare/);
  });

  it('wakeAt: the end of the first back-off of a holder, while short of sources', () => {
    const s = setup('....', { a: 'XXXX', b: 'XX..', c: '....' }, { maxSources: 2, ...one });
    expect(s.wakeAt(0)).toBe(Number.POSITIVE_INFINITY); // nothing backed off
    s.failed('a', s.next('a', 0)[0], 'busy', 0);
    s.failed('b', s.next('b', 10)[0], 'busy', 10);
    expect(s.wakeAt(20)).toBe(50); // a's (hungryBackoffMs: no source), the first to end; c holds nothing
    expect(s.wakeAt(50)).toBe(60); // b's (a may be asked now)
    s.next('a', 50);
    s.next('b', 60); // maxSources in flight: no other may be asked, nothing to wake for
    s.failed('c', 0, 'busy', 60);
    expect(s.wakeAt(61)).toBe(Number.POSITIVE_INFINITY);
  });

  it('offers a peer in another rack only chunks no neighbour in this rack holds', () => {
    const s = setup('........', { local: 'XXXX....' }, wide);
    s.addPeer('far', 0, true);
    s.peerHave('far', held('XXXXXXXX'));
    expect(new Set(s.next('far', 0))).toEqual(new Set([4, 5, 6, 7]));
    expect(new Set(s.next('local', 0))).toEqual(new Set([0, 1, 2, 3]));
  });

  it('takes a neighbour’s rack from the have exchange: one that reached us first becomes remote', () => {
    const s = setup('........', { local: 'XXXX....', far: 'XXXXXXXX' }, wide); // both count as local at first
    s.setRemote('far', true);
    expect(new Set(s.next('far', 0))).toEqual(new Set([4, 5, 6, 7]));
    s.setRemote('far', false); // back in this rack: its chunks count as local again
    expect(new Set(s.next('local', 0))).toEqual(new Set([0, 1, 2, 3]));
  });

  it('does not duplicate across racks in endgame what a rack-mate holds', () => {
    const s = setup('..', { local: 'XX', far: 'XX' }, wide);
    s.setRemote('far', true);
    expect(new Set(s.next('local', 0))).toEqual(new Set([0, 1])); // endgame: both in flight
    expect(s.next('far', 1)).toEqual([]);
    const alone = setup('..', { local: 'X.', far: 'XX' }, wide);
    alone.setRemote('far', true);
    expect(alone.next('local', 0)).toEqual([0]);
    expect(alone.next('far', 1)).toEqual([1]);
  });

  it('leaves to a rack-mate the chunks it is fetching from another rack, until it has them or gives up', () => {
    const s = setup('........', { mate: '........', far: 'XXXXXXXX' }, wide);
    s.setRemote('far', true);
    s.rackMateImporting('mate', [0, 1, 2], true);
    s.rackMateImporting('far', [3], true); // from another rack: not a rack-mate, ignored
    expect(new Set(s.next('far', 0))).toEqual(new Set([3, 4, 5, 6, 7]));
    for (const i of [3, 4, 5, 6, 7]) s.received('far', i, 1);
    s.peerHave('mate', [0]); // it got chunk 0: now it holds it (still not ours to pull across)
    s.rackMateImporting('mate', [1], false); // it gave up on 1
    expect(s.next('far', 2)).toEqual([1]);
    s.received('far', 1, 3);
    s.removePeer('mate', 4); // gone: its intent on 2 with it (and its chunk 0)
    expect(new Set(s.next('far', 5))).toEqual(new Set([0, 2]));
  });

  it('does not ask the seeder for a chunk a rack-mate is fetching from outside the rack, unless starved', () => {
    // 'mate' told us it is fetching 0 and 1 from the head (or another rack): the rack should take them in once.
    const s = setup('......', { seeder: '', mate: '......' }, { ...wide, seederGraceMs: 1_000 });
    s.rackMateImporting('mate', [0, 1], true);
    expect(new Set(s.next('seeder', 0))).toEqual(new Set([2, 3, 4, 5]));
    for (const i of [2, 3, 4, 5]) s.received('seeder', i, 10);
    s.rackMateImporting('mate', [1], false); // it gave up on 1: ours to ask for again
    expect(s.next('seeder', 20)).toEqual([1]);
    s.received('seeder', 1, 30);
    // Starved (no neighbour request for seederGraceMs): chunk 0 from the seeder after all, so no node waits for ever.
    expect(s.next('seeder', 500)).toEqual([]);
    expect(s.next('seeder', 1_100)).toEqual([0]);
  });

  it('asks a remote neighbour for one chunk across the racks at a time', () => {
    const s = setup('........', { far: 'XXXXXXXX', other: 'XXXXXXXX' }, { ...wide, maxInFlightChunks: 1 });
    s.setRemote('far', true);
    s.setRemote('other', true);
    expect(s.next('far', 0)).toHaveLength(1);
    expect(s.next('other', 0)).toEqual([]);
  });

  it('gets a chunk from the seeder when the only neighbour holding it keeps failing (a stall in the testbed)', () => {
    // 'a' holds chunk 1 and fails every request fast (its dial refused, its server broken): its back-off is at most
    // 500 ms, shorter than the seeder's grace, so the node was never starved and never asked the head for chunk 1.
    const s = setup('X.', { seeder: '', a: '.X' });
    let fromSeeder: number[] = [];
    for (let t = 0; t < 30_000 && fromSeeder.length === 0; t += 100) {
      for (const i of s.next('a', t)) s.failed('a', i, 'error', t + 10);
      fromSeeder = s.next('seeder', t + 20);
    }
    expect(fromSeeder).toEqual([1]);
    s.received('seeder', 1, 30_000);
    expect(s.done).toBe(true);
  });

  it('backs the seeder off without doubling when it refuses a chunk it already sent (super-seeding)', () => {
    const s = setup('....', { seeder: '' });
    for (let t = 0; t < 1_000; t += 250) {
      const batch = s.next('seeder', t);
      expect(batch).not.toEqual([]);
      for (const i of batch) s.failed('seeder', i, 'busy', t);
      expect(s.next('seeder', t + 249)).toEqual([]);
    }
  });

  it('does not ask the seeder again for a chunk it refused, for seederRefusalMs, unless starved', () => {
    const opts = { ...one, seederRefusalMs: 2_000 };
    const s = setup('....', { seeder: '' }, { ...opts, seederGraceMs: 60_000 });
    const refused: number[] = [];
    for (let t = 0; t < 1_000; t += 250) {
      const [i, ...rest] = s.next('seeder', t);
      expect(rest).toEqual([]);
      expect(refused).not.toContain(i);
      refused.push(i);
      s.failed('seeder', i, 'busy', t);
    }
    expect(s.next('seeder', 1_000)).toEqual([]); // every chunk refused within the last 2 s
    expect(s.next('seeder', 2_000)).toEqual([refused[0]]);
    // starved (no neighbour request for seederGraceMs, 1 s): the seeder is offered everything again
    const starved = setup('....', { seeder: '' }, opts);
    for (let t = 0; t < 1_000; t += 250)
      for (const i of starved.next('seeder', t)) starved.failed('seeder', i, 'busy', t);
    expect(starved.next('seeder', 999)).toEqual([]);
    expect(starved.next('seeder', 1_000)).toHaveLength(1);
  });

  it('never asks a peer again for a chunk it did not find; another peer gets it', () => {
    const s = setup('..', { a: 'XX', b: 'X.' }, wide);
    expect(s.next('a', 0)).toEqual([1, 0]);
    s.failed('a', 0, 'not-found', 1);
    expect(s.next('a', 2)).toEqual([]);
    expect(s.next('b', 2)).toEqual([0]);
    expect(peerStats(s, 'a')?.wanted).toBe(0);
  });

  it('knows which chunks each peer holds: its haves, less what it did not find', () => {
    const s = setup('...', { a: 'X.X' }, wide);
    expect([0, 1, 2].map((i) => s.holds('a', i))).toEqual([true, false, true]);
    s.peerHave('a', [1]);
    s.failed('a', 2, 'not-found', 1);
    expect([0, 1, 2].map((i) => s.holds('a', i))).toEqual([true, true, false]);
    expect(s.holds('nobody', 0)).toBe(false);
  });

  it('bans a peer after banAfter corrupt chunks: it gets nothing, and its chunks no longer count', () => {
    const s = setup('......', { seeder: '', a: 'XXXXXX', b: 'XXX...' }, wide);
    expect(s.next('seeder', 0)).toEqual([]);
    const picks = s.next('a', 0);
    expect(picks).toHaveLength(6);
    s.failed('a', picks[0], 'corrupt', 1);
    s.failed('a', picks[1], 'corrupt', 1);
    expect(s.isBanned('a')).toBe(false);
    s.failed('a', picks[2], 'corrupt', 1);
    expect(s.isBanned('a')).toBe(true);
    expect(peerStats(s, 'a')).toMatchObject({ banned: true, bad: 3, inFlight: 0, wanted: 0 });
    expect(s.next('a', 2)).toEqual([]);
    expect(new Set(s.next('seeder', 2))).toEqual(new Set([3, 4, 5])); // only a held them
    expect(new Set(s.next('b', 2))).toEqual(new Set([0, 1, 2]));
    s.removePeer('a', 3);
    s.addPeer('a', 3);
    s.peerHave('a', 'all');
    expect(s.isBanned('a')).toBe(true);
    expect(s.stats().perPeer.find((p) => p.peerId === 'a')?.wanted).toBe(0);
  });

  it('endgame: an idle peer duplicates the oldest outstanding requests; the first copy in wins', () => {
    const s = setup('...', { a: 'XXX', b: 'XXX', c: 'XXX' }, one);
    const [x] = s.next('b', 0);
    const [y] = s.next('c', 1);
    const [z] = s.next('a', 2);
    expect(s.stats().endgame).toBe(true);
    expect(s.next('a', 2)).toEqual([]); // not idle
    expect(s.received('a', z, 3)).toEqual({ status: 'new', cancel: [] });
    expect(s.next('a', 3)).toEqual([x]); // the oldest
    expect(s.received('a', x, 4)).toEqual({ status: 'new', cancel: ['b'] });
    expect(s.received('b', x, 5)).toEqual({ status: 'duplicate', cancel: [] });
    s.failed('b', x, 'error', 5); // the caller's abort of the cancelled copy: harmless
    expect(s.next('a', 5)).toEqual([y]);
    expect(s.next('a', 5)).toEqual([]); // never twice to one peer
    expect(s.received('c', y, 6)).toEqual({ status: 'new', cancel: ['a'] });
    expect(s.done).toBe(true);
    expect(s.stats()).toMatchObject({ have: 3, remaining: 0, inFlight: 0, endgame: false });
    expect(s.stats().perPeer.every((p) => p.inFlight === 0 && p.inFlightBytes === 0)).toBe(true);
  });

  it('endgame: no duplicate of a faster peer’s request unless it is overdue; the seeder only of overdue ones', () => {
    const s = setup('....', { seeder: '', fast: 'XXXX', slow: 'XXXX' }, one);
    const [f1] = s.next('fast', 0);
    const [s1] = s.next('slow', 0);
    s.received('fast', f1, 1); // 1 MiB/ms
    s.received('slow', s1, 1_000); // 1 MiB/s
    const [f2] = s.next('fast', 1_000);
    const [s2] = s.next('slow', 1_000);
    s.received('slow', s2, 2_000);
    expect(s.stats().endgame).toBe(true);
    // f2 is due 3 × 1 ms + 2000 ms after t = 1000.
    expect(s.next('slow', 2_000)).toEqual([]);
    expect(s.next('seeder', 2_000)).toEqual([]);
    expect(s.overdue(3_004)).toEqual([{ peerId: 'fast', index: f2 }]);
    expect(s.next('seeder', 3_004)).toEqual([f2]);
    expect(s.next('slow', 3_004)).toEqual([]); // endgameCopies 2: already two
  });

  it('flags overdue requests by their peer’s rate, in queue order; a timeout hands the chunk to another peer', () => {
    const s = setup('..', { a: 'XX', b: 'XX' });
    const [x, y] = s.next('a', 0); // unmeasured: 10 MiB/s assumed, so due at 3 × 100 ms + 2000, and 3 × 200 + 2000
    expect(s.overdue(2_300)).toEqual([]);
    expect(s.overdue(2_301)).toEqual([{ peerId: 'a', index: x }]);
    expect(s.overdue(2_601)).toEqual([
      { peerId: 'a', index: x },
      { peerId: 'a', index: y },
    ]);
    s.failed('a', x, 'timeout', 2_601);
    expect(peerStats(s, 'a')?.rateBps).toBeCloseTo(5 * MiB, 3); // halved
    expect(s.next('b', 2_601)).toEqual([x]);
    expect(s.overdue(2_601)).toEqual([{ peerId: 'a', index: y }]);
  });

  it('resumes from chunks already here, and is done when every chunk is', () => {
    const s = setup('XX.X', { a: 'XXXX' }, wide);
    expect(s.remaining).toBe(1);
    expect(s.next('a', 0)).toEqual([2]);
    expect(s.received('a', 2, 1).status).toBe('new');
    expect(s.done).toBe(true);
    expect(s.next('a', 2)).toEqual([]);
    expect(s.received('a', 2, 3).status).toBe('duplicate');
    expect(new Scheduler({ chunkLengths: [], random: Math.random, seederId: 's' }).done).toBe(true);
  });

  it('ignores have messages for unknown peers or out-of-range chunks, and refuses nonsense', () => {
    const s = setup('..', { a: '..' });
    s.peerHave('nobody', [0]);
    s.peerHave('a', [2, -1, 0.5, Number.NaN]);
    expect(s.next('a', 0)).toEqual([]);
    expect(s.next('nobody', 0)).toEqual([]);
    s.peerHave('a', 'all');
    expect(s.next('a', 0)).toHaveLength(2);
    expect(() => s.received('a', 2, 1)).toThrow(RangeError);
    const init = { chunkLengths: [1], random: Math.random, seederId: 's' };
    expect(() => new Scheduler({ ...init, randomFirst: -1 })).toThrow(/randomFirst/);
    expect(() => new Scheduler({ ...init, minInFlightBytes: 2, maxInFlightBytes: 1 })).toThrow(
      /maxInFlightBytes/,
    );
    expect(() => new Scheduler({ ...init, chunkLengths: [-1] })).toThrow(/chunk length/);
    expect(() => new Scheduler({ ...init, maxSources: 0 })).toThrow(/maxSources/);
    expect(() => new Scheduler({ ...init, maxSources: 2.5 })).toThrow(/maxSources/);
    expect(SCHEDULER_DEFAULTS.maxSources).toBe(Number.POSITIVE_INFINITY); // off (follow-up D)
  });

  it('keeps its books straight through random traffic, and finishes', () => {
    for (let seed = 1; seed <= 4; seed++) fuzz(seed);
  });

  it('askable() leaves out only peers whose next() would return nothing, in list order from any slot', () => {
    for (let seed = 1; seed <= 6; seed++) twins(seed);
  });

  it('askable() gives the same answers with a cap on sources, through endgame and bans', () => {
    // Its walks with maxSources peers in flight (those few only; in endgame, nothing) and its arrays of when each
    // peer may next be offered something must agree with next() for every peer, corrupt answers (bans) included.
    for (let seed = 1; seed <= 6; seed++) twins(seed, { maxSources: 2 }, true);
    for (let seed = 7; seed <= 9; seed++) twins(seed, { maxSources: 3 }, false);
  });

  it('ignores a have increment by the handle of a peer since removed', () => {
    const s = setup('....', { a: '....' });
    const stale = s.peerHandle('a') as PeerHandle;
    s.removePeer('a', 0);
    s.addPeer('a', 0);
    expect(s.peerHaveAt(stale, 1, 0)).toBe(false);
    expect(s.holds('a', 1)).toBe(false);
    const fresh = s.peerHandle('a') as PeerHandle;
    expect(s.peerHaveAt(fresh, 1, 0)).toBe(true);
    expect(s.holds('a', 1)).toBe(true);
    expect(s.next('a', 0)).toEqual([1]);
    expect(s.peerHandle('nobody')).toBeUndefined();
  });

  it('keeps its default requests in flight to one request frame', () => {
    expect(SCHEDULER_DEFAULTS.maxInFlightChunks).toBe(MAX_HASHES_PER_REQUEST);
  });
});

/**
 * Random traffic against a model of what the caller knows: which requests are outstanding where, what each peer
 * holds. Checks after every step that nothing is asked twice of one peer, that duplicates happen only in endgame,
 * that `cancel` names exactly the other holders, and that the per-peer counts (in flight, wanted) match the model.
 */
function fuzz(seed: number): void {
  const n = 40;
  const random = seeded(seed * 1000);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const ids = ['seeder', 'a', 'b', 'c', 'd'];
  const s = setup(
    '.'.repeat(n),
    {},
    { seed, maxInFlightChunks: 3, randomFirst: 2, banAfter: 2, maxSources: 3 },
  );
  const outstanding = new Map<string, Set<number>>();
  const holds = new Map<string, Set<number>>();
  const here = new Set<number>();
  const join = (id: string, t: number): void => {
    s.addPeer(id, t);
    outstanding.set(id, new Set());
    const h = new Set(id === 'seeder' ? Array.from({ length: n }, (_, i) => i) : []);
    if (id !== 'seeder') for (let i = 0; i < n; i++) if (random() < 0.4) h.add(i);
    holds.set(id, s.isBanned(id) ? new Set() : h);
    if (id !== 'seeder') s.peerHave(id, [...h]);
  };
  for (const id of ids) join(id, 0);
  for (let t = 1; t < 5_000 && !s.done; t++) {
    const id = pick(ids);
    const mine = outstanding.get(id) as Set<number>;
    const roll = random();
    if (roll < 0.4) {
      const endgameBefore = s.endgame;
      for (const i of s.next(id, t)) {
        expect(mine.has(i) || here.has(i)).toBe(false);
        const elsewhere = [...outstanding.values()].some((o) => o.has(i));
        if (elsewhere) {
          expect(endgameBefore).toBe(true);
        }
        mine.add(i);
      }
    } else if (roll < 0.9 && mine.size > 0) {
      const i = pick([...mine]);
      const others = ids.filter((o) => o !== id && outstanding.get(o)?.has(i));
      const fail = random();
      if (fail < 0.6) {
        const { status, cancel } = s.received(id, i, t);
        expect([status, new Set(cancel)]).toEqual(['new', new Set(others)]);
        for (const o of others) outstanding.get(o)?.delete(i);
        here.add(i);
        holds.get(id)?.add(i);
      } else {
        const reason =
          id === 'seeder'
            ? pick(['busy', 'timeout', 'error'] as const)
            : pick(['busy', 'not-found', 'corrupt', 'timeout', 'error'] as const);
        s.failed(id, i, reason, t);
        if (reason === 'not-found' || reason === 'corrupt') holds.get(id)?.delete(i);
        if (s.isBanned(id)) {
          mine.clear();
          holds.set(id, new Set());
        }
      }
      mine.delete(i);
    } else if (roll < 0.97 && id !== 'seeder') {
      const i = Math.floor(random() * n);
      s.peerHave(id, [i]);
      if (!s.isBanned(id)) holds.get(id)?.add(i);
    } else {
      s.removePeer(id, t);
      join(id, t);
    }
    const inFlight = new Set([...outstanding.values()].flatMap((o) => [...o]));
    const stats = s.stats();
    expect(stats.inFlight).toBe(inFlight.size);
    expect(stats.have).toBe(here.size);
    expect(stats.perPeer.filter((p) => p.inFlight > 0).length).toBeLessThanOrEqual(3);
    for (const p of stats.perPeer) {
      const h = holds.get(p.peerId) as Set<number>;
      const wanted = [...h].filter((i) => !here.has(i) && !inFlight.has(i)).length;
      expect([p.peerId, p.inFlight, p.wanted]).toEqual([p.peerId, outstanding.get(p.peerId)?.size, wanted]);
    }
  }
  expect(s.done).toBe(true);
}

/**
 * Two schedulers driven alike through random traffic, whose fetch loops differ: one calls next() for every peer
 * (in the list order stats() shows), the other only for the peers askable() yields (and after a have increment asks
 * that peer only if peerHaveOne() says next() may give it something). Their answers must be the same at every step (the random generator included: both are seeded alike and must draw alike).
 */
function twins(seed: number, extra: Options = {}, corrupt = false): void {
  const n = 24;
  const random = seeded(seed * 7919);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const opts: Options = { seed, maxInFlightChunks: 2, randomFirst: 2, maxRemoteRequests: 1, ...extra };
  const every = setup('.'.repeat(n), {}, opts);
  const some = setup('.'.repeat(n), {}, opts);
  const both = (f: (s: Scheduler) => void): void => {
    f(every);
    f(some);
  };
  const ids = ['seeder', 'a', 'b', 'c', 'd', 'e', 'f'];
  const outstanding = new Map<string, Set<number>>();
  /** `some`'s handles (peerHaveAt), taken anew when a peer joins again. */
  const handles = new Map<string, PeerHandle | undefined>();
  const join = (id: string, t: number): void => {
    const remote = id === 'e' || id === 'f';
    const h = id === 'seeder' ? [] : Array.from({ length: n }, (_, i) => i).filter(() => random() < 0.3);
    both((s) => {
      s.addPeer(id, t, remote);
      if (id !== 'seeder') s.peerHave(id, h);
    });
    handles.set(id, some.peerHandle(id));
    outstanding.set(id, new Set());
  };
  for (const id of ids) join(id, 0);
  let asked = 0;
  let skipped = 0;
  for (let t = 1; t < 4_000 && !every.done; t++) {
    const roll = random();
    if (roll < 0.35) {
      // the fetcher's walk from a random place (peer/source-order.ts) against askable() from that slot
      const list = every.stats().perPeer.map((p) => p.peerId);
      const start = rotationStart(list.length, random);
      const a = new Map<string, number[]>();
      for (let k = 0; k < list.length; k++) {
        const peerId = list[(start + k) % list.length];
        const got = every.next(peerId, t);
        if (got.length > 0) a.set(peerId, got);
      }
      const b = new Map<string, number[]>();
      for (const id of some.askable(t, start)) {
        asked++;
        const got = some.next(id, t);
        if (got.length > 0) b.set(id, got);
      }
      expect([...b]).toEqual([...a]); // the same picks, asked in the same order
      for (const [id, got] of a) for (const i of got) outstanding.get(id)?.add(i);
    } else if (roll < 0.85) {
      const id = pick([...outstanding.keys()]);
      const mine = outstanding.get(id) as Set<number>;
      if (mine.size === 0) continue;
      const i = pick([...mine]);
      mine.delete(i);
      if (random() < 0.6) {
        both((s) => s.received(id, i, t));
        for (const o of outstanding.values()) o.delete(i);
      } else {
        const reason = pick(
          corrupt
            ? (['busy', 'timeout', 'error', 'not-found', 'corrupt'] as const)
            : (['busy', 'timeout', 'error', 'not-found'] as const),
        );
        both((s) => s.failed(id, i, reason, t));
      }
    } else if (roll < 0.97) {
      // a have increment, and that peer asked at once (bench/sim's have fan-out): peerHave() and next() on one
      // twin, peerHaveOne() and next() only if it says next() may give something on the other
      const id = pick(ids.slice(1));
      const i = Math.floor(random() * n);
      every.peerHave(id, [i]);
      const a = every.isBanned(id) ? [] : every.next(id, t);
      const handle = handles.get(id);
      const may =
        random() < 0.5 || handle === undefined ? some.peerHaveOne(id, i, t) : some.peerHaveAt(handle, i, t);
      const b = may ? some.next(id, t) : [];
      expect(b).toEqual(a);
      if (!may) skipped++;
      for (const x of a) outstanding.get(id)?.add(x);
    } else {
      const id = pick(ids.slice(1));
      both((s) => s.removePeer(id, t));
      outstanding.delete(id);
      join(id, t);
    }
  }
  expect(asked).toBeGreaterThan(0);
  expect(skipped).toBeGreaterThan(0);
  expect(some.stats()).toEqual(every.stats());
}
