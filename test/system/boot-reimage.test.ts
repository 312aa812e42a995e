import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededBytes } from '../fixtures/tree.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { type RunningHead, startHead } from '../helpers/head.ts';
import { buildTestInitramfs, startVm, type TestKernel, testKernel, type Vm } from '../helpers/qemu.ts';

const MiB = 1024 * 1024;
const PART_OFFSET = MiB;

/** A raw disk image: an MBR with one Linux partition from 1 MiB, holding an ext4 root made from `tree`. */
function makeDiskImage(tree: string, out: string, bytes: number): void {
  writeFileSync(out, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(bytes), out]);
  execFileSync('mkfs.ext4', [
    '-F',
    '-q',
    '-d',
    tree,
    '-E',
    `offset=${PART_OFFSET}`,
    out,
    `${(bytes - PART_OFFSET) / 1024}k`,
  ]);
  const mbr = Buffer.alloc(512);
  const entry = 446;
  mbr[entry + 4] = 0x83; // Linux
  mbr.writeUInt32LE(PART_OFFSET / 512, entry + 8);
  mbr.writeUInt32LE((bytes - PART_OFFSET) / 512, entry + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  const fd = openSync(out, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
}

/** A file's bytes from the ext4 root inside a raw disk file (debugfs reads it without mounting anything). */
function fromDisk(disk: string, path: string): Buffer {
  return execFileSync('debugfs', ['-R', `cat ${path}`, `${disk}?offset=${PART_OFFSET}`], {
    stdio: ['ignore', 'pipe', 'ignore'],
    maxBuffer: 64 * MiB,
  });
}
const catFromDisk = (disk: string, path: string) => fromDisk(disk, path).toString();

describe('reimage in a VM', () => {
  const tmp = tempDir('rsw-boot-reimage-');
  let kernel: TestKernel;
  let head: RunningHead;
  let initrd: string;
  let image: string;
  const vms: Vm[] = [];

  beforeAll(async () => {
    kernel = testKernel();
    const built = await buildTestInitramfs(tmp.dir, kernel);
    const keys = built.keys;
    initrd = built.initrd;

    const tree = join(tmp.dir, 'tree');
    mkdirSync(join(tree, 'etc'), { recursive: true });
    writeFileSync(join(tree, 'etc/hostname'), 'template\n');
    writeFileSync(join(tree, 'etc/os-release'), 'NAME="rackswarm test OS"\n');
    writeFileSync(join(tree, 'payload'), seededBytes(6 * MiB, 11));
    image = join(tmp.dir, 'disk.raw');
    makeDiskImage(tree, image, 24 * MiB);
    const data = join(tmp.dir, 'head');
    const pub = await runCli([
      'publish',
      image,
      '--name',
      'diskimg',
      '--format',
      'raw',
      '--key',
      join(keys, 'publisher.key'),
      '--data',
      data,
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    head = await startHead(data);
  }, 180_000);

  afterAll(async () => {
    for (const vm of vms) vm.kill();
    await head?.stop();
    tmp.cleanup();
  });

  it('writes the raw image to its virtio disk, injects its host name into the root filesystem, and reboots', async () => {
    const disk = join(tmp.dir, 'vm-disk.raw');
    execFileSync('truncate', ['-s', String(32 * MiB), disk]);
    const vm = startVm({
      kernel: kernel.vmlinuz,
      initrd,
      append:
        `rackswarm.head=http://10.0.2.2:${new URL(head.url).port} rackswarm.image=diskimg rackswarm.mode=reimage ` +
        'rackswarm.disk=/dev/vda rackswarm.hostname=reimaged-7 rackswarm.linger=0',
      net: { kind: 'user' },
      disk,
      timeoutMs: 240_000,
    });
    vms.push(vm);
    const { code, log } = await vm.done;
    expect(log).toContain('rackswarm: identity of reimaged-7 written into /dev/vda1');
    expect(log).toContain('rackswarm: image written and checked; rebooting into it');
    expect(code, log.slice(-2000)).toBe(0); // -no-reboot: the guest's reboot ends QEMU

    // From the host: the partition table and the image's files are on the disk, with this node's identity.
    const written = readFileSync(disk);
    const original = readFileSync(image);
    expect(written.subarray(0, 512).equals(original.subarray(0, 512))).toBe(true);
    expect(catFromDisk(disk, '/etc/hostname')).toBe('reimaged-7\n');
    expect(catFromDisk(disk, '/etc/machine-id')).toMatch(/^[0-9a-f]{32}\n$/);
    expect(catFromDisk(disk, '/etc/os-release')).toBe('NAME="rackswarm test OS"\n');
    expect(fromDisk(disk, '/payload').equals(seededBytes(6 * MiB, 11))).toBe(true);
    expect(catFromDisk(image, '/etc/hostname')).toBe('template\n'); // the published image is untouched
  }, 300_000);
});
