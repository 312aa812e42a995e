import type { Libp2p, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { decodeEnrolledQuery, ENROLLED_PROTOCOL, MAX_ENROLLED_MESSAGE_BYTES } from '../core/enrollment.ts';
import { isRswError, RswError } from '../core/errors.ts';
import { boundedLengthDecoder } from '../core/wire.ts';

type ServiceNode = Pick<Libp2p, 'handle' | 'unhandle'>;

export interface EnrollmentServiceInit {
  isEnrolled: (peerId: string) => boolean;
  readTimeoutMs: number;
  maxInboundStreams: number;
}

/**
 * The head's answer to nodes asking "which of these peers are enrolled?" (core/enrollment.ts), so a node's gater can
 * decide about a peer it has never heard of. Only enrolled peers get here: the head's own gater refused the rest.
 */
export class EnrollmentService {
  readonly #init: EnrollmentServiceInit;
  #node: ServiceNode | undefined;
  queries = 0;

  constructor(init: EnrollmentServiceInit) {
    this.#init = init;
  }

  async start(node: ServiceNode): Promise<void> {
    this.#node = node;
    await node.handle(ENROLLED_PROTOCOL, this.#onStream, { maxInboundStreams: this.#init.maxInboundStreams });
  }

  async stop(): Promise<void> {
    await this.#node?.unhandle(ENROLLED_PROTOCOL);
    this.#node = undefined;
  }

  #onStream = async (stream: Stream): Promise<void> => {
    const lp = lpStream(stream, {
      maxDataLength: MAX_ENROLLED_MESSAGE_BYTES,
      lengthDecoder: boundedLengthDecoder(MAX_ENROLLED_MESSAGE_BYTES),
    });
    const write = (v: object) => lp.write(new TextEncoder().encode(JSON.stringify(v)));
    try {
      const q = decodeEnrolledQuery(
        (await lp.read({ signal: AbortSignal.timeout(this.#init.readTimeoutMs) })).subarray(),
      );
      this.queries++;
      await write({ ok: true, enrolled: q.peerIds.filter((id) => this.#init.isEnrolled(id)) });
      await stream.close({ signal: AbortSignal.timeout(this.#init.readTimeoutMs) });
    } catch (e) {
      const err = isRswError(e) ? e : new RswError('RSW_ERR_PROTOCOL', (e as Error).message ?? 'bad request');
      try {
        await write({ ok: false, code: err.code, message: err.message });
        await stream.close({ signal: AbortSignal.timeout(1000) });
      } catch {
        stream.abort(err);
      }
    }
  };
}
