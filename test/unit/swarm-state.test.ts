import { describe, expect, it } from 'vitest';
import { handout } from '../../tracker/handout-policy.ts';
import { type Announce, InvalidAnnounceError, SwarmState } from '../../tracker/swarm-state.ts';
import { announce, IMG } from '../helpers/announce.ts';

const IMG2 = 'b'.repeat(64);

/** A SwarmState on a hand-driven clock: `t.ms` is now. */
function setup(init: { ttlMs?: number; maxPeers?: number; stuckAfterMs?: number } = {}) {
  const t = { ms: 1_000 };
  const state = new SwarmState({ now: () => t.ms, ...init });
  return { t, state };
}

const ids = (records: { peerId: string }[]): string[] => records.map((r) => r.peerId).sort();

describe('SwarmState', () => {
  it('records an announce, then replaces it: firstSeen kept, lastSeen moved, the old record untouched', () => {
    const { t, state } = setup();
    const first = state.announce(announce('p1'));
    expect(first).toMatchObject({
      peerId: 'p1',
      imageId: IMG,
      progress: 0.5,
      firstSeen: 1_000,
      lastSeen: 1_000,
    });
    t.ms = 6_000;
    const second = state.announce(announce('p1', { progress: 0.75, bytesDone: 750 }));
    expect(second).toMatchObject({ progress: 0.75, bytesDone: 750, firstSeen: 1_000, lastSeen: 6_000 });
    expect(first.progress).toBe(0.5);
    expect(second.addrs).toBe(first.addrs); // unchanged addresses are shared, not copied again
    expect(state.peer('p1', IMG)).toBe(second);
    expect(state.size).toBe(1);
  });

  it('keeps images apart: one peer in two swarms is two pairs', () => {
    const { state } = setup();
    state.announce(announce('p1'));
    state.announce(announce('p1', { imageId: IMG2 }));
    state.announce(announce('p2'));
    expect(state.size).toBe(3);
    expect(state.images().sort()).toEqual([IMG, IMG2]);
    expect(ids(state.peers(IMG))).toEqual(['p1', 'p2']);
    expect(ids(state.peers(IMG2))).toEqual(['p1']);
    expect(state.peers('c'.repeat(64))).toEqual([]);
  });

  it('stops handing out a peer that departs (announce stage stopped), keeps its record until the TTL', () => {
    const { t, state } = setup({ ttlMs: 10_000 });
    state.announce(announce('p1', { stage: 'done', progress: 1 }));
    state.announce(announce('p2'));
    expect(state.depart('p1', IMG)).toBe(true);
    expect(state.depart('p1', IMG2)).toBe(false);
    expect(state.depart('nobody', IMG)).toBe(false);
    expect(ids([...state.candidates(IMG).values()])).toEqual(['p2']);
    expect(state.peer('p1', IMG)).toMatchObject({ stage: 'done', progress: 1 }); // the dashboard still shows it
    t.ms += 10_001;
    state.announce(announce('p2'));
    expect(ids(state.peers(IMG))).toEqual(['p2']); // then gone with the TTL
    state.announce(announce('p1', { stage: 'seeding', progress: 1 })); // back: handed out again
    expect(ids([...state.candidates(IMG).values()])).toEqual(['p1', 'p2']);
  });

  it('forgets a peer that leaves one image, or all of them; an emptied swarm disappears', () => {
    const { state } = setup();
    state.announce(announce('p1'));
    state.announce(announce('p1', { imageId: IMG2 }));
    state.announce(announce('p2'));
    state.leave('p1', IMG2);
    expect(state.images()).toEqual([IMG]);
    state.leave('p1');
    expect(ids(state.peers(IMG))).toEqual(['p2']);
    state.leave('nobody');
    expect(state.size).toBe(1);
  });

  it('expires peers silent for longer than the TTL, and no read ever sees one', () => {
    const { t, state } = setup({ ttlMs: 90_000 });
    state.announce(announce('p1'));
    state.announce(announce('p2'));
    t.ms += 60_000;
    state.announce(announce('p2')); // p2 stays alive
    t.ms += 30_000;
    expect(state.peer('p1', IMG)).toBeDefined(); // silent exactly ttlMs: not yet
    t.ms += 1;
    expect(state.peer('p1', IMG)).toBeUndefined();
    expect(ids(state.peers(IMG))).toEqual(['p2']);
    t.ms += 60_000;
    expect(state.expire()).toBe(1);
    expect(state.size).toBe(0);
    expect(state.images()).toEqual([]);
  });

  it('counts what expire() drops, and an idle call drops nothing', () => {
    const { t, state } = setup({ ttlMs: 1_000 });
    for (let i = 0; i < 50; i++) state.announce(announce(`p${i}`));
    expect(state.expire()).toBe(0);
    t.ms += 1_001;
    expect(state.expire()).toBe(50);
    expect(state.expire()).toBe(0);
  });

  it('is not fooled by a clock that steps back: time stands still until it catches up', () => {
    const { t, state } = setup({ ttlMs: 1_000 });
    t.ms = 10_000;
    state.announce(announce('p1'));
    t.ms = 5_000;
    expect(state.announce(announce('p2')).lastSeen).toBe(10_000);
    t.ms = 11_001;
    expect(state.expire()).toBe(2);
  });

  it('evicts the pairs seen longest ago beyond maxPeers', () => {
    const { t, state } = setup({ maxPeers: 3 });
    for (const id of ['p1', 'p2', 'p3']) {
      state.announce(announce(id));
      t.ms += 1_000;
    }
    state.announce(announce('p1')); // p1 is fresh again, p2 is now the oldest
    state.announce(announce('p4', { imageId: IMG2 }));
    expect(state.size).toBe(3);
    expect(ids(state.peers(IMG))).toEqual(['p1', 'p3']);
    expect(ids(state.peers(IMG2))).toEqual(['p4']);
  });

  it('evicts an image’s last peer to make room for the same image', () => {
    const { state } = setup({ maxPeers: 1 });
    state.announce(announce('p1'));
    state.announce(announce('p2'));
    expect(ids(state.peers(IMG))).toEqual(['p2']);
    expect(state.candidates(IMG).size).toBe(1);
  });

  it('clamps progress into 0..1 and sets it to 1 once a peer is done or seeding', () => {
    const { state } = setup();
    expect(state.announce(announce('p1', { progress: 1.0000001 })).progress).toBe(1);
    expect(state.announce(announce('p1', { progress: -0.1 })).progress).toBe(0);
    expect(state.announce(announce('p1', { progress: 0.99, stage: 'done' })).progress).toBe(1);
    expect(state.announce(announce('p1', { progress: 0, stage: 'seeding' })).progress).toBe(1);
  });

  it.each([
    ['peerId', { peerId: '' }],
    ['peerId', { peerId: 'has space' }],
    ['peerId', { peerId: 'x'.repeat(129) }],
    ['imageId', { imageId: 'ubuntu-24.04' }],
    ['imageId', { imageId: IMG.toUpperCase() }],
    ['addrs', { addrs: '/ip4/10.0.0.1' as unknown as string[] }],
    ['addrs', { addrs: Array(17).fill('/ip4/10.0.0.1') }],
    ['addrs', { addrs: [`/ip4/${'1'.repeat(256)}`] }],
    ['addrs', { addrs: ['10.0.0.1:4001'] }],
    ['addrs', { addrs: [42 as unknown as string] }],
    ['rack', { rack: 'r'.repeat(65) }],
    ['rack', { rack: 'rack\n1' }],
    ['host', { host: 7 as unknown as string }],
    ['progress', { progress: Number.NaN }],
    ['progress', { progress: '0.5' as unknown as number }],
    ['bytesDone', { bytesDone: -1 }],
    ['downRate', { downRate: Number.POSITIVE_INFINITY }],
    ['bytesFromSeeder', { bytesFromSeeder: undefined as unknown as number }],
    ['stage', { stage: 'booting' as 'done' }],
  ])('refuses an announce with a bad %s (%j), changing nothing', (field, over) => {
    const { state } = setup();
    expect(() => state.announce(announce('p1', over))).toThrow(
      expect.objectContaining({ name: 'InvalidAnnounceError', field }),
    );
    expect(state.size).toBe(0);
  });

  it('refuses what is not an announce at all', () => {
    const { state } = setup();
    expect(() => state.announce(null as unknown as Announce)).toThrow(InvalidAnnounceError);
  });

  it('accepts the bounds themselves: 16 addresses of 256 characters, a 64-character rack, no rack', () => {
    const { state } = setup();
    const addrs = Array.from({ length: 16 }, (_, i) => `/dns/${String(i).padStart(251, 'h')}`);
    expect(state.announce(announce('p1', { addrs, rack: 'r'.repeat(64) })).addrs).toHaveLength(16);
    expect(state.announce(announce('p2', { rack: '' })).rack).toBeUndefined();
    expect(state.announce(announce('p3', { rack: undefined, addrs: [] })).rack).toBeUndefined();
  });

  it('copies the addresses it keeps, so the caller may reuse its array', () => {
    const { state } = setup();
    const addrs = ['/ip4/10.0.0.1/tcp/4001'];
    state.announce(announce('p1', { addrs }));
    addrs[0] = '/ip4/6.6.6.6/tcp/1';
    expect(state.peer('p1', IMG)?.addrs).toEqual(['/ip4/10.0.0.1/tcp/4001']);
  });

  it('offers every current peer but the failed ones as handout candidates', () => {
    const { state } = setup();
    for (const id of ['p1', 'p2', 'p3', 'p4']) state.announce(announce(id));
    state.announce(announce('p2', { stage: 'failed', error: 'disk full' }));
    expect(ids([...state.candidates(IMG).values()])).toEqual(['p1', 'p3', 'p4']);
    state.leave('p1');
    expect(ids([...state.candidates(IMG).values()])).toEqual(['p3', 'p4']);
    state.announce(announce('p2', { stage: 'fetching' })); // a retry brings it back
    state.announce(announce('p3', { progress: 0.9 }));
    expect(ids([...state.candidates(IMG).values()])).toEqual(['p2', 'p3', 'p4']);
    expect([...state.candidates(IMG).values()].find((r) => r.peerId === 'p3')?.progress).toBe(0.9);
    expect(state.candidates(IMG2).size).toBe(0);
    expect(state.peer('p2', IMG)?.error).toBeUndefined();
  });

  it('feeds handout: rack mates first, never the asker nor a failed peer', () => {
    const { state } = setup();
    for (let i = 0; i < 50; i++) state.announce(announce(`far${i}`, { rack: 'r2' }));
    for (let i = 0; i < 5; i++) state.announce(announce(`near${i}`, { rack: 'r1' }));
    state.announce(announce('near5', { rack: 'r1', stage: 'failed' }));
    const me = state.announce(announce('me', { rack: 'r1' }));
    const got = handout(me, state.candidates(IMG), 30, Math.random).map((p) => p.peerId);
    // near0..near3 were filed first: r1's gateways; 'me' is not one, so it gets its rack only (handout rule 5)
    expect(got.sort()).toEqual(['near0', 'near1', 'near2', 'near3', 'near4']);
    const gateway = state.announce(announce('near0', { rack: 'r1' }));
    const across = handout(gateway, state.candidates(IMG), 30, Math.random).map((p) => p.peerId);
    expect(across.slice(0, 5).sort()).toEqual(['me', 'near1', 'near2', 'near3', 'near4'].sort());
    expect(across.slice(5).sort()).toEqual(['far0', 'far1', 'far2', 'far3']); // r2's gateways
    expect(across).not.toContain('near5');
  });

  it('summarises a swarm: stages, done, stuck peers, mean progress and summed rates', () => {
    const { t, state } = setup({ stuckAfterMs: 60_000 });
    const idle = { downRate: 0, upRate: 0 };
    const swarm = [
      announce('p1', { stage: 'seeding', ...idle, upRate: 1000 }),
      announce('p2', { stage: 'done', ...idle }),
      announce('p3', { progress: 0.2, bytesDone: 200 }),
      announce('p4', { stage: 'announced', progress: 0, bytesDone: 0, ...idle }),
      announce('p5', { stage: 'failed', error: 'no route to head', ...idle }),
    ];
    for (const a of swarm) state.announce(a);
    t.ms += 60_000;
    // A minute later everyone announces the same again but p3, which moved on: p4 has not fetched a byte, so it
    // is stuck; done, seeding and failed peers never are.
    for (const a of swarm) state.announce(a.peerId === 'p3' ? { ...a, progress: 0.3, bytesDone: 300 } : a);
    expect(state.summary(IMG)).toEqual({
      imageId: IMG,
      peers: 5,
      byStage: { announced: 1, fetching: 1, verifying: 0, done: 1, seeding: 1, failed: 1 },
      done: 2,
      stuck: 1,
      meanProgress: (1 + 1 + 0.3 + 0 + 0.5) / 5,
      downRate: 100,
      upRate: 1000 + 50,
      bytesFromPeers: 400 * 5,
      bytesFromSeeder: 100 * 5,
    });
    expect(state.peer('p4', IMG)?.lastProgressAt).toBe(1_000);
    expect(state.peer('p3', IMG)?.lastProgressAt).toBe(61_000);
  });

  it('summarises an unknown image as an empty swarm', () => {
    const { state } = setup();
    expect(state.summary(IMG)).toMatchObject({ peers: 0, done: 0, meanProgress: 0, downRate: 0 });
  });

  it('refuses a nonsensical configuration', () => {
    expect(() => new SwarmState({ ttlMs: 0 })).toThrow(/ttlMs/);
    expect(() => new SwarmState({ maxPeers: 0.5 })).toThrow(/maxPeers/);
  });
});
