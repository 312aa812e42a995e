/*
 * DEV DOCS — every rackswarm wire codec lives in this file (after hypercore's lib/messages.js). Pure: bytes in,
 * values out, no I/O. Decoders are strict: a length over its cap, an unknown status or trailing garbage throws a
 * ProtocolError, and the caller resets the stream.
 *
 * chunk protocol, /rackswarm/chunk/1.0.0 (one stream carries a batch of requests, answered in order):
 *
 *   client → server   request frame, repeated:  u16 count (1..64) | count × 32-byte BLAKE3-256 chunk hash
 *   server → client   for each hash, in order:   u8 status | u32 length | `length` body bytes
 *                       ok (0)         body = the chunk, 1..MAX_CHUNK_BYTES
 *                       not-found (1)  empty (also: the chunk failed verification on the server's disk)
 *                       busy (2)       empty (over the server's concurrency limits: try later or elsewhere)
 *                       error (3)      UTF-8 reason, ≤ 1 KiB
 *   The client sends its next frame before the last one is answered (pipelining) and half-closes after its last
 *   frame; the server closes once it has answered everything. Integers are big-endian.
 *
 * have protocol, /rackswarm/have/1.0.0 (one long-lived stream per pair of neighbours, both directions; every message is
 * one length-prefixed frame, ≤ MAX_HAVE_FRAME_BYTES):
 *
 *   u8 type=1 bitfield | 32-byte image id | u32 chunk count | ceil(count/8) bytes, bit i (MSB first) = has chunk i
 *   u8 type=3 bitfield | 32-byte image id | u8 rack length (1..64) | rack label (printable ASCII) | then as type 1
 *   u8 type=2 have     | u16 n (1..4096) | n × u32 chunk index             (increments after the bitfield)
 *   u8 type=6 have     | u32 chunks the sender holds | then as type 2    (1.2.0 only: increments with a count)
 *   The opening bitfield is type 3 when the sender has a rack label (its neighbour's scheduler then knows which of its
 *   neighbours share its rack, peer/scheduler.ts rule 6), type 1 when it has none.
 *
 * A multi-MiB body is not one length-prefixed message: @libp2p/utils' byteStream/lpStream cap a message at 4 MiB
 * (LIBP2P-NOTES.md), so the body follows its small fixed header as raw bytes, decoded incrementally.
 */
import { RswError } from './errors.ts';
import { MAX_CHUNK_BYTES } from './manifest.ts';

export const CHUNK_PROTOCOL = '/rackswarm/chunk/1.0.0';

/** Hashes in one request frame. 64 × ~1 MiB keeps a frame's answer well above one round trip. */
export const MAX_HASHES_PER_REQUEST = 64;
export const CHUNK_HASH_BYTES = 32;
export const REQUEST_HEADER_BYTES = 2;
export const MAX_REQUEST_FRAME_BYTES = REQUEST_HEADER_BYTES + MAX_HASHES_PER_REQUEST * CHUNK_HASH_BYTES;
export const RESPONSE_HEADER_BYTES = 5;
export const MAX_ERROR_REASON_BYTES = 1024;

export type ChunkStatus = 'ok' | 'not-found' | 'busy' | 'error';
const STATUS_NAMES: readonly ChunkStatus[] = ['ok', 'not-found', 'busy', 'error'];

export interface ChunkResponseHeader {
  status: ChunkStatus;
  /** Bytes of body that follow the header. */
  length: number;
}

export interface ChunkResponse {
  status: ChunkStatus;
  /** The chunk, for `ok` (not yet verified: the receiver hashes it). */
  body?: Buffer;
  /** The server's reason, for `error`. */
  reason?: string;
}

/** The remote peer broke the wire protocol (bad length, unknown status, garbage). The stream it came on is reset. */
export class ProtocolError extends RswError {
  constructor(message: string) {
    super('RSW_ERR_PROTOCOL', message);
    this.name = 'ProtocolError';
  }
}

const HEX_RE = /^[0-9a-f]{64}$/;

// ---- chunk request ------------------------------------------------------------------------------------------------

/** One request frame for 1..64 chunk hashes (64 lowercase hex characters each). */
export function encodeChunkRequest(hashes: readonly string[]): Uint8Array {
  if (hashes.length < 1 || hashes.length > MAX_HASHES_PER_REQUEST) {
    throw new RangeError(`a chunk request holds 1..${MAX_HASHES_PER_REQUEST} hashes, not ${hashes.length}`);
  }
  const frame = Buffer.allocUnsafe(REQUEST_HEADER_BYTES + hashes.length * CHUNK_HASH_BYTES);
  frame.writeUInt16BE(hashes.length, 0);
  hashes.forEach((h, i) => {
    if (!HEX_RE.test(h)) throw new RangeError(`"${h.slice(0, 80)}" is not a chunk hash`);
    frame.write(h, REQUEST_HEADER_BYTES + i * CHUNK_HASH_BYTES, 'hex');
  });
  return frame;
}

/** The hash count a request frame's 2-byte header declares; throws unless it is 1..64. */
export function decodeChunkRequestHeader(header: Uint8Array): number {
  if (header.byteLength < REQUEST_HEADER_BYTES) throw new ProtocolError('truncated chunk request header');
  const count = (header[0] << 8) | header[1];
  if (count < 1 || count > MAX_HASHES_PER_REQUEST) {
    throw new ProtocolError(`chunk request declares ${count} hashes (allowed 1..${MAX_HASHES_PER_REQUEST})`);
  }
  return count;
}

/** Decodes exactly one whole request frame into hex hashes. */
export function decodeChunkRequest(frame: Uint8Array): string[] {
  const count = decodeChunkRequestHeader(frame);
  const expected = REQUEST_HEADER_BYTES + count * CHUNK_HASH_BYTES;
  if (frame.byteLength !== expected) {
    throw new ProtocolError(`chunk request of ${count} hashes is ${frame.byteLength} bytes, not ${expected}`);
  }
  const buf = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const hashes: string[] = [];
  for (let off = REQUEST_HEADER_BYTES; off < expected; off += CHUNK_HASH_BYTES) {
    hashes.push(buf.toString('hex', off, off + CHUNK_HASH_BYTES));
  }
  return hashes;
}

/**
 * Incremental request decoder for the server: feed it whatever arrives, get back the frames completed so far. A bad
 * count throws as soon as its two bytes are in, before the rest of the frame is waited for.
 */
export class ChunkRequestDecoder {
  readonly #pieces: Uint8Array[] = [];
  #buffered = 0;
  readonly #batchEnds: boolean;

  /**
   * `batchEnds`: a frame declaring 0 hashes is a batch end (core/bulk-wire.ts, bulk version 2), decoded as an empty
   * frame `[]`; otherwise a count of 0 is a protocol violation as on /rackswarm/chunk/1.0.0.
   */
  constructor(opts: { batchEnds?: boolean } = {}) {
    this.#batchEnds = opts.batchEnds === true;
  }

  /** Bytes received that do not yet form a whole frame. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Accepts a Uint8Array or a list of them (a libp2p message's Uint8ArrayList). */
  push(data: Uint8Array | Iterable<Uint8Array>): string[][] {
    for (const piece of asPieces(data)) {
      if (piece.byteLength === 0) continue;
      this.#pieces.push(piece);
      this.#buffered += piece.byteLength;
    }
    const frames: string[][] = [];
    while (this.#buffered >= REQUEST_HEADER_BYTES) {
      const header = this.#peek(REQUEST_HEADER_BYTES);
      if (this.#batchEnds && header[0] === 0 && header[1] === 0) {
        this.#take(REQUEST_HEADER_BYTES);
        frames.push([]);
        continue;
      }
      const count = decodeChunkRequestHeader(header);
      const size = REQUEST_HEADER_BYTES + count * CHUNK_HASH_BYTES;
      if (this.#buffered < size) break;
      frames.push(decodeChunkRequest(this.#take(size)));
    }
    return frames;
  }

  #peek(n: number): Uint8Array {
    const first = this.#pieces[0];
    if (first.byteLength >= n) return first.subarray(0, n);
    return Buffer.concat(this.#pieces).subarray(0, n);
  }

  #take(n: number): Uint8Array {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const piece = this.#pieces[0];
      const used = Math.min(piece.byteLength, n - filled);
      out.set(piece.subarray(0, used), filled);
      filled += used;
      if (used === piece.byteLength) this.#pieces.shift();
      else this.#pieces[0] = piece.subarray(used);
    }
    this.#buffered -= n;
    return out;
  }
}

// ---- chunk response -----------------------------------------------------------------------------------------------

export function encodeChunkResponseHeader(header: ChunkResponseHeader): Uint8Array {
  checkResponseLength(header.status, header.length, RangeError);
  const out = Buffer.allocUnsafe(RESPONSE_HEADER_BYTES);
  out[0] = STATUS_NAMES.indexOf(header.status);
  out.writeUInt32BE(header.length, 1);
  return out;
}

/** A whole response header plus body in one buffer (not-found, busy, error: small). */
export function encodeChunkResponse(status: Exclude<ChunkStatus, 'ok'>, reason = ''): Uint8Array {
  const body = Buffer.from(status === 'error' ? reason : '', 'utf8').subarray(0, MAX_ERROR_REASON_BYTES);
  return Buffer.concat([encodeChunkResponseHeader({ status, length: body.byteLength }), body]);
}

/** Decodes a 5-byte response header; throws on an unknown status or a length outside that status's range. */
export function decodeChunkResponseHeader(buf: Uint8Array): ChunkResponseHeader {
  if (buf.byteLength < RESPONSE_HEADER_BYTES) throw new ProtocolError('truncated chunk response header');
  const status = STATUS_NAMES[buf[0]];
  if (status === undefined) throw new ProtocolError(`unknown chunk response status ${buf[0]}`);
  const length = ((buf[1] << 24) >>> 0) + ((buf[2] << 16) | (buf[3] << 8) | buf[4]);
  checkResponseLength(status, length, ProtocolError);
  return { status, length };
}

function checkResponseLength(
  status: ChunkStatus,
  length: number,
  ErrorClass: new (message: string) => Error,
): void {
  if (!STATUS_NAMES.includes(status)) throw new ErrorClass(`unknown chunk response status ${status}`);
  const [min, max] =
    status === 'ok' ? [1, MAX_CHUNK_BYTES] : status === 'error' ? [0, MAX_ERROR_REASON_BYTES] : [0, 0];
  if (!Number.isSafeInteger(length) || length < min || length > max) {
    throw new ErrorClass(`chunk response "${status}" with a ${length}-byte body (allowed ${min}..${max})`);
  }
}

/**
 * Incremental response decoder for the client: feed it whatever arrives; it returns the responses completed so far.
 * A body is copied once, into a buffer of its declared size (≤ MAX_CHUNK_BYTES), as its pieces arrive; `alloc` makes
 * the buffers of `ok` bodies (e.g. a BufferPool's acquire, so bodies are reused instead of garbage collected).
 */
export class ChunkResponseDecoder {
  readonly #header = Buffer.alloc(RESPONSE_HEADER_BYTES);
  readonly #alloc: (length: number) => Buffer;
  #headerFilled = 0;
  #current: ChunkResponseHeader | undefined;
  #body: Buffer | undefined;
  #bodyFilled = 0;

  constructor(alloc: (length: number) => Buffer = Buffer.allocUnsafe) {
    this.#alloc = alloc;
  }

  /** True between a header and the end of its body: the stream must not end here. */
  get midResponse(): boolean {
    return this.#headerFilled > 0 || this.#current !== undefined;
  }

  /** Body bytes received so far for the response in progress. */
  get partialBodyBytes(): number {
    return this.#bodyFilled;
  }

  /** Accepts a Uint8Array or a list of them (a libp2p message's Uint8ArrayList). */
  push(data: Uint8Array | Iterable<Uint8Array>): ChunkResponse[] {
    const done: ChunkResponse[] = [];
    for (const piece of asPieces(data)) this.#pushPiece(piece, done);
    return done;
  }

  #pushPiece(data: Uint8Array, done: ChunkResponse[]): void {
    let off = 0;
    while (off < data.byteLength || (this.#current && this.#bodyFilled === this.#current.length)) {
      if (!this.#current) {
        const n = Math.min(RESPONSE_HEADER_BYTES - this.#headerFilled, data.byteLength - off);
        this.#header.set(data.subarray(off, off + n), this.#headerFilled);
        this.#headerFilled += n;
        off += n;
        if (this.#headerFilled < RESPONSE_HEADER_BYTES) break;
        this.#current = decodeChunkResponseHeader(this.#header);
        this.#headerFilled = 0;
        const { status, length } = this.#current;
        this.#body =
          length === 0 ? undefined : status === 'ok' ? this.#alloc(length) : Buffer.allocUnsafe(length);
        this.#bodyFilled = 0;
        continue;
      }
      const n = Math.min(this.#current.length - this.#bodyFilled, data.byteLength - off);
      if (n > 0 && this.#body) {
        this.#body.set(data.subarray(off, off + n), this.#bodyFilled);
        this.#bodyFilled += n;
        off += n;
      }
      if (this.#bodyFilled === this.#current.length) {
        done.push(finish(this.#current.status, this.#body));
        this.#current = undefined;
        this.#body = undefined;
        this.#bodyFilled = 0;
      }
    }
  }
}

function asPieces(data: Uint8Array | Iterable<Uint8Array>): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data;
}

function finish(status: ChunkStatus, body: Buffer | undefined): ChunkResponse {
  if (status === 'ok') return { status, body };
  if (status === 'error') return { status, reason: body ? body.toString('utf8') : '' };
  return { status };
}

// ---- have exchange ------------------------------------------------------------------------------------------------

export const HAVE_PROTOCOL = '/rackswarm/have/1.0.0';
/**
 * 1.0.0 and, between rack-mates, import intents (types 4 and 5): a node that asks a peer in another rack for chunks
 * says so to its rack-mates, so they do not pull the same chunks across the spine at the same time (scheduler rule 6).
 */
export const HAVE_PROTOCOL_INTENTS = '/rackswarm/have/1.1.0';
/**
 * 1.1.0 and haves that say how many chunks their sender holds (type 6): a neighbour's count, which its haves alone do
 * not give (a have is not sent to a neighbour holding the chunk), for the scheduler's pace (peer/scheduler.ts
 * `behindShare`: a node behind its neighbours asks again sooner after `busy`).
 */
export const HAVE_PROTOCOL_COUNTED = '/rackswarm/have/1.2.0';
/**
 * Every have protocol version a node speaks, newest first (the order a dial offers them in). One list for the have
 * exchange and for the streams whose small frames draw no window update each (cli/p2p-node.ts): when 1.2.0 was added
 * in session 13 the latter still listed 1.0.0 and 1.1.0 only, so every have stream went back to one window update per
 * frame (~1,100 per node at N = 16, RSW_COUNTERS; docs/BENCHMARKS.md "Session 14").
 */
export const HAVE_PROTOCOLS: readonly string[] = [
  HAVE_PROTOCOL_COUNTED,
  HAVE_PROTOCOL_INTENTS,
  HAVE_PROTOCOL,
];
/** Indices in one `have` frame. */
export const MAX_HAVE_INDICES = 4096;
/** A rack label in the have exchange's opening message: as in an announce (core/tracker-messages.ts). */
export const MAX_RACK_BYTES = 64;
const RACK_RE = /^[\x20-\x7e]{1,64}$/;
/**
 * A bitfield for 4 Mi chunks (~2 TiB of image at 512 KiB) and a rack label fit; anything larger is refused before it
 * is read.
 */
export const MAX_HAVE_FRAME_BYTES = 1 + 32 + 1 + MAX_RACK_BYTES + 4 + (4 * 1024 * 1024) / 8;

export type HaveMessage =
  | { type: 'bitfield'; imageId: string; count: number; bits: Uint8Array; rack?: string }
  /** `held`: the chunks the sender holds, with the have (type 6, 1.2.0 only). */
  | { type: 'have'; indices: number[]; held?: number }
  /** The sender is fetching these chunks from another rack (`on`), or no longer is without having them (1.1.0). */
  | { type: 'importing'; indices: number[]; on: boolean };

/** The opening message; with `rack` (1..64 printable ASCII characters) the sender says which rack it is in. */
export function encodeBitfield(
  imageId: string,
  count: number,
  has: (i: number) => boolean,
  rack?: string,
): Uint8Array {
  if (!HEX_RE.test(imageId)) throw new ProtocolError('image id is not 64 hex digits');
  if (rack !== undefined && !RACK_RE.test(rack))
    throw new ProtocolError('rack label: 1..64 printable ASCII characters');
  const head = rack === undefined ? 37 : 38 + rack.length;
  const out = new Uint8Array(head + Math.ceil(count / 8));
  if (out.length > MAX_HAVE_FRAME_BYTES) throw new ProtocolError('bitfield too large');
  out[0] = rack === undefined ? 1 : 3;
  out.set(Buffer.from(imageId, 'hex'), 1);
  if (rack !== undefined) {
    out[33] = rack.length;
    out.set(Buffer.from(rack, 'latin1'), 34);
  }
  new DataView(out.buffer).setUint32(head - 4, count);
  for (let i = 0; i < count; i++) if (has(i)) out[head + (i >> 3)] |= 0x80 >> (i & 7);
  return out;
}

/** A have; with `held` (1.2.0 only) a type 6 that also says how many chunks the sender holds. */
export function encodeHave(indices: readonly number[], held?: number): Uint8Array {
  if (held === undefined) return encodeIndices(2, indices);
  if (!(Number.isInteger(held) && held >= 0 && held <= 0xffffffff))
    throw new ProtocolError('have: held is a u32');
  const body = encodeIndices(2, indices);
  const out = new Uint8Array(4 + body.length);
  out[0] = 6;
  new DataView(out.buffer).setUint32(1, held);
  out.set(body.subarray(1), 5);
  return out;
}

/** An import intent (`on`) or its end (1.1.0 only): type 4 or 5, laid out as a have. */
export function encodeImporting(indices: readonly number[], on: boolean): Uint8Array {
  return encodeIndices(on ? 4 : 5, indices);
}

function encodeIndices(type: number, indices: readonly number[]): Uint8Array {
  if (indices.length < 1 || indices.length > MAX_HAVE_INDICES)
    throw new ProtocolError('have: 1..4096 indices');
  const out = new Uint8Array(3 + 4 * indices.length);
  const view = new DataView(out.buffer);
  out[0] = type;
  view.setUint16(1, indices.length);
  indices.forEach((idx, k) => {
    view.setUint32(3 + 4 * k, idx);
  });
  return out;
}

/** Decodes one have-protocol frame strictly; `maxCount` is the receiver's chunk count (indices must be below it). */
export function decodeHaveMessage(frame: Uint8Array, maxCount: number): HaveMessage {
  if (frame.byteLength < 1 || frame.byteLength > MAX_HAVE_FRAME_BYTES)
    throw new ProtocolError('have frame size');
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame[0] === 1 || frame[0] === 3) {
    let head = 37;
    let rack: string | undefined;
    if (frame[0] === 3) {
      if (frame.byteLength < 34) throw new ProtocolError('bitfield truncated');
      const len = frame[33];
      if (len < 1 || len > MAX_RACK_BYTES) throw new ProtocolError('rack label length');
      head = 38 + len;
      if (frame.byteLength < head) throw new ProtocolError('bitfield truncated');
      rack = Buffer.from(frame.subarray(34, 34 + len)).toString('latin1');
      if (!RACK_RE.test(rack)) throw new ProtocolError('rack label: not printable ASCII');
    }
    if (frame.byteLength < head) throw new ProtocolError('bitfield truncated');
    const count = view.getUint32(head - 4);
    if (count !== maxCount)
      throw new ProtocolError(`bitfield for ${count} chunks, the image has ${maxCount}`);
    if (frame.byteLength !== head + Math.ceil(count / 8)) throw new ProtocolError('bitfield length');
    const imageId = Buffer.from(frame.subarray(1, 33)).toString('hex');
    const bits = frame.subarray(head);
    return rack === undefined
      ? { type: 'bitfield', imageId, count, bits }
      : { type: 'bitfield', imageId, count, bits, rack };
  }
  if (frame[0] === 2 || frame[0] === 4 || frame[0] === 5 || frame[0] === 6) {
    // type 6: a u32 count before type 2's layout
    const at = frame[0] === 6 ? 5 : 1;
    if (frame.byteLength < at + 2) throw new ProtocolError('have truncated');
    const n = view.getUint16(at);
    if (n < 1 || n > MAX_HAVE_INDICES || frame.byteLength !== at + 2 + 4 * n)
      throw new ProtocolError('have length');
    const indices: number[] = new Array(n);
    for (let k = 0; k < n; k++) {
      const idx = view.getUint32(at + 2 + 4 * k);
      if (idx >= maxCount) throw new ProtocolError(`have index ${idx} out of range`);
      indices[k] = idx;
    }
    if (frame[0] === 6) {
      const held = view.getUint32(1);
      if (held > maxCount) throw new ProtocolError(`have: holds ${held} of ${maxCount} chunks`);
      return { type: 'have', indices, held };
    }
    return frame[0] === 2 ? { type: 'have', indices } : { type: 'importing', indices, on: frame[0] === 4 };
  }
  throw new ProtocolError(`unknown have message type ${frame[0]}`);
}

/** Indices set in a bitfield. */
export function bitfieldIndices(bits: Uint8Array, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) out.push(i);
  return out;
}

// ---- length prefixes (lpStream) -----------------------------------------------------------------------------------

/**
 * The varint length decoder for @libp2p/utils' lpStream (have and tracker protocols), refusing a prefix longer than
 * `maxDataLength` needs. lpStream retries its decoder one byte at a time while it throws RangeError and checks its
 * own maxLengthLength only after a successful decode, so with the default decoder an endless run of bytes ≥ 0x80 is
 * buffered forever, one list entry per byte (test/integration/protocol-abuse.test.ts sends one).
 */
export function boundedLengthDecoder(maxDataLength: number): (data: { subarray(): Uint8Array }) => number {
  let maxBytes = 1;
  while (maxDataLength >= 128 ** maxBytes) maxBytes++;
  return (data) => {
    const bytes = data.subarray();
    let value = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (i >= maxBytes) throw new ProtocolError(`length prefix too long: over ${maxBytes} bytes`);
      value += (bytes[i] & 0x7f) * 128 ** i;
      if (bytes[i] < 0x80) return value;
    }
    // lpStream reads another byte on a RangeError: the prefix is not complete yet.
    throw new RangeError('incomplete varint');
  };
}
