/**
 * Builds the initramfs: busybox (static) and its applet links, Node 22 with the shared libraries it links against,
 * the boot agent (one esbuild bundle) and its native addon, the kernel modules in load order, the pinned publisher
 * keys, /init and the udhcpc script — one newc cpio, compressed. Everything comes from files on the build host;
 * nothing is downloaded.
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { constants, createGzip, createZstdCompress } from 'node:zlib';
import { RswError } from '../core/errors.ts';
import { type CpioEntry, cpioPieces } from './cpio.ts';
import { initScript, UDHCPC_SCRIPT } from './init-script.ts';
import { parseModuleIndex, resolveModules } from './modules.ts';

const exec = promisify(execFile);

/** Where a node's libp2p identity sits in its initramfs (the boot agent reads it; cli/boot-agent.ts). */
export const PEER_KEY_PATH = 'rackswarm/peer.key';
/** Per-node mesh settings (`{"headPeerId": …}`) a credentials archive may add; merged over config.json's `mesh`. */
export const NODE_MESH_PATH = 'rackswarm/mesh.json';

/**
 * A node's credentials as a small newc archive of their own, loaded in front of the shared initramfs (the kernel
 * unpacks concatenated archives in order, and finds an uncompressed one only at a 4-byte boundary — newc keeps this
 * one a multiple of 4: `cat node.cpio initramfs`, or an iPXE `initrd` line before the shared one): its libp2p key (0600) and,
 * optionally, the head's peer id to pin. Uncompressed: it is a few hundred bytes.
 */
export async function credentialsArchive(
  out: string,
  creds: { peerKey: Uint8Array; headPeerId?: string },
): Promise<void> {
  const entries: CpioEntry[] = [
    { type: 'dir', path: 'rackswarm' },
    { type: 'file', path: PEER_KEY_PATH, data: creds.peerKey, mode: 0o600 },
    ...(creds.headPeerId
      ? [
          {
            type: 'file' as const,
            path: NODE_MESH_PATH,
            data: Buffer.from(JSON.stringify({ headPeerId: creds.headPeerId })),
            mode: 0o644,
          },
        ]
      : []),
  ];
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    await pipeline(Readable.from(cpioPieces(entries)), createWriteStream(tmp, { mode: 0o600 }));
    await rename(tmp, out);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export interface InitramfsInput {
  out: string;
  /** The boot agent bundle (ESM, one file). */
  agent: Uint8Array;
  /** Native addons the bundle loads: path inside the initramfs (under /rackswarm) → host file. */
  addons: { path: string; source: string }[];
  /** Node 22 binary on the host (dynamically linked; its and the addons' libraries are found with ldd). */
  node: string;
  /** Strip Node's symbols (needs binutils' strip): 125 → 107 MB. */
  strip: boolean;
  /** A statically linked busybox (Debian: busybox-static). */
  busybox: string;
  /** `lib/modules/VERSION` of the kernel the nodes boot, with modules.dep; absent: no modules. */
  kernelModules?: string;
  modules: string[];
  /** Publisher public keys (PEM) pinned into the image. */
  trust: { name: string; pem: Uint8Array }[];
  /**
   * The node's libp2p identity (protobuf private key), written 0600 to /rackswarm/peer.key: what the head enrolled.
   * Only for an initramfs made for one node; many nodes share one initramfs plus a per-node credentials archive
   * (credentialsArchive, loaded in front of it).
   */
  peerKey?: Uint8Array;
  /** Settings the agent starts from (a partial config). */
  config: object;
  compression: 'zstd' | 'gzip' | 'none';
  /** /init gives up on the boot agent after this long (rescue shell or reboot). */
  agentTimeoutSeconds: number;
}

export interface InitramfsReport {
  out: string;
  bytes: number;
  uncompressedBytes: number;
  parts: { node: number; libraries: number; agent: number; addons: number; busybox: number; modules: number };
  modules: string[];
  libraries: string[];
}

/** The shared objects `ldd` lists for `binary`, the dynamic loader included. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  let out: string;
  try {
    out = (await exec('ldd', [binary])).stdout;
  } catch (e) {
    throw new RswError(
      'RSW_ERR_FILE_UNREADABLE',
      `ldd ${binary} failed: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.add(m[1]);
  }
  return [...libs].sort();
}

async function isStatic(binary: string): Promise<boolean> {
  try {
    const { stdout, stderr } = await exec('ldd', [binary]);
    return /not a dynamic executable|statically linked/.test(stdout + stderr);
  } catch (e) {
    return /not a dynamic executable/.test(String((e as { stderr?: string }).stderr ?? ''));
  }
}

async function size(path: string): Promise<number> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new RswError('RSW_ERR_NOT_A_FILE', `${path} is not a file`);
    return s.size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new RswError('RSW_ERR_FILE_NOT_FOUND', `${path} does not exist`);
    throw e;
  }
}

function dirsOf(paths: string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    let d = dirname(p.replace(/^\/+/, ''));
    while (d !== '.' && d !== '') {
      dirs.add(d);
      d = dirname(d);
    }
  }
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

export async function buildInitramfs(input: InitramfsInput): Promise<InitramfsReport> {
  if (!(await isStatic(input.busybox)))
    throw new RswError(
      'RSW_ERR_FILE_UNREADABLE',
      `${input.busybox} is not statically linked: install busybox-static (Debian) or pass --busybox`,
    );
  const applets = (await exec(input.busybox, ['--list'])).stdout
    .split('\n')
    .filter((a) => /^[a-z0-9_.[-]+$/.test(a));

  const work = await mkdtemp(join(tmpdir(), 'rsw-initramfs-'));
  try {
    let node = input.node;
    if (input.strip) {
      node = join(work, 'node');
      try {
        await exec('strip', ['-o', node, input.node]);
      } catch (e) {
        const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
        throw new RswError(
          missing ? 'RSW_ERR_FILE_NOT_FOUND' : 'RSW_ERR_FILE_UNREADABLE',
          missing ? 'strip not found: install binutils, or pass --no-strip' : `strip ${input.node} failed`,
        );
      }
    }
    // Node's libraries and the native addons' (blake-hash links librt, which Node does not).
    const libraries = [
      ...new Set(
        (
          await Promise.all(
            [input.node, ...input.addons.filter((a) => a.path.endsWith('.node')).map((a) => a.source)].map(
              sharedLibraries,
            ),
          )
        ).flat(),
      ),
    ].sort();

    let modules: string[] = [];
    if (input.kernelModules) {
      const dep = await readFile(join(input.kernelModules, 'modules.dep'), 'utf8').catch(() => {
        throw new RswError(
          'RSW_ERR_KERNEL_MODULE',
          `${input.kernelModules}/modules.dep is missing: run depmod -b ROOT VERSION on the unpacked kernel first`,
        );
      });
      const builtin = await readFile(join(input.kernelModules, 'modules.builtin'), 'utf8').catch(() => '');
      modules = resolveModules(parseModuleIndex(dep, builtin), input.modules);
    }

    const hostFiles: { path: string; source: string; mode: number }[] = [
      { path: 'bin/busybox', source: input.busybox, mode: 0o755 },
      { path: 'rackswarm/node', source: node, mode: 0o755 },
      ...libraries.map((l) => ({ path: l.replace(/^\/+/, ''), source: l, mode: 0o755 })),
      ...input.addons.map((a) => ({ path: `rackswarm/${a.path}`, source: a.source, mode: 0o644 })),
      ...modules.map((m) => ({
        path: `lib/modules/${m}`,
        source: join(input.kernelModules as string, m),
        mode: 0o644,
      })),
    ];
    const sizes = new Map<string, number>();
    for (const f of hostFiles) sizes.set(f.path, await size(f.source));
    const inline: { path: string; data: Uint8Array; mode: number }[] = [
      { path: 'init', data: Buffer.from(initScript(input.agentTimeoutSeconds)), mode: 0o755 },
      { path: 'rackswarm/udhcpc.sh', data: Buffer.from(UDHCPC_SCRIPT), mode: 0o755 },
      { path: 'rackswarm/agent.mjs', data: input.agent, mode: 0o644 },
      { path: 'rackswarm/config.json', data: Buffer.from(JSON.stringify(input.config)), mode: 0o644 },
      {
        path: 'etc/rackswarm/modules',
        data: Buffer.from(modules.map((m) => `${m}\n`).join('')),
        mode: 0o644,
      },
      ...(input.peerKey ? [{ path: PEER_KEY_PATH, data: input.peerKey, mode: 0o600 }] : []),
      ...input.trust.map((t, i) => ({
        path: `rackswarm/trust/${String(i).padStart(2, '0')}-${basename(t.name).replace(/[^A-Za-z0-9._-]/g, '_')}${t.name.endsWith('.pub') ? '' : '.pub'}`,
        data: t.pem,
        mode: 0o644,
      })),
    ];
    const fixedDirs = [
      'bin',
      'sbin',
      'dev',
      'proc',
      'sys',
      'run',
      'tmp',
      'newroot',
      'etc',
      'rackswarm/trust',
    ];
    const files = [...hostFiles.map((f) => f.path), ...inline.map((f) => f.path)];
    const dirs = [...new Set([...dirsOf(files), ...fixedDirs.flatMap((d) => [...dirsOf([`${d}/x`])])])].sort(
      (a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b),
    );
    const entries: CpioEntry[] = [
      ...dirs.map((path) => ({ type: 'dir' as const, path })),
      { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
      { type: 'chardev', path: 'dev/null', mode: 0o666, major: 1, minor: 3 },
      ...hostFiles.map((f) => ({
        type: 'hostfile' as const,
        path: f.path,
        source: f.source,
        size: sizes.get(f.path) as number,
        mode: f.mode,
      })),
      ...inline.map((f) => ({ type: 'file' as const, ...f })),
      ...applets
        .filter((a) => a !== 'busybox')
        .map((a) => ({ type: 'symlink' as const, path: `bin/${a}`, target: 'busybox' })),
    ];

    let uncompressed = 0;
    const counter = new Transform({
      transform(piece: Buffer, _enc, done) {
        uncompressed += piece.length;
        done(null, piece);
      },
    });
    const tmp = `${input.out}.tmp-${process.pid}`;
    const stages: NodeJS.ReadWriteStream[] = [];
    if (input.compression === 'zstd')
      stages.push(createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 3 } }));
    if (input.compression === 'gzip') stages.push(createGzip({ level: 6 }));
    try {
      await pipeline(
        Readable.from(cpioPieces(entries)),
        counter,
        ...stages,
        createWriteStream(tmp, { mode: 0o644 }),
      );
      await rename(tmp, input.out);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    const sum = (pred: (p: string) => boolean) =>
      [...sizes].filter(([p]) => pred(p)).reduce((s, [, n]) => s + n, 0);
    return {
      out: input.out,
      bytes: (await stat(input.out)).size,
      uncompressedBytes: uncompressed,
      parts: {
        node: sizes.get('rackswarm/node') as number,
        libraries: sum((p) => libraries.some((l) => l.endsWith(p))),
        agent: input.agent.length,
        addons: sum((p) => p.startsWith('rackswarm/') && p.endsWith('.node')),
        busybox: sizes.get('bin/busybox') as number,
        modules: sum((p) => p.startsWith('lib/modules/')),
      },
      modules,
      libraries,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
