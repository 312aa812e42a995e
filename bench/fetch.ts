// Fetch benchmarks (issue "Peer"): (a) one peer from the seeder vs raw TCP moving the same bytes, (b) head egress
// and time to the last node for 8 and 16 local peers, (c) peer RSS while fetching a large image. Real processes on
// loopback: a real `rackswarm head`, real `rackswarm fetch` processes.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RunningHead, startHead } from '../test/helpers/head.ts';
import { durableWriteSeconds } from './lib/durable-write.ts';
import { processCpuSeconds } from './lib/proc-cpu.ts';
import { publishImage } from './lib/publish-image.ts';
import { writeRandomFile } from './lib/random-file.ts';
import { fmt, median } from './lib/stats.ts';
import { tcpFloorSeconds } from './lib/tcp-floor.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const bin = join(root, 'bin/rackswarm.js');
const MiB = 1024 * 1024;

interface FetchRun {
  code: number | null;
  /** Seconds from spawn to exit. */
  wall: number;
  /** Seconds from spawn to the summary line on stdout (process start included, the cache copy and exit not). */
  toSummary?: number;
  summary?: { seconds: number; dataSeconds?: number; bytesFromPeers: number; bytesFromSeeder: number };
  maxRssKiB?: number;
  cpuMs?: number;
}

function fetchOnce(
  head: RunningHead,
  dir: string,
  n: string,
  pub: string,
  extra: string[] = [],
  rss = false,
  global: string[] = [],
  cli = bin,
): Promise<FetchRun> {
  const args = [
    ...(rss ? ['--import', join(root, 'bench/lib/report-rss.js')] : []),
    cli,
    ...global,
    'fetch',
    'img',
    '--head',
    head.url,
    '--trust',
    pub,
    '--out',
    join(dir, `out-${n}`),
    '--cache',
    join(dir, `cache-${n}`),
    '--json',
    ...extra,
  ];
  const t0 = performance.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let toSummary: number | undefined;
    p.stdout.on('data', (d) => {
      out += d;
      if (toSummary === undefined && /^\{"id":/m.test(out)) toSummary = (performance.now() - t0) / 1000;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('close', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      let summary: FetchRun['summary'];
      try {
        summary = JSON.parse(last);
      } catch {}
      const rssMatch = /bench-max-rss-kib (\d+)/.exec(err);
      const cpuMatch = /bench-cpu-ms (\d+)/.exec(err);
      if (code !== 0) process.stderr.write(`fetch ${n} failed: ${err}\n`);
      resolve({
        code,
        wall: (performance.now() - t0) / 1000,
        toSummary,
        summary,
        maxRssKiB: rssMatch ? Number(rssMatch[1]) : undefined,
        cpuMs: cpuMatch ? Number(cpuMatch[1]) : undefined,
      });
    });
  });
}

async function headEgress(head: RunningHead): Promise<number> {
  const text = await (await fetch(`${head.url}/metrics`)).text();
  return Number(/^rsw_seeder_bytes_served_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

export async function benchFetch(opts: {
  quick?: boolean;
  parts?: string;
  swarmRuns?: number;
  peers?: number[];
  racks?: number[];
  /** (a): only these variants (ids: bulk-tmpfs, bulk-tmpfs-nocopy, bulk-disk, tls, noise). @default all */
  variants?: string[];
  /** (a): also run every variant with the CLI of this other checkout (its own head too), alternating run by run. */
  against?: string;
  /** (a): runs per variant. @default 3 (2 with quick) */
  runs?: number;
  /** (a) and (d): the image's size in MiB. @default 1024 (256 with quick) */
  sizeMiB?: number;
}): Promise<string> {
  const parts = new Set((opts.parts ?? 'a,b,c').split(','));
  const work = mkdtempSync(join(tmpdir(), 'rsw-bench-fetch-'));
  const heads: RunningHead[] = [];
  try {
    execFileSync(process.execPath, [bin, 'keys', 'generate', '--out', join(work, 'keys')]);
    const key = join(work, 'keys/publisher.key');
    const pub = join(work, 'keys/publisher.pub');
    const oneSize = (opts.sizeMiB ?? (opts.quick ? 256 : 1024)) * MiB;
    const swarmSize = 128 * MiB;
    const bigSize = (opts.quick ? 1024 : 4096) * MiB;
    const runs = opts.runs ?? (opts.quick ? 2 : 3);

    // (a) one peer from the seeder, against raw TCP moving the same bytes, interleaved run by run
    const one = join(work, 'one.img');
    writeRandomFile(one, oneSize);
    publishImage(one, { key, data: join(work, 'head-a') });
    // This checkout, and with --against another one (its own head: the serving side is under test too).
    const builds = [{ id: '', label: '', cli: bin, head: await startHead(join(work, 'head-a')) }];
    heads.push(builds[0].head);
    if (opts.against) {
      publishImage(one, { key, data: join(work, 'head-a-against') });
      const other = await startHead(join(work, 'head-a-against'), [], [], { root: opts.against });
      heads.push(other);
      builds[0].label = ' — this checkout';
      builds.push({
        id: '@against',
        label: ` — ${opts.against}`,
        cli: join(opts.against, 'bin/rackswarm.js'),
        head: other,
      });
    }
    const tlsConfig = join(work, 'libp2p-tls.json');
    writeFileSync(tlsConfig, JSON.stringify({ p2p: { dataPlane: 'libp2p' } }));
    const noiseConfig = join(work, 'libp2p-noise.json');
    writeFileSync(noiseConfig, JSON.stringify({ p2p: { dataPlane: 'libp2p', encryption: ['noise'] } }));
    // Where a fetch writes its output and cache: the disk under os.tmpdir() (every write made durable, so bounded by
    // the disk's fdatasync'd write rate) or tmpfs (what a stateless node does: its root is in RAM), where the bound is
    // the transport, compared with raw TCP.
    const shm = mkdtempSync('/dev/shm/rsw-bench-fetch-');
    const noCopyConfig = join(work, 'no-cache-copies.json');
    writeFileSync(noCopyConfig, JSON.stringify({ peer: { cacheCopies: false } }));
    const allVariants = [
      {
        id: 'bulk-tmpfs',
        label: 'bulk TCP (token over libp2p TLS) (default), out + cache on tmpfs',
        global: [] as string[],
        dir: shm,
      },
      {
        id: 'bulk-tmpfs-nocopy',
        label:
          'the same with `peer.cacheCopies: false` (no copy of the image into the cache after the summary)',
        global: ['--config', noCopyConfig],
        dir: shm,
      },
      {
        id: 'bulk-disk',
        label: `bulk TCP (default), out + cache on the disk (${tmpdir()})`,
        global: [] as string[],
        dir: work,
      },
      {
        id: 'tls',
        label: 'libp2p TCP + TLS 1.3 + Yamux (`p2p.dataPlane: "libp2p"`), tmpfs',
        global: ['--config', tlsConfig],
        dir: shm,
      },
      {
        id: 'noise',
        label: 'libp2p TCP + Noise + Yamux, tmpfs',
        global: ['--config', noiseConfig],
        dir: shm,
      },
    ];
    const chosen = allVariants.filter((v) => !opts.variants || opts.variants.includes(v.id));
    const variants = builds.flatMap((b) =>
      chosen.map((v) => ({ ...v, base: v.id, id: v.id + b.id, label: v.label + b.label, build: b })),
    );
    const single = new Map(
      variants.map((v) => [
        v.id,
        {
          seconds: [] as number[],
          data: [] as number[],
          toSummary: [] as number[],
          wall: [] as number[],
          cpu: [] as number[],
          head: [] as number[],
        },
      ]),
    );
    const raw: number[] = [];
    const floorHash: number[] = [];
    const floorWrite: number[] = [];
    const disk: number[] = [];
    const loadA = [loadavg()[0]];
    try {
      for (let i = 0; i < (parts.has('a') ? runs : 0); i++) {
        // With two builds, which goes first alternates run by run.
        const order = chosen.flatMap((c) => {
          const same = variants.filter((x) => x.base === c.id);
          return i % 2 === 0 ? same : same.reverse();
        });
        for (const v of order) {
          const head = v.build.head;
          const headCpu0 = processCpuSeconds(head.proc.pid);
          const r = await fetchOnce(
            head,
            v.dir,
            `a${i}${v.id}`,
            pub,
            ['--linger', '0'],
            true,
            v.global,
            v.build.cli,
          );
          if (r.code !== 0 || !r.summary) throw new Error('single fetch failed');
          const got = single.get(v.id);
          got?.seconds.push(r.summary.seconds);
          got?.data.push(r.summary.dataSeconds ?? Number.NaN);
          got?.toSummary.push(r.toSummary ?? Number.NaN);
          got?.wall.push(r.wall);
          got?.cpu.push((r.cpuMs ?? Number.NaN) / 1000);
          got?.head.push(processCpuSeconds(head.proc.pid) - headCpu0);
          rmSync(join(v.dir, `out-a${i}${v.id}`), { force: true });
          rmSync(join(v.dir, `cache-a${i}${v.id}`), { recursive: true, force: true });
          process.stderr.write(
            `fetch one peer (${v.id}): ${fmt(oneSize / r.summary.seconds / 1e6, 0)} MB/s (${fmt(r.summary.seconds, 2)} s, data phase ${fmt(r.summary.dataSeconds ?? Number.NaN, 2)} s, spawn to summary ${fmt(r.toSummary ?? Number.NaN, 2)} s, to exit ${fmt(r.wall, 2)} s), fetch ${fmt((r.cpuMs ?? Number.NaN) / 1000, 2)} / head ${fmt(got?.head.at(-1) ?? Number.NaN, 2)} CPU s\n`,
          );
        }
        raw.push(await tcpFloorSeconds(one, 'raw'));
        floorHash.push(await tcpFloorSeconds(one, 'hash'));
        floorWrite.push(await tcpFloorSeconds(one, 'hash+write', shm));
        disk.push(durableWriteSeconds(join(work, 'durable-write.bin'), oneSize));
        process.stderr.write(
          `raw TCP ${fmt(oneSize / (raw.at(-1) ?? 1) / 1e6, 0)} MB/s (+ BLAKE3 ${fmt(oneSize / (floorHash.at(-1) ?? 1) / 1e6, 0)}, + BLAKE3 + tmpfs write ${fmt(oneSize / (floorWrite.at(-1) ?? 1) / 1e6, 0)}), durable write to disk ${fmt(oneSize / (disk.at(-1) ?? 1) / 1e6, 0)} MB/s\n`,
        );
        loadA.push(loadavg()[0]);
      }
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
    // (d) one node serving onward: node A fetches and stays (--linger), then node B fetches; the seeder is offered only
    // chunks no neighbour holds (scheduler rule 4), so B takes the image from A. A's CPU while B fetches.
    const relay = new Map(builds.map((b) => [b.id, { seconds: [] as number[], serving: [] as number[] }]));
    for (let i = 0; i < (parts.has('d') ? runs : 0); i++) {
      for (const b of i % 2 === 0 ? builds : [...builds].reverse()) {
        const dir = mkdtempSync('/dev/shm/rsw-bench-relay-');
        try {
          const a = spawn(
            process.execPath,
            [b.cli, '--config', noCopyConfig, 'fetch', 'img', '--head', b.head.url, '--trust', pub].concat([
              '--out',
              join(dir, 'out-a'),
              '--cache',
              join(dir, 'cache-a'),
              '--json',
              '--linger',
              '300',
            ]),
            { stdio: ['ignore', 'pipe', 'ignore'] },
          );
          const exited = new Promise((resolve) => a.on('exit', resolve));
          await new Promise<void>((resolve, reject) => {
            let out = '';
            a.stdout.on('data', (d) => {
              out += d;
              if (/^\{"id":/m.test(out)) resolve();
            });
            a.on('exit', () => reject(new Error('node A exited before its summary')));
          });
          await new Promise((r) => setTimeout(r, 1000));
          const cpu0 = processCpuSeconds(a.pid);
          const r = await fetchOnce(
            b.head,
            dir,
            'b',
            pub,
            ['--linger', '0'],
            true,
            ['--config', noCopyConfig],
            b.cli,
          );
          const serving = processCpuSeconds(a.pid) - cpu0;
          a.kill();
          await exited;
          if (r.code !== 0 || !r.summary) throw new Error('relayed fetch failed');
          relay.get(b.id)?.seconds.push(r.summary.seconds);
          relay.get(b.id)?.serving.push(serving);
          process.stderr.write(
            `relay${b.id}: B ${fmt(r.summary.seconds, 2)} s, ${fmt(r.summary.bytesFromPeers / oneSize, 2)} × image from peers; A serving ${fmt(serving, 2)} CPU s\n`,
          );
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
    for (const b of builds) await b.head.stop();

    // (b) head egress and time to the last node, N peers started together
    const swarmImg = join(work, 'swarm.img');
    writeRandomFile(swarmImg, swarmSize);
    const swarmRows: string[] = [];
    const planes = [
      { id: 'bulk', label: 'bulk TCP (default)', global: [] as string[] },
      { id: 'libp2p', label: '`p2p.dataPlane: "libp2p"`', global: ['--config', tlsConfig] },
    ];
    // Rack layouts: every node in one rack, and the nodes alternating between two racks (the tracker then links the
    // racks through a few gateways per rack: tracker/handout-policy.ts rule 5).
    for (let run = 0; run < (parts.has('b') ? (opts.swarmRuns ?? 1) : 0); run++) {
      for (const n of opts.peers ?? (opts.quick ? [8] : [8, 16])) {
        for (const [racks, plane] of (opts.racks ?? [1, 2]).flatMap((r) =>
          planes.map((p) => [r, p] as const),
        )) {
          const dir = join(work, `head-b${n}-${racks}-${plane.id}-${run}`);
          publishImage(swarmImg, { key, data: dir });
          const head = await startHead(dir);
          heads.push(head);
          const t0 = performance.now();
          const load0 = loadavg()[0];
          const results = await Promise.all(
            Array.from({ length: n }, (_, i) =>
              fetchOnce(
                head,
                work,
                `b${n}-${i}`,
                pub,
                ['--linger', '5', '--rack', `r${i % racks}`],
                false,
                plane.global,
              ),
            ),
          );
          const failed = results.filter((r) => r.code !== 0).length;
          const doneAt = results.map((r) => (r.summary?.seconds ?? Number.NaN) + 0);
          const egress = await headEgress(head);
          const fromPeers = results.reduce((a, r) => a + (r.summary?.bytesFromPeers ?? 0), 0);
          const fromSeeder = results.reduce((a, r) => a + (r.summary?.bytesFromSeeder ?? 0), 0);
          swarmRows.push(
            `| ${n} | ${racks === 1 ? 'one rack' : `${racks} racks`} | ${plane.label} | ${fmt(Math.max(...doneAt), 1)} s | ${fmt(median(doneAt), 1)} s | ${fmt(egress / swarmSize, 2)} × | ${fmt(fromSeeder / swarmSize, 2)} × | ${fmt((fromPeers / (n * swarmSize)) * 100, 0)} % | ${failed} | ${fmt((performance.now() - t0) / 1000, 1)} s | ${fmt(load0, 0)} |`,
          );
          process.stderr.write(
            `swarm of ${n} in ${racks} rack(s) (${plane.id}): last ${fmt(Math.max(...doneAt), 1)} s, head egress ${fmt(egress / swarmSize, 2)} × image, used from the seeder ${fmt(fromSeeder / swarmSize, 2)} ×\n`,
          );
          await head.stop();
          rmSync(dir, { recursive: true, force: true });
          for (let i = 0; i < n; i++) {
            rmSync(join(work, `out-b${n}-${i}`), { force: true });
            rmSync(join(work, `cache-b${n}-${i}`), { recursive: true, force: true });
          }
        }
      }
    }

    // (c) peer RSS while fetching a large image, on each data plane
    const rssRuns = new Map<string, FetchRun>();
    if (parts.has('c')) {
      const big = join(work, 'big.img');
      writeRandomFile(big, bigSize);
      publishImage(big, { key, data: join(work, 'head-c') });
      rmSync(big);
      const headC = await startHead(join(work, 'head-c'));
      heads.push(headC);
      for (const v of [allVariants[0], allVariants[3]]) {
        rssRuns.set(v.id, await fetchOnce(headC, work, `c${v.id}`, pub, ['--linger', '0'], true, v.global));
        rmSync(join(work, `out-c${v.id}`), { force: true });
        rmSync(join(work, `cache-c${v.id}`), { recursive: true, force: true });
      }
      await headC.stop();
    }

    const rawMed = median(raw);
    const diskMed = median(disk);
    const GiBs = oneSize / (1024 * MiB);
    const singleRows = variants.map((v) => {
      const got = single.get(v.id) ?? { seconds: [], data: [], toSummary: [], wall: [], cpu: [], head: [] };
      const med = median(got.seconds);
      // A checkout whose summary has no dataSeconds (before it existed): no data-phase figure.
      const dataMed = got.data.some(Number.isNaN) ? Number.NaN : median(got.data);
      const dataCell = Number.isNaN(dataMed)
        ? '—'
        : `${fmt(dataMed, 2)} s: ${fmt(oneSize / dataMed / 1e6, 0)} MB/s${v.dir === work ? '' : ` = ${fmt((rawMed / dataMed) * 100, 0)} %`}; start + end ${fmt((med - dataMed) * 1000, 0)} ms`;
      const bound =
        v.dir === work
          ? `${fmt((diskMed / med) * 100, 0)} % of disk`
          : `${fmt((rawMed / med) * 100, 0)} % of raw TCP`;
      return `| ${v.label} | ${fmt(oneSize / med / 1e6, 0)} | ${bound} | ${got.seconds.map((x) => fmt(x, 2)).join(', ')} | ${dataCell} | ${fmt(median(got.toSummary), 2)} | ${fmt(median(got.wall), 2)} | ${fmt(median(got.cpu) / GiBs, 2)} | ${fmt(median(got.head) / GiBs, 2)} |`;
    });
    return [
      '## Fetch (rackswarm fetch through a real head on loopback)',
      '',
      ...(parts.has('a')
        ? [
            `(a) One peer fetching a ${oneSize / MiB} MiB image from the seeder (manifest, download, writes and fdatasync;`,
            'every chunk BLAKE3-checked on receipt), against raw Node TCP moving the same bytes between two processes and',
            `against the disk's own durable write (${oneSize / MiB} MiB + fdatasync from Node), run by run; median of ${runs}.`,
            `Load average ${loadA.map((x) => fmt(x, 1)).join(' → ')}. MB/s uses the summary's \`seconds\` (from the start of the`,
            "fetch command to the verified image: not module loading before it, nor `peer.cacheCopies`' copy into the cache",
            'after it); the two spawn columns (medians) add process start, then also the copy and exit. Goal: ≥ 70 % of raw TCP.',
            'The two "floor" rows move the same bytes with only the work any verified fetch must add (bench/lib/tcp-floor.ts):',
            "a BLAKE3 per piece, then the write into the output on tmpfs; none of rackswarm's protocol or bookkeeping.",
            '',
            "Data phase: the summary's `dataSeconds` (median), from the first chunk request to the last chunk verified and",
            'written, its MB/s and share of raw TCP; "start + end" is the rest of `seconds` (everything before the first',
            'request, the final fdatasync and the done announce). The goal is on `seconds`, not on this column.',
            '',
            'CPU columns: seconds of CPU (user + system, every thread) per GiB, median — the fetch process from its own',
            'resource usage (process start and cache copy included), the head from /proc.',
            '',
            '| case | MB/s | of its bound | runs (s) | data phase alone | spawn to summary (s) | spawn to exit (s) | fetch CPU s/GiB | head CPU s/GiB |',
            '|---|---|---|---|---|---|---|---|---|',
            ...singleRows,
            `| raw Node TCP, same bytes | ${fmt(oneSize / rawMed / 1e6, 0)} | 100 % | ${raw.map((x) => fmt(x, 2)).join(', ')} | | | | | |`,
            ...[
              { label: 'floor: raw TCP read into 512 KiB pieces, each BLAKE3-hashed', xs: floorHash },
              {
                label:
                  'floor: the same, each piece also written at its offset to tmpfs (what any verified fetch does)',
                xs: floorWrite,
              },
            ].map(
              ({ label, xs }) =>
                `| ${label} | ${fmt(oneSize / median(xs) / 1e6, 0)} | ${fmt((rawMed / median(xs)) * 100, 0)} % of raw TCP | ${xs.map((x) => fmt(x, 2)).join(', ')} | | | | | |`,
            ),
            `| durable write to the disk (${tmpdir()}), same size | ${fmt(oneSize / diskMed / 1e6, 0)} | 100 % | ${disk.map((x) => fmt(x, 2)).join(', ')} | | | | | |`,
            '',
          ]
        : []),
      ...(parts.has('d')
        ? [
            `(d) One node serving onward (${oneSize / MiB} MiB, out + cache on tmpfs, \`peer.cacheCopies: false\`): node A fetches and`,
            'stays, then node B fetches it from A; the CPU A spends while B fetches, per GiB served, median.',
            '',
            '| build | B: seconds (runs) | A serving: CPU s/GiB (runs) |',
            '|---|---|---|',
            ...builds.map((b) => {
              const d = relay.get(b.id) ?? { seconds: [], serving: [] };
              return `| ${b.label.replace(/^ — /, '') || 'this checkout'} | ${d.seconds.map((x) => fmt(x, 2)).join(', ')} | ${fmt(median(d.serving) / GiBs, 2)} (${d.serving.map((x) => fmt(x, 2)).join(', ')}) |`;
            }),
            '',
          ]
        : []),
      ...(parts.has('b')
        ? [
            `(b) N fetch processes of a ${swarmSize / MiB} MiB image started together on this 2-core machine (every process`,
            'competes for the same 2 cores, so these times measure CPU contention more than the protocol; the network testbed',
            "with shaped links is the real measure), in one rack and alternating between two. Head egress is the seeder's own",
            'byte count; "used from the seeder" sums the fetches\' bytesFromSeeder (chunks new to their receiver). Load: the',
            'load average when the swarm started.',
            '',
            '| peers | racks | data plane | time to last node | median node | head egress / image | used from the seeder / image | bytes from peers | failed | wall | load |',
            '|---|---|---|---|---|---|---|---|---|---|---|',
            ...swarmRows,
            '',
          ]
        : []),
      ...(parts.has('c')
        ? [
            `(c) Peak RSS of a fetch process downloading a ${bigSize / MiB} MiB image from the seeder (goal ≤ 150 MB):`,
            '',
            '| data plane | peak RSS | fetch CPU s/GiB | result |',
            '|---|---|---|---|',
            ...[allVariants[0], allVariants[3]].map((v) => {
              const r = rssRuns.get(v.id);
              return `| ${v.id === 'tls' ? 'libp2p TCP + TLS 1.3 + Yamux' : 'bulk TCP (default)'}, out + cache on the disk | ${fmt((r?.maxRssKiB ?? Number.NaN) / 1024, 0)} MiB (${fmt(((r?.maxRssKiB ?? Number.NaN) * 1024) / 1e6, 0)} MB) | ${fmt((r?.cpuMs ?? Number.NaN) / 1000 / (bigSize / (1024 * MiB)), 2)} | ${r?.code === 0 ? 'completed' : 'FAILED'} in ${fmt(r?.summary?.seconds ?? Number.NaN, 1)} s |`;
            }),
            '',
          ]
        : []),
      'Reproduce: `node bench/fetch.ts` (`--quick` for a shorter run, `--parts a,c` to leave out the swarm; for (a) and (d): `--variants bulk-tmpfs,bulk-tmpfs-nocopy`, `--runs N`, `--size MiB` (the image, 1024 by default), `--against DIR` (another checkout, its CLI bundle built: alternated run by run); `--parts d`: one node serving onward; for (b): `--peers 8,16`, `--racks 1,2`, `--swarm-runs N`).',
    ].join('\n');
  } finally {
    for (const h of heads) await h.stop('SIGKILL').catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const at = process.argv.indexOf('--parts');
  const runsAt = process.argv.indexOf('--swarm-runs');
  const peersAt = process.argv.indexOf('--peers');
  const racksAt = process.argv.indexOf('--racks');
  const variantsAt = process.argv.indexOf('--variants');
  const againstAt = process.argv.indexOf('--against');
  const aRunsAt = process.argv.indexOf('--runs');
  const sizeAt = process.argv.indexOf('--size');
  console.log(
    await benchFetch({
      quick: process.argv.includes('--quick'),
      parts: at > 0 ? process.argv[at + 1] : undefined,
      swarmRuns: runsAt > 0 ? Number(process.argv[runsAt + 1]) : undefined,
      racks: racksAt > 0 ? process.argv[racksAt + 1].split(',').map(Number) : undefined,
      peers: peersAt > 0 ? process.argv[peersAt + 1].split(',').map(Number) : undefined,
      variants: variantsAt > 0 ? process.argv[variantsAt + 1].split(',') : undefined,
      against: againstAt > 0 ? process.argv[againstAt + 1] : undefined,
      runs: aRunsAt > 0 ? Number(process.argv[aRunsAt + 1]) : undefined,
      sizeMiB: sizeAt > 0 ? Number(process.argv[sizeAt + 1]) : undefined,
    }),
  );
}
