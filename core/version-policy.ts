import { RswError } from './errors.ts';
import { validateVersion } from './manifest.ts';

/**
 * Which version a publish gets. Without a request: one past the newest (1 for a new image). A requested version
 * must be newer than the newest, or equal to an existing one (then the bytes must match: checked at register time).
 */
export function chooseVersion(
  existing: readonly number[],
  requested: number | undefined,
  name: string,
): { version: number; exists: boolean } {
  const newest = existing.length ? Math.max(...existing) : 0;
  if (requested === undefined) return { version: newest + 1, exists: false };
  validateVersion(requested);
  if (existing.includes(requested)) return { version: requested, exists: true };
  if (requested < newest) {
    throw new RswError(
      'RSW_ERR_VERSION_NOT_NEWER',
      `${name} version ${requested} is older than the newest published version ${newest}`,
    );
  }
  return { version: requested, exists: false };
}
