import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../cli/status-format.ts';
import { decodeAnnounceHave, encodeAnnounceHave } from '../../core/tracker-messages.ts';
import { countBuckets, MAX_BUCKETS } from '../../tracker/availability.ts';
import { buildSnapshot, type SnapshotSources } from '../../tracker/dashboard-snapshot.ts';
import type { ImageRecord } from '../../tracker/registry.ts';
import { InvalidAnnounceError, type PeerStage, SwarmState } from '../../tracker/swarm-state.ts';
import { ThroughputHistory } from '../../tracker/throughput-history.ts';
import { tMinSeconds } from '../../tracker/wave.ts';
import { announce, IMG } from '../helpers/announce.ts';

/** "1101" → base64 bitfield with chunks 0, 1 and 3 held. */
function have(pattern: string): string {
  return encodeAnnounceHave(pattern.length, (i) => pattern[i] === '1') as string;
}

function setup(chunks: number | null = 8) {
  const t = { ms: 1_000 };
  const state = new SwarmState({
    now: () => t.ms,
    chunkCount: (id) => (id === IMG && chunks !== null ? chunks : undefined),
  });
  return { t, state };
}

describe('announce bitfield (have)', () => {
  it('round-trips, MSB first, and refuses a bitfield of another length or with bits past the last chunk', () => {
    const h = have('110100001');
    expect(Buffer.from(h, 'base64')).toEqual(Buffer.from([0b11010000, 0b10000000]));
    expect([...(decodeAnnounceHave(h, 9) ?? [])]).toEqual([0b11010000, 0b10000000]);
    expect(decodeAnnounceHave(h, 17)).toBeUndefined(); // wrong length for the image
    expect(decodeAnnounceHave(Buffer.from([0, 0b01000000]).toString('base64'), 9)).toBeUndefined(); // bit 9 set
    expect(decodeAnnounceHave('!!!!', 24)).toBeUndefined();
    expect(encodeAnnounceHave(64 * 1024 * 8 + 1, () => true)).toBeUndefined(); // over the cap: not sent
  });

  it('is reduced to held-chunk counts per heat-map cell', () => {
    const bits = (p: string) => decodeAnnounceHave(have(p), p.length) as Uint8Array;
    expect([...countBuckets(bits('1101'), 4)]).toEqual([1, 1, 0, 1]);
    // 1,024 chunks → 512 cells of two.
    const p = '10'.repeat(300) + '11'.repeat(212);
    const cells = countBuckets(bits(p), 1024);
    expect(cells.length).toBe(MAX_BUCKETS);
    expect(cells[0]).toBe(1);
    expect(cells[511]).toBe(2);
    expect([...cells].reduce((a, b) => a + b, 0)).toBe(300 + 424);
    // Cells of more than 255 chunks count in two bytes.
    const big = countBuckets(new Uint8Array((512 * 256) / 8).fill(0xff), 512 * 256);
    expect(big).toBeInstanceOf(Uint16Array);
    expect(big[511]).toBe(256);
    expect(cells).toBeInstanceOf(Uint8Array);
  });
});

describe('SwarmState availability', () => {
  it('counts holders per chunk: working peers by their bitfield, complete peers as holding all', () => {
    const { state } = setup();
    state.announce(announce('a', { have: have('11110000') }));
    state.announce(announce('b', { have: have('11000000') }));
    state.announce(announce('c', { stage: 'done' }));
    expect(state.availability(IMG)).toMatchObject({
      chunks: 8,
      buckets: 8,
      holders: [3, 3, 2, 2, 1, 1, 1, 1],
      min: 1,
      max: 3,
      complete: 1,
      reporting: 2,
    });
    state.announce(announce('a', { have: have('11111100') })); // replaces a's old report
    expect(state.availability(IMG)?.holders).toEqual([3, 3, 2, 2, 2, 2, 1, 1]);
    state.announce(announce('a', { stage: 'seeding' })); // complete: stores nothing
    expect(state.availability(IMG)).toMatchObject({ holders: [3, 3, 2, 2, 2, 2, 2, 2], reporting: 1 });
    state.leave('b');
    expect(state.availability(IMG)).toMatchObject({ holders: [2, 2, 2, 2, 2, 2, 2, 2], reporting: 0 });
  });

  it('forgets an expired peer’s chunks', () => {
    const { t, state } = setup();
    state.announce(announce('a', { have: have('10000000') }));
    t.ms += 60_000;
    state.announce(announce('b', { have: have('01000000') }));
    t.ms += 40_000; // a is past the 90 s TTL
    expect(state.availability(IMG)?.holders).toEqual([0, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('refuses a bitfield of the wrong size, leaving the state as it was', () => {
    const { state } = setup();
    state.announce(announce('a', { have: have('11110000') }));
    expect(() => state.announce(announce('a', { have: have('1111111100'), progress: 0.9 }))).toThrow(
      InvalidAnnounceError,
    );
    expect(state.peer('a', IMG)?.progress).toBe(0.5);
    expect(state.availability(IMG)?.holders).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
  });

  it('has no availability for an image the head does not know (bitfields ignored)', () => {
    const { state } = setup(null);
    state.announce(announce('a', { have: have('1111') }));
    expect(state.availability(IMG)).toBeUndefined();
    expect(state.peers(IMG)).toHaveLength(1);
  });

  it('remembers when a peer completed, once', () => {
    const { t, state } = setup();
    expect(state.announce(announce('a')).completedAt).toBeUndefined();
    t.ms = 5_000;
    expect(state.announce(announce('a', { stage: 'done' })).completedAt).toBe(5_000);
    t.ms = 9_000;
    expect(state.announce(announce('a', { stage: 'seeding' })).completedAt).toBe(5_000);
  });
});

describe('T_min (tracker/wave.ts)', () => {
  const G = 1e9;
  it('is one copy’s time on symmetric links, however many nodes', () => {
    for (const nodes of [1, 10, 1000])
      expect(tMinSeconds({ size: 4 * G, nodes, headUplink: G, nodeDownlink: G, nodeUplink: G })).toBe(4);
  });
  it('is bound by the head, the slowest downlink, or everyone’s upload together', () => {
    expect(tMinSeconds({ size: G, nodes: 4, headUplink: G / 10, nodeDownlink: G, nodeUplink: G })).toBe(10);
    expect(tMinSeconds({ size: G, nodes: 4, headUplink: G, nodeDownlink: G / 2, nodeUplink: G })).toBe(2);
    // 100 nodes uploading at 1/100 of the head's rate: 100 GB over 2 GB/s together.
    expect(tMinSeconds({ size: G, nodes: 100, headUplink: G, nodeDownlink: G, nodeUplink: G / 100 })).toBe(
      50,
    );
    expect(tMinSeconds({ size: G, nodes: 0, headUplink: G, nodeDownlink: G, nodeUplink: G })).toBe(0);
  });
});

describe('ThroughputHistory', () => {
  it('turns the seeder’s byte counter into a rate per sample and keeps a fixed ring', () => {
    const h = new ThroughputHistory(3);
    h.sample(0, 0, 0);
    expect(h.egressRate).toBe(0);
    h.sample(1_000, 5_000, 7);
    h.sample(3_000, 9_000, 8);
    expect(h.egressRate).toBe(2_000);
    h.sample(4_000, 10_000, 9);
    h.sample(5_000, 10_000, 10);
    expect(h.view()).toEqual({ t: [3, 4, 5], egress: [2_000, 1_000, 0], down: [8, 9, 10] });
  });
});

const RECORD: ImageRecord = {
  name: 'compute',
  version: 3,
  id: IMG,
  format: 'raw',
  size: 4e9,
  chunks: 8,
  publisher: 'f'.repeat(64),
  publishedAt: '2026-11-22T00:00:00.000Z',
};

function sources(state: SwarmState, now: number): SnapshotSources {
  return {
    now,
    swarm: state,
    images: [RECORD],
    head: { bytesServed: 1234, egressRate: 99 },
    history: { t: [], egress: [], down: [] },
    links: { headUplink: 1e9, nodeLink: 1e9 },
  };
}

/** n peers in racks of 40, stages from `stage(i)`. */
function fleet(state: SwarmState, n: number, stage: (i: number) => PeerStage) {
  for (let i = 0; i < n; i++) {
    const s = stage(i);
    state.announce(
      announce(`p${String(i).padStart(5, '0')}`, {
        rack: `rack-${String(Math.floor(i / 40)).padStart(3, '0')}`,
        host: `node${String(i).padStart(5, '0')}`,
        stage: s,
        progress: s === 'done' ? 1 : (i % 100) / 100,
        have: s === 'fetching' ? have(i % 2 ? '11110000' : '00001111') : undefined,
      }),
    );
  }
}

describe('dashboard snapshot', () => {
  it('groups nodes by rack, one row each while they fit, and reports the wave against T_min', () => {
    const { t, state } = setup();
    state.announce(announce('a', { rack: 'r2', host: 'n1', stage: 'done', bytesFromPeers: 300 }));
    t.ms = 3_000;
    state.announce(announce('b', { rack: 'r1', host: 'n2', stage: 'done', bytesFromSeeder: 100 }));
    let s = buildSnapshot(sources(state, 4_000));
    expect(s.swarms).toHaveLength(1);
    const w = s.swarms[0];
    expect(w).toMatchObject({ name: 'compute', version: 3, rowsMode: 'all' });
    expect(w.rows.map((r) => [r.rack, r.host])).toEqual([
      ['r1', 'n2'],
      ['r2', 'n1'],
    ]);
    expect(w.racks.map((r) => [r.rack, r.nodes, r.byStage.done])).toEqual([
      ['r1', 1, 1],
      ['r2', 1, 1],
    ]);
    // Wave: first announce at 1 s, last completion at 3 s; T_min = 4 GB / 1 GB/s.
    expect(w.wave).toEqual({ startedAt: 1_000, completedAt: 3_000, elapsedSeconds: 2, tMinSeconds: 4 });
    // From peers 300 (a) + 400 (b), from the head 100 + 100.
    expect(w.offload).toBe(0.7778);
    expect(s.head).toEqual({ bytesServed: 1234, egressRate: 99, offload: 0.7778 });
    state.announce(announce('c', { stage: 'fetching' }));
    s = buildSnapshot(sources(state, 5_000));
    expect(s.swarms[0].wave).toMatchObject({ completedAt: null, elapsedSeconds: 4 });
  });

  it('at 1,000 nodes keeps a tile per node but rows only for the ones needing attention', () => {
    const { t, state } = setup();
    fleet(state, 1000, (i) => (i === 7 ? 'failed' : i % 3 === 0 ? 'done' : 'fetching'));
    t.ms += 61_000; // everyone past stuckAfterMs…
    fleet(state, 1000, (i) => (i === 7 ? 'failed' : i % 3 === 0 ? 'done' : 'fetching'));
    state.announce(
      announce('p00011', { rack: 'rack-000', host: 'node00011', progress: 0.99, bytesDone: 990 }),
    );
    // …and all but p00011 re-announced the same bytesDone: stuck.
    const s = buildSnapshot(sources(state, t.ms), { rows: 50 });
    const w = s.swarms[0];
    expect(w.rowsMode).toBe('attention');
    expect(w.rows).toHaveLength(50);
    expect(w.rows.some((r) => r.stage === 'failed' && r.host === 'node00007')).toBe(true);
    expect(w.rows.every((r) => r.stage === 'failed' || r.stuck)).toBe(true);
    expect(w.racks).toHaveLength(25);
    expect(w.racks.reduce((a, r) => a + (r.tiles?.length ?? 0), 0)).toBe(1000);
    expect(w.summary.stuck).toBe(w.racks.reduce((a, r) => a + r.stuck, 0));
    // Complete nodes hold every chunk; odd-numbered fetching nodes the first half, even ones the second
    // (p00011 re-announced without a bitfield: it counts as holding nothing).
    const fetching = Array.from({ length: 1000 }, (_, i) => i).filter((i) => i !== 7 && i % 3 !== 0);
    const odd = fetching.filter((i) => i % 2 && i !== 11).length;
    const even = fetching.filter((i) => i % 2 === 0).length;
    expect(w.availability?.holders).toEqual([...Array(4).fill(334 + odd), ...Array(4).fill(334 + even)]);
    const bytes = JSON.stringify(s).length;
    expect(bytes).toBeLessThan(120_000); // what each dashboard client receives per second
  });

  it('stays bounded past the tile budget: racks as aggregates only', () => {
    const { state } = setup();
    fleet(state, 12_000, (i) => (i % 2 ? 'done' : 'fetching'));
    const s = buildSnapshot(sources(state, 2_000));
    expect(s.tilesOmitted).toBe(12_000);
    expect(s.swarms[0].racks.every((r) => r.tiles === null)).toBe(true);
    expect(s.swarms[0].rows).toHaveLength(64);
    expect(JSON.stringify(s).length).toBeLessThan(150_000);
  });
});

describe('rackswarm status text (cli/status-format.ts)', () => {
  it('shows the head, a line per image, stages, and the stuck and failed nodes', () => {
    const { t, state } = setup();
    state.announce(announce('a', { host: 'n1', stage: 'failed', error: 'RSW_ERR_DISK_FULL: disk full' }));
    state.announce(announce('b', { host: 'n2', rack: 'r2' }));
    state.announce(announce('c', { host: 'n3', stage: 'done', progress: 1 }));
    t.ms += 61_000;
    state.announce(announce('b', { host: 'n2', rack: 'r2' })); // no progress for 61 s: stuck
    const text = formatStatus(buildSnapshot(sources(state, t.ms)), 'http://head:7480');
    expect(text.split('\n')).toEqual([
      'head http://head:7480  egress 99 B/s  served 1.21 KiB  offload 80.0%  at 1970-01-01T00:01:02Z',
      '',
      'IMAGE      NODES  DONE  PROGRESS  STUCK  FAILED  DOWN     FROM PEERS  FROM HEAD  ELAPSED  T_MIN',
      'compute@3  3      1     66.6%     1      1       300 B/s  1.17 KiB    300 B      1m01s    4.0 s',
      '',
      'IMAGE      ANNOUNCED  FETCHING  VERIFYING  DONE  SEEDING  FAILED',
      'compute@3  0          1         0          1     0        1',
      '',
      'stuck or failed nodes: 2',
      'IMAGE      RACK  NODE  STAGE             PROGRESS  LAST SEEN  ERROR',
      'compute@3  r1    n1    failed            50.0%     1m01s ago  RSW_ERR_DISK_FULL: disk full',
      'compute@3  r2    n2    fetching (stuck)  50.0%     0.0 s ago',
    ]);
  });
});
