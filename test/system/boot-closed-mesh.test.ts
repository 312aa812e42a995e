import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../helpers/cli.ts';
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

// The closed mesh at boot (docs/SECURITY.md): a real Debian kernel in QEMU boots a shared initramfs that pins the
// head and runs the closed mesh, plus a per-node credentials archive (`boot credentials`) put in front of it; the
// head (mesh.closed) admits the node because its key is enrolled. Credentials come from the initramfs, not the network.
describe('closed-mesh boot in a VM', () => {
  const tmp = tempDir('rsw-boot-mesh-');
  let kernel: TestKernel;
  let head: RunningHead;
  let initrd: string;
  let headUrl: string;
  let token: string;
  const vms: Vm[] = [];

  /** The shared initramfs with `node`'s credentials archive in front (the kernel unpacks both, in order). */
  async function withCredentials(node: string): Promise<{ initrd: string; peerId: string }> {
    const cpio = join(tmp.dir, `${node}.cpio`);
    const r = await runCli([
      'boot',
      'credentials',
      '--peer-key',
      join(tmp.dir, `${node}.key`),
      '--out',
      cpio,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    // A multiple of 4 bytes: the compressed archive after it starts where the kernel looks for the next one.
    expect(statSync(cpio).size % 4).toBe(0);
    const out = join(tmp.dir, `initrd-${node}.img`);
    writeFileSync(out, Buffer.concat([readFileSync(cpio), readFileSync(initrd)]));
    return { initrd: out, peerId: JSON.parse(r.stdout).peerId };
  }

  beforeAll(async () => {
    kernel = testKernel();
    const config = join(tmp.dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({ mesh: { closed: true }, boot: { retryBaseMs: 300, meshAttempts: 1 } }),
    );
    head = await startHead(join(tmp.dir, 'head'), [], ['--config', config]);
    token = join(tmp.dir, 'head', 'admin-token');
    headUrl = `http://10.0.2.2:${new URL(head.url).port}`;
    const built = await buildTestInitramfs(tmp.dir, kernel, {
      global: ['--config', config],
      extra: ['--head-peer-id', head.peerId],
    });
    initrd = built.initrd;
    const image = join(tmp.dir, 'root.squashfs');
    makeTestRoot(join(tmp.dir, 'tree'), image, 3 * 1024 * 1024);
    const pub = await publishToHead(head.url, token, image, 'testroot', join(built.keys, 'publisher.key'));
    expect(pub.code, pub.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    for (const vm of vms) vm.kill();
    await head?.stop();
    tmp.cleanup();
  });

  const boot = (image: string) => {
    const vm = startVm({
      kernel: kernel.vmlinuz,
      initrd: image,
      append: `rackswarm.head=${headUrl} rackswarm.image=testroot rackswarm.mode=stateless rackswarm.linger=2`,
      net: { kind: 'user' },
      timeoutMs: 240_000,
    });
    vms.push(vm);
    return vm;
  };

  it('an enrolled node boots through the mesh with the key from its credentials archive', async () => {
    const node = await withCredentials('node1');
    const add = await runCli(['enroll', 'add', node.peerId, '--head', head.url, '--token-file', token]);
    expect(add.code, add.stderr).toBe(0);
    const { code, log } = await boot(node.initrd).done;
    const [fetched] = consoleJson<{ source: string }>(log, 'fetched');
    expect(fetched, log.slice(-3000)).toMatchObject({ source: 'mesh' });
    expect(log).toMatch(new RegExp(`${ROOT_MARKER} host=node-525400123456 `));
    expect(code, log.slice(-3000)).toBe(ROOT_OK_EXIT);
    const seen = (await (
      await fetch(`${head.url}/api/enrollments/${node.peerId}`, {
        headers: { authorization: `Bearer ${readFileSync(token, 'utf8').trim()}` },
      })
    ).json()) as { enrolled: boolean; refused: number; streamsHandled: number };
    expect(seen).toMatchObject({ enrolled: true, refused: 0 });
    expect(seen.streamsHandled).toBeGreaterThan(0);
  }, 300_000);

  it('a node whose key is not enrolled fails its boot with RSW_ERR_NOT_ENROLLED, not routing around it over HTTP', async () => {
    const node = await withCredentials('node2');
    const { code, log } = await boot(node.initrd).done;
    expect(log).toMatch(/rackswarm: BOOT FAILED: error RSW_ERR_NOT_ENROLLED: /);
    expect(log.replace(/\s+/g, ' ')).toContain(`this node's peer id ${node.peerId} is not enrolled`);
    expect(log).not.toContain('rackswarm: fetching from the head alone over HTTP');
    expect(log).not.toContain(ROOT_MARKER);
    expect(code).toBe(0); // reboot (-no-reboot: QEMU exits)
  }, 300_000);

  it('a closed-mesh initramfs without a node key fails the boot and says so', async () => {
    const { code, log } = await boot(initrd).done;
    expect(log).toMatch(
      /rackswarm: BOOT FAILED: error RSW_ERR_BOOT_FAILED: closed mesh, but the initramfs carries no node key/,
    );
    expect(log).not.toContain(ROOT_MARKER);
    expect(code).toBe(0); // reboot (-no-reboot: QEMU exits)
  }, 300_000);
});
