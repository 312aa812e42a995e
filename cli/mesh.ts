/**
 * The closed mesh composed for the head and for a node (docs/SECURITY.md): core/mesh-gater.ts decides, with the
 * head's enrollment records or, on a node, the head's answers (core/enrollment-cache.ts over peer/enrollment-client.ts).
 */
import type { ConnectionGater, Libp2p } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Multiaddr } from '@multiformats/multiaddr';
import { EnrollmentCache } from '../core/enrollment-cache.ts';
import { type GateDirection, meshGater } from '../core/mesh-gater.ts';
import { queryEnrolled } from '../peer/enrollment-client.ts';

/** Refusals per peer (bounded), logged at most once a minute per peer: a flood of outsiders must not flood the log. */
export class Refusals {
  readonly #byPeer = new Map<string, { count: number; loggedAt: number }>();
  readonly #log: (peerId: string, direction: GateDirection | 'recheck') => void;
  total = 0;

  constructor(log: (peerId: string, direction: GateDirection | 'recheck') => void) {
    this.#log = log;
  }

  record = (peerId: string, direction: GateDirection | 'recheck'): void => {
    this.total++;
    const now = Date.now();
    const e = this.#byPeer.get(peerId) ?? { count: 0, loggedAt: 0 };
    e.count++;
    this.#byPeer.delete(peerId);
    this.#byPeer.set(peerId, e);
    if (this.#byPeer.size > 65_536) this.#byPeer.delete(this.#byPeer.keys().next().value as string);
    if (now - e.loggedAt >= 60_000) {
      e.loggedAt = now;
      this.#log(peerId, direction);
    }
  };

  count(peerId: string): number {
    return this.#byPeer.get(peerId)?.count ?? 0;
  }

  counts(): Record<string, number> {
    return Object.fromEntries([...this.#byPeer].map(([id, e]) => [id, e.count]));
  }
}

/** The head's gater: its own enrollment records decide, synchronously. */
export function headGater(isEnrolled: (peerId: string) => boolean, refusals: Refusals): ConnectionGater {
  return meshGater({ isEnrolled, onRefuse: refusals.record });
}

export interface NodeMeshInit {
  /** The pinned head peer id. */
  head: string;
  /** The head's address, with /p2p/<head>. */
  headAddr: Multiaddr;
  /** config `mesh.cacheSeconds`, in ms. */
  ttlMs: number;
  refusals: Refusals;
}

/**
 * A node's side of the closed mesh: the gater (the pinned head always, anyone else only if the head says enrolled),
 * and a re-check every `ttlMs` of the peers it is connected to, hanging up on those the head no longer enrolls.
 * A head that cannot be asked refuses new peers (fail closed) but cuts no existing connection: a wave whose head
 * went away still completes among the peers already connected.
 */
export class NodeMesh {
  readonly gater: ConnectionGater;
  readonly #init: NodeMeshInit;
  readonly #cache: EnrollmentCache;
  #node: Libp2p | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(init: NodeMeshInit) {
    this.#init = init;
    this.#cache = new EnrollmentCache({
      ttlMs: init.ttlMs,
      query: (ids) => {
        if (!this.#node) return Promise.reject(new Error('node not started'));
        return queryEnrolled(this.#node, init.headAddr, ids, { timeoutMs: 5_000 });
      },
    });
    this.gater = meshGater({
      head: init.head,
      isEnrolled: (id) => this.#cache.isEnrolled(id),
      onRefuse: init.refusals.record,
    });
  }

  attach(node: Libp2p): void {
    this.#node = node;
    this.#timer = setInterval(() => void this.recheck(), this.#init.ttlMs);
    this.#timer.unref();
  }

  /** Hangs up on connected peers the head no longer enrolls; resolves with their ids. */
  async recheck(): Promise<string[]> {
    const node = this.#node;
    if (!node) return [];
    const ids = [...new Set(node.getConnections().map((c) => c.remotePeer.toString()))].filter(
      (id) => id !== this.#init.head,
    );
    const gone: string[] = [];
    await Promise.all(
      ids.map(async (id) => {
        const ok = await this.#cache.isEnrolled(id).catch(() => undefined);
        if (ok !== false) return;
        gone.push(id);
        this.#init.refusals.record(id, 'recheck');
        await node.hangUp(peerIdFromString(id)).catch(() => {});
      }),
    );
    return gone;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
