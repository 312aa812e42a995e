import type { Libp2p, PeerId } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { count } from '../core/counters.ts';
import { RswError } from '../core/errors.ts';
import {
  type AnnounceBodyExt,
  type AnnounceResponse,
  decodeResponse,
  encodeMessage,
  type ImageKeyResponse,
  MAX_TRACKER_MESSAGE_BYTES,
  type ManifestHeader,
  TRACKER_PROTOCOL,
} from '../core/tracker-messages.ts';
import { boundedLengthDecoder } from '../core/wire.ts';

type DialNode = Pick<Libp2p, 'dialProtocol'>;

export interface TrackerCallOptions {
  signal?: AbortSignal;
  /** @default 30000 */
  timeoutMs?: number;
}

async function call<T extends { ok: true }>(
  node: DialNode,
  tracker: PeerId | Multiaddr,
  request: object,
  opts: TrackerCallOptions,
  maxDataLength = MAX_TRACKER_MESSAGE_BYTES,
): Promise<{ response: T; lp: ReturnType<typeof lpStream> }> {
  const signal = AbortSignal.any([
    AbortSignal.timeout(opts.timeoutMs ?? 30_000),
    ...(opts.signal ? [opts.signal] : []),
  ]);
  const stream = await node.dialProtocol(tracker, TRACKER_PROTOCOL, { signal });
  // lpStream reads, not `for await` on the dialling side (LIBP2P-NOTES.md); the read buffer must hold a manifest.
  const lp = lpStream(stream, {
    maxDataLength,
    maxBufferSize: maxDataLength + 16,
    lengthDecoder: boundedLengthDecoder(maxDataLength),
  });
  try {
    await lp.write(encodeMessage(request), { signal });
    return { response: decodeResponse<T>((await lp.read({ signal })).subarray()), lp };
  } catch (e) {
    stream.abort(e as Error);
    if (e instanceof RswError) throw e;
    throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `tracker call failed: ${(e as Error).message}`);
  }
}

/** Tells the tracker how this node is doing; returns the peers it should fetch from and when to announce again. */
export async function announce(
  node: DialNode,
  tracker: PeerId | Multiaddr,
  body: AnnounceBodyExt,
  opts: TrackerCallOptions = {},
): Promise<AnnounceResponse> {
  count('tracker.announces');
  const { response, lp } = await call<AnnounceResponse>(
    node,
    tracker,
    { type: 'announce', announce: body },
    opts,
  );
  await lp
    .unwrap()
    .close()
    .catch(() => {});
  return response;
}

/**
 * Fetches a signed manifest (the caller verifies it against its pinned keys before trusting any of it).
 * `maxBytes` caps what is read, before anything is parsed.
 */
export async function fetchManifest(
  node: DialNode,
  tracker: PeerId | Multiaddr,
  name: string,
  version: number | 'latest',
  opts: TrackerCallOptions & { maxBytes: number },
): Promise<{ id: string; version: number; envelope: Buffer }> {
  const cap = opts.maxBytes + 1024;
  const { response, lp } = await call<ManifestHeader>(
    node,
    tracker,
    { type: 'manifest', name, version },
    opts,
    cap,
  );
  if (!Number.isSafeInteger(response.bytes) || response.bytes > cap) {
    lp.unwrap().abort(new Error('manifest too large'));
    throw new RswError(
      'RSW_ERR_MANIFEST_TOO_LARGE',
      `the tracker offers a ${response.bytes}-byte manifest, the cap is ${cap}`,
    );
  }
  const signal = AbortSignal.timeout(opts.timeoutMs ?? 30_000);
  const envelope = Buffer.from((await lp.read({ signal })).subarray());
  await lp
    .unwrap()
    .close()
    .catch(() => {});
  if (envelope.length !== response.bytes)
    throw new RswError('RSW_ERR_PROTOCOL', 'manifest length does not match its header');
  return { id: response.id, version: response.version, envelope };
}

/** Asks the tracker for an encrypted image's key (released only to enrolled nodes on a closed mesh). */
export async function fetchImageKey(
  node: DialNode,
  tracker: PeerId | Multiaddr,
  keyId: string,
  opts: TrackerCallOptions = {},
): Promise<Buffer> {
  const { response, lp } = await call<ImageKeyResponse>(node, tracker, { type: 'image-key', keyId }, opts);
  await lp
    .unwrap()
    .close()
    .catch(() => {});
  const key = typeof response.key === 'string' ? Buffer.from(response.key, 'base64') : Buffer.alloc(0);
  if (response.keyId !== keyId || key.length !== 32)
    throw new RswError('RSW_ERR_PROTOCOL', 'the tracker answered an image key request with something else');
  return key;
}
