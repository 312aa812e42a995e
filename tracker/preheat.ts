import { randomBytes } from 'node:crypto';
import { RswError } from '../core/errors.ts';
import type { AnnounceBodyExt, Instruction, PreheatReport } from '../core/tracker-messages.ts';

/**
 * Staged rollout: a preheat job asks running nodes (ones still announcing: lingering or seeding) to fetch a version
 * into their caches before a reboot wave, and is the barrier that says when every selected node holds it.
 *
 * The tracker protocol carries it both ways (compatible extension, core/tracker-messages.ts): a selected node gets
 * `instructions: [{kind: "preheat", …}]` in its announce responses until it reports the job `done` (or `failed`) in
 * the `preheat` field of its announces. The node list is fixed when the job is created, from the peers the tracker
 * knows then; jobs live in the head's memory (a restarted head forgets them, and the nodes finish anyway).
 *
 * A node fetches a preheat through a second libp2p identity whose announces say host "NAME+preheat": those are never
 * selected themselves.
 */
export type Selector =
  | { kind: 'all' }
  | { kind: 'rack'; values: string[] }
  | { kind: 'host'; patterns: RegExp[]; text: string }
  | { kind: 'peer'; values: string[] };

export const PREHEAT_HOST_SUFFIX = '+preheat';

/** "all" | "rack=r1,r2" | "host=node-1*,login" (glob: * and ?) | "peer=12D3Koo…,…". Throws RSW_ERR_USAGE. */
export function parseSelector(text: string | undefined): Selector {
  if (text === undefined || text === '' || text === 'all') return { kind: 'all' };
  const m = /^(rack|host|peer)=(.+)$/.exec(text);
  const values = m?.[2].split(',').filter(Boolean) ?? [];
  if (!m || values.length === 0 || values.some((v) => v.length > 128)) {
    throw new RswError(
      'RSW_ERR_USAGE',
      `--nodes ${JSON.stringify(text)}: use all, rack=R[,R…], host=GLOB[,GLOB…] or peer=ID[,ID…]`,
    );
  }
  if (m[1] === 'host') {
    const patterns = values.map(
      (g) =>
        new RegExp(
          `^${g
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '.*')
            .replace(/\?/g, '.')}$`,
        ),
    );
    return { kind: 'host', patterns, text: m[2] };
  }
  return { kind: m[1] as 'rack' | 'peer', values };
}

export function matches(sel: Selector, peer: { peerId: string; host?: string; rack?: string }): boolean {
  switch (sel.kind) {
    case 'all':
      return true;
    case 'rack':
      return peer.rack !== undefined && sel.values.includes(peer.rack);
    case 'host':
      return peer.host !== undefined && sel.patterns.some((p) => p.test(peer.host as string));
    case 'peer':
      return sel.values.includes(peer.peerId);
  }
}

export interface PreheatTarget {
  peerId: string;
  host?: string;
  rack?: string;
  state: 'pending' | 'fetching' | 'done' | 'failed';
  error?: string;
}

export interface PreheatJob {
  id: string;
  name: string;
  version: number;
  imageId: string;
  nodes: string;
  createdAt: string;
  targets: PreheatTarget[];
  /** Every target done. */
  complete: boolean;
  /** Every target done or failed. */
  settled: boolean;
}

export interface PreheatComponents {
  /** The peers the tracker knows now, over all images (tracker/swarm-state.ts). */
  peers: () => Iterable<{ peerId: string; host?: string; rack?: string }>;
  now?: () => number;
}

const MAX_JOBS = 100;
const MAX_REPORTS = 32;
const JOB_RE = /^[0-9a-f]{16}$/;

export class PreheatJobs {
  readonly #c: PreheatComponents;
  readonly #jobs = new Map<string, PreheatJob>();

  constructor(components: PreheatComponents) {
    this.#c = components;
  }

  create(init: { name: string; version: number; imageId: string; nodes?: string }): PreheatJob {
    const selector = parseSelector(init.nodes);
    const targets = new Map<string, PreheatTarget>();
    for (const p of this.#c.peers()) {
      if (targets.has(p.peerId) || p.host?.endsWith(PREHEAT_HOST_SUFFIX) || !matches(selector, p)) continue;
      targets.set(p.peerId, { peerId: p.peerId, host: p.host, rack: p.rack, state: 'pending' });
    }
    if (targets.size === 0) {
      throw new RswError('RSW_ERR_NO_NODES', `no running node matches --nodes ${init.nodes ?? 'all'}`);
    }
    const job: PreheatJob = {
      id: randomBytes(8).toString('hex'),
      name: init.name,
      version: init.version,
      imageId: init.imageId,
      nodes: init.nodes ?? 'all',
      createdAt: new Date((this.#c.now ?? Date.now)()).toISOString(),
      targets: [...targets.values()],
      complete: false,
      settled: false,
    };
    this.#jobs.set(job.id, job);
    for (const old of this.#jobs.keys()) {
      if (this.#jobs.size <= MAX_JOBS) break;
      this.#jobs.delete(old);
    }
    return job;
  }

  get(id: string): PreheatJob {
    const job = this.#jobs.get(id);
    if (!job) throw new RswError('RSW_ERR_PREHEAT_NOT_FOUND', `no preheat job ${id}`);
    return job;
  }

  list(): PreheatJob[] {
    return [...this.#jobs.values()];
  }

  /** Image ids of jobs still running (garbage collection keeps them). */
  inUse(): string[] {
    return this.list()
      .filter((j) => !j.settled)
      .map((j) => j.imageId);
  }

  /** The tracker's announce hook: takes the node's reports, answers its outstanding instructions. */
  onAnnounce(peerId: string, body: AnnounceBodyExt): { instructions?: Instruction[] } | undefined {
    for (const r of validReports(body.preheat)) {
      const job = this.#jobs.get(r.job);
      const target = job?.targets.find((t) => t.peerId === peerId);
      if (!job || !target || target.state === 'done') continue;
      target.state = r.state;
      target.error = r.state === 'failed' ? (r.error ?? 'failed').slice(0, 256) : undefined;
      job.complete = job.targets.every((t) => t.state === 'done');
      job.settled = job.targets.every((t) => t.state === 'done' || t.state === 'failed');
    }
    const instructions: Instruction[] = [];
    for (const job of this.#jobs.values()) {
      const target = job.targets.find((t) => t.peerId === peerId);
      if (target && (target.state === 'pending' || target.state === 'fetching')) {
        instructions.push({
          kind: 'preheat',
          job: job.id,
          name: job.name,
          version: job.version,
          imageId: job.imageId,
        });
      }
    }
    return instructions.length ? { instructions } : undefined;
  }
}

function validReports(v: unknown): PreheatReport[] {
  if (!Array.isArray(v)) return [];
  return v
    .slice(0, MAX_REPORTS)
    .filter(
      (r): r is PreheatReport =>
        typeof r === 'object' &&
        r !== null &&
        typeof r.job === 'string' &&
        JOB_RE.test(r.job) &&
        (r.state === 'fetching' || r.state === 'done' || r.state === 'failed') &&
        (r.error === undefined || typeof r.error === 'string'),
    );
}
