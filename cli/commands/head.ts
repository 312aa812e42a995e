import type { Command } from 'commander';
import type { Config } from '../../core/config.ts';
import type { HeadOptions } from '../head-node.ts';

export function registerHead(program: Command, config: () => Config): void {
  program
    .command('head')
    .description('run the head node: tracker + seeder + HTTP API in one process, on an embedded LevelDB')
    .requiredOption(
      '--data <dir>',
      'data directory (chunks, registry, identity, admin token); created if missing',
    )
    .option('--http <host:port>', 'HTTP API address (default from config: 0.0.0.0:7480)')
    .option(
      '--listen <multiaddr...>',
      'libp2p listen address(es) (default from config: /ip4/0.0.0.0/tcp/7481)',
    )
    .option(
      '--trust <pubfile...>',
      'publisher public key(s) manifests must be signed with (default: first key per image)',
    )
    .action(async (opts: HeadOptions) => {
      const { startHead } = await import('../head-node.ts'); // loaded only when a head runs
      const head = await startHead(opts, config());
      let stopping = false;
      const onSignal = (signal: string) => {
        if (stopping) process.exit(1); // a second signal: do not wait
        stopping = true;
        head.log.info({ signal }, 'head stopping');
        void head.stop().then(() => {
          head.log.info('head stopped');
          process.exit(0);
        });
      };
      process.on('SIGINT', () => onSignal('SIGINT'));
      process.on('SIGTERM', () => onSignal('SIGTERM'));
    });
}
