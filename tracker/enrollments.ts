import { asDataError } from '../core/errors.ts';
import type { Registry } from './registry.ts';

/** One enrolled node, as `rackswarm enroll list` and GET /api/enrollments show it. */
export interface Enrollment {
  peerId: string;
  /** ISO 8601. */
  addedAt: string;
  /** What the operator said the node is (host name, asset tag); optional. */
  note?: string;
}

type Store = ReturnType<Registry['sublevel']>;

/**
 * The head's enrollment records: the peer ids admitted to the closed mesh, in the registry's LevelDB (sublevel
 * `enrollments`, so a SIGKILL loses nothing acknowledged) and in memory, because the connection gater asks for every
 * connection and must not wait on the disk. Listeners hear of removals (the head hangs up on the removed peers).
 */
export class Enrollments {
  readonly #db: Store;
  readonly #byId = new Map<string, Enrollment>();
  readonly #onRemove = new Set<(peerIds: string[]) => void>();

  private constructor(db: Store) {
    this.#db = db;
  }

  static async open(registry: Pick<Registry, 'sublevel'>): Promise<Enrollments> {
    const e = new Enrollments(registry.sublevel('enrollments'));
    for await (const [, v] of e.#db.iterator()) {
      const rec = JSON.parse(Buffer.from(v).toString('utf8')) as Enrollment;
      e.#byId.set(rec.peerId, rec);
    }
    return e;
  }

  has(peerId: string): boolean {
    return this.#byId.has(peerId);
  }

  get(peerId: string): Enrollment | undefined {
    return this.#byId.get(peerId);
  }

  get size(): number {
    return this.#byId.size;
  }

  list(): Enrollment[] {
    return [...this.#byId.values()].sort((a, b) => a.peerId.localeCompare(b.peerId));
  }

  /** Enrolls `peerIds` (already validated) in one atomic batch; those already enrolled keep their record. */
  async add(peerIds: string[], note?: string, now: Date = new Date()): Promise<{ added: string[] }> {
    const fresh = [...new Set(peerIds)].filter((id) => !this.#byId.has(id));
    const recs = fresh.map((peerId) => ({
      peerId,
      addedAt: now.toISOString(),
      ...(note ? { note } : {}),
    }));
    try {
      await this.#db.batch(
        recs.map((r) => ({
          type: 'put' as const,
          key: r.peerId,
          value: Buffer.from(JSON.stringify(r)),
        })),
      );
    } catch (e) {
      throw asDataError((e as { cause?: unknown }).cause ?? e, 'cannot write the enrollment records');
    }
    for (const r of recs) this.#byId.set(r.peerId, r);
    return { added: fresh };
  }

  /** Removes `peerIds` in one atomic batch and tells the listeners; returns those that were enrolled. */
  async remove(peerIds: string[]): Promise<{ removed: string[] }> {
    const gone = [...new Set(peerIds)].filter((id) => this.#byId.has(id));
    try {
      await this.#db.batch(gone.map((key) => ({ type: 'del' as const, key })));
    } catch (e) {
      throw asDataError((e as { cause?: unknown }).cause ?? e, 'cannot write the enrollment records');
    }
    for (const id of gone) this.#byId.delete(id);
    if (gone.length > 0) for (const f of this.#onRemove) f(gone);
    return { removed: gone };
  }

  onRemove(f: (peerIds: string[]) => void): () => void {
    this.#onRemove.add(f);
    return () => this.#onRemove.delete(f);
  }
}
