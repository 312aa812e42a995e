import { createPrivateKey, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import { generatePublisherKeys } from '../../core/keys.ts';
import {
  decodeManifest,
  encodeManifest,
  type Manifest,
  manifestId,
  parseVersion,
  validateImageName,
} from '../../core/manifest.ts';
import {
  checkNotRollback,
  createSignedManifest,
  openSignedManifest,
  signManifest,
} from '../../core/signed-manifest.ts';

const MiB = 1024 * 1024;
const CAP = { maxBytes: MiB };

function keyPair() {
  const pair = generatePublisherKeys();
  return { priv: createPrivateKey(pair.privatePem), pub: createPublicKey(pair.publicPem) };
}

function sampleManifest(chunks = 3): Manifest {
  const refs = Array.from({ length: chunks }, (_, i) => ({
    offset: i * 1000,
    length: 1000,
    hash: hashHex(Buffer.from(`chunk ${i}`)),
  }));
  return { name: 'debian-12.node', version: 7, format: 'squashfs', size: chunks * 1000, chunks: refs };
}

describe('manifest canonical bytes', () => {
  it('round-trips exactly and gives a stable id', () => {
    const m = sampleManifest();
    const bytes = encodeManifest(m);
    expect(decodeManifest(bytes, MiB)).toEqual(m);
    expect(encodeManifest(decodeManifest(bytes, MiB)).equals(bytes)).toBe(true);
    expect(manifestId(bytes)).toBe(manifestId(encodeManifest(sampleManifest())));
    expect(manifestId(bytes)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives different ids to manifests that differ in any field', () => {
    const base = manifestId(encodeManifest(sampleManifest()));
    const variants: Manifest[] = [
      { ...sampleManifest(), version: 8 },
      { ...sampleManifest(), name: 'debian-12.nodf' },
      { ...sampleManifest(), format: 'raw' },
    ];
    const swapped = sampleManifest();
    [swapped.chunks[0].hash, swapped.chunks[1].hash] = [swapped.chunks[1].hash, swapped.chunks[0].hash];
    variants.push(swapped);
    for (const v of variants) expect(manifestId(encodeManifest(v))).not.toBe(base);
  });

  it('refuses to encode an inconsistent manifest', () => {
    expect(() => encodeManifest({ ...sampleManifest(), size: 2999 })).toThrow(/add up to 3000/);
    const gap = sampleManifest();
    gap.chunks[1].offset = 1001;
    expect(() => encodeManifest(gap)).toThrow(/should start at 1000/);
    expect(() => encodeManifest({ ...sampleManifest(), chunks: [], size: 0 })).toThrow(/no chunks/);
  });

  it('applies the size cap before parsing anything', () => {
    const garbage = Buffer.alloc(MiB + 1, 0xff);
    expect(() => decodeManifest(garbage, MiB)).toThrow(
      expect.objectContaining({ code: 'RSW_ERR_MANIFEST_TOO_LARGE' }),
    );
  });

  it('rejects truncated, padded and garbage bytes', () => {
    const bytes = encodeManifest(sampleManifest());
    for (const bad of [
      bytes.subarray(0, bytes.length - 1),
      Buffer.concat([bytes, Buffer.alloc(1)]),
      Buffer.alloc(64),
    ]) {
      expect(() => decodeManifest(bad, MiB)).toThrow(
        expect.objectContaining({ code: 'RSW_ERR_MANIFEST_INVALID' }),
      );
    }
    const zeroLength = Buffer.from(bytes);
    zeroLength.writeUInt32BE(0, bytes.length - 36); // last chunk's length
    expect(() => decodeManifest(zeroLength, MiB)).toThrow(/out of range/);
  });
});

describe('image names and versions', () => {
  it.each(['a/b', '..', 'a..b', '.hidden', 'tab\there', 'nl\n', '', 'x'.repeat(129), 'ünïcode'])(
    'refuses the name %j',
    (name) => {
      expect(() => validateImageName(name)).toThrow(
        expect.objectContaining({ code: 'RSW_ERR_INVALID_NAME' }),
      );
    },
  );

  it.each(['debian-12', 'rocky9.3_compute', 'A', 'x'.repeat(128)])('accepts the name %j', (name) => {
    expect(() => validateImageName(name)).not.toThrow();
  });

  it.each(['0', '-1', '1.5', 'abc', '', '99999999999999999'])('refuses the version %j', (v) => {
    expect(() => parseVersion(v)).toThrow(expect.objectContaining({ code: 'RSW_ERR_INVALID_VERSION' }));
  });
});

describe('signed manifests', () => {
  it('verify against the pinned key and yield the manifest and id', () => {
    const { priv, pub } = keyPair();
    const signed = createSignedManifest(sampleManifest(), priv);
    const opened = openSignedManifest(signed.envelope, [pub], CAP);
    expect(opened.manifest).toEqual(sampleManifest());
    expect(opened.id).toBe(signed.id);
    expect(opened.publisher.equals(signed.publisher)).toBe(true);
  });

  it('refuse a manifest signed by a key that is not pinned', () => {
    const a = keyPair();
    const b = keyPair();
    const signed = createSignedManifest(sampleManifest(), a.priv);
    expect(() => openSignedManifest(signed.envelope, [b.pub], CAP)).toThrow(
      expect.objectContaining({ code: 'RSW_ERR_UNTRUSTED_KEY' }),
    );
  });

  it('detect tampering with any byte of the manifest or the signature', () => {
    const { priv, pub } = keyPair();
    const envelope = createSignedManifest(sampleManifest(), priv).envelope;
    // header bytes 0-5 are magic/encoding, 6-37 the key (tampering there makes it untrusted), 38-101 the signature.
    for (const at of [38, 70, 101, 102, 110, envelope.length - 1]) {
      const t = Buffer.from(envelope);
      t[at] ^= 0x01;
      expect(() => openSignedManifest(t, [pub], CAP), `byte ${at}`).toThrow(
        expect.objectContaining({ code: 'RSW_ERR_SIGNATURE_INVALID' }),
      );
    }
  });

  it('do not verify a signature made over the bare bytes (domain separation)', async () => {
    const { sign } = await import('node:crypto');
    const { priv, pub } = keyPair();
    const canonical = encodeManifest(sampleManifest());
    const good = signManifest(canonical, priv);
    const forged = Buffer.from(good);
    sign(null, canonical, priv).copy(forged, 38);
    expect(() => openSignedManifest(forged, [pub], CAP)).toThrow(
      expect.objectContaining({ code: 'RSW_ERR_SIGNATURE_INVALID' }),
    );
  });

  it('check the size cap before the signature', () => {
    const { pub } = keyPair();
    expect(() => openSignedManifest(Buffer.alloc(2 * MiB), [pub], CAP)).toThrow(
      expect.objectContaining({ code: 'RSW_ERR_MANIFEST_TOO_LARGE' }),
    );
  });

  it('refuse a version older than one already seen (rollback)', () => {
    const m = sampleManifest();
    expect(() => checkNotRollback(m, 8)).toThrow(expect.objectContaining({ code: 'RSW_ERR_ROLLBACK' }));
    expect(() => checkNotRollback(m, 7)).not.toThrow();
    expect(() => checkNotRollback(m, undefined)).not.toThrow();
  });
});
