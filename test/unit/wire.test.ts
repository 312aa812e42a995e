import { describe, expect, it } from 'vitest';
import { BULK_BATCH_END, decodeBulkHello, encodeBulkHello } from '../../core/bulk-wire.ts';
import { hashHex } from '../../core/hash.ts';
import { MAX_CHUNK_BYTES } from '../../core/manifest.ts';
import {
  bitfieldIndices,
  ChunkRequestDecoder,
  type ChunkResponse,
  ChunkResponseDecoder,
  decodeChunkRequest,
  decodeChunkRequestHeader,
  decodeChunkResponseHeader,
  decodeHaveMessage,
  encodeBitfield,
  encodeChunkRequest,
  encodeChunkResponse,
  encodeChunkResponseHeader,
  encodeHave,
  encodeImporting,
  MAX_ERROR_REASON_BYTES,
  MAX_HASHES_PER_REQUEST,
  MAX_HAVE_FRAME_BYTES,
  ProtocolError,
  RESPONSE_HEADER_BYTES,
} from '../../core/wire.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const hashes = (n: number) => Array.from({ length: n }, (_, i) => hashHex(Buffer.from(`chunk ${i}`)));

/** Feeds `bytes` to `push` in pieces of `size` bytes, collecting what it returns. */
function feed<T>(bytes: Uint8Array, size: number, push: (piece: Uint8Array) => T[]): T[] {
  const out: T[] = [];
  for (let off = 0; off < bytes.byteLength; off += size) out.push(...push(bytes.subarray(off, off + size)));
  return out;
}

function header(status: number, length: number): Buffer {
  const b = Buffer.alloc(RESPONSE_HEADER_BYTES);
  b[0] = status;
  b.writeUInt32BE(length, 1);
  return b;
}

describe('chunk request codec', () => {
  it('round-trips 1 and 64 hashes', () => {
    for (const n of [1, MAX_HASHES_PER_REQUEST]) {
      const frame = encodeChunkRequest(hashes(n));
      expect(frame.byteLength).toBe(2 + 32 * n);
      expect(decodeChunkRequestHeader(frame)).toBe(n);
      expect(decodeChunkRequest(frame)).toEqual(hashes(n));
    }
  });

  it('refuses to encode 0 or 65 hashes, or a string that is not a hash', () => {
    expect(() => encodeChunkRequest([])).toThrow(RangeError);
    expect(() => encodeChunkRequest(hashes(65))).toThrow(RangeError);
    expect(() => encodeChunkRequest(['ABCD'])).toThrow(RangeError);
    expect(() => encodeChunkRequest([hashes(1)[0].toUpperCase()])).toThrow(RangeError);
  });

  it('rejects declared counts of 0, 65 and 65535, and frames of the wrong length', () => {
    for (const count of [0, 65, 0xffff]) {
      expect(() => decodeChunkRequestHeader(Buffer.from([count >> 8, count & 0xff]))).toThrow(ProtocolError);
    }
    expect(() => decodeChunkRequestHeader(Buffer.from([1]))).toThrow(ProtocolError);
    const frame = Buffer.from(encodeChunkRequest(hashes(2)));
    expect(() => decodeChunkRequest(frame.subarray(0, frame.length - 1))).toThrow(ProtocolError);
    expect(() => decodeChunkRequest(Buffer.concat([frame, Buffer.from([0])]))).toThrow(ProtocolError);
  });

  it('decodes frames incrementally, whatever the piece boundaries', () => {
    const frames = [hashes(3), hashes(64), hashes(1)];
    const bytes = Buffer.concat(frames.map(encodeChunkRequest));
    for (const size of [1, 7, 33, 100, bytes.length]) {
      const d = new ChunkRequestDecoder();
      expect(feed(bytes, size, (p) => d.push(p))).toEqual(frames);
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('takes a list of pieces (a Uint8ArrayList) in one push and keeps a partial frame', () => {
    const bytes = Buffer.concat([
      encodeChunkRequest(hashes(2)),
      encodeChunkRequest(hashes(5)).subarray(0, 10),
    ]);
    const d = new ChunkRequestDecoder();
    expect(d.push([bytes.subarray(0, 5), bytes.subarray(5, 40), bytes.subarray(40)])).toEqual([hashes(2)]);
    expect(d.bufferedBytes).toBe(10);
  });

  it('throws on garbage as soon as a bad count is in, without waiting for the rest', () => {
    const d = new ChunkRequestDecoder();
    expect(() => d.push(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(ProtocolError);
    const d2 = new ChunkRequestDecoder();
    expect(d2.push(Buffer.from([0xff]))).toEqual([]);
    expect(() => d2.push(Buffer.from([0xff]))).toThrow(/65535 hashes/);
  });

  it('with batch ends (bulk version 2) decodes a zero-count frame as [], anywhere and however split', () => {
    const end = Buffer.from(BULK_BATCH_END);
    const bytes = Buffer.concat([
      encodeChunkRequest(hashes(3)),
      end,
      encodeChunkRequest(hashes(2)),
      end,
      end,
    ]);
    for (const size of [1, 3, 50, bytes.length]) {
      const d = new ChunkRequestDecoder({ batchEnds: true });
      expect(feed(bytes, size, (p) => d.push(p))).toEqual([hashes(3), [], hashes(2), [], []]);
      expect(d.bufferedBytes).toBe(0);
    }
    // without them (the libp2p chunk protocol, bulk version 1) a zero count is a violation
    expect(() => new ChunkRequestDecoder().push(end)).toThrow(/0 hashes/);
  });
});

describe('bulk hello', () => {
  it('carries version 2 by default, decodes 1 and 2, refuses any other', () => {
    const token = Buffer.alloc(32, 9);
    expect(decodeBulkHello(encodeBulkHello(token))).toEqual({ version: 2, token });
    expect(decodeBulkHello(encodeBulkHello(token, 1))).toEqual({ version: 1, token });
    const three = encodeBulkHello(token);
    three[4] = 3;
    expect(() => decodeBulkHello(three)).toThrow(/version 3/);
  });
});

describe('chunk response codec', () => {
  it('round-trips each status at its length limits', () => {
    const cases = [
      { status: 'ok', length: 1 },
      { status: 'ok', length: MAX_CHUNK_BYTES },
      { status: 'not-found', length: 0 },
      { status: 'busy', length: 0 },
      { status: 'error', length: 0 },
      { status: 'error', length: MAX_ERROR_REASON_BYTES },
    ] as const;
    for (const h of cases) expect(decodeChunkResponseHeader(encodeChunkResponseHeader(h))).toEqual(h);
  });

  it('refuses lengths outside each status range, unknown statuses and short headers', () => {
    expect(() => encodeChunkResponseHeader({ status: 'ok', length: 0 })).toThrow(RangeError);
    expect(() => encodeChunkResponseHeader({ status: 'ok', length: MAX_CHUNK_BYTES + 1 })).toThrow(
      RangeError,
    );
    expect(() => encodeChunkResponseHeader({ status: 'busy', length: 1 })).toThrow(RangeError);
    expect(() => decodeChunkResponseHeader(header(0, 0))).toThrow(ProtocolError);
    expect(() => decodeChunkResponseHeader(header(0, MAX_CHUNK_BYTES + 1))).toThrow(ProtocolError);
    expect(() => decodeChunkResponseHeader(header(0, 0xffffffff))).toThrow(ProtocolError);
    expect(() => decodeChunkResponseHeader(header(1, 5))).toThrow(ProtocolError);
    expect(() => decodeChunkResponseHeader(header(2, 1))).toThrow(ProtocolError);
    expect(() => decodeChunkResponseHeader(header(3, MAX_ERROR_REASON_BYTES + 1))).toThrow(ProtocolError);
    expect(() => decodeChunkResponseHeader(header(4, 0))).toThrow(/unknown chunk response status 4/);
    expect(() => decodeChunkResponseHeader(header(0, 1).subarray(0, 4))).toThrow(ProtocolError);
  });

  it('truncates an error reason to 1 KiB', () => {
    const r = new ChunkResponseDecoder().push(encodeChunkResponse('error', 'x'.repeat(5000)));
    expect(r).toEqual([{ status: 'error', reason: 'x'.repeat(MAX_ERROR_REASON_BYTES) }]);
  });

  it('decodes a mixed sequence incrementally, whatever the piece boundaries', () => {
    const a = pseudoRandomBytes(3000, 1);
    const b = pseudoRandomBytes(1, 2);
    const bytes = Buffer.concat([
      encodeChunkResponseHeader({ status: 'ok', length: a.length }),
      a,
      encodeChunkResponse('not-found'),
      encodeChunkResponse('busy'),
      encodeChunkResponseHeader({ status: 'ok', length: 1 }),
      b,
      encodeChunkResponse('error', 'disk on fire'),
    ]);
    const expected: ChunkResponse[] = [
      { status: 'ok', body: a },
      { status: 'not-found' },
      { status: 'busy' },
      { status: 'ok', body: b },
      { status: 'error', reason: 'disk on fire' },
    ];
    for (const size of [1, 4, 5, 6, 999, bytes.length]) {
      const d = new ChunkResponseDecoder();
      expect(feed(bytes, size, (p) => d.push(p))).toEqual(expected);
      expect(d.midResponse).toBe(false);
    }
  });

  it('reports a response in progress, and throws on a garbage header', () => {
    const d = new ChunkResponseDecoder();
    d.push(Buffer.concat([encodeChunkResponseHeader({ status: 'ok', length: 10 }), Buffer.alloc(4)]));
    expect(d.midResponse).toBe(true);
    expect(d.partialBodyBytes).toBe(4);
    expect(() => new ChunkResponseDecoder().push(Buffer.from('HTTP/1.1 200 OK'))).toThrow(ProtocolError);
  });
});

describe('have exchange codec', () => {
  const id = 'ab'.repeat(32);

  it('round-trips a bitfield and increments', () => {
    const have = new Set([0, 3, 8, 9, 99]);
    const frame = encodeBitfield(id, 100, (i) => have.has(i));
    const msg = decodeHaveMessage(frame, 100);
    expect(msg).toMatchObject({ type: 'bitfield', imageId: id, count: 100 });
    expect(bitfieldIndices((msg as { bits: Uint8Array }).bits, 100)).toEqual([0, 3, 8, 9, 99]);
    expect(decodeHaveMessage(encodeHave([5, 1, 42]), 100)).toEqual({ type: 'have', indices: [5, 1, 42] });
  });

  it('round-trips counted haves (1.2.0) and refuses a count above the image’s', () => {
    expect(decodeHaveMessage(encodeHave([5, 1], 17), 100)).toEqual({
      type: 'have',
      indices: [5, 1],
      held: 17,
    });
    expect(decodeHaveMessage(encodeHave([99], 100), 100)).toEqual({ type: 'have', indices: [99], held: 100 });
    expect(encodeHave([5, 1], 17)[0]).toBe(6);
    expect(() => decodeHaveMessage(encodeHave([5], 101), 100)).toThrow(/holds 101 of 100/);
    expect(() => decodeHaveMessage(encodeHave([100], 3), 100)).toThrow(/out of range/);
    expect(() => decodeHaveMessage(encodeHave([1, 2], 3).subarray(0, 10), 100)).toThrow(/have length/);
    expect(() => decodeHaveMessage(encodeHave([1], 3).subarray(0, 6), 100)).toThrow(/have truncated/);
    expect(() => encodeHave([1], -1)).toThrow();
    expect(() => encodeHave([1], 1.5)).toThrow();
  });

  it('round-trips import intents (1.1.0) and refuses them out of range', () => {
    expect(decodeHaveMessage(encodeImporting([7, 2], true), 100)).toEqual({
      type: 'importing',
      indices: [7, 2],
      on: true,
    });
    expect(decodeHaveMessage(encodeImporting([99], false), 100)).toEqual({
      type: 'importing',
      indices: [99],
      on: false,
    });
    expect(() => decodeHaveMessage(encodeImporting([100], true), 100)).toThrow(/out of range/);
    expect(() => encodeImporting([], true)).toThrow();
  });

  it('refuses out-of-range indices, wrong counts, truncation and unknown types', () => {
    expect(() => decodeHaveMessage(encodeHave([100]), 100)).toThrow(/out of range/);
    expect(() =>
      decodeHaveMessage(
        encodeBitfield(id, 50, () => true),
        100,
      ),
    ).toThrow(/50 chunks/);
    expect(() => decodeHaveMessage(encodeHave([1, 2]).subarray(0, 6), 100)).toThrow(/have length/);
    expect(() => decodeHaveMessage(Uint8Array.of(9), 100)).toThrow(/unknown have message type/);
    expect(() => decodeHaveMessage(new Uint8Array(MAX_HAVE_FRAME_BYTES + 1), 100)).toThrow(/frame size/);
    expect(() => encodeHave([])).toThrow();
  });
});
