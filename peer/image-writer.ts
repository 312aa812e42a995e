import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { type FileHandle, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { count } from '../core/counters.ts';
import { asDataError, RswError } from '../core/errors.ts';
import { fsyncDir } from '../core/fs-atomic.ts';
import { asBuffer } from '../core/hash.ts';

/**
 * The target of a fetch: a regular file (stateless root in tmpfs, `--out FILE`) or a block device (reimage,
 * `--out /dev/sdX`). Chunks arrive out of order from many peers and are written where they belong with positional
 * writes (pwrite), so any number of writes may be in flight at once; memory is bounded by the chunks the caller holds.
 *
 * All-zero chunks (common in raw disk images) are not written where the target is known to read zeros already: the
 * part of a regular file this writer created or extended with ftruncate (a hole), or a block device the caller
 * declares zeroed. Below that, on a regular file (a resumed fetch), the region is read first and the write skipped if
 * it already reads zeros — reading a hole costs no disk I/O, writing zeros into it would allocate real blocks. A block
 * device is written unconditionally: reading it costs as much as writing.
 *
 * Callers write chunks of a manifest, which never overlap: a region skipped as zero is never written non-zero later.
 */
export interface ImageWriterOptions {
  /**
   * The whole target already reads as zeros (a freshly discarded or zero-filled disk): all-zero chunks are skipped
   * everywhere. Only the caller can know this for a block device.
   * @default false
   */
  assumeZeroed?: boolean;
}

export interface ImageWriterStats {
  /** Bytes actually written to the target (a chunk written twice counts twice). */
  bytesWritten: number;
  /** Bytes of all-zero chunks not written because the target already read zeros there. */
  bytesSkippedZero: number;
}

export type TargetKind = 'file' | 'block';

/** Zero chunks are compared and verified in pieces of this size (memcmp against a static zero buffer). */
const ZERO_PIECE = 1024 * 1024;
const ZEROS = Buffer.alloc(ZERO_PIECE);

export class ImageWriter {
  readonly path: string;
  /** Image size in bytes; writes and reads must stay inside it. */
  readonly size: number;
  readonly kind: TargetKind;
  readonly #fh: FileHandle;
  /** The target reads zeros from here to `size` (a hole this writer made, or the caller's word). */
  readonly #zeroFrom: number;
  #bytesWritten = 0;
  #bytesSkippedZero = 0;
  #closed = false;

  private constructor(path: string, size: number, kind: TargetKind, fh: FileHandle, zeroFrom: number) {
    this.path = path;
    this.size = size;
    this.kind = kind;
    this.#fh = fh;
    this.#zeroFrom = zeroFrom;
  }

  /**
   * Opens `path` for an image of `size` bytes. A regular file is created if missing and sized with ftruncate (sparse);
   * existing content is kept, so a resumed fetch keeps what it had. A block device is opened exclusively (EBUSY when
   * mounted) and must hold at least `size` bytes. Throws RSW_ERR_NOT_A_FILE (directory, character device, FIFO),
   * RSW_ERR_DATA_UNWRITABLE (read-only filesystem, permissions, missing directory, device in use) or
   * RSW_ERR_DISK_FULL (a device smaller than the image, a file larger than the filesystem allows).
   */
  static async open(path: string, size: number, opts: ImageWriterOptions = {}): Promise<ImageWriter> {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`image size ${size} is invalid`);
    let st: Stats | undefined;
    try {
      st = await stat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw asDataError(e, `cannot open ${path}`);
    }
    if (st?.isBlockDevice()) return ImageWriter.#openBlock(path, size, st.rdev, opts);
    if (st && !st.isFile()) {
      const what = st.isDirectory() ? 'a directory' : 'neither a regular file nor a block device';
      throw new RswError('RSW_ERR_NOT_A_FILE', `cannot write the image to ${path}: it is ${what}`);
    }
    return ImageWriter.#openFile(path, size, st === undefined, opts);
  }

  static async #openFile(path: string, size: number, create: boolean, opts: ImageWriterOptions) {
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (e) {
      throw openError(e, path);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile())
        throw new RswError('RSW_ERR_NOT_A_FILE', `${path} changed into a non-file while opening`);
      if (st.size !== size) await fh.truncate(size);
      // The new directory entry must survive a power cut before any chunk of this file is recorded as done.
      if (create) await fsyncDir(dirname(path));
      const zeroFrom = opts.assumeZeroed ? 0 : Math.min(st.size, size);
      return new ImageWriter(path, size, 'file', fh, zeroFrom);
    } catch (e) {
      await fh.close();
      if ((e as NodeJS.ErrnoException).code === 'EFBIG') {
        throw new RswError(
          'RSW_ERR_DISK_FULL',
          `cannot size ${path} to ${size} bytes: file too large for its filesystem`,
          {
            cause: e,
          },
        );
      }
      throw asDataError(e, `cannot size ${path} to ${size} bytes`);
    }
  }

  static async #openBlock(path: string, size: number, rdev: number, opts: ImageWriterOptions) {
    let fh: FileHandle;
    try {
      // O_EXCL on a block device (without O_CREAT) fails with EBUSY while it is mounted or held by md/LVM/dm.
      fh = await open(path, constants.O_RDWR | constants.O_EXCL);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EBUSY') {
        throw new RswError(
          'RSW_ERR_DATA_UNWRITABLE',
          `cannot write the image to ${path}: the device is in use (mounted, or part of RAID/LVM?)`,
          { cause: e },
        );
      }
      throw openError(e, path);
    }
    try {
      const deviceSize = await blockDeviceSize(fh, rdev);
      if (deviceSize < size) {
        throw new RswError(
          'RSW_ERR_DISK_FULL',
          `${path} holds ${deviceSize} bytes, smaller than the image (${size} bytes)`,
        );
      }
      return new ImageWriter(path, size, 'block', fh, opts.assumeZeroed ? 0 : size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /**
   * Writes one chunk at `offset`. Safe to call concurrently for chunks that do not overlap. Throws RSW_ERR_DISK_FULL
   * when the filesystem fills up (a sparse file can run out of space long after open).
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#check(offset, data.length);
    count('writer.writes');
    if (isAllZero(data) && (await this.#readsAsZero(offset, data.length))) {
      this.#bytesSkippedZero += data.length;
      return;
    }
    try {
      for (let done = 0; done < data.length; ) {
        const { bytesWritten } = await this.#fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw asDataError(e, `cannot write ${this.path} at offset ${offset}`);
    }
    this.#bytesWritten += data.length;
  }

  /** Reads `length` bytes at `offset` (a written chunk, to serve it onward or verify it). */
  async read(offset: number, length: number): Promise<Buffer> {
    this.#check(offset, length);
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  /** Makes every completed write durable (fdatasync). Call before recording chunks as done (see ResumeState). */
  async sync(): Promise<void> {
    if (this.#closed) throw new Error(`image writer for ${this.path} is closed`);
    count('writer.syncs');
    try {
      await this.#fh.datasync();
    } catch (e) {
      throw asDataError(e, `cannot flush ${this.path}`);
    }
  }

  /** Closes the target (no sync: call sync() first if the writes must be durable). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#fh.close();
  }

  stats(): ImageWriterStats {
    return { bytesWritten: this.#bytesWritten, bytesSkippedZero: this.#bytesSkippedZero };
  }

  async #readsAsZero(offset: number, length: number): Promise<boolean> {
    if (offset >= this.#zeroFrom) return true;
    if (this.kind === 'block') return false;
    const end = Math.min(offset + length, this.#zeroFrom);
    const piece = Buffer.allocUnsafe(Math.min(ZERO_PIECE, end - offset));
    for (let p = offset; p < end; p += piece.length) {
      const view = piece.subarray(0, Math.min(piece.length, end - p));
      await this.readInto(view, p);
      if (!isAllZero(view)) return false;
    }
    return true;
  }

  /** Reads `buf.length` bytes at `offset` into `buf` (a buffer the caller reuses, e.g. from a BufferPool). */
  async readInto(buf: Buffer, offset: number): Promise<void> {
    this.#check(offset, buf.length);
    count('writer.reads');
    for (let done = 0; done < buf.length; ) {
      const { bytesRead } = await this.#fh.read(buf, done, buf.length - done, offset + done);
      if (bytesRead === 0)
        throw new Error(`${this.path} ends before offset ${offset + buf.length} (truncated?)`);
      done += bytesRead;
    }
  }

  #check(offset: number, length: number): void {
    if (this.#closed) throw new Error(`image writer for ${this.path} is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`range ${offset}+${length} is outside the image (${this.size} bytes)`);
    }
  }
}

/** True when every byte of `data` is zero; stops at the first non-zero piece (random data: after one memcmp). */
export function isAllZero(data: Uint8Array): boolean {
  const buf = asBuffer(data);
  for (let p = 0; p < buf.length; p += ZERO_PIECE) {
    const n = Math.min(ZERO_PIECE, buf.length - p);
    if (buf.compare(ZEROS, 0, n, p, p + n) !== 0) return false;
  }
  return true;
}

/**
 * Size of an open block device in bytes. stat() reports 0 for devices and Node has no BLKGETSIZE64 ioctl nor lseek, so
 * read `/sys/dev/block/MAJOR:MINOR/size` (512-byte sectors, whatever the logical block size); where sysfs is missing
 * (an early initramfs), probe: a pread at or past the end returns 0 bytes.
 */
export async function blockDeviceSize(fh: FileHandle, rdev: number, sysfs = '/sys'): Promise<number> {
  const dev = BigInt(rdev);
  // glibc's dev_t encoding (gnu_dev_major / gnu_dev_minor).
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  try {
    const sectors = Number((await readFile(`${sysfs}/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    if (Number.isSafeInteger(sectors) && sectors >= 0) return sectors * 512;
  } catch {
    // fall through to probing
  }
  const probe = Buffer.alloc(1);
  const readsAt = async (sector: number) => (await fh.read(probe, 0, 1, sector * 512)).bytesRead === 1;
  if (!(await readsAt(0))) return 0;
  let lo = 0; // a sector known to exist
  let hi = 1; // a sector not yet known to exist
  while (await readsAt(hi)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await readsAt(mid)) lo = mid;
    else hi = mid;
  }
  return (lo + 1) * 512;
}

function openError(e: unknown, path: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EISDIR') {
    return new RswError('RSW_ERR_NOT_A_FILE', `cannot write the image to ${path}: it is a directory`, {
      cause: e,
    });
  }
  if (code === 'ENOENT') {
    return new RswError('RSW_ERR_DATA_UNWRITABLE', `cannot create ${path}: its directory does not exist`, {
      cause: e,
    });
  }
  return asDataError(e, `cannot open ${path} for writing`);
}
