// The swarm testbed (issue 5): a real `rackswarm head` and N real `rackswarm fetch` processes, each in a network
// namespace of its own behind `tc tbf`-shaped links (bench/testbed/fabric.ts), then the same image from nginx to N
// curl clients on the same links. Reports the time to the last verified node against the Kumar–Ross bound, head
// egress and cross-rack bytes from the kernel's interface counters, and the CPU load during the run.
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV, V8_FLAGS } from '../../bin/launch.js';
import { parseStepLine } from '../../cli/start-steps.ts';
import type { FetchFlow, FetchProgress } from '../../peer/fetcher.ts';
import { kumarRossSeconds, mbitToBytes } from '../lib/bounds.ts';
import {
  type CpuBreakdown,
  cpuBreakdownDelta,
  netnsTcpOpens,
  processCpuBreakdown,
  processCpuSeconds,
} from '../lib/proc-cpu.ts';
import { publishImage } from '../lib/publish-image.ts';
import { median } from '../lib/stats.ts';
import { counterSpreads, formatCounterSpreads } from './counters.ts';
import { type CpuLoad, CpuMeter } from './cpu.ts';
import { Fabric } from './fabric.ts';
import { type Proc, Procs } from './procs.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin/rackswarm.js');
const gate = join(root, 'bench/testbed/gate.ts');
// The peers start behind a --import gate; bin/rackswarm.js re-executing itself (execve, for its memory flags) would
// load the gate a second time after the release and wait there forever. So the testbed starts the head and every
// peer with the V8 flags and environment bin/rackswarm.js would give them (bin/launch.js), and no re-execution:
// what it measures is what ships (session 8: it ran them without, and then `--optimize-for-size`'s ~15 % of a node's
// CPU went unseen).
process.env.RSW_NO_REEXEC = '1';
for (const [k, v] of Object.entries(ENV)) process.env[k] ??= v;
const MiB = 1024 * 1024;
const HTTP_PORT = 7480;
const P2P_PORT = 7481;
const NGINX_PORT = 8080;

export interface TestbedOptions {
  nodes: number;
  /** Host links, Mbit/s both ways. */
  rateMbit: number;
  /** Image size in MiB (random bytes: no chunk repeats). */
  sizeMiB: number;
  racks: number;
  /** @default rateMbit */
  headRateMbit?: number;
  /** Each rack's link to the spine. @default rateMbit */
  spineRateMbit?: number;
  /** Run the nginx + curl baseline too. @default true */
  nginx?: boolean;
  /** Give up after this long per phase. @default 20 × T_min + 120 s */
  timeoutSeconds?: number;
  /** Progress lines on stderr. */
  log?: (line: string) => void;
  /**
   * Write each node's time series here (JSON, bench/testbed/dump.ts: `--dump FILE`): its `fetch --json` progress
   * lines (about one a second: bytes from peers and the seeder, uploads, refusals received and given, sources in
   * flight, idle time and why), timed from the release, with its completion time and rack.
   */
  dump?: string;
}

export interface PhaseResult {
  /** Seconds from the release to the last node holding a verified image. */
  tLast: number;
  /** Per-node completion times, s, sorted. */
  perNode: number[];
  /** Head eth0 transmitted bytes (kernel counter) during the phase. */
  headEgressBytes: number;
  /** Bytes from the spine into the racks during the phase (0 with one rack). */
  crossRackBytes: number;
  cpu: CpuLoad;
  /** Outputs compared byte for byte with the image. */
  identical: boolean;
}

export interface TestbedResult {
  options: Required<Omit<TestbedOptions, 'log' | 'dump'>>;
  imageBytes: number;
  chunks: number;
  tMin: number;
  rackswarm: PhaseResult & {
    /** Median seconds from the release to a node's first progress line (p2p node up, manifest fetched). */
    startupMedian: number;
    /** Seconds the peers spent pre-starting (module loading) before the common release; not in tLast. */
    prestart: number;
    /** Payload bytes the nodes say came from the head's seeder, and from peers (their own accounting). */
    fromSeeder: number;
    fromPeers: number;
    /**
     * CPU seconds (user + system, /proc/PID/stat) each process used from the release to the last node's completion:
     * per node (sorted) and the head's. With the cores' busy share, it says who a CPU-bound run's cores went to
     * (the rest: the kernel's shaping and veth traffic, and whatever else the machine ran).
     */
    cpuSeconds: { nodes: number[]; head: number };
    /**
     * The same span split (/proc/PID/stat, io, task/*): the median node, field by field (user and system seconds,
     * seconds per thread name, read and write system calls, voluntary context switches), and the head.
     */
    cpuDetail: { node: CpuBreakdown | undefined; head: CpuBreakdown | undefined };
    /**
     * TCP connections the median node opened (dials) and accepted by the last node's completion, from its
     * namespace's counters (libp2p connections and bulk connections alike; none before the release).
     */
    tcpOpens: { active: number; passive: number };
    /**
     * The start, step by step (cli/start-steps.ts, in the order of their median time): per step, the nodes that
     * reached it, seconds from the release to it (min / median / max over those nodes) and the CPU seconds a node had
     * spent by then since the release (median).
     */
    startSteps: StartStep[];
    /**
     * The head's CPU seconds from the release to the last node's first chunk (sampled every 50 ms), and that span:
     * the head's per-node work of the start and how busy it kept its one event loop.
     */
    headStart: { seconds: number; cpuSeconds: number };
    /**
     * The head's uplink over the run (eth0's transmitted bytes, from /proc/<head pid>/net/dev every 100 ms): the
     * share of its rate it used in each second from the release, and when 50 / 90 / 99 % of the run's egress had
     * gone out. T_min here is usually F/u_s, so every second the head's link is not full adds to t_last.
     */
    headLink: HeadLink;
  };
  nginx?: PhaseResult;
}

/** One step of the nodes' start (TestbedResult.rackswarm.startSteps). */
export interface StartStep {
  step: string;
  nodes: number;
  min: number;
  median: number;
  max: number;
  cpuMedian: number;
}

/** One node's time series in a --dump file. */
export interface NodeSeries {
  node: number;
  /** Its process id: names its `RSW_TESTBED_CPU_PROF` profile (profile-summary.ts --dump). */
  pid?: number;
  rack: string;
  /** Seconds from the release to its verified image. */
  done: number;
  summary: Summary;
  /** Its start's steps (cli/start-steps.ts), `t` seconds from the release. */
  steps: Array<{ t: number; step: string; ms: number; cpuMs: number; monoUs?: number }>;
  /** Its `fetch --json` progress lines (`{progress, flow, serve}`), `t` seconds from the release. */
  lines: Array<{
    t: number;
    progress: FetchProgress;
    flow?: FetchFlow;
    /** Its chunk server's counters (cli/fetch-image.ts). */
    serve?: { bytes: number; requests: number; busy: number; refusedBatches: number; active: number };
  }>;
}

export async function runTestbed(o: TestbedOptions): Promise<TestbedResult> {
  const opts = {
    nodes: o.nodes,
    rateMbit: o.rateMbit,
    sizeMiB: o.sizeMiB,
    racks: o.racks,
    headRateMbit: o.headRateMbit ?? o.rateMbit,
    spineRateMbit: o.spineRateMbit ?? o.rateMbit,
    nginx: o.nginx ?? true,
    timeoutSeconds: o.timeoutSeconds ?? 0,
  };
  const log = o.log ?? (() => {});
  const imageBytes = Math.round(opts.sizeMiB * MiB);
  const tMin = kumarRossSeconds({
    bytes: imageBytes,
    serverUp: mbitToBytes(opts.headRateMbit),
    nodeUps: Array(opts.nodes).fill(mbitToBytes(opts.rateMbit)),
    nodeDowns: Array(opts.nodes).fill(mbitToBytes(opts.rateMbit)),
  });
  const nginxBound = (opts.nodes * imageBytes) / mbitToBytes(opts.headRateMbit);
  if (!opts.timeoutSeconds) opts.timeoutSeconds = Math.ceil(20 * tMin + 120);

  const work = mkdtempSync(join(tmpdir(), 'rsw-testbed-'));
  const fabric = new Fabric({
    nodes: opts.nodes,
    racks: opts.racks,
    rateMbit: opts.rateMbit,
    headRateMbit: opts.headRateMbit,
    spineRateMbit: opts.spineRateMbit,
    // RSW_TESTBED_MIN_TSO_SEGS=44: bigger TSO packets in every namespace (fabric.ts, FabricInit.minTsoSegs)
    minTsoSegs: process.env.RSW_TESTBED_MIN_TSO_SEGS
      ? Number(process.env.RSW_TESTBED_MIN_TSO_SEGS)
      : undefined,
  });
  const procs = new Procs();
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await Promise.race([procs.killAll('SIGTERM'), new Promise((r) => setTimeout(r, 3000))]);
    await procs.killAll();
    fabric.down();
    rmSync(work, { recursive: true, force: true });
  };
  // Interrupted: kill by PID, delete our namespaces and files, then exit as the signal would.
  const onSignal = (sig: NodeJS.Signals) => {
    procs.killAllSync('SIGTERM'); // nginx's master stops its workers
    setTimeout(() => {
      procs.killAllSync('SIGKILL');
      fabric.down();
      rmSync(work, { recursive: true, force: true });
      process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    }, 500);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // The image, the key, the head's store (published while the head is down, straight into its data directory).
    const image = join(work, 'image.img');
    const bytes = Buffer.alloc(imageBytes);
    randomFillSync(bytes);
    writeFileSync(image, bytes);
    execFileSync(process.execPath, [bin, 'keys', 'generate', '--out', join(work, 'keys')]);
    const pub = join(work, 'keys/publisher.pub');
    const published = publishImage(image, {
      key: join(work, 'keys/publisher.key'),
      data: join(work, 'head'),
    });

    log(`fabric: head + ${opts.nodes} nodes in ${opts.racks} rack(s), ${opts.rateMbit} Mbit/s links`);
    fabric.up();
    const headUrl = `http://${fabric.head.ip}:${HTTP_PORT}`;
    // RSW_TESTBED_HEAD_CONFIG='{"seeder":{"sendsAtOnce":8}}': a config file for the head (compare its settings).
    const headConfig = process.env.RSW_TESTBED_HEAD_CONFIG;
    const headConfigArgs: string[] = [];
    if (headConfig) {
      const file = join(work, 'head-config.json');
      writeFileSync(file, JSON.stringify(JSON.parse(headConfig)));
      headConfigArgs.push('--config', file);
    }
    const head = procs.start(fabric.head.ns, process.execPath, [
      ...V8_FLAGS,
      bin,
      ...headConfigArgs,
      'head',
      '--data',
      join(work, 'head'),
      '--http',
      `${fabric.head.ip}:${HTTP_PORT}`,
      '--listen',
      `/ip4/${fabric.head.ip}/tcp/${P2P_PORT}`,
    ]);
    await head.waitFor(/head ready/, 30_000);
    // RSW_TESTBED_HEAD_NICE=-10: the head at this CPU priority (an experiment: a real head has its own machine).
    if (process.env.RSW_TESTBED_HEAD_NICE && head.child.pid !== undefined)
      execFileSync('renice', ['-n', process.env.RSW_TESTBED_HEAD_NICE, '-p', String(head.child.pid)]);

    // RSW_TESTBED_CPU_PROF=DIR: every peer writes a V8 CPU profile into DIR (on SIGTERM at the end of the phase).
    const profDir = process.env.RSW_TESTBED_CPU_PROF;
    const profile = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
    // RSW_TESTBED_NODE_CONFIG='{"p2p":{"dataPlane":"libp2p"}}': more config for every node (compare settings).
    const nodeConfig = JSON.parse(process.env.RSW_TESTBED_NODE_CONFIG ?? '{}') as Record<string, unknown>;
    // rackswarm: pre-start every peer (it loads its code, then waits at the gate), release all at once.
    const t0 = performance.now();
    const peers: Proc[] = fabric.nodes.map((n, i) => {
      const dir = join(work, `node${i}`);
      mkdirSync(dir);
      const config = join(dir, 'config.json');
      writeFileSync(
        config,
        JSON.stringify({
          ...nodeConfig,
          // (its own `peer` keys too, e.g. {"peer":{"pipelineBatches":1}}: only the listen address is the testbed's)
          peer: { ...(nodeConfig.peer as object | undefined), listen: [`/ip4/${n.ip}/tcp/${P2P_PORT}`] },
        }),
      );
      // RSW_TESTBED_NODE_V8_FLAGS='...': these V8 flags for every peer instead of the shipped ones ('' for none).
      const v8Flags =
        process.env.RSW_TESTBED_NODE_V8_FLAGS === undefined
          ? V8_FLAGS
          : process.env.RSW_TESTBED_NODE_V8_FLAGS.split(/\s+/).filter(Boolean);
      return procs.start(
        n.ns,
        process.execPath,
        [
          ...profile,
          ...v8Flags,
          '--import',
          gate,
          bin,
          '--config',
          config,
          'fetch',
          'img',
          '--head',
          headUrl,
          '--trust',
          pub,
          '--out',
          join(dir, 'image.out'),
          '--cache',
          join(dir, 'cache'),
          '--rack',
          `r${n.rack}`,
          '--linger',
          '3600',
          '--json',
        ],
        undefined,
        { RSW_FETCH_STEPS: '1' },
      );
    });
    await Promise.all(peers.map((p) => p.waitFor(/testbed-gate ready/, 120_000, 'stderr')));
    const prestart = (performance.now() - t0) / 1000;
    log(`${opts.nodes} peers pre-started in ${prestart.toFixed(1)} s; releasing`);

    const cpuAt = () => ({
      nodes: peers.map((p) => processCpuSeconds(p.child.pid)),
      head: processCpuSeconds(head.child.pid),
      nodeDetail: peers.map((p) => processCpuBreakdown(p.child.pid)),
      headDetail: processCpuBreakdown(head.child.pid),
    });
    let cpu0 = cpuAt();
    // The head's CPU through the start (until every node has its first chunk), sampled.
    const headSamples: Array<{ at: number; cpu: number }> = [];
    const headTx: Array<{ at: number; tx: number }> = [];
    const rs = await phase(fabric, opts.timeoutSeconds, async (release) => {
      cpu0 = cpuAt();
      for (const p of peers) p.child.stdin?.write('go\n');
      headSamples.push({ at: release, cpu: cpu0.head });
      headTx.push({ at: release, tx: netDevTxBytes(head.child.pid, 'eth0') });
      const txSampler = setInterval(() => {
        headTx.push({ at: performance.now(), tx: netDevTxBytes(head.child.pid, 'eth0') });
      }, 100);
      const sampler = setInterval(() => {
        headSamples.push({ at: performance.now(), cpu: processCpuSeconds(head.child.pid) });
      }, 50);
      void Promise.all(
        peers.map((p) => p.waitFor(/"step":"firstChunk"/, opts.timeoutSeconds * 1000, 'stderr')),
      )
        .catch(() => {})
        .finally(() => clearInterval(sampler));
      try {
        return await Promise.all(
          peers.map(async (p) => {
            const l = await p.waitFor(/"seconds":/, opts.timeoutSeconds * 1000);
            return { at: (l.at - release) / 1000, summary: JSON.parse(l.line) as Summary };
          }),
        );
      } finally {
        clearInterval(sampler);
        clearInterval(txSampler);
        headTx.push({ at: performance.now(), tx: netDevTxBytes(head.child.pid, 'eth0') });
      }
    });
    const cpu1 = cpuAt();
    const opens = peers.map((p) => netnsTcpOpens(p.child.pid));
    const startups = peers.map(
      (p) => ((p.stdout.find((l) => l.line.startsWith('{"progress"'))?.at ?? Number.NaN) - rs.release) / 1000,
    );
    const summaries = rs.value.map((d) => d.summary);
    const startSteps = collectSteps(peers, rs.release, cpu0.nodes);
    const lastFirstChunk =
      rs.release + 1000 * (startSteps.find((s) => s.step === 'firstChunk')?.max ?? Number.NaN);
    const headAt = headSamples.find((x) => x.at >= lastFirstChunk) ?? headSamples.at(-1);
    const headStart = {
      seconds: ((headAt?.at ?? Number.NaN) - rs.release) / 1000,
      cpuSeconds: (headAt?.cpu ?? Number.NaN) - cpu0.head,
    };
    if (o.dump) {
      const series: NodeSeries[] = peers.map((p, i) => ({
        node: i,
        pid: p.child.pid,
        rack: `r${fabric.nodes[i].rack}`,
        done: rs.value[i].at,
        summary: rs.value[i].summary,
        steps: p.stderrLines.flatMap((l) => {
          const st = parseStepLine(l.line);
          return st ? [{ t: (l.at - rs.release) / 1000, ...st }] : [];
        }),
        lines: p.stdout
          .filter((l) => l.line.startsWith('{"progress"'))
          .map((l) => ({ t: (l.at - rs.release) / 1000, ...JSON.parse(l.line) })),
      }));
      writeFileSync(o.dump, JSON.stringify({ options: opts, tMin, imageBytes, nodes: series }));
      log(`per-node time series written to ${o.dump} (node bench/testbed/dump.ts ${o.dump})`);
    }
    const rackswarm = {
      ...rs.result(rs.value.map((d) => d.at)),
      identical: fabric.nodes.every((_, i) =>
        readFileSync(join(work, `node${i}`, 'image.out')).equals(bytes),
      ),
      startupMedian: median(startups),
      prestart,
      fromSeeder: summaries.reduce((a, s) => a + s.bytesFromSeeder, 0),
      fromPeers: summaries.reduce((a, s) => a + s.bytesFromPeers, 0),
      cpuSeconds: {
        nodes: cpu1.nodes.map((c, i) => c - cpu0.nodes[i]).sort((a, b) => a - b),
        head: cpu1.head - cpu0.head,
      },
      cpuDetail: {
        node: medianBreakdown(cpu1.nodeDetail.map((b, i) => cpuBreakdownDelta(cpu0.nodeDetail[i], b))),
        head: cpuBreakdownDelta(cpu0.headDetail, cpu1.headDetail),
      },
      tcpOpens: {
        active: median(opens.map((o) => o?.active ?? Number.NaN)),
        passive: median(opens.map((o) => o?.passive ?? Number.NaN)),
      },
      startSteps,
      headStart,
      headLink: headLinkUse(headTx, rs.release, mbitToBytes(opts.headRateMbit)),
    };
    log(`rackswarm: last node ${rackswarm.tLast.toFixed(2)} s (T_min ${tMin.toFixed(2)} s)`);
    // RSW_COUNTERS=1 (passed on to every node): what each did, counted (core/counters.ts).
    const counters = counterSpreads(peers.map((p) => p.stderrLines.map((l) => l.line)));
    if (counters) {
      log(formatCounterSpreads(counters));
      if (o.dump) writeFileSync(`${o.dump}.counters.json`, JSON.stringify(counters));
    }
    if (profDir) {
      for (const p of peers) p.child.kill('SIGTERM'); // a lingering fetch exits 0 on it, writing its profile
      await Promise.race([
        Promise.all(peers.map((p) => p.exited)),
        new Promise((r) => setTimeout(r, 15_000)),
      ]);
    }
    await procs.killAll();
    for (let i = 0; i < opts.nodes; i++) rmSync(join(work, `node${i}`), { recursive: true, force: true });

    let nginx: PhaseResult | undefined;
    if (opts.nginx) {
      log(`nginx: ${opts.nodes} curl clients (bound N·F/u_s = ${nginxBound.toFixed(1)} s)`);
      nginx = await runNginx(fabric, procs, work, bytes, opts.timeoutSeconds);
      log(`nginx: last node ${nginx.tLast.toFixed(2)} s`);
    }
    return { options: opts, imageBytes, chunks: published.chunks, tMin, rackswarm, nginx };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

/**
 * Each start step's times from the release (the arrival of its stderr line) and the node's CPU by then (its own
 * count, less its CPU at the release as /proc read it), over the nodes that reached it; sorted by median time.
 */
function collectSteps(peers: Proc[], release: number, cpuAtRelease: number[]): StartStep[] {
  const by = new Map<string, Array<{ t: number; cpu: number }>>();
  peers.forEach((p, i) => {
    for (const l of p.stderrLines) {
      const st = parseStepLine(l.line);
      if (!st) continue;
      const xs = by.get(st.step) ?? [];
      xs.push({ t: (l.at - release) / 1000, cpu: st.cpuMs / 1000 - cpuAtRelease[i] });
      by.set(st.step, xs);
    }
  });
  return [...by]
    .map(([step, xs]) => {
      const ts = xs.map((x) => x.t).sort((a, b) => a - b);
      return {
        step,
        nodes: xs.length,
        min: ts[0],
        median: median(ts),
        max: ts[ts.length - 1],
        cpuMedian: median(xs.map((x) => x.cpu)),
      };
    })
    .sort((a, b) => a.median - b.median);
}

/** Field by field, the median of the processes' breakdowns (threads by name; undefined ones left out). */
function medianBreakdown(all: Array<CpuBreakdown | undefined>): CpuBreakdown | undefined {
  const xs = all.filter((b): b is CpuBreakdown => b !== undefined);
  if (xs.length === 0) return undefined;
  const names = new Set(xs.flatMap((b) => Object.keys(b.threads)));
  const threads: Record<string, number> = {};
  for (const n of names) threads[n] = median(xs.map((b) => b.threads[n] ?? 0));
  return {
    user: median(xs.map((b) => b.user)),
    sys: median(xs.map((b) => b.sys)),
    threads,
    reads: median(xs.map((b) => b.reads)),
    writes: median(xs.map((b) => b.writes)),
    wakeups: median(xs.map((b) => b.wakeups)),
    faults: median(xs.map((b) => b.faults)),
  };
}

export interface Summary {
  seconds: number;
  bytesFromPeers: number;
  bytesFromSeeder: number;
}

/** Counters and CPU around one distribution: `run(release)` starts it at `release` (ms) and resolves when done. */
async function phase<T>(
  fabric: Fabric,
  timeoutSeconds: number,
  run: (release: number) => Promise<T>,
): Promise<{ value: T; release: number; result: (times: number[]) => Omit<PhaseResult, 'identical'> }> {
  const egress0 = fabric.txBytes(fabric.head);
  const cross0 = fabric.crossRackBytes();
  const cpu = new CpuMeter();
  const release = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const value = await Promise.race([
      run(release),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not done within ${timeoutSeconds} s`)),
          timeoutSeconds * 1000,
        );
      }),
    ]);
    // counters read at once: lingering peers keep talking (have messages, announces) after the last node is done
    const headEgressBytes = fabric.txBytes(fabric.head) - egress0;
    const crossRackBytes = fabric.crossRackBytes() - cross0;
    const load = cpu.stop();
    return {
      value,
      release,
      result: (times) => {
        const perNode = [...times].sort((a, b) => a - b);
        return { tLast: perNode[perNode.length - 1], perNode, headEgressBytes, crossRackBytes, cpu: load };
      },
    };
  } finally {
    clearTimeout(timer);
    cpu.stop();
  }
}

/** nginx (Debian nginx-light) in the head namespace with a config of its own, curl in every node at once. */
async function runNginx(
  fabric: Fabric,
  procs: Procs,
  work: string,
  bytes: Buffer,
  timeoutSeconds: number,
): Promise<PhaseResult> {
  const prefix = join(work, 'nginx');
  mkdirSync(prefix);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    [
      'daemon off;',
      'user root;', // the work directory is private to this user (mkdtemp 0700)
      'worker_processes 2;',
      `pid ${prefix}/nginx.pid;`,
      `error_log ${prefix}/error.log warn;`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/${t};`),
      '  types { application/octet-stream img; }',
      `  server { listen ${fabric.head.ip}:${NGINX_PORT}; root ${work}; location = /image.img { } }`,
      '}',
      '',
    ].join('\n'),
  );
  const server = procs.start(fabric.head.ns, 'nginx', ['-p', prefix, '-c', conf]);
  const url = `http://${fabric.head.ip}:${NGINX_PORT}/image.img`;
  // ready when a node can fetch its first byte
  for (let i = 0; ; i++) {
    const probe = procs.start(fabric.nodes[0].ns, 'curl', ['-sf', '-o', '/dev/null', '-r', '0-0', url]);
    if ((await probe.exited) === 0) break;
    if (i > 100 || server.child.exitCode !== null) throw new Error(`nginx did not start:\n${server.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const outs = fabric.nodes.map((_, i) => join(work, `curl${i}.out`));
  const ph = await phase(fabric, timeoutSeconds, async (release) =>
    Promise.all(
      fabric.nodes.map(async (n, i) => {
        const c = procs.start(n.ns, 'curl', ['-sS', '-o', outs[i], url]);
        const code = await c.exited;
        if (code !== 0) throw new Error(`curl in ${n.ns} failed (${code}): ${c.stderr}`);
        return (performance.now() - release) / 1000;
      }),
    ),
  );
  const identical = outs.every((f) => readFileSync(f).equals(bytes));
  for (const f of outs) rmSync(f, { force: true });
  await procs.killAll('SIGTERM'); // nginx's master stops its workers
  return { ...ph.result(ph.value), identical };
}

/** The head's uplink over a run: see TestbedResult's `headLink`. */
export interface HeadLink {
  /** Per second from the release, the bytes sent over what the link's rate allows in that second (the last second partial). */
  usePerSecond: number[];
  /** Seconds from the release by which 50 / 90 / 99 % of the run's bytes had been sent. */
  sentBy: { p50: number; p90: number; p99: number };
}

/** Transmitted bytes of a device in a process's network namespace (its /proc/PID/net/dev; no spawn, no `ip`). */
export function netDevTxBytes(pid: number | undefined, dev: string): number {
  if (pid === undefined) return Number.NaN;
  try {
    for (const line of readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n')) {
      const [name, rest] = line.split(':');
      if (rest === undefined || name.trim() !== dev) continue;
      return Number(rest.trim().split(/\s+/)[8]); // receive: 8 fields, then transmit bytes
    }
  } catch {}
  return Number.NaN;
}

/** Samples of cumulative bytes → per-second use of `bytesPerSecond` and when shares of the total had gone out. */
export function headLinkUse(
  samples: ReadonlyArray<{ at: number; tx: number }>,
  release: number,
  bytesPerSecond: number,
): HeadLink {
  const ok = samples.filter((x) => Number.isFinite(x.tx));
  const none = { usePerSecond: [], sentBy: { p50: Number.NaN, p90: Number.NaN, p99: Number.NaN } };
  if (ok.length < 2) return none;
  const t = ok.map((x) => (x.at - release) / 1000);
  const b = ok.map((x) => x.tx - ok[0].tx);
  const total = b[b.length - 1];
  // bytes sent by time s, linear between samples
  const sentAt = (s: number): number => {
    if (s <= t[0]) return 0;
    for (let i = 1; i < t.length; i++)
      if (s <= t[i]) return b[i - 1] + ((b[i] - b[i - 1]) * (s - t[i - 1])) / Math.max(1e-9, t[i] - t[i - 1]);
    return total;
  };
  const end = t[t.length - 1];
  const usePerSecond: number[] = [];
  for (let s = 0; s < end; s++) {
    const span = Math.min(1, end - s);
    usePerSecond.push((sentAt(s + span) - sentAt(s)) / (bytesPerSecond * span));
  }
  const by = (share: number): number => t[b.findIndex((x) => x >= share * total)];
  return { usePerSecond, sentBy: { p50: by(0.5), p90: by(0.9), p99: by(0.99) } };
}
