/**
 * A node's memory of the head's answers to "is X enrolled?" (core/mesh-gater.ts asks it for every peer it meets).
 * Yes is kept `ttlMs` (the config's `mesh.cacheSeconds`), no for at most `negativeTtlMs` (a node enrolled a moment ago
 * gets in soon; an outsider retrying is not a query per try); a failed query is not kept, and refuses. Questions
 * asked in the same tick go to the head as one query, and two callers asking about one peer share it.
 */
import { MAX_QUERY_IDS } from './enrollment.ts';

export interface EnrollmentCacheInit {
  /** Asks the head; resolves with the subset of `peerIds` that is enrolled. */
  query: (peerIds: string[]) => Promise<string[]>;
  ttlMs: number;
  /** @default min(ttlMs, 5000) */
  negativeTtlMs?: number;
  /** Answers kept at most (oldest dropped first). @default 65536 */
  maxEntries?: number;
  /** @default Date.now */
  now?: () => number;
}

interface Entry {
  enrolled: boolean;
  at: number;
}

export class EnrollmentCache {
  readonly #init: EnrollmentCacheInit;
  readonly #answers = new Map<string, Entry>();
  readonly #pending = new Map<string, PromiseWithResolvers<boolean>>();
  #flushing = false;

  constructor(init: EnrollmentCacheInit) {
    this.#init = init;
  }

  #now(): number {
    return (this.#init.now ?? Date.now)();
  }

  /** The cached answer while it is fresh, else undefined. */
  cached(peerId: string): boolean | undefined {
    const e = this.#answers.get(peerId);
    if (!e) return undefined;
    const ttl = e.enrolled
      ? this.#init.ttlMs
      : (this.#init.negativeTtlMs ?? Math.min(this.#init.ttlMs, 5000));
    return this.#now() - e.at < ttl ? e.enrolled : undefined;
  }

  isEnrolled(peerId: string): Promise<boolean> {
    const hit = this.cached(peerId);
    if (hit !== undefined) return Promise.resolve(hit);
    let p = this.#pending.get(peerId);
    if (!p) {
      p = Promise.withResolvers<boolean>();
      this.#pending.set(peerId, p);
      if (!this.#flushing) {
        this.#flushing = true;
        setImmediate(() => void this.#flush());
      }
    }
    return p.promise;
  }

  /** Forgets every answer (e.g. to re-ask about the peers a node is connected to). */
  forget(peerId: string): void {
    this.#answers.delete(peerId);
  }

  async #flush(): Promise<void> {
    this.#flushing = false;
    const batch = [...this.#pending].slice(0, MAX_QUERY_IDS);
    for (const [id] of batch) this.#pending.delete(id);
    if (this.#pending.size > 0) {
      this.#flushing = true;
      setImmediate(() => void this.#flush());
    }
    const ids = batch.map(([id]) => id);
    try {
      const yes = new Set(await this.#init.query(ids));
      const at = this.#now();
      for (const [id, p] of batch) {
        this.#remember(id, { enrolled: yes.has(id), at });
        p.resolve(yes.has(id));
      }
    } catch (e) {
      for (const [, p] of batch) p.reject(e);
    }
  }

  #remember(id: string, e: Entry): void {
    this.#answers.delete(id);
    this.#answers.set(id, e);
    const max = this.#init.maxEntries ?? 65_536;
    if (this.#answers.size > max) this.#answers.delete(this.#answers.keys().next().value as string);
  }
}
