import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { Config } from '../../core/config.ts';
import { RswError } from '../../core/errors.ts';
import { writeFileAtomic } from '../../core/fs-atomic.ts';
import { generatePublisherKeys, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../core/keys.ts';
import { formatBytes } from '../format.ts';
import { onInterrupt } from '../signals.ts';
import { publish } from './publish.ts';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
/** How long the demo's peers keep seeding: bounded, so a demo killed with SIGKILL leaves no peer running for long. */
const LINGER_SECONDS = 600;

/**
 * Builds the demo's sample image: a real SquashFS of the project's own installed packages (thousands of real files),
 * or, when mksquashfs is missing, 64 MiB of pseudo-random bytes (and says so).
 */
async function sampleImage(dir: string): Promise<{ file: string; what: string }> {
  const squash = join(dir, 'sample.squashfs');
  try {
    execFileSync(
      'mksquashfs',
      [join(projectRoot, 'node_modules'), squash, '-noappend', '-quiet', '-no-progress', '-comp', 'lz4'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    return { file: squash, what: "SquashFS of this project's node_modules (made with mksquashfs)" };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const raw = join(dir, 'sample.img');
    const buf = Buffer.alloc(64 * 1024 * 1024);
    let x = 0x9e3779b9;
    for (let i = 0; i < buf.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeInt32LE(x | 0, i);
    }
    await writeFile(raw, buf);
    return {
      file: raw,
      what: '64 MiB of random bytes: mksquashfs is missing (apt-get install squashfs-tools)',
    };
  }
}

export function registerDemo(program: Command, config: () => Config): void {
  program
    .command('demo')
    .description(
      'what `npm start` runs: a head node with a published sample image and a local swarm fetching it',
    )
    .option('--data <dir>', 'data directory for the demo', 'demo-data')
    .option('--nodes <n>', 'local peers that fetch the image through the swarm', '4')
    .option('--http <host:port>', "the head's HTTP address", '127.0.0.1:7480')
    .option('--once', 'stop when every peer has the image (default: keep the head running until Ctrl-C)')
    .option(
      '--open',
      'an open mesh (mesh.closed false); by default the demo closes it and enrolls its own peers',
    )
    .action(async (opts: { data: string; nodes: string; http: string; once?: boolean; open?: boolean }) => {
      const nodes = Number(opts.nodes);
      if (!Number.isInteger(nodes) || nodes < 0 || nodes > 64)
        throw new RswError('RSW_ERR_USAGE', '--nodes takes 0..64');
      const dataDir = resolve(opts.data);
      const keyDir = join(dataDir, 'keys');
      const key = join(keyDir, PRIVATE_KEY_FILE);
      await mkdir(keyDir, { recursive: true, mode: 0o700 });
      if (!existsSync(key)) {
        const pair = generatePublisherKeys();
        await writeFileAtomic(key, pair.privatePem, { mode: 0o600 });
        await writeFileAtomic(join(keyDir, PUBLIC_KEY_FILE), pair.publicPem);
        console.log(`publisher key pair written to ${keyDir}`);
      }
      const work = join(dataDir, 'work');
      await mkdir(work, { recursive: true });
      const sample = await sampleImage(work);
      console.log(`sample image: ${sample.what}`);
      const headDir = join(dataDir, 'head');
      const s = await publish(sample.file, { name: 'sample', key, data: headDir }, config());
      console.log(
        `published sample version ${s.version}: ${formatBytes(s.size)} in ${s.chunks} chunks, ` +
          `${s.newChunks} new (${formatBytes(s.newBytes)}) in ${s.seconds.toFixed(2)} s` +
          (s.newChunks < s.chunks ? ' — unchanged chunks were reused' : ''),
      );

      const { startHead } = await import('../head-node.ts');
      const base = config();
      // Peers announce every 2 s (default 10) so the dashboard moves at a demo's pace.
      // A closed mesh (docs/SECURITY.md) unless --open: the demo enrolls its own peers' keys before they start.
      const closed = !opts.open;
      const demoConfig = {
        ...base,
        mesh: { ...base.mesh, closed },
        tracker: {
          ...base.tracker,
          announceIntervalSeconds: Math.min(base.tracker.announceIntervalSeconds, 2),
        },
      };
      const interrupt = onInterrupt();
      const head = await startHead(
        {
          data: headDir,
          http: opts.http,
          listen: ['/ip4/127.0.0.1/tcp/0'],
          trust: [join(keyDir, PUBLIC_KEY_FILE)],
        },
        demoConfig,
        false,
      );
      const swarm = new LocalSwarm();
      try {
        const mesh = closed ? await enrollLocalPeers(head.http, headDir, work, nodes) : undefined;
        console.log('');
        console.log(
          mesh
            ? `  mesh:       closed — the head and every peer admit only enrolled peer ids (${nodes} local peers enrolled)`
            : '  mesh:       open (--open): any peer id may connect',
        );
        console.log(`  dashboard:  ${head.http}/`);
        console.log(`  status:     npx rackswarm status --head ${head.http} --watch`);
        console.log(`  head API:   ${head.http}/api/swarm  ${head.http}/api/images  ${head.http}/metrics`);
        console.log('');
        const peers = await swarm.run(
          head.http,
          join(keyDir, PUBLIC_KEY_FILE),
          work,
          nodes,
          opts.once ? 0 : LINGER_SECONDS,
          interrupt.signal,
          mesh,
        );
        if (interrupt.signal.aborted) return;
        console.log(
          `${peers.ok}/${nodes} local peers fetched sample v${s.version} through the swarm in ${peers.seconds.toFixed(1)} s: ` +
            `${formatBytes(peers.fromPeers)} from each other, ${formatBytes(peers.fromHead)} from the head` +
            (nodes ? ` (head egress ${(peers.fromHead / s.size).toFixed(2)} × the image)` : ''),
        );
        if (peers.ok < nodes) process.exitCode = 1;
        if (opts.once) return;
        console.log(
          `the peers keep seeding for ${LINGER_SECONDS / 60} minutes and the head keeps running: ${head.http}/ — ` +
            'Ctrl-C stops everything',
        );
        await new Promise<void>((r) =>
          interrupt.signal.aborted ? r() : interrupt.signal.addEventListener('abort', () => r()),
        );
      } finally {
        if (interrupt.signal.aborted) console.log('stopping the local peers and the head…');
        await swarm.stop();
        await head.stop();
        interrupt.dispose();
        if (interrupt.signal.aborted) console.log('stopped');
      }
    });
}

/**
 * Creates the local peers' libp2p keys (where `fetch --cache` keeps them), enrolls their ids on the head, and writes
 * the peers' config (mesh.closed); returns what a peer needs to join: that config and the head's peer id to pin.
 */
async function enrollLocalPeers(
  http: string,
  headDir: string,
  work: string,
  n: number,
): Promise<{ config: string; headPeerId: string }> {
  const { loadOrCreatePeerKey } = await import('../p2p-node.ts');
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id');
  const { HeadClient } = await import('../head-client.ts');
  const ids = await Promise.all(
    Array.from({ length: n }, async (_, i) =>
      peerIdFromPrivateKey(await loadOrCreatePeerKey(join(work, `node${i}-cache`, 'peer.key'))).toString(),
    ),
  );
  const client = new HeadClient(http, await HeadClient.readToken(join(headDir, 'admin-token')));
  if (ids.length > 0) await client.enroll(ids, 'rackswarm demo');
  const config = join(work, 'peer-config.json');
  await writeFileAtomic(config, JSON.stringify({ mesh: { closed: true } }));
  return { config, headPeerId: (await client.bootstrap()).peerId };
}

interface PeerResult {
  ok: boolean;
  fromPeers: number;
  fromHead: number;
}

/** `n` real `rackswarm fetch` processes on loopback, started at once; stopped by their PIDs. */
class LocalSwarm {
  readonly #children = new Set<ChildProcess>();

  /**
   * Starts the peers and resolves once each has fetched the image (its final JSON line) or failed; they keep
   * seeding for `linger` seconds after that.
   */
  async run(
    head: string,
    pub: string,
    work: string,
    n: number,
    linger: number,
    signal: AbortSignal,
    mesh?: { config: string; headPeerId: string },
  ) {
    const started = performance.now();
    const bin = fileURLToPath(new URL('../../bin/rackswarm.js', import.meta.url));
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const args = [
          bin,
          ...(mesh ? ['--config', mesh.config] : []),
          'fetch',
          'sample',
          '--head',
          head,
          '--trust',
          pub,
          '--json',
          '--linger',
          String(linger),
        ];
        args.push(
          '--out',
          join(work, `node${i}.img`),
          '--cache',
          join(work, `node${i}-cache`),
          '--rack',
          `rack${i % 2}`,
          '--host',
          `node${i}`,
          ...(mesh ? ['--head-peer-id', mesh.headPeerId] : []),
        );
        return new Promise<PeerResult>((done) => {
          const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
          this.#children.add(child);
          let buf = '';
          child.stdout.on('data', (d) => {
            buf += d;
            let nl = buf.indexOf('\n');
            while (nl >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              nl = buf.indexOf('\n');
              try {
                const j = JSON.parse(line);
                if (typeof j.id === 'string')
                  done({ ok: true, fromPeers: j.bytesFromPeers ?? 0, fromHead: j.bytesFromSeeder ?? 0 });
              } catch {}
            }
          });
          child.on('close', () => {
            this.#children.delete(child);
            done({ ok: false, fromPeers: 0, fromHead: 0 });
          });
          signal.addEventListener('abort', () => done({ ok: false, fromPeers: 0, fromHead: 0 }), {
            once: true,
          });
        });
      }),
    );
    return {
      ok: results.filter((r) => r.ok).length,
      fromPeers: results.reduce((a, r) => a + r.fromPeers, 0),
      fromHead: results.reduce((a, r) => a + r.fromHead, 0),
      seconds: (performance.now() - started) / 1000,
    };
  }

  /** SIGTERM to each peer (they stop serving and exit), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.#children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
            child.once('close', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}
