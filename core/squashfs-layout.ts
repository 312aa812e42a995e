import { inflateSync, zstdDecompressSync } from 'node:zlib';

/**
 * Where a SquashFS 4.0 image's compressed blocks begin and end, read from its superblock, inode table and fragment
 * table (squashfs-tools' layout: data blocks of each file and fragment blocks in the data area, then the metadata
 * tables). Chunking an image at these offsets makes a rewritten file cost exactly its own blocks and the fragment
 * block holding its tail: content-defined chunking cuts through blocks and drags in the neighbouring files'
 * bytes too (docs/BENCHMARKS.md, "Dedup between SquashFS versions").
 *
 * Metadata is decompressed with gzip (mksquashfs's default) or zstd; other compressors (xz, lzo, lz4) and anything
 * unexpected return undefined, and the caller falls back to content-defined chunking. Pure: bytes in, offsets out.
 */
export interface SquashfsLayout {
  /** Sorted, distinct offsets where a block (data or fragment) starts or ends, and where the metadata starts. */
  boundaries: number[];
  /** Bytes used by the filesystem (the image may be padded beyond). */
  bytesUsed: number;
  /** Start of the metadata tables (inode table): after it, no block boundaries are known. */
  metadataStart: number;
}

/** Reads `length` bytes at `offset` of the image (a file or block device). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

const MAGIC = 0x73717368; // "hsqs" little-endian
const SUPERBLOCK_BYTES = 96;
const METADATA_BLOCK = 8192;
const COMP_GZIP = 1;
const COMP_ZSTD = 6;
const NO_FRAGMENT = 0xffffffff;
const BLOCK_UNCOMPRESSED = 1 << 24;
/** Inode and fragment tables are read whole; a bigger one (millions of files) takes the fallback. */
const MAX_TABLE_BYTES = 256 * 1024 * 1024;

class Unsupported extends Error {}

function decompressor(id: number): (b: Buffer) => Buffer {
  if (id === COMP_GZIP) return (b) => inflateSync(b);
  if (id === COMP_ZSTD) return (b) => zstdDecompressSync(b);
  throw new Unsupported(`compressor ${id}`);
}

/** Decodes consecutive metadata blocks of `raw` (starting at its byte 0) into one buffer. */
function metadataBlocks(raw: Buffer, decompress: (b: Buffer) => Buffer, limit = raw.length): Buffer {
  const parts: Buffer[] = [];
  for (let p = 0; p + 2 <= limit; ) {
    const header = raw.readUInt16LE(p);
    const size = header & 0x7fff;
    if (size === 0 || p + 2 + size > raw.length) throw new Unsupported('metadata block out of range');
    const body = raw.subarray(p + 2, p + 2 + size);
    const data = header & 0x8000 ? body : decompress(body);
    if (data.length > METADATA_BLOCK) throw new Unsupported('metadata block too large');
    parts.push(data);
    p += 2 + size;
  }
  return Buffer.concat(parts);
}

/** The block layout of a SquashFS image, or undefined when it cannot be read (see above). */
export async function squashfsLayout(readAt: ReadAt, imageSize: number): Promise<SquashfsLayout | undefined> {
  try {
    return await layout(readAt, imageSize);
  } catch (e) {
    if (e instanceof Unsupported || e instanceof RangeError) return undefined;
    if ((e as { code?: string }).code?.startsWith('Z_') || (e as { code?: string }).code?.startsWith('ERR_'))
      return undefined; // corrupt compressed metadata
    throw e;
  }
}

async function layout(readAt: ReadAt, imageSize: number): Promise<SquashfsLayout> {
  const sb = await readAt(0, SUPERBLOCK_BYTES);
  if (sb.length < SUPERBLOCK_BYTES || sb.readUInt32LE(0) !== MAGIC) throw new Unsupported('not squashfs');
  if (sb.readUInt16LE(28) !== 4) throw new Unsupported('not version 4');
  const inodeCount = sb.readUInt32LE(4);
  const blockSize = sb.readUInt32LE(12);
  const fragmentCount = sb.readUInt32LE(16);
  const decompress = decompressor(sb.readUInt16LE(20));
  const bytesUsed = Number(sb.readBigUInt64LE(40));
  const inodeTable = Number(sb.readBigUInt64LE(64));
  const directoryTable = Number(sb.readBigUInt64LE(72));
  const fragmentTable = sb.readBigUInt64LE(80);
  if (bytesUsed > imageSize || !(inodeTable < directoryTable && directoryTable <= bytesUsed))
    throw new Unsupported('tables out of range');
  if (directoryTable - inodeTable > MAX_TABLE_BYTES) throw new Unsupported('inode table too large');

  const cuts = new Set<number>([inodeTable]);
  const addBlock = (start: number, onDisk: number) => {
    if (onDisk === 0) return; // a sparse block: no bytes
    if (start < SUPERBLOCK_BYTES || start + onDisk > inodeTable) throw new Unsupported('block out of range');
    cuts.add(start);
    cuts.add(start + onDisk);
  };

  const inodes = metadataBlocks(await readAt(inodeTable, directoryTable - inodeTable), decompress);
  let p = 0;
  const u16 = () => {
    const v = inodes.readUInt16LE(p);
    p += 2;
    return v;
  };
  const u32 = () => {
    const v = inodes.readUInt32LE(p);
    p += 4;
    return v;
  };
  const u64 = () => {
    const v = Number(inodes.readBigUInt64LE(p));
    p += 8;
    return v;
  };
  const fileBlocks = (start: number, fileSize: number, fragment: number) => {
    const n = fragment === NO_FRAGMENT ? Math.ceil(fileSize / blockSize) : Math.floor(fileSize / blockSize);
    let at = start;
    for (let k = 0; k < n; k++) {
      const onDisk = u32() & ~BLOCK_UNCOMPRESSED;
      addBlock(at, onDisk);
      at += onDisk;
    }
  };
  for (let i = 0; i < inodeCount; i++) {
    const type = u16();
    p += 14; // mode, uid, gid, mtime, inode number
    switch (type) {
      case 1: // directory
        p += 16;
        break;
      case 2: {
        const start = u32();
        const fragment = u32();
        p += 4; // offset in the fragment
        const size = u32();
        fileBlocks(start, size, fragment);
        break;
      }
      case 3:
      case 10: {
        p += 4; // nlink
        const targetSize = u32();
        p += targetSize;
        if (type === 10) p += 4;
        break;
      }
      case 4:
      case 5:
        p += 8;
        break;
      case 6:
      case 7:
        p += 4;
        break;
      case 8: {
        p += 12; // nlink, file size, start block
        p += 4; // parent
        const indexCount = u16();
        p += 2 + 4; // offset, xattr
        for (let k = 0; k < indexCount; k++) {
          p += 8;
          const nameSize = u32(); // read before adding: `p += u32()` would add to the old p
          p += nameSize + 1;
        }
        break;
      }
      case 9: {
        const start = u64();
        const size = u64();
        p += 8 + 4; // sparse, nlink
        const fragment = u32();
        p += 4 + 4; // offset, xattr
        fileBlocks(start, size, fragment);
        break;
      }
      case 11:
      case 12:
        p += 12;
        break;
      case 13:
      case 14:
        p += 8;
        break;
      default:
        throw new Unsupported(`inode type ${type}`);
    }
    if (p > inodes.length) throw new Unsupported('inode table truncated');
  }

  if (fragmentCount > 0 && fragmentTable !== 0xffffffffffffffffn) {
    const indexBlocks = Math.ceil((fragmentCount * 16) / METADATA_BLOCK);
    const index = await readAt(Number(fragmentTable), indexBlocks * 8);
    const entries: Buffer[] = [];
    for (let k = 0; k < indexBlocks; k++) {
      const at = Number(index.readBigUInt64LE(k * 8));
      const raw = await readAt(at, 2 + METADATA_BLOCK);
      entries.push(metadataBlocks(raw, decompress, 2)); // just the block at its start
    }
    const table = Buffer.concat(entries);
    if (table.length < fragmentCount * 16) throw new Unsupported('fragment table truncated');
    for (let k = 0; k < fragmentCount; k++) {
      const start = Number(table.readBigUInt64LE(k * 16));
      addBlock(start, table.readUInt32LE(k * 16 + 8) & ~BLOCK_UNCOMPRESSED);
    }
  }
  return { boundaries: [...cuts].sort((a, b) => a - b), bytesUsed, metadataStart: inodeTable };
}
