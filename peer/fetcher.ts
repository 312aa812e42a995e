/*
 * DEV DOCS — the peer's download loop. What each piece owns:
 *   Scheduler (peer/scheduler.ts, pure)   which chunk to ask which peer for, in-flight budgets, bans, endgame
 *   HaveExchange (peer/have-exchange.ts)  which chunks each neighbour holds (bitfield, then increments)
 *   chunkFetch (peer/bulk-client.ts)      one batch of chunks from one peer, each BLAKE3-verified: over a bulk TCP
 *                                         connection (token from libp2p) or a libp2p stream (peer/chunk-client.ts)
 *   ImageWriter / ResumeState             positional writes into the target; the durable record of verified chunks
 *   Fetcher (this file)                   the loops tying them together, and the chunk source that serves onward
 * A request flows: announce → handout → exchange.connect → scheduler.next(peer) → fetchChunks → verify (client) →
 * writer.write → scheduler.received → exchange.announce + served to others → (batched) writer.sync → resume.mark.
 * Up to `pipelineBatches` (config `peer.pipelineBatches`, 2) batches are in flight to one peer (to the head one, in a
 * rack): the next is asked as
 * soon as an arrival frees room in the scheduler's budget for that peer, and on a bulk connection it waits at the
 * server behind the one in progress (peer/bulk-client.ts), so a source's link does not idle for a round trip between
 * batches (docs/BENCHMARKS.md, "Session 10: where a node's link time goes").
 */

import type { Libp2p, PeerId } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { BufferPool } from '../core/buffer-pool.ts';
import { count } from '../core/counters.ts';
import { isRswError, RswError } from '../core/errors.ts';
import { hashHex } from '../core/hash.ts';
import type { Manifest } from '../core/manifest.ts';
import {
  type AnnounceBody,
  type AnnounceBodyExt,
  type AnnounceResponse,
  encodeAnnounceHave,
} from '../core/tracker-messages.ts';
import { Wakeup } from '../core/wakeup.ts';
import type { ChunkFetch } from './bulk-client.ts';
import { type FetchedChunk, fetchChunks } from './chunk-client.ts';
import { HaveExchange } from './have-exchange.ts';
import type { ImageWriter } from './image-writer.ts';
import type { ResumeState } from './resume-state.ts';
import { Scheduler } from './scheduler.ts';
import { rotationStart } from './source-order.ts';
import { announce } from './tracker-client.ts';

export type FetchStage = 'announced' | 'fetching' | 'verifying' | 'done' | 'seeding' | 'failed' | 'stopped';

export interface FetchProgress {
  stage: FetchStage;
  bytesDone: number;
  size: number;
  chunksDone: number;
  chunks: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  bytesReused: number;
  downRate: number;
  upRate: number;
  peers: number;
  /** Peers banned for sending chunks that failed verification. */
  banned: number;
}

/**
 * Where a fetch's time went (cumulative since run(); cheap counters for the testbed's per-node time series, fetch
 * --json's progress lines): who refused it, how many sources it had, and why it had none.
 */
export interface FetchFlow {
  /** Batches asked of neighbours and of the seeder. */
  batchesPeers: number;
  batchesSeeder: number;
  /** Of those, batches answered `busy` (from their first chunk or a later one). */
  busyPeers: number;
  busySeeder: number;
  /** Integral over time of the neighbours with a batch in flight (ms × sources), and ms with one at the seeder. */
  peerSourceMs: number;
  seederMs: number;
  /**
   * Ms with nothing in flight while fetching: every neighbour holding a chunk it may ask for was backed off after a
   * `busy` or `error`; none held one (nothing to ask but the seeder, which rule 4 spares); some could be asked.
   */
  idleBackoffMs: number;
  idleNothingMs: number;
  idleOtherMs: number;
  /** Now: neighbours with a batch in flight, and neighbours holding a chunk it may ask for (of them backed off). */
  sources: number;
  holding: number;
  backedOff: number;
  /**
   * Where a source's time goes, per batch (summed; docs/BENCHMARKS.md, Session 10): request → its first answer (the
   * request's trip, the server's admission and first read, the first chunk's transfer), first answer → last answer,
   * and answered bytes. A batch asked while another was in flight to that peer (pipelined) is counted by its own times.
   */
  batchWaitMs: number;
  batchXferMs: number;
  batchBytes: number;
  /** Chunks answered `ok` in those batches: (batchXferMs ÷ (batchChunks − batches)) is a chunk's time on the wire. */
  batchChunks: number;
  /** Batches asked of a peer while another one was in flight to it (`pipelineBatches`). */
  batchesPipelined: number;
  /** From a neighbour's last batch's end to the next request to it, summed, and how many such gaps. */
  batchGapMs: number;
  batchGaps: number;
  /**
   * Ms with fewer than `maxSources` peers in flight (the seeder counts, as in the scheduler's rule 1) while a neighbour
   * holding a chunk it may ask for had nothing in flight and was not backed off; and the times next() gave a peer
   * with nothing in flight nothing (budget, rules 4 and 6).
   */
  freeSlotMs: number;
  nextEmpty: number;
}

export interface FetcherComponents {
  node: Pick<Libp2p, 'dial' | 'dialProtocol' | 'handle' | 'unhandle' | 'getMultiaddrs' | 'peerId'>;
  /** An ImageWriter, or a DecryptingTarget over one (encrypted images: core/decrypting-target.ts). */
  writer: Pick<ImageWriter, 'write' | 'read' | 'readInto' | 'sync'>;
  resume: ResumeState;
  /** The head: its tracker and seeder share one libp2p address. */
  head: { peerId: string; addr: Multiaddr };
  /** How a batch travels (peer/bulk-client.ts chunkFetch, config `p2p.dataPlane`). @default fetchChunks (libp2p streams) */
  fetchChunks?: ChunkFetch;
  /** Bytes this node has uploaded so far (from its chunk server), for announces. */
  uploaded?: () => number;
  random?: () => number;
  now?: () => number;
}

export interface FetcherInit {
  manifest: Manifest;
  imageId: string;
  rack?: string;
  host?: string;
  onProgress?: (p: FetchProgress) => void;
  /** Named points of the start (first announce answer, first have, first request, first chunk): cli/start-steps.ts. */
  onStep?: (name: string) => void;
  /** Extension fields for each announce (preheat reports), and a look at each response (its instructions). */
  announceExtra?: () => Omit<AnnounceBodyExt, keyof AnnounceBody>;
  onAnnounceResponse?: (r: AnnounceResponse) => void;
  /**
   * Re-read the whole target after the download and hash every chunk again (catches storage that loses or corrupts
   * writes). Without it the guarantee is the receipt hash: every chunk is BLAKE3-checked before it is written, and the
   * record of done chunks is only updated after an fdatasync of those writes. Config `peer.verifyWritten`.
   */
  verifyWritten?: boolean;
  /** Peers with requests in flight at once, the head included (Scheduler `maxSources`). @default no limit */
  maxSources?: number;
  /** The scheduler's pace (Scheduler `behindShare`); 0 or none: off. */
  behindShare?: number;
  /**
   * Batches in flight to one peer at once (config `peer.pipelineBatches`; the head gets one at a time with `rack`):
   * with 2, the next batch is asked as soon as the scheduler's budget has room for it, while the current one is still
   * arriving — on a bulk connection it queues behind it (peer/bulk-client.ts), so the server starts it without waiting
   * a request round trip. @default 1
   */
  pipelineBatches?: number;
}

const SYNC_EVERY_MS = 1000;

const SYNC_EVERY_CHUNKS = 64;

const REPORT_EVERY_MS = 100;

export class Fetcher {
  readonly #c: FetcherComponents;
  readonly #init: FetcherInit;
  readonly #index = new Map<string, number[]>();
  readonly #scheduler: Scheduler;
  readonly #exchange: HaveExchange;
  readonly #verified = new Set<number>();
  readonly #peers = new Map<string, Multiaddr | PeerId>();
  /** Per peer: batches in flight to it (at most pipelineBatches). */
  readonly #workers = new Map<string, number>();
  /** Per peer: when its last batch ended (for batchGapMs). */
  readonly #lastEnd = new Map<string, number>();
  readonly #pipeline: number;
  #unsynced: number[] = [];
  #lastSync = 0;
  /** The record update in progress (one at a time, off the receive path). */
  #syncing: Promise<void> | undefined;
  /** Chunk bodies: received into pooled buffers, released once written (see core/buffer-pool.ts for why). */
  readonly #pool = new BufferPool();
  #stage: FetchStage = 'announced';
  #fromPeers = 0;
  #fromSeeder = 0;
  #reused = 0;
  #started = 0;
  /** performance.now() at the first chunk request, and when the last missing chunk was verified and written. */
  #dataFrom: number | undefined;
  #dataTo: number | undefined;
  readonly #wakeup = new Wakeup();
  #failure: unknown;
  #reportedAt = Number.NEGATIVE_INFINITY;
  #intervalMs = 10_000;
  /** Time and byte totals at the previous announce: announces carry the rates since then, not since the start. */
  #lastAnnounce = { at: 0, down: 0, up: 0 };
  readonly #halt = new AbortController();
  /** The 'done' announce run() sent without waiting for it. */
  #doneAnnounce: Promise<void> | undefined;
  readonly #flow: FetchFlow = {
    batchesPeers: 0,
    batchesSeeder: 0,
    busyPeers: 0,
    busySeeder: 0,
    peerSourceMs: 0,
    seederMs: 0,
    idleBackoffMs: 0,
    idleNothingMs: 0,
    idleOtherMs: 0,
    sources: 0,
    holding: 0,
    backedOff: 0,
    batchWaitMs: 0,
    batchXferMs: 0,
    batchBytes: 0,
    batchChunks: 0,
    batchesPipelined: 0,
    batchGapMs: 0,
    batchGaps: 0,
    freeSlotMs: 0,
    nextEmpty: 0,
  };
  /** Whether a source slot was free while an idle, askable holder waited (freeSlotMs), as of the last #account. */
  #freeSlot = false;
  /** When #flow was last brought up to date (performance.now()), and what was idle then. */
  #flowAt = Number.NaN;
  #idleKind: 'idleBackoffMs' | 'idleNothingMs' | 'idleOtherMs' | undefined;

  readonly #random: () => number;

  constructor(components: FetcherComponents, init: FetcherInit) {
    this.#c = components;
    this.#random = components.random ?? Math.random;
    this.#init = init;
    this.#pipeline = Math.max(1, Math.floor(init.pipelineBatches ?? 1));
    const m = init.manifest;
    m.chunks.forEach((c, i) => {
      const list = this.#index.get(c.hash);
      if (list) list.push(i);
      else this.#index.set(c.hash, [i]);
    });
    const have = m.chunks.map((_, i) => i).filter((i) => components.resume.has(i));
    for (const i of have) this.#verified.add(i);
    this.#reused = have.reduce((s, i) => s + m.chunks[i].length, 0);
    this.#scheduler = new Scheduler(
      {
        chunkLengths: m.chunks.map((c) => c.length),
        random: this.#random,
        seederId: components.head.peerId,
        ...(init.maxSources ? { maxSources: init.maxSources } : {}),
        ...(init.behindShare ? { behindShare: init.behindShare } : {}),
      },
      have,
    );
    this.#exchange = new HaveExchange(components.node, {
      imageId: init.imageId,
      chunkCount: m.chunks.length,
      has: (i) => this.#verified.has(i),
      rack: init.rack || undefined,
      // The rack a neighbour states (rule 6 of the scheduler), also for one that reached us first.
      onRack: (peerId, rack) =>
        this.#scheduler.setRemote(peerId, init.rack !== undefined && rack !== init.rack),
      onHave: (peerId, indices) => {
        init.onStep?.('firstHave');
        this.#scheduler.peerHave(peerId, indices);
        this.#poke('have');
      },
      // A rack-mate fetching chunks from another rack (scheduler rule 6): not from there by us too, meanwhile.
      onImporting: (peerId, indices, on) => {
        this.#scheduler.rackMateImporting(peerId, indices, on);
        if (!on) this.#poke('importing');
      },
      // A node that announced after us reaches us first: without this we would only ever know the ones before us. And
      // a peer forgotten while an exchange with it was being opened is a source again before its bitfield arrives.
      onOpen: (peerId, addr) => this.#addPeer(peerId, addr),
      holds: (peerId, i) => this.#scheduler.holds(peerId, i),
      // Our count with every have, and the neighbours' (1.2.0): the scheduler's pace (behindShare).
      held: () => this.#verified.size,
      onProgress: (peerId, held) => this.#scheduler.peerProgress(peerId, held),
      onGone: (peerId) => this.#dropPeer(peerId),
    });
  }

  /** The rack a neighbour said it is in over the have exchange (for this node's serving policy), if known. */
  rackOf(peerId: string): string | undefined {
    return this.#exchange.rackOf(peerId);
  }

  /**
   * Serves verified chunks onward (to a chunk server): re-read from the target and re-hashed before sending; `read`
   * into the server's pooled buffers (on bulk connections) instead of a fresh one per chunk.
   */
  chunkSource() {
    const read = async (
      hash: string,
      alloc: (size: number) => Buffer = Buffer.allocUnsafe,
      release?: (buf: Buffer) => void,
    ): Promise<Buffer> => {
      const i = (this.#index.get(hash) ?? []).find((j) => this.#verified.has(j));
      if (i === undefined) throw new RswError('RSW_ERR_CHUNK_NOT_FOUND', `chunk ${hash} is not here yet`);
      const c = this.#init.manifest.chunks[i];
      const data = alloc(c.length);
      try {
        await this.#c.writer.readInto(data, c.offset);
        if (hashHex(data) !== hash)
          throw new RswError('RSW_ERR_CHUNK_CORRUPT', `chunk ${hash} changed on disk`);
      } catch (e) {
        release?.(data);
        throw e;
      }
      return data;
    };
    return {
      has: async (hash: string) => (this.#index.get(hash) ?? []).some((i) => this.#verified.has(i)),
      get: (hash: string) => read(hash),
      read,
    };
  }

  /**
   * Seconds from the first chunk request to the last chunk verified and written (before the final fdatasync): the
   * data phase, without the start before it. Undefined when nothing was requested.
   */
  dataSeconds(): number | undefined {
    if (this.#dataFrom === undefined || this.#dataTo === undefined) return undefined;
    return (this.#dataTo - this.#dataFrom) / 1000;
  }

  /** Where the fetch's time went so far (FetchFlow). */
  flow(): FetchFlow {
    if (this.#stage === 'fetching') this.#account();
    return { ...this.#flow };
  }

  /**
   * Brings #flow up to date: the time since the last call goes to the sources in flight then and, with none, to the
   * idle reason found then; then takes the state now. Called on each turn of run()'s loop (every arrival, have and
   * 200 ms tick) and by flow().
   */
  #account(): void {
    const now = performance.now();
    const f = this.#flow;
    if (!Number.isNaN(this.#flowAt)) {
      const dt = now - this.#flowAt;
      f.peerSourceMs += f.sources * dt;
      if (this.#workers.has(this.#c.head.peerId)) f.seederMs += dt;
      if (this.#idleKind) f[this.#idleKind] += dt;
      if (this.#freeSlot) f.freeSlotMs += dt;
    }
    this.#flowAt = now;
    const seeder = this.#workers.has(this.#c.head.peerId) ? 1 : 0;
    f.sources = this.#workers.size - seeder;
    const h = this.#scheduler.holders(this.#now());
    f.holding = h.holding;
    f.backedOff = h.backedOff;
    this.#freeSlot =
      !this.#scheduler.done &&
      this.#workers.size < (this.#init.maxSources || Number.POSITIVE_INFINITY) &&
      h.idle > 0;
    this.#idleKind =
      this.#workers.size > 0 || this.#scheduler.done
        ? undefined
        : h.holding === 0
          ? 'idleNothingMs'
          : h.backedOff === h.holding
            ? 'idleBackoffMs'
            : 'idleOtherMs';
  }

  progress(): FetchProgress {
    const m = this.#init.manifest;
    let bytesDone = 0;
    for (const i of this.#verified) bytesDone += m.chunks[i].length;
    const secs = Math.max(0.001, (this.#now() - this.#started) / 1000);
    return {
      stage: this.#stage,
      bytesDone,
      size: m.size,
      chunksDone: this.#verified.size,
      chunks: m.chunks.length,
      bytesFromPeers: this.#fromPeers,
      bytesFromSeeder: this.#fromSeeder,
      bytesReused: this.#reused,
      downRate: (this.#fromPeers + this.#fromSeeder) / secs,
      upRate: (this.#c.uploaded?.() ?? 0) / secs,
      peers: this.#peers.size,
      banned: this.#scheduler.stats().perPeer.filter((p) => p.banned).length,
    };
  }

  /**
   * Downloads every missing chunk (each verified on receipt, before it is written), makes the writes durable and, with
   * `verifyWritten`, re-reads and verifies the whole image. Resolves when it is complete.
   */
  async run(signal?: AbortSignal): Promise<FetchProgress> {
    this.#started = this.#now();
    this.#init.onStep?.('run');
    await this.#exchange.start();
    const announcer = this.#announceLoop(signal);
    this.#stage = 'fetching';
    this.#addPeer(this.#c.head.peerId, this.#c.head.addr);
    const ticker = setInterval(() => this.#poke('tick'), 200);
    try {
      while (!this.#scheduler.done) {
        if (signal?.aborted)
          throw new RswError('RSW_ERR_INTERRUPTED', 'fetch interrupted; the next run resumes');
        if (this.#failure) throw this.#failure;
        count('fetch.turns');
        for (const { peerId, index } of this.#scheduler.overdue(this.#now())) {
          this.#scheduler.failed(peerId, index, 'timeout', this.#now());
        }
        // Only the neighbours next() may give something (Scheduler.askable, as bench/sim walks them), from a random
        // place in the list, not its start: else everyone's few sources were the nodes that announced first
        // (peer/source-order.ts).
        const start = rotationStart(this.#scheduler.peerCount, this.#random);
        for (const peerId of this.#scheduler.askable(this.#now(), start)) {
          count('fetch.askable');
          this.#startWorker(peerId);
        }
        this.#account();
        this.#report();
        // A node short of sources also wakes when the first back-off of a neighbour holding what it lacks ends
        // (Scheduler.wakeAt), not only at the next arrival, have or 200 ms tick (bench/sim: with the scheduler's
        // hungryBackoffMs, the starved nodes ask again as soon as they may).
        const now = this.#now();
        const wakeAt = this.#scheduler.wakeAt(now);
        if (wakeAt !== Number.POSITIVE_INFINITY) count('fetch.waitTimers');
        await this.#wakeup.wait(
          wakeAt === Number.POSITIVE_INFINITY ? undefined : Math.ceil(wakeAt - now) + 1,
        );
      }
      this.#account();
      this.#dataTo = performance.now();
      this.#halt.abort();
      await announcer;
      await this.#syncAll();
      if (this.#init.verifyWritten) {
        this.#stage = 'verifying';
        await this.#announceOnce().catch(() => {});
        await this.#verifyAll();
      }
      this.#stage = 'done';
      // Not awaited: the image is complete and durable whatever the tracker answers; seed(), leave() and stop() wait
      // for it, so the tracker hears 'done' before anything later (a round trip off every fetch's time).
      this.#doneAnnounce = this.#announceOnce().then(
        () => {},
        () => {},
      );
      this.#report(true);
      return this.progress();
    } catch (e) {
      await this.#syncing;
      // Chunks written before the failure (a full disk, an interrupt) are kept for the next run if they reach the disk.
      if (this.#unsynced.length > 0) await this.#syncBatch().catch(() => {});
      this.#stage = 'failed';
      await this.#announceOnce(isRswError(e) ? e.message : String(e)).catch(() => {});
      throw e;
    } finally {
      clearInterval(ticker);
      this.#halt.abort();
    }
  }

  /**
   * Keeps serving and announcing (stage seeding) after run() until `signal` aborts — or, with `untilSwarmDone`, until
   * the tracker has twice in a row (one announce interval apart, so peers that are just starting get counted) answered
   * that no peer of the image is still fetching and `busy` (e.g. a preheat in progress) is false. Resolves with the
   * reason it stopped.
   */
  async seed(
    signal: AbortSignal,
    opts: { untilSwarmDone?: boolean; busy?: () => boolean } = {},
  ): Promise<'swarm-done' | 'signal'> {
    await this.#doneAnnounce;
    this.#stage = 'seeding';
    let idleAnswers = 0;
    while (!signal.aborted) {
      const r = await this.#announceOnce().catch(() => undefined);
      idleAnswers = r?.working === 0 ? idleAnswers + 1 : 0;
      if (opts.untilSwarmDone && idleAnswers >= 2 && !opts.busy?.()) return 'swarm-done';
      await sleep(this.#intervalMs, signal);
    }
    return 'signal';
  }

  /**
   * Tells the tracker this node is leaving (stage `stopped`, once, within `timeoutMs`; best effort): it is no longer
   * handed out to nodes that start after it, and the head's super-seeding frees the chunks it sent here first. Without
   * it a node that exited stayed in the handouts until the tracker's TTL, and a fetch started right after it waited
   * out the head's reserve for the chunks only it had been sent (docs/BENCHMARKS.md, "Fetch").
   */
  async leave(timeoutMs = 2000): Promise<void> {
    await this.#doneAnnounce;
    if (this.#stage === 'stopped') return;
    this.#stage = 'stopped';
    await this.#announceOnce(undefined, timeoutMs).catch(() => {});
  }

  async stop(): Promise<void> {
    await this.#doneAnnounce;
    this.#halt.abort();
    await this.#exchange.stop();
  }

  #now(): number {
    return (this.#c.now ?? Date.now)();
  }

  /**
   * Progress to the caller (bar, JSON lines), at most every REPORT_EVERY_MS unless `force`: the loop runs on every
   * arrival, have message and tick, and progress() walks every chunk (16 fetches in one swarm spent ~2.6 % of their
   * CPU here, testbed profile).
   */
  #report(force = false): void {
    const now = this.#now();
    if (!force && now - this.#reportedAt < REPORT_EVERY_MS) return;
    this.#reportedAt = now;
    this.#init.onProgress?.(this.progress());
  }

  #poke(reason: string): void {
    count(`fetch.poke.${reason}`);
    this.#wakeup.wake();
  }

  #addPeer(peerId: string, addr: Multiaddr | PeerId, rack?: string): void {
    if (this.#peers.has(peerId) || peerId === this.#c.node.peerId.toString()) return;
    this.#peers.set(peerId, addr);
    const remote = rack !== undefined && this.#init.rack !== undefined && rack !== this.#init.rack;
    this.#scheduler.addPeer(peerId, this.#now(), remote);
    if (peerId === this.#c.head.peerId) this.#scheduler.peerHave(peerId, 'all');
    else void this.#exchange.connect(peerId, addr).catch(() => this.#dropPeer(peerId));
  }

  /**
   * A neighbour whose exchange could not be opened, or whose stream ended (it left, or a freeze or a partition timed
   * the stream out): what it holds is no longer known, so it is forgotten until the tracker hands it out again, which
   * opens a new exchange with a fresh bitfield. Kept instead, it would stay a source whose holdings never grow.
   */
  #dropPeer(peerId: string): void {
    // (A connect can fail while the peer's own exchange with us, opened meanwhile, is fine.)
    if (peerId === this.#c.head.peerId || this.#exchange.isNeighbour(peerId)) return;
    if (!this.#peers.delete(peerId)) return;
    this.#scheduler.removePeer(peerId, this.#now());
    this.#poke('peerGone');
  }

  async #announceLoop(signal?: AbortSignal): Promise<void> {
    const stop = AbortSignal.any([this.#halt.signal, ...(signal ? [signal] : [])]);
    while (!stop.aborted) {
      try {
        await this.#announceOnce();
      } catch {
        // the head may be gone: peers keep exchanging; retried next interval
      }
      await sleep(this.#intervalMs, stop);
    }
  }

  async #announceOnce(error?: string, timeoutMs?: number): Promise<AnnounceResponse> {
    const p = this.progress();
    const now = this.#now();
    const down = p.bytesFromPeers + p.bytesFromSeeder;
    const up = this.#c.uploaded?.() ?? 0;
    const last = this.#lastAnnounce;
    const secs = (now - (last.at || this.#started || now)) / 1000;
    this.#lastAnnounce = { at: now, down, up };
    const working = this.#stage === 'announced' || this.#stage === 'fetching' || this.#stage === 'verifying';
    const r = await announce(
      this.#c.node,
      this.#c.head.addr,
      {
        imageId: this.#init.imageId,
        addrs: this.#c.node.getMultiaddrs().map((a) => a.toString()),
        rack: this.#init.rack,
        host: this.#init.host,
        progress: p.size ? p.bytesDone / p.size : 0,
        bytesDone: p.bytesDone,
        downRate: secs > 0 ? Math.round((down - last.down) / secs) : 0,
        upRate: secs > 0 ? Math.round((up - last.up) / secs) : 0,
        bytesFromPeers: p.bytesFromPeers,
        bytesFromSeeder: p.bytesFromSeeder,
        stage: this.#stage,
        error,
        ...this.#init.announceExtra?.(),
        have: working ? encodeAnnounceHave(p.chunks, (i) => this.#verified.has(i)) : undefined,
      },
      { timeoutMs },
    );
    this.#init.onAnnounceResponse?.(r);
    this.#init.onStep?.(r.peers.length > 0 ? 'trackerPeers' : 'trackerEmpty');
    this.#intervalMs = r.intervalSeconds * 1000;
    for (const peer of r.peers) {
      const addr = peer.addrs[0];
      if (addr) this.#addPeer(peer.peerId, multiaddr(addr), peer.rack);
    }
    this.#poke('announce');
    return r;
  }

  /**
   * Batches in flight to `peerId` at most: `pipelineBatches`, but one to the head with racks. To the head only without
   * racks: with two batches per node the testbed's 2 racks × 8 took 1.10–1.17 × the image from it (main 1.01 ×; its
   * super-seeding and the rack rules 4 and 6 see one batch per node at a time), while without racks it stayed at
   * 1.00–1.01 × and the head's link, the bound here, idles less (docs/BENCHMARKS.md, Session 10).
   */
  #batchLimit(peerId: string): number {
    return peerId === this.#c.head.peerId && this.#init.rack ? 1 : this.#pipeline;
  }

  #startWorker(peerId: string): void {
    const running = this.#workers.get(peerId) ?? 0;
    const limit = this.#batchLimit(peerId);
    if (running >= limit || this.#scheduler.isBanned(peerId)) return;
    count('fetch.next');
    const indices = this.#scheduler.next(peerId, this.#now());
    if (indices.length === 0) {
      count('fetch.nextEmpty');
      if (running === 0) this.#flow.nextEmpty++;
      return;
    }
    this.#workers.set(peerId, running + 1);
    count(peerId === this.#c.head.peerId ? 'fetch.batches.head' : 'fetch.batches.peer');
    count('fetch.batchChunks', indices.length);
    const asked = performance.now();
    if (running > 0) this.#flow.batchesPipelined++;
    else {
      const end = this.#lastEnd.get(peerId);
      if (end !== undefined) {
        this.#flow.batchGapMs += asked - end;
        this.#flow.batchGaps++;
      }
    }
    // From outside the rack (another rack, or the head when this node is in a rack): the rack-mates hear of it, and
    // of what did not come (what came, they hear as haves). Scheduler rules 4 and 6.
    const importing =
      this.#scheduler.isRemote(peerId) || (!!this.#init.rack && peerId === this.#c.head.peerId);
    if (importing) this.#exchange.importing(indices, true);
    this.#dataFrom ??= performance.now();
    this.#init.onStep?.(peerId === this.#c.head.peerId ? 'firstRequestHead' : 'firstRequestPeer');
    void this.#fetchFrom(peerId, indices, asked).finally(() => {
      const left = (this.#workers.get(peerId) ?? 1) - 1;
      if (left > 0) this.#workers.set(peerId, left);
      else {
        this.#workers.delete(peerId);
        this.#lastEnd.set(peerId, performance.now());
      }
      if (importing)
        this.#exchange.importing(
          indices.filter((i) => !this.#verified.has(i)),
          false,
        );
      this.#poke('batchEnd');
    });
  }

  async #fetchFrom(peerId: string, indices: number[], asked: number): Promise<void> {
    const m = this.#init.manifest;
    const addr = this.#peers.get(peerId) as Multiaddr | PeerId;
    const pending = new Set(indices);
    const hashes = indices.map((i) => m.chunks[i].hash);
    const isSeeder = peerId === this.#c.head.peerId;
    if (isSeeder) this.#flow.batchesSeeder++;
    else this.#flow.batchesPeers++;
    let refused = false;
    let first = Number.NaN;
    let last = Number.NaN;
    try {
      let k = 0;
      const opts = { timeoutMs: 30_000, pool: this.#pool, queue: this.#pipeline > 1 };
      const fetchBatch = this.#c.fetchChunks ?? fetchChunks;
      for await (const got of fetchBatch(this.#c.node, addr, hashes, opts)) {
        const i = indices[k++];
        pending.delete(i);
        last = performance.now();
        if (Number.isNaN(first)) first = last;
        if (got.status === 'ok' && got.data) {
          this.#flow.batchBytes += got.data.length;
          this.#flow.batchChunks++;
        }
        if (got.status === 'busy' && !refused) {
          refused = true;
          if (isSeeder) this.#flow.busySeeder++;
          else this.#flow.busyPeers++;
        }
        try {
          await this.#take(peerId, i, got, isSeeder);
        } finally {
          this.#pool.release(got.data);
        }
        // Pipelining: an arrival before the batch's last frees budget at this peer, so its next batch may be asked
        // now, while the rest of this one arrives (the batch's end pokes anyway).
        if (this.#pipeline > 1 && k < indices.length) this.#poke('arrival');
      }
    } catch (e) {
      // A corrupt body is the next chunk in order; the rest of the batch just did not arrive.
      const corrupt = isRswError(e) && e.code === 'RSW_ERR_CHUNK_CORRUPT';
      let first = true;
      for (const i of pending) {
        this.#scheduler.failed(peerId, i, corrupt && first ? 'corrupt' : 'error', this.#now());
        first = false;
      }
      if (isRswError(e) && (e.code === 'RSW_ERR_DISK_FULL' || e.code === 'RSW_ERR_DATA_UNWRITABLE'))
        this.#failure ??= e;
    } finally {
      if (!Number.isNaN(first)) {
        this.#flow.batchWaitMs += first - asked;
        this.#flow.batchXferMs += last - first;
      }
    }
  }

  /** One answer from a peer: written to every place its chunk occurs, then recorded (in the background). */
  async #take(peerId: string, i: number, got: FetchedChunk, isSeeder: boolean): Promise<void> {
    const m = this.#init.manifest;
    if (got.status !== 'ok' || !got.data) {
      this.#scheduler.failed(peerId, i, got.status === 'not-found' ? 'not-found' : 'busy', this.#now());
      return;
    }
    if (this.#verified.has(i)) {
      this.#scheduler.received(peerId, i, this.#now()); // an endgame copy that lost the race
      return;
    }
    await this.#c.writer.write(m.chunks[i].offset, got.data);
    this.#scheduler.received(peerId, i, this.#now());
    for (const j of this.#index.get(got.hash) ?? [i]) {
      if (j !== i && !this.#verified.has(j)) {
        await this.#c.writer.write(m.chunks[j].offset, got.data);
        this.#scheduler.received(peerId, j, this.#now());
      }
      this.#markVerified(j);
    }
    this.#init.onStep?.('firstChunk');
    if (isSeeder) this.#fromSeeder += got.data.length;
    else this.#fromPeers += got.data.length;
    this.#maybeSync();
  }

  #markVerified(i: number): void {
    if (this.#verified.has(i)) return;
    this.#verified.add(i);
    this.#unsynced.push(i);
    this.#exchange.announce([i]);
  }

  /**
   * Records the chunks written so far, when enough have piled up: data first (fdatasync), then the record, so a chunk
   * is only ever recorded once it is durably in the target. It runs in the background — an fsync of tens of MiB takes
   * tens of ms that receiving must not wait for — one at a time; a failure (EIO, disk full) fails the fetch.
   */
  #maybeSync(): void {
    if (this.#syncing || this.#unsynced.length === 0) return;
    if (this.#unsynced.length < SYNC_EVERY_CHUNKS && this.#now() - this.#lastSync < SYNC_EVERY_MS) return;
    this.#syncing = this.#syncBatch()
      .catch((e) => {
        this.#failure ??= e;
        this.#poke('syncFailed');
      })
      .finally(() => {
        this.#syncing = undefined;
      });
  }

  async #syncBatch(): Promise<void> {
    const batch = this.#unsynced;
    this.#unsynced = [];
    this.#lastSync = this.#now();
    await this.#c.writer.sync();
    await this.#c.resume.markVerified(batch);
  }

  /** Waits for the background record update, then records the rest (throws what either met). */
  async #syncAll(): Promise<void> {
    await this.#syncing;
    if (this.#failure) throw this.#failure;
    if (this.#unsynced.length > 0) await this.#syncBatch();
  }

  /** Re-reads every chunk from the target and checks it; the next chunk is read while this one is hashed. */
  async #verifyAll(): Promise<void> {
    const chunks = this.#init.manifest.chunks;
    const readAt = async (k: number): Promise<Buffer> => {
      const buf = this.#pool.acquire(chunks[k].length);
      await this.#c.writer.readInto(buf, chunks[k].offset);
      return buf;
    };
    let next = chunks.length > 0 ? readAt(0) : undefined;
    for (let k = 0; next; k++) {
      const data = await next;
      next = k + 1 < chunks.length ? readAt(k + 1) : undefined;
      const ok = hashHex(data) === chunks[k].hash;
      this.#pool.release(data);
      if (!ok) {
        await next?.then((b) => this.#pool.release(b)).catch(() => {});
        throw new RswError(
          'RSW_ERR_CHUNK_CORRUPT',
          `the written image does not match chunk at ${chunks[k].offset}: storage error?`,
        );
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
