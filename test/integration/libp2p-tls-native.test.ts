// libp2p TLS run by Node natively on @libp2p/tcp's socket (cli/libp2p-tcp-socket.ts), between real libp2p nodes over
// TCP on 127.0.0.1: the native path is taken, stock @libp2p/tls (over its JS Duplex) interoperates with it both ways,
// many streams carry MiBs both ways intact, a connection reset or closed mid-stream tears down cleanly, a handshake
// aborted by its signal closes the TCP connection, and TLS bytes that arrive in the same segment as the
// multistream-select negotiation still reach TLS.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p, Stream, Upgrader } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { tcp } from '@libp2p/tcp';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { pEvent } from 'p-event';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tcpSocketsTaken } from '../../cli/libp2p-tcp-socket.ts';
import { tlsReusingCertificate } from '../../cli/libp2p-tls.ts';
import { makeLibp2pCertificate } from '../../cli/libp2p-tls-verify.ts';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { tempDir } from '../helpers/cli.ts';
import { oursNode, stockTlsNode } from '../helpers/tls-nodes.ts';

const ECHO = '/rsw-test/echo-bytes/1.0.0';
const KiB = 1024;
let t: ReturnType<typeof tempDir>;
const stops: Array<() => unknown> = [];

beforeAll(() => {
  t = tempDir('rsw-tls-native-');
});
afterAll(async () => {
  for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  t?.cleanup();
});

/** Echoes every byte back on the same stream (honouring drain) and closes its end after the remote closed its own. */
async function withEcho(node: Libp2p): Promise<Libp2p> {
  stops.push(() => node.stop());
  await node.handle(
    ECHO,
    (stream) => {
      const queue: Uint8Array[] = [];
      let remoteDone = false;
      const flush = () => {
        while (queue.length > 0) {
          if (stream.writeStatus !== 'writable') return;
          if (!stream.send(queue.shift() as Uint8Array)) return;
        }
        if (remoteDone) stream.close().catch(() => {});
      };
      stream.addEventListener('message', (e) => {
        queue.push(e.data.subarray());
        flush();
      });
      stream.addEventListener('drain', flush);
      stream.addEventListener('remoteCloseWrite', () => {
        remoteDone = true;
        flush();
      });
    },
    { maxInboundStreams: 64 },
  );
  return node;
}

async function ours(name: string): Promise<Libp2p> {
  return withEcho(await oursNode(t.dir, name));
}

async function stock(): Promise<Libp2p> {
  return withEcho(await stockTlsNode());
}

/** Sends `bytes` on a new ECHO stream in 64 KiB sends and resolves with the sha256 of what came back, once closed. */
async function echoBytes(from: Libp2p, to: Libp2p, bytes: Uint8Array): Promise<string> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], ECHO);
  return echoOn(stream, bytes);
}

/** The sha256 of every byte the stream brings back, once it has closed. */
function echoed(stream: Stream): Promise<string> {
  const hash = createHash('sha256');
  return new Promise<string>((resolve, reject) => {
    stream.addEventListener('message', (e) => {
      hash.update(e.data.subarray());
    });
    stream.addEventListener('close', (e) => (e.error ? reject(e.error) : resolve(hash.digest('hex'))));
  });
}

function echoOn(stream: Stream, bytes: Uint8Array): Promise<string> {
  const done = echoed(stream);
  return (async () => {
    for (let at = 0; at < bytes.byteLength; at += 64 * KiB) {
      if (!stream.send(bytes.subarray(at, at + 64 * KiB)))
        await pEvent(stream, 'drain', { rejectionEvents: ['close'] });
    }
    await stream.close();
    return done;
  })();
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function gone(a: Libp2p, b: Libp2p): Promise<void> {
  await vi.waitFor(
    () => {
      expect(a.getConnections(b.peerId)).toHaveLength(0);
      expect(b.getConnections(a.peerId)).toHaveLength(0);
    },
    { timeout: 10_000, interval: 20 },
  );
}

describe('libp2p TLS natively on the TCP socket', () => {
  it('is taken on both ends between our nodes, on ours only with stock @libp2p/tls, both ways', async () => {
    const a = await ours('a');
    const b = await ours('b');
    const s = await stock();
    const data = randomBytes(256 * KiB);
    for (const [from, to, natives] of [
      [a, b, 2],
      [b, a, 2],
      [a, s, 1],
      [s, a, 1],
    ] as const) {
      const before = tcpSocketsTaken();
      expect(await echoBytes(from, to, data)).toBe(sha(data));
      expect(tcpSocketsTaken() - before).toBe(natives);
      await from.hangUp(to.peerId); // a clean close over the native TLS socket reaches the other end
      await gone(from, to);
    }
  }, 60_000);

  it('carries many streams and a few MiB both ways on one connection', async () => {
    const a = await ours('many-a');
    const b = await ours('many-b');
    const s = await stock();
    for (const other of [b, s]) {
      await a.dial(other.getMultiaddrs()[0]); // one connection, which both directions' streams then share
      await vi.waitFor(() => expect(other.getConnections(a.peerId)).toHaveLength(1), {
        timeout: 10_000,
        interval: 20,
      });
      const sends = Array.from({ length: 16 }, () => randomBytes(384 * KiB)); // 6 MiB each way
      const back = await Promise.all(
        sends.map((d, i) => (i % 2 ? echoBytes(a, other, d) : echoBytes(other, a, d))),
      );
      expect(back).toEqual(sends.map(sha));
      expect(a.getConnections(other.peerId)).toHaveLength(1);
    }
  }, 60_000);

  it('carries small messages sent in one tick (joined into one TLS write) and large ones between them, in order', async () => {
    const a = await ours('tick-a');
    const b = await ours('tick-b');
    const s = await stock();
    for (const other of [b, s]) {
      const stream = await a.dialProtocol(other.getMultiaddrs()[0], ECHO);
      const done = echoed(stream);
      // one synchronous burst: 300 messages of 1-300 bytes (the joined path), every 50th of 5-20 KiB (written as
      // before, after what was joined)
      const sent: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        const msg = i % 50 === 49 ? randomBytes((5 + (i % 16)) * KiB) : randomBytes(1 + (i % 300));
        sent.push(msg);
        stream.send(msg);
      }
      await stream.close();
      expect(await done).toBe(sha(Buffer.concat(sent)));
    }
  }, 30_000);

  it('tears down a connection reset or closed mid-stream, and dials again', async () => {
    const a = await ours('reset-a');
    const b = await ours('reset-b');
    const s = await stock();
    for (const [other, how] of [
      [b, 'abort'],
      [s, 'abort'],
      [b, 'close'],
      [s, 'close'],
    ] as const) {
      const stream = await a.dialProtocol(other.getMultiaddrs()[0], ECHO);
      const result = echoOn(stream, randomBytes(64 * 1024 * KiB)).then(
        () => 'completed',
        () => 'failed',
      );
      await pEvent(stream, 'message'); // bytes are flowing both ways
      const conn = other.getConnections(a.peerId)[0];
      if (how === 'abort') conn.abort(new Error('reset mid-stream'));
      else await conn.close();
      expect(await result).toBe('failed');
      await gone(a, other);
      const again = randomBytes(32 * KiB);
      expect(await echoBytes(a, other, again)).toBe(sha(again));
    }
  }, 90_000);

  it('survives a gater that refuses the peer right after the handshake, on either end, against ours and stock', async () => {
    // The refusal aborts the connection in the microtasks of the handshake's own callback, on OpenSSL's stack: a reset
    // of the TCP socket under the live TLS socket there freed the SSL that SSL_read went on reading (SIGSEGV).
    const refuseAll = {
      denyInboundEncryptedConnection: async () => true,
      denyOutboundEncryptedConnection: async () => true,
    };
    const refuser = await createP2PNode({
      keyFile: join(t.dir, 'refuser.key'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      connectionGater: refuseAll,
    });
    stops.push(() => refuser.stop());
    const others = [await ours('refused'), await stock()];
    const before = tcpSocketsTaken();
    for (let round = 0; round < 3; round++) {
      for (const other of others) {
        await expect(refuser.dial(other.getMultiaddrs()[0])).rejects.toThrow();
        await other.dial(refuser.getMultiaddrs()[0]).catch(() => {}); // the dialler may finish first; refuser aborts
        await gone(refuser, other);
      }
    }
    expect(tcpSocketsTaken() - before).toBeGreaterThanOrEqual(6);
    // Both ends are alive and still talk to each other.
    const bytes = randomBytes(64 * KiB);
    expect(await echoBytes(others[0], others[1], bytes)).toBe(sha(bytes));
  }, 60_000);

  it("keeps @libp2p/tcp's inactivity timeout: traffic through TLS keeps a connection, silence closes it", async () => {
    // The TCP socket's own timer is refreshed by the TLS socket's reads and writes (net.js walks `_parent`).
    const short = async (): Promise<Libp2p> =>
      withEcho(
        await createLibp2p({
          privateKey: await generateKeyPair('Ed25519'),
          addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
          transports: [tcp({ inboundSocketInactivityTimeout: 1500, outboundSocketInactivityTimeout: 1500 })],
          connectionEncrypters: [tlsReusingCertificate()],
          streamMuxers: [yamux()],
        }),
      );
    const [a, b] = [await short(), await short()];
    const before = tcpSocketsTaken();
    const stream = await a.dialProtocol(b.getMultiaddrs()[0], ECHO);
    expect(tcpSocketsTaken() - before).toBe(2);
    const echoed = new Promise<void>((resolve) =>
      stream.addEventListener('message', () => resolve(), { once: true }),
    );
    for (let i = 0; i < 12; i++) {
      stream.send(new Uint8Array(16)); // 3 s of traffic, twice the timeout
      await new Promise((r) => setTimeout(r, 250));
    }
    await echoed;
    expect(a.getConnections(b.peerId)).toHaveLength(1);
    await gone(a, b); // then silence: closed by the timeout (within gone()'s 10 s)
  }, 30_000);

  it('closes the TCP connection when a handshake is aborted by its signal', async () => {
    const a = await ours('abort-a');
    // A listener that agrees to /tls/1.0.0 and then never answers the ClientHello.
    const closed: Array<Promise<unknown>> = [];
    const server = createServer((socket) => {
      closed.push(pEvent(socket, 'close'));
      socket.on('error', () => {});
      socket.once('data', () => socket.write(MSS_TLS_REPLY));
    });
    stops.push(() => server.close());
    await pEvent(server.listen(0, '127.0.0.1'), 'listening');
    const { port } = server.address() as { port: number };
    const silent = peerIdFromPrivateKey(await generateKeyPair('Ed25519'));
    const before = tcpSocketsTaken();
    await expect(
      a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${silent}`), { signal: AbortSignal.timeout(1500) }),
    ).rejects.toThrow();
    expect(tcpSocketsTaken() - before).toBe(1); // it was the native TLS socket that waited
    expect(closed).toHaveLength(1);
    await closed[0]; // our end closed the TCP connection
  }, 30_000);

  it('gets the TLS bytes that arrived in the same segment as the negotiation', async () => {
    const a = await ours('segment-a');
    const key = await generateKeyPair('Ed25519');
    const { cert, key: pem } = await makeLibp2pCertificate(key);
    const before = tcpSocketsTaken();
    const [, host, port] = /^\/ip4\/([^/]+)\/tcp\/(\d+)/.exec(a.getMultiaddrs()[0].toString()) ?? [];
    const raw = tcpConnect(Number(port), host);
    stops.push(() => raw.destroy());
    await pEvent(raw, 'connect');
    // A TLS client over a Duplex that puts its first record (the ClientHello) in the same write as the
    // multistream-select lines, and strips the listener's replies before TLS sees the bytes.
    let first = true;
    let reply = Buffer.alloc(0);
    const duplex = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        raw.write(first ? Buffer.concat([MSS_TLS_REQUEST, chunk]) : chunk, cb);
        first = false;
      },
      read() {},
    });
    raw.on('data', (d: Buffer) => {
      if (reply.byteLength < MSS_TLS_REPLY.byteLength) {
        reply = Buffer.concat([reply, d]);
        if (reply.byteLength < MSS_TLS_REPLY.byteLength) return;
        expect(reply.subarray(0, MSS_TLS_REPLY.byteLength)).toEqual(MSS_TLS_REPLY);
        d = reply.subarray(MSS_TLS_REPLY.byteLength);
      }
      if (d.byteLength > 0) duplex.push(d);
    });
    const client = tlsConnect({
      socket: duplex,
      cert,
      key: pem,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: false,
      ALPNProtocols: ['/yamux/1.0.0'],
    });
    stops.push(() => client.destroy());
    await pEvent(client, 'secureConnect', { timeout: 10_000 }); // without the pushed-back bytes: never
    expect(client.alpnProtocol).toBe('/yamux/1.0.0');
    // The node verified our certificate and counts a connection from our peer id.
    await vi.waitFor(() => expect(a.getConnections(peerIdFromPrivateKey(key))).toHaveLength(1), {
      timeout: 10_000,
      interval: 20,
    });
    expect(tcpSocketsTaken() - before).toBe(1);
  }, 30_000);

  it('keeps the Duplex path for a connection that is not a TCP socket (an in-memory pair)', async () => {
    const [outbound, inbound] = multiaddrConnectionPair();
    const make = async () => {
      const privateKey = await generateKeyPair('Ed25519');
      const encrypter = tlsReusingCertificate()({
        privateKey,
        logger: { forComponent: () => outbound.log },
        upgrader: { getStreamMuxers: () => new Map() } as unknown as Upgrader,
      });
      return { encrypter, peer: peerIdFromPrivateKey(privateKey) };
    };
    const [client, server] = [await make(), await make()];
    const before = tcpSocketsTaken();
    const [c, s] = await Promise.all([
      client.encrypter.secureOutbound(outbound, { remotePeer: server.peer }),
      server.encrypter.secureInbound(inbound),
    ]);
    expect(tcpSocketsTaken() - before).toBe(0);
    expect(c.remotePeer.equals(server.peer)).toBe(true);
    expect(s.remotePeer.equals(client.peer)).toBe(true);
    const got = new Promise<string>((resolve) =>
      s.connection.addEventListener('message', (e) => resolve(new TextDecoder().decode(e.data.subarray())), {
        once: true,
      }),
    );
    c.connection.send(new TextEncoder().encode('over the Duplex'));
    expect(await got).toBe('over the Duplex');
    outbound.abort(new Error('done'));
  }, 30_000);
});

/** multistream-select: a length-prefixed line for the protocol, and one for /tls/1.0.0 (both ways the same here). */
const lp = (line: string) => {
  const b = Buffer.from(`${line}\n`);
  return Buffer.concat([Buffer.from([b.byteLength]), b]);
};
const MSS_TLS_REQUEST = Buffer.concat([lp('/multistream/1.0.0'), lp('/tls/1.0.0')]);
const MSS_TLS_REPLY = MSS_TLS_REQUEST;
