import { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AbortOptions, MessageStream } from '@libp2p/interface';
import { pEvent } from 'p-event';

/**
 * The TCP socket under a libp2p connection that @libp2p/tcp made, taken over so that Node's TLS runs natively on it
 * (`new TLSSocket(socket)`: OpenSSL reads and writes the TCP handle in C++) instead of over a JavaScript Duplex.
 * Why: over the Duplex every TLS record crosses JavaScript twice more (Node's JSStreamSocket, a setImmediate per
 * write) on top of the socket's own 'data' events and the multiaddr connection's buffering — ~24 % of a testbed node's
 * CPU in its download window (docs/BENCHMARKS.md, "Session 8: where a node's CPU goes on the shaped link").
 *
 * @libp2p/tcp 11's TCPSocketMultiaddrConnection (socket-to-conn.js) keeps its `net.Socket` in `.socket` and, after
 * multistream-select, is what `secureInbound`/`secureOutbound` receive (no connection protector here). Taking it
 * over means: its 'data' listener leaves the socket (from here on the TLS socket reads the handle; the multiaddr
 * connection never sees a byte again), and the bytes it has read but nobody consumed — multistream-select hands back
 * what arrived in the same segment as its last message (lpStream's unwrap() → unshift() into the read buffer) — go
 * back into the socket, where `TLSSocket` feeds them to OpenSSL before anything else (_tls_wrap.js `_init`). Its
 * other listeners stay and still do their job: 'close' and 'error' tear the multiaddr connection down (the socket
 * closes when the TLS socket does, and the TLS socket when it does), 'timeout' still aborts an idle connection (the
 * TLS socket's reads and writes refresh its parent's timer: net.js `_unrefTimer` walks `_parent`).
 *
 * And the multiaddr connection's own close and abort go through the TLS socket (`tls(socket)` makes it): @libp2p/tcp
 * would end or reset the TCP socket under it. A reset frees the TLS socket's OpenSSL state at once (TLSWrap.close finds
 * its parent's handle gone and calls destroySSL), and when the abort runs on OpenSSL's stack — the gater refusing a
 * peer in the microtasks of the handshake's own callback, inside SSL_read — the SSL_read that follows reads freed
 * memory: the process dies with SIGSEGV (reproduced: a node whose `denyOutboundEncryptedConnection` refuses a stock
 * @libp2p/tls listener). Destroying the TLS socket first is Node's ordinary path: it destroys the TCP socket and
 * frees the SSL only on the socket's 'close'. The price: the remote sees a FIN where @libp2p/tcp sent a RST.
 *
 * Anything else — another transport, a connection protector, an in-memory stream in a test — returns undefined: the
 * caller keeps the Duplex path.
 */
export function takeTcpSocket(
  connection: MessageStream,
  tls: (socket: Socket) => TLSSocket,
): TLSSocket | undefined {
  const maConn = connection as MessageStream & {
    socket?: unknown;
    readBuffer?: unknown;
    readStatus?: string;
  };
  const socket = maConn.socket;
  const unread = maConn.readBuffer as
    | { byteLength: number; subarray(): Uint8Array; consume(bytes: number): void }
    | undefined;
  if (!(socket instanceof Socket) || socket.destroyed || socket.connecting) return undefined;
  if (
    typeof unread?.byteLength !== 'number' ||
    typeof unread.subarray !== 'function' ||
    typeof unread.consume !== 'function'
  )
    return undefined;
  if (connection.status !== 'open' || maConn.readStatus === 'closed' || maConn.readStatus === 'closing')
    return undefined;
  // The multiaddr connection's reader goes; nothing else reads a socket @libp2p/tcp gave us.
  socket.removeAllListeners('data');
  // Paused, so the bytes pushed back below wait in the socket for the TLS socket instead of being emitted now.
  socket.pause();
  if (unread.byteLength > 0) {
    const bytes = unread.subarray();
    unread.consume(bytes.byteLength);
    socket.unshift(bytes);
  }
  const secured = tls(socket);
  const closing = connection as unknown as {
    sendClose(options?: AbortOptions): Promise<void>;
    sendReset(err: Error): void;
  };
  closing.sendClose = async (options) => {
    if (socket.destroyed) return;
    const closed = pEvent(socket, 'close', options);
    secured.destroySoon();
    await closed;
  };
  closing.sendReset = () => {
    secured.destroy();
  };
  taken++;
  return secured;
}

let taken = 0;
/** Connections whose TCP socket this process has handed to Node's TLS directly (for tests: the native path ran). */
export function tcpSocketsTaken(): number {
  return taken;
}
