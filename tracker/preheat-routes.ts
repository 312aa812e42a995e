import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RswError } from '../core/errors.ts';
import { parseVersion, validateImageName } from '../core/manifest.ts';
import type { PreheatJobs } from './preheat.ts';
import type { Registry } from './registry.ts';

/**
 * Preheat routes of the head's HTTP API (tracker/preheat.ts):
 *   POST /api/preheat        (admin) {name, version: N | "latest", nodes?: SELECTOR} → the job, with its node list
 *   GET  /api/preheat        every job (newest last): the barrier per job is `complete`
 *   GET  /api/preheat/:id    one job: per node pending | fetching | done | failed
 */
export function preheatRoutes(jobs: PreheatJobs, registry: Pick<Registry, 'get' | 'latest'>) {
  return (app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>): void => {
    app.post<{ Body: { name: string; version: number | 'latest'; nodes?: string } }>(
      '/api/preheat',
      {
        onRequest: requireAdmin,
        schema: {
          body: {
            type: 'object',
            required: ['name', 'version'],
            properties: {
              name: { type: 'string', maxLength: 200 },
              version: { anyOf: [{ type: 'integer', minimum: 1 }, { const: 'latest' }] },
              nodes: { type: 'string', maxLength: 4096 },
            },
            additionalProperties: false,
          },
        },
      },
      async (req, reply) => {
        const { name, version, nodes } = req.body;
        validateImageName(name);
        const record =
          version === 'latest'
            ? await registry.latest(name)
            : await registry.get(name, parseVersion(String(version)));
        if (!record) throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `no image ${name} version ${version}`);
        const job = jobs.create({ name, version: record.version, imageId: record.id, nodes });
        app.log.info(
          { job: job.id, image: name, version: record.version, nodes: job.targets.length },
          'preheat started',
        );
        reply.status(201);
        return job;
      },
    );
    app.get('/api/preheat', async () => ({ jobs: jobs.list() }));
    app.get<{ Params: { id: string } }>('/api/preheat/:id', async (req) => jobs.get(req.params.id));
  };
}
