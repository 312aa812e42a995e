import { join } from 'node:path';
import { Level } from 'level';
import { asDataError, RswError } from '../core/errors.ts';
import type { ImageFormat } from '../core/manifest.ts';
import type { OpenedManifest } from '../core/signed-manifest.ts';

/** One published image version, as listed by `rackswarm images` and GET /api/images. */
export interface ImageRecord {
  name: string;
  version: number;
  /** BLAKE3 of the canonical manifest bytes, hex. */
  id: string;
  format: ImageFormat;
  size: number;
  chunks: number;
  /** Raw ed25519 public key of the publisher, hex. */
  publisher: string;
  /** ISO 8601. */
  publishedAt: string;
}

type Db = Level<string, string>;

/**
 * The head's registry of images, versions and signed manifests, in a LevelDB under DATA/registry. A version and its
 * manifest are written in one atomic batch, so an image is either fully registered or absent. LevelDB's lock makes
 * one process the owner of a data directory: a second opener gets RSW_ERR_DATA_LOCKED.
 */
export class Registry {
  readonly #db: Db;
  readonly #images;
  readonly #manifests;
  #queue: Promise<unknown> = Promise.resolve();
  /** Revoked publisher keys (hex): an image whose key is revoked may continue under another key. */
  revoked: { has(publisherHex: string): boolean } | undefined;

  private constructor(db: Db) {
    this.#db = db;
    this.#images = db.sublevel<string, ImageRecord>('images', { valueEncoding: 'json' });
    this.#manifests = db.sublevel<string, Uint8Array>('manifests', { valueEncoding: 'view' });
  }

  static async open(dataDir: string): Promise<Registry> {
    const db: Db = new Level(join(dataDir, 'registry'));
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new RswError(
          'RSW_ERR_DATA_LOCKED',
          `${dataDir} is in use by another process (a running head? publish to it with --head URL)`,
        );
      }
      throw asDataError(cause ?? e, `cannot open registry in ${dataDir}`);
    }
    return new Registry(db);
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => {});
    await this.#db.close();
  }

  /** Every version of every image, ordered by name then version. */
  async list(): Promise<ImageRecord[]> {
    return this.#images.values().all();
  }

  /** Versions of one image, oldest first. */
  async versions(name: string): Promise<ImageRecord[]> {
    return this.#images.values({ gt: `${name}\x00`, lt: `${name}\x01` }).all();
  }

  async get(name: string, version: number): Promise<ImageRecord | undefined> {
    return this.#images.get(imageKey(name, version));
  }

  /** The newest version of an image, if any. */
  async latest(name: string): Promise<ImageRecord | undefined> {
    const [last] = await this.#images
      .values({ gt: `${name}\x00`, lt: `${name}\x01`, reverse: true, limit: 1 })
      .all();
    return last;
  }

  /** Runs `fn` with registrations and removals held off (garbage collection decides and deletes inside it). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** A sublevel of the registry's database, for a concept kept beside the images (channels). */
  sublevel(name: string) {
    return this.#db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' });
  }

  /**
   * Removes one version (its record, and its manifest unless another version has the same id) in one atomic batch;
   * resolves false if it was not there. Serialised with registrations.
   */
  remove(name: string, version: number): Promise<boolean> {
    return this.exclusive(() => this.removeHeld(name, version));
  }

  /** remove() for a caller already inside exclusive(). */
  async removeHeld(name: string, version: number): Promise<boolean> {
    const record = await this.get(name, version);
    if (!record) return false;
    const others = (await this.list()).filter((r) => r.id === record.id && r.version !== version);
    const batch = this.#db.batch().del(imageKey(name, version), { sublevel: this.#images });
    if (others.length === 0) batch.del(record.id, { sublevel: this.#manifests });
    try {
      await batch.write();
    } catch (e) {
      throw asDataError((e as { cause?: unknown }).cause ?? e, 'cannot write the registry');
    }
    return true;
  }

  /** The signed manifest (envelope bytes) of an image id. */
  async envelope(id: string): Promise<Buffer | undefined> {
    const v = await this.#manifests.get(id);
    return v ? Buffer.from(v) : undefined;
  }

  /**
   * Registers a verified manifest. Idempotent for the same bytes at the same version; refuses different bytes at an
   * existing version, a version older than the newest, and a publisher key other than the one the image has.
   * Registrations are serialised so these checks and the write are one step.
   */
  register(
    opened: OpenedManifest,
    publishedAt: Date = new Date(),
    /** Runs first, in the same serialised step (e.g. "every chunk is in the store", which gc must not race). */
    precheck?: () => Promise<void>,
  ): Promise<{ record: ImageRecord; existed: boolean }> {
    const run = this.#queue.then(async () => {
      await precheck?.();
      return this.#register(opened, publishedAt);
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  async #register(
    opened: OpenedManifest,
    publishedAt: Date,
  ): Promise<{ record: ImageRecord; existed: boolean }> {
    const { manifest: m, id } = opened;
    const publisher = opened.publisher.toString('hex');
    const same = await this.get(m.name, m.version);
    if (same) {
      if (same.id === id) return { record: same, existed: true };
      throw new RswError(
        'RSW_ERR_VERSION_CONFLICT',
        `${m.name} version ${m.version} is already published with different bytes (id ${same.id.slice(0, 16)})`,
      );
    }
    const newest = await this.latest(m.name);
    // Rotation: once the image's key is revoked, a version signed by another (pinned) key may follow it.
    if (newest && newest.publisher !== publisher && !this.revoked?.has(newest.publisher)) {
      throw new RswError(
        'RSW_ERR_KEY_MISMATCH',
        `${m.name} is published under key ${newest.publisher.slice(0, 16)}, not ${publisher.slice(0, 16)}`,
      );
    }
    if (newest && m.version < newest.version) {
      throw new RswError(
        'RSW_ERR_VERSION_NOT_NEWER',
        `${m.name} version ${m.version} is older than the newest published version ${newest.version}`,
      );
    }
    const record: ImageRecord = {
      name: m.name,
      version: m.version,
      id,
      format: m.format,
      size: m.size,
      chunks: m.chunks.length,
      publisher,
      publishedAt: publishedAt.toISOString(),
    };
    try {
      await this.#db
        .batch()
        .put(id, opened.envelope, { sublevel: this.#manifests })
        .put(imageKey(m.name, m.version), record, { sublevel: this.#images })
        .write();
    } catch (e) {
      throw asDataError((e as { cause?: unknown }).cause ?? e, 'cannot write the registry');
    }
    return { record, existed: false };
  }
}

/** name NUL zero-padded version: sorts by name, then numerically by version. */
function imageKey(name: string, version: number): string {
  return `${name}\x00${version.toString().padStart(16, '0')}`;
}
