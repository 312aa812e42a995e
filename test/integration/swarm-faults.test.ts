import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { loadOrCreatePeerKey } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import type { ChunkRef } from '../../core/manifest.ts';
import type { FetchProgress } from '../../peer/fetcher.ts';
import { SCHEDULER_DEFAULTS } from '../../peer/scheduler.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { type EvilPeer, startEvilPeer } from '../helpers/evil-peer.ts';
import type { RunningHead } from '../helpers/head.ts';
import { type HeadWithImage, headWithImage } from '../helpers/head-with-image.ts';

/*
 * Faults in a live swarm, with real `rackswarm head` and `rackswarm fetch` processes on 127.0.0.1:
 *   - a peer that claims every chunk and serves garbage is caught by BLAKE3 and banned; everyone completes;
 *   - the head goes away once every chunk exists somewhere in the swarm; everyone completes from the others.
 */

const MiB = 1024 * 1024;

/** A `rackswarm fetch --json` child, watched line by line. */
interface FetchProc {
  name: string;
  out: string;
  cache: string;
  child: ChildProcess;
  stderr: string;
  last?: FetchProgress;
  summary?: FetchSummary;
  /** Date.now() when the summary line arrived (the image was complete and verified). */
  summaryAt?: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let keys: ReturnType<typeof tempDir>;
let pub: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  keys = tempDir('rsw-faults-keys-');
  const r = await runCli(['keys', 'generate', '--out', keys.dir]);
  expect(r.code, r.stderr).toBe(0);
  pub = join(keys.dir, 'publisher.pub');
});
afterEach(async () => {
  // Reverse order: fetchers, then the evil peer, then the head, then the temp dir.
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => keys?.cleanup());

/** A temp dir with a head (seeder throttled to `seederBps`) serving `compute`, `size` bytes of pseudo-random data. */
async function headWithImageIn(
  prefix: string,
  size: number,
  seederBps: number,
): Promise<HeadWithImage & { dir: string }> {
  const t = tempDir(prefix);
  cleanups.push(() => t.cleanup());
  const h = await headWithImage({
    dir: t.dir,
    keysDir: keys.dir,
    size,
    seed: size ^ 0x5eed,
    headConfig: { seeder: { totalBytesPerSecond: seederBps } },
  });
  cleanups.push(async () => {
    await h.head.stop('SIGKILL');
  });
  return { ...h, dir: t.dir };
}

function spawnFetch(
  dir: string,
  head: RunningHead,
  fetchConfig: string,
  name: string,
  linger: number,
): FetchProc {
  const out = join(dir, `out-${name}.img`);
  const cache = join(dir, `cache-${name}`);
  const child = spawn(
    process.execPath,
    [
      join(projectRoot, 'bin/rackswarm.js'),
      '--config',
      fetchConfig,
      'fetch',
      'compute',
      '--head',
      head.url,
      '--trust',
      pub,
      '--out',
      out,
      '--cache',
      cache,
      '--linger',
      String(linger),
      '--json',
    ],
    { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  const p: FetchProc = { name, out, cache, child, stderr: '', exit };
  child.stderr?.on('data', (d) => {
    p.stderr += d;
  });
  let buf = '';
  child.stdout?.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const j = JSON.parse(line);
        if (j.progress) p.last = j.progress as FetchProgress;
        else if (typeof j.seconds === 'number') {
          p.summary = j as FetchSummary;
          p.summaryAt = Date.now();
        }
      } catch {}
    }
  });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exit;
  });
  return p;
}

/** Resolves once `cond()` holds (polled), or rejects with `what()` after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function describeFetches(procs: FetchProc[]): string {
  return procs
    .map(
      (p) =>
        `${p.name}: ${p.summary ? 'complete' : `stage ${p.last?.stage} ${p.last?.chunksDone}/${p.last?.chunks} chunks, ${p.last?.peers} peers`}` +
        `${p.child.exitCode !== null ? `, exited ${p.child.exitCode}` : ''}${p.stderr ? `, stderr: ${p.stderr.trim()}` : ''}`,
    )
    .join('\n');
}

/** For each node still fetching: which nodes hold the chunks it lacks (read from their outputs). */
async function diagnose(procs: FetchProc[], chunks: ChunkRef[]): Promise<string> {
  const lines: string[] = [];
  for (const p of procs) {
    if (p.summary) continue;
    const holders = new Set<string>();
    let missing = 0;
    for (const c of chunks) {
      const mine = await readAt(p.out, c.offset, c.length);
      if (mine && hashHex(mine) === c.hash) continue;
      missing++;
      for (const q of procs) {
        const theirs = await readAt(q.out, c.offset, c.length);
        if (theirs && hashHex(theirs) === c.hash) holders.add(q.name);
      }
    }
    lines.push(`${p.name} lacks ${missing} chunks, held by ${[...holders].sort().join(' ') || 'nobody'}`);
  }
  return lines.join('\n');
}

/** The peer id a fetch process used (its identity lives in its cache). */
async function peerIdOf(p: FetchProc): Promise<string> {
  return peerIdFromPrivateKey(await loadOrCreatePeerKey(join(p.cache, 'peer.key'))).toString();
}

async function seederBytesServed(head: RunningHead): Promise<number> {
  const text = await (await fetch(`${head.url}/metrics`)).text();
  const m = /^rsw_seeder_bytes_served_total (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Reads `len` bytes at `offset` of `path`, or undefined if the file is not there yet. */
async function readAt(path: string, offset: number, len: number): Promise<Buffer | undefined> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, offset);
    return bytesRead === len ? buf : undefined;
  } finally {
    await fh.close();
  }
}

describe('swarm faults', () => {
  it('a peer serving corrupt chunks is banned after banAfter of them; every node still completes bit-identical', async () => {
    const SIZE = 32 * MiB;
    // 8 MiB/s from the head: the download lasts seconds, long enough to see the liar asked again if it were not banned.
    const { dir, head, image, opened, fetchConfig } = await headWithImageIn(
      'rsw-faults-evil-',
      SIZE,
      8 * MiB,
    );
    const evil: EvilPeer = await startEvilPeer({
      dir,
      tracker: head.p2p[0],
      imageId: opened.id,
      manifest: opened.manifest,
    });
    cleanups.push(() => evil.stop());

    const procs = Array.from({ length: 4 }, (_, i) => spawnFetch(dir, head, fetchConfig, `h${i}`, 2));
    await until(
      () => procs.every((p) => p.child.exitCode !== null || p.child.signalCode !== null),
      50_000,
      () => describeFetches(procs),
    );
    const imageHash = hashHex(image);
    for (const p of procs) {
      const { code } = await p.exit;
      expect(code, `${p.name}: ${p.stderr}`).toBe(0);
      expect(p.summary?.size).toBe(SIZE);
      expect(hashHex(readFileSync(p.out)), `${p.name} output`).toBe(imageHash);
    }

    const banAfter = SCHEDULER_DEFAULTS.banAfter;
    const seen = procs.map(async (p) => {
      const id = await peerIdOf(p);
      const streams = evil.streams.get(id) ?? [];
      return { name: p.name, streams, summaryAt: p.summaryAt as number, banned: p.summary?.banned };
    });
    const perPeer = await Promise.all(seen);
    const report = perPeer
      .map(
        (s) =>
          `${s.name}: ${s.streams.length} streams to the liar, last ${s.summaryAt - (s.streams.at(-1)?.at ?? 0)} ms before completing`,
      )
      .join('\n');
    for (const s of perPeer) {
      // The liar claims every chunk and is handed out as complete, so every node tries it; one bad chunk per batch
      // (the batch's stream is dropped at the first bad body), so banAfter batches, then never again.
      expect(s.streams.length, report).toBe(banAfter);
      // Not a node that simply finished first: its own scheduler reports the liar banned.
      expect(s.banned, report).toBe(1);
    }
    // The liar did put garbage on the wire (else the bit-identical outputs above would prove nothing about it).
    expect(evil.chunksFaked()).toBeGreaterThanOrEqual(procs.length * banAfter);
  }, 90_000);

  it('the head stops once every chunk exists somewhere in the swarm; every node still completes', async () => {
    const SIZE = 64 * MiB;
    // 16 MiB/s from the head: ~4 s for the first full copy, so the nodes spread the image among themselves.
    const { dir, head, image, opened, fetchConfig } = await headWithImageIn(
      'rsw-faults-headless-',
      SIZE,
      16 * MiB,
    );
    const chunks = opened.manifest.chunks;
    const procs = Array.from({ length: 6 }, (_, i) => spawnFetch(dir, head, fetchConfig, `n${i}`, 60));

    // Every chunk present in some node's output (written only after its BLAKE3 check), and at least one full copy
    // out of the seeder.
    const present = new Set<ChunkRef>();
    await until(
      async () => {
        if ((await seederBytesServed(head)) < SIZE) return false;
        for (const c of chunks) {
          if (present.has(c)) continue;
          for (const p of procs) {
            const data = await readAt(p.out, c.offset, c.length);
            if (data && hashHex(data) === c.hash) {
              present.add(c);
              break;
            }
          }
        }
        return present.size === chunks.length;
      },
      40_000,
      () => `${present.size}/${chunks.length} chunks in the swarm\n${describeFetches(procs)}`,
    );
    // Who announced when (the tracker hands each node the peers that announced before it), for the diagnosis below.
    const swarm = (await (await fetch(`${head.url}/api/swarm`)).json()) as {
      images: Array<{ peers: Array<{ peerId: string; firstSeen: number }> }>;
    };
    const ids = await Promise.all(procs.map((p) => peerIdOf(p)));
    const firstSeen = new Map(swarm.images[0].peers.map((r) => [r.peerId, r.firstSeen]));
    const announceOrder = procs
      .map((p, i) => ({ name: p.name, at: firstSeen.get(ids[i]) ?? Number.POSITIVE_INFINITY }))
      .sort((a, b) => a.at - b.at)
      .map((x) => x.name)
      .join(' ');
    const atStop = describeFetches(procs);
    const headExit = await head.stop('SIGTERM');

    // Every node must finish without the head (the lingering ones keep serving the others meanwhile).
    const stalled = await until(
      () => procs.every((p) => p.summary !== undefined),
      25_000,
      () => '',
    )
      .then(() => '')
      .catch(() => diagnose(procs, chunks));
    expect(
      stalled,
      `not every node completed after the head stopped.\nFirst announces: ${announceOrder}\n` +
        `At the stop:\n${atStop}\nNow:\n${describeFetches(procs)}\n${stalled}`,
    ).toBe('');
    for (const p of procs) p.child.kill('SIGTERM'); // ends the linger: a clean exit
    const imageHash = hashHex(image);
    for (const p of procs) {
      const { code } = await p.exit;
      expect(code, `${p.name}: ${p.stderr}`).toBe(0);
      expect(hashHex(readFileSync(p.out)), `${p.name} output`).toBe(imageHash);
    }
    expect(headExit, 'the head stops cleanly on SIGTERM with peers mid-download').toBe(0);
  }, 90_000);
});
