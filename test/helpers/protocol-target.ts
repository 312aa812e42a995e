import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { ChunkStore } from '../../core/store.ts';
import { HaveExchange } from '../../peer/have-exchange.ts';
import { ChunkServer, type ChunkServerInit } from '../../seeder/chunk-server.ts';
import { Registry } from '../../tracker/registry.ts';
import { SwarmState } from '../../tracker/swarm-state.ts';
import { TrackerService } from '../../tracker/tracker-service.ts';

export interface ProtocolTarget {
  node: Libp2p;
  server: ChunkServer;
  exchange: HaveExchange;
  tracker: TrackerService;
  registry: Registry;
}

/**
 * One real libp2p node (127.0.0.1, identity under `dir`) running all three peer-facing protocols — a seeder's chunk
 * server over a store holding `chunks`, a peer's have exchange for `imageId` (claiming every chunk) and the head's
 * tracker — for the abuse and flood tests. Each stop is pushed onto `stops` (run them in reverse).
 */
export async function startProtocolTarget(o: {
  dir: string;
  chunks: Buffer[];
  imageId: string;
  limits: ChunkServerInit;
  stops: Array<() => unknown>;
}): Promise<ProtocolTarget> {
  const store = await ChunkStore.open({ dataDir: join(o.dir, 'data') });
  for (const c of o.chunks) await store.put(hashHex(c), c);
  const registry = await Registry.open(join(o.dir, 'head'));
  o.stops.push(() => registry.close());
  const node = await createP2PNode({ keyFile: join(o.dir, 'target.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  o.stops.push(() => node.stop());
  const server = new ChunkServer({ store }, o.limits);
  await server.start(node);
  o.stops.push(() => server.stop());
  const exchange = new HaveExchange(node, {
    imageId: o.imageId,
    chunkCount: o.chunks.length,
    has: () => true,
    onHave: () => {},
  });
  await exchange.start();
  o.stops.push(() => exchange.stop());
  const tracker = new TrackerService(
    { swarm: new SwarmState(), registry },
    {
      handoutSize: 30,
      announceIntervalSeconds: 7,
      maxManifestBytes: 1 << 20,
      readTimeoutMs: 2000,
      maxInboundStreams: 4,
    },
  );
  await tracker.start(node);
  o.stops.push(() => tracker.stop());
  return { node, server, exchange, tracker, registry };
}
