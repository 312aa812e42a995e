import type { KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { CHUNK_CIPHER_OVERHEAD } from '../core/chunk-cipher.ts';
import { type Chunk, type ChunkerParams, chunkStream } from '../core/chunker.ts';
import { RswError } from '../core/errors.ts';
import { hashHex } from '../core/hash.ts';
import { DETECT_BYTES, detectFormat } from '../core/image-format.ts';
import { type ChunkRef, type ImageFormat, validateImageName } from '../core/manifest.ts';
import { createSignedManifest, type OpenedManifest } from '../core/signed-manifest.ts';
import { chunkRegions, planSquashfsChunks } from '../core/squashfs-chunker.ts';
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
  /** Chunk writes in flight (config: store.writeConcurrency). */
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
  /** Resolves true if the chunk was new to the destination. */
  put(hash: string, data: Buffer): Promise<boolean>;
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
 * Publishes an image file: FastCDC chunks, BLAKE3 names, every new chunk handed to the sink
 * and committed before the manifest is signed. Memory stays bounded (the chunker's window plus `writeConcurrency`
 * chunks in flight). On any failure or abort the sink is aborted, so the destination is as it was.
 */
export async function publishFile(init: PublishInit): Promise<PublishResult> {
  validateImageName(init.name);
  const size = await checkImageFile(init.file);
  const format = init.format ?? (await sniffFormat(init.file));
  const added: ChunkRef[] = [];

  const chunks: ChunkRef[] = [];
  const seen = new Set<string>(); // identical chunks within one image (zero runs in raw images) are put once
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let done = 0;
  const source = createReadStream(init.file, { highWaterMark: 1024 * 1024, end: size - 1 });
  const cleanup: (() => Promise<void>)[] = [];
  const store = async (ref: ChunkRef, plain: Buffer): Promise<void> => {
    const data = init.cipher ? init.cipher.seal(plain) : plain;
    ref.length = data.length;
    ref.hash = hashHex(data);
    if (!seen.has(ref.hash)) {
      seen.add(ref.hash);
      if (await init.sink.put(ref.hash, data)) added.push(ref);
    }
    done += plain.length;
    init.onProgress?.(done, size);
  };
  try {
    const params = typeof init.chunker === 'function' ? init.chunker(format) : init.chunker;
    for await (const chunk of await chunksOf(init.file, size, format, source, params, cleanup)) {
      if (init.signal?.aborted)
        throw new RswError('RSW_ERR_INTERRUPTED', 'publish interrupted; nothing was registered');
      if (failure) throw failure;
      const ref: ChunkRef = { offset: chunk.offset, length: chunk.length, hash: '' };
      chunks.push(ref);
      const p = store(ref, chunk.data).catch((e) => {
        failure ??= e;
      });
      inFlight.add(p);
      p.finally(() => inFlight.delete(p));
      if (inFlight.size >= init.writeConcurrency) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    if (init.signal?.aborted) {
      throw new RswError('RSW_ERR_INTERRUPTED', 'publish interrupted; nothing was registered');
    }
    const overhead = init.cipher ? chunks.length * CHUNK_CIPHER_OVERHEAD : 0;
    const total = chunks.reduce((s, c) => s + c.length, 0) - overhead;
    if (total !== size) {
      throw new RswError(
        'RSW_ERR_FILE_UNREADABLE',
        `${init.file} changed size while being read (${size} → ${total})`,
      );
    }
    await init.sink.commit();
  } catch (e) {
    source.destroy();
    await Promise.all(inFlight);
    await init.sink.abort();
    throw e;
  } finally {
    source.destroy();
    for (const f of cleanup) await f();
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

/**
 * The chunks of an image: a SquashFS image whose block layout can be read is cut at its block boundaries
 * (core/squashfs-chunker.ts), anything else content-defined from the stream.
 */
async function chunksOf(
  file: string,
  size: number,
  format: ImageFormat,
  source: AsyncIterable<Uint8Array>,
  params: ChunkerParams,
  cleanup: (() => Promise<void>)[],
): Promise<AsyncIterable<Chunk>> {
  if (format !== 'squashfs') return chunkStream(source, params);
  const fh = await open(file, 'r');
  cleanup.push(() => fh.close());
  const layout = await squashfsLayout(async (offset, length) => {
    const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  }, size);
  if (!layout) return chunkStream(source, params);
  return chunkRegions(fh, planSquashfsChunks(layout, size, params), params);
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
