import type { KeyObject } from 'node:crypto';
import {
  type ChannelPointer,
  checkChannelNotStale,
  openSignedChannel,
  peekChannelPointer,
  validateChannelName,
} from '../core/channel.ts';
import { RswError } from '../core/errors.ts';
import { publicKeyFromRaw } from '../core/keys.ts';
import { validateImageName } from '../core/manifest.ts';
import type { Registry } from './registry.ts';

/**
 * The head's channel pointers (core/channel.ts), stored signed in the registry's LevelDB and re-served as they are:
 * the head cannot make or extend one, only keep the newest it was given. A pointer is accepted if it verifies under
 * the image's key (the pinned --trust keys, or the key the image is published under), has not expired, names a
 * registered version by its exact manifest id, and has a higher sequence than the one it replaces.
 */
export class ChannelStore {
  readonly #registry: Registry;
  readonly #db;
  readonly #trusted: KeyObject[];
  #queue: Promise<unknown> = Promise.resolve();

  constructor(registry: Registry, trusted: KeyObject[]) {
    this.#registry = registry;
    this.#db = registry.sublevel('channels');
    this.#trusted = trusted;
  }

  /** Revoked publisher keys (the registry's). */
  get revoked() {
    return this.#registry.revoked;
  }

  set(envelope: Uint8Array, now = Date.now()): Promise<ChannelPointer> {
    const run = this.#queue.then(() => this.#set(envelope, now));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #set(envelope: Uint8Array, now: number): Promise<ChannelPointer> {
    const claimed = peekChannelPointer(envelope);
    const latest = await this.#registry.latest(claimed.name);
    if (!latest) throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `no image ${claimed.name}`);
    const keys = this.#trusted.length
      ? this.#trusted
      : [publicKeyFromRaw(Buffer.from(latest.publisher, 'hex'))];
    const { pointer } = openSignedChannel(envelope, keys, now, this.#registry.revoked);
    const record = await this.#registry.get(pointer.name, pointer.version);
    if (!record)
      throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `no image ${pointer.name} version ${pointer.version}`);
    if (record.id !== pointer.manifestId) {
      throw new RswError(
        'RSW_ERR_INVALID_CHANNEL',
        `${pointer.name}@${pointer.version} has manifest id ${record.id.slice(0, 16)}…, the pointer names ${pointer.manifestId.slice(0, 16)}…`,
      );
    }
    const current = await this.get(pointer.name, pointer.channel);
    if (current) {
      const old = peekChannelPointer(current);
      if (pointer.sequence <= old.sequence) {
        checkChannelNotStale(pointer, old.sequence + 1); // same message whether equal or lower
      }
    }
    await this.#db.put(key(pointer.name, pointer.channel), Buffer.from(envelope));
    return pointer;
  }

  /** The stored signed pointer, if any. */
  async get(name: string, channel: string): Promise<Buffer | undefined> {
    validateImageName(name);
    validateChannelName(channel);
    const v = await this.#db.get(key(name, channel));
    return v ? Buffer.from(v) : undefined;
  }

  /** Every stored pointer (verified when stored; expiry is the reader's to judge). */
  async list(): Promise<ChannelPointer[]> {
    return (await this.#db.values().all()).map((v) => peekChannelPointer(Buffer.from(v)));
  }
}

function key(name: string, channel: string): string {
  return `${name}\x00${channel}`;
}
