import { Command, CommanderError } from 'commander';
import { type Config, loadConfig, readConfigFile } from '../core/config.ts';
import { ERRORS, formatError, isRswError } from '../core/errors.ts';

type Register = (program: Command, config: () => Config) => void;

// Each command's module is imported only when that command runs (or for help, which lists them all): `fetch` then
// loads neither fastify nor the tracker, boot or publish code — process start is CPU every node of a swarm pays,
// 17 processes on 2 cores in the testbed (docs/BENCHMARKS.md, "Fetch"). Listed in --help order.
const COMMANDS: Record<string, () => Promise<Register>> = {
  keys: async () => (await import('./commands/keys.ts')).registerKeys,
  head: async () => (await import('./commands/head.ts')).registerHead,
  fetch: async () => (await import('./commands/fetch.ts')).registerFetch,
  publish: async () => (await import('./commands/publish.ts')).registerPublish,
  images: async () => (await import('./commands/images.ts')).registerImages,
  status: async () => (await import('./commands/status.ts')).registerStatus,
  demo: async () => (await import('./commands/demo.ts')).registerDemo,
  channel: async () => (await import('./commands/channel.ts')).registerChannel,
  gc: async () => (await import('./commands/gc.ts')).registerGc,
  preheat: async () => (await import('./commands/preheat.ts')).registerPreheat,
  boot: async () => (await import('./commands/boot.ts')).registerBoot,
  enroll: async () => (await import('./commands/enroll.ts')).registerEnroll,
};

const program = new Command('rackswarm')
  .description('peer-to-peer OS image distribution for clusters')
  .version('0.1.0', '-V, --version', 'print the rackswarm version')
  .enablePositionalOptions()
  .option('--config <file>', 'JSON config file (see core/config.ts for every setting and its default)')
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? '' : s) });

let config: Config | undefined;
const getConfig = (): Config => {
  config ??= program.opts().config ? readConfigFile(program.opts().config) : loadConfig();
  return config;
};

program.hook('preAction', () => {
  getConfig(); // a bad --config fails every command up front
});

const args = process.argv.slice(2);
const named = args.find((a, i) => !a.startsWith('-') && args[i - 1] !== '--config');
const wanted = named !== undefined && Object.hasOwn(COMMANDS, named) ? [named] : Object.keys(COMMANDS);
for (const register of await Promise.all(wanted.map((name) => COMMANDS[name]())))
  register(program, getConfig);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.exitCode === 0) process.exit(0); // --help, --version
    process.stderr.write(`error RSW_ERR_USAGE: ${e.message.replace(/^error: /, '')} (see --help)\n`);
    process.exit(ERRORS.RSW_ERR_USAGE.exit);
  }
  process.stderr.write(`${formatError(e)}\n`);
  if (process.env.RSW_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(isRswError(e) ? e.exitCode : ERRORS.RSW_ERR_INTERNAL.exit);
}
