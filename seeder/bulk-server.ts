import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import {
  BULK_HELLO_BYTES,
  BULK_IDLE_MS,
  BULK_TOKEN_PROTOCOL,
  decodeBulkHello,
  encodeTokenAnswer,
} from '../core/bulk-wire.ts';
import { count } from '../core/counters.ts';
import { RswError } from '../core/errors.ts';
import { Wakeup } from '../core/wakeup.ts';
import { ChunkRequestDecoder, MAX_REQUEST_FRAME_BYTES, ProtocolError } from '../core/wire.ts';
import { MAX_QUEUED_FRAMES, type ServeTransport } from './chunk-server.ts';

/**
 * The bulk data plane's server side (config `p2p.dataPlane`, wire format in core/bulk-wire.ts): hands out tokens
 * over libp2p to authenticated peers, and serves chunk requests on plain TCP connections that present one. What a
 * connection may do, and how much, is the chunk server's business (the same limits, super-seeding, rates and stats
 * as its libp2p streams, admitted per batch: ChunkServer.serve); this file only admits connections:
 *   - a token is 32 random bytes, single use, valid for TOKEN_TTL_MS, bound to the peer id that asked for it and to
 *     the IP address its libp2p connection came from;
 *   - at most maxTokensPerPeer outstanding tokens and open connections together per peer, and MAX_TOKENS in all
 *     (then the answer is `busy`: the client uses the chunk protocol);
 *   - a connection is persistent (version 2): it carries batch after batch, and is closed after idleMs without one;
 *   - a connection must send its whole hello within readTimeoutMs; at most MAX_PENDING connections wait for one;
 *     a bad, expired or reused token, or garbage, closes the connection without an answer;
 *   - when the peer's last libp2p connection closes (e.g. a connection gater dropped it), its bulk connections close.
 */

/** A token is for the connection its client opens right after asking: seconds are plenty on any LAN. */
const TOKEN_TTL_MS = 10_000;
/** Outstanding tokens over all peers (each ~100 bytes). */
const MAX_TOKENS = 4096;
/** Connections that have not yet presented a valid token. */
const MAX_PENDING = 128;

export interface BulkServerComponents {
  /** Serves an authenticated connection (the node's ChunkServer). */
  chunkServer: { serve(remote: PeerId, t: ServeTransport): Promise<void> };
  now?: () => number;
}

export interface BulkServerInit {
  /** Address to listen on (bulkListenHost of the node's libp2p listen addresses). */
  host: string;
  /** 0 = any free port. */
  port: number;
  /** A hello, a request frame, and taking sent bytes: each within this many ms (the chunk server's readTimeoutMs). */
  readTimeoutMs: number;
  /** Tokens one peer may hold unused, plus bulk connections it has open, at once (its batches at once, plus slack). */
  maxTokensPerPeer: number;
  /** A version 2 connection with no batch open is closed after this many ms. @default BULK_IDLE_MS */
  idleMs?: number;
}

interface Grant {
  peer: PeerId;
  ip: string;
  expires: number;
}

type BulkNode = Pick<
  Libp2p,
  'handle' | 'unhandle' | 'addEventListener' | 'removeEventListener' | 'getConnections'
>;

export class BulkServer {
  readonly #c: BulkServerComponents;
  readonly #init: BulkServerInit;
  readonly #grants = new Map<string, Grant>();
  readonly #sockets = new Map<string, Set<Socket>>();
  /** Every open connection, admitted or not, to close on stop(). */
  readonly #open = new Set<Socket>();
  #pending = 0;
  readonly #stats = { tokensIssued: 0, tokensRefused: 0, connections: 0, refused: 0 };
  #server: Server | undefined;
  #node: BulkNode | undefined;
  #port = 0;

  constructor(components: BulkServerComponents, init: BulkServerInit) {
    if (init.readTimeoutMs <= 0 || init.maxTokensPerPeer < 1)
      throw new RangeError('BulkServerInit out of range');
    this.#c = components;
    this.#init = { ...init };
  }

  /** The TCP port serving bulk connections (after start()). */
  get port(): number {
    return this.#port;
  }

  async start(node: BulkNode): Promise<void> {
    if (this.#node) return;
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#onSocket(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.#init.host, port: this.#init.port }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((e: NodeJS.ErrnoException) => {
      throw new RswError(
        'RSW_ERR_USAGE',
        `cannot listen for bulk connections on ${this.#init.host}:${this.#init.port}: ${e.code} (p2p.bulkPort)`,
      );
    });
    const address = server.address();
    this.#port = typeof address === 'object' && address ? address.port : 0;
    this.#server = server;
    this.#node = node;
    node.addEventListener('peer:disconnect', this.#onPeerDisconnect);
    await node.handle(BULK_TOKEN_PROTOCOL, this.#onTokenStream, { maxInboundStreams: 4 });
  }

  async stop(): Promise<void> {
    const node = this.#node;
    if (!node) return;
    this.#node = undefined;
    node.removeEventListener('peer:disconnect', this.#onPeerDisconnect);
    await node.unhandle(BULK_TOKEN_PROTOCOL);
    const server = this.#server;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server?.close(() => resolve()) ?? resolve());
    for (const s of this.#open) s.destroy();
    await closed;
    this.#grants.clear();
  }

  /** Tokens issued and refused (`busy`), connections admitted and refused (bad hello, token, timeout, too many). */
  stats(): { tokensIssued: number; tokensRefused: number; connections: number; refused: number } {
    return { ...this.#stats };
  }

  /** Bulk TCP connections open now, admitted or waiting for their hello (for tests). */
  get openConnections(): number {
    return this.#open.size;
  }

  /** Tokens handed out and not yet used or expired (for tests). */
  get outstandingTokens(): number {
    this.#expire();
    return this.#grants.size;
  }

  #now(): number {
    return (this.#c.now ?? Date.now)();
  }

  #expire(): void {
    const now = this.#now();
    for (const [k, g] of this.#grants) if (g.expires <= now) this.#grants.delete(k);
  }

  #onTokenStream = async (stream: Stream, connection: Connection): Promise<void> => {
    try {
      this.#expire();
      const peer = connection.remotePeer;
      const held =
        [...this.#grants.values()].filter((g) => g.peer.equals(peer)).length +
        (this.#sockets.get(peer.toString())?.size ?? 0);
      const ip = ipOf(connection);
      if (held >= this.#init.maxTokensPerPeer || this.#grants.size >= MAX_TOKENS || !ip || !this.#port) {
        this.#stats.tokensRefused++;
        stream.send(encodeTokenAnswer({ status: 'busy' }));
      } else {
        this.#stats.tokensIssued++;
        const token = randomBytes(32);
        this.#grants.set(token.toString('hex'), { peer, ip, expires: this.#now() + TOKEN_TTL_MS });
        stream.send(encodeTokenAnswer({ status: 'ok', port: this.#port, ttlMs: TOKEN_TTL_MS, token }));
      }
      await stream.close({ signal: AbortSignal.timeout(this.#init.readTimeoutMs) });
    } catch (e) {
      stream.abort(e instanceof Error ? e : new Error(String(e)));
    }
  };

  #onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const key = evt.detail.toString();
    if ((this.#node?.getConnections(evt.detail).length ?? 0) > 0) return;
    for (const s of this.#sockets.get(key) ?? []) s.destroy();
  };

  #onSocket(socket: Socket): void {
    this.#open.add(socket);
    socket.once('close', () => this.#open.delete(socket));
    if (this.#pending >= MAX_PENDING || !this.#node) {
      this.#stats.refused++;
      socket.destroy();
      return;
    }
    this.#pending++;
    const hello = Buffer.alloc(BULK_HELLO_BYTES);
    let filled = 0;
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      this.#pending--;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', finish);
    };
    const refuse = (): void => {
      this.#stats.refused++;
      finish();
      socket.destroy();
    };
    const timer = setTimeout(refuse, this.#init.readTimeoutMs);
    const onData = (data: Buffer): void => {
      const n = Math.min(data.length, BULK_HELLO_BYTES - filled);
      data.copy(hello, filled, 0, n);
      filled += n;
      if (filled < BULK_HELLO_BYTES) return;
      let grant: Grant | undefined;
      let version: 1 | 2;
      try {
        const decoded = decodeBulkHello(hello);
        version = decoded.version;
        const key = decoded.token.toString('hex');
        grant = this.#grants.get(key);
        this.#grants.delete(key); // single use, whatever happens next
      } catch {
        refuse();
        return;
      }
      if (!grant || grant.expires <= this.#now() || normaliseIp(socket.remoteAddress) !== grant.ip) {
        refuse();
        return;
      }
      finish();
      this.#admit(socket, grant.peer, version, data.subarray(n));
    };
    socket.on('data', onData);
    socket.on('close', finish);
    socket.on('error', () => socket.destroy());
  }

  #admit(socket: Socket, peer: PeerId, version: 1 | 2, early: Buffer): void {
    this.#stats.connections++;
    const key = peer.toString();
    const set = this.#sockets.get(key) ?? new Set<Socket>();
    set.add(socket);
    this.#sockets.set(key, set);
    const idleMs = version === 1 ? this.#init.readTimeoutMs : (this.#init.idleMs ?? BULK_IDLE_MS);
    const t = new SocketTransport(socket, this.#init.readTimeoutMs, idleMs, version === 2);
    if (early.length > 0) t.push(early);
    void this.#c.chunkServer.serve(peer, t).finally(() => {
      set.delete(socket);
      if (set.size === 0 && this.#sockets.get(key) === set) this.#sockets.delete(key);
    });
  }
}

/** The host a bulk server listens on: the host of the node's first TCP listen multiaddr (0.0.0.0 when it has none). */
export function bulkListenHost(listen: readonly string[]): string {
  for (const a of listen) {
    const m = /^\/(ip4|ip6)\/([^/]+)\/tcp\//.exec(a);
    if (m) return m[2];
  }
  return '0.0.0.0';
}

function ipOf(connection: Connection): string | undefined {
  const c = connection.remoteAddr.getComponents().find((x) => x.name === 'ip4' || x.name === 'ip6');
  return c?.value ? normaliseIp(c.value) : undefined;
}

function normaliseIp(ip: string | undefined): string {
  return (ip ?? '').replace(/^::ffff:/, '');
}

/**
 * An authenticated bulk TCP connection as a ServeTransport: request frames (and, version 2, batch ends) in, responses
 * out, no framing of its own.
 */
class SocketTransport implements ServeTransport {
  /** Bodies go to the kernel in one write: no muxer to share the connection with. */
  readonly maxSlice = Number.POSITIVE_INFINITY;
  readonly sendReleases = true;
  readonly #socket: Socket;
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  readonly #decoder: ChunkRequestDecoder;
  readonly #frames: string[][] = [];
  readonly #wakeup = new Wakeup();
  #failure: Error | undefined;
  #ended = false;
  #closed = false;

  constructor(socket: Socket, timeoutMs: number, idleMs: number, batchEnds: boolean) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    this.#idleMs = idleMs;
    this.#decoder = new ChunkRequestDecoder({ batchEnds });
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
  }

  push(data: Buffer): void {
    try {
      // checked before decoding too, so a flood costs no more than MAX_QUEUED_FRAMES frames of work
      if (this.#decoder.bufferedBytes + data.byteLength > MAX_QUEUED_FRAMES * MAX_REQUEST_FRAME_BYTES) {
        throw new ProtocolError(`more than ${MAX_QUEUED_FRAMES} chunk requests queued`);
      }
      this.#frames.push(...this.#decoder.push(data));
      if (this.#frames.length > MAX_QUEUED_FRAMES || this.#decoder.bufferedBytes > MAX_REQUEST_FRAME_BYTES) {
        throw new ProtocolError(`more than ${MAX_QUEUED_FRAMES} chunk requests queued`);
      }
    } catch (e) {
      this.#failure ??= e as Error;
      this.#socket.destroy();
    }
    this.#wakeup.wake();
  }

  /** Between batches the wait is the idle time, and running out of it ends the conversation (null), not an error. */
  async next(betweenBatches = false): Promise<string[] | null> {
    const deadline = Date.now() + (betweenBatches ? this.#idleMs : this.#timeoutMs);
    for (;;) {
      if (this.#failure) throw this.#failure;
      const frame = this.#frames.shift();
      if (frame) return frame;
      if (this.#ended) {
        if (this.#decoder.bufferedBytes > 0)
          throw new ProtocolError('connection ended inside a chunk request');
        return null;
      }
      if (this.#closed) throw new Error('bulk connection closed');
      const left = deadline - Date.now();
      if (left <= 0) {
        if (betweenBatches && this.#decoder.bufferedBytes === 0) return null;
        throw new ProtocolError(`no whole chunk request within ${this.#timeoutMs} ms`);
      }
      await this.#wakeup.wait(left);
    }
  }

  /**
   * Resolves once the kernel has all of `data` (the write callback): the buffer is free again (sendReleases).
   * Pieces go out corked, as one writev.
   */
  async send(data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.#closed) throw this.#failure ?? new Error('bulk connection closed');
    let written = false;
    let error: Error | null | undefined;
    const done = (e?: Error | null): void => {
      written = true;
      error = e;
      this.#wakeup.wake();
    };
    count('bulkServer.sends');
    if (data instanceof Uint8Array) this.#socket.write(data, done);
    else {
      this.#socket.cork();
      for (let i = 0; i < data.length; i++)
        this.#socket.write(data[i], i === data.length - 1 ? done : undefined);
      this.#socket.uncork();
    }
    const deadline = Date.now() + this.#timeoutMs;
    while (!written) {
      if (this.#closed) throw this.#failure ?? new Error('bulk connection closed while sending');
      const left = deadline - Date.now();
      if (left <= 0) throw new ProtocolError(`peer took no bytes for ${this.#timeoutMs} ms`);
      await this.#wakeup.wait(left);
    }
    if (error) throw error;
  }

  async close(): Promise<void> {
    const socket = this.#socket;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new ProtocolError('peer did not take the last bytes')),
        this.#timeoutMs,
      );
      socket.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // Both sides have ended (the client half-closed first), or the connection was idle: nothing more to wait for.
    socket.destroySoon();
  }

  abort(_err: Error): void {
    this.#socket.destroy();
  }

  dispose(): void {
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
  }

  #onData = (data: Buffer): void => {
    this.push(data);
  };

  #onEnd = (): void => {
    this.#ended = true;
    this.#wakeup.wake();
  };

  #onClose = (): void => {
    this.#closed = true;
    this.#wakeup.wake();
  };
}
