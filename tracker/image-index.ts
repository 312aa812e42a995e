import type { ImageRecord, Registry } from './registry.ts';

/**
 * The registry's image list, cached for the hot paths that need it synchronously (an announce's bitfield needs its
 * image's chunk count) or every second (the dashboard). Re-read at most once per `maxAgeMs`.
 */
export class ImageIndex {
  readonly #registry: Pick<Registry, 'list'>;
  readonly #maxAgeMs: number;
  #byId = new Map<string, ImageRecord>();
  #list: ImageRecord[] = [];
  #readAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<ImageRecord[]> | undefined;

  /** @param maxAgeMs @default 1000 */
  constructor(registry: Pick<Registry, 'list'>, maxAgeMs = 1000) {
    this.#registry = registry;
    this.#maxAgeMs = maxAgeMs;
  }

  /** Every registered version, at most maxAgeMs old. */
  async list(): Promise<ImageRecord[]> {
    if (performance.now() - this.#readAt < this.#maxAgeMs) return this.#list;
    this.#reading ??= this.#registry
      .list()
      .then((list) => {
        this.#list = list;
        this.#byId = new Map(list.map((r) => [r.id, r]));
        this.#readAt = performance.now();
        return list;
      })
      .finally(() => {
        this.#reading = undefined;
      });
    return this.#reading;
  }

  /** Chunks of a registered image, from the cache; a miss starts a re-read (a version registered just now). */
  chunkCount(imageId: string): number | undefined {
    const r = this.#byId.get(imageId);
    if (!r) void this.list().catch(() => {});
    return r?.chunks;
  }
}
