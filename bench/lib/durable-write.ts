import { randomFillSync } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';

/**
 * Seconds to write `size` bytes to a new file at `path` and make them durable (fdatasync), then removes the file: the
 * bound a fetch whose writes must be durable cannot beat on that disk, whatever its transport.
 */
export function durableWriteSeconds(path: string, size: number): number {
  const block = randomFillSync(Buffer.alloc(8 * 1024 * 1024));
  const t0 = performance.now();
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < size; done += block.length)
      writeSync(fd, block, 0, Math.min(block.length, size - done));
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const seconds = (performance.now() - t0) / 1000;
  rmSync(path);
  return seconds;
}
