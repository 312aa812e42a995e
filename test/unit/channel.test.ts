import { generateKeyPairSync, sign } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CHANNEL_DOMAIN,
  type ChannelPointer,
  checkChannelNotStale,
  encodeChannelPointer,
  openSignedChannel,
  parseChannelRef,
  signChannelPointer,
} from '../../core/channel.ts';
import { createSignedManifest, SIGNATURE_DOMAIN } from '../../core/signed-manifest.ts';
import { ChannelStore } from '../../tracker/channel-store.ts';
import { Registry } from '../../tracker/registry.ts';
import { tempDir } from '../helpers/cli.ts';

const keys = () => generateKeyPairSync('ed25519');
const publisher = keys();
const NOW = 1_800_000_000_000;
const pointer = (over: Partial<ChannelPointer> = {}): ChannelPointer => ({
  name: 'compute',
  channel: 'stable',
  version: 2,
  manifestId: 'ab'.repeat(32),
  sequence: 5,
  issuedAt: NOW,
  expiresAt: NOW + 3_600_000,
  ...over,
});
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

describe('channel pointers', () => {
  it('round-trip: signed by the publisher, verified against the pinned key', () => {
    const signed = signChannelPointer(pointer(), publisher.privateKey);
    expect(openSignedChannel(signed.envelope, [publisher.publicKey], NOW + 1).pointer).toEqual(pointer());
    expect(parseChannelRef('compute:stable')).toEqual({ name: 'compute', channel: 'stable' });
    expect(code(() => parseChannelRef('compute'))).toBe('RSW_ERR_INVALID_CHANNEL');
    expect(code(() => parseChannelRef('compute:../x'))).toBe('RSW_ERR_INVALID_CHANNEL');
  });

  it('an expired pointer is refused, and so is an older one than already seen', () => {
    const env = signChannelPointer(pointer(), publisher.privateKey).envelope;
    expect(code(() => openSignedChannel(env, [publisher.publicKey], NOW + 3_600_000))).toBe(
      'RSW_ERR_CHANNEL_EXPIRED',
    );
    expect(code(() => checkChannelNotStale(pointer({ sequence: 4 }), 5))).toBe('RSW_ERR_CHANNEL_STALE');
    expect(code(() => checkChannelNotStale(pointer({ sequence: 5 }), 5))).toBe('no error');
  });

  it('another key, a flipped byte, or a manifest-domain signature do not verify', () => {
    const env = signChannelPointer(pointer(), publisher.privateKey).envelope;
    expect(code(() => openSignedChannel(env, [keys().publicKey], NOW))).toBe('RSW_ERR_UNTRUSTED_KEY');
    const flipped = Buffer.from(env);
    flipped[flipped.length - 20] ^= 1;
    expect(code(() => openSignedChannel(flipped, [publisher.publicKey], NOW))).toBe(
      'RSW_ERR_SIGNATURE_INVALID',
    );
    // The same canonical bytes signed under the manifest's domain (what a manifest signature is) are not a pointer.
    const crossed = Buffer.from(env);
    sign(null, Buffer.concat([SIGNATURE_DOMAIN, encodeChannelPointer(pointer())]), publisher.privateKey).copy(
      crossed,
      6 + 32,
    );
    expect(code(() => openSignedChannel(crossed, [publisher.publicKey], NOW))).toBe(
      'RSW_ERR_SIGNATURE_INVALID',
    );
    expect(CHANNEL_DOMAIN.equals(SIGNATURE_DOMAIN)).toBe(false);
  });
});

describe('ChannelStore (the head)', () => {
  const t = tempDir('rsw-channels-');
  afterAll(() => t.cleanup());

  it('keeps the newest pointer to a registered version; refuses older, foreign or mismatched ones', async () => {
    const registry = await Registry.open(t.dir);
    try {
      const m = createSignedManifest(
        {
          name: 'compute',
          version: 2,
          format: 'file',
          size: 1,
          chunks: [{ offset: 0, length: 1, hash: 'cd'.repeat(32) }],
        },
        publisher.privateKey,
      );
      await registry.register(m);
      const store = new ChannelStore(registry, []);
      const p = pointer({ manifestId: m.id });
      const set = (q: ChannelPointer, key = publisher.privateKey) =>
        store.set(signChannelPointer(q, key).envelope, NOW);
      await expect(set(p)).resolves.toEqual(p);
      await expect(set(p)).rejects.toMatchObject({ code: 'RSW_ERR_CHANNEL_STALE' });
      await expect(set({ ...p, sequence: 4 })).rejects.toMatchObject({ code: 'RSW_ERR_CHANNEL_STALE' });
      await expect(set({ ...p, sequence: 6 }, keys().privateKey)).rejects.toMatchObject({
        code: 'RSW_ERR_UNTRUSTED_KEY',
      });
      await expect(set({ ...p, sequence: 6, manifestId: 'ef'.repeat(32) })).rejects.toMatchObject({
        code: 'RSW_ERR_INVALID_CHANNEL',
      });
      await expect(set({ ...p, sequence: 6, version: 3 })).rejects.toMatchObject({
        code: 'RSW_ERR_IMAGE_NOT_FOUND',
      });
      await expect(set({ ...p, sequence: 6, issuedAt: NOW - 10, expiresAt: NOW })).rejects.toMatchObject({
        code: 'RSW_ERR_CHANNEL_EXPIRED',
      });
      expect(await store.list()).toEqual([p]);
    } finally {
      await registry.close();
    }
  });
});
