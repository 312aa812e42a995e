import {
  buildSnapshot,
  type DashboardSnapshot,
  type SnapshotLimits,
  type SnapshotSwarm,
} from './dashboard-snapshot.ts';
import type { ImageRecord } from './registry.ts';
import { ThroughputHistory } from './throughput-history.ts';

export interface DashboardFeedComponents {
  swarm: SnapshotSwarm;
  /** Registered image versions (the registry's list). */
  images: () => Promise<ImageRecord[]>;
  /** The seeder's byte counter. */
  bytesServed: () => number;
  /** @default Date.now */
  now?: () => number;
}

/** No defaults here: the config schema (core/config.ts, `tracker`) owns them. */
export interface DashboardFeedInit {
  /** One snapshot per this many ms to every live client, and one throughput sample. */
  intervalMs: number;
  /** Live clients at most (each costs one snapshot write per interval). */
  maxClients: number;
  /** bytes/s, for T_min. */
  headUplink: number;
  nodeLink: number;
  limits?: SnapshotLimits;
}

interface Client {
  send: (json: string) => void;
  end: () => void;
}

/**
 * Pushes the dashboard's snapshot (dashboard-snapshot.ts) to live clients (GET /api/events) at a fixed, bounded rate:
 * built and serialised once per interval however many clients listen, and not at all when none does. Samples the
 * head's throughput every interval, clients or not, so the chart has a history when one connects.
 */
export class DashboardFeed {
  readonly #c: DashboardFeedComponents;
  readonly #init: DashboardFeedInit;
  readonly #history: ThroughputHistory;
  readonly #clients = new Set<Client>();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;

  constructor(components: DashboardFeedComponents, init: DashboardFeedInit) {
    this.#c = components;
    this.#init = init;
    // Five minutes of chart at any interval (the ring holds at most 600 points).
    this.#history = new ThroughputHistory(Math.min(600, Math.ceil(300_000 / init.intervalMs)));
  }

  start(): void {
    this.#sample();
    // A failed tick (the registry closing under a stopping head) is skipped; the next one tries again.
    this.#timer = setInterval(() => void this.#tick().catch(() => {}), this.#init.intervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and ends every live stream (an HTTP server cannot close while they are open). */
  stop(): void {
    clearInterval(this.#timer);
    for (const c of this.#clients) c.end();
    this.#clients.clear();
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** A fresh snapshot (also what a new client gets first). */
  async snapshot(): Promise<DashboardSnapshot> {
    const images = await this.#c.images();
    return buildSnapshot(
      {
        now: this.#now(),
        swarm: this.#c.swarm,
        images,
        head: { bytesServed: this.#c.bytesServed(), egressRate: this.#history.egressRate },
        history: this.#history.view(),
        links: { headUplink: this.#init.headUplink, nodeLink: this.#init.nodeLink },
      },
      this.#init.limits,
    );
  }

  /** Adds a live client; returns its unsubscribe, or undefined when maxClients are connected already. */
  subscribe(send: (json: string) => void, end: () => void): (() => void) | undefined {
    if (this.#clients.size >= this.#init.maxClients) return undefined;
    const client = { send, end };
    this.#clients.add(client);
    return () => {
      this.#clients.delete(client);
    };
  }

  #now(): number {
    return (this.#c.now ?? Date.now)();
  }

  #sample(): void {
    let down = 0;
    for (const id of this.#c.swarm.images()) down += this.#c.swarm.summary(id).downRate;
    this.#history.sample(this.#now(), this.#c.bytesServed(), down);
  }

  async #tick(): Promise<void> {
    this.#sample();
    if (this.#clients.size === 0 || this.#ticking) return;
    this.#ticking = true;
    try {
      const json = JSON.stringify(await this.snapshot());
      for (const c of this.#clients) c.send(json);
    } finally {
      this.#ticking = false;
    }
  }
}
