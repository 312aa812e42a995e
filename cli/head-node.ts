import { join, resolve } from 'node:path';
import { peerIdFromString } from '@libp2p/peer-id';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../core/config.ts';
import { RswError } from '../core/errors.ts';
import { ImageKeyStore } from '../core/image-key-store.ts';
import { loadTrust, publicKeyFromRaw } from '../core/keys.ts';
import { ChunkStore } from '../core/store.ts';
import { ChunkServer } from '../seeder/chunk-server.ts';
import { configuredHeadServing } from '../seeder/head-serving.ts';
import { RackSpread } from '../seeder/rack-spread.ts';
import { SuperSeeding } from '../seeder/super-seeding.ts';
import { loadOrCreateAdminToken } from '../tracker/admin-token.ts';
import { channelRoutes } from '../tracker/channel-routes.ts';
import { ChannelStore } from '../tracker/channel-store.ts';
import { DashboardFeed } from '../tracker/dashboard-feed.ts';
import { enrollmentRoutes } from '../tracker/enrollment-routes.ts';
import { EnrollmentService } from '../tracker/enrollment-service.ts';
import { Enrollments } from '../tracker/enrollments.ts';
import { gcRoutes } from '../tracker/gc-routes.ts';
import { buildHttpApi } from '../tracker/http-api.ts';
import { ImageIndex } from '../tracker/image-index.ts';
import { imageKeyRoutes } from '../tracker/image-key-routes.ts';
import { createMetrics } from '../tracker/metrics.ts';
import { PreheatJobs } from '../tracker/preheat.ts';
import { preheatRoutes } from '../tracker/preheat-routes.ts';
import { Registry } from '../tracker/registry.ts';
import { RevocationBook, revocationRoutes } from '../tracker/revocation-routes.ts';
import { SwarmState } from '../tracker/swarm-state.ts';
import { TrackerService } from '../tracker/tracker-service.ts';
import { startBulkServer } from './bulk-plane.ts';
import { headGater, Refusals } from './mesh.ts';
import { createP2PNode, stopP2PNode, streamsHandled } from './p2p-node.ts';

export interface HeadOptions {
  data: string;
  http?: string;
  listen?: string[];
  trust?: string[];
}

/** host:port → {host, port}; IPv6 as [::1]:7480. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new RswError('RSW_ERR_USAGE', `--http ${JSON.stringify(text)} is not HOST:PORT`);
  return { host: m[1] ?? m[2], port };
}

export interface RunningHead {
  http: string;
  swarm: SwarmState;
  log: FastifyBaseLogger;
  stop(): Promise<void>;
}

/** Starts every part of the head (what `rackswarm head` runs; benchmarks start it in-process too). */
export async function startHead(
  opts: HeadOptions,
  config: Config,
  logger: boolean | object = process.stdout.isTTY ? { transport: { target: 'pino-pretty' } } : true,
): Promise<RunningHead> {
  const dataDir = resolve(opts.data);
  const { host, port } = parseHostPort(opts.http ?? config.head.http);
  const trusted = await loadTrust(opts.trust ?? []);

  const store = await ChunkStore.open({ dataDir, verifyOnRead: config.store.verifyOnRead });
  const registry = await Registry.open(dataDir);
  // Revocations are verified against the --trust keys, or without them against every key an image is published under.
  const revocationBook = new RevocationBook(join(dataDir, 'revocations.json'), async () =>
    trusted.length
      ? trusted
      : [...new Set((await registry.list()).map((r) => r.publisher))].map((k) =>
          publicKeyFromRaw(Buffer.from(k, 'hex')),
        ),
  );
  await revocationBook.load();
  const revoked = revocationBook.revocations;
  const imageKeys = new ImageKeyStore(dataDir);
  let keyLog: FastifyBaseLogger | undefined; // the HTTP API's logger, once it exists
  registry.revoked = revoked;
  const token = await loadOrCreateAdminToken(dataDir);
  const images = new ImageIndex(registry);
  await images.list();
  const swarm = new SwarmState({
    ttlMs: config.tracker.peerTtlMs,
    maxPeers: config.tracker.maxPeers,
    chunkCount: (id) => images.chunkCount(id),
  });
  // Closed mesh (docs/SECURITY.md): only enrolled peer ids get past the handshake; refusals are logged once the
  // HTTP side (and its logger) exists.
  const enrollments = await Enrollments.open(registry);
  let meshLog: FastifyBaseLogger | undefined;
  const refusals = new Refusals((peer, direction) =>
    meshLog?.warn({ peer, direction }, 'mesh: refused a peer that is not enrolled'),
  );
  const closed = config.mesh.closed;
  const node = await createP2PNode({
    keyFile: join(dataDir, 'peer.key'),
    listen: opts.listen ?? config.head.listen,
    limits: config.p2p,
    connectionGater: closed ? headGater((id) => enrollments.has(id), refusals) : undefined,
  });
  enrollments.onRemove((ids) => {
    for (const id of ids) {
      swarm.leave(id);
      if (closed) void node.hangUp(peerIdFromString(id)).catch(() => {});
    }
  });
  const enrollmentService = new EnrollmentService({
    isEnrolled: (id) => enrollments.has(id),
    readTimeoutMs: config.tracker.readTimeoutMs,
    maxInboundStreams: config.tracker.maxInboundStreams,
  });
  await enrollmentService.start(node);
  const { reserveAfterMs } = config.seeder;
  const superSeeding = reserveAfterMs > 0 ? new SuperSeeding({ reserveAfterMs }) : undefined;
  const headServing = configuredHeadServing<() => void>(config.seeder);
  // The head's streams spread over the racks (seeder/rack-spread.ts): an asker's rack is the one its announces gave
  // the tracker (any image's record; a node without --rack is in none and is served first come, first served).
  const { rackSpreadWindowMs, maxConcurrentTotal: slots } = config.seeder;
  const rackSpread =
    rackSpreadWindowMs > 0
      ? new RackSpread({
          slots,
          windowMs: rackSpreadWindowMs,
          rackOf: (peerId) => {
            for (const image of swarm.images()) {
              const rack = swarm.peer(peerId, image)?.rack;
              if (rack !== undefined) return rack;
            }
            return undefined;
          },
        })
      : undefined;
  const seeder = new ChunkServer({ store, superSeeding, headServing, rackSpread }, config.seeder);
  await seeder.start(node);
  const bulk = await startBulkServer(seeder, node, config, opts.listen ?? config.head.listen);

  let announces = 0;
  const preheat = new PreheatJobs({ peers: () => swarm.images().flatMap((id) => swarm.peers(id)) });
  const tracker = new TrackerService(
    {
      swarm,
      registry,
      onAnnounce: () => announces++,
      onDepart: (peerId) => superSeeding?.left(peerId),
      onAnnounceExtra: (peerId, body) => {
        // a node still fetching is about to ask the head (its rack's share of the head's streams)
        if (body.stage === 'announced' || body.stage === 'fetching')
          rackSpread?.asking(peerId, performance.now());
        return preheat.onAnnounce(peerId, body);
      },
      revoked,
      imageKey: async (keyId, peerId) => {
        // Only an enrolled node can reach the tracker on a closed mesh (the gater): that is the authentication.
        if (!config.mesh.closed && !config.mesh.releaseImageKeysWhenOpen) {
          throw new RswError(
            'RSW_ERR_MESH_OPEN',
            'this head releases image keys only on a closed mesh (mesh.closed); the mesh is open',
          );
        }
        const key = await imageKeys.get(keyId);
        if (!key) throw new RswError('RSW_ERR_IMAGE_KEY_UNAVAILABLE', `the head holds no image key ${keyId}`);
        keyLog?.info({ keyId, peerId }, 'image key released');
        return key;
      },
    },
    {
      handoutSize: config.tracker.handoutSize,
      announceIntervalSeconds: config.tracker.announceIntervalSeconds,
      maxManifestBytes: config.manifest.maxBytes,
      readTimeoutMs: config.tracker.readTimeoutMs,
      maxInboundStreams: config.tracker.maxInboundStreams,
    },
  );
  await tracker.start(node);

  const metrics = createMetrics({
    peersByImage: () => new Map(swarm.images().map((id) => [id, swarm.peers(id).length])),
    seeder: () => seeder.stats(),
    imageVersions: async () => (await registry.list()).length,
    announces: () => announces,
  });
  const bootstrap = () => ({
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().map((a) => a.toString()),
  });
  const channels = new ChannelStore(registry, trusted);
  const seederCap = config.seeder.totalBytesPerSecond || Number.POSITIVE_INFINITY;
  const dashboard = new DashboardFeed(
    { swarm, images: () => images.list(), bytesServed: () => seeder.stats().bytesServed },
    {
      intervalMs: config.tracker.dashboardIntervalMs,
      maxClients: config.tracker.maxEventClients,
      headUplink: Math.min(config.tracker.headUplinkBytesPerSecond, seederCap),
      nodeLink: config.tracker.nodeLinkBytesPerSecond,
    },
  );
  const app = buildHttpApi({
    registry,
    store,
    swarm,
    seederStats: () => seeder.stats(),
    bootstrap,
    trusted,
    revoked,
    adminToken: token.token,
    metrics,
    maxManifestBytes: config.manifest.maxBytes,
    bootDir: join(dataDir, 'boot'),
    logger,
    routes: [
      enrollmentRoutes({
        enrollments,
        closed,
        peerStats: (id) => ({ streamsHandled: streamsHandled(node, id), refused: refusals.count(id) }),
      }),
      channelRoutes(channels),
      revocationRoutes(revocationBook),
      imageKeyRoutes(imageKeys),
      preheatRoutes(preheat, registry),
      gcRoutes(
        { registry, store, channels, inUse: () => [...swarm.images(), ...preheat.inUse()] },
        { keep: config.head.keepVersions, graceSeconds: config.head.gcGraceSeconds },
      ),
    ],
    dashboard,
    rateLimit: config.head.httpRateLimit,
    timeouts: { headersMs: config.head.httpHeadersTimeoutMs, requestMs: config.head.httpRequestTimeoutMs },
  });
  keyLog = app.log;
  meshLog = app.log;
  dashboard.start();
  const expiry = setInterval(() => swarm.expire(), 5_000);
  expiry.unref();

  await app.listen({ host, port }).catch((e: NodeJS.ErrnoException) => {
    dashboard.stop();
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      throw new RswError(
        'RSW_ERR_USAGE',
        `cannot listen on ${host}:${port}: ${e.code} (another head running? choose --http)`,
      );
    }
    throw e;
  });
  const address = app.server.address();
  const httpUrl =
    typeof address === 'object' && address ? `http://${fmtHost(host, address.address)}:${address.port}` : '';
  app.log.info(
    {
      http: httpUrl,
      dashboard: `${httpUrl}/`,
      p2p: bootstrap().addrs,
      peerId: bootstrap().peerId,
      data: dataDir,
      adminToken: token.path,
      trusted: trusted.length,
      mesh: closed
        ? `closed (${enrollments.size} enrolled)`
        : 'open (mesh.closed is false: any peer id may connect)',
    },
    token.created ? `head ready; admin token written to ${token.path}` : 'head ready',
  );
  return {
    http: httpUrl,
    swarm,
    log: app.log,
    stop: async () => {
      clearInterval(expiry);
      dashboard.stop();
      await app.close();
      await tracker.stop();
      await enrollmentService.stop();
      await bulk?.stop();
      await seeder.stop();
      await stopP2PNode(node);
      await registry.close();
    },
  };
}

function fmtHost(requested: string, bound: string): string {
  const h = requested === '0.0.0.0' || requested === '::' ? bound : requested;
  return h.includes(':') ? `[${h}]` : h;
}
