import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../core/errors.ts';
import {
  decodeAnnounceHave,
  decodeRequest,
  decodeResponse,
  encodeAnnounceHave,
  encodeMessage,
  MAX_ANNOUNCE_HAVE_BYTES,
  MAX_TRACKER_MESSAGE_BYTES,
} from '../../core/tracker-messages.ts';
import { nastyKey, onlyTypedErrors } from '../helpers/fuzz.ts';

// Property-based fuzzing (issue 9, item 13) of the tracker protocol's messages (core/tracker-messages.ts): arbitrary
// bytes and JSON give a request, a response, or an RswError with a registered code; the `have` bitfield round-trips.

const enc = new TextEncoder();
const json = fc.jsonValue({ maxDepth: 3 });
const objectish = fc.oneof(
  fc.dictionary(fc.oneof(fc.string(), nastyKey), json, { maxKeys: 6 }),
  fc.record({
    ok: fc.oneof(fc.constant(false), fc.constant(true), json),
    code: fc.oneof(nastyKey, fc.constantFrom(...Object.keys(ERRORS)), fc.string(), json),
    message: fc.oneof(fc.string(), json),
  }),
  fc.record({
    type: fc.constantFrom('announce', 'manifest', 'x'),
    announce: json,
    name: fc.oneof(fc.string(), json),
    version: fc.oneof(fc.constant('latest'), fc.integer(), fc.double(), json),
  }),
);
const messageBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.string().map((s) => enc.encode(s)),
  json.map((v) => enc.encode(JSON.stringify(v))),
  objectish.map((v) => enc.encode(JSON.stringify(v))),
);

describe('fuzz: tracker messages', () => {
  it('arbitrary bytes decode as a request or give RSW_ERR_PROTOCOL', () => {
    fc.assert(
      fc.property(messageBytes, (bytes) => {
        const r = onlyTypedErrors(() => decodeRequest(bytes), ['RSW_ERR_PROTOCOL']);
        if (r instanceof Error) return;
        if (r.type === 'announce') expect(typeof r.announce === 'object' && r.announce !== null).toBe(true);
        else if (r.type === 'image-key') expect(r.keyId).toMatch(/^[0-9a-f]{32}$/);
        else expect(r.version === 'latest' || Number.isSafeInteger(r.version)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('arbitrary responses are a success object or an RswError whose code is registered', () => {
    fc.assert(
      fc.property(messageBytes, (bytes) => {
        const r = onlyTypedErrors(() => decodeResponse(bytes));
        if (!(r instanceof Error)) expect(r.ok).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  // Found by the property above: `code in ERRORS` is true for "toString" or "__proto__", which made an RswError
  // with an unregistered code and an undefined HTTP status out of a hostile tracker's answer.
  it('regression: an error code naming an Object.prototype member is not taken as a registered code', () => {
    for (const code of ['toString', '__proto__', 'constructor']) {
      const e = onlyTypedErrors(() =>
        decodeResponse(enc.encode(JSON.stringify({ ok: false, code, message: 'x' }))),
      );
      expect(e).toMatchObject({ code: 'RSW_ERR_PROTOCOL' });
    }
  });

  it('messages over the cap are refused before parsing, both ways', () => {
    const big = new Uint8Array(MAX_TRACKER_MESSAGE_BYTES + 1).fill(0x20);
    expect(onlyTypedErrors(() => decodeRequest(big))).toMatchObject({ code: 'RSW_ERR_PROTOCOL' });
    expect(onlyTypedErrors(() => decodeResponse(big))).toMatchObject({ code: 'RSW_ERR_PROTOCOL' });
    expect(onlyTypedErrors(() => encodeMessage({ s: 'x'.repeat(MAX_TRACKER_MESSAGE_BYTES) }))).toMatchObject({
      code: 'RSW_ERR_PROTOCOL',
    });
  });

  it('valid requests round-trip', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({
            type: fc.constant('manifest' as const),
            name: fc.string(),
            version: fc.oneof(fc.constant('latest' as const), fc.nat()),
          }),
          fc.record({
            type: fc.constant('announce' as const),
            announce: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })),
          }),
        ),
        (req) => {
          expect(decodeRequest(encodeMessage(req))).toEqual(JSON.parse(JSON.stringify(req)));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('fuzz: the announce’s have bitfield', () => {
  it('round-trips for any chunk count under the cap', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20_000 }), fc.nat(), (count, seed) => {
        const has = (i: number) => ((i * 2654435761 + seed) >>> 0) % 3 === 0;
        const text = encodeAnnounceHave(count, has);
        expect(text).toBeDefined();
        const bits = decodeAnnounceHave(text ?? '', count);
        expect(bits).toBeDefined();
        const wrong = Array.from({ length: count }, (_, i) => i).filter(
          (i) => Boolean((bits?.[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== has(i),
        );
        expect(wrong).toEqual([]);
      }),
      { numRuns: 100 },
    );
    expect(encodeAnnounceHave(MAX_ANNOUNCE_HAVE_BYTES * 8 + 1, () => true)).toBeUndefined();
  });

  it('arbitrary strings decode to exactly ceil(count/8) bytes with no bit past count, or undefined', () => {
    const b64 = fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64'));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          b64,
          fc.tuple(b64, fc.string({ maxLength: 3 })).map(([a, b]) => a + b),
        ),
        fc.integer({ min: 0, max: 600 }),
        (text, count) => {
          const bits = decodeAnnounceHave(text, count);
          if (!bits) return;
          expect(bits.length).toBe(Math.ceil(count / 8));
          if (count % 8) expect(bits[bits.length - 1] & (0xff >> (count % 8))).toBe(0);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
