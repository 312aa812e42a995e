import type { KeyObject } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Config } from '../core/config.ts';
import { isRswError, RswError } from '../core/errors.ts';
import { openSignedManifest, type RevokedKeys } from '../core/signed-manifest.ts';
import type { Instruction, PreheatReport } from '../core/tracker-messages.ts';
import type { ChunkCache } from '../peer/chunk-cache.ts';
import { Fetcher } from '../peer/fetcher.ts';
import { ImageWriter } from '../peer/image-writer.ts';
import { ResumeState } from '../peer/resume-state.ts';
import { fetchManifest } from '../peer/tracker-client.ts';
import { ChunkServer } from '../seeder/chunk-server.ts';
import { PREHEAT_HOST_SUFFIX } from '../tracker/preheat.ts';
import { createP2PNode, stopP2PNode } from './p2p-node.ts';

export interface PreheaterInit {
  /** Where preheated versions go; without one every instruction is reported failed. */
  cache: ChunkCache | undefined;
  head: { peerId: string; addr: Multiaddr };
  trusted: KeyObject[];
  /** Revoked publisher keys (cli/node-revocations.ts): what they signed is not preheated. */
  revoked?: RevokedKeys;
  config: Config;
  rack?: string;
  host: string;
}

/**
 * A running node's side of a preheat (tracker/preheat.ts): instructions arrive in announce responses; each is fetched
 * through the swarm into the node's chunk cache — on a libp2p identity of its own (CACHE/preheat.key; one image per
 * identity is the peer's model), announcing as "HOST+preheat" — and its state goes back in the next announces.
 */
export class Preheater {
  readonly #init: PreheaterInit;
  readonly #jobs = new Map<string, PreheatReport>();
  readonly #stop = new AbortController();
  readonly #running = new Set<Promise<void>>();

  constructor(init: PreheaterInit) {
    this.#init = init;
  }

  /** Starts every instruction not seen before. */
  handle(instructions: Instruction[] | undefined): void {
    for (const i of instructions ?? []) {
      if (
        i?.kind !== 'preheat' ||
        typeof i.job !== 'string' ||
        this.#jobs.has(i.job) ||
        this.#stop.signal.aborted
      )
        continue;
      const report: PreheatReport = { job: i.job, state: 'fetching' };
      this.#jobs.set(i.job, report);
      const run = this.#run(i)
        .then(() => {
          report.state = 'done';
        })
        .catch((e) => {
          report.state = 'failed';
          report.error = (
            isRswError(e) ? `${e.code}: ${e.message}` : String((e as Error).message ?? e)
          ).slice(0, 256);
        });
      this.#running.add(run);
      run.finally(() => this.#running.delete(run));
    }
  }

  /** What the next announce reports. */
  reports(): PreheatReport[] {
    return [...this.#jobs.values()].map((r) => ({ ...r }));
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#running);
  }

  async #run(i: Instruction): Promise<void> {
    const { cache, config } = this.#init;
    if (!cache) throw new Error('this node keeps no chunk cache (fetch --cache DIR)');
    const node = await createP2PNode({
      keyFile: join(cache.dir, 'preheat.key'),
      listen: config.peer.listen,
      limits: config.p2p,
    });
    let fetcher: Fetcher | undefined;
    let server: ChunkServer | undefined;
    try {
      const got = await fetchManifest(node, this.#init.head.addr, i.name, i.version, {
        maxBytes: config.manifest.maxBytes,
        signal: this.#stop.signal,
      });
      const opened = openSignedManifest(got.envelope, this.#init.trusted, {
        revoked: this.#init.revoked,
        maxBytes: config.manifest.maxBytes,
      });
      if (opened.id !== i.imageId)
        throw new RswError(
          'RSW_ERR_MANIFEST_MISMATCH',
          `the head sent ${opened.id.slice(0, 16)}…, not the preheat's image`,
        );
      const m = opened.manifest;
      await cache.rescueSeeds(m);
      await mkdir(join(cache.dir, 'preheat'), { recursive: true });
      const out = join(cache.dir, 'preheat', `${opened.id}.img`);
      const writer = await ImageWriter.open(out, m.size);
      try {
        const resume = await ResumeState.open(
          join(cache.dir, `${opened.id}.preheat.resume`),
          opened.id,
          m.chunks.length,
        );
        if (resume.count > 0) await resume.verifyRecorded(writer, m);
        await cache.prefill(m, writer, resume);
        fetcher = new Fetcher(
          { node, writer, resume, head: this.#init.head },
          {
            manifest: m,
            imageId: opened.id,
            rack: this.#init.rack,
            host: `${this.#init.host}${PREHEAT_HOST_SUFFIX}`.slice(-64),
          },
        );
        server = new ChunkServer(
          { store: fetcher.chunkSource() },
          { ...config.seeder, maxConcurrentTotal: config.peer.maxServeStreams },
        );
        await server.start(node);
        await fetcher.run(this.#stop.signal);
        await cache.absorb({ ...opened, name: m.name, version: m.version }, writer);
        await resume.remove();
      } finally {
        await writer.close();
        await rm(out, { force: true });
      }
    } finally {
      await fetcher?.stop().catch(() => {});
      await server?.stop().catch(() => {});
      await stopP2PNode(node);
    }
  }
}
