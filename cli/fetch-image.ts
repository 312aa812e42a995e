import { readFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import type { Config } from '../core/config.ts';
import { asDataError, RswError } from '../core/errors.ts';
import { ensureWritableDir, writeFileAtomic } from '../core/fs-atomic.ts';
import { loadPublicKey } from '../core/keys.ts';
import { parseVersion, validateImageName } from '../core/manifest.ts';
import { checkNotRollback, openSignedManifest } from '../core/signed-manifest.ts';
import { Fetcher, type FetchProgress } from '../peer/fetcher.ts';
import { ImageWriter } from '../peer/image-writer.ts';
import { ResumeState } from '../peer/resume-state.ts';
import { fetchManifest } from '../peer/tracker-client.ts';
import { ChunkServer } from '../seeder/chunk-server.ts';
import { formatBytes } from './format.ts';
import { HeadClient } from './head-client.ts';
import { createP2PNode } from './p2p-node.ts';
import { byteProgress } from './progress.ts';
import { onInterrupt } from './signals.ts';

export interface FetchOptions {
  head: string;
  trust: string[];
  out: string;
  cache?: string;
  rack?: string;
  linger?: string;
  json?: boolean;
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
  bytesFromPeers: number;
  bytesFromSeeder: number;
  bytesReused: number;
  peers: number;
  banned: number;
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
  const { name, version } = parseImageRef(ref);
  const trusted = await Promise.all(opts.trust.map((f) => loadPublicKey(f)));
  const lingerSeconds = opts.linger === undefined ? config.peer.lingerSeconds : Number(opts.linger);
  if (!Number.isInteger(lingerSeconds) || lingerSeconds < 0)
    throw new RswError('RSW_ERR_USAGE', '--linger takes whole seconds ≥ 0');
  const cache = resolve(
    opts.cache ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rackswarm'),
  );
  await ensureWritableDir(cache);

  const client = new HeadClient(opts.head);
  const boot = await client.bootstrap();
  const headAddr = multiaddr(pickHeadAddr(boot.addrs, opts.head));
  const node = await createP2PNode({
    keyFile: join(cache, 'peer.key'),
    listen: config.peer.listen,
    limits: config.p2p,
  });
  const interrupt = onInterrupt();
  let server: ChunkServer | undefined;
  let fetcher: Fetcher | undefined;
  try {
    const got = await fetchManifest(node, headAddr, name, version, {
      maxBytes: config.manifest.maxBytes,
      signal: interrupt.signal,
    });
    const opened = openSignedManifest(got.envelope, trusted, { maxBytes: config.manifest.maxBytes });
    const m = opened.manifest;
    if (m.name !== name || (version !== 'latest' && m.version !== version)) {
      throw new RswError(
        'RSW_ERR_MANIFEST_INVALID',
        `asked for ${ref}, the head sent ${m.name}@${m.version}`,
      );
    }
    const seenFile = join(cache, 'seen.json');
    const seen = await readSeen(seenFile);
    checkNotRollback(m, seen[name]);
    if ((seen[name] ?? 0) < m.version) {
      await writeFileAtomic(seenFile, JSON.stringify({ ...seen, [name]: m.version })).catch((e) => {
        throw asDataError(e, `cannot write ${seenFile}`);
      });
    }

    const writer = await ImageWriter.open(resolve(opts.out), m.size);
    const resume = await ResumeState.open(join(cache, `${opened.id}.resume`), opened.id, m.chunks.length);
    // The output may have changed behind the record (another image written there, a lost write): re-check.
    if (resume.count > 0) await resume.verifyRecorded(writer, m);
    const progress = byteProgress(`fetching ${name} v${m.version}`, m.size, !opts.json);
    let lastLine = 0;
    const onProgress = (p: FetchProgress) => {
      progress.update(p.bytesDone);
      if (opts.json && performance.now() - lastLine > 1000) {
        lastLine = performance.now();
        console.log(JSON.stringify({ progress: p }));
      }
    };
    fetcher = new Fetcher(
      {
        node,
        writer,
        resume,
        head: { peerId: boot.peerId, addr: headAddr },
        uploaded: () => server?.stats().bytesServed ?? 0,
      },
      { manifest: m, imageId: opened.id, rack: opts.rack, host: hostname(), onProgress },
    );
    server = new ChunkServer(
      { store: fetcher.chunkSource() },
      { ...config.seeder, maxConcurrentTotal: config.peer.maxServeStreams },
    );
    await server.start(node);
    const result = await fetcher.run(interrupt.signal).finally(() => progress.stop());
    await writer.close();
    await resume.remove();
    const summary: FetchSummary = {
      id: opened.id,
      name,
      version: m.version,
      size: m.size,
      seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
      bytesFromPeers: result.bytesFromPeers,
      bytesFromSeeder: result.bytesFromSeeder,
      bytesReused: result.bytesReused,
      peers: result.peers,
      banned: result.banned,
    };
    if (opts.json) console.log(JSON.stringify(summary));
    else {
      console.log(
        `fetched ${name} version ${m.version} into ${opts.out}: ${formatBytes(m.size)} in ${summary.seconds.toFixed(1)} s, ` +
          `${formatBytes(summary.bytesFromPeers)} from peers, ${formatBytes(summary.bytesFromSeeder)} from the head, ` +
          `${formatBytes(summary.bytesReused)} already here`,
      );
    }
    await hooks.onComplete?.(summary);
    if (lingerSeconds > 0) {
      const linger = AbortSignal.any([interrupt.signal, AbortSignal.timeout(lingerSeconds * 1000)]);
      await fetcher.seed(linger);
    }
  } finally {
    interrupt.dispose();
    await fetcher?.stop().catch(() => {});
    await server?.stop().catch(() => {});
    await node.stop();
  }
}
