import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/** What /metrics reads at scrape time; every source is a plain function so roles stay decoupled. */
export interface MetricsSources {
  /** Tracked peers per image id. */
  peersByImage: () => Map<string, number>;
  /** Totals from the seeder's chunk server. */
  seeder: () => { bytesServed: number; requests: number; notFound: number; busy: number };
  /** Registered image versions. */
  imageVersions: () => Promise<number>;
  /** Announces the tracker accepted so far. */
  announces: () => number;
}

export interface Metrics {
  registry: Registry;
  errors: Counter<'code'>;
  chunkUploads: Counter<'result'>;
}

/** rackswarm's Prometheus metrics on a registry of their own (plus the process defaults). */
export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rsw_' });
  new Gauge({
    name: 'rsw_peers',
    help: 'Peers the tracker currently tracks, per image id',
    labelNames: ['image'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [image, n] of sources.peersByImage()) this.set({ image }, n);
    },
  });
  new Gauge({
    name: 'rsw_image_versions',
    help: 'Image versions registered on this head',
    registers: [registry],
    async collect() {
      this.set(await sources.imageVersions());
    },
  });
  // The seeder keeps its own totals; these read them (counters only ever grow, as the seeder's do).
  const seederCounter = (
    name: string,
    help: string,
    pick: (s: ReturnType<MetricsSources['seeder']>) => number,
  ) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(pick(sources.seeder()));
      },
    });
  seederCounter(
    'rsw_seeder_bytes_served_total',
    'Chunk bytes the seeder sent to peers',
    (s) => s.bytesServed,
  );
  seederCounter('rsw_seeder_chunk_requests_total', 'Chunk requests the seeder answered', (s) => s.requests);
  seederCounter(
    'rsw_seeder_chunk_not_found_total',
    'Chunk requests for chunks the seeder lacks',
    (s) => s.notFound,
  );
  seederCounter('rsw_seeder_busy_total', 'Chunk requests refused because a limit was reached', (s) => s.busy);
  new Counter({
    name: 'rsw_announces_total',
    help: 'Announces the tracker accepted',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.announces());
    },
  });
  return {
    registry,
    errors: new Counter({
      name: 'rsw_errors_total',
      help: 'Errors answered, by RSW_ERR code',
      labelNames: ['code'],
      registers: [registry],
    }),
    chunkUploads: new Counter({
      name: 'rsw_chunk_uploads_total',
      help: 'Chunk uploads from publishers, by result',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
