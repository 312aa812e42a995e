// Process start of `rackswarm fetch`: CPU seconds and wall of `fetch --help` (module loading only) and of a real
// fetch from a head on loopback (out + cache on tmpfs, so the disk does not blur it), for this checkout and, with
// `--against DIR`, another one (e.g. `git archive OLD | tar -x -C DIR` and a node_modules symlink), run by run
// interleaved so both see the same load. Medians of `--runs N` (default 5); `--size MiB` of the image (default 1024).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHead } from '../test/helpers/head.ts';
import { publishImage } from './lib/publish-image.ts';
import { writeRandomFile } from './lib/random-file.ts';
import { fmt, median } from './lib/stats.ts';

const here = fileURLToPath(new URL('../', import.meta.url));
const MiB = 1024 * 1024;

interface Run {
  wall: number;
  cpu: number;
}

/** One CLI run under `root`, its CPU (user + system, all threads) from bench/lib/report-rss.js. */
function cli(root: string, args: string[]): Promise<Run> {
  const t0 = performance.now();
  return new Promise((done, fail) => {
    const p = spawn(
      process.execPath,
      ['--import', join(here, 'bench/lib/report-rss.js'), join(root, 'bin/rackswarm.js'), ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('close', (code) => {
      const cpu = /bench-cpu-ms (\d+)/.exec(err);
      if (code !== 0 || !cpu) fail(new Error(`rackswarm ${args.join(' ')} failed (${code}): ${err}`));
      else done({ wall: (performance.now() - t0) / 1000, cpu: Number(cpu[1]) / 1000 });
    });
  });
}

export async function benchStart(opts: { against?: string; runs: number; sizeMiB: number }): Promise<string> {
  const trees = [
    { id: 'this checkout', root: here },
    ...(opts.against ? [{ id: opts.against, root: opts.against }] : []),
  ];
  const work = mkdtempSync(join(tmpdir(), 'rsw-bench-start-'));
  const shm = mkdtempSync('/dev/shm/rsw-bench-start-');
  const bin = join(here, 'bin/rackswarm.js');
  const load = [loadavg()[0]];
  try {
    execFileSync(process.execPath, [bin, 'keys', 'generate', '--out', join(work, 'keys')]);
    const img = join(work, 'img');
    writeRandomFile(img, opts.sizeMiB * MiB);
    publishImage(img, { key: join(work, 'keys/publisher.key'), data: join(work, 'head') });
    rmSync(img);
    const head = await startHead(join(work, 'head'));
    const help = new Map(trees.map((t) => [t.id, [] as Run[]]));
    const fetches = new Map(trees.map((t) => [t.id, [] as Run[]]));
    try {
      for (let i = 0; i < opts.runs; i++) {
        for (const t of trees) {
          help.get(t.id)?.push(await cli(t.root, ['fetch', '--help']));
          const out = join(shm, 'out');
          const cache = join(shm, 'cache');
          fetches
            .get(t.id)
            ?.push(
              await cli(t.root, [
                'fetch',
                'img',
                '--head',
                head.url,
                '--trust',
                join(work, 'keys/publisher.pub'),
                '--out',
                out,
                '--cache',
                cache,
                '--linger',
                '0',
                '--json',
              ]),
            );
          rmSync(out, { force: true });
          rmSync(cache, { recursive: true, force: true });
        }
        load.push(loadavg()[0]);
      }
    } finally {
      await head.stop();
    }
    const row = (label: string, runs: Run[] | undefined) =>
      `| ${label} | ${fmt(median((runs ?? []).map((r) => r.cpu)), 2)} | ${fmt(median((runs ?? []).map((r) => r.wall)), 2)} | ${(runs ?? []).map((r) => fmt(r.cpu, 2)).join(', ')} |`;
    return [
      `Process start (\`node bench/start.ts --runs ${opts.runs} --size ${opts.sizeMiB}${opts.against ? ` --against ${opts.against}` : ''}\`), medians of ${opts.runs}, load average ${load.map((x) => fmt(x, 1)).join(' → ')}:`,
      '',
      '| command, checkout | CPU s | wall s | CPU s, run by run |',
      '|---|---|---|---|',
      ...trees.flatMap((t) => [
        row(`\`fetch --help\`, ${t.id}`, help.get(t.id)),
        row(`\`fetch\` ${opts.sizeMiB} MiB to tmpfs, spawn to exit, ${t.id}`, fetches.get(t.id)),
      ]),
    ].join('\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(shm, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const arg = (name: string) => {
    const at = process.argv.indexOf(name);
    return at > 0 ? process.argv[at + 1] : undefined;
  };
  const against = arg('--against');
  console.log(
    await benchStart({
      against: against ? resolve(against) : undefined,
      runs: Number(arg('--runs') ?? 5),
      sizeMiB: Number(arg('--size') ?? 1024),
    }),
  );
}
