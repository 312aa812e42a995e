import { readFileSync } from 'node:fs';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';
import { RswError } from './errors.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * rackswarm's configuration: the only source of defaults and types. The CLI's flags, a config file (`--config`) and
 * later the kernel command line all produce a partial object that `loadConfig` completes and checks.
 */
export const ConfigSchema = Type.Object(
  {
    chunker: Type.Object(
      {
        /** @default 131072 (128 KiB) */
        minSize: Type.Integer({ minimum: 64, default: 128 * KiB }),
        /**
         * 512 KiB: half the update traffic of 1 MiB (21 % vs 40 % of v2's bytes with 1 % of files changed; 7 % vs
         * 16 % when the changes cluster) for ~20 % slower durable publish; 256 KiB gains little more (17 %) and
         * doubles the chunk count again. Sweep: "Chunker" in docs/BENCHMARKS.md.
         * @default 524288 (512 KiB)
         */
        avgSize: Type.Integer({ minimum: 128, default: 512 * KiB }),
        /** @default 2097152 (2 MiB) */
        maxSize: Type.Integer({ minimum: 256, maximum: 64 * MiB, default: 2 * MiB }),
      },
      { default: {}, additionalProperties: false },
    ),
    manifest: Type.Object(
      {
        /** Size cap checked before a manifest is parsed. @default 16777216 (16 MiB: ~460k chunks, ~225 GiB image) */
        maxBytes: Type.Integer({ minimum: 4 * KiB, maximum: 256 * MiB, default: 16 * MiB }),
      },
      { default: {}, additionalProperties: false },
    ),
    store: Type.Object(
      {
        /** Re-hash a chunk when it is read from disk. @default true */
        verifyOnRead: Type.Boolean({ default: true }),
        /**
         * Chunk writes in flight while publishing (each temp file + fsync + rename). 16 with 16 libuv threads
         * overlaps enough fsyncs to reach ~87 % of this disk's durable write rate (4: ~55 %; docs/BENCHMARKS.md).
         * @default 16
         */
        writeConcurrency: Type.Integer({ minimum: 1, maximum: 64, default: 16 }),
      },
      { default: {}, additionalProperties: false },
    ),
    head: Type.Object(
      {
        /** HTTP API and dashboard. @default "0.0.0.0:7480" */
        http: Type.String({ default: '0.0.0.0:7480', maxLength: 300 }),
        /** libp2p listen multiaddrs. @default ["/ip4/0.0.0.0/tcp/7481"] */
        listen: Type.Array(Type.String({ maxLength: 300 }), {
          default: ['/ip4/0.0.0.0/tcp/7481'],
          maxItems: 16,
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    seeder: Type.Object(
      {
        /**
         * Chunk streams served at once to one peer; more get `busy`. Clients pipeline on one stream, and more streams
         * on one connection are slower (340 vs 640 MB/s, LIBP2P-NOTES.md). @default 2
         */
        maxStreamsPerPeer: Type.Integer({ minimum: 1, maximum: 256, default: 2 }),
        /**
         * Chunk streams served at once in total: each holds ~5 MiB, and one process tops out near 450-640 MB/s, so
         * serving fewer peers fast (who then re-seed) beats many slowly. @default 32
         */
        maxConcurrentTotal: Type.Integer({ minimum: 1, maximum: 65536, default: 32 }),
        /** Upload rate to one peer in bytes/s; 0 = unlimited. @default 0 */
        perPeerBytesPerSecond: Type.Integer({ minimum: 0, default: 0 }),
        /** Upload rate to all peers together in bytes/s; 0 = unlimited (the head's egress budget). @default 0 */
        totalBytesPerSecond: Type.Integer({ minimum: 0, default: 0 }),
        /** A request must arrive, and a peer must take our bytes, within this many ms (frees stalled slots). @default 10000 */
        readTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
        /**
         * Super-seeding (the head only, seeder/super-seeding.ts): for this many ms after a chunk's first send, a repeat
         * is answered `busy`, so nodes take repeats from each other; 0 turns it off. Without it, the head sent
         * 1.5-2 × the image to 16 nodes (bench/swarm.ts). @default 10000
         */
        reserveAfterMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 10_000 }),
      },
      { default: {}, additionalProperties: false },
    ),
    tracker: Type.Object(
      {
        /** A peer silent this long is dropped from the swarm. @default 90000 */
        peerTtlMs: Type.Integer({ minimum: 1000, default: 90_000 }),
        /** Peers handed out per announce. @default 30 */
        handoutSize: Type.Integer({ minimum: 1, maximum: 200, default: 30 }),
        /** Seconds a peer should wait before announcing again. @default 10 */
        announceIntervalSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 10 }),
        /** Tracked (peer, image) pairs at most; the longest-silent are dropped first. @default 100000 */
        maxPeers: Type.Integer({ minimum: 10, default: 100_000 }),
        /** A tracker request must arrive within this many ms. @default 10000 */
        readTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
        /** Tracker streams open at once per connection (one request each). @default 4 */
        maxInboundStreams: Type.Integer({ minimum: 1, maximum: 1024, default: 4 }),
      },
      { default: {}, additionalProperties: false },
    ),
    p2p: Type.Object(
      {
        /** Connections kept before libp2p's manager prunes (each idle one costs ~60-200 KB). @default 1024 */
        maxConnections: Type.Integer({ minimum: 16, maximum: 100_000, default: 1024 }),
        /**
         * Inbound connections per second from one remote host: a LAN boot storm (or peers behind one NAT address, or a
         * test on 127.0.0.1) opens many at once; libp2p's default is 5. @default 1000
         */
        inboundConnectionThreshold: Type.Integer({ minimum: 1, default: 1000 }),
        /** Inbound connections still in the Noise/Yamux upgrade at once (libp2p's default is 10). @default 256 */
        maxIncomingPendingConnections: Type.Integer({ minimum: 1, default: 256 }),
        /**
         * Connection-monitor ping interval: 10 s cost a hub ~25 % of a core with 1,000 idle connections, 60 s under
         * 1 % (LIBP2P-NOTES.md). @default 60000
         */
        pingIntervalMs: Type.Integer({ minimum: 1000, default: 60_000 }),
      },
      { default: {}, additionalProperties: false },
    ),
    peer: Type.Object(
      {
        /** libp2p listen multiaddrs of a fetching node (it serves chunks onward). @default ["/ip4/0.0.0.0/tcp/0"] */
        listen: Type.Array(Type.String({ maxLength: 300 }), {
          default: ['/ip4/0.0.0.0/tcp/0'],
          maxItems: 16,
        }),
        /** Seconds a node keeps serving after its image is complete. @default 60 */
        lingerSeconds: Type.Integer({ minimum: 0, maximum: 86_400, default: 60 }),
        /** Chunk streams a fetching node serves at once: it is downloading too. @default 8 */
        maxServeStreams: Type.Integer({ minimum: 1, maximum: 1024, default: 8 }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;

/** Completes `partial` with the schema's defaults and checks it; a bad value is RSW_ERR_CONFIG_INVALID. */
export function loadConfig(partial: unknown = {}): Config {
  const value = Value.Default(ConfigSchema, Value.Clone(partial ?? {}));
  if (!Value.Check(ConfigSchema, value)) {
    const first = Value.Errors(ConfigSchema, value)[0];
    const where = first?.instancePath || '/';
    throw new RswError('RSW_ERR_CONFIG_INVALID', `${where}: ${first?.message ?? 'invalid'}`);
  }
  const c = value as Config;
  if (!(c.chunker.minSize < c.chunker.avgSize && c.chunker.avgSize < c.chunker.maxSize)) {
    throw new RswError('RSW_ERR_CONFIG_INVALID', '/chunker: needs minSize < avgSize < maxSize');
  }
  return c;
}

/** Reads a JSON config file and completes it (see loadConfig). */
export function readConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RswError(
      'RSW_ERR_CONFIG_INVALID',
      `cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RswError('RSW_ERR_CONFIG_INVALID', `config file ${path} is not valid JSON`);
  }
  return loadConfig(parsed);
}
