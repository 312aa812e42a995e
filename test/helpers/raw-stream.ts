import type { Libp2p, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { pEvent } from 'p-event';

/** Opens a raw stream of `protocol`, drains what the remote sends, and sends `bytes` (an abuser's side). */
export async function rawStream(
  from: Libp2p,
  addr: Multiaddr,
  protocol: string,
  bytes?: Uint8Array,
): Promise<Stream> {
  const stream = await from.dialProtocol(addr, protocol);
  stream.addEventListener('message', () => {});
  if (bytes) stream.send(bytes);
  return stream;
}

/** Resolves once the stream has ended, with how (closed or reset) and how long that took. */
export async function endOf(stream: Stream): Promise<{ status: string; ms: number }> {
  const t0 = Date.now();
  if (stream.status === 'open') await pEvent(stream, 'close');
  return { status: stream.status, ms: Date.now() - t0 };
}
