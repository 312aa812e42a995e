import type { ImageFormat } from './manifest.ts';

/** Bytes of an image's start that detectFormat looks at. */
export const DETECT_BYTES = 4096;

/**
 * Guesses an image's format from its first bytes: a SquashFS superblock ("hsqs"), else a disk image (MBR boot
 * signature, GPT header, or an ext2/3/4 or XFS filesystem at the start) is `raw`, else `file`. Pure.
 */
export function detectFormat(head: Uint8Array): ImageFormat {
  const b = Buffer.from(head.buffer, head.byteOffset, head.length);
  if (b.length >= 4 && b.toString('latin1', 0, 4) === 'hsqs') return 'squashfs';
  if (b.length >= 512 && b[510] === 0x55 && b[511] === 0xaa) return 'raw';
  if (b.length >= 520 && b.toString('latin1', 512, 520) === 'EFI PART') return 'raw';
  if (b.length >= 1082 && b.readUInt16LE(1080) === 0xef53) return 'raw';
  if (b.length >= 4 && b.toString('latin1', 0, 4) === 'XFSB') return 'raw';
  return 'file';
}
