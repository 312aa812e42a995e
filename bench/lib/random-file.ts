import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';

/** Writes `size` pseudo-random bytes (no dedup possible) to `path`, in 64 MiB blocks. */
export function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(64 * 1024 * 1024);
  for (let done = 0; done < size; done += block.length) {
    randomFillSync(block);
    writeSync(fd, block, 0, Math.min(block.length, size - done));
  }
  closeSync(fd);
}
