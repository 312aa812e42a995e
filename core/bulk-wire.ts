/*
 * The bulk data plane's two small messages (config `p2p.dataPlane`: "bulk-tcp"). Pure: bytes in, values out.
 *
 * token protocol, /rackswarm/bulk-token/1.0.0 (libp2p, so the asker is an authenticated peer id):
 *   client → server   nothing; the client half-closes
 *   server → client   one answer of TOKEN_ANSWER_BYTES:  u8 status | u16 port | u32 ttl ms | 32-byte token
 *                       ok (0)    a fresh random token, single use, bound to the asking peer id, valid `ttl` ms, for
 *                                 one TCP connection to `port` on the host the client reached over libp2p
 *                       busy (2)  too many tokens outstanding for this peer (or in all): use the chunk protocol
 *
 * bulk connection (plain TCP to that port), version 2 (persistent: one connection carries many batches):
 *   client → server   hello: "RSWB" | u8 version=2 | the 32-byte token, then any number of batches, one after
 *                     another; a batch is 1+ chunk request frames exactly as on /rackswarm/chunk/1.0.0
 *                     (core/wire.ts; pipelined, at most MAX_QUEUED_FRAMES queued), then a batch end: u16 0 (a
 *                     request frame declaring no hashes). The client half-closes to end the connection.
 *   server → client   for every hash, in order, a chunk response exactly as on /rackswarm/chunk/1.0.0; nothing for
 *                     a batch end. The server admits each *batch* under its limits (a batch holds one of the peer's
 *                     stream slots from its first frame to its batch end): a batch it cannot admit is answered
 *                     `busy` for every hash, and within a batch every answer after a `busy` is `busy` too, so a
 *                     client stops sending frames at the first `busy`, sends the batch end, reads the (empty)
 *                     answers still due, and the connection is ready for the next batch. Between batches a
 *                     connection holds no slot; the server closes one idle for BULK_IDLE_MS (the client closes its
 *                     own after BULK_CLIENT_IDLE_MS, earlier). The server closes once the client half-closed.
 *   version 1 (accepted by the server, no longer sent): no batch ends; the connection is one batch, ended by the
 *   client's half-close.
 *   A bad, expired or reused token, or anything but a hello, closes the connection without an answer. A token
 *   admits one connection; the connection may live on after the token's ttl.
 */
import { ProtocolError } from './wire.ts';

export const BULK_TOKEN_PROTOCOL = '/rackswarm/bulk-token/1.0.0';
export const BULK_TOKEN_BYTES = 32;
export const TOKEN_ANSWER_BYTES = 1 + 2 + 4 + BULK_TOKEN_BYTES;
const MAGIC = Buffer.from('RSWB', 'latin1');
/** The bulk connection version a client sends; the server also accepts 1. */
export const BULK_VERSION = 2;
export const BULK_HELLO_BYTES = MAGIC.length + 1 + BULK_TOKEN_BYTES;
/** Ends a batch on a version 2 connection: a request frame header declaring 0 hashes. */
export const BULK_BATCH_END: Uint8Array = Buffer.of(0, 0);
/** The server closes a version 2 connection that has had no batch open for this long. */
export const BULK_IDLE_MS = 60_000;
/** A client closes a pooled connection it has not used for this long (before the server's BULK_IDLE_MS). */
export const BULK_CLIENT_IDLE_MS = 20_000;

export type TokenAnswer = { status: 'ok'; port: number; ttlMs: number; token: Buffer } | { status: 'busy' };

export function encodeTokenAnswer(answer: TokenAnswer): Buffer {
  const out = Buffer.alloc(TOKEN_ANSWER_BYTES);
  if (answer.status === 'busy') {
    out[0] = 2;
    return out;
  }
  if (answer.token.length !== BULK_TOKEN_BYTES) throw new RangeError('a bulk token is 32 bytes');
  if (!Number.isInteger(answer.port) || answer.port < 1 || answer.port > 65535)
    throw new RangeError('bad port');
  out[0] = 0;
  out.writeUInt16BE(answer.port, 1);
  out.writeUInt32BE(answer.ttlMs, 3);
  answer.token.copy(out, 7);
  return out;
}

export function decodeTokenAnswer(buf: Uint8Array): TokenAnswer {
  if (buf.byteLength !== TOKEN_ANSWER_BYTES) throw new ProtocolError('bulk token answer has the wrong size');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b[0] === 2) return { status: 'busy' };
  if (b[0] !== 0) throw new ProtocolError(`unknown bulk token status ${b[0]}`);
  const port = b.readUInt16BE(1);
  if (port === 0) throw new ProtocolError('bulk token answer names port 0');
  return { status: 'ok', port, ttlMs: b.readUInt32BE(3), token: Buffer.from(b.subarray(7)) };
}

export function encodeBulkHello(token: Uint8Array, version: 1 | 2 = BULK_VERSION): Buffer {
  if (token.byteLength !== BULK_TOKEN_BYTES) throw new RangeError('a bulk token is 32 bytes');
  return Buffer.concat([MAGIC, Buffer.of(version), token]);
}

/** A complete hello's version and token; throws on a wrong magic or version (the server then closes the connection). */
export function decodeBulkHello(buf: Uint8Array): { version: 1 | 2; token: Buffer } {
  if (buf.byteLength !== BULK_HELLO_BYTES) throw new ProtocolError('bulk hello has the wrong size');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, MAGIC.length).equals(MAGIC)) throw new ProtocolError('not a rackswarm bulk hello');
  const version = b[MAGIC.length];
  if (version !== 1 && version !== 2) throw new ProtocolError(`bulk protocol version ${version}`);
  return { version, token: Buffer.from(b.subarray(MAGIC.length + 1)) };
}
