/*
 * DEV DOCS — the swarm simulator (issue 5): a deterministic discrete-event simulation of one image going from the
 * head to N nodes in racks, driving the very code the real peer and tracker run, imported:
 *   - each node's Scheduler (peer/scheduler.ts) decides what to ask which neighbour for, exactly as peer/fetcher.ts
 *     drives it: up to `pipelineBatches` batches (next()) per peer at a time (to the head one, with racks) — a second
 *     one asked when next() has room for it, queued at the server behind the one in progress from there, as on a
 *     bulk connection (peer/bulk-client.ts) —, received()/failed() per chunk, overdue() cancellations, a poke on
 *     every event (with pipelining, on every arrival before a batch's last too) and a 200 ms ticker;
 *   - the tracker's handout (tracker/handout-policy.ts HandoutPool, filed as peers announce, k = 30) decides who
 *     meets whom; a node that is handed a peer opens the have exchange with it, and the peer adds it back (up to 64
 *     neighbours, as peer/have-exchange.ts refuses past that);
 *   - serving follows seeder/chunk-server.ts: one stream per batch, its chunks sent in order, and a stream past the
 *     server's limit (32 on the head, 8 on a node: core/config.ts defaults) answered `busy` for every chunk.
 * What it models instead of running: the network (flows over links with max-min fair rates, network.ts), one-way
 * latency, and nothing of the CPU (no hashing or disk time). Randomness is one seeded generator, so a run repeats
 * exactly. Everything is in seconds here; the scheduler's clock is given ms.
 */
import { loadConfig } from '../../core/config.ts';
import {
  type PeerHandle,
  SCHEDULER_DEFAULTS,
  Scheduler,
  type SchedulerTunables,
} from '../../peer/scheduler.ts';
import { rotationStart } from '../../peer/source-order.ts';
import { configuredHeadServing, HeadServing } from '../../seeder/head-serving.ts';
import { RackReserve } from '../../seeder/rack-reserve.ts';
import { RackSpread } from '../../seeder/rack-spread.ts';
import { nodeTurnover, type ServeTurnover } from '../../seeder/serve-turnover.ts';
import { SuperSeeding } from '../../seeder/super-seeding.ts';
import {
  HANDOUT_DEFAULTS,
  type HandoutCandidate,
  HandoutPool,
  PoolMember,
} from '../../tracker/handout-policy.ts';
import {
  allocate,
  attach,
  detach,
  type Flow,
  type Link,
  newLink,
  provisionalRate,
  reallocate,
} from './network.ts';

export interface SimOptions {
  nodes: number;
  racks: number;
  /** Image size, bytes. */
  imageBytes: number;
  /** Chunk size, bytes (all chunks this size, the last one shorter). */
  chunkBytes: number;
  /** Node links, bytes/s each way. */
  nodeRate: number;
  /** Head link, bytes/s each way. */
  headRate: number;
  /** Each rack's link to the spine, bytes/s each way (only with racks > 1). */
  spineRate: number;
  /** One-way latency, s. @default 0.0001 */
  latency?: number;
  /** Each node starts at a uniform random time in [0, startupSpread] s (a testbed's start-up). @default 0 */
  startupSpread?: number;
  /** Fixed start-up delay of every node, s (the testbed's release → first request). @default 0 */
  startup?: number;
  seed: number;
  /** Rates are re-allocated at most this often, s; 0: at every change. @default 0 */
  quantum?: number;
  /** Pokes of one node within this many seconds run its fetch loop once. @default 0.001 */
  pokeCoalesce?: number;
  /** Max-min allocation after a change: of every flow, or around the changed links (network.ts). @default 'full' */
  allocation?: 'full' | 'incremental';
  scheduler?: Partial<SchedulerTunables>;
  /** Streams the head serves at once. @default config seeder.maxConcurrentTotal */
  headStreams?: number;
  /** Chunks the head sends at once (seeder/head-serving.ts); 0: every stream at once. @default config seeder.sendsAtOnce */
  headSendsAtOnce?: number;
  /** seeder/head-serving.ts rampEvery. @default config seeder.sendRampEvery */
  headRampEvery?: number;
  /** New streams waiting for the head's turns (seeder/head-serving.ts). @default config seeder.maxConcurrentTotal */
  headMaxWaiting?: number;
  /**
   * Experiment: nodes send chunk by chunk too (seeder/head-serving.ts); 16 nodes, head at 1: 1 at once with 1, 3 or 8
   * waiting 2.07, 2.22, 2.49 × T_min, 2 with 2 waiting 1.74 ×. @default 0 (off)
   */
  nodeSendsAtOnce?: number;
  /** New streams waiting for a node's turns. @default 0 */
  nodeMaxWaiting?: number;
  /** Streams a node serves at once. @default config peer.maxServeStreams */
  nodeStreams?: number;
  /** Batches a node has in flight to one peer (peer/fetcher.ts). @default config peer.pipelineBatches */
  pipelineBatches?: number;
  /** Experiment: false links a small rack's gateways as before session 14 (HandoutPool.earlyGateways). @default true */
  earlyGateways?: boolean;
  /** Gateways per rack (tracker/handout-policy.ts rule 5). @default HANDOUT_DEFAULTS.gateways */
  gateways?: number;
  /** And one per this many members of a rack (rule 5; Infinity: off). @default HANDOUT_DEFAULTS.gatewayEvery */
  gatewayEvery?: number;
  /** Peers per handout. @default config tracker.handoutSize */
  handoutSize?: number;
  /** Seconds between announces. @default config tracker.announceIntervalSeconds */
  announceInterval?: number;
  /** The head's super-seeding delay (seeder/super-seeding.ts), ms; 0: off. @default config seeder.reserveAfterMs */
  reserveAfterMs?: number;
  /** Each node's rack reserve (seeder/rack-reserve.ts), ms; 0: off. @default config peer.rackReserveMs */
  rackReserveMs?: number;
  /** The head's streams spread over the racks (seeder/rack-spread.ts windowMs); 0: off. @default config seeder.rackSpreadWindowMs */
  headRackSpreadWindowMs?: number;
  /** Experiment: false gives the uneven slots first come (seeder/rack-spread.ts `rotate`). @default true */
  headRackRotate?: boolean;
  /**
   * Experiment, node super-seeding: a node tells revealFirst neighbours (that lack it) about a chunk it verified, one
   * more per revealStep sends of it completed, the rest after revealAllAfter. Worse here: 1,000 nodes (seed 1) 2.64 ×
   * (1, 1, 0.3 s) and 2.52 × (2, 2, 0.3 s) against 2.43 ×; 16 nodes 1.45–1.50 × (1, 2, 2 s) against 1.36–1.39 ×.
   * @default 0 (off: every neighbour at once)
   */
  revealFirst?: number;
  /** Experiment: neighbours told per send of the chunk completed. @default 1 */
  revealStep?: number;
  /** Experiment: the rest are told this long after, s. @default 0.5 */
  revealAllAfter?: number;
  /**
   * Experiment: how a node shares its uplink among the chunks it sends — 'fair' (max-min, as TCP flows share a
   * link: what the chunk server does) or 'priority' (strict priority in the order the streams were admitted: not
   * what the chunk server does). @default 'fair'
   */
  uploadOrder?: 'fair' | 'priority';
  /** Experiment: the head's uploads in strict priority too (uploadOrder 'priority'). @default false */
  headPriority?: boolean;
  /** The fetch loop wakes at the end of the first back-off (Scheduler.wakeAt), as peer/fetcher.ts does. @default true */
  wakeOnBackoff?: boolean;
  /** A node's serving turnover (seeder/serve-turnover.ts), ms; 0: off. @default config peer.serveTurnoverMs */
  serveTurnoverMs?: number;
  /** Give up (throw) past this simulated time, s. @default unlimited */
  maxSimSeconds?: number;
  onProgress?: (p: Record<string, number>) => void;
}

export interface SimResult {
  /** Completion time per node, s, sorted. */
  perNode: number[];
  tLast: number;
  /** Bytes the head sent (chunk payload, duplicates included). */
  headEgressBytes: number;
  /** When the head's last chunk arrived, s. */
  headLastAt: number;
  /** Bytes that crossed from the spine into a rack (the head's included). */
  crossRackBytes: number;
  /** Bytes delivered in total, and how many of those were duplicates (endgame copies, late arrivals). */
  deliveredBytes: number;
  duplicateBytes: number;
  events: number;
  wallSeconds: number;
  /** CPU time of the run (user + system), s: what the machine's load does not inflate. */
  cpuSeconds: number;
}

/** Uniform in [0, 1), seeded (mulberry32): the only randomness in a run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Host {
  id: string;
  index: number;
  /** -1: the head (on the spine when racks > 1). */
  rack: number;
  up: Link;
  down: Link;
  serving: number;
  maxServing: number;
  /** Experiment `uploadOrder: 'priority'`: its flows on the wire, in the order they were admitted. */
  sending: Set<Batch>;
  /** A node's serving turnover (seeder/serve-turnover.ts), when on. */
  turnover?: ServeTurnover;
}

interface SimNode extends Host {
  scheduler: Scheduler;
  /** Neighbours (peer ids) this node fetches from, the head included. */
  peers: Set<string>;
  /** Neighbours with batches in progress, and how many (the fetcher's workers). */
  workers: Map<string, number>;
  /** Per server: the batch from it being served now, at the server (a pipelined one waits behind it). */
  servingFrom: Map<string, Batch>;
  /** Neighbours in the have exchange (not the head). */
  exchange: Set<SimNode>;
  /** The same, as a list in the same order (the exchange only grows). */
  exchangeList: SimNode[];
  /** Per place in exchangeList: this node's entry in that neighbour's scheduler, once it has one (tellHave). */
  exchangeHandles: Array<PeerHandle | undefined>;
  /** Per place in exchangeList: that neighbour's index (its row in `held`, read without touching the neighbour). */
  exchangeRows: number[];
  /** Per place in exchangeList: that neighbour's scheduler (the same: not through the neighbour). */
  exchangeSchedulers: Scheduler[];
  /** Those of them in its rack, in the same order (the exchange only grows, so a prefix of it never changes). */
  rackMates: SimNode[];
  /** Per place in rackMates: this node's entry in that rack-mate's scheduler, once it has one (tellImporting). */
  rackMateHandles: Array<PeerHandle | undefined>;
  /** Per place in rackMates: that rack-mate's row in `held`. */
  rackMateRows: number[];
  have: Uint8Array;
  haveCount: number;
  started: boolean;
  doneAt: number;
  pokeQueued: boolean;
  /** The pending wake-up at a back-off's end (wakeOnBackoff), s; +Infinity: none. */
  wakeAt: number;
  member: PoolMember<Candidate>;
}

interface Candidate extends HandoutCandidate {
  node: SimNode;
}

interface Batch extends Flow {
  from: Host;
  to: SimNode;
  indices: number[];
  /** The sender's entry in the receiver's scheduler (peerHandle): its arrivals are told by it. */
  handle: PeerHandle;
  /** Position in indices of the chunk on the wire. */
  at: number;
  /** Bytes left of that chunk. */
  left: number;
  /** Time `left` and `rate` were last brought up to date. */
  since: number;
  /** Experiment (strict priority): the sender's uplink as this flow's own link. */
  own?: Link;
  /** Its rate before the allocation in progress, and that allocation's number once re-timed. */
  was: number;
  seen: number;
  version: number;
  cross: boolean;
  /** A request that reached the server while this batch was being served there: it starts when this one ends. */
  queued?: () => void;
}

type Event = { t: number; seq: number; run: () => void };

/** Pokes of one node within this many seconds run its loop once (see poke). */
const POKE_COALESCE = 0.001;

/** Rounds of the strict-priority allocation (uploadOrder 'priority'). */
const PRIORITY_ROUNDS = 3;

/** Relative rate change below which a flow keeps its end event (see reallocate). */
const RATE_SLACK = 0.02;

export function simulate(o: SimOptions): SimResult {
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  const random = seededRandom(o.seed);
  const latency = o.latency ?? 0.0001;
  const quantum = o.quantum ?? 0;
  const pokeCoalesce = o.pokeCoalesce ?? POKE_COALESCE;
  const config = loadConfig();
  const k = o.handoutSize ?? config.tracker.handoutSize;
  const announceInterval = o.announceInterval ?? config.tracker.announceIntervalSeconds;
  const reserveAfterMs = o.reserveAfterMs ?? config.seeder.reserveAfterMs;
  const superSeeding = reserveAfterMs > 0 ? new SuperSeeding({ reserveAfterMs }) : undefined;
  // Each node's serving policy into other racks (seeder/rack-reserve.ts), as a node started with --rack has.
  const rackReserveMs = o.rackReserveMs ?? config.peer.rackReserveMs;
  const rackReserves = new Map<Host, RackReserve>();
  const rackReserveOf = (h: Host): RackReserve | undefined => {
    if (o.racks < 2 || rackReserveMs <= 0 || h === head) return undefined;
    let r = rackReserves.get(h);
    if (!r) {
      r = new RackReserve({
        reserveAfterMs: rackReserveMs,
        rack: String(h.rack),
        rackOf: (peerId) => {
          const p = byId.get(peerId);
          return p === undefined ? undefined : String(p.rack);
        },
      });
      rackReserves.set(h, r);
    }
    return r;
  };
  // The head's streams spread over the racks (seeder/rack-spread.ts), as cli/head-node.ts composes it: an asker's
  // rack is the one it announced (the tracker's record); without racks every node is in none.
  const rackSpreadMs = o.headRackSpreadWindowMs ?? config.seeder.rackSpreadWindowMs;
  const rackSpread =
    o.racks > 1 && rackSpreadMs > 0
      ? new RackSpread({
          slots: o.headStreams ?? config.seeder.maxConcurrentTotal,
          windowMs: rackSpreadMs,
          rotate: o.headRackRotate,
          rackOf: (peerId) => {
            const p = byId.get(peerId);
            return p === undefined ? undefined : String(p.rack);
          },
        })
      : undefined;
  /** The rack each node's stream from the head counts in (RackSpread.started; racks > 1: one stream at a time). */
  const spreadRacks = new Map<string, string | undefined>();
  const headSendsAtOnce = o.headSendsAtOnce ?? config.seeder.sendsAtOnce;
  const nodeTurns = new Map<Host, HeadServing<Batch>>();
  const turnsOf = (h: Host): HeadServing<Batch> | undefined => {
    if (h.index < 0) return headServing;
    if (!o.nodeSendsAtOnce) return undefined;
    let g = nodeTurns.get(h);
    if (!g) {
      g = new HeadServing<Batch>({ sendsAtOnce: o.nodeSendsAtOnce, maxWaiting: o.nodeMaxWaiting });
      nodeTurns.set(h, g);
    }
    return g;
  };
  const headServing = configuredHeadServing<Batch>({
    sendsAtOnce: headSendsAtOnce,
    maxConcurrentTotal: o.headMaxWaiting ?? config.seeder.maxConcurrentTotal,
    sendRampEvery: o.headRampEvery ?? config.seeder.sendRampEvery,
  });
  const chunkLengths: number[] = [];
  for (let off = 0; off < o.imageBytes; off += o.chunkBytes)
    chunkLengths.push(Math.min(o.chunkBytes, o.imageBytes - off));
  const nChunks = chunkLengths.length;
  // The real node's defaults: the scheduler's own, with the config's cap on sources (cli/fetch-image.ts), then --sched.
  const tunables = {
    ...SCHEDULER_DEFAULTS,
    ...(config.peer.maxSources ? { maxSources: config.peer.maxSources } : {}),
    ...(config.peer.paceBehindShare ? { behindShare: config.peer.paceBehindShare } : {}),
    ...o.scheduler,
  };

  // A node's serving turnover (seeder/serve-turnover.ts, as cli/fetch-image.ts composes it) and the fetcher's wake-up
  // at a back-off's end (Scheduler.wakeAt); `--serve-turnover MS` and `--wake 0` set them for an experiment.
  const turnoverMs = o.serveTurnoverMs ?? config.peer.serveTurnoverMs;
  const wakeOnBackoff = o.wakeOnBackoff ?? true;
  const pipeline = Math.max(1, o.pipelineBatches ?? config.peer.pipelineBatches);
  /** n may ask `id` for another batch (the fetcher's startWorker: fewer than pipelineBatches in progress). */
  // (to the head one at a time when in racks, as the fetcher does with --rack)
  const headPipeline = o.racks > 1 ? 1 : pipeline;
  const mayAsk = (n: SimNode, id: string): boolean =>
    (n.workers.get(id) ?? 0) < (id === head.id ? headPipeline : pipeline);
  const workerEnded = (n: SimNode, id: string): void => {
    const left = (n.workers.get(id) ?? 1) - 1;
    if (left > 0) n.workers.set(id, left);
    else n.workers.delete(id);
  };

  // --- time and events
  let now = 0;
  let events = 0;
  const queue = new EventQueue();
  const at = (t: number, run: () => void): void => queue.push(t, run);
  // Most events come one latency, one poke coalescing or one tick after `now`: each such delay has a lane (a FIFO,
  // in time order as `now` only grows) instead of the heap, which was most of an event's own cost.
  const afterLatency = queue.lane(latency);
  const afterPoke = queue.lane(pokeCoalesce);
  const afterTick = queue.lane(0.2);

  // --- topology
  const links: Link[] = [];
  /** Per link (by its place in `links`): the flows on it that are on no link before it (see allocateRates). */
  const firsts: Set<Batch>[] = [];
  const linkAt = new Map<Link, number>();
  const link = (cap: number): Link => {
    const l = newLink(cap);
    linkAt.set(l, links.length);
    links.push(l);
    firsts.push(new Set());
    return l;
  };
  const rackUp: Link[] = [];
  const rackDown: Link[] = [];
  if (o.racks > 1) {
    for (let r = 0; r < o.racks; r++) {
      rackUp.push(link(o.spineRate));
      rackDown.push(link(o.spineRate));
    }
  }
  const head: Host = {
    id: 'head',
    index: -1,
    rack: o.racks > 1 ? -1 : 0,
    up: link(o.headRate),
    down: link(o.headRate),
    serving: 0,
    maxServing: o.headStreams ?? config.seeder.maxConcurrentTotal,
    sending: new Set(),
  };
  const pool = new HandoutPool<Candidate>(
    HANDOUT_DEFAULTS.tiers,
    o.gateways ?? HANDOUT_DEFAULTS.gateways,
    o.gatewayEvery ?? HANDOUT_DEFAULTS.gatewayEvery,
  );
  if (o.earlyGateways === false) pool.earlyGateways = false;
  const nodes: SimNode[] = [];
  /** Every node's `have`, in one array (node × chunk): the have increments' loop reads it for ~60 nodes a chunk. */
  const held = new Uint8Array(o.nodes * nChunks);
  const byId = new Map<string, Host>([[head.id, head]]);
  for (let i = 0; i < o.nodes; i++) {
    const id = `n${i}`;
    const n: SimNode = {
      id,
      index: i,
      rack: Math.floor((i * o.racks) / o.nodes),
      up: link(o.nodeRate),
      down: link(o.nodeRate),
      serving: 0,
      maxServing: o.nodeStreams ?? config.peer.maxServeStreams,
      sending: new Set(),
      turnover: nodeTurnover(turnoverMs),
      scheduler: new Scheduler({ chunkLengths, random, seederId: head.id, ...tunables }),
      peers: new Set(),
      workers: new Map(),
      servingFrom: new Map(),
      exchange: new Set(),
      exchangeList: [],
      exchangeHandles: [],
      exchangeRows: [],
      exchangeSchedulers: [],
      rackMates: [],
      rackMateHandles: [],
      rackMateRows: [],
      have: new Uint8Array(nChunks),
      haveCount: 0,
      started: false,
      doneAt: Number.NaN,
      pokeQueued: false,
      wakeAt: Number.POSITIVE_INFINITY,
      member: undefined as unknown as PoolMember<Candidate>,
    };
    n.member = new PoolMember<Candidate>({ peerId: id, rack: `r${n.rack}`, progress: 0, addrs: [], node: n });
    nodes.push(n);
    byId.set(id, n);
  }
  const ms = () => now * 1000;
  const uploadOrder = o.uploadOrder ?? 'fair';
  const prioritised = (h: Host): boolean =>
    uploadOrder === 'priority' && (h.index >= 0 || o.headPriority === true);
  const senders: Host[] = [head, ...nodes];

  // --- flows
  const flows = new Set<Batch>();
  /** Links whose set of flows changed since the last allocation. */
  const dirty = new Set<Link>();
  let allocMs = 0;
  let allocs = 0;
  let allocatedAt = Number.NEGATIVE_INFINITY;
  let allocQueued = false;
  let headEgress = 0;
  let headLastAt = 0;
  let busyCount = 0;
  /** Batches asked for, and chunks delivered (SIM_SAMPLE's last line). */
  let asked = 0;
  let deliveredChunks = 0;
  let crossRack = 0;
  /** Per rack: chunks that came in from the head, and from other racks (SIM_SAMPLE_SPREAD). */
  const headInto = new Array<number>(o.racks).fill(0);
  const importedInto = new Array<number>(o.racks).fill(0);
  let delivered = 0;
  let duplicate = 0;

  const progress = (b: Batch): void => {
    b.left -= b.rate * (now - b.since);
    b.since = now;
  };
  const scheduleChunkEnd = (b: Batch): void => {
    const v = ++b.version;
    const t = now + Math.max(0, b.left) / b.rate;
    at(t, () => {
      if (b.version === v) chunkArrived(b);
    });
  };
  const allocateRates = (): void => {
    allocQueued = false;
    if (dirty.size === 0) return;
    allocatedAt = now;
    const a0 = performance.now();
    // 'incremental' re-fills only the flows around the changed links (network.ts); in this mesh a change ripples
    // through most flows (every node's down link is saturated), so it cost more than the global filling at 1,000
    // nodes (29.8 s CPU against 26.6 s): 'full' is the default.
    // Only flows whose rate moved by more than RATE_SLACK get a new end event: re-timing every flow on every
    // allocation filled the queue with stale events (most of a 1,000-node run's time). A flow whose end event fires
    // early is re-timed then (chunkArrived), one that fires late is off by at most RATE_SLACK of that chunk's time.
    if (o.allocation !== 'incremental') {
      // the full filling, straight over the flows (no lists of them: a 10,000-node run allocates 75,000 flows
      // every 10 ms of simulated time)
      for (const b of flows) {
        b.left -= b.rate * (now - b.since);
        b.since = now;
        b.was = b.rate;
      }
      if (uploadOrder === 'priority') allocatePriority();
      else allocate(links);
      // new end events in the order reallocate() lists the flows (the changed links' first, then link by link):
      // events at the same time run in the order they were queued
      const seen = ++allocs;
      const retime = (b: Batch): void => {
        if (b.seen === seen) return;
        b.seen = seen;
        if (Math.abs(b.rate - b.was) > RATE_SLACK * b.was) scheduleChunkEnd(b);
      };
      for (const l of dirty) for (const f of l.flows) retime(f as Batch);
      // (link by link, each flow at the first link of its path: its place in that link's flows, which are in the
      // order they were attached, as its place among that link's firsts)
      for (const first of firsts) if (first.size > 0) for (const b of first) retime(b);
      dirty.clear();
      allocMs += performance.now() - a0;
      return;
    }
    const moved = reallocate(dirty, links, flows.size);
    dirty.clear();
    allocMs += performance.now() - a0;
    allocs++;
    for (let k = 0; k < moved.flows.length; k++) {
      const b = moved.flows[k] as Batch;
      const was = moved.previous[k];
      b.left -= was * (now - b.since);
      b.since = now;
      if (Math.abs(b.rate - was) > RATE_SLACK * was) scheduleChunkEnd(b);
    }
  };
  /**
   * Experiment: strict priority among a sender's uploads — the first admitted takes all of the uplink it can use,
   * each later one what those before it leave — and max-min fair sharing on every other link (receivers' downlinks,
   * rack links). A fixed point, found by a few rounds from the last rates: each round gives every flow its own link
   * of the capacity the flows before it leave (at their rates of the round before) and fills; a last pass cuts a
   * flow down to what is left of its uplink where the rounds have not settled.
   */
  const allocatePriority = (): void => {
    const all: Link[] = [...links];
    for (const b of flows) if (b.own) all.push(b.own);
    for (let round = 0; round < PRIORITY_ROUNDS; round++) {
      for (const h of senders) {
        let used = 0;
        for (const b of h.sending) {
          (b.own as Link).cap = Math.max(0, h.up.cap - used);
          used += b.rate;
        }
      }
      allocate(all);
    }
    for (const h of senders) {
      let used = 0;
      for (const b of h.sending) {
        b.rate = Math.min(b.rate, Math.max(0, h.up.cap - used));
        used += b.rate;
      }
    }
  };
  /** The firsts of the first of b's links in `links` (a flow's own link in priority mode is in none). */
  const firstOf = (b: Batch): Set<Batch> => {
    let k = Number.POSITIVE_INFINITY;
    for (const l of b.links) k = Math.min(k, linkAt.get(l) ?? Number.POSITIVE_INFINITY);
    return firsts[k];
  };
  const changed = (b: Batch): void => {
    for (const l of b.links) dirty.add(l);
    if (allocQueued) return;
    allocQueued = true;
    at(Math.max(now, allocatedAt + quantum), allocateRates);
  };

  const startBatch = (from: Host, to: SimNode, indices: number[], handle: PeerHandle): void => {
    const cross = o.racks > 1 && from.rack !== to.rack;
    // Experiment (strict priority): the sender's uplink is a link of the flow's own, of the capacity the flows
    // admitted before it leave (allocatePriority).
    const own = prioritised(from) ? newLink(from.up.cap) : undefined;
    const path = [own ?? from.up];
    if (cross && from.rack >= 0) path.push(rackUp[from.rack]);
    if (cross) path.push(rackDown[to.rack]);
    path.push(to.down);
    const b: Batch = {
      links: path,
      own,
      rate: 0,
      from,
      to,
      indices,
      handle,
      at: 0,
      left: chunkLengths[indices[0]],
      since: now,
      was: 0,
      seen: 0,
      version: 0,
      cross,
    };
    to.servingFrom.set(from.id, b);
    const gate = turnsOf(from);
    if (gate) {
      if (gate.ask(b)) sendChunk(b);
    } else sendChunk(b);
  };
  /** Puts a batch's next chunk on the wire (the whole batch is one flow, except at a head sending chunk by chunk). */
  const sendChunk = (b: Batch): void => {
    b.since = now;
    flows.add(b);
    if (b.own) b.from.sending.add(b);
    attach(b);
    firstOf(b).add(b);
    b.rate = provisionalRate(b);
    scheduleChunkEnd(b);
    changed(b);
  };

  const chunkArrived = (b: Batch): void => {
    progress(b);
    if (b.left > 1) {
      scheduleChunkEnd(b); // its rate dropped since this event was timed
      return;
    }
    const i = b.indices[b.at];
    const bytes = chunkLengths[i];
    if (b.from === head) {
      headEgress += bytes;
      headLastAt = now;
    }
    if (b.cross) {
      crossRack += bytes;
      if (b.from === head) headInto[b.to.rack]++;
      else importedInto[b.to.rack]++;
    }
    delivered += bytes;
    deliveredChunks++;
    const n = b.to;
    n.scheduler.receivedAt(b.handle, i, ms());
    if (n.have[i]) duplicate += bytes;
    else verified(n, i);
    // (the fetcher pokes on an arrival before a batch's last when it pipelines: the budget it freed may take the next
    // batch now; the batch's end pokes anyway)
    if (pipeline > 1 && b.at < b.indices.length - 1) poke(n);
    if (revealFirst > 0 && b.from !== head) revealMore(b.from as SimNode, i, revealStep);
    b.at++;
    const turns = turnsOf(b.from);
    if (turns) {
      // seeder/head-serving.ts: the chunk's send ends, the next turn's begins; this batch queues again behind it
      flows.delete(b);
      b.from.sending.delete(b);
      detach(b);
      firstOf(b).delete(b);
      changed(b);
      b.version++;
      for (const next of turns.done()) sendChunk(next);
    }
    if (b.at < b.indices.length) {
      b.left = chunkLengths[b.indices[b.at]];
      if (!turns) scheduleChunkEnd(b);
      else if (turns.ask(b)) sendChunk(b);
    } else {
      if (!turns) {
        flows.delete(b);
        b.from.sending.delete(b);
        detach(b);
        firstOf(b).delete(b);
        changed(b);
      }
      b.from.serving--;
      b.from.turnover?.ended(n.id, ms());
      if (b.from === head && rackSpread !== undefined) rackSpread.ended(spreadRacks.get(n.id));
      if (n.servingFrom.get(b.from.id) === b) n.servingFrom.delete(b.from.id);
      // a request queued behind it on the connection is taken up now
      b.queued?.();
      // the response's end reaches the client one latency later; its worker then ends
      afterLatency(now, () => {
        workerEnded(n, b.from.id);
        poke(n);
      });
    }
    // No poke per chunk: the fetcher's loop wakes when a batch ends (its worker's finally), not per chunk, and an
    // arrival gives no other neighbour anything new to be asked for.
  };

  /** Experiment (node super-seeding): a fresh chunk's have goes to revealFirst neighbours, one more per send of it. */
  const revealFirst = o.revealFirst ?? 0;
  const revealAllAfter = o.revealAllAfter ?? 0.5;
  const revealStep = o.revealStep ?? 1;
  const reveals = new Map<number, SimNode[]>();
  const revealTo = (n: SimNode, i: number, peers: SimNode[]): void => {
    if (peers.length === 0) return;
    afterLatency(now, () => {
      const t = ms();
      for (const peer of peers) {
        // A neighbour that verified the chunk meanwhile is not told: a have for a chunk a scheduler holds changes
        // nothing it decides (only missing chunks are picked, counted and drawn for), and late in a run most are.
        if (held[peer.index * nChunks + i] === 1) continue;
        // (peerHaveOne: the increment, and whether next() may give anything — ask() would run next() for nothing)
        if (peer.scheduler.peerHaveOne(n.id, i, t) && peer.started && mayAsk(peer, n.id)) ask(peer, n.id);
      }
    });
  };
  /** n's have of chunk i, one latency on, to the neighbours at these places of its exchangeList, in this order. */
  const tellHave = (n: SimNode, i: number, order: number[]): void => {
    if (order.length === 0) return;
    const count = n.haveCount;
    afterLatency(now, () => {
      const t = ms();
      const list = n.exchangeList;
      const handles = n.exchangeHandles;
      const rows = n.exchangeRows;
      const schedulers = n.exchangeSchedulers;
      // A neighbour that verified the chunk meanwhile is not told: a have for a chunk a scheduler holds changes
      // nothing it decides (only missing chunks are picked, counted and drawn for), and late in a run most are.
      // Those left out first, in one pass (nothing below verifies a chunk): their `held` bytes are loaded together
      // instead of one memory wait between two neighbours' increments.
      let told = 0;
      for (let k = 0; k < order.length; k++) if (held[rows[order[k]] + i] !== 1) order[told++] = order[k];
      for (let k = 0; k < told; k++) {
        const at = order[k];
        const scheduler = schedulers[at];
        let h = handles[at];
        if (h === undefined) {
          // (not known to it yet: peerHave and next() would do nothing)
          h = scheduler.peerHandle(n.id);
          if (h === undefined) continue;
          handles[at] = h;
        }
        // (its count with the have: /rackswarm/have/1.2.0, for the scheduler's pace)
        scheduler.peerProgressAt(h, count);
        // (peerHaveAt: the increment, and whether next() may give anything — ask() would run next() for nothing)
        if (scheduler.peerHaveAt(h, i, t)) {
          const peer = list[at];
          if (peer.started && mayAsk(peer, n.id)) ask(peer, n.id, h);
        }
      }
    });
  };
  const revealMore = (n: SimNode, i: number, k: number): void => {
    const key = n.index * nChunks + i;
    const pending = reveals.get(key);
    if (pending === undefined) return;
    const next: SimNode[] = [];
    while (next.length < k && pending.length > 0) {
      const peer = pending.shift() as SimNode;
      if (!peer.have[i]) next.push(peer);
    }
    if (pending.length === 0) reveals.delete(key);
    revealTo(n, i, next);
  };

  const verified = (n: SimNode, i: number): void => {
    n.have[i] = 1;
    held[n.index * nChunks + i] = 1;
    n.haveCount++;
    // One event carries the have increment to every neighbour. A neighbour without a batch in progress from n asks
    // n at once (the fetcher's loop would, on the poke); its other neighbours are unchanged by it, so the full loop
    // (pump) is left to batch ends, busy answers and the 200 ms ticker — which keeps a big swarm affordable.
    // In a random order: over a real network the increments, and the requests they trigger, reach the neighbours
    // in no fixed order. In the order they met (a Set's), the first neighbours won every fresh chunk: at 1,000
    // nodes the 32 nodes the head served first passed chunks among themselves while ~950 held nothing for 0.5 s
    // (2.57 × T_min; shuffled 2.43 ×, cross-rack 2.73 → 1.45 × racks × F).
    if (revealFirst === 0) {
      // (the neighbours' places in exchangeList, shuffled: the same draws and order as shuffling the list itself)
      const order: number[] = new Array(n.exchangeList.length);
      for (let k = 0; k < order.length; k++) order[k] = k;
      shuffle(order, random);
      tellHave(n, i, order);
    } else {
      const exchange = n.exchangeList.slice();
      shuffle(exchange, random);
      const pending = exchange.filter((peer) => !peer.have[i]);
      const key = n.index * nChunks + i;
      reveals.set(key, pending);
      revealTo(n, i, pending.splice(0, revealFirst));
      at(now + revealAllAfter, () => {
        const rest = reveals.get(key);
        if (rest === undefined) return;
        reveals.delete(key);
        revealTo(n, i, rest);
      });
    }
    if (n.haveCount === nChunks) {
      n.doneAt = now;
      finished++;
      announce(n);
    }
  };

  // --- the fetcher's loop
  // The fetcher's loop runs once for all the pokes that came while it was waiting (core/wakeup.ts); here, for those
  // within POKE_COALESCE. A refused batch pokes its node (the busy storm after every fresh chunk: ~4 refusals per
  // chunk delivered at 300 nodes), and each loop asks every idle neighbour, so without it most of a large run went
  // to next() calls that returned nothing (97.5 % of 4 million at 300 nodes).
  const poke = (n: SimNode): void => {
    if (n.pokeQueued || !n.started || n.haveCount === nChunks) return;
    n.pokeQueued = true;
    afterPoke(now, () => {
      n.pokeQueued = false;
      pump(n);
    });
  };
  const pump = (n: SimNode): void => {
    if (n.haveCount === nChunks) return;
    // Only the neighbours the scheduler may offer something (Scheduler.askable: the others' next() would return
    // nothing before any work), from a random place in the order they were added: the fetcher's own walk
    // (peer/fetcher.ts, peer/source-order.ts); from the start, every node's few sources were the nodes it met first.
    const start = rotationStart(n.scheduler.peerCount, random);
    for (const id of n.scheduler.askable(ms(), start)) if (mayAsk(n, id)) ask(n, id);
    if (wakeOnBackoff) {
      // the fetcher's wake-up at the end of the first back-off (Scheduler.wakeAt), one pending per node
      const t = n.scheduler.wakeAt(ms()) / 1000 + 1e-6; // (past the back-off, whatever the rounding)
      if (t < n.wakeAt) {
        n.wakeAt = t;
        at(t, () => {
          if (n.wakeAt !== t) return;
          n.wakeAt = Number.POSITIVE_INFINITY;
          pump(n);
        });
      }
    }
  };
  /** Adds p to n's have exchange (and to its rack-mates, if it is one). */
  const exchangeWith = (n: SimNode, p: SimNode): void => {
    n.exchange.add(p);
    n.exchangeList.push(p);
    n.exchangeHandles.push(undefined);
    n.exchangeRows.push(p.index * nChunks);
    n.exchangeSchedulers.push(p.scheduler);
    if (p.rack === n.rack) {
      n.rackMates.push(p);
      n.rackMateHandles.push(undefined);
      n.rackMateRows.push(p.index * nChunks);
    }
  };
  /**
   * The fetcher's startWorker: one batch from peer `id`, if the scheduler has one for it (`handle`: id's entry in
   * n's scheduler, when the caller has it). (No isBanned() first: next() gives a banned peer nothing.)
   */
  const ask = (n: SimNode, id: string, handle?: PeerHandle): void => {
    const indices = handle === undefined ? n.scheduler.next(id, ms()) : n.scheduler.nextAt(handle, ms());
    if (indices.length === 0) return;
    // (it gave something: `id` is known to it)
    const h = handle ?? (n.scheduler.peerHandle(id) as PeerHandle);
    n.workers.set(id, (n.workers.get(id) ?? 0) + 1);
    asked++;
    const server = byId.get(id) as Host;
    const mates = server === head || server.rack !== n.rack ? n.rackMates.length : 0;
    if (mates > 0) tellImporting(n, mates, indices, true);
    afterLatency(now, () => {
      // pipelined: behind the batch from there still being served, it is taken up when that one ends
      const ahead = n.servingFrom.get(id);
      if (ahead !== undefined && ahead.queued === undefined) ahead.queued = arrive;
      else arrive();
    });
    const arrive = (): void => {
      // the head's super-seeding refuses repeats (busy for that chunk); a full server refuses the whole stream
      const turns = turnsOf(server);
      // (asked first, as seeder/chunk-server.ts does: an ask the head is too full for still marks its rack as asking)
      const spreadOk = server !== head || rackSpread === undefined || rackSpread.admits(n.id, ms());
      const full =
        !spreadOk ||
        server.serving >= server.maxServing ||
        (turns !== undefined && !turns.admits()) ||
        (server.turnover !== undefined && !server.turnover.admits(n.id, ms()));
      if (full) server.turnover?.refused(ms());
      // (as seeder/chunk-server.ts: the chunks before the first refusal are sent, the rest answered busy)
      let served = full ? 0 : indices.length;
      // (a node's rack reserve serves its own rack without a check: RackReserve.take is true and records nothing)
      const policy =
        server === head ? superSeeding : server.rack !== n.rack ? rackReserveOf(server) : undefined;
      if (!full && policy) {
        const t = ms();
        for (let j = 0; j < indices.length; j++) {
          if (policy.take(String(indices[j]), t, n.id)) continue;
          served = j;
          break;
        }
      }
      if (served < indices.length) {
        afterLatency(now, () => {
          // (indices has no repeats: the refused ones are those from `served` on)
          for (let j = served; j < indices.length; j++) n.scheduler.failedAt(h, indices[j], 'busy', ms());
          if (mates > 0) {
            const off: number[] = [];
            for (let j = served; j < indices.length; j++) if (!n.have[indices[j]]) off.push(indices[j]);
            tellImporting(n, mates, off, false);
          }
          busyCount++;
          if (served === 0) workerEnded(n, id);
          poke(n);
        });
      }
      if (served === 0) return;
      if (server === head && rackSpread !== undefined) spreadRacks.set(n.id, rackSpread.started(n.id, ms()));
      server.serving++;
      server.turnover?.started(n.id, ms());
      startBatch(server, n, served === indices.length ? indices : indices.slice(0, served), h);
    };
  };
  /**
   * From outside the rack (another rack, or the head): n's first `mates` rack-mates (the list only grows) hear of
   * the chunks it asks for (as peer/fetcher.ts tells them over the have exchange), and of what was refused; what
   * arrives they hear as haves.
   */
  const tellImporting = (n: SimNode, mates: number, is: number[], on: boolean): void => {
    if (is.length === 0) return;
    afterLatency(now, () => {
      for (let j = 0; j < mates; j++) {
        // a rack-mate holding all of them is not told (peer/have-exchange.ts): it could not want them
        const base = n.rackMateRows[j];
        let k = 0;
        while (k < is.length && held[base + is[k]] === 1) k++;
        if (k === is.length) continue;
        const m = n.rackMates[j];
        let h = n.rackMateHandles[j];
        if (h === undefined) {
          h = m.scheduler.peerHandle(n.id);
          if (h === undefined) continue; // (not known to it yet: rackMateImporting would do nothing)
          n.rackMateHandles[j] = h;
        }
        m.scheduler.rackMateImportingAt(h, is, on);
      }
    });
  };
  const tick = (n: SimNode): void => {
    if (n.haveCount === nChunks) return;
    for (const { peerId, index } of n.scheduler.overdue(ms()))
      n.scheduler.failed(peerId, index, 'timeout', ms());
    pump(n);
    afterTick(now, () => tick(n));
  };

  // --- tracker and have exchange
  const meet = (n: SimNode, p: SimNode): void => {
    if (n.peers.has(p.id) || p === n) return;
    if (p.exchange.size >= 64 && !p.exchange.has(n)) return; // refused: too many neighbours
    n.peers.add(p.id);
    exchangeWith(n, p);
    n.scheduler.addPeer(p.id, ms(), p.rack !== n.rack); // the handout says its rack (peer/fetcher.ts)
    afterLatency(now, () => {
      if (!p.peers.has(n.id)) {
        p.peers.add(n.id);
        exchangeWith(p, n);
        // reached us first: its rack comes in the have exchange's opening message (peer/have-exchange.ts)
        p.scheduler.addPeer(n.id, ms(), p.rack !== n.rack);
      }
      // bitfields both ways
      p.scheduler.peerHave(n.id, indicesOf(n.have));
      p.scheduler.peerProgress(n.id, n.haveCount); // (the bitfield's count, 1.2.0)
      poke(p);
      afterLatency(now, () => {
        n.scheduler.peerHave(p.id, indicesOf(p.have));
        n.scheduler.peerProgress(p.id, p.haveCount);
        poke(n);
      });
    });
  };
  const announce = (n: SimNode): void => {
    const m = n.member;
    m.value = { ...m.value, progress: n.haveCount / nChunks, addrs: ['/sim'] };
    pool.set(m);
    if (n.haveCount === nChunks) return;
    rackSpread?.asking(n.id, ms()); // (the head's tracker hears it still fetching)
    for (const c of pool.pick({ peerId: n.id, rack: m.value.rack, progress: m.value.progress }, k, random)) {
      meet(n, c.node);
    }
  };
  const announceLoop = (n: SimNode): void => {
    if (n.haveCount === nChunks) return;
    afterLatency(now, () => announce(n));
    at(now + announceInterval, () => announceLoop(n));
  };
  let finished = 0;

  // SIM_SAMPLE=1 (or =SEC): every 0.5 s (SEC s), the nodes' mean up- and downlink use, idle uplinks, holders (nodes
  // with a verified chunk) and chunks held, refusals so far and the head's turns on stderr (where the time goes).
  const deficit = new Map<string, number>();
  if (process.env.SIM_SAMPLE) {
    const sampleEvery = Number(process.env.SIM_SAMPLE === '1' ? 0.5 : process.env.SIM_SAMPLE);
    const sample = (): void => {
      let up = 0;
      let down = 0;
      let idleUp = 0;
      let holders = 0;
      let held = 0;
      for (const n of nodes) {
        if (n.haveCount > 0) holders++;
        held += n.haveCount;
        let u = 0;
        for (const f of n.up.flows) u += f.rate;
        for (const f of n.sending) u += f.rate; // strict priority: the flows have links of their own
        let d = 0;
        for (const f of n.down.flows) d += f.rate;
        up += u / n.up.cap;
        down += d / n.down.cap;
        if (u === 0) idleUp++;
      }
      let headUp = 0;
      for (const f of head.up.flows) headUp += f.rate;
      for (const f of head.sending) headUp += f.rate;
      // SIM_SAMPLE_TAIL=1: the unfinished nodes' downlink use, sources in flight, neighbours holding something they
      // lack (and of those, backed off), and finished neighbours (are the tail's sources the finished nodes?)
      let tail = '';
      if (process.env.SIM_SAMPLE_TAIL) {
        let k = 0;
        let td = 0;
        let src = 0;
        let wanting = 0;
        let doneNb = 0;
        let backedOff = 0;
        let idleNb = 0;
        let short = 0;
        let shortAskable = 0;
        for (const n of nodes) {
          if (!n.started || n.haveCount === nChunks) continue;
          k++;
          for (const f of n.down.flows) td += f.rate / n.down.cap;
          for (const q of n.scheduler.stats().perPeer) {
            if (q.inFlight > 0) src++;
            if (q.wanted > 0) wanting++;
          }
          const h = n.scheduler.holders(ms());
          if (n.scheduler.stats().perPeer.filter((q) => q.inFlight > 0).length < tunables.maxSources) {
            short++;
            for (const id of n.scheduler.askable(ms(), 0))
              if (mayAsk(n, id)) {
                shortAskable++;
                break;
              }
          }
          backedOff += h.backedOff;
          idleNb += h.idle;
          for (const q of n.exchangeList) if (q.haveCount === nChunks) doneNb++;
        }
        // Flows whose receiver's downlink is full while their sender's uplink has spare (held by the receiver, the
        // max-min share a sender's other flows cannot take back), and the nodes serving fewer streams than they may
        // with spare uplink (a serving slot and upload capacity nobody is using).
        let receiverHeld = 0;
        let flowsN = 0;
        let freeSlots = 0;
        const full = (l: Link): boolean => {
          let u = 0;
          for (const f of l.flows) u += f.rate;
          return u >= 0.99 * l.cap;
        };
        for (const b of flows) {
          flowsN++;
          if (b.from !== head && full(b.to.down) && !full(b.from.up)) receiverHeld++;
        }
        for (const n of nodes) if (n.haveCount > 0 && n.serving < n.maxServing && !full(n.up)) freeSlots++;
        if (k > 0)
          tail = ` | unfinished ${k}: down ${((td / k) * 100).toFixed(0)}% sources ${(src / k).toFixed(1)} holding-wanted ${(wanting / k).toFixed(1)} (backed-off ${(backedOff / k).toFixed(1)}, idle ${(idleNb / k).toFixed(1)}) finished-nbrs ${(doneNb / k).toFixed(1)} short ${short} (askable ${shortAskable}) | flows ${flowsN}, receiver-held ${receiverHeld}; holders with a free slot and spare uplink ${freeSlots}`;
      }
      // SIM_SAMPLE_SPREAD=1: the spread of the nodes' progress (chunks held: min, 10th, 50th, 90th percentile, max),
      // the downlink use of the tenth holding least against the tenth holding most (who is served), and their lead
      // over their neighbours as the scheduler estimates it from the counts they told (Scheduler.paceLead) against
      // their lead over the swarm's mean
      if (process.env.SIM_SAMPLE_SPREAD) {
        const by = nodes.filter((n) => n.started).sort((a, b) => a.haveCount - b.haveCount);
        const q = (f: number): number => by[Math.min(by.length - 1, Math.floor(f * by.length))].haveCount;
        const tenth = Math.max(1, Math.floor(by.length / 10));
        const downOf = (ns: SimNode[]): string => {
          let d = 0;
          let k = 0;
          for (const n of ns) {
            if (n.haveCount === nChunks) continue;
            k++;
            for (const f of n.down.flows) d += f.rate / n.down.cap;
          }
          return k === 0 ? '-' : `${((d / k) * 100).toFixed(0)}%`;
        };
        const g = held / nodes.length;
        const leads = (ns: SimNode[]): string => {
          let e = 0;
          let t = 0;
          for (const n of ns) {
            e += n.scheduler.paceLead() ?? 0;
            t += n.haveCount - g;
          }
          return `est ${(e / ns.length).toFixed(1)} true ${(t / ns.length).toFixed(1)}`;
        };
        const perRack = new Array(o.racks).fill(0);
        for (const n of nodes) perRack[n.rack] += n.haveCount / (nodes.length / o.racks);
        if (o.racks > 1) {
          console.error(`  held per rack ${perRack.map((x) => x.toFixed(1)).join(' / ')}`);
          // (chunks into each rack so far: from the head + from other racks; 10 racks at most shown)
          const shown = Math.min(o.racks, 10);
          const into: string[] = [];
          for (let r = 0; r < shown; r++) into.push(`${headInto[r]}+${importedInto[r]}`);
          console.error(`  into racks (head+other racks) ${into.join(' / ')}${o.racks > shown ? ' …' : ''}`);
        }
        if (by.length > 0)
          console.error(
            `  lead last tenth ${leads(by.slice(0, tenth))}, middle ${leads(by.slice(4 * tenth, 6 * tenth))}, first tenth ${leads(by.slice(-tenth))}`,
          );
        if (by.length > 0)
          console.error(
            `  spread t=${now.toFixed(2)}: held min/p10/p50/p90/max ${q(0)} / ${q(0.1)} / ${q(0.5)} / ${q(0.9)} / ${by[by.length - 1].haveCount}; down of the last tenth ${downOf(by.slice(0, tenth))}, of the first tenth ${downOf(by.slice(-tenth))}`,
          );
      }
      // SIM_SAMPLE_LAST=K: the K unfinished nodes holding least, one line each (why the last node is last)
      // SIM_SAMPLE_NODES=n1,n2: those nodes, one line each, from the start
      const lastK = Number(process.env.SIM_SAMPLE_LAST ?? 0);
      const traced = (process.env.SIM_SAMPLE_NODES ?? '').split(',').filter((id) => id !== '');
      if ((lastK > 0 && finished >= o.nodes * 0.5) || traced.length > 0) {
        const left = nodes.filter((n) => n.started && n.haveCount < nChunks);
        left.sort((a, b) => a.haveCount - b.haveCount);
        const shown = traced.length > 0 ? traced.map((id) => byId.get(id) as SimNode) : left.slice(0, lastK);
        for (const n of shown) {
          const st = n.scheduler.stats();
          const h = n.scheduler.holders(ms());
          const rates = [...n.down.flows].map(
            (f) =>
              `${(f as Batch).from.id}:${((f.rate / n.down.cap) * 100).toFixed(0)}%${(f as Batch).from.serving}`,
          );
          console.error(
            `  ${n.id} have ${n.haveCount} inflight ${st.inFlight} endgame ${st.endgame} sources ${st.perPeer.filter((q) => q.inFlight > 0).length} holding ${h.holding} backed-off ${h.backedOff} idle ${h.idle} flows ${rates.join(' ')}`,
          );
        }
      }
      // SIM_SAMPLE_DEFICIT=1: each unfinished node's unused downlink, summed over the samples in seconds of one
      // downlink and split by why: fewer than maxSources sources; a source in flight sending nothing to it (its batch
      // waits at the server: the head's turns, a queued batch); every source sending, their sum short of the link
      if (process.env.SIM_SAMPLE_DEFICIT) {
        for (const n of nodes) {
          if (!n.started || n.haveCount === nChunks) continue;
          let d = 0;
          const flowing = new Set<string>();
          for (const f of n.down.flows) {
            d += f.rate;
            flowing.add((f as Batch).from.id);
          }
          const lost = (1 - d / n.down.cap) * sampleEvery;
          const srcs = n.scheduler.stats().perPeer.filter((q) => q.inFlight > 0);
          const key =
            srcs.length < tunables.maxSources
              ? 'short'
              : srcs.some((q) => !flowing.has(q.peerId))
                ? srcs.some((q) => q.peerId === head.id && !flowing.has(q.peerId))
                  ? 'waitHead'
                  : 'waitNode'
                : 'slow';
          const phase =
            process.env.SIM_SAMPLE_DEFICIT === 'sec'
              ? `t${Math.floor(now)}`
              : headEgress < 0.99 * o.imageBytes
                ? 'headBusy'
                : 'after';
          deficit.set(`${phase}.${key}`, (deficit.get(`${phase}.${key}`) ?? 0) + lost);
        }
      }
      console.error(
        `t=${now.toFixed(1)} headUp ${((headUp / head.up.cap) * 100).toFixed(0)}% up ${((up / nodes.length) * 100).toFixed(0)}% down ${((down / nodes.length) * 100).toFixed(0)}% idleUp ${idleUp} holders ${holders} held ${held} busy ${busyCount} done ${finished} head ${headServing?.sending}/${headServing?.waiting} askers ${nodes.filter((n) => n.workers.has(head.id)).length} serving ${head.serving}${tail}`,
      );
      if (finished < o.nodes) at(now + sampleEvery, sample);
    };
    at(0.1, sample);
  }
  for (const n of nodes) {
    const t0 = (o.startup ?? 0) + random() * (o.startupSpread ?? 0);
    at(t0, () => {
      n.started = true;
      // (its first announce: the real fetcher's leaves before its first batch to the head, which first asks for a bulk
      // token and opens a TCP connection, ≥ 2 round trips; here the node's first batch leaves at once, so the head's
      // tracker hears of it at its start)
      rackSpread?.asking(n.id, ms());
      n.peers.add(head.id);
      n.scheduler.addPeer(head.id, ms());
      n.scheduler.peerHave(head.id, 'all');
      announceLoop(n);
      tick(n);
    });
  }

  const limit = o.maxSimSeconds ?? Number.POSITIVE_INFINITY;
  while (queue.length > 0 && finished < o.nodes && now <= limit) {
    const run = queue.pop();
    now = queue.t;
    events++;
    run();
    if (o.onProgress && (events & 0x3ffff) === 0)
      o.onProgress({
        now,
        finished,
        events,
        flows: flows.size,
        allocs,
        allocMs,
        queue: queue.length,
        cpu: ((c) => (c.user + c.system) / 1e6)(process.cpuUsage(cpu0)),
      });
  }
  if (process.env.SIM_SAMPLE)
    console.error(
      `batches asked ${asked}, refused ${busyCount} (${(busyCount / Math.max(1, deliveredChunks)).toFixed(2)} per chunk delivered), chunks delivered ${deliveredChunks}`,
    );
  if (process.env.SIM_SAMPLE_DEFICIT)
    console.error(
      `downlink unused, s of one downlink: ${[...deficit].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`,
    );
  if (finished < o.nodes)
    throw new Error(`simulation stalled: ${finished} of ${o.nodes} nodes done at ${now} s`);
  const perNode = nodes.map((n) => n.doneAt).sort((a, b) => a - b);
  return {
    perNode,
    tLast: perNode[perNode.length - 1],
    headEgressBytes: headEgress,
    headLastAt,
    crossRackBytes: crossRack,
    deliveredBytes: delivered,
    duplicateBytes: duplicate,
    events,
    wallSeconds: (performance.now() - wall0) / 1000,
    cpuSeconds: ((c) => (c.user + c.system) / 1e6)(process.cpuUsage(cpu0)),
  };
}

/** Fisher–Yates with the run's generator. */
function shuffle<T>(a: T[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

function indicesOf(have: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < have.length; i++) if (have[i]) out.push(i);
  return out;
}

function before(a: Event, b: Event): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}

/** A lane's events as parallel arrays (no object per event: most of a run's events go through the lanes). */
interface Lane {
  ts: number[];
  seqs: number[];
  runs: Array<() => void>;
  head: number;
}

/**
 * Events in (time, insertion) order: a binary heap, and lanes — FIFOs for events a fixed delay after the current
 * time, pushed in time order, so each is in order by itself. pop() takes the earliest of the heap's top and the
 * lanes' heads: the same order as one heap, at a fraction of its cost (a heap of 50,000 events is 16 levels of
 * comparisons per push and pop; a lane's push and pop are O(1)).
 */
class EventQueue {
  readonly #heap: Event[] = [];
  readonly #lanes: Lane[] = [];
  #seq = 0;
  #size = 0;
  /** The time of the event pop() returned last. */
  t = 0;

  get length(): number {
    return this.#size;
  }

  push(t: number, run: () => void): void {
    heapPush(this.#heap, { t, seq: this.#seq++, run });
    this.#size++;
  }

  /** A lane for events `delay` after a time that never decreases: the returned function queues one. */
  lane(delay: number): (now: number, run: () => void) => void {
    const lane: Lane = { ts: [], seqs: [], runs: [], head: 0 };
    this.#lanes.push(lane);
    return (now, run) => {
      const t = now + delay;
      const n = lane.ts.length;
      if (n > lane.head && t < lane.ts[n - 1])
        this.push(t, run); // out of order (never in a run: `now` only grows): the heap keeps it right
      else {
        lane.ts.push(t);
        lane.seqs.push(this.#seq++);
        lane.runs.push(run);
        this.#size++;
      }
    };
  }

  /** The earliest event's action; its time in `t`. */
  pop(): () => void {
    const top: Event | undefined = this.#heap[0];
    let t = top === undefined ? Number.POSITIVE_INFINITY : top.t;
    let seq = top === undefined ? Number.POSITIVE_INFINITY : top.seq;
    let from: Lane | undefined;
    for (let k = 0; k < this.#lanes.length; k++) {
      const lane = this.#lanes[k];
      const h = lane.head;
      if (h >= lane.ts.length) continue;
      const lt = lane.ts[h];
      if (lt < t || (lt === t && lane.seqs[h] < seq)) {
        t = lt;
        seq = lane.seqs[h];
        from = lane;
      }
    }
    if (from === undefined && top === undefined) throw new Error('pop() of an empty queue');
    this.#size--;
    this.t = t;
    if (from === undefined) return heapPop(this.#heap).run;
    const run = from.runs[from.head];
    from.head++;
    if (from.head === from.ts.length) {
      from.ts.length = 0;
      from.seqs.length = 0;
      from.runs.length = 0;
      from.head = 0;
    } else if (from.head > 4096 && from.head * 2 > from.ts.length) {
      from.ts.splice(0, from.head);
      from.seqs.splice(0, from.head);
      from.runs.splice(0, from.head);
      from.head = 0;
    }
    return run;
  }
}

function heapPush(h: Event[], e: Event): void {
  let i = h.length;
  h.push(e);
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!before(e, h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = e;
}

function heapPop(h: Event[]): Event {
  const top = h[0];
  const last = h.pop() as Event;
  const n = h.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const c = l + 1 < n && before(h[l + 1], h[l]) ? l + 1 : l;
      if (!before(h[c], last)) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
  }
  return top;
}
