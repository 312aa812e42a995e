import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import parsePrometheus from 'parse-prometheus-text-format';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import { generatePublisherKeys } from '../../core/keys.ts';
import { createSignedManifest } from '../../core/signed-manifest.ts';
import { ChunkStore } from '../../core/store.ts';
import { DashboardFeed } from '../../tracker/dashboard-feed.ts';
import { buildHttpApi } from '../../tracker/http-api.ts';
import { createMetrics } from '../../tracker/metrics.ts';
import { Registry } from '../../tracker/registry.ts';
import { SwarmState } from '../../tracker/swarm-state.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const TOKEN = 'a'.repeat(64);
const auth = { authorization: `Bearer ${TOKEN}` };

function keys() {
  const p = generatePublisherKeys();
  return { priv: createPrivateKey(p.privatePem), pub: createPublicKey(p.publicPem) };
}

let t: ReturnType<typeof tempDir>;
let registry: Registry;
let store: ChunkStore;
let app: FastifyInstance;
const publisher = keys();

/** A two-chunk image whose chunks are in `chunks` (not yet on the head). */
function image(name: string, version: number, seed: number, key = publisher.priv) {
  const chunks = [pseudoRandomBytes(3000, seed), pseudoRandomBytes(2000, seed + 1)];
  const signed = createSignedManifest(
    {
      name,
      version,
      format: 'file',
      size: 5000,
      chunks: [
        { offset: 0, length: 3000, hash: hashHex(chunks[0]) },
        { offset: 3000, length: 2000, hash: hashHex(chunks[1]) },
      ],
    },
    key,
  );
  return { chunks, signed };
}

async function build(trusted = [publisher.pub], live?: { swarm: SwarmState; dashboard: DashboardFeed }) {
  const metrics = createMetrics({
    peersByImage: () => new Map([['img1', 3]]),
    seeder: () => ({ bytesServed: 12345, requests: 7, notFound: 1, busy: 0 }),
    imageVersions: async () => (await registry.list()).length,
    announces: () => 42,
  });
  return buildHttpApi({
    registry,
    store,
    dashboard: live?.dashboard,
    swarm: live?.swarm ?? {
      images: () => ['img1'],
      summary: (id) => ({ imageId: id, peers: 3 }),
      peers: () => [{ peerId: 'p1', progress: 0.5 }],
    },
    seederStats: () => ({ bytesServed: 12345 }),
    bootstrap: () => ({ peerId: '12D3KooWtest', addrs: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWtest'] }),
    trusted,
    adminToken: TOKEN,
    metrics,
    maxManifestBytes: 64 * 1024,
  });
}

async function upload(chunk: Buffer, headers: Record<string, string> = auth) {
  return app.inject({
    method: 'PUT',
    url: `/api/chunks/${hashHex(chunk)}`,
    headers: { ...headers, 'content-type': 'application/octet-stream' },
    payload: chunk,
  });
}

async function publish(img: ReturnType<typeof image>) {
  for (const c of img.chunks) await upload(c);
  return app.inject({
    method: 'POST',
    url: '/api/images',
    headers: { ...auth, 'content-type': 'application/octet-stream' },
    payload: img.signed.envelope,
  });
}

beforeEach(async () => {
  t = tempDir('rsw-http-');
  registry = await Registry.open(t.dir);
  store = await ChunkStore.open({ dataDir: t.dir });
  app = await build();
});
afterEach(async () => {
  await app.close();
  await registry.close();
  t.cleanup();
});

describe('head HTTP API: reading', () => {
  it('GET /healthz answers 200', async () => {
    const r = await app.inject('/healthz');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ ok: true });
  });

  it('GET /metrics is Prometheus text a real parser reads, with our figures in it', async () => {
    await publish(image('compute', 1, 1));
    const r = await app.inject('/metrics');
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    const families = new Map(parsePrometheus(r.body).map((f) => [f.name, f]));
    expect(families.get('rsw_peers')?.metrics).toEqual([{ labels: { image: 'img1' }, value: '3' }]);
    expect(families.get('rsw_image_versions')?.metrics[0].value).toBe('1');
    expect(families.get('rsw_seeder_bytes_served_total')?.metrics[0].value).toBe('12345');
    expect(families.get('rsw_chunk_uploads_total')?.metrics).toContainEqual({
      labels: { result: 'stored' },
      value: '2',
    });
    expect(families.get('rsw_announces_total')?.metrics[0].value).toBe('42');
    expect(families.has('rsw_process_resident_memory_bytes')).toBe(true);
  });

  it('GET /api/images lists names with their versions', async () => {
    expect((await app.inject('/api/images')).json()).toEqual({ images: [] });
    const v1 = image('compute', 1, 1);
    await publish(v1);
    await publish(image('compute', 2, 3));
    const body = (await app.inject('/api/images')).json();
    expect(body.images).toHaveLength(1);
    expect(body.images[0]).toMatchObject({ name: 'compute', latest: 2 });
    expect(body.images[0].versions[0]).toMatchObject({ version: 1, id: v1.signed.id, size: 5000, chunks: 2 });
  });

  it('GET /api/images/:name answers one image, 404 with a code for an unknown one, 400 for a bad name', async () => {
    await publish(image('compute', 1, 1));
    expect((await app.inject('/api/images/compute')).json()).toMatchObject({ name: 'compute', latest: 1 });
    const missing = await app.inject('/api/images/nothere');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: 'RSW_ERR_IMAGE_NOT_FOUND' });
    const traversal = await app.inject('/api/images/..%2Fetc');
    expect(traversal.statusCode).toBe(400);
    expect(traversal.json()).toMatchObject({ code: 'RSW_ERR_INVALID_NAME' });
  });

  it('GET /api/images/:name/:version/manifest serves the signed bytes (also as "latest")', async () => {
    const v1 = image('compute', 1, 1);
    await publish(v1);
    for (const version of ['1', 'latest']) {
      const r = await app.inject(`/api/images/compute/${version}/manifest`);
      expect(r.statusCode).toBe(200);
      expect(r.headers['x-rackswarm-image-id']).toBe(v1.signed.id);
      expect(r.rawPayload.equals(v1.signed.envelope)).toBe(true);
    }
    expect((await app.inject('/api/images/compute/9/manifest')).json()).toMatchObject({
      code: 'RSW_ERR_IMAGE_NOT_FOUND',
    });
    expect((await app.inject('/api/images/compute/x1/manifest')).json()).toMatchObject({
      code: 'RSW_ERR_INVALID_VERSION',
    });
  });

  it('GET /api/swarm and /api/bootstrap show the tracker and the head', async () => {
    const v1 = image('compute', 1, 1);
    await publish(v1);
    const swarm = (await app.inject('/api/swarm')).json();
    expect(swarm).toMatchObject({
      images: [{ imageId: 'img1', peers: [{ peerId: 'p1' }] }],
      seeder: { bytesServed: 12345 },
    });
    expect((await app.inject('/api/bootstrap')).json()).toEqual({
      peerId: '12D3KooWtest',
      addrs: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWtest'],
    });
  });

  it('an unknown route answers 404 RSW_ERR_NOT_FOUND', async () => {
    const r = await app.inject('/api/nope');
    expect(r.statusCode).toBe(404);
    expect(r.json().code).toBe('RSW_ERR_NOT_FOUND');
  });
});

describe('head HTTP API: publishing', () => {
  it('refuses state changes without the admin token, or with a wrong one', async () => {
    const c = pseudoRandomBytes(100, 1);
    for (const headers of [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: `Basic ${TOKEN}` },
    ] as Record<string, string>[]) {
      const r = await upload(c, headers);
      expect(r.statusCode).toBe(401);
      expect(r.json().code).toBe('RSW_ERR_UNAUTHORIZED');
    }
    const m = await app.inject({
      method: 'POST',
      url: '/api/images',
      payload: Buffer.alloc(10),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(m.statusCode).toBe(401);
    expect(await store.has(hashHex(c))).toBe(false);
  });

  it('tells which chunks it lacks (HEAD and POST /api/chunks/missing)', async () => {
    const a = pseudoRandomBytes(100, 1);
    const b = pseudoRandomBytes(100, 2);
    await upload(a);
    expect((await app.inject({ method: 'HEAD', url: `/api/chunks/${hashHex(a)}` })).statusCode).toBe(200);
    expect((await app.inject({ method: 'HEAD', url: `/api/chunks/${hashHex(b)}` })).statusCode).toBe(404);
    const r = await app.inject({
      method: 'POST',
      url: '/api/chunks/missing',
      headers: auth,
      payload: { hashes: [hashHex(a), hashHex(b)] },
    });
    expect(r.json()).toEqual({ missing: [hashHex(b)] });
  });

  it('stores an uploaded chunk only if its bytes match its hash', async () => {
    const c = pseudoRandomBytes(10_000, 5);
    const liar = await app.inject({
      method: 'PUT',
      url: `/api/chunks/${hashHex(c)}`,
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      payload: pseudoRandomBytes(10_000, 6),
    });
    expect(liar.statusCode).toBe(400);
    expect(liar.json().code).toBe('RSW_ERR_CHUNK_MISMATCH');
    expect(await store.has(hashHex(c))).toBe(false);
    expect(readdirSync(join(t.dir, 'tmp'))).toEqual([]);
    expect((await upload(c)).statusCode).toBe(201);
    expect((await upload(c)).json()).toEqual({ stored: false });
    expect((await store.get(hashHex(c))).equals(c)).toBe(true);
  });

  it('registers a signed manifest once its chunks are there', async () => {
    const img = image('compute', 1, 1);
    const early = await app.inject({
      method: 'POST',
      url: '/api/images',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      payload: img.signed.envelope,
    });
    expect(early.statusCode).toBe(409);
    expect(early.json()).toMatchObject({
      code: 'RSW_ERR_CHUNKS_MISSING',
      message: expect.stringMatching(/^2 chunks/),
    });
    const ok = await publish(img);
    expect(ok.statusCode).toBe(201);
    expect(ok.json()).toMatchObject({ name: 'compute', version: 1, id: img.signed.id, existed: false });
    expect((await publish(img)).json()).toMatchObject({ existed: true });
  });

  it('refuses a manifest whose signature fails or whose signer is not trusted', async () => {
    const img = image('compute', 1, 1);
    for (const c of img.chunks) await upload(c);
    const tampered = Buffer.from(img.signed.envelope);
    tampered[tampered.length - 1] ^= 1;
    const post = (payload: Buffer) =>
      app.inject({
        method: 'POST',
        url: '/api/images',
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        payload,
      });
    expect((await post(tampered)).json()).toMatchObject({ code: 'RSW_ERR_SIGNATURE_INVALID' });
    const stranger = image('compute', 1, 1, keys().priv);
    expect((await post(stranger.signed.envelope)).json()).toMatchObject({ code: 'RSW_ERR_UNTRUSTED_KEY' });
    expect((await post(Buffer.from('garbage'))).json()).toMatchObject({ code: 'RSW_ERR_MANIFEST_INVALID' });
    expect(await registry.list()).toEqual([]);
  });

  it('without pinned keys, pins the first key per image name', async () => {
    await app.close();
    app = await build([]);
    expect((await publish(image('compute', 1, 1))).statusCode).toBe(201);
    const other = await publish(image('compute', 2, 3, keys().priv));
    expect(other.json()).toMatchObject({ code: 'RSW_ERR_KEY_MISMATCH' });
  });

  it('answers malformed JSON, oversized bodies and wrong content types with codes', async () => {
    const bad = await app.inject({
      method: 'POST',
      url: '/api/chunks/missing',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"hashes": [',
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('RSW_ERR_BAD_REQUEST');
    const big = await app.inject({
      method: 'POST',
      url: '/api/images',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(200 * 1024),
    });
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe('RSW_ERR_BODY_TOO_LARGE');
    const wrongType = await app.inject({
      method: 'PUT',
      url: `/api/chunks/${'a'.repeat(64)}`,
      headers: { ...auth, 'content-type': 'text/plain' },
      payload: 'x',
    });
    expect(wrongType.statusCode).toBe(400);
    const badHash = await app.inject({ method: 'HEAD', url: '/api/chunks/../../etc/passwd' });
    expect(badHash.statusCode).toBeGreaterThanOrEqual(400);
  });
});

describe('head HTTP API: dashboard', () => {
  async function live(maxClients = 4) {
    const swarm = new SwarmState({ chunkCount: () => 2 });
    const dashboard = new DashboardFeed(
      { swarm, images: () => registry.list(), bytesServed: () => 0 },
      { intervalMs: 1000, maxClients, headUplink: 1e9, nodeLink: 1e9 },
    );
    await app.close();
    app = await build([publisher.pub], { swarm, dashboard });
    return { swarm, dashboard };
  }

  it('GET / serves the page, its script and style, and uPlot from node_modules (no CDN)', async () => {
    await live();
    const page = await app.inject('/');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const assets = [...page.body.matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((m) => m[1]);
    expect(assets.sort()).toEqual([
      '/dashboard/app.js',
      '/dashboard/style.css',
      '/dashboard/uPlot.iife.min.js',
      '/dashboard/uPlot.min.css',
    ]);
    for (const a of assets) {
      const r = await app.inject(a);
      expect(r.statusCode, a).toBe(200);
      expect(r.body.length, a).toBeGreaterThan(100);
    }
    expect((await app.inject('/dashboard/uPlot.iife.min.js')).body).toContain('uPlot');
    for (const bad of ['/dashboard/index.html', '/dashboard/..%2fhttp-api.ts', '/dashboard/constructor']) {
      const r = await app.inject(bad);
      expect(r.statusCode, bad).toBe(404);
      expect(r.json().code).toBe('RSW_ERR_NOT_FOUND');
    }
  });

  it('GET /api/swarm carries chunk availability; the live stream refuses clients past the cap', async () => {
    const { swarm, dashboard } = await live(1);
    swarm.announce({
      peerId: 'p1',
      imageId: 'c'.repeat(64),
      addrs: [],
      progress: 0.5,
      bytesDone: 1,
      downRate: 0,
      upRate: 0,
      bytesFromPeers: 0,
      bytesFromSeeder: 1,
      stage: 'fetching',
      have: Buffer.from([0b01000000]).toString('base64'),
    });
    const s = (await app.inject('/api/swarm')).json();
    expect(s.images[0].availability).toMatchObject({ chunks: 2, holders: [0, 1], reporting: 1 });
    const unsubscribe = dashboard.subscribe(
      () => {},
      () => {},
    );
    const r = await app.inject('/api/events');
    expect(r.statusCode).toBe(503);
    expect(r.json().code).toBe('RSW_ERR_TOO_MANY_CLIENTS');
    unsubscribe?.();
  });
});
