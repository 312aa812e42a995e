import { randomBytes } from 'node:crypto';
import { type BigIntStats, closeSync, fstatSync } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { asDataError, RswError } from './errors.ts';
import { fsyncFd, openFd, readFd, writeFd } from './fd.ts';
import { ensureWritableDir, fsyncDir } from './fs-atomic.ts';
import { hashHex, isHashHex } from './hash.ts';
import { MAX_CHUNK_BYTES } from './manifest.ts';

export interface ChunkStoreInit {
  /** The data directory; chunks live under DIR/chunks/ab/cdef…, temp files under DIR/tmp/. */
  dataDir: string;
  /**
   * Re-hash chunks read from disk and refuse one that does not match (see read() for when a read is not re-hashed).
   * @default true
   */
  verifyOnRead?: boolean;
  /** Wall clock (ms since the epoch), compared with file timestamps (read()). @default Date.now */
  now?: () => number;
}

/**
 * Chunk files whose bytes this process has hashed and found right, by hash, with the file's identity then (device,
 * inode, size, mtime and ctime in ns): up to this many, least recently read dropped first. ~150 bytes each; 65,536
 * cover ~37 GiB of 0.57 MiB chunks.
 */
const VERIFIED_MAX = 65_536;
/**
 * A file changed less than this long before it was hashed is not remembered as verified: timestamps come from a
 * coarse clock (a few ms), so a write right after it could leave mtime and ctime unchanged ("racily clean", as git
 * calls it).
 */
const RACY_NS = 2_000_000_000n;

export interface StoreStats {
  chunks: number;
  bytes: number;
  /** Free and total bytes of the filesystem holding the store. */
  fsFree: number;
  fsSize: number;
}

/**
 * Content-addressed chunk files. A chunk is durable once put() resolves: it was written to a temp file, fsynced,
 * renamed into place and its directory fsynced, so a crash leaves either no file or the whole verified chunk. Temp
 * files a crash left behind are removed by the next open().
 */
export class ChunkStore {
  readonly dataDir: string;
  readonly verifyOnRead: boolean;
  readonly #now: () => number;
  readonly #chunksDir: string;
  readonly #tmpDir: string;
  readonly #prefixes = new Set<string>();
  /** hash → identity of its file when it was last hashed and matched (see read()). */
  readonly #verified = new Map<string, string>();

  private constructor(init: ChunkStoreInit) {
    this.dataDir = init.dataDir;
    this.verifyOnRead = init.verifyOnRead ?? true;
    this.#now = init.now ?? Date.now;
    this.#chunksDir = join(init.dataDir, 'chunks');
    this.#tmpDir = join(init.dataDir, 'tmp');
  }

  /** Opens (creating if needed) the store under `dataDir` and clears temp files left by a crash. */
  static async open(init: ChunkStoreInit): Promise<ChunkStore> {
    const store = new ChunkStore(init);
    await ensureWritableDir(init.dataDir);
    try {
      await mkdir(store.#chunksDir, { recursive: true });
      await rm(store.#tmpDir, { recursive: true, force: true });
      await mkdir(store.#tmpDir, { recursive: true });
    } catch (e) {
      throw asDataError(e, `cannot open chunk store in ${init.dataDir}`);
    }
    return store;
  }

  /** Path of a chunk's file: DIR/chunks/ab/cdef… */
  path(hash: string): string {
    checkHash(hash);
    return join(this.#chunksDir, hash.slice(0, 2), hash.slice(2));
  }

  /**
   * Which of `hashes` the store holds, as has() would say for each: one listing per two-hex prefix directory among
   * them, in parallel, instead of a stat per chunk one after another (a fetch plans its download from this: 1,800
   * stats per GiB of image before the first byte).
   */
  async held(hashes: Iterable<string>): Promise<Set<string>> {
    const byPrefix = new Map<string, string[]>();
    for (const hash of hashes) {
      checkHash(hash);
      const prefix = hash.slice(0, 2);
      const list = byPrefix.get(prefix);
      if (list) list.push(hash);
      else byPrefix.set(prefix, [hash]);
    }
    const out = new Set<string>();
    // Which prefix directories exist, first: a fresh store has none, and a listing each would fail (256 of them).
    const prefixes = new Set(byPrefix.size > 16 ? await readdir(this.#chunksDir) : byPrefix.keys());
    await Promise.all(
      [...byPrefix].map(async ([prefix, list]) => {
        if (!prefixes.has(prefix)) return;
        let names: string[];
        try {
          names = await readdir(join(this.#chunksDir, prefix));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
          throw e;
        }
        const present = new Set(names);
        for (const hash of list) if (present.has(hash.slice(2))) out.add(hash);
      }),
    );
    return out;
  }

  async has(hash: string): Promise<boolean> {
    try {
      await stat(this.path(hash));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /**
   * Reads a chunk. With verifyOnRead a chunk whose bytes no longer match its name (disk rot, tampering) is removed
   * and RSW_ERR_CHUNK_CORRUPT thrown, so it is fetched again rather than served (see read()).
   */
  get(hash: string): Promise<Buffer> {
    return this.read(hash);
  }

  /**
   * get() into a buffer from `alloc(size)` (e.g. a BufferPool's acquire; `release` gets it back on failure). Two
   * trips through libuv's thread pool, open and read: fstat and close of the open descriptor do no I/O and run
   * inline (open, fstat, read and close each through the pool, as readFile does, cost the head ~0.15 CPU s per GiB
   * served in wake-ups of the pool's threads and its own: docs/BENCHMARKS.md, "Fetch").
   *
   * verifyOnRead: the bytes are hashed unless this process hashed this chunk's file before and found it right, and
   * the file's identity (device, inode, size, mtime, ctime) is what it was then and stayed so during this read. A
   * write through the filesystem changes ctime (userspace cannot set it back), a replacement the inode: either
   * makes the next read hash again. What that leaves out is corruption below the filesystem after the chunk was
   * hashed (a disk returning other bytes than it took, without an error): the peer that receives it hashes it and
   * counts it against the head — as it does for any chunk, verified here or not. Why the store verifies at all: a
   * rotten chunk answered `not-found` costs that chunk, one sent costs the sender a strike with each peer (three
   * corrupt chunks ban it: peer/scheduler.ts), and a head banned by its peers stalls every chunk only it holds.
   */
  async read(
    hash: string,
    alloc: (size: number) => Buffer = Buffer.allocUnsafe,
    release?: (buf: Buffer) => void,
  ): Promise<Buffer> {
    const path = this.path(hash);
    let fd: number;
    try {
      fd = await openFd(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new RswError('RSW_ERR_CHUNK_NOT_FOUND', `chunk ${hash} is not in the store`);
      }
      throw e;
    }
    let buf: Buffer | undefined;
    let before: BigIntStats;
    let complete = true;
    try {
      before = fstatSync(fd, { bigint: true });
      const size = Number(before.size);
      if (size > MAX_CHUNK_BYTES && this.verifyOnRead)
        return await this.#corrupt(hash, `chunk ${hash} on disk is larger than any chunk; removed it`);
      buf = alloc(size);
      for (let done = 0; done < size; ) {
        const { bytesRead: n } = await readFd(fd, buf, done, size - done, done);
        if (n === 0) {
          complete = false; // shrank while read
          break;
        }
        done += n;
      }
      if (!this.verifyOnRead) {
        if (!complete) throw new Error(`chunk ${hash} shrank while it was read`);
        return buf;
      }
      const identity = fileIdentity(before);
      const unchanged = complete && fileIdentity(fstatSync(fd, { bigint: true })) === identity;
      if (unchanged && this.#verified.get(hash) === identity) {
        this.#verified.delete(hash); // most recently read last
        this.#verified.set(hash, identity);
        return buf;
      }
      if (!complete || hashHex(buf) !== hash) {
        this.#verified.delete(hash);
        return await this.#corrupt(hash, `chunk ${hash} on disk does not match its hash; removed it`);
      }
      if (unchanged && BigInt(Math.floor(this.#now())) * 1_000_000n - maxNs(before) >= RACY_NS) {
        this.#verified.delete(hash);
        this.#verified.set(hash, identity);
        if (this.#verified.size > VERIFIED_MAX)
          this.#verified.delete(this.#verified.keys().next().value as string);
      } else this.#verified.delete(hash);
      return buf;
    } catch (e) {
      if (buf) release?.(buf);
      throw e;
    } finally {
      closeSync(fd);
    }
  }

  /** Chunk files remembered as verified (read()). */
  get verifiedCount(): number {
    return this.#verified.size;
  }

  async #corrupt(hash: string, message: string): Promise<never> {
    await rm(this.path(hash), { force: true });
    throw new RswError('RSW_ERR_CHUNK_CORRUPT', message);
  }

  /**
   * Stores a chunk under its hash; resolves true if it was new, false if it was already there. The bytes are hashed
   * and must match unless the caller has just hashed them itself (`trusted`).
   */
  async put(hash: string, data: Uint8Array, opts: { trusted?: boolean } = {}): Promise<boolean> {
    checkHash(hash); // a bad name is RSW_ERR_INVALID_HASH, before any hashing
    if (!opts.trusted && hashHex(data) !== hash) {
      throw new RswError('RSW_ERR_CHUNK_MISMATCH', `chunk bytes do not hash to ${hash}`);
    }
    if (await this.has(hash)) return false;
    const tmp = this.tempPath(hash);
    try {
      await writeNew(tmp, data, true);
      await this.install(hash, tmp);
      await this.syncDirs([hash.slice(0, 2)]);
    } catch (e) {
      await this.discard(hash, tmp);
      throw asDataError(e, `cannot write chunk into ${this.dataDir}`);
    }
    return true;
  }

  /** A fresh temp file path under DIR/tmp/ for a chunk being written (see ChunkBatch). */
  tempPath(hash: string): string {
    checkHash(hash);
    return join(this.#tmpDir, `${hash}.${randomBytes(4).toString('hex')}`);
  }

  /** Renames a complete, fsynced temp file into place as chunk `hash` (its directory still needs syncDirs). */
  async install(hash: string, tmp: string): Promise<void> {
    const prefix = hash.slice(0, 2);
    await this.#ensurePrefix(prefix);
    await rename(tmp, this.path(hash)).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
      // delete() removed the emptied prefix directory meanwhile: make it again and retry once.
      this.#prefixes.delete(prefix);
      await this.#ensurePrefix(prefix);
      await rename(tmp, this.path(hash));
    });
  }

  /** Creates the prefix directories among `prefixes` that do not exist yet, then fsyncs chunks/ once. */
  async ensurePrefixes(prefixes: Iterable<string>): Promise<void> {
    const missing = [...new Set(prefixes)].filter((p) => !this.#prefixes.has(p));
    if (missing.length === 0) return;
    await Promise.all(
      missing.map((p) =>
        mkdir(join(this.#chunksDir, p)).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        }),
      ),
    );
    await fsyncDir(this.#chunksDir);
    for (const p of missing) this.#prefixes.add(p);
  }

  /** fsyncs the prefix directories that received renames, so the new entries survive a power cut. */
  async syncDirs(prefixes: Iterable<string>): Promise<void> {
    await Promise.all([...new Set(prefixes)].map((p) => fsyncDir(join(this.#chunksDir, p))));
  }

  /** Removes what a failed write of `hash` left: its temp file, and the prefix directory if now empty. */
  async discard(hash: string, tmp: string): Promise<void> {
    await rm(tmp, { force: true }).catch(() => {});
    await this.#removePrefixIfEmpty(hash.slice(0, 2));
  }

  /** Removes a chunk, and its prefix directory if that is left empty; resolves true if it was there. */
  async delete(hash: string): Promise<boolean> {
    this.#verified.delete(hash);
    try {
      await unlink(this.path(hash));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    await this.#removePrefixIfEmpty(hash.slice(0, 2));
    return true;
  }

  async #removePrefixIfEmpty(prefix: string): Promise<void> {
    try {
      await rmdir(join(this.#chunksDir, prefix));
      this.#prefixes.delete(prefix);
    } catch {
      // not empty (or just refilled): keep it
    }
  }

  /** Every chunk hash in the store (unordered). */
  async *list(): AsyncGenerator<string> {
    for (const prefix of await readdir(this.#chunksDir)) {
      if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
      for (const rest of await readdir(join(this.#chunksDir, prefix))) {
        const hash = prefix + rest;
        if (isHashHex(hash)) yield hash;
      }
    }
  }

  /** Chunk count, bytes held, and the filesystem's free/total bytes. */
  async stats(): Promise<StoreStats> {
    let chunks = 0;
    let bytes = 0;
    for await (const hash of this.list()) {
      chunks++;
      bytes += (await stat(this.path(hash))).size;
    }
    const fs = await statfs(this.#chunksDir);
    return { chunks, bytes, fsFree: fs.bavail * fs.bsize, fsSize: fs.blocks * fs.bsize };
  }

  async #ensurePrefix(prefix: string): Promise<void> {
    if (this.#prefixes.has(prefix)) return;
    const dir = join(this.#chunksDir, prefix);
    try {
      await mkdir(dir);
      await fsyncDir(this.#chunksDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    this.#prefixes.add(prefix);
  }
}

/**
 * Writes `data` to a new file (never an existing one), optionally fsyncing it. Through libuv's pool: open, the write
 * (one, unless the kernel takes less) and the fsync; the close runs inline (no I/O after the fsync, or for a page
 * cache write).
 */
export async function writeNew(path: string, data: Uint8Array, sync: boolean): Promise<void> {
  const fd = await openFd(path, 'wx', 0o644);
  try {
    for (let done = 0; done < data.byteLength; )
      done += (await writeFd(fd, data, done, data.byteLength - done)).bytesWritten;
    if (sync) await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

function fileIdentity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function maxNs(st: BigIntStats): bigint {
  return st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
}

function checkHash(hash: string): void {
  if (!isHashHex(hash))
    throw new RswError('RSW_ERR_INVALID_HASH', `"${hash.slice(0, 80)}" is not a chunk hash`);
}
