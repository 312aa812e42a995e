import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS, type ErrorCode } from '../../core/errors.ts';
import { ImageKeyStore } from '../../core/image-key-store.ts';
import { generatePublisherKeys } from '../../core/keys.ts';
import { ChunkStore } from '../../core/store.ts';
import { channelRoutes } from '../../tracker/channel-routes.ts';
import { ChannelStore } from '../../tracker/channel-store.ts';
import { enrollmentRoutes } from '../../tracker/enrollment-routes.ts';
import { Enrollments } from '../../tracker/enrollments.ts';
import { gcRoutes } from '../../tracker/gc-routes.ts';
import { buildHttpApi } from '../../tracker/http-api.ts';
import { imageKeyRoutes } from '../../tracker/image-key-routes.ts';
import { createMetrics } from '../../tracker/metrics.ts';
import { PreheatJobs } from '../../tracker/preheat.ts';
import { preheatRoutes } from '../../tracker/preheat-routes.ts';
import { Registry } from '../../tracker/registry.ts';
import { RevocationBook, revocationRoutes } from '../../tracker/revocation-routes.ts';
import { SwarmState } from '../../tracker/swarm-state.ts';
import { tempDir } from '../helpers/cli.ts';
import { hexHash, nastyKey } from '../helpers/fuzz.ts';

// Property-based fuzzing (issue 9, item 13) of every HTTP body schema and route parameter of the head's API, with
// every route the head mounts (channels, preheat, gc, key revocations, image keys): whatever arrives, the answer is below 500, and every error is
// JSON {code, message} with a registered code and that code's status. Runs on fastify's inject(): no socket.

const TOKEN = 'f'.repeat(64);
let t: ReturnType<typeof tempDir>;
let registry: Registry;
let store: ChunkStore;
let app: FastifyInstance;

beforeAll(async () => {
  t = tempDir('rsw-fuzz-http-');
  registry = await Registry.open(t.dir);
  store = await ChunkStore.open({ dataDir: t.dir });
  const trusted = [createPublicKey(generatePublisherKeys().publicPem)];
  const swarm = new SwarmState({ chunkCount: () => 2 });
  const channels = new ChannelStore(registry, trusted);
  const preheat = new PreheatJobs({ peers: () => [] });
  const enrollments = await Enrollments.open(registry);
  app = buildHttpApi({
    registry,
    store,
    swarm,
    seederStats: () => ({ bytesServed: 0 }),
    bootstrap: () => ({ peerId: '12D3KooWtest', addrs: [] }),
    trusted,
    adminToken: TOKEN,
    metrics: createMetrics({
      peersByImage: () => new Map(),
      seeder: () => ({ bytesServed: 0, requests: 0, notFound: 0, busy: 0 }),
      imageVersions: async () => 0,
      announces: () => 0,
    }),
    maxManifestBytes: 64 * 1024,
    routes: [
      channelRoutes(channels),
      preheatRoutes(preheat, registry),
      gcRoutes({ registry, store, channels }, { keep: 2, graceSeconds: 0 }),
      revocationRoutes(new RevocationBook(join(t.dir, 'revocations.json'), async () => trusted)),
      imageKeyRoutes(new ImageKeyStore(t.dir)),
      enrollmentRoutes({ enrollments, closed: true, peerStats: () => ({ streamsHandled: 0, refused: 0 }) }),
    ],
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
  await registry.close();
  t.cleanup();
});

/** The admin routes that change state (issue 9 item 12); each reads a body. */
const ADMIN_ROUTES = [
  { method: 'PUT', url: `/api/chunks/${'0'.repeat(64)}` },
  { method: 'POST', url: '/api/images' },
  { method: 'POST', url: '/api/channels' },
  { method: 'POST', url: '/api/chunks/missing' },
  { method: 'POST', url: '/api/preheat' },
  { method: 'POST', url: '/api/gc' },
  { method: 'POST', url: '/api/keys/revocations' },
  { method: 'PUT', url: '/api/image-keys' },
  { method: 'POST', url: '/api/enrollments' },
  { method: 'POST', url: '/api/enrollments/remove' },
] as const;

const segment = fc.oneof(
  fc.string({ maxLength: 80 }).map(encodeURIComponent),
  fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/),
  hexHash,
  nastyKey.map(encodeURIComponent),
  fc.constantFrom('..', '%', '%2F', '%00', 'latest', '0', '-1', '1e3', '9007199254740993'),
);
const routeArb = fc.oneof(
  fc.constantFrom(...ADMIN_ROUTES).map((r) => ({ ...r, url: r.url as string })),
  fc
    .tuple(fc.constantFrom('PUT', 'HEAD'), segment)
    .map(([method, h]) => ({ method, url: `/api/chunks/${h}` })),
  segment.map((n) => ({ method: 'GET', url: `/api/images/${n}` })),
  fc.tuple(segment, segment).map(([n, v]) => ({ method: 'GET', url: `/api/images/${n}/${v}/manifest` })),
  fc.tuple(segment, segment).map(([n, c]) => ({ method: 'GET', url: `/api/channels/${n}/${c}` })),
  segment.map((id) => ({ method: 'GET', url: `/api/preheat/${id}` })),
  segment.map((id) => ({ method: 'GET', url: `/api/enrollments/${id}` })),
);
const json = fc.jsonValue({ maxDepth: 3 });
const bodyArb = fc.oneof(
  json.map((v) => JSON.stringify(v)),
  fc
    .record({
      hashes: fc.oneof(fc.array(fc.oneof(hexHash, fc.string())), json),
      name: fc.oneof(fc.stringMatching(/^[a-z]{1,8}$/), fc.string(), json),
      version: fc.oneof(fc.constant('latest'), fc.integer(), fc.double(), json),
      nodes: fc.oneof(fc.string(), json),
      keep: fc.oneof(fc.integer(), fc.double(), json),
      graceSeconds: fc.oneof(fc.integer(), json),
      peerIds: fc.oneof(
        fc.array(fc.oneof(fc.constant('12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'), fc.string())),
        json,
      ),
      note: fc.oneof(fc.string(), json),
    })
    .chain((all) =>
      fc
        .subarray(Object.keys(all))
        .map((keys) => JSON.stringify(Object.fromEntries(keys.map((k) => [k, all[k as keyof typeof all]])))),
    ),
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
  fc.constant(''),
);
const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/octet-stream',
  'text/plain',
  'multipart/form-data; boundary=x',
  'application/x-www-form-urlencoded',
  '',
  'garbage',
  undefined,
);

/** The answer is below 500; an error carries a registered code and that code's HTTP status. */
function expectTypedAnswer(r: { statusCode: number; body: string; headers: Record<string, unknown> }): void {
  expect(r.statusCode, r.body).toBeLessThan(500);
  if (r.statusCode < 400) return;
  if (r.body === '') return; // HEAD answers carry no body
  const body = JSON.parse(r.body) as { code: ErrorCode; message: string };
  expect(Object.hasOwn(ERRORS, body.code), `unregistered code in ${r.body}`).toBe(true);
  expect(typeof body.message).toBe('string');
  expect(ERRORS[body.code].status).toBe(r.statusCode);
}

describe('fuzz: the head HTTP API', () => {
  it('any route, content type and body answers < 500, errors as {code, message} with the code’s status', async () => {
    await fc.assert(
      fc.asyncProperty(routeArb, contentType, bodyArb, async (route, type, payload) => {
        const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
        if (type !== undefined) headers['content-type'] = type;
        const r = await app.inject({
          method: route.method as 'GET',
          url: route.url,
          headers,
          ...(route.method === 'GET' || route.method === 'HEAD' ? {} : { payload }),
        });
        expectTypedAnswer(r);
      }),
      { numRuns: 400 },
    );
  });

  it('JSON bodies that fail a route’s schema are RSW_ERR_BAD_REQUEST, never handled', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          '/api/chunks/missing',
          '/api/preheat',
          '/api/gc',
          '/api/enrollments',
          '/api/enrollments/remove',
        ),
        fc.dictionary(fc.oneof(fc.string(), nastyKey), json, { minKeys: 1, maxKeys: 4 }),
        async (url, body) => {
          const r = await app.inject({
            method: 'POST',
            url,
            headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
            payload: JSON.stringify(body),
          });
          expectTypedAnswer(r);
          // Every one of these schemas forbids unknown properties: an object with any other key cannot be accepted.
          const known = ['hashes', 'name', 'version', 'nodes', 'keep', 'graceSeconds', 'peerIds', 'note'];
          if (Object.keys(body).some((k) => !known.includes(k))) expect(r.statusCode).toBe(400);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('regressions found by fuzzing the head HTTP API', () => {
  it('an undecodable URL answers 400 RSW_ERR_BAD_REQUEST in our error shape (was fastify’s FST_ERR_BAD_URL)', async () => {
    const r = await app.inject({ method: 'GET', url: '/api/images/%' });
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'RSW_ERR_BAD_REQUEST' });
  });

  it('a property no schema lists is refused, not dropped (a mistyped gc keep ran gc with the default)', async () => {
    const r = await app.inject({
      method: 'POST',
      url: '/api/gc',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      payload: '{"kep": 3}',
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().code).toBe('RSW_ERR_BAD_REQUEST');
  });

  it('the admin token is checked before a body is parsed or validated', async () => {
    const r = await app.inject({
      method: 'POST',
      url: '/api/chunks/missing',
      headers: { 'content-type': 'application/json' },
      payload: '{"hashes": [',
    });
    expect([r.statusCode, r.json().code]).toEqual([401, 'RSW_ERR_UNAUTHORIZED']);
  });
});

describe('admin token (issue 9 item 12)', () => {
  const wrongAuth = fc.oneof(
    fc.constant(undefined),
    fc.string({ maxLength: 100 }),
    fc.string({ maxLength: 100 }).map((s) => `Bearer ${s}`),
    fc.nat({ max: 63 }).map((n) => `Bearer ${TOKEN.slice(0, n)}`),
    fc.nat({ max: 63 }).map((n) => `Bearer ${TOKEN.slice(0, n)}e${TOKEN.slice(n + 1)}`),
    fc.string({ minLength: 1, maxLength: 8 }).map((s) => `Bearer ${TOKEN}${s}`),
    fc.constantFrom(
      `bearer ${TOKEN}`,
      `Basic ${TOKEN}`,
      `Bearer  ${TOKEN}`,
      TOKEN,
      `Bearer ${TOKEN.toUpperCase()}`,
    ),
  );

  it('every state-changing route answers 401 RSW_ERR_UNAUTHORIZED to a missing or wrong token, whatever the body', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ADMIN_ROUTES),
        wrongAuth,
        contentType,
        bodyArb,
        async (route, auth, type, payload) => {
          const headers: Record<string, string> = {};
          if (auth !== undefined) headers.authorization = auth;
          if (type !== undefined) headers['content-type'] = type;
          const r = await app.inject({ method: route.method, url: route.url, headers, payload });
          // The token is checked first (onRequest): no body is parsed or validated for an unauthenticated client.
          expect([r.statusCode, r.json().code]).toEqual([401, 'RSW_ERR_UNAUTHORIZED']);
        },
      ),
      { numRuns: 300 },
    );
    expect(await store.has('0'.repeat(64))).toBe(false);
    expect(await registry.list()).toEqual([]);
  });

  it('each route answers 401 with no token and with a wrong one, and lets the right one through', async () => {
    for (const route of ADMIN_ROUTES) {
      const json =
        route.url.startsWith('/api/chunks/missing') ||
        route.url.startsWith('/api/preheat') ||
        route.url.startsWith('/api/gc') ||
        route.url.startsWith('/api/enrollments');
      const type = json ? 'application/json' : 'application/octet-stream';
      const payload = route.url === '/api/chunks/missing' ? '{"hashes":[]}' : json ? '{}' : Buffer.from('x');
      for (const auth of [undefined, `Bearer ${'e'.repeat(64)}`, 'Bearer x']) {
        const headers: Record<string, string> = { 'content-type': type };
        if (auth) headers.authorization = auth;
        const r = await app.inject({ method: route.method, url: route.url, headers, payload });
        expect([route.url, r.statusCode, r.json().code]).toEqual([route.url, 401, 'RSW_ERR_UNAUTHORIZED']);
      }
      const ok = await app.inject({
        method: route.method,
        url: route.url,
        headers: { 'content-type': type, authorization: `Bearer ${TOKEN}` },
        payload,
      });
      expect(ok.statusCode, `${route.url}: ${ok.body}`).not.toBe(401);
    }
  });
});
