import { type FileHandle, open, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { asDataError, RswError } from '../core/errors.ts';
import { ensureWritableDir, writeFileAtomic } from '../core/fs-atomic.ts';
import { hash, hashHex, isHashHex } from '../core/hash.ts';
import type { ChunkRef } from '../core/manifest.ts';

/**
 * The durable record of which chunks of one image are verified and in the output, so a fetch killed at any point
 * (SIGKILL, power cut) resumes and downloads only what is missing.
 *
 * Protocol — the invariant is "every chunk in the record is durably in the output":
 *   1. write verified chunks into the output (ImageWriter.write, any order, concurrently);
 *   2. ImageWriter.sync() — fdatasync: the data is on disk;
 *   3. ResumeState.markVerified(those indices) — append one entry to the record, fdatasync: the claim is on disk.
 * A crash before 3 only loses the claim, and those chunks are fetched again. Batch 2+3 (every N chunks or T ms): a
 * batch costs two fdatasyncs whatever its size, and a crash loses at most one batch of work.
 *
 * Format: an append-only log. Header `"RSWR" | u8 1 | 3 zero bytes | u32 chunkCount | 32-byte image id | 16-byte
 * check`, then entries `u32 n | n × u32 index | 16-byte check`, each check the first 16 bytes of BLAKE3(image id ‖
 * the bytes before it in the entry). A torn append (crash mid-write) fails its check: it and everything after it
 * are dropped. Why a log rather than rewriting a bitmap atomically each batch: an append is one small write and one
 * fdatasync, where temp file + fsync + rename + directory fsync is two fsyncs and a journal commit per batch; for
 * 20,000 chunks the log stays under ~100 KB (4 bytes per chunk plus 20 per batch). open() compacts it once, atomically
 * (temp + fsync + rename + dir fsync), which also drops a torn tail, so appends never follow garbage.
 *
 * The record is keyed by image id, but another fetch into the same output (another image, another tool, a deleted and
 * recreated file) can invalidate it behind its back. Hence verifyRecorded(): on resume (count > 0), re-hash the
 * recorded chunks from the output and forget those that no longer match. Run it on every resume: it reads only what
 * the record claims, at disk speed (BLAKE3 ~4 GB/s), and costs nothing on a fresh start.
 */
export type RecordOrigin =
  /** no record existed: starts empty */
  | 'new'
  /** a record for this image: its verified chunks are kept (a torn tail entry is dropped) */
  | 'resumed'
  /** a record for another image (or chunk count): discarded, starts empty */
  | 'foreign'
  /** unreadable header: discarded, starts empty */
  | 'corrupt';

const MAGIC = Buffer.from('RSWR');
const FORMAT = 1;
const CHECK_BYTES = 16;
const HEADER_BYTES = 4 + 1 + 3 + 4 + 32 + CHECK_BYTES;

export class ResumeState {
  readonly file: string;
  readonly imageId: string;
  readonly chunkCount: number;
  /** What open() found on disk. */
  readonly origin: RecordOrigin;
  readonly #id: Buffer;
  readonly #have: Uint8Array;
  #count = 0;
  #fh: FileHandle | undefined;
  /** Bytes of the record known good; a failed append is cut back to this. */
  #length = 0;
  /** Appends and rewrites run one at a time, in call order. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    file: string,
    imageId: string,
    chunkCount: number,
    origin: RecordOrigin,
    have: Uint8Array,
  ) {
    this.file = file;
    this.imageId = imageId;
    this.chunkCount = chunkCount;
    this.origin = origin;
    this.#id = Buffer.from(imageId, 'hex');
    this.#have = have;
    for (const b of have) this.#count += b;
  }

  /**
   * Opens (or creates) the record `file` for image `imageId` of `chunkCount` chunks. A record for another image, or
   * one whose header is damaged, is discarded. The record on disk is rewritten atomically before this returns, so a
   * record of another image never outlives the start of this fetch.
   */
  static async open(file: string, imageId: string, chunkCount: number): Promise<ResumeState> {
    if (!isHashHex(imageId)) throw new RswError('RSW_ERR_INVALID_HASH', `image id ${imageId} is not a hash`);
    if (!Number.isSafeInteger(chunkCount) || chunkCount < 0 || chunkCount > 0xffffffff) {
      throw new RangeError(`chunk count ${chunkCount} is invalid`);
    }
    await ensureWritableDir(dirname(file));
    let bytes: Buffer | undefined;
    try {
      bytes = await readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw asDataError(e, `cannot read ${file}`);
    }
    const have = new Uint8Array(chunkCount);
    const origin = bytes ? parseRecord(bytes, Buffer.from(imageId, 'hex'), chunkCount, have) : 'new';
    const state = new ResumeState(file, imageId, chunkCount, origin, have);
    await state.#rewrite();
    return state;
  }

  has(index: number): boolean {
    return this.#have[index] === 1;
  }

  /** Number of chunks recorded. */
  get count(): number {
    return this.#count;
  }

  /** Recorded chunk indices, ascending. */
  indices(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.chunkCount; i++) if (this.#have[i]) out.push(i);
    return out;
  }

  /**
   * Records `indices` as verified and durable. Call only after their data was written AND ImageWriter.sync() returned
   * (see the protocol above). Already-recorded indices are ignored; resolves once the record is on disk.
   */
  async markVerified(indices: readonly number[]): Promise<void> {
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= this.chunkCount) {
        throw new RangeError(`chunk index ${i} is outside 0..${this.chunkCount - 1}`);
      }
    }
    return this.#serial(() => this.#append(indices));
  }

  /** Drops `indices` from the record (rewrites it atomically). */
  forget(indices: readonly number[]): Promise<void> {
    return this.#serial(async () => {
      for (const i of indices) {
        if (this.#have[i]) {
          this.#have[i] = 0;
          this.#count--;
        }
      }
      await this.#fh?.close();
      this.#fh = undefined;
      await this.#rewrite();
    });
  }

  /**
   * Re-hashes every recorded chunk from `output` and forgets those that do not match `manifest` (another fetch or
   * tool overwrote them, the output was replaced, or a device lost a write it had acknowledged). Returns the indices
   * dropped. Reads one chunk ahead of the one being hashed; memory is two chunks.
   */
  async verifyRecorded(
    output: { read(offset: number, length: number): Promise<Uint8Array> },
    manifest: { chunks: readonly ChunkRef[] },
  ): Promise<number[]> {
    const chunks = manifest.chunks;
    if (chunks.length !== this.chunkCount) {
      throw new RangeError(`manifest has ${chunks.length} chunks, the record ${this.chunkCount}`);
    }
    const todo = this.indices();
    const readChunk = (i: number) => output.read(chunks[i].offset, chunks[i].length);
    const bad: number[] = [];
    let next = todo.length > 0 ? readChunk(todo[0]) : undefined;
    for (let k = 0; k < todo.length; k++) {
      const data = await (next as Promise<Uint8Array>);
      next = k + 1 < todo.length ? readChunk(todo[k + 1]) : undefined;
      if (hashHex(data) !== chunks[todo[k]].hash) bad.push(todo[k]);
    }
    if (bad.length > 0) await this.forget(bad);
    return bad;
  }

  /** Closes the record, keeping it on disk for a later resume. */
  async close(): Promise<void> {
    await this.#serial(async () => {
      await this.#fh?.close();
      this.#fh = undefined;
    });
  }

  /** Deletes the record: the image is complete (and verified) in the output. */
  async remove(): Promise<void> {
    await this.close();
    await rm(this.file, { force: true });
  }

  #serial(op: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #append(indices: readonly number[]): Promise<void> {
    const fresh = [...new Set(indices)].filter((i) => !this.#have[i]);
    if (fresh.length === 0) return;
    if (!this.#fh) throw new Error(`resume record ${this.file} is closed`);
    const entry = encodeEntry(this.#id, fresh);
    try {
      for (let done = 0; done < entry.length; ) {
        const { bytesWritten } = await this.#fh.write(entry, done, entry.length - done, this.#length + done);
        done += bytesWritten;
      }
      await this.#fh.datasync();
    } catch (e) {
      // Cut a partial entry off so later appends do not land behind it (it would hide them on reopen).
      await this.#fh.truncate(this.#length).catch(() => {});
      throw asDataError(e, `cannot write the resume record ${this.file}`);
    }
    this.#length += entry.length;
    for (const i of fresh) this.#have[i] = 1;
    this.#count += fresh.length;
  }

  /** Replaces the record on disk with header + one entry holding every recorded index, atomically; reopens it. */
  async #rewrite(): Promise<void> {
    const header = encodeHeader(this.#id, this.chunkCount);
    const all = this.indices();
    const bytes = all.length > 0 ? Buffer.concat([header, encodeEntry(this.#id, all)]) : header;
    try {
      await writeFileAtomic(this.file, bytes, { mode: 0o600 });
      this.#fh = await open(this.file, 'r+');
    } catch (e) {
      throw asDataError(e, `cannot write the resume record ${this.file}`);
    }
    this.#length = bytes.length;
  }
}

function check(id: Buffer, bytes: Uint8Array): Buffer {
  return hash(Buffer.concat([id, bytes])).subarray(0, CHECK_BYTES);
}

function encodeHeader(id: Buffer, chunkCount: number): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(buf, 0);
  buf.writeUInt8(FORMAT, 4);
  buf.writeUInt32BE(chunkCount, 8);
  id.copy(buf, 12);
  hash(buf.subarray(0, 44)).copy(buf, 44, 0, CHECK_BYTES);
  return buf;
}

function encodeEntry(id: Buffer, indices: readonly number[]): Buffer {
  const body = 4 + 4 * indices.length;
  const buf = Buffer.alloc(body + CHECK_BYTES);
  buf.writeUInt32BE(indices.length, 0);
  for (let k = 0; k < indices.length; k++) buf.writeUInt32BE(indices[k], 4 + 4 * k);
  check(id, buf.subarray(0, body)).copy(buf, body);
  return buf;
}

/** Fills `have` from a record's bytes; returns what was found. Stops at the first entry that does not check out. */
function parseRecord(bytes: Buffer, id: Buffer, chunkCount: number, have: Uint8Array): RecordOrigin {
  if (bytes.length < HEADER_BYTES || !bytes.subarray(0, 4).equals(MAGIC) || bytes[4] !== FORMAT)
    return 'corrupt';
  if (!hash(bytes.subarray(0, 44)).subarray(0, CHECK_BYTES).equals(bytes.subarray(44, HEADER_BYTES))) {
    return 'corrupt';
  }
  if (!bytes.subarray(12, 44).equals(id) || bytes.readUInt32BE(8) !== chunkCount) return 'foreign';
  let p = HEADER_BYTES;
  while (p + 4 <= bytes.length) {
    const n = bytes.readUInt32BE(p);
    const body = 4 + 4 * n;
    if (n === 0 || n > chunkCount || p + body + CHECK_BYTES > bytes.length) break;
    const expected = check(id, bytes.subarray(p, p + body));
    if (!expected.equals(bytes.subarray(p + body, p + body + CHECK_BYTES))) break;
    const indices: number[] = [];
    for (let k = 0; k < n; k++) indices.push(bytes.readUInt32BE(p + 4 + 4 * k));
    if (indices.some((i) => i >= chunkCount)) break;
    for (const i of indices) have[i] = 1;
    p += body + CHECK_BYTES;
  }
  return 'resumed';
}
