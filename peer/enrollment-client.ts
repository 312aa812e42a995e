import type { Libp2p, PeerId } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { ENROLLED_PROTOCOL, MAX_ENROLLED_MESSAGE_BYTES, parsePeerId } from '../core/enrollment.ts';
import { ERRORS, type ErrorCode, RswError } from '../core/errors.ts';
import { boundedLengthDecoder } from '../core/wire.ts';

/**
 * Asks the head which of `peerIds` are enrolled (core/enrollment.ts), over the node's authenticated connection to it.
 * Resolves with that subset; a head that cannot be asked rejects (the gater then refuses: fail closed).
 */
export async function queryEnrolled(
  node: Pick<Libp2p, 'dialProtocol'>,
  head: PeerId | Multiaddr,
  peerIds: string[],
  opts: { timeoutMs: number },
): Promise<string[]> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const stream = await node.dialProtocol(head, ENROLLED_PROTOCOL, { signal });
  const lp = lpStream(stream, {
    maxDataLength: MAX_ENROLLED_MESSAGE_BYTES,
    lengthDecoder: boundedLengthDecoder(MAX_ENROLLED_MESSAGE_BYTES),
  });
  try {
    await lp.write(new TextEncoder().encode(JSON.stringify({ peerIds })), { signal });
    const answer = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as {
      ok?: unknown;
      enrolled?: unknown;
      code?: unknown;
      message?: unknown;
    };
    await stream.close().catch(() => {});
    if (answer.ok !== true) {
      const code =
        typeof answer.code === 'string' && Object.hasOwn(ERRORS, answer.code)
          ? (answer.code as ErrorCode)
          : 'RSW_ERR_PROTOCOL';
      throw new RswError(code, String(answer.message ?? 'enrollment query refused').slice(0, 500));
    }
    if (!Array.isArray(answer.enrolled))
      throw new RswError('RSW_ERR_PROTOCOL', 'enrollment answer has no list');
    const asked = new Set(peerIds);
    // Only ids we asked about count, whatever else the answer holds.
    return answer.enrolled.map((id) => parsePeerId(id as string)).filter((id) => asked.has(id));
  } catch (e) {
    stream.abort(e as Error);
    throw e;
  }
}
