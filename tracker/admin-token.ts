import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { asDataError, RswError } from '../core/errors.ts';
import { writeFileAtomic } from '../core/fs-atomic.ts';

export const ADMIN_TOKEN_FILE = 'admin-token';

/** Reads DATA/admin-token, creating it (0600, 256 random bits) on first start. */
export async function loadOrCreateAdminToken(
  dataDir: string,
): Promise<{ token: string; path: string; created: boolean }> {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  try {
    const token = (await readFile(path, 'utf8')).trim();
    if (token.length < 32)
      throw new RswError(
        'RSW_ERR_CONFIG_INVALID',
        `${path} holds no usable token; delete it to make a new one`,
      );
    return { token, path, created: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw asDataError(e, `cannot read ${path}`);
  }
  const token = randomBytes(32).toString('hex');
  try {
    await writeFileAtomic(path, `${token}\n`, { mode: 0o600 });
  } catch (e) {
    throw asDataError(e, `cannot write ${path}`);
  }
  return { token, path, created: true };
}

/** Constant-time check of an `Authorization: Bearer …` header against the admin token. */
export function isAuthorized(header: string | undefined, token: string): boolean {
  const given = /^Bearer (\S+)$/.exec(header ?? '')?.[1] ?? '';
  // Compare digests so neither the length nor a prefix of the token leaks through timing.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b) && given.length > 0;
}
