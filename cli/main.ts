import { Command, CommanderError } from 'commander';
import { type Config, loadConfig, readConfigFile } from '../core/config.ts';
import { ERRORS, formatError, isRswError } from '../core/errors.ts';
import { registerBoot } from './commands/boot.ts';
import { registerChannel } from './commands/channel.ts';
import { registerDemo } from './commands/demo.ts';
import { registerEnroll } from './commands/enroll.ts';
import { registerFetch } from './commands/fetch.ts';
import { registerGc } from './commands/gc.ts';
import { registerHead } from './commands/head.ts';
import { registerImages } from './commands/images.ts';
import { registerKeys } from './commands/keys.ts';
import { registerPreheat } from './commands/preheat.ts';
import { registerPublish } from './commands/publish.ts';
import { registerStatus } from './commands/status.ts';

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

registerKeys(program);
registerHead(program, getConfig);
registerFetch(program, getConfig);
registerPublish(program, getConfig);
registerImages(program);
registerStatus(program);
registerDemo(program, getConfig);
registerChannel(program, getConfig);
registerGc(program, getConfig);
registerPreheat(program);
registerBoot(program, getConfig);
registerEnroll(program);

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
