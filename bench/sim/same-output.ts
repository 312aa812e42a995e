// `node bench/sim/same-output.ts --ref DIR [--save] [--seeds] [--only NAME] [--main FILE]`: runs the simulator on the
// cases whose output a performance change must leave alone (16 nodes, 2 racks × 8, 1,000 nodes at 64 and 256 chunks, in 4 racks and at 256 in 40;
// with --seeds also seeds 2 and 3 of the 1,000-node ones), one after the other, and compares each whole `--json`
// output, less the CPU and wall times, with DIR/NAME.json — or, with --save, writes it there (from the code to compare
// against, e.g. main's checkout through --main). Exits 1 on a difference, naming the first field that differs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchArgs, usageExit } from '../lib/cli-args.ts';

const SMALL = ['--rate', '50', '--size', '64', '--chunk', '0.5714', '--latency', '0.5', '--runs', '3'];
const K1 = (chunk: string, seed: number, racks = '4') => [
  ...[
    '--nodes',
    '1000',
    '--racks',
    racks,
    '--rate',
    '10000',
    '--head-rate',
    '100000',
    '--spine-rate',
    '400000',
  ],
  ...['--size', '4096', '--chunk', chunk, '--latency', '0.05', '--quantum', '5', '--seed', String(seed)],
];

export const CASES: Record<string, string[]> = {
  n16: ['--nodes', '16', ...SMALL],
  r2x8: ['--nodes', '16', '--racks', '2', ...SMALL],
  k1c64s1: K1('64', 1),
  k1c256s1: K1('16', 1),
  k1r40s1: K1('16', 1, '40'),
};
export const SEED_CASES: Record<string, string[]> = {
  k1c64s2: K1('64', 2),
  k1c64s3: K1('64', 3),
  k1c256s2: K1('16', 2),
  k1c256s3: K1('16', 3),
};

/** The `--json` lines with the CPU and wall times taken out (all that may differ between equal runs). */
export function comparable(stdout: string): unknown[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      const r = JSON.parse(l);
      delete r.cpuSeconds;
      delete r.wallSeconds;
      return r;
    });
}

/** The path of the first difference between a and b ('' if none). */
export function firstDifference(a: unknown, b: unknown, at = ''): string {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null)
    return Object.is(a, b) ? '' : `${at || '(top)'}: ${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const d = firstDifference(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      at ? `${at}.${k}` : k,
    );
    if (d) return d;
  }
  return '';
}

if (import.meta.main) {
  const usage = [
    'usage: node bench/sim/same-output.ts --ref DIR [--save] [--seeds] [--only NAME,…] [--main FILE]',
    "  compares the simulator's whole --json output (less CPU and wall times) on the cases a performance change",
    '  must leave alone with DIR/NAME.json; --save writes them (e.g. with --main <main.ts>).',
  ].join('\n');
  const { values } = benchArgs(
    {
      options: {
        ref: { type: 'string' },
        save: { type: 'boolean', default: false },
        seeds: { type: 'boolean', default: false },
        only: { type: 'string' },
        main: { type: 'string', default: join(import.meta.dirname, 'main.ts') },
      },
    },
    usage,
  );
  if (values.ref === undefined) usageExit('--ref DIR is required', usage);
  const cases = { ...CASES, ...(values.seeds ? SEED_CASES : {}) };
  const names = values.only === undefined ? Object.keys(cases) : values.only.split(',');
  let bad = 0;
  mkdirSync(values.ref, { recursive: true });
  for (const name of names) {
    const args = cases[name];
    if (args === undefined) usageExit(`no case ${name} (${Object.keys(cases).join(', ')})`, usage);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [values.main, ...args, '--json'], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
    });
    if (r.status !== 0) {
      console.error(`${name}: exit ${r.status}\n${r.stderr.slice(-2000)}`);
      bad++;
      continue;
    }
    const out = comparable(r.stdout);
    const cpu = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l).cpuSeconds as number).toFixed(1))
      .join(' + ');
    const file = join(values.ref, `${name}.json`);
    const took = `${((performance.now() - t0) / 1000).toFixed(1)} s wall, ${cpu} s CPU`;
    if (values.save) {
      writeFileSync(file, `${JSON.stringify(out)}\n`);
      console.log(`${name}: saved (${took})`);
      continue;
    }
    if (!existsSync(file)) {
      console.error(`${name}: no reference ${file}`);
      bad++;
      continue;
    }
    const d = firstDifference(JSON.parse(readFileSync(file, 'utf8')), out);
    if (d) bad++;
    console.log(`${name}: ${d ? `DIFFERS at ${d}` : 'same'} (${took})`);
  }
  process.exit(bad > 0 ? 1 : 0);
}
