import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CHUNK_BYTES } from '../../core/manifest.ts';
import {
  bitfieldIndices,
  boundedLengthDecoder,
  ChunkRequestDecoder,
  ChunkResponseDecoder,
  type ChunkStatus,
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
  MAX_HAVE_INDICES,
  ProtocolError,
} from '../../core/wire.ts';
import { hexHash, mutated } from '../helpers/fuzz.ts';

// Property-based fuzzing (issue 9, item 13) of every wire codec in core/wire.ts: arbitrary bytes, fed whole or in
// arbitrary pieces, give values or a ProtocolError (RSW_ERR_PROTOCOL) and nothing else; valid encodings round-trip.

/** Runs `decode`; only a ProtocolError may escape it. */
function onlyProtocolErrors<T>(decode: () => T): T | ProtocolError {
  try {
    return decode();
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw new Error(`not a ProtocolError: ${String(e)}`, { cause: e });
    expect(e.code).toBe('RSW_ERR_PROTOCOL');
    return e;
  }
}

/** Cuts `bytes` at the given points (taken modulo its length) into consecutive pieces. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    pieces.push(bytes.subarray(prev, c));
    prev = c;
  }
  return pieces;
}

const requestArb = fc.array(hexHash, { minLength: 1, maxLength: MAX_HASHES_PER_REQUEST });
const cuts = fc.array(fc.nat(), { maxLength: 8 });
// Bodies are small here: a declared `ok` length is honoured by allocation only (≤ MAX_CHUNK_BYTES, checked below).
const responseArb = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((body) => ({ status: 'ok' as const, body })),
  fc.constantFrom('not-found' as const, 'busy' as const).map((status) => ({ status })),
  fc.string({ maxLength: 200 }).map((reason) => ({ status: 'error' as const, reason })),
);
type Resp = { status: ChunkStatus; body?: Uint8Array; reason?: string };
function encodeResponses(rs: Resp[]): Uint8Array {
  return Buffer.concat(
    rs.map((r) =>
      r.status === 'ok' && r.body
        ? Buffer.concat([encodeChunkResponseHeader({ status: 'ok', length: r.body.length }), r.body])
        : encodeChunkResponse(r.status as Exclude<ChunkStatus, 'ok'>, r.reason),
    ),
  );
}

describe('fuzz: chunk request codec', () => {
  it('valid frames round-trip whole and through the incremental decoder, however they are split', () => {
    fc.assert(
      fc.property(fc.array(requestArb, { minLength: 1, maxLength: 4 }), cuts, (frames, at) => {
        const bytes = Buffer.concat(frames.map(encodeChunkRequest));
        for (const f of frames) expect(decodeChunkRequest(encodeChunkRequest(f))).toEqual(f);
        const d = new ChunkRequestDecoder();
        const out = split(bytes, at).flatMap((p) => d.push(p));
        expect(out).toEqual(frames);
        expect(d.bufferedBytes).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('arbitrary bytes give frames or a ProtocolError, and the decoder never buffers more than one frame', () => {
    fc.assert(
      fc.property(mutated(requestArb.map(encodeChunkRequest)), cuts, (bytes, at) => {
        onlyProtocolErrors(() => decodeChunkRequest(bytes));
        onlyProtocolErrors(() => decodeChunkRequestHeader(bytes));
        const d = new ChunkRequestDecoder();
        onlyProtocolErrors(() => {
          for (const p of split(bytes, at)) {
            for (const f of d.push(p)) expect(f.every((h) => /^[0-9a-f]{64}$/.test(h))).toBe(true);
            expect(d.bufferedBytes).toBeLessThan(2 + MAX_HASHES_PER_REQUEST * 32);
          }
        });
      }),
      { numRuns: 1000 },
    );
  });
});

describe('fuzz: chunk response codec', () => {
  it('valid responses round-trip through the incremental decoder, however they are split', () => {
    fc.assert(
      fc.property(fc.array(responseArb, { minLength: 1, maxLength: 6 }), cuts, (rs, at) => {
        const d = new ChunkResponseDecoder();
        const out = split(encodeResponses(rs), at).flatMap((p) => d.push(p));
        expect(out.map((r) => r.status)).toEqual(rs.map((r) => r.status));
        out.forEach((r, i) => {
          const sent = rs[i];
          if (sent.status === 'ok') expect(Buffer.from(r.body ?? [])).toEqual(Buffer.from(sent.body ?? []));
          if (sent.status === 'error') {
            const reason = Buffer.from(sent.reason ?? '').subarray(0, MAX_ERROR_REASON_BYTES);
            expect(r.reason).toBe(reason.toString('utf8'));
          }
        });
        expect(d.midResponse).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary headers decode within their status limits or give a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 8 }), (bytes) => {
        const h = onlyProtocolErrors(() => decodeChunkResponseHeader(bytes));
        if (h instanceof Error) return;
        expect(encodeChunkResponseHeader(h)).toEqual(Buffer.from(bytes.subarray(0, 5)));
        const max = h.status === 'ok' ? MAX_CHUNK_BYTES : h.status === 'error' ? MAX_ERROR_REASON_BYTES : 0;
        expect(h.length).toBeLessThanOrEqual(max);
      }),
      { numRuns: 2000 },
    );
  });

  it('arbitrary streams give responses or a ProtocolError; no allocation exceeds the chunk cap', () => {
    fc.assert(
      fc.property(
        mutated(fc.array(responseArb, { minLength: 1, maxLength: 3 }).map(encodeResponses)),
        cuts,
        (bytes, at) => {
          let largest = 0;
          // A lying header may declare up to MAX_CHUNK_BYTES; hand out a view of one small buffer so the fuzz stays cheap.
          const scratch = Buffer.alloc(1024);
          const d = new ChunkResponseDecoder((n) => {
            largest = Math.max(largest, n);
            return n <= scratch.length ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
          });
          onlyProtocolErrors(() => {
            for (const p of split(bytes, at)) d.push(p);
          });
          expect(largest).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('fuzz: have protocol codec', () => {
  const countArb = fc.integer({ min: 1, max: 5000 });

  const rackArb = fc.option(fc.stringMatching(/^[\x20-\x7e]{1,64}$/), { nil: undefined });

  it('bitfields (with and without a rack label) and have messages round-trip', () => {
    fc.assert(
      fc.property(
        hexHash,
        rackArb,
        countArb.chain((count) =>
          fc.tuple(
            fc.constant(count),
            fc.uniqueArray(fc.nat({ max: count - 1 }), { maxLength: Math.min(count, 300) }),
            fc.array(fc.nat({ max: count - 1 }), { minLength: 1, maxLength: MAX_HAVE_INDICES }),
          ),
        ),
        (imageId, rack, [count, held, indices]) => {
          const set = new Set(held);
          const m = decodeHaveMessage(
            encodeBitfield(imageId, count, (i) => set.has(i), rack),
            count,
          );
          expect(m.type === 'bitfield' && m.imageId === imageId && m.count === count).toBe(true);
          expect(m.type === 'bitfield' ? m.rack : null).toBe(rack);
          if (m.type === 'bitfield')
            expect(bitfieldIndices(m.bits, count)).toEqual([...set].sort((a, b) => a - b));
          expect(decodeHaveMessage(encodeHave(indices), count)).toEqual({ type: 'have', indices });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses a rack label that is empty, too long or not printable ASCII', () => {
    const id = 'ab'.repeat(32);
    for (const rack of ['', 'x'.repeat(65), 'r\n1', 'räck'])
      expect(() => encodeBitfield(id, 8, () => true, rack)).toThrow(ProtocolError);
    const frame = encodeBitfield(id, 8, () => true, 'r1');
    for (const [at, byte] of [
      [33, 0],
      [33, 65],
      [34, 0x0a],
      [34, 0xe4],
    ])
      expect(() =>
        decodeHaveMessage(
          Uint8Array.from(frame, (b, k) => (k === at ? byte : b)),
          8,
        ),
      ).toThrow(ProtocolError);
  });

  it('arbitrary frames give a message within the receiver’s chunk count or a ProtocolError', () => {
    const valid = fc.oneof(
      fc
        .tuple(hexHash, countArb, rackArb)
        .map(([id, n, rack]) => encodeBitfield(id, n, (i) => i % 3 === 0, rack)),
      fc.array(fc.nat({ max: 200 }), { minLength: 1, maxLength: 50 }).map((is) => encodeHave(is)),
      fc
        .tuple(fc.array(fc.nat({ max: 200 }), { minLength: 1, maxLength: 50 }), fc.nat({ max: 300 }))
        .map(([indices, held]) => encodeHave(indices, held)),
      fc
        .tuple(fc.array(fc.nat({ max: 200 }), { minLength: 1, maxLength: 50 }), fc.boolean())
        .map(([indices, on]) => encodeImporting(indices, on)),
    );
    fc.assert(
      fc.property(mutated(valid), countArb, (bytes, count) => {
        const m = onlyProtocolErrors(() => decodeHaveMessage(bytes, count));
        if (m instanceof Error) return;
        if (m.type === 'have' || m.type === 'importing') {
          expect(m.indices.every((i) => i < count)).toBe(true);
          if (m.type === 'have' && m.held !== undefined) expect(m.held).toBeLessThanOrEqual(count);
        } else {
          expect(m.count).toBe(count);
          expect(bitfieldIndices(m.bits, count).every((i) => i < count)).toBe(true);
          if (m.rack !== undefined) expect(m.rack).toMatch(/^[\x20-\x7e]{1,64}$/);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('fuzz: bounded varint length prefix (lpStream)', () => {
  /** Unsigned LEB128, as @libp2p/utils writes length prefixes. */
  const varint = (n: number) => {
    const out: number[] = [];
    do {
      out.push((n % 128) | (n >= 128 ? 0x80 : 0));
      n = Math.floor(n / 128);
    } while (n > 0);
    return Uint8Array.from(out);
  };

  it('decodes every length up to the cap, and refuses a prefix longer than the cap needs', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), fc.nat(), (max, n) => {
        const decode = boundedLengthDecoder(max);
        const len = n % (max + 1);
        expect(decode(varint(len))).toBe(len);
        expect(() => decode(Uint8Array.from(Array(varint(max).length + 1).fill(0xff)))).toThrow(
          ProtocolError,
        );
      }),
      { numRuns: 1000 },
    );
  });

  it('arbitrary bytes: a length, RangeError while incomplete (lpStream reads on), or a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
        try {
          boundedLengthDecoder(MAX_HAVE_FRAME_BYTES)(bytes);
        } catch (e) {
          if (e instanceof RangeError) expect(bytes.every((b) => b >= 0x80) && bytes.length <= 3).toBe(true);
          else expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
