import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { openSignedChannel, signChannelPointer } from '../../core/channel.ts';
import { loadTrust, publicKeyFromRaw, rawPublicKey } from '../../core/keys.ts';
import {
  decodeRevocationList,
  encodeRevocationList,
  openRevocation,
  REVOCATION_DOMAIN,
  Revocations,
  signRevocation,
} from '../../core/revocation.ts';
import { createSignedManifest, openSignedManifest, SIGNATURE_DOMAIN } from '../../core/signed-manifest.ts';
import { tempDir } from '../helpers/cli.ts';
import { mutated, onlyTypedErrors } from '../helpers/fuzz.ts';

const keys = () => generateKeyPairSync('ed25519');
const working = keys();
const spare = keys();
const stranger = keys();
const pinned = [working.publicKey, spare.publicKey];
const hex = (k: (typeof working)['publicKey']) => rawPublicKey(k).toString('hex');
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};
const manifest = (version = 1) => ({
  name: 'compute',
  version,
  format: 'raw' as const,
  size: 10,
  chunks: [{ offset: 0, length: 10, hash: 'ab'.repeat(32) }],
});
const t = tempDir('rsw-revocation-');
afterAll(() => t.cleanup());

describe('revocation statements', () => {
  it('a pinned spare key revokes the working key: verified, parsed, keys ascending', () => {
    const env = signRevocation([working.publicKey], spare.privateKey, 1_800_000_000_000);
    const s = openRevocation(env, pinned);
    expect(s).toMatchObject({
      revoked: [hex(working.publicKey)],
      signer: hex(spare.publicKey),
      issuedAt: 1_800_000_000_000,
    });
    const both = openRevocation(
      signRevocation([spare.publicKey, working.publicKey], working.privateKey),
      pinned,
    );
    expect(both.revoked).toEqual([hex(working.publicKey), hex(spare.publicKey)].sort());
  });

  it('refuses a statement signed by a key the node does not pin, a flipped byte, and garbage', () => {
    const byStranger = signRevocation([working.publicKey], stranger.privateKey);
    expect(code(() => openRevocation(byStranger, pinned))).toBe('RSW_ERR_REVOCATION_INVALID');
    const env = signRevocation([working.publicKey], spare.privateKey);
    for (const at of [0, 7, 40, 110, env.length - 1]) {
      const flipped = Buffer.from(env);
      flipped[at] ^= 1;
      expect(code(() => openRevocation(flipped, pinned))).toBe('RSW_ERR_REVOCATION_INVALID');
    }
    expect(code(() => openRevocation(Buffer.alloc(5000), pinned))).toBe('RSW_ERR_REVOCATION_INVALID');
    expect(code(() => openRevocation(Buffer.from('RSWV'), pinned))).toBe('RSW_ERR_REVOCATION_INVALID');
  });

  it('its signature domain is its own: a manifest signature cannot pass as a revocation', () => {
    expect(REVOCATION_DOMAIN.equals(SIGNATURE_DOMAIN)).toBe(false);
    const env = signRevocation([working.publicKey], working.privateKey);
    const m = createSignedManifest(manifest(), working.privateKey).envelope;
    const crossed = Buffer.from(env);
    m.copy(crossed, 38, 38, 102); // the manifest's signature in the statement's place
    expect(code(() => openRevocation(crossed, pinned))).toBe('RSW_ERR_REVOCATION_INVALID');
  });
});

describe('fuzz: revocation statements (issue 9, item 13)', () => {
  const valid = fc
    .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 2 ** 50 }))
    .map(([n, at]) =>
      signRevocation(
        [working, spare, stranger].slice(0, n).map((k) => k.publicKey),
        spare.privateKey,
        at,
      ),
    );
  it('arbitrary and mutated envelopes open only byte-identical to what was signed, else RSW_ERR_REVOCATION_INVALID', () => {
    const signed = new Set<string>();
    fc.assert(
      fc.property(mutated(valid), (bytes) => {
        const r = onlyTypedErrors(() => openRevocation(bytes, pinned), ['RSW_ERR_REVOCATION_INVALID']);
        if (!(r instanceof Error)) signed.add(r.envelope.toString('hex'));
      }),
      { numRuns: 1000 },
    );
    // ed25519 is deterministic: whatever opened must be exactly what the spare key signs for those keys and time.
    for (const hexEnv of signed) {
      const s = openRevocation(Buffer.from(hexEnv, 'hex'), pinned);
      const again = signRevocation(
        s.revoked.map((k) => publicKeyFromRaw(Buffer.from(k, 'hex'))),
        spare.privateKey,
        s.issuedAt,
      );
      expect(again.toString('hex')).toBe(hexEnv);
    }
  });
  it('any text as a revocation list parses or gives RSW_ERR_REVOCATION_INVALID', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.constant('{"revocations":["!!"]}'),
        ),
        (text) => {
          onlyTypedErrors(() => decodeRevocationList(text), ['RSW_ERR_REVOCATION_INVALID']);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('a node’s revocations', () => {
  it('keeps the union of valid statements, skipping forged ones; survives a round trip through the list', () => {
    const r = new Revocations();
    const good = signRevocation([working.publicKey], spare.privateKey);
    const forged = signRevocation([spare.publicKey], stranger.privateKey);
    expect(r.add([good, forged, good], pinned)).toBe(1);
    expect(r.has(rawPublicKey(working.publicKey))).toBe(true);
    expect(r.has(hex(spare.publicKey))).toBe(false);
    const again = new Revocations();
    again.add(decodeRevocationList(encodeRevocationList(r.envelopes())), pinned);
    expect(again.revokedKeys()).toEqual([hex(working.publicKey)]);
    expect(code(() => decodeRevocationList('{"revocations": 3}'))).toBe('RSW_ERR_REVOCATION_INVALID');
  });

  it('a manifest and a channel pointer signed by a revoked key are refused with RSW_ERR_KEY_REVOKED; the spare’s are not', () => {
    const r = new Revocations();
    r.add([signRevocation([working.publicKey], working.privateKey)], pinned);
    const old = createSignedManifest(manifest(1), working.privateKey);
    expect(code(() => openSignedManifest(old.envelope, pinned, { maxBytes: 4096, revoked: r }))).toBe(
      'RSW_ERR_KEY_REVOKED',
    );
    const next = createSignedManifest(manifest(2), spare.privateKey);
    expect(openSignedManifest(next.envelope, pinned, { maxBytes: 4096, revoked: r }).manifest.version).toBe(
      2,
    );
    // Without the revocation the old one still verifies: the refusal is the revocation's doing.
    expect(openSignedManifest(old.envelope, pinned, { maxBytes: 4096 }).manifest.version).toBe(1);
    const p = {
      name: 'compute',
      channel: 'stable',
      version: 1,
      manifestId: old.id,
      sequence: 1,
      issuedAt: 1000,
      expiresAt: 10_000,
    };
    const env = signChannelPointer(p, working.privateKey).envelope;
    expect(code(() => openSignedChannel(env, pinned, 2000, r))).toBe('RSW_ERR_KEY_REVOKED');
    expect(
      openSignedChannel(signChannelPointer(p, spare.privateKey).envelope, pinned, 2000, r).pointer,
    ).toEqual(p);
  });
});

describe('trust files', () => {
  it('a trust file may hold several keys (working + spare); duplicates across files count once', async () => {
    const both = join(t.dir, 'both.pub');
    const one = join(t.dir, 'one.pub');
    writeFileSync(
      both,
      `${working.publicKey.export({ type: 'spki', format: 'pem' })}${spare.publicKey.export({ type: 'spki', format: 'pem' })}`,
    );
    writeFileSync(one, spare.publicKey.export({ type: 'spki', format: 'pem' }));
    const loaded = await loadTrust([both, one]);
    expect(loaded.map(hex)).toEqual([hex(working.publicKey), hex(spare.publicKey)]);
  });
});
