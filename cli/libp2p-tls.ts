import type { Duplex } from 'node:stream';
import { connect, createSecureContext, type PeerCertificate, type SecureContext, TLSSocket } from 'node:tls';
import {
  type AbortOptions,
  type ComponentLogger,
  type ConnectionEncrypter,
  InvalidCryptoExchangeError,
  type MessageStream,
  type PeerId,
  type PrivateKey,
  type SecureConnectionOptions,
  type SecuredConnection,
  type StreamMuxerFactory,
  serviceCapabilities,
  UnexpectedPeerError,
  type Upgrader,
} from '@libp2p/interface';
import { PROTOCOL } from '@libp2p/tls';
import { toMessageStream, toNodeDuplex } from '@libp2p/tls/utils';
import { count, countersOn } from '../core/counters.ts';
import { takeTcpSocket } from './libp2p-tcp-socket.ts';
import { makeLibp2pCertificate, verifyLibp2pCertificate } from './libp2p-tls-verify.ts';

/**
 * libp2p's TLS 1.3 handshake (https://github.com/libp2p/specs/blob/master/tls/tls.md), as @libp2p/tls does it, with
 * one difference: the self-signed certificate that carries this node's identity — a fresh ECDSA key, signed by the
 * node's ed25519 key — is made once per process and reused for every connection, in one TLS context. @libp2p/tls
 * makes a new one per connection (~5 ms of CPU: keygen, a signature, x509 and PEM encoding), and Node parses its PEM
 * into a new context each time. The spec allows either ("Endpoints MAY generate a new key and certificate for every
 * connection attempt, or they MAY reuse the same key and certificate for multiple connections"); peers cannot tell
 * the difference, so every version of rackswarm interoperates. Why: a swarm that starts at once opens ~2 connections
 * per neighbour per node on a busy CPU (docs/BENCHMARKS.md, "Where the testbed's CPU goes").
 *
 * The certificate is valid for as long as @libp2p/tls makes them (about a century), so one per process never expires.
 * And a second: a peer's certificate, once verified, is remembered by its exact DER bytes (VerifiedCertificates), so
 * the next connection with the same certificate — our peers reuse theirs too — skips the x509 parse and the two
 * signature checks (4.4 % of a testbed node's CPU at N = 16, docs/BENCHMARKS.md). Nothing unverified is trusted: the
 * TLS handshake itself proves the peer holds the certificate's key, and only byte-identical certificates hit. A
 * third: the certificate is made, and a peer's verified in full, by Node's crypto and X.509 (cli/libp2p-tls-verify.ts)
 * — the same certificate and the same checks as @libp2p/tls, at a fraction of @peculiar/x509's CPU. A fourth: on a
 * connection @libp2p/tcp made, Node's TLS runs on the TCP socket itself (cli/libp2p-tcp-socket.ts), not over a
 * JavaScript Duplex of the connection as @libp2p/tls does (any other connection still takes that path): the same
 * TLS 1.3 bytes on the wire, ~2× the libp2p data plane's MB/s (docs/BENCHMARKS.md, "Fetch").
 *
 * Everything else — the peer's certificate verified against the expected peer id, early muxer negotiation by ALPN,
 * TLS 1.3 only — is @libp2p/tls 3.1's code (dist/src/tls.js), kept in step with it.
 */
export function tlsReusingCertificate(): (components: TlsComponents) => ConnectionEncrypter {
  return (components) => new ReusingTls(components);
}

let made = 0;
/** Certificates this process has made for libp2p TLS so far (for tests: one per node, however many connections). */
export function tlsCertificatesMade(): number {
  return made;
}

let verified = 0;
/** Peer certificates this process has verified in full so far (the others came from a node's cache). */
export function tlsCertificatesVerified(): number {
  return verified;
}

/** Verified certificates a node remembers (the oldest are forgotten first): more than a swarm's neighbours. */
const VERIFIED_CERTIFICATES = 1024;

/** Peer certificates verified in full (verifyLibp2pCertificate), by their exact DER bytes. */
class VerifiedCertificates {
  readonly #byDer = new Map<string, { peer: PeerId; notBefore: number; notAfter: number }>();

  async verify(cert: PeerCertificate, expected: PeerId | undefined): Promise<PeerId> {
    const der = cert.raw.toString('base64');
    const now = Date.now();
    const hit = this.#byDer.get(der);
    if (hit && hit.notBefore <= now && now <= hit.notAfter) {
      if (expected?.equals(hit.peer) === false) throw new UnexpectedPeerError();
      return hit.peer;
    }
    const peer = await verifyLibp2pCertificate(cert.raw, expected);
    verified++;
    const notBefore = Date.parse(cert.valid_from);
    const notAfter = Date.parse(cert.valid_to);
    if (Number.isFinite(notBefore) && Number.isFinite(notAfter)) {
      if (this.#byDer.size >= VERIFIED_CERTIFICATES)
        this.#byDer.delete(this.#byDer.keys().next().value as string);
      this.#byDer.set(der, { peer, notBefore, notAfter });
    }
    return peer;
  }
}

export interface TlsComponents {
  privateKey: PrivateKey;
  logger: ComponentLogger;
  upgrader: Upgrader;
}

class HandshakeTimeoutError extends Error {
  constructor() {
    super('Handshake timeout');
    this.name = 'HandshakeTimeoutError';
  }
}

class ReusingTls implements ConnectionEncrypter {
  readonly protocol = PROTOCOL;
  readonly [Symbol.toStringTag] = '@libp2p/tls';
  readonly [serviceCapabilities] = ['@libp2p/connection-encryption'];
  readonly #components: TlsComponents;
  readonly #log: ReturnType<ComponentLogger['forComponent']>;
  /** This node's certificate and key in a TLS context, made on the first handshake (a failure is retried next time). */
  #context: Promise<SecureContext> | undefined;
  readonly #verified = new VerifiedCertificates();

  constructor(components: TlsComponents) {
    this.#components = components;
    this.#log = components.logger.forComponent('libp2p:tls');
  }

  secureInbound(connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
    return this.#encrypt(connection, true, options);
  }

  secureOutbound(connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
    return this.#encrypt(connection, false, options);
  }

  #secureContext(options?: AbortOptions): Promise<SecureContext> {
    if (!this.#context) {
      // Not aborted with this handshake: the certificate outlives it.
      const context = makeLibp2pCertificate(this.#components.privateKey).then(({ cert, key }) => {
        made++;
        return createSecureContext({ cert, key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
      });
      this.#context = context;
      context.catch(() => {
        if (this.#context === context) this.#context = undefined;
      });
    }
    const context = this.#context;
    const signal = options?.signal;
    if (!signal) return context;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new HandshakeTimeoutError());
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      context.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async #encrypt(
    connection: MessageStream,
    isServer: boolean,
    options?: SecureConnectionOptions,
  ): Promise<SecuredConnection> {
    const log = connection.log?.newScope('tls') ?? this.#log;
    let streamMuxer: StreamMuxerFactory | undefined;
    const muxers = this.#components.upgrader.getStreamMuxers();
    const streamMuxers = options?.skipStreamMuxerNegotiation === true ? [] : [...muxers.keys()];
    const secureContext = await this.#secureContext(options);
    const opts = {
      secureContext,
      // require TLS 1.3 or later
      minVersion: 'TLSv1.3' as const,
      maxVersion: 'TLSv1.3' as const,
      // accept self-signed certificates: the libp2p extension is checked below instead
      rejectUnauthorized: false,
      // early negotiation of the muxer via ALPN
      ALPNProtocols: [...streamMuxers, 'libp2p'],
      ALPNCallback: ({ protocols }: { servername: string; protocols: string[] }) => {
        let chosen: string | undefined;
        for (const protocol of protocols) {
          if (protocol === 'libp2p') chosen = 'libp2p';
          streamMuxer = muxers.get(protocol);
          if (streamMuxer != null) {
            chosen = protocol;
            break;
          }
        }
        return chosen;
      },
    };
    // Node's TLS straight on @libp2p/tcp's socket when there is one (cli/libp2p-tcp-socket.ts), else over a Duplex.
    const secure = (under: Duplex) =>
      isServer
        ? new TLSSocket(under, { ...opts, isServer: true, requestCert: true })
        : connect({ socket: under, ...opts });
    const socket = takeTcpSocket(connection, secure) ?? overDuplex(connection, secure);
    const onAbort = () => socket.emit('error', new HandshakeTimeoutError());
    options?.signal?.addEventListener('abort', onAbort);
    try {
      return await new Promise<SecuredConnection>((resolve, reject) => {
        const verifyRemote = () => {
          this.#verified
            .verify(socket.getPeerCertificate(), options?.remotePeer)
            .then((remotePeer: PeerId) => {
              // 'libp2p' is special: the remote does not support early muxer negotiation
              if (
                !isServer &&
                typeof socket.alpnProtocol === 'string' &&
                socket.alpnProtocol !== 'libp2p' &&
                options?.skipStreamMuxerNegotiation !== true
              ) {
                streamMuxer = muxers.get(socket.alpnProtocol);
                if (streamMuxer == null) {
                  const err = new InvalidCryptoExchangeError(
                    `Selected muxer ${socket.alpnProtocol} did not exist`,
                  );
                  connection.abort(err);
                  reject(err);
                  return;
                }
              }
              resolve({
                remotePeer,
                connection: corked(toMessageStream(connection, socket), socket),
                streamMuxer,
              });
            })
            .catch((err: Error) => socket.emit('error', err));
        };
        socket.on('error', (err: Error) => {
          log.error('error encrypting %s connection - %e', connection.direction, err);
          socket.destroy();
          connection.abort(err);
          reject(err);
        });
        socket.once('secure', verifyRemote);
        // A TCP connection closed before the handshake ends (its socket closes the TLS socket without an error).
        socket.once('close', () =>
          reject(new InvalidCryptoExchangeError('connection closed during the TLS handshake')),
        );
      });
    } finally {
      options?.signal?.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * The encrypted connection's small writes joined until the end of the tick: @libp2p/tls writes each buffer of a
 * message (a Yamux frame's header, then its body) with its own `socket.write`, and every frame on its own, so each
 * became a TLS record and a write(2) of its own — a have message and the Window Update it draws were 4 records.
 * Here a message up to SMALL_WRITE bytes is joined into one buffer (a small copy) and written corked; the writes of
 * one tick then reach the TLS socket as one writev, which Node's TLSWrap joins into one SSL_write: one record (up to
 * 16 KiB) and one system call. A larger message first uncorks (what was joined goes first), then goes as before.
 * Measured (`node bench/libp2p-tls.ts --runs 3 --against <main>`, both ends in one process): a 64-byte round trip
 * 131 against 155 CPU µs and 47 against 54 µs; one stream's bulk throughput the same within the runs' spread.
 */
const SMALL_WRITE = 4096;

function corked(ms: MessageStream, socket: TLSSocket): MessageStream {
  const conn = ms as MessageStream & {
    sendData(data: { byteLength: number; slice(): Uint8Array }): { sentBytes: number; canSendMore: boolean };
  };
  const send = conn.sendData.bind(conn);
  let scheduled = false;
  // RSW_COUNTERS=1: the decrypted reads (`tls.in.reads`), the messages sent small and large, the corked writes.
  if (countersOn()) {
    socket.on('data', (d: Buffer) => {
      count('tls.in.reads');
      count('tls.in.bytes', d.length);
    });
  }
  const uncork = () => {
    if (!scheduled) return;
    scheduled = false;
    socket.uncork();
  };
  conn.sendData = (data) => {
    if (data.byteLength > SMALL_WRITE || socket.destroyed) {
      count('tls.out.large');
      uncork();
      return send(data);
    }
    count('tls.out.small');
    if (!scheduled) {
      count('tls.out.corkedWrites');
      scheduled = true;
      socket.cork();
      process.nextTick(uncork);
    }
    const canSendMore = socket.write(data.slice()); // a copy, its buffers joined
    return { sentBytes: data.byteLength, canSendMore };
  };
  return ms;
}

/** @libp2p/tls's way: TLS over a Node Duplex that reads and writes the MessageStream (through Node's JSStreamSocket). */
function overDuplex(connection: MessageStream, secure: (under: Duplex) => TLSSocket): TLSSocket {
  const duplex = toNodeDuplex(connection);
  const socket = secure(duplex);
  duplex.on('error', (err) => socket.emit('error', err));
  return socket;
}
