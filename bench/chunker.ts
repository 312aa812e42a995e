// Chunker benchmark: FastCDC throughput with the defaults, and a (min/avg/max) sweep weighing dedup across a
// squashfs update against throughput and per-chunk overhead. `node bench/chunker.ts [--quick]` prints the section.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChunkerParams, chunkBuffer, chunkStream, findCut } from '../core/chunker.ts';
import { loadConfig } from '../core/config.ts';
import { cdcCutter, chunkFile, slabBytesFor } from '../core/file-chunker.ts';
import { hashHex } from '../core/hash.ts';
import { SlabPool } from '../core/slab-pool.ts';
import { chunkRegions, planSquashfsChunks } from '../core/squashfs-chunker.ts';
import { squashfsLayout } from '../core/squashfs-layout.ts';
import { makeTree, mksquashfs, mutateTree, seededBytes } from '../test/fixtures/tree.ts';
import { fmt, gbps, median, repeat } from './lib/stats.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** A manifest entry per chunk: u32 length + BLAKE3-256 (core/manifest.ts). */
const MANIFEST_ENTRY_BYTES = 36;

const CANDIDATES: ChunkerParams[] = [
  { minSize: 8 * KiB, avgSize: 32 * KiB, maxSize: 128 * KiB },
  { minSize: 16 * KiB, avgSize: 64 * KiB, maxSize: 256 * KiB },
  { minSize: 64 * KiB, avgSize: 256 * KiB, maxSize: 1 * MiB },
  { minSize: 128 * KiB, avgSize: 512 * KiB, maxSize: 2 * MiB },
  { minSize: 256 * KiB, avgSize: 1 * MiB, maxSize: 4 * MiB },
  { minSize: 512 * KiB, avgSize: 2 * MiB, maxSize: 8 * MiB },
];
/** Not a candidate (far too many chunks): shows how much of the churn is the update itself, not the chunk size. */
const REFERENCE: ChunkerParams = { minSize: 4 * KiB, avgSize: 16 * KiB, maxSize: 64 * KiB };

const label = (p: ChunkerParams): string =>
  [p.minSize, p.avgSize, p.maxSize].map((n) => (n >= MiB ? `${n / MiB}M` : `${n / KiB}K`)).join(' / ');

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** `total` bytes in `pieceSize` pieces, cycling over `pool` (chunkStream copies what it keeps, so reuse is safe). */
async function* pieces(pool: Buffer, total: number, pieceSize: number): AsyncGenerator<Uint8Array> {
  for (let done = 0; done < total; done += pieceSize) {
    const at = done % pool.length;
    yield pool.subarray(at, at + Math.min(pieceSize, total - done));
  }
}

/** Median chunkStream throughput in GB/s, and the chunk count of the last run. */
async function streamGbps(pool: Buffer, total: number, pieceSize: number, p: ChunkerParams, runs: number) {
  let chunks = 0;
  const secs = await repeat(runs, async () => {
    const t0 = performance.now();
    chunks = 0;
    for await (const _ of chunkStream(pieces(pool, total, pieceSize), p)) chunks++;
    return (performance.now() - t0) / 1000;
  });
  return { gbps: gbps(total, median(secs)), low: gbps(total, Math.max(...secs)), chunks };
}

/** findCut alone over the pool, cycled: the gear scan without chunkStream's copies. */
async function scanGbps(pool: Buffer, total: number, p: ChunkerParams, runs: number): Promise<number> {
  const secs = await repeat(runs, () => {
    const t0 = performance.now();
    for (let done = 0; done < total; done += pool.length) {
      const end = Math.min(pool.length, total - done);
      for (let at = 0; at < end; ) at += findCut(pool, at, end, p);
    }
    return (performance.now() - t0) / 1000;
  });
  return gbps(total, median(secs));
}

/**
 * chunkFile over a file in the page cache, as publish reads: 8 MiB reads into reused slabs, boundaries found in place,
 * no chunk copied. The file is `pool` written `total / pool.length` times.
 */
async function fileGbps(pool: Buffer, total: number, p: ChunkerParams, runs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-chunkfile-'));
  const file = join(dir, 'input');
  try {
    const out = await open(file, 'w');
    for (let done = 0; done < total; done += pool.length)
      await out.write(pool, 0, Math.min(pool.length, total - done));
    await out.close();
    const cutter = cdcCutter(p);
    const secs = await repeat(runs, async () => {
      const slabs = new SlabPool(4, slabBytesFor(cutter));
      const fh = await open(file, 'r');
      const t0 = performance.now();
      for await (const b of chunkFile(fh, total, cutter, slabs)) slabs.release(b.slab);
      const s = (performance.now() - t0) / 1000;
      await fh.close();
      return s;
    });
    return { gbps: gbps(total, median(secs)), low: gbps(total, Math.max(...secs)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Chunk hashes and lengths of a SquashFS image cut at its block boundaries (what publish does for SquashFS). */
async function blockChunks(image: Buffer, p: ChunkerParams): Promise<{ hash: string; length: number }[]> {
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-blocks-'));
  const file = join(dir, 'image.sqfs');
  writeFileSync(file, image);
  const fh = await open(file, 'r');
  try {
    const layout = await squashfsLayout(async (o, l) => image.subarray(o, o + l), image.length);
    if (!layout) throw new Error('bench image: squashfs layout not readable');
    const out: { hash: string; length: number }[] = [];
    for await (const c of chunkRegions(fh, planSquashfsChunks(layout, image.length, p), p))
      out.push({ hash: hashHex(c.data), length: c.length });
    return out;
  } finally {
    await fh.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function newShareBlocks(prev: Buffer, next: Buffer, p: ChunkerParams) {
  const known = new Set((await blockChunks(prev, p)).map((c) => c.hash));
  let newBytes = 0;
  for (const c of await blockChunks(next, p)) if (!known.has(c.hash)) newBytes += c.length;
  return { share: newBytes / next.length, newBytes };
}

/** Share of `next`'s bytes that lie in chunks `prev` does not have: what a peer holding `prev` must fetch. */
function newShare(prev: Buffer, next: Buffer, p: ChunkerParams): { share: number; newBytes: number } {
  const known = new Set(chunkBuffer(prev, p).map((c) => hashHex(c.data)));
  let newBytes = 0;
  for (const c of chunkBuffer(next, p)) if (!known.has(hashHex(c.data))) newBytes += c.length;
  return { share: newBytes / next.length, newBytes };
}

function treeSize(dir: string): number {
  let bytes = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) bytes += statSync(join(e.parentPath, e.name)).size;
  }
  return bytes;
}

const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;
const kib = (n: number): string =>
  n >= 10 * MiB ? `${(n / MiB).toFixed(1)} MiB` : `${Math.round(n / KiB)} KiB`;

interface Images {
  files: number;
  treeBytes: number;
  v1: Buffer;
  /** v1's tree after mutateTree with each seed, files picked uniformly, as squashfs. */
  v2s: Buffer[];
  /** The same with `clustered: true` (runs of neighbouring files, as a package update). */
  v2sClustered: Buffer[];
  changedFiles: number;
}

/** Builds the tree once, then mutated copies (uniform and clustered) per seed; a squashfs image of each. */
function buildImages(files: number, seeds: number[], mksquashfsArgs: string[] = []): Images {
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-chunker-'));
  try {
    const tree = join(dir, 'v1');
    makeTree(tree, { files, seed: 1 });
    const image = (src: string): Buffer => {
      const out = join(dir, 'image.sqfs');
      mksquashfs(src, out, mksquashfsArgs);
      return readFileSync(out);
    };
    const images: Images = {
      files,
      treeBytes: treeSize(tree),
      v1: image(tree),
      v2s: [],
      v2sClustered: [],
      changedFiles: 0,
    };
    for (const seed of seeds) {
      for (const clustered of [false, true]) {
        const copy = join(dir, 'v2');
        cpSync(tree, copy, { recursive: true });
        images.changedFiles = mutateTree(copy, { fraction: 0.01, seed, clustered }).changedFiles;
        (clustered ? images.v2sClustered : images.v2s).push(image(copy));
        rmSync(copy, { recursive: true });
      }
    }
    return images;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function benchChunker(opts: { quick?: boolean }): Promise<string> {
  const quick = opts.quick ?? false;
  const defaults = loadConfig().chunker;
  const total = (quick ? 256 : 1024) * MiB;
  const runs = quick ? 3 : 5;
  const seeds = quick ? [2] : [2, 3, 4];
  const pool = seededBytes(64 * MiB, 1);
  const same = (p: ChunkerParams, q: ChunkerParams): boolean =>
    p.minSize === q.minSize && p.avgSize === q.avgSize && p.maxSize === q.maxSize;
  const isDefault = (p: ChunkerParams): boolean => same(p, defaults);

  // (1) Throughput: the defaults in detail, then each candidate. Measured before the images exist, so that their
  // garbage does not land in the timings.
  const stream4 = await streamGbps(pool, total, 4 * MiB, defaults, runs);
  log(`chunkStream ${label(defaults)}, 4 MiB pieces: ${fmt(stream4.gbps)} GB/s`);
  const stream64k = await streamGbps(pool, total, 64 * KiB, defaults, runs);
  log(`chunkStream ${label(defaults)}, 64 KiB pieces: ${fmt(stream64k.gbps)} GB/s`);
  const scan = await scanGbps(pool, total, defaults, runs);
  log(`findCut ${label(defaults)}: ${fmt(scan)} GB/s`);
  const inFile = await fileGbps(pool, total, defaults, runs);
  log(`chunkFile ${label(defaults)}, from the page cache: ${fmt(inFile.gbps)} GB/s`);
  // Candidates interleaved run by run, so that drift on a shared machine hits them all alike.
  const sweepSecs = new Map<ChunkerParams, number[]>(CANDIDATES.map((p) => [p, []]));
  for (let r = 0; r < runs; r++) {
    for (const p of CANDIDATES)
      sweepSecs.get(p)?.push(total / 1e9 / (await streamGbps(pool, total, 4 * MiB, p, 1)).gbps);
  }
  const sweepGbps = new Map(CANDIDATES.map((p) => [p, gbps(total, median(sweepSecs.get(p) ?? []))]));
  for (const p of CANDIDATES) log(`chunkStream ${label(p)}: ${fmt(sweepGbps.get(p) ?? 0)} GB/s`);

  // (2) Dedup across an update, per candidate.
  const img = buildImages(quick ? 300 : 1500, seeds);
  const mid = img.v1.length >> 1;
  const inserted = Buffer.concat([img.v1.subarray(0, mid), seededBytes(64, 3), img.v1.subarray(mid)]);
  log(`images: ${img.files} files, ${kib(img.treeBytes)} tree, v1 ${kib(img.v1.length)}`);

  const rows: string[] = [];
  const noFragRows: string[] = [];
  {
    const p = defaults.squashfs;
    const blocks = [];
    for (const v2 of img.v2s) blocks.push((await newShareBlocks(img.v1, v2, p)).share);
    noFragRows.push(
      `| mksquashfs defaults (${kib(img.v1.length)}) | ${pct(mean(img.v2s.map((v2) => newShare(img.v1, v2, defaults).share)))} | ${pct(mean(img.v2s.map((v2) => newShare(img.v1, v2, p).share)))} | ${pct(mean(blocks))} |`,
    );
  }
  for (const p of [...CANDIDATES, REFERENCE]) {
    const gb = sweepGbps.get(p);
    const meanChunk = img.v1.length / chunkBuffer(img.v1, p).length;
    const update = img.v2s.map((v2) => newShare(img.v1, v2, p));
    const clustered = img.v2sClustered.map((v2) => newShare(img.v1, v2, p).share);
    const perFile = mean(update.map((u) => u.newBytes)) / img.changedFiles;
    const insert = newShare(img.v1, inserted, p);
    const marks = `${isDefault(p) ? ' (default)' : ''}${same(p, defaults.squashfs) ? ' (default for SquashFS)' : ''}${p === REFERENCE ? ' (reference)' : ''}`;
    rows.push(
      [
        `| ${label(p)}${marks}`,
        gb === undefined ? '–' : fmt(gb),
        kib(meanChunk),
        String(Math.round(GiB / meanChunk)),
        kib((GiB / meanChunk) * MANIFEST_ENTRY_BYTES),
        `**${pct(mean(update.map((u) => u.share)))}**`,
        kib(perFile),
        pct(mean(clustered)),
        `${pct(insert.share)} (${kib(insert.newBytes)}) |`,
      ].join(' | '),
    );
    log(rows.at(-1) ?? '');
  }

  {
    // What publish does for SquashFS: cut at the image's block boundaries (core/squashfs-chunker.ts).
    const p = defaults.squashfs;
    const chunks = (await blockChunks(img.v1, p)).length;
    const meanChunk = img.v1.length / chunks;
    const update = [];
    for (const v2 of img.v2s) update.push(await newShareBlocks(img.v1, v2, p));
    const clustered = [];
    for (const v2 of img.v2sClustered) clustered.push((await newShareBlocks(img.v1, v2, p)).share);
    const perFile = mean(update.map((u) => u.newBytes)) / img.changedFiles;
    rows.push(
      [
        `| ${label(p)} cut at SquashFS block boundaries (**what publish does for SquashFS**)`,
        '–',
        kib(meanChunk),
        String(Math.round(GiB / meanChunk)),
        kib((GiB / meanChunk) * MANIFEST_ENTRY_BYTES),
        `**${pct(mean(update.map((u) => u.share)))}**`,
        kib(perFile),
        pct(mean(clustered)),
        '– |',
      ].join(' | '),
    );
    log(rows.at(-1) ?? '');
  }

  // The same with `mksquashfs -no-fragments` (every file's tail in a block of its own instead of packed with others').
  const noFrag = buildImages(quick ? 300 : 1500, seeds, ['-no-fragments']);
  log(`images -no-fragments: v1 ${kib(noFrag.v1.length)}`);
  {
    const p = defaults.squashfs;
    const cdc = noFrag.v2s.map((v2) => newShare(noFrag.v1, v2, p).share);
    const blocks = [];
    for (const v2 of noFrag.v2s) blocks.push((await newShareBlocks(noFrag.v1, v2, p)).share);
    const general = noFrag.v2s.map((v2) => newShare(noFrag.v1, v2, defaults).share);
    noFragRows.push(
      `| \`mksquashfs -no-fragments\` (${kib(noFrag.v1.length)}) | ${pct(mean(general))} | ${pct(mean(cdc))} | ${pct(mean(blocks))} |`,
    );
    log(noFragRows.at(-1) ?? '');
  }

  const cmd = `node bench/chunker.ts${quick ? ' --quick' : ''}`;
  return [
    '## Chunker (core/chunker.ts, FastCDC)',
    '',
    `chunkStream over ${total / MiB} MiB of pseudo-random bytes in memory, one core, median of ${runs} runs`,
    `(slowest run in brackets), params ${label(defaults)} (min / avg / max: the defaults). Goal: ≥ 1 GB/s.`,
    '',
    '| case | GB/s |',
    '|---|---|',
    `| chunkStream, 4 MiB pieces | ${fmt(stream4.gbps)} (${fmt(stream4.low)}) |`,
    `| chunkStream, 64 KiB pieces | ${fmt(stream64k.gbps)} (${fmt(stream64k.low)}) |`,
    `| findCut alone (gear scan, no copies) | ${fmt(scan)} |`,
    `| chunkFile from a file in the page cache (what publish runs: 8 MiB reads into reused slabs, cut in place) | ${fmt(inFile.gbps)} (${fmt(inFile.low)}) |`,
    '',
    `Parameter sweep. v1 = mksquashfs (gzip, ${kib(img.v1.length)}) of makeTree (${img.files} files,`,
    `${kib(img.treeBytes)}, ~64 KiB mean). v2 = the same after mutateTree rewrote 1 % of the files`,
    `(${img.changedFiles}, picked uniformly over the tree), mean over ${seeds.length} mutation seed(s).`,
    '"Update" is the share of v2\'s bytes in chunks v1 does not have, i.e. what a peer holding v1 fetches',
    '(goal ≤ 5 %); "per changed file" is the same in bytes, divided by the files changed; "clustered" is the',
    'update share when the changed files are three runs of neighbours (as in a package update) instead;',
    '"insert" is v1 with 64 bytes inserted in its middle. GB/s: chunkStream as above, 4 MiB pieces, candidates',
    'interleaved run by run. A SquashFS update rewrites files spread over the image, and each costs about one',
    'chunk besides its own bytes: with the general defaults that is ~4 × the ≤ 5 % goal. So publish cuts SquashFS',
    'images at their compressed-block boundaries (read from the inode and fragment tables; gzip or zstd metadata),',
    'small blocks merged up to `chunker.squashfs.minSize`, the metadata tables content-defined: a rewritten file then',
    'costs its own blocks and its fragment block only (last row). Other compressors (xz, lzo, lz4) fall back to',
    'FastCDC with the `chunker.squashfs` sizes (first row).',
    '',
    '| min / avg / max | GB/s | mean chunk | chunks per GiB | manifest per GiB | update | per changed file | update, clustered | insert |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'The same update (uniform) against how the image was built: `-no-fragments` stores each small file and tail in a',
    'block of its own instead of packing many into shared fragment blocks, so a rewritten small file no longer drags',
    "its fragment block's neighbours along. Operators get the defaults unless they ask; publish handles both.",
    '',
    `| image | FastCDC ${label(defaults)} | FastCDC ${label(defaults.squashfs)} | block-aligned (publish) |`,
    '|---|---|---|---|',
    ...noFragRows,
    '',
    `Reproduce: \`${cmd}\` (or \`npm run bench${quick ? ' -- --quick' : ''}\` for every section).`,
  ].join('\n');
}

if (import.meta.main) {
  process.stdout.write(`${await benchChunker({ quick: process.argv.includes('--quick') })}\n`);
}
