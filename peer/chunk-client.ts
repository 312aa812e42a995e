import type { Libp2p, PeerId, Stream, StreamMessageEvent } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { BufferPool } from '../core/buffer-pool.ts';
import { count } from '../core/counters.ts';
import { RswError } from '../core/errors.ts';
import { hashHex, isHashHex } from '../core/hash.ts';
import { Wakeup } from '../core/wakeup.ts';
import {
  CHUNK_PROTOCOL,
  type ChunkResponse,
  ChunkResponseDecoder,
  encodeChunkRequest,
  MAX_HASHES_PER_REQUEST,
  ProtocolError,
} from '../core/wire.ts';

/** @default 30_000 — see FetchChunksOptions.timeoutMs */
const DEFAULT_TIMEOUT_MS = 30_000;
/** Request frames in flight: the next frame is queued at the server before the current one is fully answered. */
export const PIPELINE_FRAMES = 2;
/**
 * Decoded responses held before the stream is paused. Pausing at every decoded chunk stalled the sender once per
 * chunk (a paused stream stops yamux window updates; resuming costs a round trip): a few MiB of slack keeps the pipe
 * full while the caller writes, and still bounds what one stream can pile up.
 */
export const PAUSE_AT_BYTES = 4 * 1024 * 1024;

export interface FetchChunksOptions {
  signal?: AbortSignal;
  /**
   * Dialling and each wait for response bytes must finish within this many ms (time the caller spends between
   * pulls does not count); else the stream is reset and the generator throws.
   * @default 30000
   */
  timeoutMs?: number;
  /** Chunk bodies are taken from this pool; the caller releases each `data` once it has consumed it. */
  pool?: BufferPool;
  /**
   * On a bulk connection (peer/bulk-client.ts), this batch may be queued behind the one in progress to the same peer:
   * its request goes out at once, its answers come after that batch's, so the caller must go on reading that one.
   * A libp2p stream ignores it (a second batch is a second stream). @default false
   */
  queue?: boolean;
}

export interface FetchedChunk {
  hash: string;
  /** The chunk, verified against `hash`; only with status `ok`. */
  data?: Buffer;
  /**
   * `busy`: the peer is at its limits (or failed to read its disk: see `reason`); ask later or elsewhere. After the
   * first `busy`, every remaining hash of the call is `busy` too, without asking again.
   */
  status: 'ok' | 'not-found' | 'busy';
  /** The peer's explanation, when it answered with an error. */
  reason?: string;
}

type DialNode = Pick<Libp2p, 'dial'>;

/**
 * Fetches `hashes` from one peer over one stream, yielding each in request order as it arrives. Every body is
 * BLAKE3-verified before it is yielded; a mismatch throws RSW_ERR_CHUNK_CORRUPT naming the peer. About
 * PAUSE_AT_BYTES of decoded bodies (plus one chunk) are held here beyond what yamux buffers: past that the stream is
 * paused until the caller catches up.
 */
export async function* fetchChunks(
  node: DialNode,
  peer: PeerId | Multiaddr,
  hashes: string[],
  opts: FetchChunksOptions = {},
): AsyncGenerator<FetchedChunk> {
  for (const h of hashes) {
    if (!isHashHex(h)) throw new RswError('RSW_ERR_INVALID_HASH', `"${h.slice(0, 80)}" is not a chunk hash`);
  }
  if (hashes.length === 0) return;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const dialSignal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])]);
  const connection = await node.dial(peer, { signal: dialSignal });
  count('chunkClient.streams');
  const stream = await connection.newStream(CHUNK_PROTOCOL, { signal: dialSignal });
  // No await between opening the stream and attaching the listeners (LIBP2P-NOTES.md).
  const responses = new ResponseReader(stream, timeoutMs, opts.signal, opts.pool);
  const remote = connection.remotePeer.toString();

  const frames: string[][] = [];
  for (let i = 0; i < hashes.length; i += MAX_HASHES_PER_REQUEST) {
    frames.push(hashes.slice(i, i + MAX_HASHES_PER_REQUEST));
  }
  let framesSent = 0;
  let busy = false;
  const sendFrame = (): void => {
    if (busy || framesSent === frames.length) return;
    // Requests are ~2 KiB: queued in the stream even when send() asks for a drain.
    stream.send(encodeChunkRequest(frames[framesSent++]));
    if (framesSent === frames.length) stream.close().catch(() => {});
  };

  let done = false;
  try {
    while (framesSent < Math.min(PIPELINE_FRAMES, frames.length)) sendFrame();
    let yielded = 0;
    for (let f = 0; f < frames.length && !busy; f++) {
      for (let j = 0; j < frames[f].length; j++) {
        if (f >= framesSent) break; // busy stopped the requests: the rest is answered below
        const hash = frames[f][j];
        const response = await responses.next();
        if (j === frames[f].length - 1) sendFrame(); // keep PIPELINE_FRAMES frames at the server
        yielded++;
        yield checked(hash, response, remote, opts.pool);
        if (response.status === 'busy') {
          busy = true;
          break;
        }
      }
    }
    // The peer answers a stream it could not admit with `busy` throughout: no point asking on.
    for (const hash of hashes.slice(yielded)) yield { hash, status: 'busy' };
    if (busy && framesSent < frames.length) await stream.close().catch(() => {});
    done = true;
  } finally {
    responses.dispose();
    // Abandoned (caller broke off, error, abort): reset so the peer stops sending.
    if (!done) stream.abort(new Error('chunk fetch abandoned'));
  }
}

/** A response as the caller sees it: an `ok` body BLAKE3-checked (RSW_ERR_CHUNK_CORRUPT naming the peer if not). */
export function checked(
  hash: string,
  response: ChunkResponse,
  remote: string,
  pool?: BufferPool,
): FetchedChunk {
  switch (response.status) {
    case 'ok': {
      const data = response.body as Buffer;
      const actual = hashHex(data);
      if (actual !== hash) {
        pool?.release(data);
        throw new RswError(
          'RSW_ERR_CHUNK_CORRUPT',
          `peer ${remote} sent ${data.byteLength} bytes for chunk ${hash} that hash to ${actual}`,
        );
      }
      return { hash, data, status: 'ok' };
    }
    case 'not-found':
      return { hash, status: 'not-found' };
    case 'busy':
      return { hash, status: 'busy' };
    default:
      return { hash, status: 'busy', reason: response.reason };
  }
}

/**
 * Responses off the outbound stream, decoded as they arrive. Backpressure: yamux sends window updates as data
 * arrives, not as it is read, so the only brake is pause() — applied while PAUSE_AT_BYTES of decoded responses wait for the caller.
 */
class ResponseReader {
  readonly #stream: Stream;
  readonly #timeoutMs: number;
  readonly #signal: AbortSignal | undefined;
  readonly #decoder: ChunkResponseDecoder;
  readonly #ready: ChunkResponse[] = [];
  #readyBytes = 0;
  #failure: Error | undefined;
  readonly #wakeup = new Wakeup();
  #lastProgress = Date.now();
  #wantPaused = false;
  #flowQueued = false;

  constructor(stream: Stream, timeoutMs: number, signal: AbortSignal | undefined, pool?: BufferPool) {
    this.#decoder = new ChunkResponseDecoder(pool ? (n) => pool.acquire(n) : undefined);
    this.#stream = stream;
    this.#timeoutMs = timeoutMs;
    this.#signal = signal;
    stream.addEventListener('message', this.#onMessage);
    stream.addEventListener('remoteCloseWrite', this.#onWake);
    stream.addEventListener('close', this.#onClose);
    signal?.addEventListener('abort', this.#onAbort);
  }

  dispose(): void {
    this.#stream.removeEventListener('message', this.#onMessage);
    this.#stream.removeEventListener('remoteCloseWrite', this.#onWake);
    this.#stream.removeEventListener('close', this.#onClose);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }

  async next(): Promise<ChunkResponse> {
    this.#lastProgress = Date.now();
    for (;;) {
      if (this.#failure) throw this.#failure;
      const response = this.#ready.shift();
      if (response) {
        this.#readyBytes -= response.body?.byteLength ?? 0;
        if (this.#readyBytes < PAUSE_AT_BYTES) this.#setPaused(false);
        return response;
      }
      if (this.#stream.remoteWriteStatus !== 'writable' && this.#stream.readBufferLength === 0) {
        throw new ProtocolError(
          `peer closed the chunk stream before answering every request${this.#decoder.midResponse ? ' (mid-response)' : ''}`,
        );
      }
      this.#setPaused(false);
      const left = this.#lastProgress + this.#timeoutMs - Date.now();
      if (left <= 0) {
        const err = new ProtocolError(`no response bytes from peer for ${this.#timeoutMs} ms`);
        this.#stream.abort(err);
        throw err;
      }
      await this.#wakeup.wait(left);
    }
  }

  /**
   * pause()/resume() are applied in a microtask, never inside a 'message' dispatch: resume() dispatches the buffered
   * bytes synchronously and then re-enables yamux window updates, so a pause() from inside that dispatch would be
   * undone at the muxer while the stream still reads "paused" — and the read buffer would grow until the stream is
   * reset.
   */
  #setPaused(paused: boolean): void {
    this.#wantPaused = paused;
    if (this.#flowQueued) return;
    this.#flowQueued = true;
    queueMicrotask(() => {
      this.#flowQueued = false;
      const s = this.#stream;
      try {
        if (this.#wantPaused && s.readStatus === 'readable') s.pause();
        else if (!this.#wantPaused && s.readStatus === 'paused') s.resume();
      } catch {
        // closing/closed: nothing to pace
      }
    });
  }

  #onMessage = (evt: StreamMessageEvent): void => {
    this.#lastProgress = Date.now();
    try {
      for (const r of this.#decoder.push(evt.data)) {
        this.#ready.push(r);
        this.#readyBytes += r.body?.byteLength ?? 0;
      }
    } catch (e) {
      this.#failure ??= e as Error;
      queueMicrotask(() => this.#stream.abort(e as Error));
    }
    if (this.#readyBytes >= PAUSE_AT_BYTES) this.#setPaused(true);
    this.#wakeup.wake();
  };

  #onClose = (evt: Event & { error?: Error }): void => {
    if (evt.error) this.#failure ??= evt.error;
    this.#wakeup.wake();
  };

  #onAbort = (): void => {
    const reason = this.#signal?.reason;
    this.#failure ??= reason instanceof Error ? reason : new Error('chunk fetch aborted');
    this.#stream.abort(this.#failure);
    this.#wakeup.wake();
  };

  #onWake = (): void => {
    this.#wakeup.wake();
  };
}
