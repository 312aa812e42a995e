import type { KeyObject } from 'node:crypto';
import { ERRORS, type ErrorCode, RswError } from '../core/errors.ts';
import { hashHex } from '../core/hash.ts';
import { openSignedManifest, type RevokedKeys } from '../core/signed-manifest.ts';
import { ImageWriter } from '../peer/image-writer.ts';
import type { FetchSummary } from './fetch-image.ts';

/**
 * The head alone, over plain HTTP: the signed manifest from /api/images/…/manifest (checked against the pinned keys
 * before any field is used), then the image bytes from /boot/images/NAME/VERSION in chunk order, each chunk's BLAKE3
 * checked before it is written. A booting node's fallback when the mesh fails, and the benchmark's baseline.
 */
export async function fetchOverHttp(
  head: string,
  image: { name: string; version: number | 'latest' },
  trusted: KeyObject[],
  out: string,
  opts: { maxManifestBytes: number; signal?: AbortSignal; revoked?: RevokedKeys },
): Promise<FetchSummary> {
  const started = performance.now();
  const get = async (path: string): Promise<Response> => {
    let r: Response;
    try {
      r = await fetch(`${head}${path}`, { signal: opts.signal });
    } catch (e) {
      throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `GET ${head}${path}: ${(e as Error).message}`);
    }
    if (!r.ok) {
      const body = (await r.json().catch(() => ({}))) as { code?: string; message?: string };
      if (body.code && body.code in ERRORS && body.message)
        throw new RswError(body.code as ErrorCode, `${body.message} (GET ${path})`);
      throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `GET ${head}${path}: HTTP ${r.status}`);
    }
    return r;
  };
  const v = String(image.version);
  const envelope = Buffer.from(await (await get(`/api/images/${image.name}/${v}/manifest`)).arrayBuffer());
  const opened = openSignedManifest(envelope, trusted, {
    maxBytes: opts.maxManifestBytes,
    revoked: opts.revoked,
  });
  const m = opened.manifest;
  if (m.name !== image.name || (image.version !== 'latest' && m.version !== image.version))
    throw new RswError(
      'RSW_ERR_MANIFEST_MISMATCH',
      `asked for ${image.name}@${v}, got ${m.name}@${m.version}`,
    );
  if (m.encryption) {
    // Image keys travel only over the authenticated tracker protocol (closed mesh), never plain HTTP.
    throw new RswError(
      'RSW_ERR_IMAGE_KEY_UNAVAILABLE',
      `${m.name}@${m.version} is encrypted: it is fetched through the mesh, where the head releases its key`,
    );
  }
  const writer = await ImageWriter.open(out, m.size);
  try {
    const body = (await get(`/boot/images/${m.name}/${m.version}`)).body;
    if (!body) throw new RswError('RSW_ERR_HEAD_UNREACHABLE', 'empty body');
    let i = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for await (const piece of body) {
      pending.push(Buffer.from(piece));
      pendingBytes += piece.length;
      while (i < m.chunks.length && pendingBytes >= m.chunks[i].length) {
        const all = Buffer.concat(pending);
        const c = m.chunks[i];
        const data = all.subarray(0, c.length);
        if (hashHex(data) !== c.hash)
          throw new RswError(
            'RSW_ERR_CHUNK_MISMATCH',
            `the head sent wrong bytes for chunk ${i} at ${c.offset}`,
          );
        await writer.write(c.offset, data);
        pending = [all.subarray(c.length)];
        pendingBytes -= c.length;
        i++;
      }
    }
    if (i !== m.chunks.length || pendingBytes !== 0)
      throw new RswError(
        'RSW_ERR_HEAD_UNREACHABLE',
        `the head's image stream ended after ${i} of ${m.chunks.length} chunks`,
      );
    await writer.sync();
  } finally {
    await writer.close();
  }
  return {
    id: opened.id,
    name: m.name,
    version: m.version,
    size: m.size,
    seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
    bytesFromPeers: 0,
    bytesFromSeeder: m.size,
    bytesReused: 0,
    peers: 0,
    banned: 0,
  };
}
