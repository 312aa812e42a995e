// `npm run bench:swarm -- --nodes N --rate MBIT --size MIB [--racks R] [--head-rate MBIT] [--spine-rate MBIT]
//  [--runs K] [--no-nginx] [--json] [--dump FILE]`: the network testbed (needs root: network namespaces and tc).
import { availableParallelism } from 'node:os';
import { benchArgs, numberArg } from '../lib/cli-args.ts';
import { fmt, median } from '../lib/stats.ts';
import { runTestbed, type TestbedResult } from './testbed.ts';

/** A run's CPU was the bottleneck rather than the links (2 shared cores). */
export function cpuBound(cpu: { meanBusy: number; share90: number }): boolean {
  return cpu.meanBusy >= 0.85 || cpu.share90 >= 0.5;
}

const CORES = availableParallelism();

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** One run as a few lines of text (what the command prints). */
export function describe(r: TestbedResult): string {
  const F = r.imageBytes;
  const o = r.options;
  const s = r.rackswarm;
  const lines = [
    `testbed: ${o.nodes} nodes in ${o.racks} rack(s), links ${o.rateMbit} Mbit/s, head ${o.headRateMbit} Mbit/s` +
      (o.racks > 1 ? `, rack uplinks ${o.spineRateMbit} Mbit/s` : '') +
      `, image ${o.sizeMiB} MiB (${r.chunks} chunks)`,
    `T_min = ${fmt(r.tMin)} s`,
    `rackswarm: t_last ${fmt(s.tLast)} s = ${fmt(s.tLast / r.tMin)} × T_min; per node min/median/max ` +
      `${fmt(s.perNode[0])} / ${fmt(median(s.perNode))} / ${fmt(s.tLast)} s; start-up (release → first progress) ` +
      `median ${fmt(s.startupMedian)} s; pre-start ${fmt(s.prestart, 1)} s (not in t_last)`,
    `  head egress ${fmt(s.headEgressBytes / F)} × image (eth0 counter, ${s.headEgressBytes} B incl. TCP/IP headers); ` +
      `seeder payload ${fmt(s.fromSeeder / F)} × image; from peers ${fmt((s.fromPeers / (o.nodes * F)) * 100, 0)} %` +
      (o.racks > 1
        ? `; cross-rack ${fmt(s.crossRackBytes / F)} × image (${fmt(s.crossRackBytes / (o.racks * F))} × racks × image)`
        : ''),
    `  CPU busy ${fmt(s.cpu.meanBusy * 100, 0)} % (${fmt(s.cpu.share90 * 100, 0)} % of samples ≥ 90 %)` +
      (cpuBound(s.cpu) ? ' — CPU-BOUND: the cores, not the links, limited this run' : '') +
      `; outputs ${s.identical ? 'bit-identical' : 'DIFFER'}`,
    `  CPU seconds from the release to the last node: nodes ${fmt(sum(s.cpuSeconds.nodes), 1)} s in all ` +
      `(per node min/median/max ${fmt(s.cpuSeconds.nodes[0])} / ${fmt(median(s.cpuSeconds.nodes))} / ` +
      `${fmt(s.cpuSeconds.nodes.at(-1) ?? Number.NaN)} s), head ${fmt(s.cpuSeconds.head)} s; the ${CORES} cores had ` +
      `${fmt(CORES * s.tLast, 1)} s, ${fmt(s.cpu.meanBusy * CORES * s.tLast, 1)} s of it busy, ` +
      `${fmt(s.cpu.irqShare * CORES * s.tLast, 1)} s of that in interrupts (the kernel's packet work)`,
  ];
  if (s.startSteps.length > 0) {
    lines.push(
      `  start (s from the release, first / median / last node; median node's CPU s by then): ` +
        s.startSteps
          .map((x) => `${x.step} ${fmt(x.min)} / ${fmt(x.median)} / ${fmt(x.max)} (${fmt(x.cpuMedian)})`)
          .join('; '),
      `  head during the start (release → last node's first chunk, ${fmt(s.headStart.seconds)} s): ` +
        `${fmt(s.headStart.cpuSeconds)} CPU s, ${fmt((s.headStart.cpuSeconds / o.nodes) * 1000, 0)} ms per node, ` +
        `${fmt((s.headStart.cpuSeconds / s.headStart.seconds) * 100, 0)} % of one core`,
      `  head uplink, % of its rate per second from the release: ${s.headLink.usePerSecond
        .map((u) => fmt(u * 100, 0))
        .join(' ')}; 50 / 90 / 99 % of its bytes out by ${fmt(s.headLink.sentBy.p50)} / ` +
        `${fmt(s.headLink.sentBy.p90)} / ${fmt(s.headLink.sentBy.p99)} s`,
    );
  }
  for (const [who, d] of [
    ['median node', s.cpuDetail.node],
    ['head', s.cpuDetail.head],
  ] as const) {
    if (!d) continue;
    const threads = Object.entries(d.threads)
      .filter(([, v]) => v >= 0.005)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(', ');
    lines.push(
      `  ${who}: user ${fmt(d.user)} s, system ${fmt(d.sys)} s; threads: ${threads}; ${d.reads} reads, ` +
        `${d.writes} writes, ${d.wakeups} voluntary context switches, ${d.faults} minor page faults`,
    );
  }
  lines.push(
    `  median node opened ${s.tcpOpens.active} TCP connections and accepted ${s.tcpOpens.passive} (libp2p and bulk)`,
  );
  if (r.nginx) {
    const n = r.nginx;
    lines.push(
      `nginx: t_last ${fmt(n.tLast)} s (bound N·F/u_s ${fmt((o.nodes * F) / ((o.headRateMbit * 1e6) / 8))} s); per node ` +
        `min/median/max ${fmt(n.perNode[0])} / ${fmt(median(n.perNode))} / ${fmt(n.tLast)} s; head egress ` +
        `${fmt(n.headEgressBytes / F)} × image; CPU busy ${fmt(n.cpu.meanBusy * 100, 0)} %; outputs ` +
        `${n.identical ? 'bit-identical' : 'DIFFER'}`,
      `speed-up over nginx: ${fmt(n.tLast / s.tLast, 1)} ×`,
    );
  }
  return lines.join('\n');
}

const USAGE = `usage: npm run bench:swarm -- [options]   (root: network namespaces and tc)
  --nodes N          fetching nodes (default 8)
  --rate MBIT        every host link, both ways (default 50)
  --size MIB         image size (default 64)
  --racks R          racks, one bridge each, shaped uplinks to a spine (default 1)
  --head-rate MBIT   the head's link (default --rate)
  --spine-rate MBIT  each rack's uplink (default --rate)
  --runs K           runs one after the other (default 1)
  --no-nginx         skip the nginx + curl baseline
  --json             one JSON result per run instead of text
  --dump FILE        each node's time series to FILE (FILE.2, FILE.3… for later runs): its fetch --json progress
                     lines, about one a second — bytes from peers and the seeder, bytes uploaded, batches asked and
                     refused (busy) by neighbours and the head, refusals its chunk server gave, sources in flight,
                     idle time with nothing in flight and why (all holders backed off / none holds what it lacks).
                     Read it with: node bench/testbed/dump.ts FILE [--series]
Environment: RSW_TESTBED_CPU_PROF=DIR (V8 profiles), RSW_TESTBED_NODE_CONFIG=JSON (more node config),
  RSW_TESTBED_HEAD_CONFIG=JSON (a config for the head), RSW_TESTBED_HEAD_NICE=N (the head at that nice),
  RSW_TESTBED_NODE_V8_FLAGS, RSW_TESTBED_MIN_TSO_SEGS.`;

if (import.meta.main) {
  const { values } = benchArgs(
    {
      options: {
        dump: { type: 'string' },
        nodes: { type: 'string', default: '8' },
        rate: { type: 'string', default: '50' },
        size: { type: 'string', default: '64' },
        racks: { type: 'string', default: '1' },
        'head-rate': { type: 'string' },
        'spine-rate': { type: 'string' },
        runs: { type: 'string', default: '1' },
        'no-nginx': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
    },
    USAGE,
  );
  const num = (name: keyof typeof values, o?: Parameters<typeof numberArg>[3]) =>
    numberArg(name, values[name] as string | undefined, USAGE, o);
  const nodes = num('nodes', { min: 1, max: 1000, integer: true }) as number;
  const racks = num('racks', { min: 1, max: nodes, integer: true }) as number;
  const [rate, size] = [
    num('rate', { min: 1, max: 100_000 }) as number,
    num('size', { min: 1, max: 65_536 }) as number,
  ];
  const [headRate, spineRate] = [
    num('head-rate', { min: 1, max: 100_000 }),
    num('spine-rate', { min: 1, max: 100_000 }),
  ];
  const runs = num('runs', { min: 1, max: 1000, integer: true }) as number;
  for (let i = 0; i < runs; i++) {
    const r = await runTestbed({
      nodes,
      rateMbit: rate,
      sizeMiB: size,
      racks,
      headRateMbit: headRate,
      spineRateMbit: spineRate,
      nginx: !values['no-nginx'],
      dump: values.dump && (i === 0 ? values.dump : `${values.dump}.${i + 1}`),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    console.log(values.json ? JSON.stringify(r) : `${describe(r)}\n`);
  }
}
