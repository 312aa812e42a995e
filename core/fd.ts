import { close, fsync, open, read, write } from 'node:fs';
import { promisify } from 'node:util';

/*
 * fs's callback calls on a plain descriptor, as promises: one trip through libuv's thread pool each, where a
 * FileHandle adds its own (its close is another pool trip, and readFile/writeFile stat first). For the per-chunk hot
 * paths: the store's reads and writes (core/store.ts) and a publish's group commit (core/chunk-batch.ts).
 */
export const openFd = promisify(open);
export const readFd = promisify(read);
export const writeFd = promisify(write);
export const fsyncFd = promisify(fsync);
export const closeFd = promisify(close);
