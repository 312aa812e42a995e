import { Socket } from 'node:net';
import type { MessageStream } from '@libp2p/interface';

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
 * TLS socket's reads and writes refresh its parent's timer: net.js `_unrefTimer` walks `_parent`), and the multiaddr
 * connection's close/abort still end or reset the TCP connection.
 *
 * Anything else — another transport, a connection protector, an in-memory stream in a test — returns undefined: the
 * caller keeps the Duplex path.
 */
export function takeTcpSocket(connection: MessageStream): Socket | undefined {
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
  taken++;
  return socket;
}

let taken = 0;
/** Connections whose TCP socket this process has handed to Node's TLS directly (for tests: the native path ran). */
export function tcpSocketsTaken(): number {
  return taken;
}
