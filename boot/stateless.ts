/**
 * The stateless root: the fetched SquashFS loop-mounted read-only, an OverlayFS whose upper and work directories
 * live on tmpfs (under /run, which /init moves into the new root, so the peer keeps reading its image after the
 * pivot), and the node's identity written into the upper layer — the shared image is never changed.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { NodeIdentity } from './identity.ts';
import { run } from './network.ts';

export interface StatelessLayout {
  image: string;
  lower: string;
  upper: string;
  work: string;
  newRoot: string;
}

export function statelessLayout(runDir: string, newRoot: string): StatelessLayout {
  return {
    image: join(runDir, 'root.squashfs'),
    lower: join(runDir, 'lower'),
    upper: join(runDir, 'rw/upper'),
    work: join(runDir, 'rw/work'),
    newRoot,
  };
}

/** Writes `files` (relative paths) under `root`. */
export async function writeIdentity(root: string, identity: NodeIdentity): Promise<void> {
  const all = [
    ...Object.entries(identity.files).map(([rel, content]) => ({ rel, content, mode: 0o644 })),
    ...Object.entries(identity.secretFiles).map(([rel, content]) => ({ rel, content, mode: 0o600 })),
  ];
  for (const { rel, content, mode } of all) {
    const path = join(root, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content, { mode });
    await chmod(path, mode); // a file the image already had keeps its mode through writeFile
  }
}

export async function mountStatelessRoot(l: StatelessLayout, identity: NodeIdentity): Promise<void> {
  for (const d of [l.lower, l.upper, l.work, l.newRoot]) await mkdir(d, { recursive: true });
  await run(['mount', '-t', 'squashfs', '-o', 'loop,ro', l.image, l.lower]);
  await writeIdentity(l.upper, identity);
  await run([
    'mount',
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${l.lower},upperdir=${l.upper},workdir=${l.work}`,
    l.newRoot,
  ]);
}
