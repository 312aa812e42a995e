import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chunkBuffer } from '../../core/chunker.ts';
import { hashHex } from '../../core/hash.ts';
import { createSignedManifest } from '../../core/signed-manifest.ts';
import { ChunkCache } from '../../peer/chunk-cache.ts';
import { ImageWriter } from '../../peer/image-writer.ts';
import { ResumeState } from '../../peer/resume-state.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const KiB = 1024;
const P = { minSize: 4 * KiB, avgSize: 16 * KiB, maxSize: 64 * KiB };
const { privateKey } = generateKeyPairSync('ed25519');
const t = tempDir('rsw-chunk-cache-');
afterAll(() => t.cleanup());

/** Version v of an image: a shared 256 KiB part and 64 KiB of its own. */
function version(v: number) {
  const bytes = Buffer.concat([pseudoRandomBytes(256 * KiB, 1), pseudoRandomBytes(64 * KiB, 100 + v)]);
  const chunks = chunkBuffer(bytes, P).map((c) => ({
    offset: c.offset,
    length: c.length,
    hash: hashHex(c.data),
  }));
  const opened = createSignedManifest(
    { name: 'img', version: v, format: 'file', size: bytes.length, chunks },
    privateKey,
  );
  const reader = { read: async (offset: number, length: number) => bytes.subarray(offset, offset + length) };
  return { bytes, opened, reader, ref: { ...opened, name: 'img', version: v } };
}

describe('ChunkCache', () => {
  it('updating an output in place keeps the chunks already at their offsets without copying or rewriting them', async () => {
    const cache = await ChunkCache.open(join(t.dir, 'c0'), { keepVersions: 2 });
    const v1 = version(1);
    const out = join(t.dir, 'inplace.img');
    writeFileSync(out, v1.bytes);
    await cache.absorb(v1.ref, v1.reader, out);
    for await (const h of cache.store.list()) await cache.store.delete(h); // only the output holds v1 now
    const v2 = version(2);
    const m = v2.opened.manifest;
    expect(cache.heldBy(out)).toBe(true);
    // The shared part stays where it is; only v1's own tail is saved (for a rollback), v2 needs none of it.
    const v1Only = v1.opened.manifest.chunks.filter((c) => !m.chunks.some((d) => d.hash === c.hash));
    expect((await cache.rescueSeeds(m, out)).bytes).toBe(v1Only.reduce((a, c) => a + c.length, 0));
    const writer = await ImageWriter.open(out, m.size);
    const resume = await ResumeState.open(join(t.dir, 'inplace.resume'), v2.opened.id, m.chunks.length);
    const used = await cache.prefill(m, writer, resume, { inPlace: true });
    expect(used.bytes).toBeGreaterThanOrEqual(200 * KiB);
    expect(writer.stats().bytesWritten).toBe(0);
    await writer.close();
  });

  it('keeps the chunks of the last keepVersions versions per image and deletes the rest', async () => {
    const cache = await ChunkCache.open(join(t.dir, 'c1'), { keepVersions: 2 });
    const [v1, v2, v3] = [1, 2, 3].map(version);
    await cache.absorb(v1.ref, v1.reader);
    await cache.absorb(v2.ref, v2.reader);
    const { bytesFreed } = await cache.absorb(v3.ref, v3.reader);
    expect(cache.versions().map((e) => e.version)).toEqual([2, 3]);
    expect(bytesFreed).toBeGreaterThan(0);
    const has = async (m: typeof v1) =>
      (await Promise.all(m.opened.manifest.chunks.map((c) => cache.store.has(c.hash)))).every(Boolean);
    expect(await has(v2)).toBe(true);
    expect(await has(v3)).toBe(true);
    expect(await has(v1)).toBe(false); // its own tail went; the shared part stays for v2 and v3
    expect(await cache.envelope(v1.opened.id)).toBeUndefined();
  });

  it('a fetched version is not copied: its output seeds it, and an update in place first saves what it would destroy', async () => {
    const cache = await ChunkCache.open(join(t.dir, 'c3'), { keepVersions: 2 });
    const v1 = version(1);
    const out = join(t.dir, 'seeded.img');
    writeFileSync(out, v1.bytes);
    await cache.absorb(v1.ref, v1.reader, out);
    expect(await Array.fromAsync(cache.store.list())).toEqual([]); // the output is the copy
    const v2 = version(2);
    const m = v2.opened.manifest;
    const saved = await cache.rescueSeeds(m, out);
    const v1Only = v1.opened.manifest.chunks.filter((c) => !m.chunks.some((d) => d.hash === c.hash));
    expect(v1Only.length).toBeGreaterThan(0);
    expect(saved.bytes).toBeLessThan(v1.bytes.length / 2); // about the changed part, not the image
    for (const c of v1Only) expect(await cache.store.has(c.hash)).toBe(true);
    writeFileSync(out, v2.bytes); // the update in place
    await cache.absorb(v2.ref, v2.reader, out);
    // Rolling back to v1 (into another file): everything comes from the store and v2's output, none is missing.
    const back = await cache.rescueSeeds(v1.opened.manifest, join(t.dir, 'rollback.img'));
    const writer = await ImageWriter.open(join(t.dir, 'rollback.img'), v1.bytes.length);
    const resume = await ResumeState.open(
      join(t.dir, 'rollback.resume'),
      v1.opened.id,
      v1.opened.manifest.chunks.length,
    );
    await cache.prefill(v1.opened.manifest, writer, resume);
    expect(back.bytes).toBeGreaterThan(0);
    expect(resume.count).toBe(v1.opened.manifest.chunks.length);
    await writer.close();
  });

  it('copies (peer.cacheCopies) are bit-correct; one that went wrong is dropped when read, never written out', async () => {
    const cache = await ChunkCache.open(join(t.dir, 'c4'), { keepVersions: 2, copies: true });
    const v1 = version(1);
    const chunks = v1.opened.manifest.chunks;
    const bad = chunks[2];
    // The output changed behind the fetch's back between its verification and the copy: one chunk reads wrong.
    const reader = {
      read: async (offset: number, length: number) => {
        const bytes = Buffer.from(await v1.reader.read(offset, length));
        if (offset === bad.offset) bytes[0] ^= 1;
        return bytes;
      },
    };
    await cache.absorb(v1.ref, reader, join(t.dir, 'gone.img')); // an output that will not be there
    for (const c of chunks) expect(await cache.store.has(c.hash)).toBe(true);
    for (const c of chunks.filter((c) => c !== bad)) {
      expect((await cache.store.get(c.hash)).equals(v1.bytes.subarray(c.offset, c.offset + c.length))).toBe(
        true,
      );
    }
    // A rollback from the cache alone: every good copy is written, the wrong one is dropped and left to fetch.
    const out = join(t.dir, 'from-copies.img');
    const writer = await ImageWriter.open(out, v1.bytes.length);
    const resume = await ResumeState.open(join(t.dir, 'from-copies.resume'), v1.opened.id, chunks.length);
    const used = await cache.prefill(v1.opened.manifest, writer, resume);
    const badCount = chunks.filter((c) => c.hash === bad.hash).length;
    expect(used.chunks).toBe(chunks.length - badCount);
    expect(resume.has(chunks.indexOf(bad))).toBe(false);
    expect(await cache.store.has(bad.hash)).toBe(false);
    for (const c of chunks.filter((c) => c.hash !== bad.hash)) {
      expect(
        (await writer.read(c.offset, c.length)).equals(v1.bytes.subarray(c.offset, c.offset + c.length)),
      ).toBe(true);
    }
    await writer.close();
  });

  it('an output that held a version is a seed until something else is written there', async () => {
    const cache = await ChunkCache.open(join(t.dir, 'c2'), { keepVersions: 2 });
    const v1 = version(1);
    const out = join(t.dir, 'out.img');
    writeFileSync(out, v1.bytes);
    await cache.absorb(v1.ref, v1.reader, out);
    for await (const h of cache.store.list()) await cache.store.delete(h); // the chunks are gone, the output is not
    const v2 = version(2);
    const rescued = await cache.rescueSeeds(v2.opened.manifest);
    expect(rescued.bytes).toBeGreaterThanOrEqual(200 * KiB); // the shared part, read back from the old output
    writeFileSync(out, 'overwritten');
    for await (const h of cache.store.list()) await cache.store.delete(h);
    expect((await cache.rescueSeeds(v2.opened.manifest)).bytes).toBe(0); // bytes no longer match: not used
  });
});
