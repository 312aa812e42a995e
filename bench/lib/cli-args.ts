// Command-line arguments of the bench tools (bench/sim/main.ts, bench/testbed/main.ts): a bad option or value is one
// line on stderr with an RSW_ERR_USAGE code and exit status 2, as the CLI's own errors are, not a stack trace.
import { type ParseArgsConfig, parseArgs } from 'node:util';

/**
 * Writes `error RSW_ERR_USAGE: <why> (<command> --help lists the options)` and exits with status 2; the command is
 * the usage's, from its first line (`usage: node <file> …` or `usage: npm run <script> …`).
 */
export function usageExit(why: string, usage: string): never {
  let command = /^usage: (npm run \S+|node \S+)/.exec(usage)?.[1] ?? 'the command';
  if (command.startsWith('npm run ')) command += ' --'; // npm passes what follows `--` on
  process.stderr.write(`error RSW_ERR_USAGE: ${why} (${command} --help lists the options)\n`);
  process.exit(2);
}

/**
 * node:util parseArgs, with an unknown option or a missing value reported by usageExit, and `--help` (added to the
 * options) printing `usage` to stdout and exiting 0.
 */
export function benchArgs<T extends ParseArgsConfig>(
  config: T,
  usage: string,
): ReturnType<typeof parseArgs<T>> {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs({
      ...config,
      options: { ...config.options, help: { type: 'boolean' } },
    }) as ReturnType<typeof parseArgs<T>>;
  } catch (e) {
    return usageExit((e as Error).message.split('\n')[0], usage);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed;
}

/**
 * Option `name`'s value as a number within [min, max] (an integer if `integer`); undefined stays undefined. Anything
 * else — not a number, out of range — ends the process through usageExit.
 */
export function numberArg(
  name: string,
  value: string | undefined,
  usage: string,
  { min = 0, max = Number.MAX_SAFE_INTEGER, integer = false } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    const kind = integer ? 'an integer' : 'a number';
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
    return usageExit(`--${name} must be ${kind} ${range}: ${JSON.stringify(value)}`, usage);
  }
  return n;
}
