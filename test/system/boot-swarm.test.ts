import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../helpers/cli.ts';
import { type RunningHead, startHead } from '../helpers/head.ts';
import {
  BridgeNet,
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

interface Fetched {
  host: string;
  size: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
  bytesReused: number;
}

// Three VMs on one bridge inside a network namespace made for this test, with the head on the same bridge. The
// head's upload is capped so the nodes must trade chunks among themselves; each node reports how many bytes came
// from peers and how many from the head.
describe('three nodes boot at once', () => {
  const tmp = tempDir('rsw-boot-swarm-');
  const net = new BridgeNet(`rsw-boot-${process.pid}`);
  let kernel: TestKernel;
  let head: RunningHead;
  let initrd: string;
  const vms: Vm[] = [];

  beforeAll(async () => {
    kernel = testKernel();
    const built = await buildTestInitramfs(tmp.dir, kernel);
    const keys = built.keys;
    initrd = built.initrd;

    const data = join(tmp.dir, 'head');
    const image = join(tmp.dir, 'root.squashfs');
    makeTestRoot(join(tmp.dir, 'tree'), image, 12 * 1024 * 1024, 7);
    const pub = await runCli([
      'publish',
      image,
      '--name',
      'swarmroot',
      '--key',
      join(keys, 'publisher.key'),
      '--data',
      data,
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    // 1 MB/s for the whole head: a TCG guest alone downloads ~1.6 MB/s, so peers are the faster source.
    const config = join(tmp.dir, 'head.json');
    writeFileSync(config, JSON.stringify({ seeder: { totalBytesPerSecond: 1_000_000 } }));
    head = await startHead(data, [], ['--config', config], { netns: net.ns, host: net.hostAddr });
  }, 180_000);

  afterAll(async () => {
    for (const vm of vms) vm.kill();
    await Promise.all(vms.map((vm) => vm.done));
    await head?.stop();
    net.cleanup();
    tmp.cleanup();
  });

  it('every node pivots into the root, and chunks move VM-to-VM, not only from the head', async () => {
    const port = new URL(head.url).port;
    for (let i = 1; i <= 3; i++) {
      const tap = net.addTap();
      vms.push(
        startVm({
          kernel: kernel.vmlinuz,
          initrd,
          append:
            `rackswarm.head=http://${net.hostAddr}:${port} rackswarm.image=swarmroot rackswarm.mode=stateless ` +
            `rackswarm.rack=r1 rackswarm.linger=60 ip=${tap.address}::${net.hostAddr}:255.255.255.0:vm${i}:eth0:off ` +
            // the root keeps the machine up a while, so its peer serves the slower nodes
            'rsw.test.hold=25',
          net: { kind: 'tap', ifname: tap.ifname, mac: tap.mac },
          netns: net.ns,
          timeoutMs: 420_000,
        }),
      );
    }
    const results = await Promise.all(vms.map((vm) => vm.done));
    const fetched = results.map((r) => consoleJson<Fetched>(r.log, 'fetched')[0]);
    results.forEach((r, i) => {
      expect(r.log).toContain(`${ROOT_MARKER} host=vm${i + 1} `);
      expect(r.code, r.log.slice(-2000)).toBe(ROOT_OK_EXIT);
      const f = fetched[i];
      expect(f.bytesFromPeers + f.bytesFromSeeder + f.bytesReused).toBeGreaterThanOrEqual(f.size);
    });
    const fromPeers = fetched.reduce((s, f) => s + f.bytesFromPeers, 0);
    console.log(
      `per node (from peers / from head, bytes): ${fetched.map((f) => `${f.host} ${f.bytesFromPeers}/${f.bytesFromSeeder}`).join(', ')}`,
    );
    expect(fromPeers).toBeGreaterThan(0);
  }, 480_000);
});
