import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { RswError } from './errors.ts';

/** fsyncs a directory so a rename or a new entry in it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `data` to `path` so that a crash leaves either the old file or the new one, never a torn one: temp file
 * (in `tmpDir`, same filesystem, default beside the target) → write → fsync → rename → fsync of the directory.
 * `exclusive` refuses to replace an existing file (the rename is then a link + unlink, which fails on EEXIST).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  opts: { mode?: number; tmpDir?: string } = {},
): Promise<void> {
  const tmp = join(opts.tmpDir ?? dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dirname(path));
}

/**
 * Creates `dir` (and parents) or explains why it cannot be written: recursive mkdir reports ENOENT on a read-only
 * filesystem, so on failure the nearest existing ancestor is probed for write access to name the real cause.
 */
export async function ensureWritableDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (e) {
    let probe = dir;
    while (!(await exists(probe)) && dirname(probe) !== probe) probe = dirname(probe);
    const errno = await access(probe, constants.W_OK).then(
      () => (e as NodeJS.ErrnoException).code,
      (e2: NodeJS.ErrnoException) => e2.code,
    );
    const isDir = await stat(probe).then(
      (s) => s.isDirectory(),
      () => false,
    );
    const why = isDir ? errno : `${probe} is not a directory`;
    throw new RswError(
      errno === 'ENOSPC' ? 'RSW_ERR_DISK_FULL' : 'RSW_ERR_DATA_UNWRITABLE',
      `cannot write ${dir}: ${why}`,
      {
        cause: e,
      },
    );
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
