import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
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

  it('hashes a chunk once while its file stays the same, and again once it changed: in place, mtime put back, or replaced', async () => {
    // A clock 10 s ahead: files written now count as old enough to be remembered as verified.
    const store = await ChunkStore.open({ dataDir: t.dir, now: () => Date.now() + 10_000 });
    const data = pseudoRandomBytes(64 * 1024, 6);
    const h = hashHex(data);
    await store.put(h, data);
    expect((await store.get(h)).equals(data)).toBe(true);
    expect(store.verifiedCount).toBe(1);
    expect((await store.read(h)).equals(data)).toBe(true); // not hashed: same file, same identity

    // rewritten in place, same size, mtime set back to what it was (ctime moves; userspace cannot set it). The
    // pause: timestamps tick every few ms, and the clock above says the file is old, so nothing else would tell.
    await new Promise((r) => setTimeout(r, 50));
    const times = join(t.dir, 'times');
    writeFileSync(times, '');
    execFileSync('touch', ['-r', store.path(h), times]); // to the ns (utimes from JS rounds to ~0.2 µs)
    const rotten = Buffer.from(data);
    rotten[7] ^= 1;
    writeFileSync(store.path(h), rotten);
    execFileSync('touch', ['-r', times, store.path(h)]);
    expect(statSync(store.path(h), { bigint: true }).mtimeNs).toBe(statSync(times, { bigint: true }).mtimeNs);
    await expect(store.get(h)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
    expect(await store.has(h)).toBe(false);
    expect(store.verifiedCount).toBe(0);

    // replaced by another file (a new inode)
    await store.put(h, data);
    await store.get(h);
    expect(store.verifiedCount).toBe(1);
    const other = join(t.dir, 'other');
    writeFileSync(other, rotten);
    renameSync(other, store.path(h));
    await expect(store.get(h)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
  });

  it('does not remember a file changed just before it was hashed (its timestamps may not move on the next write)', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const data = pseudoRandomBytes(4096, 7);
    const h = hashHex(data);
    await store.put(h, data);
    expect((await store.get(h)).equals(data)).toBe(true);
    expect(store.verifiedCount).toBe(0);
    const rotten = Buffer.from(data);
    rotten[0] ^= 1;
    writeFileSync(store.path(h), rotten);
    await expect(store.get(h)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
  });

  it('reads into a buffer the caller provides, and gives it back when the chunk is corrupt', async () => {
    const store = await ChunkStore.open({ dataDir: t.dir });
    const data = pseudoRandomBytes(5000, 8);
    const h = hashHex(data);
    await store.put(h, data);
    const given: Buffer[] = [];
    const back: Buffer[] = [];
    const alloc = (n: number) => {
      const b = Buffer.alloc(n);
      given.push(b);
      return b;
    };
    const got = await store.read(h, alloc, (b) => back.push(b));
    expect(got).toBe(given[0]);
    expect(got.equals(data)).toBe(true);
    writeFileSync(store.path(h), Buffer.alloc(5000));
    await expect(store.read(h, alloc, (b) => back.push(b))).rejects.toMatchObject({
      code: 'RSW_ERR_CHUNK_CORRUPT',
    });
    expect(back).toEqual([given[1]]);
    await expect(store.read(h, alloc)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_NOT_FOUND' });
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
