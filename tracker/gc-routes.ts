import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RswError } from '../core/errors.ts';
import { collectGarbage, type GcComponents } from './gc.ts';

/**
 * POST /api/gc (admin): garbage-collects a running head's store (tracker/gc.ts) and answers the report. Body, all
 * optional: {"keep": K, "graceSeconds": S}; the defaults come from the head's config.
 */
export function gcRoutes(c: GcComponents, defaults: { keep: number; graceSeconds: number }) {
  return (app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>): void => {
    app.post<{ Body: { keep?: number; graceSeconds?: number } | undefined }>(
      '/api/gc',
      {
        onRequest: requireAdmin,
        schema: {
          body: {
            type: ['object', 'null'],
            properties: {
              keep: { type: 'integer', minimum: 1, maximum: 10_000 },
              graceSeconds: { type: 'integer', minimum: 0, maximum: 30 * 86_400 },
            },
            additionalProperties: false,
          },
        },
      },
      async (req) => {
        const keep = req.body?.keep ?? defaults.keep;
        const graceSeconds = req.body?.graceSeconds ?? defaults.graceSeconds;
        if (!Number.isInteger(keep)) throw new RswError('RSW_ERR_BAD_REQUEST', 'keep must be an integer');
        const report = await collectGarbage(c, { keep, graceMs: graceSeconds * 1000 });
        app.log.info(report, 'gc done');
        return report;
      },
    );
  };
}
