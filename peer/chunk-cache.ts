import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { asDataError, isRswError } from '../core/errors.ts';
import { ensureWritableDir, writeFileAtomic } from '../core/fs-atomic.ts';
import { hashHex } from '../core/hash.ts';
import { decodeManifest, type Manifest, manifestId } from '../core/manifest.ts';
import { envelopeCanonical } from '../core/signed-manifest.ts';
import { ChunkStore, writeNew } from '../core/store.ts';
import type { ImageWriter } from './image-writer.ts';
import type { ResumeState } from './resume-state.ts';

/**
 * A node's cache of the image versions it fetched (`fetch --cache DIR`), so the next version moves only the chunks
 * that changed (desync-style), a rollback to a cached version moves nothing, and a preheat has somewhere to go.
 *
 *   DIR/chunks/ab/cdef…   verified chunks, content-addressed (core/store.ts, always re-hashed on read)
 *   DIR/manifests/ID      the signed manifest of each cached version
 *   DIR/cached.json       which versions are cached, most recently used last, and the output each was written to
 *
 * Two sources for a chunk of a new manifest: the chunk store, and seeds — an output (file or block device) a cached
 * version was written to, read at the offsets the old manifest gives and used only if the bytes still hash right.
 * A fetched version is not copied into the store: its output is its seed (copying it cost a second write of the
 * whole image per fetch). Before an output is overwritten in place (v1 → v2 in the same file) the seed chunks the
 * write would destroy are copied into the store — those the new version needs elsewhere, and those of the old
 * version the new one lacks (a rollback) — so an update copies about what changed. An output modified behind the
 * cache's back (a mounted disk) only costs re-downloads: every seed read is re-hashed. Chunk files are written
 * without fsync: a torn one fails its hash on read and is dropped, so a crash costs a re-download, never a wrong byte.
 *
 * Bounded: after each fetch only the `keepVersions` most recently used versions of each image are kept; chunks no
 * kept version references are deleted.
 */
export interface CachedVersion {
  name: string;
  version: number;
  id: string;
  /** The file or device this version was written to (a seed while it still holds those bytes). */
  output?: string;
  /** ISO 8601: last fetched or preheated; eviction keeps the most recent. */
  usedAt: string;
}

export interface CacheUse {
  chunks: number;
  bytes: number;
}

const PREFILL_SYNC_CHUNKS = 256;
/** Chunks absorb() copies into the store at once. */
const COPIES_AT_ONCE = 2;
/** Our own copies were size-checked when fetched; this only bounds a damaged file. */
const MANIFEST_CAP = 256 * 1024 * 1024;

export class ChunkCache {
  readonly dir: string;
  readonly store: ChunkStore;
  readonly #keepVersions: number;
  readonly #copies: boolean;
  #entries: CachedVersion[] = [];

  private constructor(dir: string, store: ChunkStore, keepVersions: number, copies: boolean) {
    this.dir = dir;
    this.store = store;
    this.#keepVersions = keepVersions;
    this.#copies = copies;
  }

  /**
   * `copies`: absorb() also copies a version's chunks into the store when its output seeds them, so the cache alone
   * can rebuild a version whose output was lost or overwritten behind its back (config `peer.cacheCopies`).
   */
  static async open(dir: string, opts: { keepVersions: number; copies?: boolean }): Promise<ChunkCache> {
    await ensureWritableDir(join(dir, 'manifests'));
    const store = await ChunkStore.open({ dataDir: dir, verifyOnRead: true });
    const cache = new ChunkCache(dir, store, opts.keepVersions, opts.copies ?? false);
    try {
      const parsed = JSON.parse(await readFile(join(dir, 'cached.json'), 'utf8'));
      if (Array.isArray(parsed?.versions)) cache.#entries = parsed.versions;
    } catch {
      // missing or torn: an empty cache (chunks left over are collected by the next evict)
    }
    return cache;
  }

  /** Cached versions, most recently used last. */
  versions(): CachedVersion[] {
    return [...this.#entries];
  }

  /** The signed manifest of a cached version, if its file is still here. */
  async envelope(id: string): Promise<Buffer | undefined> {
    return readFile(join(this.dir, 'manifests', id)).catch(() => undefined);
  }

  /**
   * Copies into the store the chunks of `m` that are not there but sit in a seed (an earlier version's output).
   * Call before opening the output `out`: it may be one of the seeds (an update in place); chunks it already holds
   * at the offsets `m` wants them are left where they are (prefill with `inPlace` finds them there), and the chunks of
   * the version it holds that `m` lacks are copied too (the write would destroy the only copy of a cached version).
   */
  async rescueSeeds(m: Manifest, out?: string): Promise<CacheUse> {
    const wanted = new Set<string>();
    const held = await this.store.held(m.chunks.map((c) => c.hash));
    for (const c of m.chunks) if (!held.has(c.hash)) wanted.add(c.hash);
    const inNew = new Set(m.chunks.map((c) => c.hash));
    const used: CacheUse = { chunks: 0, bytes: 0 };
    for (const entry of [...this.#entries].reverse()) {
      if (!entry.output) continue;
      const inPlace = entry.output === out;
      if (wanted.size === 0 && !inPlace) continue;
      const old = await this.#manifest(entry.id);
      if (!old) continue;
      if (inPlace) {
        // Chunks staying at the same offset need no rescue, unless the new image also wants them elsewhere.
        const stays = new Set(old.chunks.map((c) => `${c.offset}:${c.hash}`));
        const movedOrDup = new Set(
          m.chunks.filter((c) => !stays.has(`${c.offset}:${c.hash}`)).map((c) => c.hash),
        );
        for (const h of [...wanted]) if (!movedOrDup.has(h)) wanted.delete(h);
        // After the update the output seeds every chunk of `m`; the old version's others would be gone.
        const oldOnly = old.chunks.filter((c) => !inNew.has(c.hash)).map((c) => c.hash);
        const oldHeld = await this.store.held(oldOnly);
        for (const hash of oldOnly) if (!oldHeld.has(hash)) wanted.add(hash);
      }
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        fh = await open(entry.output, 'r');
      } catch {
        continue; // gone (tmpfs after a reboot, a removed file): not a seed any more
      }
      try {
        for (const c of old.chunks) {
          if (!wanted.has(c.hash)) continue;
          const data = Buffer.allocUnsafe(c.length);
          const { bytesRead } = await fh.read(data, 0, c.length, c.offset);
          if (bytesRead !== c.length || hashHex(data) !== c.hash) continue;
          await this.#putLoose(c.hash, data);
          wanted.delete(c.hash);
          used.chunks++;
          used.bytes += c.length;
        }
      } finally {
        await fh.close();
      }
    }
    return used;
  }

  /** Whether `out` held a cached version when it was last written (an update of it is in place). */
  heldBy(out: string): boolean {
    return this.#entries.some((e) => e.output === out);
  }

  /**
   * Writes every chunk of `m` the store holds and the resume record lacks into the output, then records them (data
   * fsynced first, as ResumeState requires). The fetcher then counts them as reused and downloads the rest. With
   * `inPlace` (the output holds an earlier version) a chunk already at its offset is recognised by its hash and not
   * written again: updating a reimaged disk rewrites only what changed.
   */
  async prefill(
    m: Manifest,
    writer: Pick<ImageWriter, 'write' | 'read' | 'sync'>,
    resume: ResumeState,
    opts: { inPlace?: boolean } = {},
  ): Promise<CacheUse> {
    const byHash = new Map<string, number[]>();
    m.chunks.forEach((c, i) => {
      if (resume.has(i)) return;
      const list = byHash.get(c.hash);
      if (list) list.push(i);
      else byHash.set(c.hash, [i]);
    });
    // One listing per prefix directory, not a failed open per chunk of a cache that lacks it (a fresh cache: all).
    const held = await this.store.held(byHash.keys());
    const used: CacheUse = { chunks: 0, bytes: 0 };
    let batch: number[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await writer.sync();
      await resume.markVerified(batch);
      batch = [];
    };
    for (const [hash, all] of byHash) {
      if (!opts.inPlace && !held.has(hash)) continue;
      let indices = all;
      if (opts.inPlace) {
        indices = [];
        for (const i of all) {
          const c = m.chunks[i];
          if (hashHex(await writer.read(c.offset, c.length)) === hash) {
            batch.push(i);
            used.chunks++;
            used.bytes += c.length;
          } else indices.push(i);
        }
        if (indices.length === 0 || !held.has(hash)) {
          if (batch.length >= PREFILL_SYNC_CHUNKS) await flush();
          continue;
        }
      }
      let data: Buffer;
      try {
        data = await this.store.get(hash); // re-hashed: a torn or rotten chunk is dropped here
      } catch (e) {
        if (isRswError(e) && (e.code === 'RSW_ERR_CHUNK_NOT_FOUND' || e.code === 'RSW_ERR_CHUNK_CORRUPT'))
          continue;
        throw e;
      }
      for (const i of indices) {
        await writer.write(m.chunks[i].offset, data);
        batch.push(i);
        used.chunks++;
        used.bytes += m.chunks[i].length;
      }
      if (batch.length >= PREFILL_SYNC_CHUNKS) await flush();
    }
    await flush();
    return used;
  }

  /**
   * Takes a complete, verified image into the cache: its signed manifest and its `output` as the seed of its chunks
   * (nothing copied, unless the cache keeps copies); without an output (a preheat's temporary file), its chunks, read
   * back. Then evicts beyond `keepVersions` per image.
   *
   * `reader` must hold the image as the fetch verified it, chunk by chunk, as it wrote it. The copies are not hashed
   * again (that was ~0.2 CPU s per GiB, and the copy is CPU the node's own downloads and uploads compete with): every
   * read of this cache's store hashes what it reads (verifyOnRead), so a copy that is wrong — the output changed
   * behind the fetch's back in between — is dropped when it is first read and costs a download, never a wrong byte.
   */
  async absorb(
    ref: { name: string; version: number; id: string; envelope: Uint8Array; manifest: Manifest },
    reader: Pick<ImageWriter, 'read'> & Partial<Pick<ImageWriter, 'readInto'>>,
    output?: string,
  ): Promise<{ bytesFreed: number }> {
    const seen = new Set<string>();
    const candidates = (output === undefined || this.#copies ? ref.manifest.chunks : []).filter((c) => {
      if (seen.has(c.hash)) return false;
      seen.add(c.hash);
      return true;
    });
    const held = await this.store.held(candidates.map((c) => c.hash));
    const copy = candidates.filter((c) => !held.has(c.hash));
    // Two chunks at once, each read into its worker's one buffer. One after another into a fresh buffer each, the
    // copy of 1 GiB took 8-18 s of wall after the summary and ~7 CPU s, mostly GC of those buffers, and the 4 GiB
    // fetch peaked at 167 MiB RSS; with them ~1.2 s and ~2-4 CPU s per GiB, 147 MiB (bench/fetch.ts, loaded
    // machine; 4 at once: the same time, 148 MiB).
    let next = 0;
    const longest = copy.reduce((m, c) => Math.max(m, c.length), 0);
    const worker = async (): Promise<void> => {
      const buf = reader.readInto ? Buffer.allocUnsafe(longest) : undefined;
      while (next < copy.length) {
        const c = copy[next++];
        let data: Buffer;
        if (buf && reader.readInto) {
          data = buf.subarray(0, c.length);
          await reader.readInto(data, c.offset);
        } else data = await reader.read(c.offset, c.length);
        await this.#putLoose(c.hash, data, true);
      }
    };
    await Promise.all(Array.from({ length: Math.min(COPIES_AT_ONCE, copy.length) }, worker));
    await writeFileAtomic(join(this.dir, 'manifests', ref.id), ref.envelope).catch((e) => {
      throw asDataError(e, `cannot write into ${this.dir}`);
    });
    const entry: CachedVersion = {
      name: ref.name,
      version: ref.version,
      id: ref.id,
      output,
      usedAt: new Date().toISOString(),
    };
    // An output now holds this version, so it no longer seeds what it held before (the chunks stay cached).
    this.#entries = this.#entries
      .filter((e) => e.id !== ref.id)
      .map((e) => (output !== undefined && e.output === output ? { ...e, output: undefined } : e));
    this.#entries.push(entry);
    return this.evict();
  }

  /** Keeps the `keepVersions` most recently used versions of each image; deletes every chunk none of them uses. */
  async evict(): Promise<{ bytesFreed: number }> {
    const perName = new Map<string, number>();
    const kept: CachedVersion[] = [];
    for (const e of [...this.#entries].reverse()) {
      const n = perName.get(e.name) ?? 0;
      if (n >= this.#keepVersions) continue;
      perName.set(e.name, n + 1);
      kept.unshift(e);
    }
    const dropped = this.#entries.filter((e) => !kept.includes(e));
    this.#entries = kept;
    await this.#save();
    const live = new Set<string>();
    for (const e of kept) {
      const m = await this.#manifest(e.id);
      for (const c of m?.chunks ?? []) live.add(c.hash);
    }
    for (const e of dropped) await rm(join(this.dir, 'manifests', e.id), { force: true });
    let bytesFreed = 0;
    for await (const hash of this.store.list()) {
      if (live.has(hash)) continue;
      const size = (await stat(this.store.path(hash)).catch(() => undefined))?.size ?? 0;
      if (await this.store.delete(hash)) bytesFreed += size;
    }
    return { bytesFreed };
  }

  async #save(): Promise<void> {
    await writeFileAtomic(
      join(this.dir, 'cached.json'),
      JSON.stringify({ versions: this.#entries }, null, 1),
    ).catch((e) => {
      throw asDataError(e, `cannot write into ${this.dir}`);
    });
  }

  /** The chunk list of a cached manifest (its signature was checked when it was fetched; the file is ours). */
  async #manifest(id: string): Promise<Manifest | undefined> {
    const env = await this.envelope(id);
    if (!env) return undefined;
    try {
      const canonical = envelopeCanonical(env);
      if (manifestId(canonical) !== id) return undefined;
      return decodeManifest(canonical, MANIFEST_CAP);
    } catch {
      return undefined;
    }
  }

  /** `absent`: the caller knows the store lacked it (held()); one stored meanwhile is replaced by the same bytes. */
  async #putLoose(hash: string, data: Buffer, absent = false): Promise<void> {
    if (!absent && (await this.store.has(hash))) return;
    const tmp = this.store.tempPath(hash);
    try {
      await writeNew(tmp, data, false);
      await this.store.install(hash, tmp);
    } catch (e) {
      await this.store.discard(hash, tmp);
      throw asDataError(e, `cannot write a chunk into ${this.dir}`);
    }
  }
}
