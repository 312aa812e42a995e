import { connect, type Socket } from 'node:net';
import type { Connection, Libp2p, PeerId } from '@libp2p/interface';
import { byteStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { BufferPool } from '../core/buffer-pool.ts';
import {
  BULK_BATCH_END,
  BULK_CLIENT_IDLE_MS,
  BULK_TOKEN_PROTOCOL,
  decodeTokenAnswer,
  encodeBulkHello,
  TOKEN_ANSWER_BYTES,
  type TokenAnswer,
} from '../core/bulk-wire.ts';
import { count } from '../core/counters.ts';
import { RswError } from '../core/errors.ts';
import { isHashHex } from '../core/hash.ts';
import { Wakeup } from '../core/wakeup.ts';
import {
  type ChunkResponse,
  type ChunkResponseHeader,
  decodeChunkResponseHeader,
  encodeChunkRequest,
  MAX_HASHES_PER_REQUEST,
  ProtocolError,
  RESPONSE_HEADER_BYTES,
} from '../core/wire.ts';
import {
  checked,
  type FetchChunksOptions,
  type FetchedChunk,
  fetchChunks,
  PIPELINE_FRAMES,
} from './chunk-client.ts';

/** What the fetcher calls to get a batch of chunks from one peer, whichever data plane carries them. */
export type ChunkFetch = (
  node: Pick<Libp2p, 'dial'>,
  peer: PeerId | Multiaddr,
  hashes: string[],
  opts?: FetchChunksOptions,
) => AsyncGenerator<FetchedChunk>;

/**
 * Verified bodies held for the caller before the socket stops reading. Unlike a yamux stream (chunk-client.ts), a
 * stopped socket costs no round trip to restart — the kernel's socket buffers keep the sender going meanwhile — so
 * one chunk of slack is enough, and every MiB held here is resident (peak RSS goal: docs/BENCHMARKS.md).
 */
const PAUSE_AT_BYTES = 1024 * 1024;

/** After a peer's bulk port could not be used, the chunk protocol is used for it this long before bulk is tried again. */
const RETRY_BULK_AFTER_MS = 60_000;

/**
 * The client side of the data plane (config `p2p.dataPlane`). With "bulk-tcp" the chunks come over a plain TCP
 * connection to the peer's bulk port (core/bulk-wire.ts, version 2): the first batch to a peer asks it for a token
 * over libp2p and opens the connection; later batches reuse it (one idle connection kept per peer, closed after
 * BULK_CLIENT_IDLE_MS unused), so a batch — a refused one too — costs its request frames and answers only. A
 * connection goes back to the pool only when its batch ended in step (every answer due read); a batch broken off,
 * failed, timed out or answered with a corrupt body closes it. When the peer offers no token (an older or
 * libp2p-only peer: the protocol is not supported, or it is `busy`) or its bulk port cannot be used before any answer
 * arrived, the batch goes over /rackswarm/chunk/1.0.0 instead — and so do that peer's batches for the next minute (a
 * pooled connection that fails that way is first replaced by a fresh one, once). Either way every body is
 * BLAKE3-verified before it is yielded.
 */
export function chunkFetch(init: {
  dataPlane: 'bulk-tcp' | 'libp2p';
  now?: () => number;
  /** An idle pooled connection is closed after this many ms. @default BULK_CLIENT_IDLE_MS */
  idleMs?: number;
}): ChunkFetch {
  if (init.dataPlane === 'libp2p') return fetchChunks;
  const now = init.now ?? Date.now;
  const bulkFailedUntil = new Map<string, number>();
  const pool = new BulkPool(init.idleMs ?? BULK_CLIENT_IDLE_MS);
  return async function* fetchBulkOrStream(node, peer, hashes, opts = {}) {
    for (const h of hashes) {
      if (!isHashHex(h))
        throw new RswError('RSW_ERR_INVALID_HASH', `"${h.slice(0, 80)}" is not a chunk hash`);
    }
    if (hashes.length === 0) return;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const within = () =>
      AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])]);
    // Also for a pooled connection: a peer the gater dropped is not dialled again.
    const connection = await node.dial(peer, { signal: within() });
    count('bulk.batches');
    const key = connection.remotePeer.toString();
    if ((bulkFailedUntil.get(key) ?? 0) <= now()) {
      for (
        let conn = (opts.queue ? pool.joinable(key, hashes.length) : undefined) ?? pool.take(key);
        ;
        conn = undefined
      ) {
        const reused = conn !== undefined;
        if (!conn) {
          count('bulk.opens');
          try {
            conn = await openBulk(connection, within(), key);
          } catch (e) {
            if (opts.signal?.aborted) throw e;
            if (!(e instanceof BusyError)) bulkFailedUntil.set(key, now() + RETRY_BULK_AFTER_MS);
            break;
          }
        }
        try {
          yield* fetchOverConnection(conn, hashes, timeoutMs, opts, pool);
          return;
        } catch (e) {
          // Refused before a single answer byte of this batch (a token the server did not take, a port that
          // resets, a pooled connection the server had closed): not the peer's data going bad.
          if (!(e instanceof BulkUnavailableError) || opts.signal?.aborted) throw e;
          if (reused) continue;
          bulkFailedUntil.set(key, now() + RETRY_BULK_AFTER_MS);
          break;
        }
      }
    }
    count('bulk.overLibp2p');
    yield* fetchChunks(node, connection.remotePeer, hashes, opts);
  };
}

class BusyError extends Error {}
class BulkUnavailableError extends Error {}

/** An open version 2 bulk connection to one peer. */
interface BulkConnection {
  key: string;
  socket: Socket;
  reader: BulkReader;
  /** While parked: closes it once unused for BULK_CLIENT_IDLE_MS. */
  idleTimer?: ReturnType<typeof setTimeout>;
  /** Batches sent on it whose answers are not all read yet (2 while one is queued behind another). */
  batches: number;
  /** Resolves once the last batch sent on it is done reading (or gave up): a batch queued behind it reads after. */
  tail: Promise<void>;
  /** The last batch sent on it has sent its batch end (nothing more of it will be written). */
  tailSent: boolean;
}

/**
 * One idle bulk connection per peer, ready for its next batch; and the one in use per peer, so a second batch to that
 * peer (the fetcher's `pipelineBatches`) is queued behind the one in progress on it: the server serves a connection's
 * batches in order, so it starts the queued one right after the current one, without waiting for a request's round
 * trip (which, behind a node's own full upload queue, was 25–145 ms on the testbed: docs/BENCHMARKS.md, Session 10).
 */
class BulkPool {
  readonly #idle = new Map<string, BulkConnection>();
  /** Per peer: the connection the latest batch was sent on, while it has batches in progress. */
  readonly #active = new Map<string, BulkConnection>();
  readonly #idleMs: number;

  constructor(idleMs: number) {
    this.#idleMs = idleMs;
  }

  /**
   * The peer's connection in use, when a batch of `count` hashes may queue behind the one in progress on it: one
   * batch at most waits, and it must be one request frame, so the server never holds more than MAX_QUEUED_FRAMES
   * frames of it (the frame in progress, its batch end, this frame and its batch end).
   */
  joinable(key: string, count: number): BulkConnection | undefined {
    const conn = this.#active.get(key);
    if (!conn || count > MAX_HASHES_PER_REQUEST || conn.batches !== 1 || !conn.tailSent) return undefined;
    if (conn.socket.destroyed) return undefined;
    return conn;
  }

  /** A batch begins on `conn` (taken, joined or fresh). */
  using(conn: BulkConnection): void {
    this.#active.set(conn.key, conn);
  }

  /** A batch on `conn` is over; `inStep`: every answer due to it was read. The last one parks or closes it. */
  done(conn: BulkConnection, inStep: boolean): void {
    conn.batches--;
    if (!inStep) conn.socket.destroy(); // (a batch queued behind it fails and is retried on a fresh one)
    if (conn.batches > 0) return;
    if (this.#active.get(conn.key) === conn) this.#active.delete(conn.key);
    if (inStep) this.park(conn);
  }

  /** The peer's idle connection, if it is still open. */
  take(key: string): BulkConnection | undefined {
    const conn = this.#idle.get(key);
    if (!conn) return undefined;
    this.#idle.delete(key);
    clearTimeout(conn.idleTimer);
    conn.socket.ref();
    if (conn.reader.usable) return conn;
    conn.socket.destroy();
    return undefined;
  }

  /** A connection whose batch ended in step; a second one for the same peer is closed (one is enough). */
  park(conn: BulkConnection): void {
    if (!conn.reader.usable || this.#idle.has(conn.key)) {
      closeBulk(conn);
      return;
    }
    this.#idle.set(conn.key, conn);
    conn.socket.unref(); // a parked connection does not keep the process alive
    conn.idleTimer = setTimeout(() => {
      if (this.#idle.get(conn.key) === conn) this.#idle.delete(conn.key);
      closeBulk(conn);
    }, this.#idleMs);
    conn.idleTimer.unref();
  }
}

/** Half-closes (the server then closes its side) and frees the socket once that is sent. */
function closeBulk(conn: BulkConnection): void {
  conn.socket.destroySoon();
}

/** Asks a peer for a bulk token over an open libp2p connection; `host` is the peer's address on that connection. */
export async function requestBulkToken(
  connection: Connection,
  signal: AbortSignal,
): Promise<{ host: string; answer: TokenAnswer }> {
  const host = connection.remoteAddr.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6')?.value;
  if (!host) throw new Error(`no IP address in ${connection.remoteAddr.toString()}`);
  const stream = await connection.newStream(BULK_TOKEN_PROTOCOL, { signal });
  let answer: ReturnType<typeof decodeTokenAnswer>;
  try {
    // byteStream reads, not `for await` on the dialling side (LIBP2P-NOTES.md)
    const bytes = byteStream(stream, { maxBufferSize: 4 * TOKEN_ANSWER_BYTES });
    const closing = stream.close({ signal }).catch(() => {});
    answer = decodeTokenAnswer((await bytes.read({ bytes: TOKEN_ANSWER_BYTES, signal })).subarray());
    await closing;
  } catch (e) {
    stream.abort(e as Error);
    throw e;
  }
  return { host, answer };
}

/** A token over libp2p, then a TCP connection to the bulk port presenting it (the hello is queued at once). */
async function openBulk(connection: Connection, signal: AbortSignal, key: string): Promise<BulkConnection> {
  const { host, answer } = await requestBulkToken(connection, signal);
  count(`bulk.token.${answer.status}`);
  if (answer.status === 'busy') throw new BusyError('peer has no bulk token for us now');
  const reader = new BulkReader();
  const socket = connect({
    host,
    port: answer.port,
    noDelay: true,
    allowHalfOpen: true,
    onread: { buffer: () => reader.target(), callback: (n: number) => reader.onRead(n) },
  });
  reader.attach(socket); // before the first read can land
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error) => {
      cleanup();
      socket.destroy();
      reject(e);
    };
    const onAbort = () => fail(new Error('bulk connect aborted'));
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      socket.off('connect', onConnect);
      socket.off('error', fail);
      signal.removeEventListener('abort', onAbort);
    };
    socket.once('connect', onConnect);
    socket.once('error', fail);
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) onAbort();
  });
  socket.write(encodeBulkHello(answer.token));
  return { key, socket, reader, batches: 0, tail: Promise.resolve(), tailSent: true };
}

/**
 * One batch over a bulk connection: parked for the next batch if it ends in step, closed otherwise. On a connection
 * with a batch in progress (BulkPool.joinable) its request goes out at once and its answers are read after that
 * batch's.
 */
async function* fetchOverConnection(
  conn: BulkConnection,
  hashes: string[],
  timeoutMs: number,
  opts: FetchChunksOptions,
  pool: BulkPool,
): AsyncGenerator<FetchedChunk> {
  const { socket, reader } = conn;
  const frames: string[][] = [];
  for (let i = 0; i < hashes.length; i += MAX_HASHES_PER_REQUEST) {
    frames.push(hashes.slice(i, i + MAX_HASHES_PER_REQUEST));
  }
  const ahead = conn.batches > 0 ? conn.tail : undefined;
  const mine = Promise.withResolvers<void>();
  conn.batches++;
  conn.tail = mine.promise;
  conn.tailSent = false;
  pool.using(conn);
  let framesSent = 0;
  let ended = false;
  /** Answers to this batch's frames not read yet (a batch queued behind it has its own). */
  let due = 0;
  const endBatch = (): void => {
    if (ended) return;
    ended = true;
    socket.write(BULK_BATCH_END);
    if (conn.tail === mine.promise) conn.tailSent = true;
  };
  // A frame and, after the last one, the batch end go out in one write (one segment, one wakeup of the server).
  const sendFrame = (): void => {
    if (ended || framesSent === frames.length) return;
    const frame = frames[framesSent++];
    reader.expect(frame.length);
    due += frame.length;
    socket.cork();
    socket.write(encodeChunkRequest(frame));
    if (framesSent === frames.length) endBatch();
    socket.uncork();
  };
  let inStep = false;
  let began = false;
  try {
    socket.cork();
    while (framesSent < Math.min(PIPELINE_FRAMES, frames.length)) sendFrame();
    socket.uncork();
    if (ahead) await ahead;
    reader.begin(timeoutMs, opts.signal, opts.pool);
    began = true;
    let yielded = 0;
    let busy = false;
    for (let f = 0; f < frames.length && !busy; f++) {
      for (let j = 0; j < frames[f].length; j++) {
        const response = await reader.next();
        due--;
        if (j === frames[f].length - 1) sendFrame(); // keep PIPELINE_FRAMES frames at the server
        yielded++;
        yield checked(frames[f][j], response, conn.key, opts.pool);
        if (response.status === 'busy') {
          busy = true;
          break;
        }
      }
    }
    // After a `busy` the rest of the batch is busy too (core/bulk-wire.ts): ask no more, end the batch, and read
    // the answers still due so the connection is in step for the next batch.
    endBatch();
    for (; due > 0; due--) {
      const { body } = await reader.next(); // (not inside `pool?.release(…)`: that skips it without a pool)
      opts.pool?.release(body);
    }
    inStep = true;
    reader.end();
    began = false;
    pool.done(conn, true);
    mine.resolve();
    for (const hash of hashes.slice(yielded)) yield { hash, status: 'busy' };
  } finally {
    if (!inStep) {
      if (began) reader.end();
      pool.done(conn, false);
      mine.resolve();
    }
  }
}

/**
 * Responses off a bulk connection, read by the kernel straight into their destination: a header into a 5-byte
 * buffer, an `ok` body into its pooled buffer (socket `onread`), so there is no intermediate copy and no allocation
 * per read; a read never goes past the response in progress. About PAUSE_AT_BYTES of decoded bodies are held before
 * the socket is paused until the caller catches up. It lives as long as the connection; each batch begin()s and
 * end()s, and expect()s the answers to each frame it sends. Bytes nobody asked for (between batches too) close the
 * connection, and so does the server's end or an error while no batch is open.
 */
class BulkReader {
  #socket!: Socket;
  #timeoutMs = 30_000;
  #signal: AbortSignal | undefined;
  #pool: BufferPool | undefined;
  #inBatch = false;
  /** Answers due that have not been decoded yet. */
  #expected = 0;
  readonly #header = Buffer.alloc(RESPONSE_HEADER_BYTES);
  #headerFilled = 0;
  #current: ChunkResponseHeader | undefined;
  #body: Buffer | undefined;
  #bodyFilled = 0;
  readonly #ready: ChunkResponse[] = [];
  #readyBytes = 0;
  /** Any answer byte of the batch in progress (none: a failure is BulkUnavailableError, not the peer's data). */
  #batchBytes = false;
  #stopped = false;
  #ended = false;
  #failure: Error | undefined;
  #lastProgress = Date.now();
  readonly #wakeup = new Wakeup();

  /** The connected socket whose `onread` calls target() and onRead(). */
  attach(socket: Socket): void {
    this.#socket = socket;
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError); // stays for the socket's life: a late error must not go unhandled
  }

  /** Open, in step, and nothing failed: fit for another batch. */
  get usable(): boolean {
    return (
      !this.#ended &&
      !this.#failure &&
      !this.#socket.destroyed &&
      this.#expected === 0 &&
      this.#ready.length === 0 &&
      !this.#current
    );
  }

  /** Answers due that the caller has not taken yet. */
  get due(): number {
    return this.#expected + this.#ready.length;
  }

  begin(timeoutMs: number, signal: AbortSignal | undefined, pool: BufferPool | undefined): void {
    this.#timeoutMs = timeoutMs;
    this.#signal = signal;
    this.#pool = pool;
    this.#inBatch = true;
    this.#batchBytes = false;
    signal?.addEventListener('abort', this.#onAbort);
    if (signal?.aborted) this.#onAbort();
  }

  /** The answers to a frame of `n` hashes are due. */
  expect(n: number): void {
    this.#expected += n;
  }

  end(): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#signal = undefined;
    this.#inBatch = false;
  }

  async next(): Promise<ChunkResponse> {
    this.#lastProgress = Date.now();
    for (;;) {
      if (this.#failure) throw this.#failure;
      const response = this.#ready.shift();
      if (response) {
        this.#readyBytes -= response.body?.byteLength ?? 0;
        if (this.#readyBytes < PAUSE_AT_BYTES) this.#resume();
        return response;
      }
      if (this.#ended) throw this.#lost('peer closed the bulk connection before answering every request');
      this.#resume();
      const left = this.#lastProgress + this.#timeoutMs - Date.now();
      if (left <= 0) {
        const err = this.#lost(`no response bytes from peer for ${this.#timeoutMs} ms`);
        this.#socket.destroy();
        throw err;
      }
      await this.#wakeup.wait(left);
    }
  }

  /**
   * Reading stopped by onRead returning false is not a Readable pause (isPaused() stays false), and resume() restarts
   * such a socket's reads only while they are stopped: so track it here.
   */
  #resume(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#socket.resume();
  }

  /** Where the kernel puts the next bytes: never past the response in progress. */
  target(): Buffer {
    // Node asks for the next read's buffer right after the previous read, before expect() may change #expected: so
    // only state that onRead() alone changes decides it (bytes nobody asked for land in the header, then fail).
    if (this.#current && this.#body) return this.#body.subarray(this.#bodyFilled);
    return this.#header.subarray(this.#headerFilled);
  }

  /**
   * `n` bytes landed in the buffer target() gave; false pauses the socket. The waiting next() is woken only when an
   * answer is complete or the connection failed, not for every read (~11,000 per GiB: each woken wait() made a
   * timer and a promise); it sees the progress a read made (#lastProgress) when its own timer comes.
   */
  onRead(n: number): boolean {
    count('bulk.in.reads');
    this.#batchBytes = true;
    this.#lastProgress = Date.now();
    const ready = this.#ready.length;
    try {
      if (!this.#current && this.#expected === 0) throw new ProtocolError('peer sent bytes nobody asked for');
      if (this.#current) {
        this.#bodyFilled += n;
        if (this.#bodyFilled === this.#current.length) this.#complete();
      } else {
        this.#headerFilled += n;
        if (this.#headerFilled === RESPONSE_HEADER_BYTES) {
          this.#headerFilled = 0;
          const header = decodeChunkResponseHeader(this.#header);
          if (header.length === 0) {
            this.#current = header;
            this.#complete();
          } else {
            this.#current = header;
            this.#body =
              header.status === 'ok'
                ? (this.#pool?.acquire(header.length) ?? Buffer.allocUnsafe(header.length))
                : Buffer.allocUnsafe(header.length);
            this.#bodyFilled = 0;
          }
        }
      }
    } catch (e) {
      this.#failure ??= e as Error;
      this.#socket.destroy();
    }
    if (this.#ready.length > ready || this.#failure) this.#wakeup.wake();
    this.#stopped = this.#readyBytes >= PAUSE_AT_BYTES;
    if (this.#stopped) count('bulk.in.pauses');
    return !this.#stopped;
  }

  #complete(): void {
    const { status } = this.#current as ChunkResponseHeader;
    const body = this.#body;
    this.#current = undefined;
    this.#body = undefined;
    this.#bodyFilled = 0;
    this.#expected--;
    if (status === 'ok') {
      this.#ready.push({ status, body });
      this.#readyBytes += body?.byteLength ?? 0;
    } else if (status === 'error') this.#ready.push({ status, reason: body ? body.toString('utf8') : '' });
    else this.#ready.push({ status });
  }

  #lost(message: string): Error {
    return this.#batchBytes ? new ProtocolError(message) : new BulkUnavailableError(message);
  }

  #onEnd = (): void => {
    this.#ended = true;
    if (!this.#inBatch) this.#socket.destroy(); // parked: the server closed an idle connection
    this.#wakeup.wake();
  };

  #onClose = (): void => {
    this.#ended = true;
    this.#wakeup.wake();
  };

  #onError = (e: Error): void => {
    this.#failure ??= this.#batchBytes ? e : new BulkUnavailableError(e.message);
    this.#wakeup.wake();
  };

  #onAbort = (): void => {
    const reason = this.#signal?.reason;
    this.#failure ??= reason instanceof Error ? reason : new Error('chunk fetch aborted');
    this.#socket.destroy();
    this.#wakeup.wake();
  };
}
