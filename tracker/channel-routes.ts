import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MAX_CHANNEL_ENVELOPE_BYTES } from '../core/channel.ts';
import { RswError } from '../core/errors.ts';
import { checkNotRevoked } from '../core/signed-manifest.ts';
import type { ChannelStore } from './channel-store.ts';
import { bodyStream, readCapped } from './http-api.ts';

/**
 * Channel routes of the head's HTTP API:
 *   GET  /api/channels                   every pointer: name, channel, version, manifestId, sequence, times, expired
 *   GET  /api/channels/:name/:channel    the signed pointer (application/octet-stream), for nodes to verify
 *   POST /api/channels                   (admin) store a signed pointer; body: its envelope bytes
 */
export function channelRoutes(channels: ChannelStore, now: () => number = Date.now) {
  return (app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>): void => {
    app.get('/api/channels', async () => ({
      channels: (await channels.list()).map((p) => ({ ...p, expired: now() >= p.expiresAt })),
    }));

    app.get<{ Params: { name: string; channel: string } }>(
      '/api/channels/:name/:channel',
      async (req, reply) => {
        const env = await channels.get(req.params.name, req.params.channel);
        if (!env)
          throw new RswError(
            'RSW_ERR_CHANNEL_NOT_FOUND',
            `no channel ${req.params.name}:${req.params.channel}`,
          );
        // A pointer signed by a key revoked since it was stored is not served (nodes would refuse it anyway).
        checkNotRevoked(env.subarray(6, 38), channels.revoked, 'channel pointer');
        reply.header('content-type', 'application/octet-stream');
        return env;
      },
    );

    app.post('/api/channels', { onRequest: requireAdmin }, async (req) => {
      const envelope = await readCapped(
        bodyStream(req),
        MAX_CHANNEL_ENVELOPE_BYTES,
        req.headers['content-length'],
      );
      const pointer = await channels.set(envelope, now());
      app.log.info(
        { channel: `${pointer.name}:${pointer.channel}`, version: pointer.version },
        'channel set',
      );
      return pointer;
    });
  };
}
