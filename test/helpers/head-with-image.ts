import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadPublicKey } from '../../core/keys.ts';
import { type OpenedManifest, openSignedManifest } from '../../core/signed-manifest.ts';
import { publishToHead, type RunningHead, startHead } from './head.ts';
import { pseudoRandomBytes } from './random.ts';

export interface HeadWithImage {
  head: RunningHead;
  /** The image's bytes (also at DIR/image.bin). */
  image: Buffer;
  opened: OpenedManifest;
  /** A fetch config listening on loopback only (the default is 0.0.0.0). */
  fetchConfig: string;
}

/**
 * A real `rackswarm head` with data under DIR/head and config `headConfig`, serving `name` (default `compute`):
 * `size` pseudo-random bytes from `seed`, published over HTTP with the key pair in `keysDir`. The caller stops the
 * head.
 */
export async function headWithImage(o: {
  dir: string;
  keysDir: string;
  size: number;
  seed: number;
  headConfig: object;
  name?: string;
}): Promise<HeadWithImage> {
  const name = o.name ?? 'compute';
  const headConfig = join(o.dir, 'head.json');
  writeFileSync(headConfig, JSON.stringify(o.headConfig));
  const fetchConfig = join(o.dir, 'fetch.json');
  writeFileSync(fetchConfig, JSON.stringify({ peer: { listen: ['/ip4/127.0.0.1/tcp/0'] } }));
  const head = await startHead(join(o.dir, 'head'), [], ['--config', headConfig]);
  const image = pseudoRandomBytes(o.size, o.seed);
  writeFileSync(join(o.dir, 'image.bin'), image);
  const p = await publishToHead(
    head.url,
    join(o.dir, 'head/admin-token'),
    join(o.dir, 'image.bin'),
    name,
    join(o.keysDir, 'publisher.key'),
  );
  expect(p.code, p.stderr).toBe(0);
  const res = await fetch(`${head.url}/api/images/${name}/latest/manifest`);
  expect(res.status).toBe(200);
  const pub = await loadPublicKey(join(o.keysDir, 'publisher.pub'));
  const opened = openSignedManifest(Buffer.from(await res.arrayBuffer()), [pub], {
    maxBytes: 16 * 1024 * 1024,
  });
  return { head, image, opened, fetchConfig };
}
