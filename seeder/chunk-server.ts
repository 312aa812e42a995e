import type { Connection, Libp2p, PeerId, Stream, StreamMessageEvent } from '@libp2p/interface';
import { pEvent } from 'p-event';
import { BufferPool } from '../core/buffer-pool.ts';
import { isRswError } from '../core/errors.ts';
import type { ChunkStore } from '../core/store.ts';
import { Wakeup } from '../core/wakeup.ts';
import {
  CHUNK_PROTOCOL,
  ChunkRequestDecoder,
  encodeChunkResponse,
  encodeChunkResponseHeader,
  MAX_REQUEST_FRAME_BYTES,
  ProtocolError,
} from '../core/wire.ts';
import type { HeadServing } from './head-serving.ts';
import type { RackSpread } from './rack-spread.ts';
import { TokenBucket } from './rate-limit.ts';
import type { ServeTurnover } from './serve-turnover.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Body slice per send() when unthrottled: 1 MiB slices beat 64 KiB ones by ~25 % (LIBP2P-NOTES.md). */
const MAX_SEND_SLICE = 1 * MiB;
/** Smallest slice under a rate limit, so pacing stays smooth without a send() per few bytes. */
const MIN_SEND_SLICE = 16 * KiB;
/**
 * Request frames (bulk batch ends included) a client may queue ahead of the one being served: our client pipelines
 * two frames of a batch, and on a bulk connection queues one single-frame batch behind the one in progress
 * (peer/bulk-client.ts BulkPool.joinable) — at most 2 frames, a batch end, a frame and a batch end.
 */
export const MAX_QUEUED_FRAMES = 8;

/** Whether to send a chunk now (and count it as sent): seeder/super-seeding.ts, seeder/rack-reserve.ts. */
export interface ServingPolicy {
  take(chunk: string, now: number, peerId: string): boolean;
}

export interface ChunkServerComponents {
  /** With `read` (a ChunkStore), a transport that says so gets chunks read into pooled buffers instead of fresh ones. */
  store: Pick<ChunkStore, 'get' | 'has'> & Partial<Pick<ChunkStore, 'read'>>;
  /** Monotonic clock (ms) for the rate limiters. @default performance.now */
  now?: () => number;
  /**
   * The serving policy (the head's super-seeding, a node's rack reserve: seeder/rack-reserve.ts): a chunk it refuses
   * is answered `busy`. @default none (serve every request)
   */
  superSeeding?: ServingPolicy;
  /** The head's send order (one chunk after another): streams take turns. @default none (all send at once) */
  headServing?: Pick<HeadServing<() => void>, 'admits' | 'ask' | 'done'>;
  /**
   * A node's serving turnover (seeder/serve-turnover.ts): a peer served for long in a row yields its slot while
   * others are refused. @default none (a peer keeps its slot from batch to batch)
   */
  turnover?: Pick<ServeTurnover, 'admits' | 'refused' | 'started' | 'ended'>;
  /**
   * The head's turns spread over the racks (seeder/rack-spread.ts): a batch from a rack ahead of the others asking
   * is answered `busy`. @default none (first come, first served)
   */
  rackSpread?: Pick<RackSpread, 'admits' | 'started' | 'ended'>;
}

/** Limits of the chunk server. No defaults here: the config schema owns them. */
export interface ChunkServerInit {
  /**
   * Batches served at once for one peer (a batch: a libp2p chunk stream, or one batch on a persistent bulk
   * connection); a batch over this is answered `busy` for every chunk it asks for.
   */
  maxStreamsPerPeer: number;
  /** Batches served at once for all peers together; over this, `busy`. */
  maxConcurrentTotal: number;
  /** Upload rate to one peer, bytes/s; 0 = unlimited. */
  perPeerBytesPerSecond: number;
  /** Upload rate to all peers together, bytes/s; 0 = unlimited. */
  totalBytesPerSecond: number;
  /**
   * A request frame must arrive in full within this many ms of the server waiting for it, and a client must take
   * sent bytes (yamux window updates) within this many ms of the server waiting for room; else the stream is reset.
   */
  readTimeoutMs: number;
}

export interface ChunkServerStats {
  /** Chunk body bytes sent (headers not counted). */
  bytesServed: number;
  /** Chunks asked for, whatever the answer. */
  requests: number;
  notFound: number;
  busy: number;
  /** Batches answered `busy` throughout because they were over the limits when they came (not admitted). */
  refusedBatches: number;
  /** Streams reset for a protocol violation, a timeout or a transport failure, plus `error` answers. */
  errors: number;
  activeStreams: number;
  /** Peers with an open connection or a stream in progress. */
  perPeer: Array<{ peerId: string; bytesServed: number; requests: number }>;
}

/**
 * One request/response conversation with a peer, whatever carries it: a libp2p stream (/rackswarm/chunk/1.0.0) or
 * an authenticated bulk TCP connection (seeder/bulk-server.ts). The serving rules (limits, super-seeding, rates,
 * stats) are the same for both.
 */
export interface ServeTransport {
  /**
   * The next request frame; `[]` for a batch end (bulk version 2: core/bulk-wire.ts); null once the client has
   * half-closed after whole frames, or (`betweenBatches`) a persistent connection stayed idle too long; throws on a
   * violation. `betweenBatches`: no batch is open, so the wait may be a persistent connection's idle time.
   */
  next(betweenBatches?: boolean): Promise<string[] | null>;
  /**
   * Hands `data` over (several pieces: in this order, as one write where the transport can); resolves once more may
   * be sent (backpressure), rejects when the peer is gone or stalls.
   */
  send(data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /** Largest body piece per send() without a rate limit. */
  readonly maxSlice: number;
  /** send() resolves only once nothing reads `data` any more, so its buffer may be reused at once. */
  readonly sendReleases?: boolean;
  /** Ends the conversation once everything sent is out. */
  close(): Promise<void>;
  /** Ends it at once (protocol violation, timeout, shutdown). */
  abort(err: Error): void;
  /** Removes listeners; called once the conversation is over. */
  dispose(): void;
}

interface PeerState {
  peerId: string;
  active: number;
  bytesServed: number;
  requests: number;
  bucket: TokenBucket;
  disconnected: boolean;
}

type ChunkNode = Pick<
  Libp2p,
  'handle' | 'unhandle' | 'addEventListener' | 'removeEventListener' | 'getConnections'
>;

/**
 * Serves chunks from the store over /rackswarm/chunk/1.0.0 (wire format: core/wire.ts). Every chunk is read through
 * the store, which hashes it (once per process and file identity: ChunkStore.read): one that fails verification is
 * answered `not-found`, never sent. Each admitted stream is served in order, reading the next chunk from disk while
 * the previous one is being sent.
 */
export class ChunkServer {
  readonly #store: ChunkServerComponents['store'];
  /** Bodies for transports whose send() is done with them when it resolves (bulk sockets); see core/buffer-pool.ts. */
  readonly #pool = new BufferPool();
  readonly #now: () => number;
  readonly #superSeeding: ServingPolicy | undefined;
  readonly #headServing: ChunkServerComponents['headServing'];
  readonly #turnover: ChunkServerComponents['turnover'];
  readonly #rackSpread: ChunkServerComponents['rackSpread'];
  readonly #init: ChunkServerInit;
  readonly #peers = new Map<string, PeerState>();
  readonly #streams = new Set<ServeTransport>();
  readonly #total: TokenBucket;
  #node: ChunkNode | undefined;
  #active = 0;
  #bytesServed = 0;
  #requests = 0;
  #notFound = 0;
  #busy = 0;
  #refusedBatches = 0;
  #errors = 0;

  constructor(components: ChunkServerComponents, init: ChunkServerInit) {
    for (const [k, v] of Object.entries(init)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`ChunkServerInit.${k} must be a number ≥ 0`);
    }
    if (init.maxStreamsPerPeer < 1 || init.maxConcurrentTotal < 1 || init.readTimeoutMs <= 0) {
      throw new RangeError(
        'ChunkServerInit needs maxStreamsPerPeer, maxConcurrentTotal ≥ 1 and readTimeoutMs > 0',
      );
    }
    this.#store = components.store;
    this.#now = components.now ?? (() => performance.now());
    this.#superSeeding = components.superSeeding;
    this.#headServing = components.headServing;
    this.#turnover = components.turnover;
    this.#rackSpread = components.rackSpread;
    this.#init = { ...init };
    this.#total = newBucket(init.totalBytesPerSecond, this.#now());
  }

  async start(node: ChunkNode): Promise<void> {
    if (this.#node) return;
    this.#node = node;
    node.addEventListener('peer:disconnect', this.#onPeerDisconnect);
    await node.handle(CHUNK_PROTOCOL, this.#onStream, {
      // Streams past maxStreamsPerPeer get a quick `busy`; libp2p resets those past twice that per connection.
      maxInboundStreams: Math.max(2 * this.#init.maxStreamsPerPeer, this.#init.maxStreamsPerPeer + 2),
    });
  }

  async stop(): Promise<void> {
    const node = this.#node;
    if (!node) return;
    this.#node = undefined;
    node.removeEventListener('peer:disconnect', this.#onPeerDisconnect);
    await node.unhandle(CHUNK_PROTOCOL);
    for (const t of this.#streams) t.abort(new Error('chunk server stopped'));
  }

  stats(): ChunkServerStats {
    return {
      bytesServed: this.#bytesServed,
      requests: this.#requests,
      notFound: this.#notFound,
      busy: this.#busy,
      refusedBatches: this.#refusedBatches,
      errors: this.#errors,
      activeStreams: this.#active,
      perPeer: [...this.#peers.values()].map((p) => ({
        peerId: p.peerId,
        bytesServed: p.bytesServed,
        requests: p.requests,
      })),
    };
  }

  #onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = this.#peers.get(evt.detail.toString());
    if (!peer) return;
    peer.disconnected = true;
    if (peer.active === 0) this.#peers.delete(peer.peerId);
  };

  #peer(peerId: string): PeerState {
    let peer = this.#peers.get(peerId);
    if (!peer) {
      peer = {
        peerId,
        active: 0,
        bytesServed: 0,
        requests: 0,
        bucket: newBucket(this.#init.perPeerBytesPerSecond, this.#now()),
        disconnected: false,
      };
      this.#peers.set(peerId, peer);
    }
    peer.disconnected = false;
    return peer;
  }

  #onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    // Listeners go on before the first await, or early bytes pile up against the read-buffer limit.
    await this.serve(connection.remotePeer, new StreamTransport(stream, this.#init.readTimeoutMs));
  };

  /**
   * Serves one conversation with `remote` to its end: a libp2p stream is one batch of request frames; a persistent
   * bulk connection (core/bulk-wire.ts) carries batches one after another, each ended by a batch end. Each batch is
   * admitted on its first frame under the per-peer and total limits (and the head's send order), and holds its slot
   * until its end: a batch past them has every chunk it asks for answered `busy`. Between batches a conversation holds
   * no slot. Never rejects; a violation or failure aborts the transport.
   */
  async serve(remote: PeerId, t: ServeTransport): Promise<void> {
    const peer = this.#peer(remote.toString());
    let holding = false;
    /** The rack the batch held counts in (seeder/rack-spread.ts). */
    let spreadRack: string | undefined;
    this.#streams.add(t);
    try {
      if (!this.#node) throw new Error('chunk server stopped');
      for (let frame = await t.next(true); frame; frame = await t.next(true)) {
        if (frame.length === 0) continue; // a batch of no frames
        // (asked first: an ask the server is too full for still marks its rack as asking)
        const spread = this.#rackSpread?.admits(peer.peerId, this.#now()) ?? true;
        const admitted =
          spread &&
          peer.active < this.#init.maxStreamsPerPeer &&
          this.#active < this.#init.maxConcurrentTotal &&
          (this.#headServing?.admits() ?? true) &&
          (this.#turnover?.admits(peer.peerId, this.#now()) ?? true);
        if (admitted) {
          peer.active++;
          this.#active++;
          holding = true;
          this.#turnover?.started(peer.peerId, this.#now());
          spreadRack = this.#rackSpread?.started(peer.peerId, this.#now());
        } else {
          this.#refusedBatches++;
          this.#turnover?.refused(this.#now());
        }
        // a super-seeding refusal ends what the batch gets (#serveFrame)
        const refusals = { any: false };
        for (; frame && frame.length > 0; frame = await t.next()) {
          peer.requests += frame.length;
          this.#requests += frame.length;
          if (admitted) await this.#serveFrame(t, peer, frame, refusals);
          else {
            this.#busy += frame.length;
            await t.send(Buffer.concat(frame.map(() => BUSY)));
          }
        }
        if (holding) {
          holding = false;
          peer.active--;
          this.#active--;
          this.#turnover?.ended(peer.peerId, this.#now());
          this.#rackSpread?.ended(spreadRack);
        }
        if (!frame) break; // the client half-closed after a version 1 batch or a libp2p stream's
      }
      await t.close();
    } catch (e) {
      this.#errors++;
      t.abort(e instanceof Error ? e : new Error(String(e)));
    } finally {
      t.dispose();
      this.#streams.delete(t);
      if (holding) {
        peer.active--;
        this.#active--;
        this.#rackSpread?.ended(spreadRack);
      }
      if (peer.active === 0 && peer.disconnected && !this.#isConnected(remote)) {
        this.#peers.delete(peer.peerId);
      }
    }
  }

  #isConnected(peerId: PeerId): boolean {
    return (this.#node?.getConnections(peerId).length ?? 0) > 0;
  }

  async #serveFrame(
    t: ServeTransport,
    peer: PeerState,
    hashes: string[],
    refusals: { any: boolean },
  ): Promise<void> {
    // Super-seeding decides each chunk as its send is about to start, not the frame up front: its reserve counts
    // from a chunk's first send, and a chunk queued behind others of the batch (a slow or starved connection: on the
    // testbed's persistent bulk connections, up to 10 s for the later chunks of a 4-chunk batch) would otherwise
    // spend its reserve waiting — every other asker refused meanwhile, then all of them served at once when it ran
    // out (head egress 1.17 x at N = 16). A client takes the first `busy` as the end of a batch's answers
    // (peer/chunk-client.ts), so after a refusal, in this frame or a later one of the batch, everything is `busy`.
    const policy = this.#superSeeding;
    const take = (hash: string): boolean => {
      if (refusals.any) return false;
      if (!policy || policy.take(hash, this.#now(), peer.peerId)) return true;
      refusals.any = true;
      return false;
    };
    // One chunk read ahead: the disk read and verify of the next overlaps the send of this one.
    const pooled = t.sendReleases === true;
    const release = (reading: Promise<{ data?: Buffer }> | undefined): void => {
      if (pooled) void reading?.then((r) => this.#pool.release(r.data));
    };
    let next = refusals.any ? undefined : this.#read(hashes[0], pooled);
    for (let i = 0; i < hashes.length; i++) {
      const reading = next;
      next = undefined;
      if (!reading || !take(hashes[i])) {
        release(reading);
        this.#busy++;
        await t.send(BUSY);
        continue;
      }
      const result = await reading;
      next = i + 1 < hashes.length && !refusals.any ? this.#read(hashes[i + 1], pooled) : undefined;
      if (result.data) {
        const data = result.data;
        await this.#inTurn(() => this.#sendChunk(t, peer, data));
        if (pooled) this.#pool.release(data);
      } else if (result.error !== undefined) {
        this.#errors++;
        await t.send(encodeChunkResponse('error', result.error));
      } else {
        this.#notFound++;
        await t.send(NOT_FOUND);
      }
    }
  }

  /** seeder/head-serving.ts: with a send order, a chunk goes out when its stream's turn comes. */
  async #inTurn(send: () => Promise<void>): Promise<void> {
    const turns = this.#headServing;
    if (!turns) return send();
    const { promise, resolve } = Promise.withResolvers<void>();
    if (turns.ask(resolve)) resolve();
    await promise;
    try {
      await send();
    } finally {
      for (const go of turns.done()) go();
    }
  }

  /**
   * Never rejects: a missing or corrupt chunk is `{}`, any other failure `{ error }`. `pooled`: into a pooled buffer
   * (readFile allocating a fresh buffer per chunk cost the head ~0.7-2 s of GC per GiB served: bench/fetch.ts).
   */
  async #read(hash: string, pooled = false): Promise<{ data?: Buffer; error?: string }> {
    try {
      if (pooled && this.#store.read) {
        const pool = this.#pool;
        return {
          data: await this.#store.read(
            hash,
            (n) => pool.acquire(n),
            (b) => pool.release(b),
          ),
        };
      }
      return { data: await this.#store.get(hash) };
    } catch (e) {
      if (isRswError(e) && ['RSW_ERR_CHUNK_NOT_FOUND', 'RSW_ERR_CHUNK_CORRUPT'].includes(e.code)) return {};
      return { error: e instanceof Error ? e.message : String(e) };
    }
  }

  async #sendChunk(t: ServeTransport, peer: PeerState, data: Buffer): Promise<void> {
    const header = encodeChunkResponseHeader({ status: 'ok', length: data.byteLength });
    const slice = sliceFor(t.maxSlice, peer.bucket, this.#total);
    if (slice >= data.byteLength && peer.bucket.unlimited && this.#total.unlimited) {
      // Header and body in one write: on a bulk socket one syscall, and the receiver is woken once for both.
      await t.send([header, data]);
      peer.bytesServed += data.byteLength;
      this.#bytesServed += data.byteLength;
      return;
    }
    await t.send(header);
    for (let off = 0; off < data.byteLength; off += slice) {
      const piece = data.subarray(off, off + slice);
      const now = this.#now();
      const wait = Math.max(peer.bucket.take(piece.byteLength, now), this.#total.take(piece.byteLength, now));
      if (wait > 0) await sleep(wait);
      await t.send(piece);
      peer.bytesServed += piece.byteLength;
      this.#bytesServed += piece.byteLength;
    }
  }
}

const NOT_FOUND = encodeChunkResponse('not-found');
const BUSY = encodeChunkResponse('busy');

function newBucket(bytesPerSecond: number, now: number): TokenBucket {
  // 100 ms of the rate; never below one send slice (sliceFor), so an idle sender starts without waiting.
  return new TokenBucket({ bytesPerSecond, burstBytes: Math.max(MIN_SEND_SLICE, bytesPerSecond / 10), now });
}

/** ~1/16 s of the tightest rate, within 16 KiB..1 MiB; unlimited: the transport's own slice. */
function sliceFor(maxSlice: number, ...buckets: TokenBucket[]): number {
  const rates = buckets.filter((b) => !b.unlimited).map((b) => b.bytesPerSecond);
  if (rates.length === 0) return maxSlice;
  return Math.min(MAX_SEND_SLICE, Math.max(MIN_SEND_SLICE, Math.floor(Math.min(...rates) / 16)));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A /rackswarm/chunk/1.0.0 stream as a ServeTransport. */
class StreamTransport implements ServeTransport {
  readonly maxSlice = MAX_SEND_SLICE;
  readonly #stream: Stream;
  readonly #timeoutMs: number;
  readonly #requests: RequestReader;

  constructor(stream: Stream, timeoutMs: number) {
    this.#stream = stream;
    this.#timeoutMs = timeoutMs;
    this.#requests = new RequestReader(stream, timeoutMs);
  }

  next(): Promise<string[] | null> {
    return this.#requests.next();
  }

  /** send() with backpressure: returns once the stream has handed everything to the muxer. */
  async send(data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const stream = this.#stream;
    if (data instanceof Uint8Array) stream.send(data);
    else for (const piece of data) stream.send(piece);
    // 'drain' may come while bytes are still queued (yamux signals every window update): loop until 'idle'.
    // onDrain() is no use: after its first drain it resolves at once forever (LIBP2P-NOTES.md).
    while (stream.writableNeedsDrain || stream.writeBufferLength > 0) {
      await pEvent(stream, ['drain', 'idle'], {
        rejectionEvents: ['close'],
        timeout: this.#timeoutMs,
      }).catch((e: unknown) => {
        throw e instanceof Error ? e : new Error('stream closed while sending');
      });
    }
  }

  async close(): Promise<void> {
    await this.#stream.close({ signal: AbortSignal.timeout(this.#timeoutMs) });
  }

  abort(err: Error): void {
    this.#stream.abort(err);
  }

  dispose(): void {
    this.#requests.dispose();
  }
}

/**
 * Request frames off an inbound stream, decoded as they arrive. The server never pauses the stream: requests are
 * small, so a client that queues more than MAX_QUEUED_FRAMES ahead is misbehaving and is reset instead.
 */
class RequestReader {
  readonly #stream: Stream;
  readonly #timeoutMs: number;
  readonly #decoder = new ChunkRequestDecoder();
  readonly #frames: string[][] = [];
  #failure: Error | undefined;
  readonly #wakeup = new Wakeup();

  constructor(stream: Stream, timeoutMs: number) {
    this.#stream = stream;
    this.#timeoutMs = timeoutMs;
    stream.addEventListener('message', this.#onMessage);
    stream.addEventListener('remoteCloseWrite', this.#onWake);
    stream.addEventListener('close', this.#onClose);
  }

  dispose(): void {
    this.#stream.removeEventListener('message', this.#onMessage);
    this.#stream.removeEventListener('remoteCloseWrite', this.#onWake);
    this.#stream.removeEventListener('close', this.#onClose);
  }

  /** The next request frame, or null once the client has half-closed after whole frames. */
  async next(): Promise<string[] | null> {
    const deadline = Date.now() + this.#timeoutMs;
    for (;;) {
      if (this.#failure) throw this.#failure;
      const frame = this.#frames.shift();
      if (frame) return frame;
      if (this.#stream.remoteWriteStatus !== 'writable' && this.#stream.readBufferLength === 0) {
        if (this.#decoder.bufferedBytes > 0) throw new ProtocolError('stream ended inside a chunk request');
        return null;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new ProtocolError(`no whole chunk request within ${this.#timeoutMs} ms`);
      await this.#wakeup.wait(left);
    }
  }

  #onMessage = (evt: StreamMessageEvent): void => {
    try {
      // checked before decoding too, so a flood costs no more than MAX_QUEUED_FRAMES frames of work
      if (this.#decoder.bufferedBytes + evt.data.byteLength > MAX_QUEUED_FRAMES * MAX_REQUEST_FRAME_BYTES) {
        throw new ProtocolError(`more than ${MAX_QUEUED_FRAMES} chunk requests queued`);
      }
      this.#frames.push(...this.#decoder.push(evt.data));
      if (this.#frames.length > MAX_QUEUED_FRAMES || this.#decoder.bufferedBytes > MAX_REQUEST_FRAME_BYTES) {
        throw new ProtocolError(`more than ${MAX_QUEUED_FRAMES} chunk requests queued`);
      }
    } catch (e) {
      this.#failure ??= e as Error;
      // let the current dispatch finish first; the reset also fails a send in progress at once
      queueMicrotask(() => this.#stream.abort(e as Error));
    }
    this.#wakeup.wake();
  };

  #onClose = (evt: Event & { error?: Error }): void => {
    if (evt.error) this.#failure ??= evt.error;
    this.#wakeup.wake();
  };

  #onWake = (): void => {
    this.#wakeup.wake();
  };
}
