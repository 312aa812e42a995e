/**
 * The cpio "newc" format (SVR4 without CRC) that the kernel unpacks an initramfs from (Documentation/driver-api/
 * early-userspace/buffer-format.rst): per entry a 110-byte ASCII header ("070701" and 13 eight-digit hex fields), the
 * NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; the archive ends with an entry "TRAILER!!!".
 * Written as a stream of pieces so a 100 MiB Node binary is never held twice; device nodes need no root to write.
 */
import { createReadStream } from 'node:fs';
import { RswError } from '../core/errors.ts';

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; mode?: number; data: Uint8Array }
  /** A file whose bytes are read from `source` on the host while the archive is written. */
  | { type: 'hostfile'; path: string; mode?: number; source: string; size: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; mode?: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const MAX_FIELD = 0xffffffff;
const TRAILER = 'TRAILER!!!';

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > MAX_FIELD)
    throw new RswError('RSW_ERR_USAGE', `cpio: field value ${n} does not fit in 32 bits`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function normalize(path: string): string {
  const p = path.replace(/^\/+/, '');
  if (p === '' || p.split('/').some((s) => s === '' || s === '.' || s === '..') || p.includes('\0'))
    throw new RswError('RSW_ERR_USAGE', `cpio: bad path ${JSON.stringify(path)}`);
  return p;
}

interface Header {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  name: string;
}

function header(h: Header): Buffer {
  const name = Buffer.from(`${h.name}\0`, 'utf8');
  const fields = [
    h.ino,
    h.mode,
    0, // uid: root
    0, // gid
    h.nlink,
    0, // mtime 0: the same inputs give the same bytes
    h.size,
    0,
    0,
    h.rdevMajor,
    h.rdevMinor,
    name.length,
    0,
  ];
  const text = `070701${fields.map(hex8).join('')}`;
  const out = Buffer.alloc(110 + name.length + pad4(110 + name.length));
  out.write(text, 0, 'ascii');
  name.copy(out, 110);
  return out;
}

/** The archive's bytes, piece by piece (pipe them into a compressor or a file). Paths must be unique. */
export async function* cpioPieces(entries: Iterable<CpioEntry>): AsyncGenerator<Uint8Array> {
  let ino = 1;
  const names = new Set<string>();
  for (const e of entries) {
    const name = normalize(e.path);
    if (names.has(name)) throw new RswError('RSW_ERR_USAGE', `cpio: ${name} is listed twice`);
    names.add(name);
    const base = { ino: ino++, nlink: 1, rdevMajor: 0, rdevMinor: 0, name };
    switch (e.type) {
      case 'dir':
        yield header({ ...base, nlink: 2, mode: S_IFDIR | (e.mode ?? 0o755), size: 0 });
        break;
      case 'symlink': {
        const target = Buffer.from(e.target, 'utf8');
        yield header({ ...base, mode: S_IFLNK | 0o777, size: target.length });
        yield target;
        yield Buffer.alloc(pad4(target.length));
        break;
      }
      case 'chardev':
        yield header({
          ...base,
          mode: S_IFCHR | (e.mode ?? 0o600),
          size: 0,
          rdevMajor: e.major,
          rdevMinor: e.minor,
        });
        break;
      case 'file':
        yield header({ ...base, mode: S_IFREG | (e.mode ?? 0o644), size: e.data.length });
        yield e.data;
        yield Buffer.alloc(pad4(e.data.length));
        break;
      case 'hostfile': {
        yield header({ ...base, mode: S_IFREG | (e.mode ?? 0o644), size: e.size });
        let got = 0;
        for await (const piece of createReadStream(e.source, { highWaterMark: 1 << 20 })) {
          got += (piece as Buffer).length;
          if (got > e.size) break;
          yield piece as Buffer;
        }
        if (got !== e.size)
          throw new RswError(
            'RSW_ERR_FILE_UNREADABLE',
            `cpio: ${e.source} changed size while being archived`,
          );
        yield Buffer.alloc(pad4(e.size));
        break;
      }
    }
  }
  yield header({ ino: 0, mode: 0, nlink: 1, size: 0, rdevMajor: 0, rdevMinor: 0, name: TRAILER });
}

/** One entry as read back (tests, `boot initramfs --list`). */
export interface CpioRecord {
  path: string;
  mode: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Buffer;
}

/** Parses a whole newc archive (uncompressed); stops at the trailer. */
export function readCpio(buf: Buffer): CpioRecord[] {
  const out: CpioRecord[] = [];
  let p = 0;
  for (;;) {
    if (p + 110 > buf.length) throw new RswError('RSW_ERR_FILE_UNREADABLE', 'cpio: truncated header');
    const magic = buf.toString('ascii', p, p + 6);
    if (magic !== '070701') throw new RswError('RSW_ERR_FILE_UNREADABLE', `cpio: bad magic at ${p}`);
    const f = (i: number) => Number.parseInt(buf.toString('ascii', p + 6 + i * 8, p + 14 + i * 8), 16);
    const mode = f(1);
    const size = f(6);
    const namesize = f(11);
    const nameStart = p + 110;
    const name = buf.toString('utf8', nameStart, nameStart + namesize - 1);
    let q = nameStart + namesize;
    q += pad4(q);
    if (name === TRAILER) return out;
    const data = buf.subarray(q, q + size);
    out.push({ path: name, mode, size, rdevMajor: f(9), rdevMinor: f(10), data });
    q += size;
    p = q + pad4(q);
  }
}
