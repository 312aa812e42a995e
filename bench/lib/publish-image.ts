import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/rackswarm.js', import.meta.url));

/**
 * `rackswarm publish FILE --name NAME --key KEY --data DATA --json` by this checkout's CLI, synchronously (the head is
 * not running yet): its summary line. Throws with the CLI's stderr if it fails.
 */
export function publishImage(
  file: string,
  o: { key: string; data: string; name?: string },
): { id: string; chunks: number; size: number } {
  const args = [bin, 'publish', file, '--name', o.name ?? 'img', '--key', o.key, '--data', o.data, '--json'];
  const out = execFileSync(process.execPath, args, { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop() as string);
}
