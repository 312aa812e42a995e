import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parsePeerId } from '../core/enrollment.ts';
import { RswError } from '../core/errors.ts';
import type { Enrollments } from './enrollments.ts';

/** Per peer, what the head's libp2p side saw of it (cli/p2p-node.ts counts; core/mesh-gater.ts refuses). */
export interface MeshPeerStats {
  /** Inbound streams that reached a protocol handler. */
  streamsHandled: number;
  /** Connections the gater refused. */
  refused: number;
}

export interface EnrollmentRoutesDeps {
  enrollments: Enrollments;
  closed: boolean;
  peerStats: (peerId: string) => MeshPeerStats;
}

/** Ids per request: 10,000 × ~56 bytes stays under the API's 1 MiB body limit (`enroll add --file` batches). */
export const MAX_IDS_PER_REQUEST = 10_000;

const idsBody = {
  type: 'object',
  required: ['peerIds'],
  properties: {
    peerIds: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_IDS_PER_REQUEST,
      items: { type: 'string', minLength: 1, maxLength: 128 },
    },
    note: { type: 'string', maxLength: 200 },
  },
  additionalProperties: false,
} as const;

/**
 * Enrollment routes of the head's HTTP API (the closed mesh, docs/SECURITY.md); all need the admin token — the list is
 * the cluster's inventory:
 *   GET  /api/enrollments                 {closed, count, enrollments: [{peerId, addedAt, note?}]}
 *   GET  /api/enrollments/:peerId         {peerId, enrolled, addedAt?, note?, streamsHandled, refused}
 *   POST /api/enrollments                 {peerIds: [ID…], note?} → {added: [ID…], count}
 *   POST /api/enrollments/remove          {peerIds: [ID…]} → {removed: [ID…], count}; the head hangs up on them
 */
export function enrollmentRoutes(deps: EnrollmentRoutesDeps) {
  return (app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>): void => {
    const { enrollments } = deps;
    const ids = (raw: string[]) => {
      try {
        return raw.map(parsePeerId);
      } catch (e) {
        throw new RswError('RSW_ERR_INVALID_PEER_ID', (e as Error).message);
      }
    };

    app.get('/api/enrollments', { onRequest: requireAdmin }, async () => ({
      closed: deps.closed,
      count: enrollments.size,
      enrollments: enrollments.list(),
    }));

    app.get<{ Params: { peerId: string } }>(
      '/api/enrollments/:peerId',
      {
        onRequest: requireAdmin,
        schema: { params: { type: 'object', properties: { peerId: { type: 'string', maxLength: 128 } } } },
      },
      async (req) => {
        const [peerId] = ids([req.params.peerId]);
        const rec = enrollments.get(peerId);
        return { peerId, enrolled: rec !== undefined, ...rec, ...deps.peerStats(peerId) };
      },
    );

    app.post<{ Body: { peerIds: string[]; note?: string } }>(
      '/api/enrollments',
      { onRequest: requireAdmin, schema: { body: idsBody } },
      async (req, reply) => {
        const { added } = await enrollments.add(ids(req.body.peerIds), req.body.note);
        app.log.info({ added: added.length, enrolled: enrollments.size }, 'peers enrolled');
        reply.status(added.length > 0 ? 201 : 200);
        return { added, count: enrollments.size };
      },
    );

    app.post<{ Body: { peerIds: string[] } }>(
      '/api/enrollments/remove',
      {
        onRequest: requireAdmin,
        schema: { body: { ...idsBody, properties: { peerIds: idsBody.properties.peerIds } } },
      },
      async (req) => {
        const { removed } = await enrollments.remove(ids(req.body.peerIds));
        app.log.info({ removed, enrolled: enrollments.size }, 'enrollments removed');
        return { removed, count: enrollments.size };
      },
    );
  };
}
