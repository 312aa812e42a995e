import type { KeyObject } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RswError } from '../core/errors.ts';
import {
  MAX_REVOCATION_ENVELOPE_BYTES,
  MAX_REVOCATION_STATEMENTS,
  openRevocation,
  Revocations,
  readRevocationFile,
  writeRevocationFile,
} from '../core/revocation.ts';
import { bodyStream, readCapped } from './http-api.ts';

/**
 * The head's book of key revocations (core/revocation.ts): statements it verified, kept in DATA/revocations.json
 * and served to every node, which verifies them again against its own pinned keys. `pinned()` is the head's
 * `--trust` keys, or without them every key an image is published under.
 */
export class RevocationBook {
  readonly revocations = new Revocations();
  readonly #file: string;
  readonly #pinned: () => Promise<KeyObject[]>;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string, pinned: () => Promise<KeyObject[]>) {
    this.#file = file;
    this.#pinned = pinned;
  }

  async load(): Promise<void> {
    this.revocations.add(await readRevocationFile(this.#file), await this.#pinned());
  }

  /** Verifies and stores one statement; resolves with the keys it revokes. */
  add(envelope: Buffer): Promise<string[]> {
    const run = this.#queue.then(async () => {
      const statement = openRevocation(envelope, await this.#pinned());
      if (this.revocations.envelopes().length >= MAX_REVOCATION_STATEMENTS)
        throw new RswError(
          'RSW_ERR_REVOCATION_INVALID',
          'the head holds as many revocation statements as it allows',
        );
      if (this.revocations.add([envelope], await this.#pinned()) > 0)
        await writeRevocationFile(this.#file, this.revocations.envelopes());
      return statement.revoked;
    });
    this.#queue = run.catch(() => {});
    return run;
  }
}

/**
 *   GET  /api/keys/revocations   {revocations: [base64 envelope, …]}: every statement, for nodes to verify
 *   POST /api/keys/revocations   (admin) add one; body: its envelope bytes (application/octet-stream)
 */
export function revocationRoutes(book: RevocationBook) {
  return (app: FastifyInstance, requireAdmin: (req: FastifyRequest) => Promise<void>): void => {
    app.get('/api/keys/revocations', async () => ({
      revocations: book.revocations.envelopes().map((e) => e.toString('base64')),
      revoked: book.revocations.revokedKeys(),
    }));
    app.post('/api/keys/revocations', { onRequest: requireAdmin }, async (req) => {
      const envelope = await readCapped(
        bodyStream(req),
        MAX_REVOCATION_ENVELOPE_BYTES,
        req.headers['content-length'],
      );
      const revoked = await book.add(envelope);
      app.log.warn({ revoked }, 'publisher keys revoked');
      return { revoked };
    });
  };
}
