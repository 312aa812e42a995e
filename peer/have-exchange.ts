import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { count } from '../core/counters.ts';
import {
  bitfieldIndices,
  boundedLengthDecoder,
  decodeHaveMessage,
  encodeBitfield,
  encodeHave,
  encodeImporting,
  HAVE_PROTOCOL_COUNTED,
  HAVE_PROTOCOL_INTENTS,
  HAVE_PROTOCOLS,
  MAX_HAVE_FRAME_BYTES,
  MAX_HAVE_INDICES,
} from '../core/wire.ts';

type ExchangeNode = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>;

export interface HaveExchangeInit {
  imageId: string;
  chunkCount: number;
  /** Whether this node holds (verified) chunk i: sent as the opening bitfield. */
  has: (i: number) => boolean;
  /** This node's rack label, sent in the opening bitfield (core/wire.ts type 3). */
  rack?: string;
  /** A neighbour said which rack it is in (before the onHave of its bitfield). */
  onRack?: (peerId: string, rack: string) => void;
  /** A neighbour holds these chunks (from its bitfield or increments). */
  onHave: (peerId: string, indices: number[]) => void;
  /**
   * How many chunks this node holds: said with every have to the neighbours that speak 1.2.0. Without it, haves
   * are sent without a count.
   */
  held?: () => number;
  /** A neighbour said how many chunks it holds (its bitfield, then its counted haves, 1.2.0). */
  onProgress?: (peerId: string, held: number) => void;
  /** A rack-mate started (`on`) or stopped fetching these chunks from another rack (see importing()). */
  onImporting?: (peerId: string, indices: number[], on: boolean) => void;
  /**
   * The neighbour already holds chunk `index` (it told us): our have of it is not sent to that neighbour, which
   * cannot want it from us and counts availability only for chunks it lacks. Late in a swarm most neighbours hold
   * most chunks, so this drops most have messages.
   */
  holds?: (peerId: string, index: number) => boolean;
  /** A neighbour's stream ended (and no other is open with it). */
  onGone?: (peerId: string) => void;
  /**
   * An exchange with a peer is open — we dialled it, or it reached us first (then it is reachable over that
   * connection: `addr` is its peer id). Called before any of its messages, so it can be made a source before its
   * bitfield arrives.
   */
  onOpen?: (peerId: string, addr: PeerId | Multiaddr) => void;
  /** Neighbours at most (incoming streams beyond it are refused). @default 64 */
  maxNeighbours?: number;
}

/** A neighbour that has not taken a frame within this long is dropped (its stream is stuck). */
const WRITE_TIMEOUT_MS = 10_000;

/**
 * The deadline of the writes of one frame (or one flush) to every neighbour: one timer for all of them, not one per
 * neighbour and frame (AbortSignal.timeout's timer runs to its end unless the signal is collected first).
 */
function writeDeadline(): AbortSignal {
  return AbortSignal.timeout(WRITE_TIMEOUT_MS);
}

/** Dials of one exchange, in all, before a neighbour is given up (connect()). */
const CONNECT_ATTEMPTS = 3;
/** Wait before the second dial; the third waits twice this. */
const CONNECT_RETRY_MS = 1000;
/**
 * One dial, libp2p handshake and protocol choice included. Longer than libp2p's own 10 s on purpose: under a start
 * storm a handshake is slow because the CPU is busy, and one aborted at 10 s wastes its work and starts again.
 */
const CONNECT_TIMEOUT_MS = 30_000;

/** Offered in this order of preference (a dial takes the first the other side speaks). */
const PROTOCOLS = [...HAVE_PROTOCOLS];

interface Neighbour {
  stream: Stream;
  lp: ReturnType<typeof lpStream>;
  /** We dialled it. */
  outbound: boolean;
  /** It speaks 1.1.0 or 1.2.0 (import intents). */
  intents: boolean;
  /** It speaks 1.2.0 (haves with a count). */
  counted: boolean;
  /** The rack it said it is in. */
  rack?: string;
}

/**
 * Neighbours tell each other which chunks they hold (/rackswarm/have/1.0.0, codec in core/wire.ts): a bitfield when
 * the stream opens, then increments as chunks are verified, so availability is known without asking the tracker.
 * With /rackswarm/have/1.1.0 (preferred, both offered) a node also tells its rack-mates which chunks it is fetching
 * from another rack, until it has them or gives up (importing()). With /rackswarm/have/1.2.0 (preferred over 1.1.0)
 * its haves also say how many chunks it holds (`held`), which its neighbours' schedulers pace by (onProgress): a
 * have is not sent to a neighbour holding the chunk, so the haves alone do not give a neighbour's count.
 */
export class HaveExchange {
  readonly #node: ExchangeNode;
  readonly #init: HaveExchangeInit;
  readonly #neighbours = new Map<string, Neighbour>();
  readonly #dialing = new Set<string>();
  #pending: number[] = [];
  #flushing: Promise<void> | undefined;
  #stopped = false;

  constructor(node: ExchangeNode, init: HaveExchangeInit) {
    this.#node = node;
    this.#init = init;
  }

  async start(): Promise<void> {
    await this.#node.handle(PROTOCOLS, (stream, connection) => this.#accept(stream, connection), {
      maxInboundStreams: 2,
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#node.unhandle(PROTOCOLS);
    for (const n of this.#neighbours.values()) n.stream.abort(new Error('exchange stopped'));
    this.#neighbours.clear();
  }

  neighbours(): string[] {
    return [...this.#neighbours.keys()];
  }

  /** The rack a neighbour said it is in (its opening message), if it said. */
  rackOf(peerId: string): string | undefined {
    return this.#neighbours.get(peerId)?.rack;
  }

  /** Whether an exchange with this peer is open. */
  isNeighbour(peerId: string): boolean {
    return this.#neighbours.has(peerId);
  }

  /**
   * Opens the exchange with a peer (no-op if one is open or being opened). A dial that fails is tried again, up to
   * CONNECT_ATTEMPTS in all (unless the peer reached us meanwhile); rejects with the last failure. Why: in a swarm
   * that starts at once, every node opens an exchange with every neighbour while the CPU is scarcest, and libp2p
   * handshakes then fail on their timeout (the testbed at N = 16: tens to hundreds per run). A node that gave up on a
   * neighbour knew nothing of its chunks until the tracker handed it out again — up to ~30 s — and meanwhile asked
   * the head for chunks that neighbour held; after super-seeding's reserve (10 s) the head sent them again: 1.2-1.7 ×
   * the image instead of 1.0 × (docs/BENCHMARKS.md, "Persistent bulk connections").
   */
  async connect(peerId: string, addr: PeerId | Multiaddr): Promise<void> {
    if (this.#neighbours.has(peerId) || this.#dialing.has(peerId)) return;
    this.#dialing.add(peerId);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const stream = await this.#node.dialProtocol(addr, PROTOCOLS, {
            signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
          });
          this.#adopt(peerId, stream, true, addr);
          return;
        } catch (e) {
          if (this.#stopped || this.#neighbours.has(peerId)) return;
          if (attempt >= CONNECT_ATTEMPTS) throw e;
          await sleep(CONNECT_RETRY_MS * attempt);
          if (this.#stopped || this.#neighbours.has(peerId)) return;
        }
      }
    } finally {
      this.#dialing.delete(peerId);
    }
  }

  /** Tells every neighbour about newly verified chunks (batched into few frames). */
  announce(indices: number[]): void {
    this.#pending.push(...indices);
    this.#flushing ??= Promise.resolve().then(() => this.#flush());
  }

  /**
   * Tells the rack-mates that speak 1.1.0 that this node is fetching `indices` from outside the rack, another rack or
   * the head (`on`), or stopped
   * without getting them (a chunk it got is told by its have instead). Rack-mates: neighbours that said they are in
   * this node's rack; not one that holds every chunk of the frame (`holds`), which cannot want them.
   */
  importing(indices: number[], on: boolean): void {
    const rack = this.#init.rack;
    if (rack === undefined || indices.length === 0) return;
    const holds = this.#init.holds;
    const signal = writeDeadline();
    for (let k = 0; k < indices.length; k += MAX_HAVE_INDICES) {
      const part = indices.slice(k, k + MAX_HAVE_INDICES);
      const frame = encodeImporting(part, on);
      for (const [id, n] of this.#neighbours) {
        if (!n.intents || n.rack !== rack) continue;
        if (holds && part.every((i) => holds(id, i))) continue;
        count('have.out.importing');
        n.lp.write(frame, { signal }).catch((e) => this.#drop(id, n, e));
      }
    }
  }

  async #flush(): Promise<void> {
    count('have.flushes');
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, MAX_HAVE_INDICES);
      const holds = this.#init.holds;
      const all = encodeHave(batch);
      // (1.2.0: with this node's count)
      const held = this.#init.held?.();
      const allCounted = held === undefined ? undefined : encodeHave(batch, held);
      const signal = writeDeadline();
      await Promise.all(
        [...this.#neighbours.entries()].map(([id, n]) => {
          const news = holds ? batch.filter((i) => !holds(id, i)) : batch;
          if (news.length === 0) {
            count('have.out.skipped');
            return undefined;
          }
          count('have.out.have');
          count('have.out.indices', news.length);
          const counted = n.counted && held !== undefined;
          const frame =
            news.length === batch.length
              ? counted
                ? (allCounted as Uint8Array)
                : all
              : encodeHave(news, counted ? held : undefined);
          return n.lp.write(frame, { signal }).catch((e) => this.#drop(id, n, e));
        }),
      );
    }
    this.#flushing = undefined;
  }

  #accept(stream: Stream, connection: Connection): void {
    const peerId = connection.remotePeer.toString();
    if (this.#neighbours.size >= (this.#init.maxNeighbours ?? 64) && !this.#neighbours.has(peerId)) {
      stream.abort(new Error('too many neighbours'));
      return;
    }
    this.#adopt(peerId, stream, false, connection.remotePeer);
  }

  /**
   * Makes `stream` the exchange with `peerId`. A newer stream in the same direction replaces the old one (a re-dial:
   * the old one is presumed dead). When both sides dialled at once, each side would otherwise keep the stream it
   * accepted and abort the one it dialled — killing both; so both keep the stream the lower peer id dialled.
   */
  #adopt(peerId: string, stream: Stream, outbound: boolean, addr: PeerId | Multiaddr): void {
    const old = this.#neighbours.get(peerId);
    if (old && old.outbound !== outbound) {
      const me = this.#node.peerId.toString();
      const dialler = outbound ? me : peerId;
      const other = outbound ? peerId : me;
      if (dialler > other) {
        stream.abort(new Error('both sides opened the exchange: the other stream is kept'));
        return;
      }
    }
    const lp = lpStream(stream, {
      maxDataLength: MAX_HAVE_FRAME_BYTES,
      maxBufferSize: MAX_HAVE_FRAME_BYTES + 16,
      lengthDecoder: boundedLengthDecoder(MAX_HAVE_FRAME_BYTES),
    });
    const counted = stream.protocol === HAVE_PROTOCOL_COUNTED;
    const n: Neighbour = {
      stream,
      lp,
      outbound,
      intents: counted || stream.protocol === HAVE_PROTOCOL_INTENTS,
      counted,
    };
    this.#neighbours.set(peerId, n);
    if (old) old.stream.abort(new Error('replaced by a newer exchange stream'));
    this.#init.onOpen?.(peerId, addr);
    void this.#run(peerId, n);
  }

  async #run(peerId: string, n: Neighbour): Promise<void> {
    const { imageId, chunkCount } = this.#init;
    try {
      await n.lp.write(encodeBitfield(imageId, chunkCount, this.#init.has, this.#init.rack), {
        signal: writeDeadline(),
      });
      for (;;) {
        const msg = decodeHaveMessage((await n.lp.read()).subarray(), chunkCount);
        count(`have.in.${msg.type}`);
        if (msg.type === 'bitfield') {
          if (msg.imageId !== imageId) throw new Error('neighbour exchanges another image');
          if (msg.rack !== undefined) this.#init.onRack?.(peerId, msg.rack);
          n.rack = msg.rack;
          const indices = bitfieldIndices(msg.bits, chunkCount);
          this.#init.onHave(peerId, indices);
          if (n.counted) this.#init.onProgress?.(peerId, indices.length);
        } else if (msg.type === 'importing') {
          if (!n.intents) throw new Error('import intent on a 1.0.0 exchange');
          this.#init.onImporting?.(peerId, msg.indices, msg.on);
        } else {
          count('have.in.indices', msg.indices.length);
          if (msg.held !== undefined && !n.counted)
            throw new Error('counted have on a 1.0.0 / 1.1.0 exchange');
          this.#init.onHave(peerId, msg.indices);
          if (msg.held !== undefined) this.#init.onProgress?.(peerId, msg.held);
        }
      }
    } catch (e) {
      this.#drop(peerId, n, e);
    }
  }

  #drop(peerId: string, n: Neighbour, e: unknown): void {
    if (this.#neighbours.get(peerId) !== n) return;
    this.#neighbours.delete(peerId);
    n.stream.abort(e instanceof Error ? e : new Error(String(e)));
    this.#init.onGone?.(peerId);
  }
}
