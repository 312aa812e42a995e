// The bench tools' command lines (bench/lib/cli-args.ts): a bad option or value is one RSW_ERR_USAGE line and exit
// status 2, never a stack trace; --help prints the usage.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { numberArg } from '../../bench/lib/cli-args.ts';

const root = join(import.meta.dirname, '../..');
const run = (tool: string, ...args: string[]) =>
  spawnSync(process.execPath, [join(root, tool), ...args], { encoding: 'utf8', timeout: 30_000 });

describe('bench tools: usage errors', () => {
  it.each([
    [
      'bench/sim/main.ts',
      ['--bogus'],
      /^error RSW_ERR_USAGE: Unknown option '--bogus' \(node bench\/sim\/main\.ts --help/,
    ],
    [
      'bench/sim/main.ts',
      ['--nodes', '16', '--racks', '20'],
      /--racks must be an integer from 1 to 16: "20"/,
    ],
    ['bench/sim/main.ts', ['--chunk', 'x'], /--chunk must be a number at least 0\.001: "x"/],
    ['bench/sim/main.ts', ['--sched', 'maxSources'], /--sched takes key=number/],
    ['bench/sim/main.ts', ['--wake', '2'], /--wake must be 0 or 1/],
    [
      'bench/testbed/main.ts',
      ['--nodes', '0'],
      /--nodes must be an integer from 1 to 1000: "0" \(npm run bench:swarm -- --help/,
    ],
    ['bench/testbed/main.ts', ['--size'], /^error RSW_ERR_USAGE: Option '--size <value>' argument missing/],
    [
      'bench/testbed/profile-summary.ts',
      [],
      /^error RSW_ERR_USAGE: no profile directory \(node bench\/testbed\/profile-summary\.ts --help/,
    ],
  ])('%s %j', (tool, args, message) => {
    const r = run(tool, ...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1); // one line, no stack trace
    expect(r.stdout).toBe('');
  });

  it('prints the usage on --help', () => {
    for (const [tool, first] of [
      ['bench/sim/main.ts', 'usage: node bench/sim/main.ts'],
      ['bench/testbed/main.ts', 'usage: npm run bench:swarm --'],
      ['bench/sim/same-output.ts', 'usage: node bench/sim/same-output.ts --ref DIR'],
    ]) {
      const r = run(tool, '--help');
      expect(r.status).toBe(0);
      expect(r.stdout.startsWith(first)).toBe(true);
    }
  });

  it('passes good numbers through and leaves an absent option undefined', () => {
    expect(numberArg('nodes', '16', 'usage: x', { min: 1, integer: true })).toBe(16);
    expect(numberArg('latency', '0.05', 'usage: x')).toBe(0.05);
    expect(numberArg('seed', undefined, 'usage: x')).toBeUndefined();
  });
});
