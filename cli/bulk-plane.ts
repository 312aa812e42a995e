import type { Config } from '../core/config.ts';
import { BulkServer, bulkListenHost } from '../seeder/bulk-server.ts';
import type { ChunkServer } from '../seeder/chunk-server.ts';

/** With `p2p.dataPlane` "bulk-tcp", the bulk TCP port beside a chunk server (its limits apply to both). */
export async function startBulkServer(
  chunkServer: ChunkServer,
  node: Parameters<BulkServer['start']>[0],
  config: Config,
  listen: readonly string[],
): Promise<BulkServer | undefined> {
  if (config.p2p.dataPlane !== 'bulk-tcp') return undefined;
  const bulk = new BulkServer(
    { chunkServer },
    {
      host: bulkListenHost(listen),
      port: config.p2p.bulkPort,
      readTimeoutMs: config.seeder.readTimeoutMs,
      maxTokensPerPeer: 2 * config.seeder.maxStreamsPerPeer + 2,
    },
  );
  await bulk.start(node);
  return bulk;
}
