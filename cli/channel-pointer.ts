import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkChannelNotStale, type OpenedChannel, openSignedChannel } from '../core/channel.ts';
import { asDataError, isRswError, RswError } from '../core/errors.ts';
import { ensureWritableDir, writeFileAtomic } from '../core/fs-atomic.ts';
import type { RevokedKeys } from '../core/signed-manifest.ts';
import type { HeadClient } from './head-client.ts';

/**
 * A node's side of a channel (`fetch NAME:CHANNEL`): the signed pointer from the head, or — when the head cannot be
 * reached — the last one this node stored, verified against the pinned keys either way; refused once expired
 * (RSW_ERR_CHANNEL_EXPIRED) or when its sequence is below one this node has seen (RSW_ERR_CHANNEL_STALE). The
 * newest pointer and the sequences seen are kept under CACHE/channels/.
 */
export async function resolveChannel(
  client: HeadClient,
  cacheDir: string,
  name: string,
  channel: string,
  trusted: readonly KeyObject[],
  revoked?: RevokedKeys,
  now = Date.now(),
): Promise<OpenedChannel & { offline: boolean }> {
  const dir = join(cacheDir, 'channels');
  await ensureWritableDir(dir);
  const file = join(dir, `${name}:${channel}`);
  let envelope: Buffer | undefined;
  let offline = false;
  try {
    envelope = await client.channelEnvelope(name, channel);
    if (!envelope)
      throw new RswError('RSW_ERR_CHANNEL_NOT_FOUND', `the head has no channel ${name}:${channel}`);
  } catch (e) {
    if (!isRswError(e) || e.code !== 'RSW_ERR_HEAD_UNREACHABLE') throw e;
    envelope = await readFile(file).catch(() => undefined);
    if (!envelope) throw e;
    offline = true;
  }
  const opened = openSignedChannel(envelope, trusted, now, revoked);
  const { pointer } = opened;
  if (pointer.name !== name || pointer.channel !== channel) {
    throw new RswError(
      'RSW_ERR_INVALID_CHANNEL',
      `asked for ${name}:${channel}, got ${pointer.name}:${pointer.channel}`,
    );
  }
  const seenFile = join(dir, 'seen.json');
  const seen = (await readFile(seenFile, 'utf8')
    .then((t) => JSON.parse(t))
    .catch(() => ({}))) as Record<string, number>;
  const key = `${name}:${channel}`;
  checkChannelNotStale(pointer, seen[key]);
  if ((seen[key] ?? 0) < pointer.sequence) {
    try {
      await writeFileAtomic(file, opened.envelope);
      await writeFileAtomic(seenFile, JSON.stringify({ ...seen, [key]: pointer.sequence }));
    } catch (e) {
      throw asDataError(e, `cannot write ${dir}`);
    }
  }
  return { ...opened, offline };
}
