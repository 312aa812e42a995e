import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { isRswError } from '../core/errors.ts';
import { ensureWritableDir } from '../core/fs-atomic.ts';
import { Revocations, readRevocationFile, writeRevocationFile } from '../core/revocation.ts';
import type { HeadClient } from './head-client.ts';

/**
 * A node's view of key revocations: what it verified before (CACHE/revocations.json, plus any statements shipped in
 * its initramfs), joined with what the head serves now. Every statement is verified against this node's pinned keys:
 * the head (or anyone on the network) can withhold a revocation, never forge or undo one. Persisted, so a node that
 * learnt of one keeps refusing that key when the head is unreachable or lies by omission later.
 */
export async function nodeRevocations(
  client: HeadClient | undefined,
  cacheDir: string,
  trusted: readonly KeyObject[],
  extra: readonly Buffer[] = [],
): Promise<Revocations> {
  const file = join(cacheDir, 'revocations.json');
  const revocations = new Revocations();
  revocations.add([...(await readRevocationFile(file).catch(() => [])), ...extra], trusted);
  const before = revocations.envelopes().length;
  try {
    if (client) revocations.add(await client.revocations(), trusted);
  } catch (e) {
    // Offline (the cache path) or a head without the route: what this node already knows still applies.
    if (!isRswError(e)) throw e;
  }
  if (revocations.envelopes().length !== before) {
    await ensureWritableDir(cacheDir);
    await writeRevocationFile(file, revocations.envelopes());
  }
  return revocations;
}
