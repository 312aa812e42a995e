import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { asDataError, RswError } from './errors.ts';
import { ensureWritableDir, fsyncDir } from './fs-atomic.ts';
import { hashHex, isHashHex } from './hash.ts';

export interface ChunkStoreInit {
  /** The data directory; chunks live under DIR/chunks/ab/cdef…, temp files under DIR/tmp/. */
  dataDir: string;
  /** Re-hash every chunk read from disk and refuse one that does not match. @default true */
  verifyOnRead?: boolean;
}

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
  readonly #chunksDir: string;
  readonly #tmpDir: string;
  readonly #prefixes = new Set<string>();

  private constructor(init: ChunkStoreInit) {
    this.dataDir = init.dataDir;
    this.verifyOnRead = init.verifyOnRead ?? true;
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
    await Promise.all(
      [...byPrefix].map(async ([prefix, list]) => {
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
   * and RSW_ERR_CHUNK_CORRUPT thrown, so it is fetched again rather than served.
   */
  async get(hash: string): Promise<Buffer> {
    let data: Buffer;
    try {
      data = await readFile(this.path(hash));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new RswError('RSW_ERR_CHUNK_NOT_FOUND', `chunk ${hash} is not in the store`);
      }
      throw e;
    }
    if (this.verifyOnRead && hashHex(data) !== hash) {
      await rm(this.path(hash), { force: true });
      throw new RswError(
        'RSW_ERR_CHUNK_CORRUPT',
        `chunk ${hash} on disk does not match its hash; removed it`,
      );
    }
    return data;
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

/** Writes `data` to a new file (never an existing one), optionally fsyncing it. */
export async function writeNew(path: string, data: Uint8Array, sync: boolean): Promise<void> {
  const fh = await open(path, 'wx', 0o644);
  try {
    await fh.writeFile(data);
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
}

function checkHash(hash: string): void {
  if (!isHashHex(hash))
    throw new RswError('RSW_ERR_INVALID_HASH', `"${hash.slice(0, 80)}" is not a chunk hash`);
}
