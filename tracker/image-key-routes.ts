import type { FastifyInstance, FastifyRequest } from 'fastify';
import { IMAGE_KEY_BYTES } from '../core/chunk-cipher.ts';
import { RswError } from '../core/errors.ts';
import type { ImageKeyStore } from '../core/image-key-store.ts';
import { bodyStream, readCapped } from './http-api.ts';

/**
 *   PUT /api/image-keys   (admin) store an encrypted image's key; body: its 32 bytes (application/octet-stream);
 *                         answers {keyId}. There is no route that reads a key back: nodes get keys only over the
 *                         authenticated tracker protocol, on a closed mesh (tracker/tracker-service.ts).
 */
export function imageKeyRoutes(keys: ImageKeyStore) {
  return (app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>): void => {
    app.put('/api/image-keys', { onRequest: requireAdmin }, async (req) => {
      const key = await readCapped(bodyStream(req), IMAGE_KEY_BYTES, req.headers['content-length']);
      if (key.length !== IMAGE_KEY_BYTES)
        throw new RswError(
          'RSW_ERR_KEY_INVALID',
          `an image key is ${IMAGE_KEY_BYTES} bytes, not ${key.length}`,
        );
      const keyId = await keys.put(key);
      app.log.info({ keyId }, 'image key stored');
      return { keyId };
    });
  };
}
