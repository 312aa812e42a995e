// `node bench/testbed/profile-summary.ts DIR [--top K] [--dump FILE --from STEP --to STEP]`: where the testbed's peers
// spent their main threads, from the V8 CPU profiles `RSW_TESTBED_CPU_PROF=DIR npm run bench:swarm …` wrote (one
// .cpuprofile per peer, pooled). With the same run's `--dump FILE`, each node's profile is first cut to its own
// window between two of its start steps (cli/start-steps.ts: `--from run --to firstChunk`; `release` is the testbed's
// release, `end` the end of the profile: `--from release --to end` is what a run's t_last pays for), matched to its
// node by process id.
//
// Each sample is put in the first bucket one of its frames matches, in BUCKETS order (a file read under a
// libp2p handler is file I/O); idle samples are left out, so shares are of the busy main thread. The profiler samples
// wall-clock time, so on a CPU-bound machine a thread waiting for a core is charged to what it was doing: read the
// shares, not the seconds. Module loading before the testbed's release is its own bucket (not in the CPU counted
// from the release). Then the functions with the most busy samples at or under them (inclusive).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchArgs, numberArg, usageExit } from '../lib/cli-args.ts';
import type { NodeSeries } from './testbed.ts';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: CallFrame; children?: number[] }>;
  samples: number[];
  /** µs on the monotonic clock that the start steps' `monoUs` counts in (cli/start-steps.ts). */
  startTime?: number;
  /** µs from the previous sample (the first: from startTime), one per sample. */
  timeDeltas?: number[];
}

/** The profile with only the samples taken from `fromUs` to `toUs` (monotonic µs, as `startTime`). */
export function cutToWindow(p: CpuProfile, fromUs: number, toUs: number): CpuProfile {
  if (p.startTime === undefined || p.timeDeltas?.length !== p.samples.length) {
    throw new Error('the profile has no sample times (startTime, timeDeltas)');
  }
  const samples: number[] = [];
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (t >= fromUs && t <= toUs) samples.push(p.samples[i]);
  }
  return { nodes: p.nodes, samples };
}

/** The process id in a V8 profile's file name (`CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`). */
export function profilePid(file: string): number | undefined {
  const m = /^CPU\.\d+\.\d+\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(file);
  return m ? Number(m[1]) : undefined;
}

/**
 * A node's window from step `from` to step `to` (cli/start-steps.ts names; `release`: the testbed's release, the
 * first step's time less its `t`; `end`: the end of its profile), in monotonic µs; undefined if the node has no such
 * step.
 */
export function stepWindow(
  steps: Array<{ t: number; step: string; monoUs?: number }>,
  from: string,
  to: string,
): [number, number] | undefined {
  const at = (name: string) => {
    if (name === 'release') {
      const first = steps[0];
      return first?.monoUs === undefined ? undefined : first.monoUs - first.t * 1e6;
    }
    if (name === 'end') return Number.POSITIVE_INFINITY;
    return steps.find((s) => s.step === name)?.monoUs;
  };
  const [a, b] = [at(from), at(to)];
  return a === undefined || b === undefined ? undefined : [a, b];
}

type Test = (f: CallFrame) => boolean;

/** Buckets in the order a sample's frames are tried (leaf to root for each bucket). */
export const BUCKETS: ReadonlyArray<readonly [string, Test]> = [
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  [
    'module loading (before the release)',
    (f) =>
      /^(compileSourceTextModule|compileForInternalLoader|getModuleJobForImport|__require2?)$/.test(
        f.functionName,
      ),
  ],
  ['BLAKE3 (hashHex)', (f) => f.functionName === 'hashHex'],
  ['file I/O (fs)', (f) => /node:fs|fs\/promises|internal\/fs\//.test(f.url)],
  [
    'libp2p inbound (TLS socket → yamux → protocol handlers)',
    (f) => f.functionName === 'ondata' && f.url.endsWith('js_stream_socket'),
  ],
  ['socket writes (libp2p and bulk)', (f) => f.functionName === 'Socket._writeGeneric'],
  ['timers', (f) => /internal\/timers|node:timers/.test(f.url)],
];

/** The source module a frame's code came from (a package, or a project file); by default the frame's URL. */
export type ModuleOf = (f: CallFrame) => string;

export interface ProfileSummary {
  /** Busy (non-idle) samples over all profiles. */
  busy: number;
  /** Share of busy samples whose leaf frame (self time) is in each module, largest first. */
  modules: Array<{ name: string; share: number }>;
  /** Share of busy samples with a frame of the module anywhere on the stack (inclusive), largest first. */
  modulesInclusive: Array<{ name: string; share: number }>;
  /** Share of busy samples per bucket (BUCKETS names, then "other"), in BUCKETS order. */
  buckets: Array<{ name: string; share: number }>;
  /** Functions by inclusive share of busy samples, largest first. */
  inclusive: Array<{ name: string; share: number }>;
}

function frameName(f: CallFrame): string {
  return `${f.functionName || '(anonymous)'} ${f.url.split('/').pop() ?? ''}:${f.lineNumber}`;
}

function defaultModuleOf(f: CallFrame): string {
  return f.url === '' ? `(native) ${f.functionName}` : f.url;
}

export function summarise(
  profiles: CpuProfile[],
  top = 30,
  moduleOf: ModuleOf = defaultModuleOf,
): ProfileSummary {
  const inBucket = new Map<string, number>();
  const inModule = new Map<string, number>();
  const underModule = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const p of profiles) {
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const counts = new Map<number, number>();
    for (const s of p.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const [id, count] of counts) {
      const stack: CallFrame[] = [];
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const n = byId.get(cur);
        if (n) stack.push(n.callFrame);
      }
      if (stack[0]?.functionName === '(idle)') continue;
      busy += count;
      const module = moduleOf(stack[0]);
      inModule.set(module, (inModule.get(module) ?? 0) + count);
      for (const m of new Set(stack.map(moduleOf))) underModule.set(m, (underModule.get(m) ?? 0) + count);
      const bucket = BUCKETS.find(([, test]) => stack.some(test))?.[0] ?? 'other';
      inBucket.set(bucket, (inBucket.get(bucket) ?? 0) + count);
      for (const name of new Set(stack.map(frameName))) {
        if (name.startsWith('(root)')) continue;
        inclusive.set(name, (inclusive.get(name) ?? 0) + count);
      }
    }
  }
  const share = (x: number) => (busy > 0 ? x / busy : 0);
  const ranked = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, n]) => ({ name, share: share(n) }));
  return {
    busy,
    modules: ranked(inModule),
    modulesInclusive: ranked(underModule),
    buckets: [...BUCKETS.map(([name]) => name), 'other'].map((name) => ({
      name,
      share: share(inBucket.get(name) ?? 0),
    })),
    inclusive: ranked(inclusive),
  };
}

/**
 * Maps frames in an esbuild bundle (the CLI bundle, bin/cli-bundle.js) back to the module they came from, by the
 * `// path` comment esbuild writes at each module's start: a package name for node_modules, else the project file.
 * Frames outside a bundle: Node's own modules by URL, native code as "(native) NAME".
 */
export function bundleModuleOf(): ModuleOf {
  const starts = new Map<string, { lines: number[]; names: string[] } | undefined>();
  const load = (url: string) => {
    if (starts.has(url)) return starts.get(url);
    let index: { lines: number[]; names: string[] } | undefined;
    try {
      const text = readFileSync(new URL(url), 'utf8').split('\n');
      index = { lines: [], names: [] };
      for (let i = 0; i < text.length; i++) {
        const m = /^\/\/ (\S+\.(?:ts|js|mjs|cjs|json))$/.exec(text[i]);
        if (m) {
          index.lines.push(i);
          index.names.push(/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(m[1])?.[1] ?? m[1]);
        }
      }
    } catch {
      index = undefined;
    }
    starts.set(url, index);
    return index;
  };
  return (f) => {
    if (f.url === '') return `(native) ${f.functionName}`;
    if (!f.url.startsWith('file:') || !f.url.endsWith('.js')) return f.url;
    const index = load(f.url);
    if (!index || index.lines.length === 0) return f.url;
    let lo = 0;
    let hi = index.lines.length - 1;
    if (f.lineNumber < index.lines[0]) return f.url;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (index.lines[mid] <= f.lineNumber) lo = mid;
      else hi = mid - 1;
    }
    return index.names[lo];
  };
}

if (import.meta.main) {
  const USAGE = [
    'usage: node bench/testbed/profile-summary.ts DIR [--top K] [--dump FILE --from STEP --to STEP]',
    "  DIR: the .cpuprofile files of RSW_TESTBED_CPU_PROF=DIR; with the same run's --dump FILE each node is cut to",
    '  its window between two start steps (cli/start-steps.ts; `release`, and `end` for the end of its profile).',
  ].join('\n');
  const { values, positionals } = benchArgs(
    {
      allowPositionals: true,
      options: {
        top: { type: 'string', default: '30' },
        dump: { type: 'string' },
        from: { type: 'string', default: 'release' },
        to: { type: 'string' },
      },
    },
    USAGE,
  );
  const dir = positionals[0];
  const usage = (why: string): never => usageExit(why, USAGE);
  if (!dir) usage('no profile directory');
  if (values.dump && !values.to)
    usage('--dump needs --to STEP (e.g. --from run --to firstChunk; --to end: the end of the profile)');
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    usage(`cannot read ${dir}`);
  }
  if (files.length === 0) usage(`no .cpuprofile files in ${dir}`);
  let profiles = files.map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile);
  if (values.dump && values.to) {
    // Each node's profile cut to its own window between two of its start steps (the testbed's --dump of that run).
    const nodes = (JSON.parse(readFileSync(values.dump, 'utf8')) as { nodes: NodeSeries[] }).nodes;
    const [from, to] = [values.from, values.to];
    profiles = files.flatMap((f, i) => {
      const node = nodes.find((n) => n.pid !== undefined && n.pid === profilePid(f));
      const window = node && stepWindow(node.steps, from, to);
      return window ? [cutToWindow(profiles[i], ...window)] : [];
    });
    console.log(`${profiles.length} of ${files.length} profiles cut to their node's ${from} → ${to}`);
  }
  const top = numberArg('top', values.top, USAGE, { min: 1, max: 10_000, integer: true }) as number;
  const s = summarise(profiles, top, bundleModuleOf());
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)} %`;
  console.log(`${profiles.length} profiles, ${s.busy} busy samples; by bucket (share of busy samples):`);
  for (const b of s.buckets) console.log(`${pct(b.share)}  ${b.name}`);
  console.log('by module of the leaf frame (self time):');
  for (const m of s.modules) console.log(`${pct(m.share)}  ${m.name}`);
  console.log('by module anywhere on the stack (inclusive):');
  for (const m of s.modulesInclusive) console.log(`${pct(m.share)}  ${m.name}`);
  console.log('inclusive (share of busy samples at or under the function):');
  for (const f of s.inclusive) console.log(`${pct(f.share)}  ${f.name}`);
}
