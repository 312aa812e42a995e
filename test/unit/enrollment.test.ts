import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEnrolledQuery, MAX_QUERY_IDS, parsePeerId, parsePeerIdList } from '../../core/enrollment.ts';
import { EnrollmentCache } from '../../core/enrollment-cache.ts';
import { isRswError } from '../../core/errors.ts';
import { meshGater } from '../../core/mesh-gater.ts';
import { enrollmentRoutes } from '../../tracker/enrollment-routes.ts';
import { Enrollments } from '../../tracker/enrollments.ts';
import { buildHttpApi } from '../../tracker/http-api.ts';
import { createMetrics } from '../../tracker/metrics.ts';
import { Registry } from '../../tracker/registry.ts';
import { SwarmState } from '../../tracker/swarm-state.ts';
import { tempDir } from '../helpers/cli.ts';

let ids: string[];
const peer = (i: number): PeerId => peerIdFromString(ids[i]);

beforeAll(async () => {
  ids = await Promise.all(
    Array.from({ length: 6 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()),
  );
});

describe('peer id text', () => {
  it('accepts real peer ids and names every bad one in a list; comments and blank lines are fine', () => {
    expect(parsePeerId(ids[0])).toBe(ids[0]);
    expect(parsePeerIdList(`${ids[0]}  # node-r1-01\n\n# spare\n${ids[1]} ${ids[0]}\n`)).toEqual([
      ids[0],
      ids[1],
    ]);
    expect(() => parsePeerIdList(`${ids[0]}\nnode7\n12D3KooWbroken`)).toThrow(/node7, 12D3KooWbroken/);
  });

  it('property: the enrollment query decoder returns ids or throws RSW_ERR_PROTOCOL, nothing else', () => {
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.jsonValue().map(enc),
          fc
            .array(fc.oneof(fc.constantFrom(...ids), fc.string()), { maxLength: 70 })
            .map((p) => enc({ peerIds: p })),
        ),
        (bytes) => {
          try {
            const q = decodeEnrolledQuery(bytes);
            expect(q.peerIds.length).toBeGreaterThan(0);
            expect(q.peerIds.length).toBeLessThanOrEqual(MAX_QUERY_IDS);
          } catch (e) {
            expect(isRswError(e) && e.code).toBe('RSW_ERR_PROTOCOL');
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('meshGater', () => {
  it('admits the pinned head and enrolled peers, refuses the rest in every direction, and says whom', async () => {
    const refused: string[] = [];
    const g = meshGater({
      head: ids[0],
      isEnrolled: (id) => id === ids[1],
      onRefuse: (id, dir) => refused.push(`${dir} ${id}`),
    });
    expect(await g.denyInboundEncryptedConnection?.(peer(0), {} as never)).toBe(false);
    expect(await g.denyOutboundEncryptedConnection?.(peer(1), {} as never)).toBe(false);
    expect(await g.denyInboundEncryptedConnection?.(peer(2), {} as never)).toBe(true);
    expect(await g.denyOutboundEncryptedConnection?.(peer(2), {} as never)).toBe(true);
    expect(await g.denyDialPeer?.(peer(3))).toBe(true);
    expect(refused).toEqual([`inbound ${ids[2]}`, `outbound ${ids[2]}`, `dial ${ids[3]}`]);
  });

  it('fails closed: an answer that cannot be had refuses', async () => {
    const g = meshGater({
      isEnrolled: async () => {
        throw new Error('head unreachable');
      },
    });
    expect(await g.denyInboundEncryptedConnection?.(peer(1), {} as never)).toBe(true);
  });
});

describe('EnrollmentCache', () => {
  it('asks once per tick for everything asked, keeps yes for ttl and no for less, and never keeps a failure', async () => {
    let now = 0;
    const queries: string[][] = [];
    let fail = false;
    let enrolled = new Set([ids[0], ids[1]]);
    const cache = new EnrollmentCache({
      ttlMs: 60_000,
      negativeTtlMs: 5_000,
      now: () => now,
      query: async (q) => {
        queries.push(q);
        if (fail) throw new Error('head unreachable');
        return q.filter((id) => enrolled.has(id));
      },
    });
    expect(await Promise.all([0, 1, 2, 0].map((i) => cache.isEnrolled(ids[i])))).toEqual([
      true,
      true,
      false,
      true,
    ]);
    expect(queries).toEqual([[ids[0], ids[1], ids[2]]]);

    enrolled = new Set([ids[2]]); // the head's records change; the cache holds its answers for their ttl
    now = 4_000;
    expect([await cache.isEnrolled(ids[0]), await cache.isEnrolled(ids[2])]).toEqual([true, false]);
    expect(queries.length).toBe(1);
    now = 6_000; // the "no" is stale, the "yes" is not
    expect([await cache.isEnrolled(ids[0]), await cache.isEnrolled(ids[2])]).toEqual([true, true]);
    now = 61_000;
    expect(await cache.isEnrolled(ids[0])).toBe(false); // a removal reaches the node within ttl
    fail = true;
    now = 200_000;
    await expect(cache.isEnrolled(ids[2])).rejects.toThrow('head unreachable');
    fail = false;
    expect(await cache.isEnrolled(ids[2])).toBe(true);
  });

  it(`splits more than ${MAX_QUERY_IDS} questions into queries of at most that many`, async () => {
    const sizes: number[] = [];
    const cache = new EnrollmentCache({
      ttlMs: 1000,
      query: async (q) => {
        sizes.push(q.length);
        return [];
      },
    });
    const many = Array.from({ length: 150 }, (_, i) => `${ids[0]}-${i}`);
    await Promise.all(many.map((id) => cache.isEnrolled(id)));
    expect(sizes).toEqual([64, 64, 22]);
  });
});

describe('enrollment records and routes on the head', () => {
  const TOKEN = 'a'.repeat(64);
  let t: ReturnType<typeof tempDir>;
  let registry: Registry;
  let enrollments: Enrollments;
  let app: ReturnType<typeof buildHttpApi>;
  const removedEvents: string[][] = [];

  beforeAll(async () => {
    t = tempDir('rsw-enroll-');
    registry = await Registry.open(t.dir);
    enrollments = await Enrollments.open(registry);
    enrollments.onRemove((r) => removedEvents.push(r));
    app = buildHttpApi({
      registry,
      store: {} as never,
      swarm: new SwarmState({ chunkCount: () => 1 }),
      seederStats: () => ({ bytesServed: 0 }),
      bootstrap: () => ({ peerId: ids[5], addrs: [] }),
      trusted: [],
      adminToken: TOKEN,
      metrics: createMetrics({
        peersByImage: () => new Map(),
        seeder: () => ({ bytesServed: 0, requests: 0, notFound: 0, busy: 0 }),
        imageVersions: async () => 0,
        announces: () => 0,
      }),
      maxManifestBytes: 64 * 1024,
      routes: [
        enrollmentRoutes({
          enrollments,
          closed: true,
          peerStats: (id) => ({ streamsHandled: id === ids[0] ? 7 : 0, refused: id === ids[3] ? 2 : 0 }),
        }),
      ],
    });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
    await registry.close();
    t.cleanup();
  });

  const call = (method: 'GET' | 'POST', url: string, body?: object, token = TOKEN) =>
    app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { payload: JSON.stringify(body) } : {}),
    });

  it('adds in bulk, idempotently, lists, shows one peer with what the head saw of it', async () => {
    const r = await call('POST', '/api/enrollments', { peerIds: [ids[0], ids[1], ids[0]], note: 'rack r1' });
    expect([r.statusCode, r.json()]).toEqual([201, { added: [ids[0], ids[1]], count: 2 }]);
    const again = await call('POST', '/api/enrollments', { peerIds: [ids[1]] });
    expect([again.statusCode, again.json()]).toEqual([200, { added: [], count: 2 }]);
    const list = (await call('GET', '/api/enrollments')).json();
    expect(list).toMatchObject({ closed: true, count: 2 });
    expect(list.enrollments.map((e: { peerId: string }) => e.peerId).sort()).toEqual([ids[0], ids[1]].sort());
    expect(list.enrollments[0]).toMatchObject({ note: 'rack r1' });
    expect((await call('GET', `/api/enrollments/${ids[0]}`)).json()).toMatchObject({
      peerId: ids[0],
      enrolled: true,
      streamsHandled: 7,
      refused: 0,
    });
    expect((await call('GET', `/api/enrollments/${ids[3]}`)).json()).toMatchObject({
      enrolled: false,
      refused: 2,
    });
  });

  it('refuses malformed ids (nothing half-applied) and anyone without the admin token, even to read', async () => {
    const bad = await call('POST', '/api/enrollments', { peerIds: [ids[2], 'node7'] });
    expect([bad.statusCode, bad.json().code]).toEqual([400, 'RSW_ERR_INVALID_PEER_ID']);
    expect(enrollments.has(ids[2])).toBe(false);
    for (const url of ['/api/enrollments', `/api/enrollments/${ids[0]}`]) {
      const r = await call('GET', url, undefined, 'b'.repeat(64));
      expect([r.statusCode, r.json().code]).toEqual([401, 'RSW_ERR_UNAUTHORIZED']);
    }
  });

  it('removes, tells the listeners (the head hangs up), and survives a restart', async () => {
    const r = await call('POST', '/api/enrollments/remove', { peerIds: [ids[1], ids[4]] });
    expect(r.json()).toEqual({ removed: [ids[1]], count: 1 });
    expect(removedEvents).toEqual([[ids[1]]]);
    const reopened = await Enrollments.open(registry);
    expect(reopened.list().map((e) => e.peerId)).toEqual([ids[0]]);
  });
});
