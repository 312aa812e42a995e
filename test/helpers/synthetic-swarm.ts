import { ChunkStore } from '../../core/store.ts';
import { encodeAnnounceHave } from '../../core/tracker-messages.ts';
import { DashboardFeed } from '../../tracker/dashboard-feed.ts';
import { buildHttpApi } from '../../tracker/http-api.ts';
import { createMetrics } from '../../tracker/metrics.ts';
import type { ImageRecord } from '../../tracker/registry.ts';
import { Registry } from '../../tracker/registry.ts';
import type { Announce, PeerStage, SwarmState } from '../../tracker/swarm-state.ts';
import { prng } from '../fixtures/tree.ts';

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** An image record for synthetic swarms: `chunks` chunks of 512 KiB. */
export function syntheticImage(id: string, chunks: number): ImageRecord {
  return {
    name: 'compute',
    version: 7,
    id,
    format: 'raw',
    size: chunks * 512 * 1024,
    chunks,
    publisher: 'ee'.repeat(32),
    publishedAt: '2026-11-22T00:00:00.000Z',
  };
}

/**
 * `n` announces of a wave in progress, in racks of 40, like real ones (Ed25519-style peer ids, one address):
 * a third of the nodes done, every 97th failed, the others fetching with a bitfield of what they hold
 * (none when `withHave` is false).
 */
export function syntheticAnnounces(
  n: number,
  o: { image: ImageRecord; seed: number; withHave?: boolean; stage?: (i: number) => PeerStage },
): Announce[] {
  const next = prng(o.seed);
  const rand = () => next() / 2 ** 32;
  const size = o.image.size;
  return Array.from({ length: n }, (_, i) => {
    let peerId = '12D3KooW';
    while (peerId.length < 52) peerId += B58[next() % 58];
    const stage: PeerStage = o.stage?.(i) ?? (i % 97 === 5 ? 'failed' : i % 3 === 0 ? 'done' : 'fetching');
    const progress = stage === 'done' ? 1 : rand();
    return {
      peerId,
      imageId: o.image.id,
      addrs: [`/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/4001/p2p/${peerId}`],
      rack: `rack-${String(Math.floor(i / 40)).padStart(3, '0')}`,
      host: `node${String(i).padStart(5, '0')}`,
      progress,
      bytesDone: Math.floor(progress * size),
      downRate: stage === 'fetching' ? 1.2e8 * rand() : 0,
      upRate: 1.1e8 * rand(),
      bytesFromPeers: Math.floor(progress * 0.9 * size),
      bytesFromSeeder: Math.floor(progress * 0.1 * size),
      stage,
      error: stage === 'failed' ? 'RSW_ERR_DISK_FULL: no space left on /dev/sda' : undefined,
      have:
        o.withHave !== false && stage === 'fetching'
          ? encodeAnnounceHave(o.image.chunks, (c) => ((c * 2654435761) >>> 0) / 2 ** 32 < progress)
          : undefined,
    };
  });
}

/**
 * The head's real HTTP API and dashboard feed in this process over `swarm` (filled by the caller), listening on
 * 127.0.0.1 with an OS-chosen port; the registry under `dir` stays empty, `images` stand in for it. `now` is the
 * swarm's clock, if it has its own.
 */
export async function startSyntheticHead(
  dir: string,
  swarm: SwarmState,
  images: ImageRecord[],
  now: () => number = Date.now,
): Promise<{ url: string; feed: DashboardFeed; stop(): Promise<void> }> {
  const registry = await Registry.open(dir);
  const store = await ChunkStore.open({ dataDir: dir });
  const feed = new DashboardFeed(
    { swarm, images: async () => images, bytesServed: () => 0, now },
    { intervalMs: 1000, maxClients: 8, headUplink: 1.25e9, nodeLink: 1.25e9 },
  );
  const app = buildHttpApi({
    registry,
    store,
    swarm,
    seederStats: () => ({ bytesServed: 0 }),
    bootstrap: () => ({ peerId: '12D3KooWsynthetic', addrs: [] }),
    trusted: [],
    adminToken: 'x'.repeat(64),
    metrics: createMetrics({
      peersByImage: () => new Map(),
      seeder: () => ({ bytesServed: 0, requests: 0, notFound: 0, busy: 0 }),
      imageVersions: async () => images.length,
      announces: () => 0,
    }),
    maxManifestBytes: 1024 * 1024,
    dashboard: feed,
  });
  feed.start();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    feed,
    stop: async () => {
      feed.stop();
      await app.close();
      await registry.close();
    },
  };
}
