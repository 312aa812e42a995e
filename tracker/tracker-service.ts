import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { isRswError, RswError } from '../core/errors.ts';
import { parseVersion, validateImageName } from '../core/manifest.ts';
import {
  type AnnounceBody,
  type AnnounceBodyExt,
  decodeRequest,
  encodeMessage,
  MAX_TRACKER_MESSAGE_BYTES,
  TRACKER_PROTOCOL,
} from '../core/tracker-messages.ts';
import { boundedLengthDecoder } from '../core/wire.ts';
import { handout } from './handout-policy.ts';
import type { Registry } from './registry.ts';
import { type Announce, InvalidAnnounceError, type SwarmState } from './swarm-state.ts';

export interface TrackerServiceComponents {
  swarm: SwarmState;
  registry: Pick<Registry, 'get' | 'latest' | 'envelope'>;
  /** Called once per accepted announce (metrics). */
  onAnnounce?: () => void;
  /** A peer said it is leaving (announce stage `stopped`): the head's super-seeding frees what it sent it first. */
  onDepart?: (peerId: string) => void;
  /** Uniform in [0, 1): the handout's tie breaker. @default Math.random */
  random?: () => number;
  /** Sees every accepted announce (raw body, authenticated peer id); may add fields to the response (preheat). */
  onAnnounceExtra?: (peerId: string, body: AnnounceBodyExt) => Record<string, unknown> | undefined;
  /**
   * Releases an encrypted image's key to the authenticated peer asking, or throws a coded refusal (the head's policy:
   * closed mesh only). Without it every key request is RSW_ERR_IMAGE_KEY_UNAVAILABLE.
   */
  imageKey?: (keyId: string, peerId: string) => Promise<Uint8Array>;
  /** Revoked publisher keys (hex): their manifests are not served. */
  revoked?: { has(publisherHex: string): boolean };
}

/** No defaults here: the config schema (core/config.ts, `tracker`) owns them. */
export interface TrackerServiceInit {
  handoutSize: number;
  announceIntervalSeconds: number;
  maxManifestBytes: number;
  /** A request must arrive within this many ms. */
  readTimeoutMs: number;
  /** Tracker streams open at once per connection. */
  maxInboundStreams: number;
}

type TrackerNode = Pick<Libp2p, 'handle' | 'unhandle'>;

/**
 * The tracker's libp2p side (/rackswarm/tracker/1.0.0, messages in core/tracker-messages.ts): peers announce their
 * progress and get a handout of peers to fetch from; they fetch signed manifests. One request per stream.
 */
export class TrackerService {
  readonly #c: TrackerServiceComponents;
  readonly #init: TrackerServiceInit;
  readonly #workingCache = new Map<string, { at: number; working: number }>();
  #node: TrackerNode | undefined;

  constructor(components: TrackerServiceComponents, init: TrackerServiceInit) {
    this.#c = components;
    this.#init = init;
  }

  async start(node: TrackerNode): Promise<void> {
    this.#node = node;
    await node.handle(TRACKER_PROTOCOL, this.#onStream, { maxInboundStreams: this.#init.maxInboundStreams });
  }

  async stop(): Promise<void> {
    await this.#node?.unhandle(TRACKER_PROTOCOL);
    this.#node = undefined;
  }

  #onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const lp = lpStream(stream, {
      maxDataLength: MAX_TRACKER_MESSAGE_BYTES,
      lengthDecoder: boundedLengthDecoder(MAX_TRACKER_MESSAGE_BYTES),
    });
    try {
      const request = decodeRequest(
        (await lp.read({ signal: AbortSignal.timeout(this.#init.readTimeoutMs) })).subarray(),
      );
      if (request.type === 'announce') {
        await lp.write(encodeMessage(this.#announce(connection.remotePeer.toString(), request.announce)));
      } else if (request.type === 'image-key') {
        if (!this.#c.imageKey)
          throw new RswError('RSW_ERR_IMAGE_KEY_UNAVAILABLE', 'this tracker releases no image keys');
        const key = await this.#c.imageKey(request.keyId, connection.remotePeer.toString());
        await lp.write(
          encodeMessage({ ok: true, keyId: request.keyId, key: Buffer.from(key).toString('base64') }),
        );
      } else {
        validateImageName(request.name);
        const record =
          request.version === 'latest'
            ? await this.#c.registry.latest(request.name)
            : await this.#c.registry.get(request.name, parseVersion(String(request.version)));
        const envelope = record && (await this.#c.registry.envelope(record.id));
        if (!record || !envelope) {
          throw new RswError(
            'RSW_ERR_IMAGE_NOT_FOUND',
            `no image ${request.name} version ${request.version}`,
          );
        }
        if (this.#c.revoked?.has(record.publisher)) {
          throw new RswError(
            'RSW_ERR_KEY_REVOKED',
            `${record.name} version ${record.version} is signed by ${record.publisher.slice(0, 16)}, which is revoked`,
          );
        }
        await lp.write(
          encodeMessage({ ok: true, id: record.id, version: record.version, bytes: envelope.length }),
        );
        await lp.write(envelope);
      }
      await stream.close({ signal: AbortSignal.timeout(this.#init.readTimeoutMs) });
    } catch (e) {
      const err = isRswError(e) ? e : new RswError('RSW_ERR_PROTOCOL', (e as Error).message ?? 'bad request');
      try {
        await lp.write(encodeMessage({ ok: false, code: err.code, message: err.message }));
        await stream.close({ signal: AbortSignal.timeout(1000) });
      } catch {
        stream.abort(err);
      }
    }
  };

  #announce(peerId: string, body: AnnounceBody) {
    if (body?.stage === 'stopped') {
      if (typeof body.imageId === 'string') this.#c.swarm.depart(peerId, body.imageId);
      this.#c.onDepart?.(peerId);
      return { ok: true, peers: [], intervalSeconds: this.#init.announceIntervalSeconds };
    }
    const a = {
      ...pick(body),
      peerId,
      addrs: (Array.isArray(body.addrs) ? body.addrs : [])
        .slice(0, 16)
        .map((addr) => withPeerId(addr, peerId)),
    } as Announce;
    let record: ReturnType<SwarmState['announce']>;
    try {
      record = this.#c.swarm.announce(a);
    } catch (e) {
      if (e instanceof InvalidAnnounceError) throw new RswError('RSW_ERR_INVALID_ANNOUNCE', e.message);
      throw e;
    }
    this.#c.onAnnounce?.();
    const peers = handout(
      { peerId, rack: record.rack, progress: record.progress },
      this.#c.swarm.candidates(record.imageId),
      this.#init.handoutSize,
      this.#c.random ?? Math.random,
    );
    const complete = record.stage === 'done' || record.stage === 'seeding';
    return {
      ...this.#c.onAnnounceExtra?.(peerId, body),
      ok: true,
      peers: peers.map((p) => ({ peerId: p.peerId, addrs: p.addrs, rack: p.rack, progress: p.progress })),
      intervalSeconds: this.#init.announceIntervalSeconds,
      ...(complete ? { working: this.#working(record.imageId) } : {}),
    };
  }

  /** Peers of an image still fetching, recounted at most once a second per image (a count walks the swarm). */
  #working(imageId: string): number {
    const now = Date.now();
    const cached = this.#workingCache.get(imageId);
    if (cached && now - cached.at < 1000) return cached.working;
    const { byStage } = this.#c.swarm.summary(imageId);
    const working = byStage.announced + byStage.fetching + byStage.verifying;
    if (this.#workingCache.size > 1024) this.#workingCache.clear();
    this.#workingCache.set(imageId, { at: now, working });
    return working;
  }
}

const ANNOUNCE_FIELDS = [
  'imageId',
  'rack',
  'host',
  'progress',
  'bytesDone',
  'downRate',
  'upRate',
  'bytesFromPeers',
  'bytesFromSeeder',
  'stage',
  'error',
  'have',
] as const satisfies readonly (keyof AnnounceBody)[];

/** Only the announce fields the swarm state knows; anything else a peer sends is dropped. */
function pick(b: AnnounceBody): Omit<Announce, 'peerId' | 'addrs'> {
  return Object.fromEntries(ANNOUNCE_FIELDS.map((k) => [k, b[k]])) as Omit<Announce, 'peerId' | 'addrs'>;
}

/** A dialable address of the announcing peer: whatever /p2p/ it claimed is replaced by its authenticated id. */
function withPeerId(addr: unknown, peerId: string): string {
  const base = typeof addr === 'string' ? addr.replace(/\/p2p\/[^/]+$/, '') : '';
  return `${base}/p2p/${peerId}`;
}
