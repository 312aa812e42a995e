import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChunkBatch } from '../../core/chunk-batch.ts';
import { hashHex } from '../../core/hash.ts';
import { ChunkStore } from '../../core/store.ts';
import { projectRoot, tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(() => t.cleanup());

describe('chunk store', () => {
  it('says which of many hashes it holds, as has() says for each', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const stored = Array.from({ length: 40 }, (_, k) => pseudoRandomBytes(100, 100 + k));
    for (const c of stored.slice(0, 25)) await store.put(hashHex(c), c);
    const asked = [...stored.map(hashHex), 'ab'.repeat(32), '00'.repeat(32)];
    const held = await store.held(asked);
    for (const h of asked) expect(held.has(h), h).toBe(await store.has(h));
    expect(held.size).toBe(25);
    expect(await store.held([])).toEqual(new Set());
    await expect(store.held(['not a hash'])).rejects.toThrow();
  });

  it('puts, finds, reads, lists and deletes chunks by hash', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const a = pseudoRandomBytes(1000, 1);
    const b = pseudoRandomBytes(2000, 2);
    expect(await store.put(hashHex(a), a)).toBe(true);
    expect(await store.put(hashHex(b), b)).toBe(true);
    expect(await store.put(hashHex(a), a)).toBe(false); // already there: stored once
    expect(await store.has(hashHex(a))).toBe(true);
    expect((await store.get(hashHex(b))).equals(b)).toBe(true);
    expect(store.path(hashHex(a))).toBe(join(t.dir, 'chunks', hashHex(a).slice(0, 2), hashHex(a).slice(2)));
    expect((await Array.fromAsync(store.list())).sort()).toEqual([hashHex(a), hashHex(b)].sort());
    const stats = await store.stats();
    expect(stats).toMatchObject({ chunks: 2, bytes: 3000 });
    expect(stats.fsFree).toBeGreaterThan(0);
    expect(await store.delete(hashHex(a))).toBe(true);
    expect(await store.delete(hashHex(a))).toBe(false);
    await expect(store.get(hashHex(a))).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_NOT_FOUND' });
  });

  it('refuses bytes that do not match the hash they are put under', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const data = pseudoRandomBytes(100, 3);
    await expect(store.put(hashHex(Buffer.from('other')), data)).rejects.toMatchObject({
      code: 'RSW_ERR_CHUNK_MISMATCH',
    });
    expect(await Array.fromAsync(store.list())).toEqual([]);
  });

  it('refuses names that are not hashes (no path traversal)', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    for (const bad of ['../../etc/passwd', 'AB'.repeat(32), 'ab']) {
      await expect(store.get(bad)).rejects.toMatchObject({ code: 'RSW_ERR_INVALID_HASH' });
    }
  });

  it('detects a chunk that rotted on disk, removes it, and can take it again', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const data = pseudoRandomBytes(4096, 4);
    const h = hashHex(data);
    await store.put(h, data);
    const rotten = Buffer.from(data);
    rotten[100] ^= 0x20;
    writeFileSync(store.path(h), rotten);
    await expect(store.get(h)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
    expect(await store.has(h)).toBe(false);
    expect(await store.put(h, data)).toBe(true);
    expect((await store.get(h)).equals(data)).toBe(true);
  });

  it('skips the re-hash on read when verifyOnRead is off', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir, verifyOnRead: false });
    const data = pseudoRandomBytes(64, 5);
    await store.put(hashHex(data), data);
    writeFileSync(store.path(hashHex(data)), Buffer.from('tampered'));
    expect((await store.get(hashHex(data))).toString()).toBe('tampered');
  });

  it('clears temp files a crash left behind when it is opened again', async () => {
    await ChunkStore.open({ dataDir: t.dir });
    writeFileSync(join(t.dir, 'tmp', 'deadbeef.1234'), 'half a chunk');
    await ChunkStore.open({ dataDir: t.dir });
    expect(readdirSync(join(t.dir, 'tmp'))).toEqual([]);
  });

  it('never exposes a torn chunk when the writer is SIGKILLed mid-stream', async () => {
    // A real child process writes 1 MiB chunks as fast as it can; we kill it while it is writing.
    const script = `
      import { ChunkStore } from ${JSON.stringify(join(projectRoot, 'core/store.ts'))};
      import { hashHex } from ${JSON.stringify(join(projectRoot, 'core/hash.ts'))};
      const store = await ChunkStore.open({ dataDir: process.argv[1] });
      for (let i = 0; ; i++) {
        const data = Buffer.alloc(1 << 20, i & 0xff); data.writeUInt32LE(i, 0);
        await store.put(hashHex(data), data);
        if (i === 3) process.stdout.write('writing\\n');
      }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, t.dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));

    const store = await ChunkStore.open({ dataDir: t.dir });
    const hashes = await Array.fromAsync(store.list());
    expect(hashes.length).toBeGreaterThan(3);
    for (const h of hashes) expect(hashHex(await store.get(h))).toBe(h); // every visible chunk is whole
    expect(readdirSync(join(t.dir, 'tmp'))).toEqual([]);
  });
});

describe('chunk batch (group commit)', () => {
  it('shows nothing until commit, then every staged chunk at once', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const batch = new ChunkBatch(store);
    const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(10_000, i));
    for (const c of chunks) expect(await batch.put(hashHex(c), c)).toBe(true);
    expect(await batch.put(hashHex(chunks[0]), chunks[0])).toBe(false); // staged once
    expect(await Array.fromAsync(store.list())).toEqual([]);
    expect((await batch.commit()).sort()).toEqual(chunks.map((c) => hashHex(c)).sort());
    for (const c of chunks) expect((await store.get(hashHex(c))).equals(c)).toBe(true);
    expect(readdirSync(join(t.dir, 'tmp'))).toEqual([]);
    expect(await new ChunkBatch(store).put(hashHex(chunks[1]), chunks[1])).toBe(false); // already stored
  });

  it('abort removes every staged temp file', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const batch = new ChunkBatch(store);
    const c = pseudoRandomBytes(5000, 9);
    await batch.put(hashHex(c), c);
    expect(readdirSync(join(t.dir, 'tmp'))).toHaveLength(1);
    await batch.abort();
    expect(readdirSync(join(t.dir, 'tmp'))).toEqual([]);
    expect(await store.has(hashHex(c))).toBe(false);
  });

  it('undo removes what the last commit made visible', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const old = pseudoRandomBytes(100, 10);
    await store.put(hashHex(old), old);
    const batch = new ChunkBatch(store);
    const c = pseudoRandomBytes(100, 11);
    await batch.put(hashHex(c), c);
    await batch.put(hashHex(old), old);
    await batch.commit();
    await batch.undo();
    expect(await Array.fromAsync(store.list())).toEqual([hashHex(old)]);
  });

  it('stages many chunks at once with one fsync and one waiting file allowed, and commits them all', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const batch = new ChunkBatch(store, 1, 1); // every put but one waits for the previous file's fsync
    const chunks = Array.from({ length: 40 }, (_, i) => pseudoRandomBytes(3000 + i, 100 + i));
    const puts = await Promise.all(chunks.map((c) => batch.put(hashHex(c), c, { trusted: true })));
    expect(puts.every(Boolean)).toBe(true);
    expect(await Array.fromAsync(store.list())).toEqual([]);
    await batch.commit();
    // 40 hashes land in many prefix directories, all created in one step of the commit.
    expect(new Set(chunks.map((c) => hashHex(c).slice(0, 2))).size).toBeGreaterThan(20);
    for (const c of chunks) expect((await store.get(hashHex(c))).equals(c)).toBe(true);
    expect(readdirSync(join(t.dir, 'tmp'))).toEqual([]);
  });

  it('refuses bytes that do not match their hash', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    await expect(
      new ChunkBatch(store).put(hashHex(Buffer.from('x')), Buffer.from('y')),
    ).rejects.toMatchObject({
      code: 'RSW_ERR_CHUNK_MISMATCH',
    });
  });
});
