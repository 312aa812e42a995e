import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { parseChannelRef } from '../core/channel.ts';
import { ChunkCipher, plainLayout, readImageKeyFile } from '../core/chunk-cipher.ts';
import type { Config } from '../core/config.ts';
import { counterLine } from '../core/counters.ts';
import { DecryptingTarget, type ImageTarget } from '../core/decrypting-target.ts';
import { parsePeerId } from '../core/enrollment.ts';
import { asDataError, formatError, RswError } from '../core/errors.ts';
import { ensureWritableDir, writeFileAtomic } from '../core/fs-atomic.ts';
import { hashHex } from '../core/hash.ts';
import { loadTrust } from '../core/keys.ts';
import { type Manifest, parseVersion, validateImageName } from '../core/manifest.ts';
import { checkNotRollback, openSignedManifest, type RevokedKeys } from '../core/signed-manifest.ts';
import { chunkFetch } from '../peer/bulk-client.ts';
import { ChunkCache } from '../peer/chunk-cache.ts';
import { queryEnrolled } from '../peer/enrollment-client.ts';
import { Fetcher, type FetchProgress } from '../peer/fetcher.ts';
import { ImageWriter } from '../peer/image-writer.ts';
import { ResumeState } from '../peer/resume-state.ts';
import { fetchImageKey, fetchManifest } from '../peer/tracker-client.ts';
import type { BulkServer } from '../seeder/bulk-server.ts';
import { ChunkServer } from '../seeder/chunk-server.ts';
import { RackReserve } from '../seeder/rack-reserve.ts';
import { nodeTurnover } from '../seeder/serve-turnover.ts';
import { startBulkServer } from './bulk-plane.ts';
import { resolveChannel } from './channel-pointer.ts';
import { formatBytes } from './format.ts';
import { HeadClient } from './head-client.ts';
import { NodeMesh, Refusals } from './mesh.ts';
import { nodeRevocations } from './node-revocations.ts';
import { createP2PNode, handledStreamCounts, stopP2PNode } from './p2p-node.ts';
import { Preheater } from './preheater.ts';
import { byteProgress } from './progress.ts';
import { onInterrupt } from './signals.ts';
import { startSteps } from './start-steps.ts';

export interface FetchOptions {
  head: string;
  trust: string[];
  out: string;
  cache?: string;
  rack?: string;
  host?: string;
  linger?: string;
  json?: boolean;
  /** An encrypted image's key file (otherwise the head releases it: closed mesh only). */
  imageKey?: string;
  /** The head's peer id, pinned (overrides config `mesh.headPeerId`). */
  headPeerId?: string;
  /** This node's libp2p identity (a booted node's comes from its initramfs). @default CACHE/peer.key */
  peerKey?: string;
}

function parseImageRef(ref: string): { name: string; version: number | 'latest' } {
  const at = ref.lastIndexOf('@');
  const name = at < 0 ? ref : ref.slice(0, at);
  validateImageName(name);
  return { name, version: at < 0 ? 'latest' : parseVersion(ref.slice(at + 1)) };
}

/** The newest version of each image this node has accepted: a manifest older than that is refused (rollback). */
async function readSeen(file: string): Promise<Record<string, number>> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

/** What a caller composing a fetch (the boot agent) can hook into. */
export interface FetchHooks {
  /** Called with the summary once the image is complete and verified, before lingering (the boot agent pivots here). */
  onComplete?: (summary: FetchSummary) => Promise<void>;
}

export interface FetchSummary {
  id: string;
  name: string;
  version: number;
  size: number;
  seconds: number;
  /** Of `seconds`, the data phase: from the first chunk request to the last chunk verified (absent: none asked). */
  dataSeconds?: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  bytesReused: number;
  peers: number;
  banned: number;
  channel?: string;
  offline?: boolean;
}

function report(summary: FetchSummary, opts: FetchOptions): void {
  if (opts.json) console.log(JSON.stringify(summary));
  else {
    console.log(
      `fetched ${summary.name} version ${summary.version} into ${opts.out}: ${formatBytes(summary.size)} in ${summary.seconds.toFixed(1)} s, ` +
        `${formatBytes(summary.bytesFromPeers)} from peers, ${formatBytes(summary.bytesFromSeeder)} from the head, ` +
        `${formatBytes(summary.bytesReused)} already here${summary.offline ? ' (head unreachable: from the cache)' : ''}`,
    );
  }
}

function dataSeconds(s: number | undefined): { dataSeconds?: number } {
  return s === undefined ? {} : { dataSeconds: Number(s.toFixed(3)) };
}

/**
 * Starts `p` now and returns its awaiter: a rejection is held for the caller that awaits it (not an unhandled one if
 * an earlier step fails first and nobody does).
 */
function settled<T>(p: Promise<T> | T): () => Promise<T> {
  const held = Promise.resolve(p);
  held.catch(() => {});
  return () => held;
}

/**
 * The head's libp2p address to dial: its bootstrap list names every interface it listens on (127.0.0.1 first when it
 * listens on 0.0.0.0), so prefer the one on the host the operator gave in --head; failing that, the same port on that
 * host (a head behind NAT or port forwarding, e.g. QEMU's 10.0.2.2); a head named by DNS: its first non-loopback one.
 */
export function pickHeadAddr(addrs: string[], headUrl: string): string {
  const host = new URL(headUrl).hostname.replace(/^\[|\]$/g, '');
  const same = addrs.find((a) => a.split('/')[2] === host);
  if (same) return same;
  const isV4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
  const tcp = addrs.find((a) => /^\/ip4\/[^/]+\/tcp\/\d+(\/|$)/.test(a));
  if (isV4 && tcp) return tcp.replace(/^\/ip4\/[^/]+/, `/ip4/${host}`);
  return addrs.find((a) => !/^\/ip[46]\/(127\.|::1\/)/.test(a)) ?? addrs[0];
}

export async function fetchImage(
  ref: string,
  opts: FetchOptions,
  config: Config,
  hooks: FetchHooks = {},
): Promise<void> {
  const started = performance.now();
  // RSW_FETCH_STEPS=1: each step of the start on stderr, with the CPU spent so far (bench/testbed reads them).
  const step = startSteps(process.env, started);
  step('begin');
  const channelRef = ref.includes(':') ? parseChannelRef(ref) : undefined;
  const { name, version: asked } = channelRef
    ? { name: channelRef.name, version: 'latest' as const }
    : parseImageRef(ref);
  let version: number | 'latest' = asked;
  const trusted = await loadTrust(opts.trust);
  const lingerSeconds = opts.linger === undefined ? config.peer.lingerSeconds : Number(opts.linger);
  if (!Number.isInteger(lingerSeconds) || lingerSeconds < 0)
    throw new RswError('RSW_ERR_USAGE', '--linger takes whole seconds ≥ 0');
  const cache = resolve(
    opts.cache ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rackswarm'),
  );
  await ensureWritableDir(cache);

  // The HTTP bootstrap is unauthenticated: with a pinned head id, the head is dialled as that id whatever it says,
  // so a fake head at this address fails the handshake.
  const pin = opts.headPeerId ?? (config.mesh.headPeerId || undefined);
  const needPin = () => {
    if (config.mesh.closed && pin === undefined)
      throw new RswError(
        'RSW_ERR_USAGE',
        "a closed mesh needs the head's peer id pinned: --head-peer-id ID or config mesh.headPeerId",
      );
  };
  // Before anything is asked of the head (a channel's offline rollback from the cache needs no pin: checked below).
  if (!channelRef) needPin();
  const client = new HeadClient(opts.head);
  // The head's answers are awaited where they are first needed, not one after another: the revocations before
  // anything is verified against the pinned keys (a channel pointer, the manifest) — so before any chunk is asked
  // for or served; the bootstrap before the head is dialled.
  const revocations = settled(
    nodeRevocations(client, cache, trusted).then((r) => {
      step('revocations');
      return r;
    }),
  );
  const bootstrap = settled(
    channelRef
      ? undefined
      : client.bootstrap().then((b) => {
          step('bootstrap');
          return b;
        }),
  );
  const opening = settled(
    opts.cache !== undefined && config.peer.cacheVersions > 0
      ? ChunkCache.open(cache, { keepVersions: config.peer.cacheVersions, copies: config.peer.cacheCopies })
      : undefined,
  );
  const chunkCache = await opening();
  // A channel names a version through the publisher's signed, short-lived pointer (core/channel.ts).
  const pointer =
    channelRef &&
    (await resolveChannel(client, cache, name, channelRef.channel, trusted, await revocations()));
  if (pointer) version = pointer.pointer.version;
  if (!pointer?.offline) needPin();
  if (pointer?.offline) {
    // The head is unreachable, the pointer we hold is still valid: the version may be wholly in the cache (rollback).
    if (!chunkCache) throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `cannot reach the head at ${opts.head}`);
    const summary = await fetchFromCache(
      chunkCache,
      pointer.pointer.manifestId,
      resolve(opts.out),
      trusted,
      config,
      await revocations(),
      opts.imageKey,
    );
    report(
      { ...summary, channel: ref, seconds: Number(((performance.now() - started) / 1000).toFixed(3)) },
      opts,
    );
    return;
  }
  const boot = (await bootstrap()) ?? (await client.bootstrap());
  const headPeerId = pin === undefined ? boot.peerId : parsePeerId(pin);
  const headAddr = multiaddr(
    `${pickHeadAddr(boot.addrs, opts.head).replace(/\/p2p\/[^/]+$/, '')}/p2p/${headPeerId}`,
  );
  const refusals = new Refusals((peer, direction) =>
    process.stderr.write(`mesh: refused peer ${peer} (${direction}): not enrolled\n`),
  );
  const mesh = config.mesh.closed
    ? new NodeMesh({ head: headPeerId, headAddr, ttlMs: config.mesh.cacheSeconds * 1000, refusals })
    : undefined;
  const node = await createP2PNode({
    keyFile: opts.peerKey ?? join(cache, 'peer.key'),
    listen: config.peer.listen,
    limits: config.p2p,
    connectionGater: mesh?.gater,
  });
  mesh?.attach(node);
  step('libp2p');
  const interrupt = onInterrupt();
  let server: ChunkServer | undefined;
  let bulk: BulkServer | undefined;
  let fetcher: Fetcher | undefined;
  let preheater: Preheater | undefined;
  try {
    // The manifest is asked for as soon as the connection is up, while the head answers whether this node is
    // enrolled (two round trips at once); what connectHead finds wrong is what the caller hears.
    let manifest: (() => Promise<Awaited<ReturnType<typeof fetchManifest>>>) | undefined;
    await connectHead(node, headAddr, headPeerId, config.mesh.closed, interrupt.signal, () => {
      step('dialled');
      manifest = settled(
        fetchManifest(node, headAddr, name, version, {
          maxBytes: config.manifest.maxBytes,
          signal: interrupt.signal,
        }),
      );
    });
    step('enrolled');
    const got = await (manifest as NonNullable<typeof manifest>)();
    step('manifest');
    const revoked = await revocations();
    const opened = openSignedManifest(got.envelope, trusted, {
      maxBytes: config.manifest.maxBytes,
      revoked,
    });
    const m = opened.manifest;
    step('verified');
    if (
      m.name !== name ||
      (version !== 'latest' && m.version !== version) ||
      (pointer && opened.id !== pointer.pointer.manifestId)
    ) {
      throw new RswError(
        'RSW_ERR_MANIFEST_MISMATCH',
        `asked for ${ref}, the head sent ${m.name}@${m.version} (id ${opened.id.slice(0, 16)}…)`,
      );
    }
    const seenFile = join(cache, 'seen.json');
    const seen = await readSeen(seenFile);
    // A signed channel pointer may name an older version (a rollback the publisher decided); its own sequence
    // number is what protects it from replay.
    if (!pointer) checkNotRollback(m, seen[name]);
    // Recorded (an fsync or two on a disk) while the output is opened; before any chunk is asked for.
    const seenWritten = settled(
      (seen[name] ?? 0) < m.version
        ? writeFileAtomic(seenFile, JSON.stringify({ ...seen, [name]: m.version })).catch((e) => {
            throw asDataError(e, `cannot write ${seenFile}`);
          })
        : undefined,
    );

    const out = resolve(opts.out);
    // With --cache, chunks of earlier versions (and the outputs they were written to) fill in what did not change.
    const inPlace = chunkCache?.heldBy(out) ?? false;
    await chunkCache?.rescueSeeds(m, out); // before the output is opened: it may be a seed, updated in place
    const writer = await openOutput(out, m, async () =>
      opts.imageKey
        ? readImageKeyFile(opts.imageKey)
        : fetchImageKey(node, headAddr, m.encryption?.keyId as string, { signal: interrupt.signal }),
    );
    const resume = await ResumeState.open(join(cache, `${opened.id}.resume`), opened.id, m.chunks.length);
    // The output may have changed behind the record (another image written there, a lost write): re-check.
    if (resume.count > 0) await resume.verifyRecorded(writer, m);
    await chunkCache?.prefill(m, writer, resume, { inPlace });
    step('output');
    const progress = byteProgress(`fetching ${name} v${m.version}`, m.size, !opts.json);
    let lastLine = 0;
    const onProgress = (p: FetchProgress) => {
      progress.update(p.bytesDone);
      // (and the last one, with the whole fetch's counters)
      if (opts.json && (performance.now() - lastLine > 1000 || p.stage === 'done')) {
        lastLine = performance.now();
        // What fetch's flow and its chunk server did so far (cumulative): the testbed's per-node time series
        // (bench/testbed: --dump) reads who refused whom and why a node had nothing in flight.
        const served = server?.stats();
        const serve = served && {
          bytes: served.bytesServed,
          requests: served.requests,
          busy: served.busy,
          refusedBatches: served.refusedBatches,
          active: served.activeStreams,
        };
        console.log(JSON.stringify({ progress: p, flow: fetcher?.flow(), serve }));
      }
    };
    // A running node takes preheat instructions from its announce responses (tracker/preheat.ts).
    preheater = new Preheater({
      cache: chunkCache,
      head: { peerId: headPeerId, addr: headAddr },
      trusted,
      revoked,
      config,
      rack: opts.rack,
      host: hostname(),
    });
    const preheat = preheater;
    fetcher = new Fetcher(
      {
        node,
        writer,
        resume,
        head: { peerId: headPeerId, addr: headAddr },
        fetchChunks: chunkFetch({ dataPlane: config.p2p.dataPlane }),
        uploaded: () => server?.stats().bytesServed ?? 0,
      },
      {
        manifest: m,
        imageId: opened.id,
        rack: opts.rack,
        host: opts.host ?? hostname(),
        onProgress,
        verifyWritten: config.peer.verifyWritten,
        maxSources: config.peer.maxSources,
        behindShare: config.peer.paceBehindShare,
        pipelineBatches: config.peer.pipelineBatches,
        announceExtra: () => ({ preheat: preheat.reports() }),
        onAnnounceResponse: (r) => preheat.handle(r.instructions),
        onStep: step,
      },
    );
    const f = fetcher;
    const rackReserve =
      opts.rack && config.peer.rackReserveMs > 0
        ? new RackReserve({
            reserveAfterMs: config.peer.rackReserveMs,
            rack: opts.rack,
            rackOf: (peerId) => f.rackOf(peerId),
          })
        : undefined;
    const turnover = nodeTurnover(config.peer.serveTurnoverMs);
    server = new ChunkServer(
      { store: fetcher.chunkSource(), superSeeding: rackReserve, turnover },
      { ...config.seeder, maxConcurrentTotal: config.peer.maxServeStreams },
    );
    await server.start(node);
    bulk = await startBulkServer(server, node, config, config.peer.listen);
    await seenWritten();
    step('servers');
    const result = await fetcher.run(interrupt.signal).finally(() => progress.stop());
    const summary: FetchSummary = {
      id: opened.id,
      name,
      version: m.version,
      size: m.size,
      seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
      ...dataSeconds(fetcher.dataSeconds()),
      bytesFromPeers: result.bytesFromPeers,
      bytesFromSeeder: result.bytesFromSeeder,
      bytesReused: result.bytesReused,
      peers: result.peers,
      banned: result.banned,
      ...(pointer ? { channel: ref } : {}),
    };
    // RSW_COUNTERS=1: this fetch's event counts (core/counters.ts), before the summary (the testbed waits for it).
    const counters = counterLine();
    if (counters) process.stderr.write(counters);
    report(summary, opts);
    // The record of verified chunks has served its purpose (the image is complete and durable): housekeeping, after
    // the summary. Lost in a crash right here, the next fetch checks it against the output and finds nothing to do.
    await resume.remove();
    await hooks.onComplete?.(summary);
    if (lingerSeconds > 0) {
      // --linger S: serve S seconds. Default: until the tracker says no peer still fetches, at most lingerSeconds.
      const untilSwarmDone = opts.linger === undefined;
      if (!opts.json && process.stderr.isTTY) {
        process.stderr.write(
          untilSwarmDone
            ? `seeding until the swarm is done (at most ${lingerSeconds} s; Ctrl-C stops)\n`
            : `seeding for ${lingerSeconds} s (Ctrl-C stops)\n`,
        );
      }
      const linger = AbortSignal.any([interrupt.signal, AbortSignal.timeout(lingerSeconds * 1000)]);
      const busy = () => preheat.reports().some((r) => r.state === 'fetching');
      await fetcher.seed(linger, { untilSwarmDone, busy });
    }
    // Leaving: the tracker stops handing this node out, the head stops reserving for it what it sent here first.
    await fetcher.leave();
    // The image is complete, verified and reported; recording it for the next version's delta is housekeeping, off
    // the time to a verified image (the output itself is the seed: no copy). After the linger — when the swarm is
    // done, the linger is over, or SIGINT/SIGTERM stopped it — so that its reads, writes and an fsync per chunk do not
    // compete with the swarm still fetching: in the testbed the first nodes done copied 64 MiB on the CPU the others
    // fetched with. A crash while lingering leaves the cache without this version (the next update downloads more);
    // a cache that cannot take it (full disk) costs the next update, not this one.
    await chunkCache?.absorb({ ...opened, name, version: m.version }, writer, out).catch((e) => {
      process.stderr.write(
        `warning: ${formatError(e).replace(/^error /, '')} (the chunk cache was not updated)\n`,
      );
    });
    // Open until here: while lingering the chunk server serves the image from it.
    await writer.close();
  } finally {
    interrupt.dispose();
    mesh?.stop();
    // What reached this node's handlers, per peer, and whom its gater refused (the closed mesh's evidence); on
    // stderr, so the summary stays the last line of --json's stdout.
    if (mesh)
      process.stderr.write(
        `mesh: ${JSON.stringify({ streamsHandled: handledStreamCounts(node), refused: refusals.counts() })}\n`,
      );
    await preheater?.stop().catch(() => {});
    await fetcher?.stop().catch(() => {});
    await bulk?.stop().catch(() => {});
    await server?.stop().catch(() => {});
    await stopP2PNode(node);
  }
}

/**
 * The output of `m`: the file or device itself, or for an encrypted image a DecryptingTarget over it — the output
 * holds the plaintext, everything else (serving, resume, cache) sees the sealed chunks the manifest names.
 */
async function openOutput(out: string, m: Manifest, key: () => Promise<Buffer>): Promise<ImageTarget> {
  if (!m.encryption) return ImageWriter.open(out, m.size);
  const cipher = new ChunkCipher(await key());
  if (cipher.keyId !== m.encryption.keyId) {
    throw new RswError(
      'RSW_ERR_IMAGE_KEY_WRONG',
      `${m.name}@${m.version} is sealed with image key ${m.encryption.keyId}, the key given is ${cipher.keyId}`,
    );
  }
  return new DecryptingTarget(await ImageWriter.open(out, plainLayout(m.chunks).size), m, cipher);
}

/**
 * Opens the connection to the head first, so what goes wrong there gets its own code: a node at the head's address
 * that cannot prove the pinned id (TLS/Noise: UnexpectedPeerError) is RSW_ERR_HEAD_IDENTITY; in a closed mesh, a head
 * that completes the handshake and then drops the connection is refusing this node's peer id: RSW_ERR_NOT_ENROLLED.
 * `onDialled` runs once the connection is up, before that round trip (the caller's first request goes alongside).
 */
async function connectHead(
  node: Awaited<ReturnType<typeof createP2PNode>>,
  headAddr: ReturnType<typeof multiaddr>,
  headPeerId: string,
  closed: boolean,
  signal: AbortSignal,
  onDialled: () => void = () => {},
): Promise<void> {
  try {
    await node.dial(headAddr, { signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) });
    onDialled();
    // The dialler's side of the upgrade may finish before the head's gater has decided: a round trip proves we are
    // in (and on a closed mesh the head, asked about our own id, must say enrolled). An open node makes it too, so a
    // head that runs a closed mesh refusing it is named as such rather than as a stream that ended early.
    const me = node.peerId.toString();
    const yes = await queryEnrolled(node, headAddr, [me], { timeoutMs: 30_000 });
    if (closed && !yes.includes(me)) throw new Error('the head says this peer id is not enrolled');
  } catch (e) {
    const err = e as Error;
    const text = `${err.name}: ${err.message}`;
    if (/UnexpectedPeer|unexpected peer|InvalidCryptoExchange/i.test(text))
      throw new RswError(
        'RSW_ERR_HEAD_IDENTITY',
        `the node at ${headAddr.toString().replace(/\/p2p\/.*$/, '')} is not the pinned head ${headPeerId}: the handshake failed (${err.name})`,
      );
    if (!/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|timed? ?out|abort/i.test(text))
      throw new RswError(
        'RSW_ERR_NOT_ENROLLED',
        closed
          ? `the head ${headPeerId} closed the connection after the handshake: this node's peer id ${node.peerId} is not enrolled (rackswarm enroll add ${node.peerId})`
          : `the head ${headPeerId} closed the connection after the handshake: it runs a closed mesh and this node's peer id ${node.peerId} is not enrolled (rackswarm enroll add ${node.peerId}; then run this node with mesh.closed and the head's id pinned)`,
      );
    throw new RswError(
      'RSW_ERR_HEAD_UNREACHABLE',
      `cannot connect to the head at ${headAddr}: ${err.message}`,
    );
  }
}

/**
 * Writes a version wholly from the chunk cache, without the network: for a node whose head is unreachable and whose
 * valid channel pointer names a version it still caches (a rollback, or a reboot into the running version).
 */
async function fetchFromCache(
  chunkCache: ChunkCache,
  manifestId: string,
  out: string,
  trusted: KeyObject[],
  config: Config,
  revoked: RevokedKeys,
  imageKeyFile: string | undefined,
): Promise<Omit<FetchSummary, 'seconds'>> {
  const env = await chunkCache.envelope(manifestId);
  if (!env) {
    throw new RswError(
      'RSW_ERR_HEAD_UNREACHABLE',
      `the head is unreachable and version ${manifestId.slice(0, 16)}… is not cached`,
    );
  }
  const opened = openSignedManifest(env, trusted, { maxBytes: config.manifest.maxBytes, revoked });
  if (opened.id !== manifestId)
    throw new RswError('RSW_ERR_MANIFEST_INVALID', 'cached manifest does not match its id');
  const m = opened.manifest;
  const inPlace = chunkCache.heldBy(out);
  await chunkCache.rescueSeeds(m, out);
  const writer = await openOutput(out, m, async () => {
    if (!imageKeyFile) {
      throw new RswError(
        'RSW_ERR_IMAGE_KEY_UNAVAILABLE',
        `${m.name}@${m.version} is encrypted and the head, which releases its key, is unreachable`,
      );
    }
    return readImageKeyFile(imageKeyFile);
  });
  try {
    const resume = await ResumeState.open(
      join(chunkCache.dir, `${opened.id}.resume`),
      opened.id,
      m.chunks.length,
    );
    if (resume.count > 0) await resume.verifyRecorded(writer, m);
    await chunkCache.prefill(m, writer, resume, { inPlace });
    if (resume.count < m.chunks.length) {
      throw new RswError(
        'RSW_ERR_HEAD_UNREACHABLE',
        `the head is unreachable and ${m.chunks.length - resume.count} chunks of ${m.name}@${m.version} are not cached`,
      );
    }
    for (const c of m.chunks) {
      if (hashHex(await writer.read(c.offset, c.length)) !== c.hash)
        throw new RswError('RSW_ERR_CHUNK_CORRUPT', `the written image does not match chunk at ${c.offset}`);
    }
    await chunkCache.absorb({ ...opened, name: m.name, version: m.version }, writer, out);
    await resume.remove();
  } finally {
    await writer.close();
  }
  return {
    id: opened.id,
    name: m.name,
    version: m.version,
    size: m.size,
    bytesFromPeers: 0,
    bytesFromSeeder: 0,
    bytesReused: m.size,
    peers: 0,
    banned: 0,
    offline: true,
  };
}
