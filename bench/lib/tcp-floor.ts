import { spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, write } from 'node:fs';
import { connect } from 'node:net';
import { hash } from '../../core/hash.ts';

/**
 * Issue 4 (a)'s ceiling and its floor, on loopback between two processes: a child serves `file` (from the page cache,
 * 1 MiB reads piped into the socket) and this process reads it.
 *
 * - `raw`: the bytes are read and dropped — raw Node TCP, the issue's 100 %.
 * - `hash`: each chunk-sized piece is read into its own buffer (socket `onread`, no copy) and BLAKE3-hashed on this
 *   thread, as a fetch must before it writes or serves a chunk.
 * - `hash+write`: the same, then written at its offset into a file in `dir` (tmpfs: /dev/shm) through libuv's pool,
 *   the buffer reused once the write is done — the least work a fetch that verifies and keeps what it receives does,
 *   with none of rackswarm's protocol, scheduling, manifest or bookkeeping. Nothing is made durable (tmpfs).
 *
 * The gap between `raw` and `hash+write` is what the machine, not rackswarm, takes from the 70 % goal.
 */
export type FloorCase = 'raw' | 'hash' | 'hash+write';

/** The pieces of `hash` / `hash+write`: close to the images' average FastCDC chunk (~0.57 MiB in the testbed's). */
const PIECE = 512 * 1024;
/** Pieces in flight to the file at most; the socket waits for a free one. */
const PIECES = 32;

/** Seconds to move `file` from a child process to this one, doing `what` with the bytes (see above). */
export async function tcpFloorSeconds(file: string, what: FloorCase, dir?: string): Promise<number> {
  const server = spawn(
    process.execPath,
    [
      '-e',
      `const net = require('node:net'); const fs = require('node:fs');
       const s = net.createServer((c) => fs.createReadStream(process.argv[1], { highWaterMark: 1 << 20 }).pipe(c));
       s.listen(0, '127.0.0.1', () => console.log(s.address().port));`,
      file,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const port = await new Promise<number>((resolve) =>
      server.stdout.once('data', (d) => resolve(Number(String(d).trim()))),
    );
    const t0 = performance.now();
    if (what === 'raw') await receiveDropping(port);
    else await receivePieces(port, what === 'hash+write' ? dir : undefined);
    return (performance.now() - t0) / 1000;
  } finally {
    server.kill();
  }
}

function receiveDropping(port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    c.on('data', () => {});
    c.on('end', resolve);
    c.on('error', reject);
  });
}

function receivePieces(port: number, dir: string | undefined): Promise<void> {
  const path = dir ? `${dir}/tcp-floor-${process.pid}.bin` : undefined;
  const fd = path ? openSync(path, 'w') : -1;
  const free: Buffer[] = Array.from({ length: PIECES }, () => Buffer.allocUnsafe(PIECE));
  let current = free.pop() as Buffer;
  let filled = 0;
  let offset = 0;
  let writing = 0;
  let ended = false;
  let waiting = false;
  return new Promise<void>((resolve, reject) => {
    const finish = (err?: Error | null) => {
      if (err) return reject(err);
      if (!ended || writing > 0) return;
      if (fd >= 0) closeSync(fd);
      if (path) rmSync(path, { force: true });
      resolve();
    };
    const done = (piece: Buffer, length: number) => {
      hash(piece.subarray(0, length));
      if (fd < 0) {
        free.push(piece);
        return;
      }
      writing++;
      write(fd, piece, 0, length, offset, (err) => {
        writing--;
        free.push(piece);
        if (waiting) {
          waiting = false;
          current = free.pop() as Buffer;
          socket.resume();
        }
        finish(err);
      });
      offset += length;
    };
    const socket = connect({
      port,
      host: '127.0.0.1',
      onread: {
        buffer: () => current.subarray(filled),
        callback: (n: number) => {
          filled += n;
          if (filled < PIECE) return true;
          done(current, PIECE);
          filled = 0;
          const next = free.pop();
          if (next) {
            current = next;
            return true;
          }
          waiting = true;
          return false;
        },
      },
    });
    socket.on('end', () => {
      if (filled > 0) done(current, filled);
      ended = true;
      finish();
    });
    socket.on('error', reject);
  });
}
