import { randomBytes } from 'node:crypto';
import { link, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { noise } from '@chainsafe/libp2p-noise';
import type { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { ConnectionGater, Libp2p, PrivateKey } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';
import { type Config, loadConfig } from '../core/config.ts';
import { count, countersOn } from '../core/counters.ts';
import { RswError } from '../core/errors.ts';
import { ensureWritableDir, fsyncDir } from '../core/fs-atomic.ts';
import { HAVE_PROTOCOLS } from '../core/wire.ts';
import { tlsReusingCertificate } from './libp2p-tls.ts';
import { smallFrameYamux } from './yamux-window.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Yamux stream settings shared by every rackswarm node. They must be identical on both ends of a connection: a
 * mismatch kills the connection with ReceiveWindowExceededError (LIBP2P-NOTES.md). `maxReadBufferLength` is twice
 * the largest window because a paused stream keeps receiving up to one window, on top of what was unread when it
 * paused (the default 4 MiB resets a paused stream once the window has grown past it).
 */
export const YAMUX_STREAM_OPTIONS = {
  initialStreamWindowSize: 256 * KiB,
  maxStreamWindowSize: 4 * MiB,
  maxReadBufferLength: 8 * MiB,
  /** Streams with no traffic in either direction for this long are aborted (a dead peer cannot pin a slot). */
  inactivityTimeout: 120_000,
} as const;

/** A dial, and an inbound connection's upgrade (encryption + muxer), must complete within this; see createP2PNode. */
const UPGRADE_TIMEOUT_MS = 30_000;

export interface P2PNodeInit {
  /** ed25519 identity (libp2p protobuf encoding); created 0600 on first use, so the peer id survives restarts. */
  keyFile: string;
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`; `[]` for a dial-only node. */
  listen: string[];
  /** Connection limits and encryption (config schema `p2p`, where the defaults and their reasons live). @default loadConfig().p2p */
  limits?: Partial<Config['p2p']>;
  /** Refuse peers outside an allow-list (denyInboundEncryptedConnection etc.). */
  connectionGater?: ConnectionGater;
  /** Start listening before returning. @default true */
  start?: boolean;
}

/**
 * A libp2p node for a LAN cluster: TCP + TLS 1.3 or Noise (config `p2p.encryption`) + Yamux, a persistent ed25519 identity, and no public-internet services
 * (no bootstrap list, DHT, AutoNAT or UPnP: peers learn each other from the tracker).
 */
export async function createP2PNode(init: P2PNodeInit): Promise<Libp2p> {
  const privateKey = await loadOrCreatePeerKey(init.keyFile);
  const limits = { ...loadConfig().p2p, ...init.limits };
  const node = await createLibp2p({
    privateKey,
    start: init.start ?? true,
    addresses: { listen: init.listen },
    transports: [tcp()],
    connectionEncrypters: limits.encryption.map((e) => (e === 'tls' ? tlsReusingCertificate() : noise())),
    streamMuxers: [countingYamux(smallFrameYamux({ streamOptions: YAMUX_STREAM_OPTIONS }, HAVE_PROTOCOLS))],
    connectionGater: init.connectionGater,
    connectionManager: {
      maxConnections: limits.maxConnections,
      inboundConnectionThreshold: limits.inboundConnectionThreshold,
      maxIncomingPendingConnections: limits.maxIncomingPendingConnections,
      // libp2p's defaults are 10 s (6 s per address on a dial): in a swarm that starts at once (16 nodes on 2 cores,
      // each opening ~30 connections) TLS handshakes slow down with the CPU and were aborted by the hundred, and each
      // abort threw its work away and started again (docs/BENCHMARKS.md). Pending inbound upgrades stay bounded by
      // maxIncomingPendingConnections; a peer is dialled at one address (the tracker's), so no other waits behind it.
      inboundUpgradeTimeout: UPGRADE_TIMEOUT_MS,
      dialTimeout: UPGRADE_TIMEOUT_MS,
      addressDialTimeout: UPGRADE_TIMEOUT_MS,
    },
    connectionMonitor: {
      pingInterval: limits.pingIntervalMs,
    },
  });
  countHandledStreams(node);
  return node;
}

type YamuxFactory = ReturnType<typeof yamux>;
type YamuxFrame = { header: { type: number; flag: number; streamID: number; length: number } };
type YamuxProto = {
  handleFrame(frame: YamuxFrame): void;
  sendFrame(header: YamuxFrame['header'], data?: unknown): unknown;
  __rswCounted?: boolean;
};
/** Yamux frame types and flags (the spec's numbers). */
const FRAME_TYPES = ['data', 'windowUpdate', 'ping', 'goAway'];

/**
 * With RSW_COUNTERS=1 (core/counters.ts), every Yamux frame received and sent is counted by type (`yamux.in.data`,
 * `yamux.out.windowUpdate`, …; with a SYN or FIN flag also `….syn` / `….fin`): the muxer's prototype is wrapped once,
 * on the first connection. Off, the factory is returned as it is.
 */
function countingYamux(factory: YamuxFactory): YamuxFactory {
  if (!countersOn()) return factory;
  return () => {
    const muxer = factory();
    const create = muxer.createStreamMuxer.bind(muxer);
    muxer.createStreamMuxer = (maConn) => {
      const m = create(maConn);
      const proto = Object.getPrototypeOf(m) as YamuxProto;
      if (!proto.__rswCounted && typeof proto.handleFrame === 'function') {
        proto.__rswCounted = true;
        const handle = proto.handleFrame;
        const send = proto.sendFrame;
        const tally = (dir: string, h: YamuxFrame['header']) => {
          const kind = `yamux.${dir}.${FRAME_TYPES[h.type] ?? h.type}`;
          count(kind);
          if (h.flag & 1) count(`${kind}.syn`);
          if (h.flag & 4) count(`${kind}.fin`);
          if (h.type === 0) count(`yamux.${dir}.dataBytes`, h.length);
        };
        proto.handleFrame = function (this: YamuxProto, frame) {
          tally('in', frame.header);
          return handle.call(this, frame);
        };
        proto.sendFrame = function (this: YamuxProto, header, data) {
          tally('out', header);
          return send.call(this, header, data);
        };
      }
      return m;
    };
    return muxer;
  };
}

const handled = new WeakMap<Libp2p, Map<string, number>>();
/** Peers whose counts are kept at most (the oldest counted first are dropped). */
const MAX_COUNTED_PEERS = 65_536;

/**
 * Counts, per remote peer id, the inbound streams that reached one of this node's protocol handlers — whatever the
 * protocol, as the handler sees it. The closed mesh's proof (docs/RELIABILITY.md item 6) reads it: a refused peer
 * must stay at 0.
 */
function countHandledStreams(node: Libp2p): void {
  const counts = new Map<string, number>();
  handled.set(node, counts);
  const handle = node.handle.bind(node);
  node.handle = (protocol, handler, options) =>
    handle(
      protocol,
      (stream, connection) => {
        const id = connection.remotePeer.toString();
        count(`streams.in.${stream.protocol}`);
        counts.set(id, (counts.get(id) ?? 0) + 1);
        if (counts.size > MAX_COUNTED_PEERS) counts.delete(counts.keys().next().value as string);
        return handler(stream, connection);
      },
      options,
    );
}

/**
 * Stops the node and lets the process exit at once. libp2p 3's address manager answers the transports' closing with a
 * debounced peer-store update, a 1 s timer that nothing clears after stop(): every process that stopped its node
 * stayed alive one more second doing nothing (a fetch's exit came ~1 s after its summary). The timer's work — our
 * own addresses into the peer store of a stopped node — is moot, so it is cancelled; if libp2p's internals differ
 * (another version), the node is stopped as before.
 */
export async function stopP2PNode(node: Libp2p): Promise<void> {
  await node.stop();
  const update = (
    node as { components?: { addressManager?: { _updatePeerStoreAddresses?: { stop?: () => void } } } }
  ).components?.addressManager?._updatePeerStoreAddresses;
  update?.stop?.();
}

/** Inbound streams from `peerId` that reached a protocol handler of `node` (see countHandledStreams). */
export function streamsHandled(node: Libp2p, peerId: string): number {
  return handled.get(node)?.get(peerId) ?? 0;
}

/** Every peer with handled inbound streams, and how many. */
export function handledStreamCounts(node: Libp2p): Record<string, number> {
  return Object.fromEntries(handled.get(node) ?? []);
}

/**
 * Reads the node's private key from `keyFile`, or creates it: written to a temp file (0600), fsynced, then hard-linked
 * into place, so a crash never leaves a torn key and two processes starting at once end up with the same identity.
 */
export async function loadOrCreatePeerKey(keyFile: string): Promise<PrivateKey> {
  const existing = await readPeerKey(keyFile);
  if (existing) return existing;
  await ensureWritableDir(dirname(keyFile));
  const key = await generateKeyPair('Ed25519');
  const tmp = join(dirname(keyFile), `.peer-key.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    try {
      await fh.writeFile(privateKeyToProtobuf(key));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, keyFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // another process created it first: use theirs
    const theirs = await readPeerKey(keyFile);
    if (theirs) return theirs;
    throw e;
  } finally {
    await unlink(tmp).catch(() => {});
  }
  await fsyncDir(dirname(keyFile));
  return key;
}

async function readPeerKey(keyFile: string): Promise<PrivateKey | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(keyFile);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new RswError('RSW_ERR_FILE_UNREADABLE', `cannot read peer key ${keyFile}: ${code}`);
  }
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(bytes);
  } catch {
    throw new RswError(
      'RSW_ERR_KEY_INVALID',
      `${keyFile} is not a libp2p private key (corrupt or wrong file?)`,
    );
  }
  if (key.type !== 'Ed25519') {
    throw new RswError('RSW_ERR_KEY_INVALID', `${keyFile} is a ${key.type} key; rackswarm peers use Ed25519`);
  }
  return key;
}
