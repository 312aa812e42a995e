import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import {
  buildTestInitramfs,
  consoleJson,
  makeTestRoot,
  ROOT_MARKER,
  ROOT_OK_EXIT,
  startVm,
  type TestKernel,
  testKernel,
  type Vm,
} from '../helpers/qemu.ts';

// A real Debian kernel in QEMU (TCG) with the initramfs `rackswarm boot initramfs` builds, against a real head on
// this host: QEMU's user networking lets the guest reach the host's 127.0.0.1 as 10.0.2.2.
describe('stateless boot in a VM', () => {
  const tmp = tempDir('rsw-boot-');
  let kernel: TestKernel;
  let head: RunningHead;
  let initrd: string;
  let headUrl: string;
  const vms: Vm[] = [];

  beforeAll(async () => {
    kernel = testKernel();
    // Short retry waits so the failure path below stays quick; everything else is the default config.
    const config = join(tmp.dir, 'config.json');
    writeFileSync(config, JSON.stringify({ boot: { retryBaseMs: 300, meshAttempts: 2 } }));
    const built = await buildTestInitramfs(tmp.dir, kernel, { global: ['--config', config], json: true });
    const keys = built.keys;
    initrd = built.initrd;
    expect(built.stderr).toBe('');
    const report = JSON.parse(built.stdout);
    expect(report.modules.map((m: string) => m.split('/').pop())).toEqual(
      expect.arrayContaining(['squashfs.ko', 'overlay.ko', 'loop.ko', 'virtio_net.ko', 'virtio_pci.ko']),
    );

    head = await startHead(join(tmp.dir, 'head'));
    headUrl = `http://10.0.2.2:${new URL(head.url).port}`;
    const image = join(tmp.dir, 'root.squashfs');
    makeTestRoot(join(tmp.dir, 'tree'), image, 3 * 1024 * 1024);
    const pub = await publishToHead(
      head.url,
      join(tmp.dir, 'head', 'admin-token'),
      image,
      'testroot',
      join(keys, 'publisher.key'),
    );
    expect(pub.code).toBe(0);
  }, 180_000);

  afterAll(async () => {
    for (const vm of vms) vm.kill();
    await head?.stop();
    tmp.cleanup();
  });

  it('fetches its SquashFS root from the head, pivots into it with its identity and SSH host key, and the root exits by isa-debug-exit', async () => {
    const vm = startVm({
      kernel: kernel.vmlinuz,
      initrd,
      append: `rackswarm.head=${headUrl} rackswarm.image=testroot rackswarm.mode=stateless rackswarm.linger=2`,
      net: { kind: 'user' },
      timeoutMs: 240_000,
    });
    vms.push(vm);
    const { code, log } = await vm.done;
    expect(log).toContain('rackswarm: switching to the new root');
    // QEMU's default NIC MAC 52:54:00:12:34:56 → the node's derived host name; the root is the overlay.
    expect(log).toMatch(
      new RegExp(`${ROOT_MARKER} host=node-525400123456 machine-id=[0-9a-f]{32} root=overlay `),
    );
    // The SSH host key the head keeps for this MAC is in the root, 0600 — not in the shared image.
    const keys = (await (await fetch(`${head.url}/boot/nodes/52:54:00:12:34:56/ssh-host-keys`)).json()) as {
      ed25519: { publicKey: string };
    };
    expect(log).toContain(` ssh=${keys.ed25519.publicKey.split(' ')[1]} sshmode=600`);
    const [fetched] = consoleJson<{ source: string; size: number; bytesFromSeeder: number }>(log, 'fetched');
    expect(fetched).toMatchObject({ source: 'mesh' });
    expect(fetched.bytesFromSeeder).toBe(fetched.size);
    expect(code, log.slice(-3000)).toBe(ROOT_OK_EXIT);
  }, 300_000);

  it('says why and reboots (never hangs) when the image does not exist', async () => {
    const vm = startVm({
      kernel: kernel.vmlinuz,
      initrd,
      append: `rackswarm.head=${headUrl} rackswarm.image=no-such-image rackswarm.mode=stateless`,
      net: { kind: 'user' },
      timeoutMs: 240_000,
    });
    vms.push(vm);
    const { code, log } = await vm.done;
    // Two mesh attempts, then the head alone over HTTP, then /init's clear line and a reboot (-no-reboot: exit 0).
    expect(log.match(/rackswarm: attempt failed: error RSW_ERR_/g)?.length).toBe(4);
    expect(log).toContain('rackswarm: fetching from the head alone over HTTP');
    expect(log).toMatch(/rackswarm: BOOT FAILED: error RSW_ERR_\w+: .*no-such-image/);
    expect(log).toContain('rackswarm: rebooting');
    expect(log).not.toContain(ROOT_MARKER);
    expect(code).toBe(0);
  }, 300_000);

  it('with rackswarm.rescue=1, a bad command line ends in a working rescue shell, then a reboot', async () => {
    const vm = startVm({
      kernel: kernel.vmlinuz,
      initrd,
      append: `rackswarm.head=${headUrl} rackswarm.image=testroot rackswarm.mode=diskless rackswarm.rescue=1`,
      net: { kind: 'user' },
      timeoutMs: 240_000,
      console: true,
    });
    vms.push(vm);
    await vm.waitFor('rackswarm: rescue shell');
    await new Promise((r) => setTimeout(r, 1000)); // let the shell start reading the console
    vm.type('echo RESCUE-$((6 * 7)) $(cat /proc/cmdline | grep -c rackswarm.rescue=1)\nexit\n');
    const { code, log } = await vm.done;
    expect(log).toMatch(/rackswarm: BOOT FAILED: error RSW_ERR_BOOT_CMDLINE: .*rackswarm\.mode=diskless/);
    expect(log).toContain('RESCUE-42 1');
    expect(log).not.toContain(ROOT_MARKER);
    expect(code).toBe(0); // leaving the shell reboots (-no-reboot: QEMU exits)
  }, 300_000);
});
