import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { imageKeyId, isImageKeyId, readImageKeyFile, writeImageKeyFile } from './chunk-cipher.ts';
import { asDataError, isRswError } from './errors.ts';

/**
 * The head's image keys (encrypted images, core/chunk-cipher.ts): DATA/image-keys/KEYID, one 0600 file each, in a
 * 0700 directory. Named by key id, the only thing a manifest says about its key.
 */
export class ImageKeyStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'image-keys');
  }

  /** Stores a key (idempotent); resolves with its id. */
  async put(key: Uint8Array): Promise<string> {
    const id = imageKeyId(key);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw asDataError(e, `cannot create ${this.dir}`);
    }
    await writeImageKeyFile(join(this.dir, id), key);
    return id;
  }

  async get(keyId: string): Promise<Buffer | undefined> {
    if (!isImageKeyId(keyId)) return undefined;
    try {
      const key = await readImageKeyFile(join(this.dir, keyId));
      return imageKeyId(key) === keyId ? key : undefined;
    } catch (e) {
      if (isRswError(e) && e.code === 'RSW_ERR_FILE_NOT_FOUND') return undefined;
      throw e;
    }
  }
}
