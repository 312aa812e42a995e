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
 * bulk connection (plain TCP to that port):
 *   client → server   hello: "RSWB" | u8 version=1 | the 32-byte token, then chunk request frames exactly as on
 *                     /rackswarm/chunk/1.0.0 (core/wire.ts), half-closing after the last one
 *   server → client   chunk responses exactly as on /rackswarm/chunk/1.0.0, then closes
 *   A bad, expired or reused token, or anything but a hello, closes the connection without an answer.
 */
import { ProtocolError } from './wire.ts';

export const BULK_TOKEN_PROTOCOL = '/rackswarm/bulk-token/1.0.0';
export const BULK_TOKEN_BYTES = 32;
export const TOKEN_ANSWER_BYTES = 1 + 2 + 4 + BULK_TOKEN_BYTES;
const MAGIC = Buffer.from('RSWB', 'latin1');
const VERSION = 1;
export const BULK_HELLO_BYTES = MAGIC.length + 1 + BULK_TOKEN_BYTES;

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

export function encodeBulkHello(token: Uint8Array): Buffer {
  if (token.byteLength !== BULK_TOKEN_BYTES) throw new RangeError('a bulk token is 32 bytes');
  return Buffer.concat([MAGIC, Buffer.of(VERSION), token]);
}

/** The token of a complete hello; throws on a wrong magic or version (the server then closes the connection). */
export function decodeBulkHello(buf: Uint8Array): Buffer {
  if (buf.byteLength !== BULK_HELLO_BYTES) throw new ProtocolError('bulk hello has the wrong size');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, MAGIC.length).equals(MAGIC)) throw new ProtocolError('not a rackswarm bulk hello');
  if (b[MAGIC.length] !== VERSION) throw new ProtocolError(`bulk protocol version ${b[MAGIC.length]}`);
  return Buffer.from(b.subarray(MAGIC.length + 1));
}
