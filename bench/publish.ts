import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTree, mksquashfs, mutateTree } from '../test/fixtures/tree.ts';
import { writeRandomFile } from './lib/random-file.ts';
import { fmt, gbps, median } from './lib/stats.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const GiB = 1024 ** 3;

/** The disk's durable write rate in the same run: `size` bytes written in 64 MiB blocks, then one fsync. */
function durableWriteSeconds(path: string, size: number): number {
  const block = randomFillSync(Buffer.alloc(64 * 1024 * 1024));
  const t0 = performance.now();
  const fd = openSync(path, 'w');
  for (let done = 0; done < size; done += block.length)
    writeSync(fd, block, 0, Math.min(block.length, size - done));
  fsyncSync(fd);
  closeSync(fd);
  const seconds = (performance.now() - t0) / 1000;
  rmSync(path);
  return seconds;
}

function readThrough(path: string): void {
  const fd = openSync(path, 'r');
  const block = Buffer.alloc(64 * 1024 * 1024);
  while (readSync(fd, block) > 0);
  closeSync(fd);
}

interface Run {
  seconds: number;
  wall: number;
  maxRssMiB: number;
  /** CPU seconds of the whole process, all threads (user + system), start-up included. */
  cpu: number;
  /** The same, of the main thread alone. */
  mainCpu: number;
  size: number;
  newBytes: number;
  chunks: number;
}

function publishOnce(file: string, data: string, name: string, keyFile: string): Run {
  const t0 = performance.now();
  const args = ['publish', file, '--name', name, '--key', keyFile, '--data', data, '--json'];
  const p = spawnSync(process.execPath, [...REPORTS, join(root, 'bin/rackswarm.js'), ...args], {
    encoding: 'utf8',
  });
  const wall = (performance.now() - t0) / 1000;
  if (p.status !== 0) throw new Error(`publish failed: ${p.stderr}`);
  const out = JSON.parse(p.stdout);
  const rss = Number(/bench-max-rss-kib (\d+)/.exec(p.stderr)?.[1] ?? Number.NaN);
  return {
    seconds: out.seconds,
    wall,
    maxRssMiB: rss / 1024,
    cpu: cpuSeconds(p.stderr),
    mainCpu: cpuSeconds(p.stderr, 'bench-main-cpu-ms'),
    size: out.size,
    newBytes: out.newBytes,
    chunks: out.chunks,
  };
}

/** Preloads that report the process's peak RSS and CPU time, and its main thread's CPU time, on exit. */
const REPORTS = ['bench/lib/report-rss.js', 'bench/lib/report-main-cpu.js'].flatMap((f) => [
  '--import',
  join(root, f),
]);

function cpuSeconds(stderr: string, key = 'bench-cpu-ms'): number {
  return Number(new RegExp(`${key} (\\d+)`).exec(stderr)?.[1] ?? Number.NaN) / 1000;
}

/** CPU seconds (all threads, main thread) of a CLI process that starts, lists the images in `data` and exits. */
function startCpuSeconds(data: string): { cpu: number; mainCpu: number } {
  const p = spawnSync(
    process.execPath,
    [...REPORTS, join(root, 'bin/rackswarm.js'), 'images', '--data', data],
    {
      encoding: 'utf8',
    },
  );
  if (p.status !== 0) throw new Error(`rackswarm images failed: ${p.stderr}`);
  return { cpu: cpuSeconds(p.stderr), mainCpu: cpuSeconds(p.stderr, 'bench-main-cpu-ms') };
}

/** Publish throughput (2 GiB from page cache), peak RSS (4 GiB), and the dedup share of a 1 %-changed SquashFS. */
export async function benchPublish(opts: { quick?: boolean }): Promise<string> {
  const work = mkdtempSync(join(tmpdir(), 'rsw-bench-publish-'));
  try {
    execFileSync(process.execPath, [
      join(root, 'bin/rackswarm.js'),
      'keys',
      'generate',
      '--out',
      join(work, 'keys'),
    ]);
    const key = join(work, 'keys/publisher.key');
    const sizeT = opts.quick ? GiB / 4 : 2 * GiB;
    const sizeR = opts.quick ? GiB / 2 : 4 * GiB;
    const runs = opts.quick ? 2 : 5;

    const fileT = join(work, 'throughput.img');
    writeRandomFile(fileT, sizeT);
    readThrough(fileT); // the image comes from the page cache, as the goal says
    const tRuns: Run[] = [];
    const againRuns: Run[] = [];
    const diskRuns: number[] = [];
    const startRuns: { cpu: number; mainCpu: number }[] = [];
    for (let i = 0; i < runs; i++) {
      const data = join(work, `data-t${i}`);
      tRuns.push(publishOnce(fileT, data, 'bench', key));
      againRuns.push(publishOnce(fileT, data, 'bench', key)); // every chunk already stored: no writes
      startRuns.push(startCpuSeconds(data));
      rmSync(data, { recursive: true, force: true });
      diskRuns.push(durableWriteSeconds(join(work, 'disk-probe'), sizeT));
      process.stderr.write(
        `publish ${sizeT / GiB} GiB: ${fmt(gbps(sizeT, tRuns[i].seconds))} GB/s (${fmt(tRuns[i].cpu)} CPU s), again ${fmt(gbps(sizeT, againRuns[i].seconds))} GB/s (${fmt(againRuns[i].cpu)} CPU s), disk ${fmt(gbps(sizeT, diskRuns[i]))} GB/s, start ${fmt(startRuns[i].cpu)} CPU s\n`,
      );
    }
    rmSync(fileT);

    const fileR = join(work, 'rss.img');
    writeRandomFile(fileR, sizeR);
    const rRuns: Run[] = [];
    for (let i = 0; i < Math.min(runs, 3); i++) {
      const data = join(work, `data-r${i}`);
      rRuns.push(publishOnce(fileR, data, 'bench', key));
      rmSync(data, { recursive: true, force: true });
      process.stderr.write(`publish ${sizeR / GiB} GiB: peak RSS ${fmt(rRuns[i].maxRssMiB, 0)} MiB\n`);
    }
    rmSync(fileR);

    // Dedup: the same tree twice, ~1 % of its files changed in between, each turned into SquashFS by mksquashfs.
    const tree = join(work, 'tree');
    const files = opts.quick ? 500 : 2000;
    makeTree(tree, { files, seed: 7 });
    mksquashfs(tree, join(work, 'v1.squashfs'));
    const { changedFiles } = mutateTree(tree, { fraction: 0.01, seed: 8 });
    mksquashfs(tree, join(work, 'v2.squashfs'));
    const data = join(work, 'data-dedup');
    const v1 = publishOnce(join(work, 'v1.squashfs'), data, 'tree', key);
    const v2 = publishOnce(join(work, 'v2.squashfs'), data, 'tree', key);
    const share = v2.newBytes / v2.size;
    process.stderr.write(`dedup: ${fmt(share * 100, 1)} % of v2 bytes new\n`);

    const tMed = median(tRuns.map((r) => r.seconds));
    const wallMed = median(tRuns.map((r) => r.wall));
    const againMed = median(againRuns.map((r) => r.seconds));
    const start = median(startRuns.map((r) => r.cpu));
    const mainStart = median(startRuns.map((r) => r.mainCpu));
    /** CPU seconds per GiB published, the process's start-up taken off. */
    const cpuPerGiB = (runs: Run[]) => fmt((median(runs.map((r) => r.cpu)) - start) / (sizeT / GiB));
    const mainPerGiB = (runs: Run[]) => (median(runs.map((r) => r.mainCpu)) - mainStart) / (sizeT / GiB);
    return [
      '## Publish (rackswarm publish --data, store on the same disk as the image)',
      '',
      `Pseudo-random image (no dedup possible) read from the page cache; a fresh data directory per run; every chunk`,
      `written to a temp file and fsynced (several in flight), then renamed into place, each directory fsynced once.`,
      `Median of ${runs} runs. "Again" publishes the same file into the same data directory: every chunk is already`,
      `stored, so it reads, cuts and hashes only. CPU seconds are the whole process's (all threads, user + system)`,
      `minus a CLI process that only starts (${fmt(start)} CPU s). Goals: ≥ 1 GB/s, peak RSS ≤ 200 MB.`,
      '',
      '| figure | value |',
      '|---|---|',
      `| publish throughput, ${sizeT / GiB} GiB new (seconds reported by the CLI) | ${fmt(gbps(sizeT, tMed))} GB/s (${fmt(tMed)} s) |`,
      `| same, wall clock including process start | ${fmt(gbps(sizeT, wallMed))} GB/s (${fmt(wallMed)} s) |`,
      `| runs (GB/s) | ${tRuns.map((r) => fmt(gbps(sizeT, r.seconds))).join(', ')} |`,
      `| this disk's durable write rate (${sizeT / GiB} GiB written, one fsync), same runs | ${fmt(gbps(sizeT, median(diskRuns)))} GB/s |`,
      `| publish / durable write rate | ${fmt((median(diskRuns) / tMed) * 100, 0)} % |`,
      `| publishing the same ${sizeT / GiB} GiB again (read + chunk + hash) | ${fmt(gbps(sizeT, againMed))} GB/s (${fmt(againMed)} s) |`,
      `| runs again (GB/s) | ${againRuns.map((r) => fmt(gbps(sizeT, r.seconds))).join(', ')} |`,
      `| CPU per GiB, all threads, new / again | ${cpuPerGiB(tRuns)} / ${cpuPerGiB(againRuns)} s |`,
      `| CPU per GiB, main thread (reads issued, chunks cut, puts issued), new / again | ${fmt(mainPerGiB(tRuns))} / ${fmt(mainPerGiB(againRuns))} s |`,
      `| again: the main thread's bound on an idle machine (1 / its CPU per GB) | ${fmt(1 / (mainPerGiB(againRuns) * 1.073741824))} GB/s |`,
      `| peak RSS publishing ${sizeR / GiB} GiB (maxRSS of the CLI process) | ${fmt(median(rRuns.map((r) => r.maxRssMiB)), 0)} MiB |`,
      '',
      '### Dedup between SquashFS versions',
      '',
      `A generated tree of ${files} files (test/fixtures/tree.ts), mksquashfs → v1; ${changedFiles} files rewritten`,
      `(~1 %), mksquashfs → v2; both published into one data directory. Goal: ≤ 5 % of v2's bytes new.`,
      '',
      '| image | size | chunks | new bytes | new share |',
      '|---|---|---|---|---|',
      `| v1 | ${fmt(v1.size / 2 ** 20, 1)} MiB | ${v1.chunks} | ${fmt(v1.newBytes / 2 ** 20, 1)} MiB | ${fmt((v1.newBytes / v1.size) * 100, 1)} % |`,
      `| v2 | ${fmt(v2.size / 2 ** 20, 1)} MiB | ${v2.chunks} | ${fmt(v2.newBytes / 2 ** 20, 1)} MiB | **${fmt(share * 100, 1)} %** |`,
    ].join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  process.stdout.write(`${await benchPublish({ quick: process.argv.includes('--quick') })}\n`);
}
