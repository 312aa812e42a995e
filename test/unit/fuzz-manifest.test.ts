import { createPrivateKey, createPublicKey } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ChannelPointer,
  decodeChannelPointer,
  encodeChannelPointer,
  MAX_CHANNEL_ENVELOPE_BYTES,
  openSignedChannel,
  parseChannelRef,
  peekChannelPointer,
  signChannelPointer,
} from '../../core/channel.ts';
import { generatePublisherKeys } from '../../core/keys.ts';
import {
  decodeManifest,
  encodeManifest,
  IMAGE_FORMATS,
  MAX_CHUNK_BYTES,
  type Manifest,
  parseVersion,
} from '../../core/manifest.ts';
import {
  createSignedManifest,
  envelopeCanonical,
  envelopeSigner,
  openSignedManifest,
  signManifest,
} from '../../core/signed-manifest.ts';
import { hexHash, mutated, onlyTypedErrors } from '../helpers/fuzz.ts';

// Property-based fuzzing (issue 9, item 13) of the manifest, signed-manifest and channel-pointer parsers: anything
// in gives a value or an RswError with the parser's documented code, and valid encodings round-trip.

const MAX_BYTES = 64 * 1024;
const pair = generatePublisherKeys();
const priv = createPrivateKey(pair.privatePem);
const pub = createPublicKey(pair.publicPem);
const other = createPublicKey(generatePublisherKeys().publicPem);

const imageName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/).filter((s) => !s.includes('..'));
const channelName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter((s) => !s.includes('..'));

const manifestArb: fc.Arbitrary<Manifest> = fc
  .record({
    name: imageName,
    version: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    format: fc.constantFrom(...IMAGE_FORMATS),
    chunks: fc.array(fc.record({ length: fc.integer({ min: 1, max: MAX_CHUNK_BYTES }), hash: hexHash }), {
      minLength: 1,
      maxLength: 20,
    }),
    // Encrypted images (encoding 2): a key id, and every sealed chunk longer than the cipher's 48 bytes.
    keyId: fc.option(hexHash.map((h) => h.slice(0, 32))),
  })
  .map(({ chunks, keyId, ...m }) => {
    let offset = 0;
    const refs = chunks.map((c) => {
      const ref = { offset, ...c, length: keyId ? Math.max(49, c.length) : c.length };
      offset += ref.length;
      return ref;
    });
    return {
      ...m,
      size: offset,
      chunks: refs,
      ...(keyId ? { encryption: { cipher: 'chunk-v1' as const, keyId } } : {}),
    };
  });

const pointerArb: fc.Arbitrary<ChannelPointer> = fc
  .record({
    name: imageName,
    channel: channelName,
    version: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    manifestId: hexHash,
    sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    issuedAt: fc.integer({ min: 0, max: 2 ** 50 }),
    ttl: fc.integer({ min: 1, max: 2 ** 40 }),
  })
  .map(({ ttl, ...p }) => ({ ...p, expiresAt: p.issuedAt + ttl }));

const MANIFEST_CODES = ['RSW_ERR_MANIFEST_INVALID', 'RSW_ERR_MANIFEST_TOO_LARGE'];
const OPEN_CODES = [...MANIFEST_CODES, 'RSW_ERR_UNTRUSTED_KEY', 'RSW_ERR_SIGNATURE_INVALID'];
const CHANNEL_CODES = [
  'RSW_ERR_INVALID_CHANNEL',
  'RSW_ERR_UNTRUSTED_KEY',
  'RSW_ERR_SIGNATURE_INVALID',
  'RSW_ERR_CHANNEL_EXPIRED',
];

describe('fuzz: manifest parser', () => {
  it('valid manifests round-trip through their canonical bytes', () => {
    fc.assert(
      fc.property(manifestArb, (m) => {
        expect(decodeManifest(encodeManifest(m), MAX_BYTES)).toEqual(m);
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary and mutated bytes give a manifest that re-encodes to them, or RSW_ERR_MANIFEST_*', () => {
    fc.assert(
      fc.property(mutated(manifestArb.map(encodeManifest)), (bytes) => {
        const r = onlyTypedErrors(() => decodeManifest(bytes, MAX_BYTES), MANIFEST_CODES);
        // Exactly one encoding per manifest: whatever decodes is the canonical form of what came out.
        if (!(r instanceof Error)) expect(encodeManifest(r).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('an oversized input is refused by its length before any field is read', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 65, maxLength: 300 }), (bytes) => {
        expect(onlyTypedErrors(() => decodeManifest(bytes, 64))).toMatchObject({
          code: 'RSW_ERR_MANIFEST_TOO_LARGE',
        });
      }),
      { numRuns: 100 },
    );
  });

  it('version text parses to a safe integer ≥ 1 or RSW_ERR_INVALID_VERSION', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.nat().map(String), fc.stringMatching(/^[0-9]{1,20}$/)), (text) => {
        const v = onlyTypedErrors(() => parseVersion(text), ['RSW_ERR_INVALID_VERSION']);
        if (typeof v === 'number') expect(Number.isSafeInteger(v) && v >= 1).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('fuzz: signed-manifest opener', () => {
  const validEnvelope = manifestArb.map((m) => createSignedManifest(m, priv).envelope);

  it('valid envelopes open to their manifest under the pinned key, and only under it', () => {
    fc.assert(
      fc.property(manifestArb, (m) => {
        const { envelope, id } = createSignedManifest(m, priv);
        const opened = openSignedManifest(envelope, [pub], { maxBytes: MAX_BYTES });
        expect(opened.manifest).toEqual(m);
        expect(opened.id).toBe(id);
        expect(
          onlyTypedErrors(() => openSignedManifest(envelope, [other], { maxBytes: MAX_BYTES })),
        ).toMatchObject({
          code: 'RSW_ERR_UNTRUSTED_KEY',
        });
      }),
      { numRuns: 50 },
    );
  });

  it('arbitrary and mutated envelopes never open except byte-identical to what was signed', () => {
    fc.assert(
      fc.property(mutated(validEnvelope), (bytes) => {
        const r = onlyTypedErrors(
          () => openSignedManifest(bytes, [pub], { maxBytes: MAX_BYTES }),
          OPEN_CODES,
        );
        if (!(r instanceof Error)) expect(r.envelope.equals(Buffer.from(bytes))).toBe(true);
        onlyTypedErrors(() => envelopeCanonical(bytes), MANIFEST_CODES);
        onlyTypedErrors(() => envelopeSigner(bytes), [...MANIFEST_CODES, 'RSW_ERR_KEY_INVALID']);
      }),
      { numRuns: 400 },
    );
  });

  it('garbage validly signed by the pinned key still parses strictly (the parser does not trust the signer)', () => {
    fc.assert(
      fc.property(mutated(manifestArb.map(encodeManifest)), (canonical) => {
        const envelope = signManifest(canonical, priv);
        const r = onlyTypedErrors(
          () => openSignedManifest(envelope, [pub], { maxBytes: MAX_BYTES }),
          OPEN_CODES,
        );
        if (!(r instanceof Error))
          expect(encodeManifest(r.manifest).equals(Buffer.from(canonical))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('fuzz: channel pointer parser', () => {
  it('valid pointers round-trip, signed and unsigned', () => {
    fc.assert(
      fc.property(pointerArb, (p) => {
        expect(decodeChannelPointer(encodeChannelPointer(p))).toEqual(p);
        const { envelope } = signChannelPointer(p, priv);
        expect(openSignedChannel(envelope, [pub], p.issuedAt).pointer).toEqual(p);
        expect(onlyTypedErrors(() => openSignedChannel(envelope, [pub], p.expiresAt))).toMatchObject({
          code: 'RSW_ERR_CHANNEL_EXPIRED',
        });
        expect(parseChannelRef(`${p.name}:${p.channel}`)).toEqual({ name: p.name, channel: p.channel });
      }),
      { numRuns: 100 },
    );
  });

  it('arbitrary and mutated pointer bytes decode canonically or give RSW_ERR_INVALID_CHANNEL', () => {
    fc.assert(
      fc.property(mutated(pointerArb.map(encodeChannelPointer)), (bytes) => {
        const r = onlyTypedErrors(
          () => decodeChannelPointer(Buffer.from(bytes)),
          ['RSW_ERR_INVALID_CHANNEL'],
        );
        if (!(r instanceof Error)) expect(encodeChannelPointer(r).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('arbitrary and mutated envelopes open only byte-identical, else a channel code', () => {
    const valid = pointerArb.map((p) => signChannelPointer(p, priv).envelope);
    fc.assert(
      fc.property(mutated(valid), fc.nat(), (bytes, now) => {
        onlyTypedErrors(() => openSignedChannel(bytes, [pub], now), CHANNEL_CODES);
        onlyTypedErrors(() => openSignedChannel(bytes, () => pub, now), CHANNEL_CODES);
        onlyTypedErrors(() => peekChannelPointer(bytes), ['RSW_ERR_INVALID_CHANNEL']);
      }),
      { numRuns: 400 },
    );
    expect(
      onlyTypedErrors(() => openSignedChannel(new Uint8Array(MAX_CHANNEL_ENVELOPE_BYTES + 1), [pub], 0)),
    ).toMatchObject({ code: 'RSW_ERR_INVALID_CHANNEL' });
  });

  it('NAME:CHANNEL references parse or give a name or channel code', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.tuple(imageName, fc.string()).map(([a, b]) => `${a}:${b}`),
        ),
        (ref) => {
          onlyTypedErrors(() => parseChannelRef(ref), ['RSW_ERR_INVALID_CHANNEL', 'RSW_ERR_INVALID_NAME']);
        },
      ),
      { numRuns: 500 },
    );
  });
});
