import type { AvailabilityView } from './availability.ts';
import type { ImageRecord } from './registry.ts';
import { type ImageSwarmSummary, PEER_STAGES, type PeerRecord, type PeerStage } from './swarm-state.ts';
import type { HistoryView } from './throughput-history.ts';
import { tMinSeconds } from './wave.ts';

/**
 * What the dashboard (GET /, over GET /api/events) and `rackswarm status` show, built from the tracker's state in one
 * pass. Pure. Its size is bounded whatever the swarm: a row per node only while an image has at most `rows` nodes
 * (beyond that, the nodes that need attention first), a compact tile per node up to `tiles` in all, and per-rack
 * aggregates always.
 */

export interface SnapshotLimits {
  /** Node rows per image: all of them up to this, else the ones needing attention. @default 64 */
  rows?: number;
  /** Node tiles over all images; past it racks show aggregates only. @default 5000 */
  tiles?: number;
  /** Image versions listed (newest first). @default 100 */
  images?: number;
}

/** The part of SwarmState a snapshot reads. */
export interface SnapshotSwarm {
  images(): string[];
  summary(imageId: string): ImageSwarmSummary;
  peers(imageId: string): PeerRecord[];
  availability(imageId: string): AvailabilityView | undefined;
  isStuck(rec: PeerRecord): boolean;
}

export interface SnapshotSources {
  /** ms since the epoch, the head's clock (every node time in the snapshot is on it). */
  now: number;
  swarm: SnapshotSwarm;
  images: readonly ImageRecord[];
  /** The seeder's byte counter and current egress (bytes/s). */
  head: { bytesServed: number; egressRate: number };
  history: HistoryView;
  /** Link rates for T_min (wave.ts), bytes/s. */
  links: { headUplink: number; nodeLink: number };
}

export interface NodeRow {
  peerId: string;
  host: string | null;
  rack: string | null;
  stage: PeerStage;
  progress: number;
  bytesDone: number;
  downRate: number;
  upRate: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  /** ms, head clock. */
  lastSeen: number;
  stuck: boolean;
  error: string | null;
}

/** A node as a tile: [stage index in PEER_STAGES, progress in ‰, 1 if stuck, host or short peer id]. */
export type NodeTile = [number, number, 0 | 1, string];

export interface RackView {
  rack: string | null;
  nodes: number;
  byStage: Record<PeerStage, number>;
  stuck: number;
  meanProgress: number;
  downRate: number;
  upRate: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  /** One per node (ordered by host), or null when over the tile budget. */
  tiles: NodeTile[] | null;
}

export interface SwarmView {
  imageId: string;
  name: string | null;
  version: number | null;
  size: number | null;
  chunks: number | null;
  /** The same object GET /api/swarm returns for the image. */
  summary: ImageSwarmSummary;
  /** Bytes the nodes got from each other / all bytes they got (null before any byte). */
  offload: number | null;
  wave: {
    /** The earliest first announce among the current nodes (ms). */
    startedAt: number;
    /** When the last node completed, if every node has (ms). */
    completedAt: number | null;
    elapsedSeconds: number;
    /** Lower bound for this wave (wave.ts); null while the image size is unknown. */
    tMinSeconds: number | null;
  };
  availability: AvailabilityView | null;
  racks: RackView[];
  /** 'all': one row per node; 'attention': failed, then stuck, then the least advanced, up to the row limit. */
  rowsMode: 'all' | 'attention';
  rows: NodeRow[];
}

export interface DashboardSnapshot {
  time: number;
  head: { bytesServed: number; egressRate: number; offload: number | null };
  images: ImageRecord[];
  imagesOmitted: number;
  swarms: SwarmView[];
  /** Nodes drawn as tiles over every swarm, and those left out by the tile budget. */
  tilesOmitted: number;
  history: HistoryView;
}

const ROWS = 64;
const TILES = 5000;
const IMAGES = 100;
const STAGE_INDEX = new Map(PEER_STAGES.map((s, i) => [s, i]));
const ATTENTION: Record<PeerStage, number> = {
  failed: 0,
  announced: 2,
  fetching: 2,
  verifying: 2,
  done: 3,
  seeding: 3,
};

export function buildSnapshot(src: SnapshotSources, limits: SnapshotLimits = {}): DashboardSnapshot {
  const rowLimit = limits.rows ?? ROWS;
  let tileBudget = limits.tiles ?? TILES;
  const byId = new Map(src.images.map((r) => [r.id, r]));
  const newest = [...src.images].sort((a, b) => cmp(b.publishedAt, a.publishedAt) || cmp(a.name, b.name));
  const imageLimit = limits.images ?? IMAGES;

  let tilesOmitted = 0;
  let fromPeers = 0;
  let fromSeeder = 0;
  const swarms: SwarmView[] = [];
  for (const imageId of src.swarm.images()) {
    const rec = byId.get(imageId);
    const peers = src.swarm.peers(imageId);
    const summary = src.swarm.summary(imageId);
    fromPeers += summary.bytesFromPeers;
    fromSeeder += summary.bytesFromSeeder;
    const stuck = new Set(peers.filter((p) => src.swarm.isStuck(p)));
    const drawTiles = peers.length <= tileBudget;
    if (drawTiles) tileBudget -= peers.length;
    else tilesOmitted += peers.length;
    swarms.push({
      imageId,
      name: rec?.name ?? null,
      version: rec?.version ?? null,
      size: rec?.size ?? null,
      chunks: rec?.chunks ?? null,
      summary,
      offload: ratio(summary.bytesFromPeers, summary.bytesFromSeeder),
      wave: wave(src, peers, rec?.size),
      availability: src.swarm.availability(imageId) ?? null,
      racks: racks(peers, stuck, drawTiles),
      rowsMode: peers.length <= rowLimit ? 'all' : 'attention',
      rows: rows(peers, stuck, rowLimit),
    });
  }
  swarms.sort((a, b) => b.summary.peers - a.summary.peers || cmp(a.imageId, b.imageId));
  return {
    time: src.now,
    head: {
      bytesServed: src.head.bytesServed,
      egressRate: src.head.egressRate,
      offload: ratio(fromPeers, fromSeeder),
    },
    images: newest.slice(0, imageLimit),
    imagesOmitted: Math.max(0, newest.length - imageLimit),
    swarms,
    tilesOmitted,
    history: src.history,
  };
}

function ratio(fromPeers: number, fromSeeder: number): number | null {
  const total = fromPeers + fromSeeder;
  return total > 0 ? Math.round((fromPeers / total) * 10_000) / 10_000 : null;
}

function wave(src: SnapshotSources, peers: PeerRecord[], size: number | undefined): SwarmView['wave'] {
  let startedAt = src.now;
  let completedAt: number | null = 0;
  for (const p of peers) {
    if (p.firstSeen < startedAt) startedAt = p.firstSeen;
    if (completedAt !== null)
      completedAt = p.completedAt === undefined ? null : Math.max(completedAt, p.completedAt);
  }
  if (peers.length === 0) completedAt = null;
  const tMin =
    size === undefined
      ? null
      : tMinSeconds({
          size,
          nodes: peers.length,
          headUplink: src.links.headUplink,
          nodeDownlink: src.links.nodeLink,
          nodeUplink: src.links.nodeLink,
        });
  return {
    startedAt,
    completedAt,
    elapsedSeconds: ((completedAt ?? src.now) - startedAt) / 1000,
    tMinSeconds: tMin === null ? null : Math.round(tMin * 1000) / 1000,
  };
}

function emptyByStage(): Record<PeerStage, number> {
  return { announced: 0, fetching: 0, verifying: 0, done: 0, seeding: 0, failed: 0 };
}

/** Code-unit order: labels are printable ASCII, and localeCompare costs 20× more (10,000 nodes: bench/dashboard.ts). */
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const byRackThenHost = (a: PeerRecord, b: PeerRecord) =>
  cmp(a.rack ?? '', b.rack ?? '') || cmp(a.host ?? '', b.host ?? '') || cmp(a.peerId, b.peerId);

function racks(peers: PeerRecord[], stuck: Set<PeerRecord>, drawTiles: boolean): RackView[] {
  const out = new Map<string, RackView>();
  for (const p of [...peers].sort(byRackThenHost)) {
    const key = p.rack ?? '';
    let r = out.get(key);
    if (!r) {
      r = {
        rack: p.rack ?? null,
        nodes: 0,
        byStage: emptyByStage(),
        stuck: 0,
        meanProgress: 0,
        downRate: 0,
        upRate: 0,
        bytesFromPeers: 0,
        bytesFromSeeder: 0,
        tiles: drawTiles ? [] : null,
      };
      out.set(key, r);
    }
    const isStuck = stuck.has(p);
    r.nodes++;
    r.byStage[p.stage]++;
    if (isStuck) r.stuck++;
    r.meanProgress += p.progress;
    r.downRate += p.downRate;
    r.upRate += p.upRate;
    r.bytesFromPeers += p.bytesFromPeers;
    r.bytesFromSeeder += p.bytesFromSeeder;
    r.tiles?.push([
      STAGE_INDEX.get(p.stage) ?? 0,
      Math.floor(p.progress * 1000),
      isStuck ? 1 : 0,
      p.host ?? p.peerId.slice(-8),
    ]);
  }
  for (const r of out.values()) r.meanProgress = Math.round((r.meanProgress / r.nodes) * 10_000) / 10_000;
  return [...out.values()];
}

function rows(peers: PeerRecord[], stuck: Set<PeerRecord>, limit: number): NodeRow[] {
  let chosen: PeerRecord[];
  if (peers.length <= limit) chosen = [...peers].sort(byRackThenHost);
  else {
    const rank = (p: PeerRecord) => (stuck.has(p) ? 1 : ATTENTION[p.stage]);
    chosen = [...peers]
      .sort((a, b) => rank(a) - rank(b) || a.progress - b.progress || byRackThenHost(a, b))
      .slice(0, limit)
      .sort(byRackThenHost);
  }
  return chosen.map((p) => ({
    peerId: p.peerId,
    host: p.host ?? null,
    rack: p.rack ?? null,
    stage: p.stage,
    progress: p.progress,
    bytesDone: p.bytesDone,
    downRate: p.downRate,
    upRate: p.upRate,
    bytesFromPeers: p.bytesFromPeers,
    bytesFromSeeder: p.bytesFromSeeder,
    lastSeen: p.lastSeen,
    stuck: stuck.has(p),
    error: p.error ?? null,
  }));
}
