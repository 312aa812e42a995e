import { join } from 'node:path';
import type { Libp2p, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import { createP2PNode } from '../../cli/p2p-node.ts';
import type { Manifest } from '../../core/manifest.ts';
import { CHUNK_PROTOCOL, ChunkRequestDecoder, encodeChunkResponseHeader } from '../../core/wire.ts';
import { HaveExchange } from '../../peer/have-exchange.ts';
import { announce } from '../../peer/tracker-client.ts';
import { ChunkServer, type ChunkServerStats } from '../../seeder/chunk-server.ts';

export interface EvilPeerInit {
  /** Holds the evil peer's libp2p identity. */
  dir: string;
  /** The head's libp2p address (with /p2p/…): its tracker. */
  tracker: string;
  imageId: string;
  manifest: Manifest;
  /** How often to re-announce to the tracker. @default 2000 */
  announceEveryMs?: number;
  /**
   * How it lies on the chunk protocol. corrupt: answers every request `ok` with the right number of wrong bytes (the
   * real ChunkServer over a lying store). silent: accepts every chunk stream, reads the request and never answers.
   * slow: answers `ok` with the chunk's length, then sends its true bytes at `slowBytesPerSecond`.
   * honest: the real ChunkServer over the true bytes of `image` (for faults outside the chunk protocol).
   * @default "corrupt"
   */
  behaviour?: 'corrupt' | 'silent' | 'slow' | 'honest';
  /** Have-exchange streams opened to us that are aborted at once, the first ones (a flaky neighbour). @default 0 */
  abortExchanges?: number;
  /** @default 1 */
  slowBytesPerSecond?: number;
  /** The image's bytes, for the slow and honest behaviours' true bodies (without it: zeros). */
  image?: Buffer;
}

export interface ChunkStreamRecord {
  /** Date.now() when the stream came in. */
  at: number;
}

export interface EvilPeer {
  peerId: string;
  /** Every chunk stream each peer opened to us, in arrival order: the fetcher opens one per batch it asks for. */
  streams: Map<string, ChunkStreamRecord[]>;
  /** Peers that opened a have exchange with us (or accepted ours). */
  neighbours(): string[];
  /** Have-exchange streams aborted so far (abortExchanges). */
  exchangesAborted(): number;
  /** Chunks the server read from its store (corrupt: each sent as garbage of the right length; honest: true). */
  chunksFaked(): number;
  /** Chunk body bytes put on the wire by the silent or slow behaviour. */
  bytesDribbled(): number;
  stats(): ChunkServerStats;
  stop(): Promise<void>;
}

/**
 * An in-process peer that lies: it announces itself to the tracker as a complete seeder of `imageId`, tells every
 * have-exchange neighbour it holds every chunk, and answers every chunk request `ok` with the right number of wrong
 * bytes. Honest fetchers must catch each body with BLAKE3 and, after `banAfter` bad chunks, stop asking it.
 */
export async function startEvilPeer(init: EvilPeerInit): Promise<EvilPeer> {
  const byHash = new Map(init.manifest.chunks.map((c) => [c.hash, c]));
  let faked = 0;
  const store = {
    has: async (hash: string) => byHash.has(hash),
    get: async (hash: string) => {
      faked++;
      const c = byHash.get(hash);
      if (init.behaviour === 'honest' && init.image && c)
        return Buffer.from(init.image.subarray(c.offset, c.offset + c.length));
      // Right length, wrong bytes: only the hash check can tell.
      return Buffer.alloc(c?.length ?? 0, 0x5a);
    },
  };
  const node = await createP2PNode({ keyFile: join(init.dir, 'evil.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  const streams = new Map<string, ChunkStreamRecord[]>();
  // The server's own per-peer stats forget a peer once it disconnects; this log keeps every stream.
  const counting: Pick<
    Libp2p,
    'handle' | 'unhandle' | 'addEventListener' | 'removeEventListener' | 'getConnections'
  > = {
    handle: (protocol: string | string[], handler: StreamHandler, options?: StreamHandlerOptions) =>
      node.handle(
        protocol,
        (stream, connection) => {
          const id = connection.remotePeer.toString();
          const list = streams.get(id) ?? [];
          list.push({ at: Date.now() });
          streams.set(id, list);
          return handler(stream, connection);
        },
        options,
      ),
    unhandle: (protocol, options) => node.unhandle(protocol, options),
    addEventListener: node.addEventListener.bind(node),
    removeEventListener: node.removeEventListener.bind(node),
    getConnections: (peerId) => node.getConnections(peerId),
  };
  const server = new ChunkServer(
    { store },
    {
      // Generous limits: a `busy` answer would be a failure that is not a corrupt chunk, blurring the ban count.
      maxStreamsPerPeer: 8,
      maxConcurrentTotal: 256,
      perPeerBytesPerSecond: 0,
      totalBytesPerSecond: 0,
      readTimeoutMs: 10_000,
    },
  );
  let exchangesAborted = 0;
  const flaky: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'> = {
    peerId: node.peerId,
    handle: (protocol, handler, options) =>
      node.handle(
        protocol,
        (stream, connection) => {
          if (exchangesAborted < (init.abortExchanges ?? 0)) {
            exchangesAborted++;
            stream.abort(new Error('flaky neighbour'));
            return;
          }
          return handler(stream, connection);
        },
        options,
      ),
    unhandle: (protocol, options) => node.unhandle(protocol, options),
    dialProtocol: node.dialProtocol.bind(node),
  };
  const exchange = new HaveExchange(flaky, {
    imageId: init.imageId,
    chunkCount: init.manifest.chunks.length,
    has: () => true,
    onHave: () => {},
  });
  const held = new Set<Stream>();
  const dribblers = new Set<NodeJS.Timeout>();
  let dribbled = 0;
  const behaviour = init.behaviour ?? 'corrupt';
  if (behaviour === 'corrupt' || behaviour === 'honest') {
    await server.start(counting);
  } else {
    // Never closes a stream itself: the fetcher has to give up on it.
    const everyMs = 1000 / (init.slowBytesPerSecond ?? 1);
    await counting.handle(
      CHUNK_PROTOCOL,
      (stream) => {
        held.add(stream);
        stream.addEventListener('close', () => held.delete(stream));
        const requests = new ChunkRequestDecoder();
        stream.addEventListener('message', (ev) => {
          if (behaviour === 'silent' || dribblers.size > 1024) return;
          let hashes: string[] = [];
          try {
            hashes = requests.push(ev.data).flat();
          } catch {
            stream.abort(new Error('bad request'));
            return;
          }
          const c = hashes.length > 0 ? byHash.get(hashes[0]) : undefined;
          if (!c) return;
          stream.send(encodeChunkResponseHeader({ status: 'ok', length: c.length }));
          // The true bytes of the chunk, one at a time: the fetcher could verify them, if it waited days.
          const body = init.image?.subarray(c.offset, c.offset + c.length);
          let k = 0;
          const timer = setInterval(() => {
            if (stream.status !== 'open' || k >= c.length) {
              clearInterval(timer);
              dribblers.delete(timer);
              return;
            }
            stream.send(body ? body.subarray(k, k + 1) : Buffer.of(0));
            k++;
            dribbled++;
          }, everyMs);
          dribblers.add(timer);
        });
      },
      { maxInboundStreams: 256 },
    );
  }
  await exchange.start();

  const tracker = multiaddr(init.tracker);
  const body = () => ({
    imageId: init.imageId,
    addrs: node.getMultiaddrs().map((a) => a.toString()),
    progress: 1,
    bytesDone: init.manifest.size,
    downRate: 0,
    upRate: 0,
    bytesFromPeers: 0,
    bytesFromSeeder: 0,
    stage: 'seeding',
  });
  await announce(node, tracker, body());
  const timer = setInterval(() => {
    announce(node, tracker, body(), { timeoutMs: 5000 }).catch(() => {});
  }, init.announceEveryMs ?? 2000);

  return {
    peerId: node.peerId.toString(),
    streams,
    neighbours: () => exchange.neighbours(),
    exchangesAborted: () => exchangesAborted,
    chunksFaked: () => faked,
    bytesDribbled: () => dribbled,
    stats: () => server.stats(),
    stop: async () => {
      clearInterval(timer);
      for (const d of dribblers) clearInterval(d);
      for (const st of held) st.abort(new Error('evil peer stopping'));
      await exchange.stop().catch(() => {});
      await server.stop().catch(() => {});
      await node.stop();
    },
  };
}
