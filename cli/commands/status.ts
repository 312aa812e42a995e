import type { Command } from 'commander';
import { HeadClient } from '../head-client.ts';
import { onInterrupt } from '../signals.ts';
import { formatStatus } from '../status-format.ts';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      'swarm health from a running head: per-image progress, nodes by stage, stuck nodes, head egress',
    )
    .requiredOption('--head <url>', 'the head node, e.g. http://head:7480')
    .option('--json', 'print the head’s snapshot as one JSON object (with --watch: one JSON line per update)')
    .option('--watch', 'keep updating (the head pushes one update per second) until Ctrl-C')
    .action(async (opts: { head: string; json?: boolean; watch?: boolean }) => {
      const client = new HeadClient(opts.head);
      const interrupt = onInterrupt();
      const redraw = opts.watch && !opts.json && process.stdout.isTTY;
      try {
        for await (const snapshot of client.events(interrupt.signal)) {
          if (opts.json) process.stdout.write(`${JSON.stringify(snapshot)}\n`);
          else {
            // A terminal is redrawn in place; a pipe gets one block per update.
            const text = formatStatus(snapshot, client.base);
            process.stdout.write(redraw ? `\x1b[H\x1b[2J${text}\n` : `${text}\n${opts.watch ? '\n' : ''}`);
          }
          if (!opts.watch) break;
        }
      } finally {
        interrupt.dispose();
      }
    });
}
