// `node bench/sim/main.ts --nodes N --racks R --rate MBIT --head-rate MBIT --size MIB [--chunk MIB]
//  [--spine-rate MBIT] [--startup S] [--latency MS] [--quantum MS] [--seed K] [--runs K] [--gateways G]
//  [--allocation full|incremental] [--head-sends K] [--head-ramp K] [--upload-order fair|priority] [--head-priority]
//  [--serve-turnover MS] [--wake 0|1] [--json]`
import { kumarRossSeconds, mbitToBytes } from '../lib/bounds.ts';
import { benchArgs, numberArg, usageExit } from '../lib/cli-args.ts';
import { fmt, median } from '../lib/stats.ts';
import { type SimOptions, type SimResult, simulate } from './swarm-sim.ts';

const MiB = 1024 * 1024;

export function simTMin(o: SimOptions): number {
  return kumarRossSeconds({
    bytes: o.imageBytes,
    serverUp: o.headRate,
    nodeUps: Array(o.nodes).fill(o.nodeRate),
    nodeDowns: Array(o.nodes).fill(o.nodeRate),
  });
}

export function describeSim(o: SimOptions, r: SimResult): string {
  const F = o.imageBytes;
  const tMin = simTMin(o);
  const mbit = (b: number) => fmt((b * 8) / 1e6, 0);
  return [
    `sim: ${o.nodes} nodes in ${o.racks} rack(s), links ${mbit(o.nodeRate)} Mbit/s, head ${mbit(o.headRate)} Mbit/s` +
      (o.racks > 1 ? `, rack uplinks ${mbit(o.spineRate)} Mbit/s` : '') +
      `, image ${fmt(F / MiB, 0)} MiB in ${Math.ceil(F / o.chunkBytes)} chunks of ${fmt(o.chunkBytes / MiB, 2)} MiB, seed ${o.seed}`,
    `T_min = ${fmt(tMin, 3)} s; t_last ${fmt(r.tLast, 3)} s = ${fmt(r.tLast / tMin)} × T_min; per node min/median/max ` +
      `${fmt(r.perNode[0], 3)} / ${fmt(median(r.perNode), 3)} / ${fmt(r.tLast, 3)} s`,
    `  head egress ${fmt(r.headEgressBytes / F)} × image` +
      (o.racks > 1
        ? `; cross-rack ${fmt(r.crossRackBytes / F)} × image (${fmt(r.crossRackBytes / (o.racks * F))} × racks × image)`
        : '') +
      `; duplicates ${fmt((r.duplicateBytes / r.deliveredBytes) * 100, 1)} % of delivered; ${r.events} events in ` +
      `${fmt(r.cpuSeconds, 1)} s CPU (${fmt(r.wallSeconds, 1)} s wall)`,
  ].join('\n');
}

export function simOptions(v: Record<string, string | boolean | undefined>): SimOptions {
  const rate = Number(v.rate);
  return {
    nodes: Number(v.nodes),
    racks: Number(v.racks),
    imageBytes: Math.round(Number(v.size) * MiB),
    chunkBytes: Math.round(Number(v.chunk) * MiB),
    nodeRate: mbitToBytes(rate),
    headRate: mbitToBytes(v['head-rate'] === undefined ? rate : Number(v['head-rate'])),
    spineRate: mbitToBytes(v['spine-rate'] === undefined ? rate : Number(v['spine-rate'])),
    latency: Number(v.latency) / 1000,
    startup: Number(v.startup),
    startupSpread: v['startup-spread'] === undefined ? undefined : Number(v['startup-spread']),
    quantum: Number(v.quantum) / 1000,
    seed: Number(v.seed),
    reserveAfterMs: v['reserve-after'] === undefined ? undefined : Number(v['reserve-after']),
    rackReserveMs: v['rack-reserve'] === undefined ? undefined : Number(v['rack-reserve']),
    headRackSpreadWindowMs: v['head-rack-window'] === undefined ? undefined : Number(v['head-rack-window']),
    headRackRotate: v['head-rack-rotate'] === undefined ? undefined : v['head-rack-rotate'] !== '0',
    earlyGateways: v['early-gateways'] === undefined ? undefined : v['early-gateways'] !== '0',
    maxSimSeconds: v['max-sim'] === undefined ? undefined : Number(v['max-sim']),
    gateways: v.gateways === undefined ? undefined : Number(v.gateways),
    gatewayEvery: v['gateway-every'] === undefined ? undefined : Number(v['gateway-every']),
    headSendsAtOnce: v['head-sends'] === undefined ? undefined : Number(v['head-sends']),
    headRampEvery: v['head-ramp'] === undefined ? undefined : Number(v['head-ramp']),
    allocation: v.allocation === 'incremental' ? 'incremental' : 'full',
    nodeSendsAtOnce: v['node-sends'] === undefined ? undefined : Number(v['node-sends']),
    nodeMaxWaiting: v['node-waiting'] === undefined ? undefined : Number(v['node-waiting']),
    headMaxWaiting: v['head-waiting'] === undefined ? undefined : Number(v['head-waiting']),
    revealFirst: v['reveal-first'] === undefined ? undefined : Number(v['reveal-first']),
    revealStep: v['reveal-step'] === undefined ? undefined : Number(v['reveal-step']),
    revealAllAfter: v['reveal-all'] === undefined ? undefined : Number(v['reveal-all']),
    nodeStreams: v['node-streams'] === undefined ? undefined : Number(v['node-streams']),
    pipelineBatches: v.pipeline === undefined ? undefined : Number(v.pipeline),
    uploadOrder: v['upload-order'] === 'priority' ? 'priority' : 'fair',
    headPriority: v['head-priority'] === true,
    scheduler: v.sched === undefined ? undefined : schedulerOverrides(String(v.sched)),
    serveTurnoverMs: v['serve-turnover'] === undefined ? undefined : Number(v['serve-turnover']),
    wakeOnBackoff: v.wake === undefined ? undefined : v.wake !== '0',
  };
}

/** `--sched key=value,key=value`: scheduler tunables (peer/scheduler.ts) for an experiment. */
function schedulerOverrides(spec: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kv of spec.split(',')) {
    const [k, v] = kv.split('=');
    out[k] = Number(v);
  }
  return out;
}

/**
 * V8's young generation up to 64 MiB (default 16): a run allocates a closure or two per event, and the scavenges of
 * the smaller one were 9 % of a 1,000-node profile (5 % with this). Set by re-running this process with the flag.
 */
const SIM_V8_FLAGS = ['--max-semi-space-size=64'];

const SIM_USAGE = `usage: node bench/sim/main.ts --nodes N --racks R --rate MBIT --head-rate MBIT --size MIB [--chunk MIB] […]
  --nodes N, --racks R     fetching nodes (default 16), racks (default 1)
  --rate MBIT              every node's link, both ways (default 50); --head-rate, --spine-rate (default --rate)
  --size MIB, --chunk MIB  image (default 64) and chunk size (default 1)
  --latency MS             one-way latency (default 0.1); --startup S every node's start-up (default 0)
  --quantum MS             rates re-allocated at most this often (default 0: at every change)
  --seed K, --runs K       first seed (default 1), runs with seeds K, K+1, … (default 1)
  --json                   one JSON result per run
Experiments (docs/BENCHMARKS.md, "Swarm testbed and simulator"): --gateways G, --allocation full|incremental,
  --head-sends K, --head-ramp K, --node-sends K, --node-waiting W, --head-waiting W, --node-streams K, --pipeline K,
  --reveal-first R, --reveal-step S, --reveal-all SEC, --upload-order fair|priority, --head-priority,
  --serve-turnover MS, --wake 0|1, --startup-spread S (each node starts at random in [startup, startup + S]), --sched key=value,… (peer/scheduler.ts tunables), --max-sim SEC,
  --reserve-after MS, --rack-reserve MS, --head-rack-window MS (0: off), --head-rack-rotate 0|1, --early-gateways 0|1, --gateway-every K (1e9: off). Environment: SIM_SAMPLE=SEC, SIM_SAMPLE_TAIL=1, SIM_SAMPLE_SPREAD=1, SIM_SAMPLE_LAST=K,
  SIM_SAMPLE_NODES=n1,n2, SIM_SAMPLE_DEFICIT=1 (samples on stderr).`;

/** Every option's value checked (a one-line RSW_ERR_USAGE error, exit 2, for a bad one) before a run starts. */
function checkSimArgs(v: Record<string, string | boolean | undefined>): void {
  const num = (name: string, o?: Parameters<typeof numberArg>[3]) =>
    numberArg(name, v[name] as string | undefined, SIM_USAGE, o);
  const nodes = num('nodes', { min: 1, max: 1_000_000, integer: true }) as number;
  num('racks', { min: 1, max: nodes, integer: true });
  for (const k of ['rate', 'head-rate', 'spine-rate', 'size', 'chunk']) num(k, { min: 0.001 });
  for (const k of [
    'latency',
    'startup',
    'startup-spread',
    'quantum',
    'max-sim',
    'reserve-after',
    'rack-reserve',
    'serve-turnover',
    'head-rack-window',
    'reveal-first',
    'reveal-step',
    'reveal-all',
    'node-waiting',
    'head-waiting',
    'head-ramp',
  ])
    num(k);
  num('seed', { integer: true });
  for (const k of ['runs', 'gateways', 'pipeline', 'node-streams']) num(k, { min: 1, integer: true });
  num('gateway-every', { min: 1 });
  for (const k of ['head-sends', 'node-sends']) num(k, { integer: true });
  const oneOf = (name: string, allowed: string[]) => {
    const x = v[name];
    if (x !== undefined && !allowed.includes(String(x)))
      usageExit(`--${name} must be ${allowed.join(' or ')}: ${JSON.stringify(x)}`, SIM_USAGE);
  };
  oneOf('upload-order', ['fair', 'priority']);
  oneOf('allocation', ['full', 'incremental']);
  oneOf('wake', ['0', '1']);
  oneOf('head-rack-rotate', ['0', '1']);
  oneOf('early-gateways', ['0', '1']);
  if (v.sched !== undefined) {
    for (const kv of String(v.sched).split(',')) {
      const [k, x] = kv.split('=');
      if (!k || x === undefined || x.trim() === '' || !Number.isFinite(Number(x)))
        usageExit(`--sched takes key=number,…: ${JSON.stringify(kv)}`, SIM_USAGE);
    }
  }
}

if (import.meta.main) {
  if (!SIM_V8_FLAGS.every((f) => process.execArgv.includes(f)) && typeof process.execve === 'function')
    process.execve(process.execPath, [
      process.execPath,
      ...SIM_V8_FLAGS,
      ...process.execArgv,
      ...process.argv.slice(1),
    ]);
  const { values } = benchArgs(
    {
      options: {
        nodes: { type: 'string', default: '16' },
        racks: { type: 'string', default: '1' },
        rate: { type: 'string', default: '50' },
        'head-rate': { type: 'string' },
        'spine-rate': { type: 'string' },
        size: { type: 'string', default: '64' },
        chunk: { type: 'string', default: '1' },
        latency: { type: 'string', default: '0.1' },
        startup: { type: 'string', default: '0' },
        'startup-spread': { type: 'string' },
        quantum: { type: 'string', default: '0' },
        seed: { type: 'string', default: '1' },
        'max-sim': { type: 'string' },
        'reserve-after': { type: 'string' },
        'rack-reserve': { type: 'string' },
        'head-rack-window': { type: 'string' },
        'head-rack-rotate': { type: 'string' },
        'early-gateways': { type: 'string' },
        gateways: { type: 'string' },
        'gateway-every': { type: 'string' },
        'head-sends': { type: 'string' },
        'head-ramp': { type: 'string' },
        'node-sends': { type: 'string' },
        'node-waiting': { type: 'string' },
        'head-waiting': { type: 'string' },
        'node-streams': { type: 'string' },
        pipeline: { type: 'string' },
        'reveal-first': { type: 'string' },
        'reveal-step': { type: 'string' },
        'reveal-all': { type: 'string' },
        sched: { type: 'string' },
        'serve-turnover': { type: 'string' },
        wake: { type: 'string' },
        'upload-order': { type: 'string', default: 'fair' },
        'head-priority': { type: 'boolean', default: false },
        allocation: { type: 'string', default: 'full' },
        runs: { type: 'string', default: '1' },
        json: { type: 'boolean', default: false },
      },
    },
    SIM_USAGE,
  );
  checkSimArgs(values);
  for (let i = 0; i < Number(values.runs); i++) {
    const o = simOptions({ ...values, seed: String(Number(values.seed) + i) });
    const r = simulate({
      ...o,
      onProgress: (p) =>
        process.stderr.write(`${JSON.stringify({ ...p, wall: performance.now() / 1000 })}\n`),
    });
    console.log(
      values.json ? JSON.stringify({ options: o, tMin: simTMin(o), ...r }) : `${describeSim(o, r)}\n`,
    );
  }
}
