import type { KeyObject } from 'node:crypto';
import { type FileHandle, open, stat } from 'node:fs/promises';
import type { ChunkerParams } from '../core/chunker.ts';
import { RswError } from '../core/errors.ts';
import { type Cutter, cdcCutter, chunkFile, type SlabBatch, slabBytesFor } from '../core/file-chunker.ts';
import { HASH_BYTES, hashHex } from '../core/hash.ts';
import { HashPool } from '../core/hash-pool.ts';
import { DETECT_BYTES, detectFormat } from '../core/image-format.ts';
import { type ChunkRef, type ImageFormat, validateImageName } from '../core/manifest.ts';
import { createSignedManifest, type OpenedManifest } from '../core/signed-manifest.ts';
import { SlabPool } from '../core/slab-pool.ts';
import { planSquashfsChunks, regionCutter } from '../core/squashfs-chunker.ts';
import { squashfsLayout } from '../core/squashfs-layout.ts';

export interface PublishInit {
  file: string;
  name: string;
  version: number;
  /** Detected from the file's first bytes when absent (see core/image-format.ts). */
  format?: ImageFormat;
  key: KeyObject;
  /** Where new chunks go: a ChunkBatch on a local store, or an uploader to a running head. */
  sink: ChunkSink;
  /** Chunk sizes, or a choice of them by the image's format (SquashFS uses smaller chunks: core/config.ts). */
  chunker: ChunkerParams | ((format: ImageFormat) => ChunkerParams);
  /** Chunk puts in flight (config: store.writeConcurrency). */
  writeConcurrency: number;
  signal?: AbortSignal;
  /** Called as bytes are chunked and stored: (bytes done, total). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Encrypt (`publish --encrypt`): each chunk is sealed before it is hashed and stored, so the manifest names the
   * ciphertext (core/chunk-cipher.ts's ChunkCipher).
   */
  cipher?: { seal(plain: Uint8Array): Buffer; readonly keyId: string };
}

/** Receives an image's chunks: staged by put(), made durable and visible by commit(), dropped by abort(). */
export interface ChunkSink {
  /**
   * Resolves true if the chunk was new to the destination. `data` is a view into a buffer publish reuses once this
   * resolves; `trusted`: publish has just hashed it, the sink need not hash it again.
   */
  put(hash: string, data: Buffer, opts?: { trusted?: boolean }): Promise<boolean>;
  commit(): Promise<unknown>;
  abort(): Promise<void>;
  /** Removes what commit() made visible, where the destination allows it. */
  undo(): Promise<void>;
}

export interface PublishResult {
  opened: OpenedManifest;
  /** Chunks (and their bytes) this publish added to the store; the rest were there already. */
  newChunks: number;
  newBytes: number;
  /** Removes the chunks this publish added: for a caller whose registration then fails. */
  rollback(): Promise<void>;
}

/** Size of a readable regular file or block device; clear errors for everything else. */
export async function checkImageFile(file: string): Promise<number> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RswError('RSW_ERR_FILE_NOT_FOUND', `${file} does not exist`);
    throw new RswError('RSW_ERR_FILE_UNREADABLE', `cannot stat ${file}: ${code}`);
  }
  if (st.isDirectory()) throw new RswError('RSW_ERR_NOT_A_FILE', `${file} is a directory, not an image file`);
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new RswError('RSW_ERR_NOT_A_FILE', `${file} is not a regular file or block device`);
  }
  let size: number;
  try {
    size = st.isBlockDevice() ? await blockDeviceSize(file) : st.size;
    const fh = await open(file, 'r');
    await fh.close();
  } catch (e) {
    throw new RswError(
      'RSW_ERR_FILE_UNREADABLE',
      `cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
  if (size === 0) throw new RswError('RSW_ERR_EMPTY_FILE', `${file} is empty: nothing to publish`);
  return size;
}

async function blockDeviceSize(dev: string): Promise<number> {
  // stat() reports 0 for a block device: find the last readable byte by bisection (~50 one-byte reads).
  const fh = await open(dev, 'r');
  try {
    let lo = 0;
    let hi = 2 ** 52;
    const one = Buffer.alloc(1);
    while (lo < hi) {
      const mid = Math.floor((lo + hi + 1) / 2);
      const { bytesRead } = await fh.read(one, 0, 1, mid - 1);
      if (bytesRead === 1) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  } finally {
    await fh.close();
  }
}

/**
 * Publishes an image file: FastCDC chunks, BLAKE3 names, every new chunk handed to the sink and committed before the
 * manifest is signed. On any failure or abort the sink is aborted, so the destination is as it was.
 *
 * A pipeline over the machine's cores, no chunk copied (docs/BENCHMARKS.md "Publish"):
 *   read 8 MiB slabs (libuv pool) → cut (main thread, core/file-chunker.ts) → hash a slab's chunks (worker thread,
 *   core/hash-pool.ts) → sink.put of each new chunk from the slab (libuv pool; `writeConcurrency` at once) → slab
 *   reused. Memory stays bounded by the slabs (core/slab-pool.ts): ~`SLABS` × (8 MiB + maxSize).
 */
export async function publishFile(init: PublishInit): Promise<PublishResult> {
  validateImageName(init.name);
  const size = await checkImageFile(init.file);
  const format = init.format ?? (await sniffFormat(init.file));
  const params = typeof init.chunker === 'function' ? init.chunker(format) : init.chunker;
  const added: ChunkRef[] = [];
  const chunks: ChunkRef[] = [];
  const seen = new Set<string>(); // identical chunks within one image (zero runs in raw images) are put once
  const writes = limiter(init.writeConcurrency);
  const batches = new Set<Promise<void>>();
  let failure: unknown;
  let done = 0;
  const interrupted = () =>
    new RswError('RSW_ERR_INTERRUPTED', 'publish interrupted; nothing was registered');

  const fh = await open(init.file, 'r');
  const hasher = new HashPool({ threads: HASH_THREADS });
  try {
    const cutter = await cutterFor(fh, size, format, params);
    const slabs = new SlabPool(SLABS, slabBytesFor(cutter));

    /** Hashes one slab's chunks, then stores the new ones from the slab, then gives the slab back. */
    const storeBatch = async (batch: SlabBatch, refs: ChunkRef[]): Promise<void> => {
      const slab = batch.slab;
      try {
        if (init.cipher) {
          await storeSealed(batch, refs, init.cipher);
          return;
        }
        const digests = await hasher.hashRanges(
          slab,
          batch.chunks.flatMap((c) => [c.at, c.length]),
        );
        const puts = await Promise.allSettled(
          batch.chunks.map(async (c, k) => {
            const ref = refs[k];
            ref.hash = digests.toString('hex', k * HASH_BYTES, (k + 1) * HASH_BYTES);
            if (!seen.has(ref.hash)) {
              seen.add(ref.hash);
              const data = slab.subarray(c.at, c.at + c.length);
              if (await writes(() => init.sink.put(ref.hash, data, { trusted: true }))) added.push(ref);
            }
            done += ref.length;
            init.onProgress?.(done, size);
          }),
        );
        // Every put has settled before the slab is reused, even when one failed.
        for (const r of puts) if (r.status === 'rejected') throw r.reason;
      } finally {
        slabs.release(slab);
      }
    };

    /** An encrypted image: each chunk sealed into its own buffer, hashed and stored as ciphertext. */
    const storeSealed = async (
      batch: SlabBatch,
      refs: ChunkRef[],
      cipher: NonNullable<PublishInit['cipher']>,
    ): Promise<void> => {
      const puts = await Promise.allSettled(
        batch.chunks.map(async (c, k) => {
          const ref = refs[k];
          const sealed = cipher.seal(batch.slab.subarray(c.at, c.at + c.length));
          ref.hash = hashHex(sealed);
          ref.length = sealed.length;
          if (!seen.has(ref.hash)) {
            seen.add(ref.hash);
            if (await writes(() => init.sink.put(ref.hash, sealed, { trusted: true }))) added.push(ref);
          }
          done += c.length;
          init.onProgress?.(done, size);
        }),
      );
      for (const r of puts) if (r.status === 'rejected') throw r.reason;
    };

    try {
      for await (const batch of chunkFile(fh, size, cutter, slabs)) {
        if (failure) throw failure;
        if (init.signal?.aborted) throw interrupted();
        const refs = batch.chunks.map((c) => ({ offset: c.offset, length: c.length, hash: '' }));
        chunks.push(...refs);
        const p = storeBatch(batch, refs).catch((e) => {
          failure ??= e;
          slabs.abort(e); // the reader may be waiting for a slab this batch will never give back
        });
        batches.add(p);
        p.finally(() => batches.delete(p));
      }
      await Promise.all(batches);
      if (failure) throw failure;
      if (init.signal?.aborted) throw interrupted();
      await init.sink.commit();
    } catch (e) {
      slabs.abort(e);
      await Promise.all(batches);
      await init.sink.abort();
      throw failure ?? e;
    }
  } finally {
    await hasher.close();
    await fh.close();
  }

  let sealedSize = 0;
  for (const c of chunks) {
    c.offset = sealedSize; // sealed chunks are 48 bytes longer: offsets are the running sum again
    sealedSize += c.length;
  }
  const opened = createSignedManifest(
    {
      name: init.name,
      version: init.version,
      format,
      size: sealedSize,
      chunks,
      ...(init.cipher ? { encryption: { cipher: 'chunk-v1' as const, keyId: init.cipher.keyId } } : {}),
    },
    init.key,
  );
  return {
    opened,
    newChunks: added.length,
    newBytes: added.reduce((s, c) => s + c.length, 0),
    rollback: () => init.sink.undo(),
  };
}

/** Slabs in the pipeline: two with the reader (being cut, being read), the rest hashing or being written. */
const SLABS = 4;
/** BLAKE3 at ~4.5 GB/s keeps up with the ~2 GB/s chunker on one thread. */
const HASH_THREADS = 1;

/** Runs at most `n` of the functions given to it at once. */
function limiter(n: number): <T>(f: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return async (f) => {
    while (active >= n) await new Promise<void>((r) => queue.push(r));
    active++;
    try {
      return await f();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

/**
 * Where the image's chunks are cut: a SquashFS image whose block layout can be read at its block boundaries
 * (core/squashfs-chunker.ts), anything else content-defined.
 */
async function cutterFor(
  fh: FileHandle,
  size: number,
  format: ImageFormat,
  params: ChunkerParams,
): Promise<Cutter> {
  if (format !== 'squashfs') return cdcCutter(params);
  const layout = await squashfsLayout(async (offset, length) => {
    const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  }, size);
  if (!layout) return cdcCutter(params);
  return regionCutter(planSquashfsChunks(layout, size, params), params);
}

async function sniffFormat(file: string): Promise<ImageFormat> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(DETECT_BYTES);
    const { bytesRead } = await fh.read(head, 0, DETECT_BYTES, 0);
    return detectFormat(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
