/**
 * After a raw disk image has been written to the node's disk (and verified by the fetcher): make the kernel re-read
 * the partition table, find the root filesystem, write the node's identity into it, unmount. The disk is then
 * bootable as this node.
 */
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { RswError } from '../core/errors.ts';
import type { NodeIdentity } from './identity.ts';
import { run } from './network.ts';
import { writeIdentity } from './stateless.ts';

export interface PartitionInfo {
  device: string;
  bytes: number;
  /** ext2/3/4 superblock magic found. */
  ext: boolean;
}

/** The root filesystem: the largest ext partition (a raw image may also hold an EFI or BIOS-boot partition). */
export function pickRootPartition(parts: readonly PartitionInfo[]): PartitionInfo | undefined {
  return parts.filter((p) => p.ext).sort((a, b) => b.bytes - a.bytes)[0];
}

const EXT_MAGIC_OFFSET = 1024 + 0x38;

async function isExt(device: string): Promise<boolean> {
  const fh = await open(device, 'r');
  try {
    const b = Buffer.alloc(2);
    await fh.read(b, 0, 2, EXT_MAGIC_OFFSET);
    return b.readUInt16LE(0) === 0xef53;
  } finally {
    await fh.close();
  }
}

/** The disk's partitions as the kernel now sees them (sysfs), with their sizes and whether they hold ext. */
export async function listPartitions(disk: string, sysfs = '/sys/class/block'): Promise<PartitionInfo[]> {
  const name = basename(disk);
  const out: PartitionInfo[] = [];
  for (const child of (await readdir(`${sysfs}/${name}`)).sort()) {
    if (!child.startsWith(name)) continue;
    const sectors = Number((await readFile(`${sysfs}/${name}/${child}/size`, 'utf8')).trim());
    const device = `/dev/${child}`;
    out.push({ device, bytes: sectors * 512, ext: await isExt(device).catch(() => false) });
  }
  return out;
}

export async function injectIdentityIntoDisk(
  disk: string,
  mountPoint: string,
  identity: NodeIdentity,
): Promise<string> {
  await run(['blockdev', '--rereadpt', disk]);
  let parts: PartitionInfo[] = [];
  for (let i = 0; i < 50 && parts.length === 0; i++) {
    parts = await listPartitions(disk);
    if (parts.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  const root = pickRootPartition(parts);
  if (!root)
    throw new RswError(
      'RSW_ERR_BOOT_FAILED',
      `no ext2/3/4 partition on ${disk} after writing the image (${parts.length} partitions): is it a raw disk image?`,
    );
  await mkdir(mountPoint, { recursive: true });
  await run(['mount', '-t', 'ext4', root.device, mountPoint]);
  try {
    await writeIdentity(mountPoint, identity);
  } finally {
    await run(['umount', mountPoint]);
  }
  await run(['sync']);
  return root.device;
}
