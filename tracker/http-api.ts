import type { KeyObject } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { type ErrorCode, isRswError, RswError } from '../core/errors.ts';
import { StreamHasher } from '../core/hash.ts';
import { MAX_CHUNK_BYTES, parseVersion, validateImageName } from '../core/manifest.ts';
import { envelopeSigner, openSignedManifest, type RevokedKeys } from '../core/signed-manifest.ts';
import type { ChunkStore } from '../core/store.ts';
import { isAuthorized } from './admin-token.ts';
import { registerBootRoutes } from './boot-routes.ts';
import { RequestRateLimiter, type RequestRateLimitInit } from './http-rate-limit.ts';
import { imageVersionParams } from './image-params.ts';
import type { Metrics } from './metrics.ts';
import type { ImageRecord, Registry } from './registry.ts';

/** The part of the swarm state the API shows (tracker/swarm-state.ts provides it). */
export interface SwarmView {
  images(): string[];
  summary(imageId: string): object;
  peers(imageId: string): object[];
  /** How many peers hold each chunk (tracker/availability.ts). */
  availability?(imageId: string): object | undefined;
}

/** The live dashboard's source (tracker/dashboard-feed.ts provides it). */
export interface DashboardSource {
  snapshot(): Promise<object>;
  /** Adds a live client; undefined when the head serves as many as it allows. */
  subscribe(send: (json: string) => void, end: () => void): (() => void) | undefined;
}

export interface HttpApiDeps {
  registry: Registry;
  store: ChunkStore;
  swarm: SwarmView;
  /** The seeder's totals for /api/swarm. */
  seederStats: () => object;
  /** The head's libp2p peer id and dialable multiaddrs. */
  bootstrap: () => { peerId: string; addrs: string[] };
  /** Publisher keys manifests must be signed with; empty: any key, pinned per image name by the registry. */
  trusted: KeyObject[];
  /** Revoked publisher keys (tracker/revocation-routes.ts): their manifests are neither registered nor served. */
  revoked?: RevokedKeys;
  adminToken: string;
  metrics: Metrics;
  maxManifestBytes: number;
  /** Kernel and initramfs for GET /boot/kernel and /boot/initramfs (tracker/boot-routes.ts). */
  bootDir?: string;
  /** Logger: false in tests; pino options or instance on the head. */
  logger?: boolean | object;
  /**
   * More routes, each concept in a file of its own (channels, gc, preheat); given `requireAdmin` for POSTs, to run
   * as their `onRequest` hook: the token is checked before a body is read or validated.
   */
  routes?: ((app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>) => void)[];
  /** GET / and GET /api/events; without it they answer 404. */
  dashboard?: DashboardSource;
  /** Per client IP; requests with the admin token are not counted. Without it, no limit. */
  rateLimit?: RequestRateLimitInit;
  /** Slow clients (slowloris): headers, and whole requests with their body, must arrive within these. */
  timeouts?: { headersMs: number; requestMs: number };
}

const DASHBOARD_DIR = fileURLToPath(new URL('./dashboard/', import.meta.url));
// uPlot ships prebuilt browser files; the head serves them itself (clusters are often air-gapped: no CDN).
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'));
const ASSETS: Record<string, { file: string; type: string }> = {
  'app.js': { file: join(DASHBOARD_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  'style.css': { file: join(DASHBOARD_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  'uPlot.iife.min.js': { file: join(UPLOT_DIR, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { file: join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};
/** A client that cannot keep up (this much unsent) misses snapshots until it drains; the next one supersedes them. */
const MAX_CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024;

const imageSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'integer' },
    id: { type: 'string' },
    format: { type: 'string' },
    size: { type: 'integer' },
    chunks: { type: 'integer' },
    publisher: { type: 'string' },
    publishedAt: { type: 'string' },
  },
} as const;
const errorSchema = {
  type: 'object',
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const;
const nameParams = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 200 } },
  required: ['name'],
} as const;
const hashParams = {
  type: 'object',
  properties: { hash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
  required: ['hash'],
} as const;

/**
 * The head's HTTP API (DESIGN.md "HTTP API"), built from its dependencies so tests can inject() requests without a
 * socket. Every error answers `{code, message}` with the code's status; state-changing routes need the admin token.
 */
export function buildHttpApi(deps: HttpApiDeps): FastifyInstance {
  const timeouts = deps.timeouts;
  const app = Fastify({
    logger: deps.logger ?? false,
    ...(timeouts
      ? {
          requestTimeout: timeouts.requestMs,
          // Node checks both timeouts every connectionsCheckingInterval (30 s by default): a tenth of the tighter one.
          http: {
            headersTimeout: Math.min(timeouts.headersMs, timeouts.requestMs),
            connectionsCheckingInterval: Math.max(100, Math.min(timeouts.headersMs, timeouts.requestMs) / 10),
          },
        }
      : {}),
    // One line per significant event, not per request (chunk uploads would flood the log).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // JSON bodies only where a route says so; raw bodies (chunks, manifests) are read as streams by the route.
    // A property a schema does not list is refused, not silently dropped (ajv's removeAdditional, fastify's default,
    // turned a mistyped `{"kep": 3}` into a gc with the default keep).
    ajv: { customOptions: { removeAdditional: false } },
    // A URL fastify cannot decode (`/api/images/%`) answers with our error shape too, not fastify's.
    frameworkErrors: (err, _req, reply) => {
      deps.metrics.errors.inc({ code: 'RSW_ERR_BAD_REQUEST' });
      (reply as FastifyReply).status(400).send({ code: 'RSW_ERR_BAD_REQUEST', message: err.message });
    },
  });
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err, _req, reply) => {
    const e = toRswError(err);
    deps.metrics.errors.inc({ code: e.code });
    if (e.code === 'RSW_ERR_INTERNAL') app.log.error({ err }, 'internal error');
    reply.status(e.status).send({ code: e.code, message: e.message });
  });
  app.setNotFoundHandler((req, reply) => {
    deps.metrics.errors.inc({ code: 'RSW_ERR_NOT_FOUND' });
    reply
      .status(404)
      .send({ code: 'RSW_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });

  const requireAdmin = async (req: FastifyRequest) => {
    if (!isAuthorized(req.headers.authorization, deps.adminToken)) {
      throw new RswError('RSW_ERR_UNAUTHORIZED', 'this route needs "Authorization: Bearer <admin token>"');
    }
  };

  if (deps.rateLimit && deps.rateLimit.requestsPerSecond > 0) {
    const limiter = new RequestRateLimiter(deps.rateLimit);
    // First of all hooks, before any body is read; the admin's own requests (a publish's uploads) are not counted.
    app.addHook('onRequest', async (req, reply) => {
      if (isAuthorized(req.headers.authorization, deps.adminToken)) return;
      if (limiter.take(req.ip)) return;
      reply.header('retry-after', String(Math.max(1, limiter.retryAfterSeconds(req.ip))));
      throw new RswError('RSW_ERR_RATE_LIMITED', `too many requests from ${req.ip}; retry later`);
    });
  }
  for (const add of deps.routes ?? []) add(app, requireAdmin);

  app.get(
    '/healthz',
    { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } } },
    async () => ({
      ok: true,
    }),
  );

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  app.get(
    '/api/images',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: {
              images: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    name: { type: 'string' },
                    latest: { type: 'integer' },
                    versions: { type: 'array', items: imageSchema },
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => ({ images: groupByName(await deps.registry.list()) }),
  );

  app.get<{ Params: { name: string } }>(
    '/api/images/:name',
    {
      schema: {
        params: nameParams,
        response: {
          200: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              latest: { type: 'integer' },
              versions: { type: 'array', items: imageSchema },
            },
          },
          404: errorSchema,
        },
      },
    },
    async (req) => {
      validateImageName(req.params.name);
      const versions = await deps.registry.versions(req.params.name);
      if (versions.length === 0)
        throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `no image named ${req.params.name}`);
      return { name: req.params.name, latest: versions[versions.length - 1].version, versions };
    },
  );

  app.get<{ Params: { name: string; version: string } }>(
    '/api/images/:name/:version/manifest',
    {
      schema: {
        params: imageVersionParams,
      },
    },
    async (req, reply) => {
      const record = await findVersion(deps.registry, req.params.name, req.params.version, deps.revoked);
      const envelope = await deps.registry.envelope(record.id);
      if (!envelope) throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `manifest ${record.id} is missing`);
      reply.header('content-type', 'application/octet-stream');
      reply.header('x-rackswarm-image-id', record.id);
      reply.header('x-rackswarm-version', String(record.version));
      return envelope;
    },
  );

  registerBootRoutes(app, {
    registry: deps.registry,
    store: deps.store,
    findVersion: (name, version) => findVersion(deps.registry, name, version, deps.revoked),
    maxManifestBytes: deps.maxManifestBytes,
    bootDir: deps.bootDir,
  });

  app.get('/api/swarm', async () => {
    const byId = new Map((await deps.registry.list()).map((r) => [r.id, r]));
    return {
      images: deps.swarm.images().map((imageId) => ({
        imageId,
        name: byId.get(imageId)?.name ?? null,
        version: byId.get(imageId)?.version ?? null,
        summary: deps.swarm.summary(imageId),
        availability: deps.swarm.availability?.(imageId) ?? null,
        peers: deps.swarm.peers(imageId),
      })),
      seeder: deps.seederStats(),
    };
  });

  const dashboard = deps.dashboard;
  if (dashboard) {
    app.get('/', async (_req, reply) => {
      reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-cache');
      return readFile(join(DASHBOARD_DIR, 'index.html'));
    });
    app.get('/favicon.ico', async (_req, reply) => reply.status(204).send());
    app.get<{ Params: { file: string } }>('/dashboard/:file', async (req, reply) => {
      const asset = Object.hasOwn(ASSETS, req.params.file) ? ASSETS[req.params.file] : undefined;
      if (!asset) throw new RswError('RSW_ERR_NOT_FOUND', `no dashboard file ${req.params.file}`);
      reply.header('content-type', asset.type).header('cache-control', 'no-cache');
      return readFile(asset.file);
    });
    // Server-Sent Events: one full snapshot per interval (tracker/dashboard-feed.ts), the first at once.
    app.get('/api/events', async (_req, reply) => {
      const res = reply.raw;
      const send = (json: string) => {
        if (res.writableLength <= MAX_CLIENT_BACKLOG_BYTES) res.write(`data: ${json}\n\n`);
      };
      const unsubscribe = dashboard.subscribe(send, () => res.end());
      if (!unsubscribe) {
        throw new RswError('RSW_ERR_TOO_MANY_CLIENTS', 'the head serves as many live streams as it allows');
      }
      res.on('close', unsubscribe);
      reply.hijack();
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write('retry: 3000\n\n');
      try {
        send(JSON.stringify(await dashboard.snapshot()));
      } catch (err) {
        // The response is ours now (hijacked): end it; the client's EventSource reconnects.
        app.log.error({ err }, 'dashboard snapshot failed');
        res.end();
      }
    });
  }

  app.get(
    '/api/bootstrap',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: { peerId: { type: 'string' }, addrs: { type: 'array', items: { type: 'string' } } },
          },
        },
      },
    },
    async () => deps.bootstrap(),
  );

  app.head<{ Params: { hash: string } }>(
    '/api/chunks/:hash',
    { schema: { params: hashParams } },
    async (req, reply) => {
      reply.status((await deps.store.has(req.params.hash)) ? 200 : 404).send();
    },
  );

  app.post<{ Body: { hashes: string[] } }>(
    '/api/chunks/missing',
    {
      onRequest: requireAdmin,
      schema: {
        body: {
          type: 'object',
          properties: {
            hashes: { type: 'array', maxItems: 4096, items: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
          },
          required: ['hashes'],
          additionalProperties: false,
        },
        response: {
          200: { type: 'object', properties: { missing: { type: 'array', items: { type: 'string' } } } },
        },
      },
    },
    async (req) => {
      const missing: string[] = [];
      for (const h of new Set(req.body.hashes)) if (!(await deps.store.has(h))) missing.push(h);
      return { missing };
    },
  );

  app.put<{ Params: { hash: string } }>(
    '/api/chunks/:hash',
    { onRequest: requireAdmin, schema: { params: hashParams } },
    async (req, reply) => {
      const stored = await receiveChunk(
        deps.store,
        req.params.hash,
        bodyStream(req),
        req.headers['content-length'],
      );
      deps.metrics.chunkUploads.inc({ result: stored ? 'stored' : 'present' });
      reply.status(stored ? 201 : 200);
      return { stored };
    },
  );

  app.post('/api/images', { onRequest: requireAdmin }, async (req, reply) => {
    const cap = deps.maxManifestBytes + 1024;
    const envelope = await readCapped(bodyStream(req), cap, req.headers['content-length']);
    const opened = openSignedManifest(
      envelope,
      deps.trusted.length ? deps.trusted : [envelopeSigner(envelope)],
      {
        maxBytes: deps.maxManifestBytes,
        revoked: deps.revoked,
      },
    );
    // Checked inside the registration step, so garbage collection (tracker/gc.ts) cannot remove a chunk in between.
    const { record, existed } = await deps.registry.register(opened, undefined, async () => {
      let missing = 0;
      for (const c of new Set(opened.manifest.chunks.map((c) => c.hash)))
        if (!(await deps.store.has(c))) missing++;
      if (missing > 0) {
        throw new RswError(
          'RSW_ERR_CHUNKS_MISSING',
          `${missing} chunks of ${opened.manifest.name} are not on the head; upload them first`,
        );
      }
    });
    if (!existed)
      app.log.info({ image: record.name, version: record.version, id: record.id }, 'image registered');
    reply.status(existed ? 200 : 201);
    return { ...record, existed };
  });

  return app;
}

function groupByName(records: ImageRecord[]) {
  const out = new Map<string, { name: string; latest: number; versions: ImageRecord[] }>();
  for (const r of records) {
    const g = out.get(r.name) ?? { name: r.name, latest: 0, versions: [] };
    g.versions.push(r);
    g.latest = Math.max(g.latest, r.version);
    out.set(r.name, g);
  }
  return [...out.values()];
}

async function findVersion(
  registry: Registry,
  name: string,
  version: string,
  revoked?: RevokedKeys,
): Promise<ImageRecord> {
  validateImageName(name);
  const record =
    version === 'latest' ? await registry.latest(name) : await registry.get(name, parseVersion(version));
  if (!record) throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `no image ${name} version ${version}`);
  if (revoked?.has(record.publisher)) {
    throw new RswError(
      'RSW_ERR_KEY_REVOKED',
      `${name} version ${record.version} is signed by ${record.publisher.slice(0, 16)}, which is revoked`,
    );
  }
  return record;
}

export function bodyStream(req: FastifyRequest): Readable {
  if (req.headers['content-type'] !== 'application/octet-stream') {
    throw new RswError('RSW_ERR_BAD_REQUEST', 'send the body as application/octet-stream');
  }
  return req.body as Readable;
}

function checkLength(contentLength: string | undefined, cap: number): void {
  if (contentLength !== undefined && Number(contentLength) > cap) {
    throw new RswError(
      'RSW_ERR_BODY_TOO_LARGE',
      `body of ${contentLength} bytes is over the ${cap}-byte limit`,
    );
  }
}

/** Reads a whole body into memory, refusing it as soon as it passes `cap`. */
export async function readCapped(
  body: Readable,
  cap: number,
  contentLength: string | undefined,
): Promise<Buffer> {
  checkLength(contentLength, cap);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const part of body as AsyncIterable<Buffer>) {
    n += part.length;
    if (n > cap) throw new RswError('RSW_ERR_BODY_TOO_LARGE', `body is over the ${cap}-byte limit`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/**
 * Streams an uploaded chunk to a temp file while hashing it; it enters the store only if the bytes hash to its
 * name. Resolves false when the store already had it.
 */
async function receiveChunk(
  store: ChunkStore,
  hash: string,
  body: Readable,
  contentLength: string | undefined,
): Promise<boolean> {
  checkLength(contentLength, MAX_CHUNK_BYTES);
  if (await store.has(hash)) {
    body.resume();
    return false;
  }
  const tmp = store.tempPath(hash);
  const hasher = new StreamHasher();
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      let n = 0;
      for await (const part of body as AsyncIterable<Buffer>) {
        n += part.length;
        if (n > MAX_CHUNK_BYTES)
          throw new RswError('RSW_ERR_BODY_TOO_LARGE', `chunk is over ${MAX_CHUNK_BYTES} bytes`);
        hasher.update(part);
        await fh.write(part);
      }
      if (n === 0) throw new RswError('RSW_ERR_BAD_REQUEST', 'empty chunk');
      const got = hasher.digest().toString('hex');
      if (got !== hash)
        throw new RswError(
          'RSW_ERR_CHUNK_MISMATCH',
          `uploaded bytes hash to ${got.slice(0, 16)}…, not ${hash.slice(0, 16)}…`,
        );
      await fh.sync();
    } finally {
      await fh.close();
    }
    await store.install(hash, tmp);
    await store.syncDirs([hash.slice(0, 2)]);
    return true;
  } catch (e) {
    await store.discard(hash, tmp);
    throw e;
  }
}

/** Maps fastify's own errors (validation, JSON, body limit) onto our codes. */
function toRswError(err: unknown): RswError {
  if (isRswError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string; validation?: unknown };
  const message = (e.message ?? 'error').split('\n')[0];
  if (e.validation) return new RswError('RSW_ERR_BAD_REQUEST', message);
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new RswError('RSW_ERR_BODY_TOO_LARGE', message);
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    const code: ErrorCode = e.statusCode === 413 ? 'RSW_ERR_BODY_TOO_LARGE' : 'RSW_ERR_BAD_REQUEST';
    return new RswError(code, message);
  }
  return new RswError('RSW_ERR_INTERNAL', message);
}
