import type { Command } from 'commander';
import { RswError } from '../../core/errors.ts';
import { parseVersion, validateImageName } from '../../core/manifest.ts';
import { HeadClient } from '../head-client.ts';

interface PreheatOptions {
  head: string;
  tokenFile: string;
  nodes?: string;
  timeout?: string;
  json?: boolean;
}

export function registerPreheat(program: Command): void {
  program
    .command('preheat')
    .description(
      'have running nodes fetch a version into their caches before a reboot wave; waits until every selected node holds it',
    )
    .argument('<image>', 'NAME@VERSION or NAME (the newest version)')
    .requiredOption('--head <url>', 'the head node, e.g. http://head:7480')
    .requiredOption('--token-file <file>', "the head's admin token")
    .option('--nodes <selector>', 'all (default), rack=R[,R…], host=GLOB[,GLOB…] or peer=ID[,ID…]')
    .option('--timeout <seconds>', 'give up waiting after this long (default 600)')
    .option('--json', 'progress lines, then the job as one JSON line')
    .action(async (ref: string, opts: PreheatOptions) => {
      const at = ref.lastIndexOf('@');
      const name = at < 0 ? ref : ref.slice(0, at);
      validateImageName(name);
      const version = at < 0 ? ('latest' as const) : parseVersion(ref.slice(at + 1));
      const timeout = opts.timeout === undefined ? 600 : Number(opts.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0)
        throw new RswError('RSW_ERR_USAGE', '--timeout takes seconds > 0');
      const head = new HeadClient(opts.head, await HeadClient.readToken(opts.tokenFile));
      let job = await head.preheat(name, version, opts.nodes);
      const deadline = Date.now() + timeout * 1000;
      const count = () => job.targets.filter((t) => t.state === 'done').length;
      let shown = -1;
      while (!job.settled && Date.now() < deadline) {
        if (count() !== shown) {
          shown = count();
          if (opts.json)
            console.log(
              JSON.stringify({ progress: { job: job.id, done: shown, nodes: job.targets.length } }),
            );
          else console.log(`preheat ${name}@${job.version}: ${shown} of ${job.targets.length} nodes hold it`);
        }
        await new Promise((r) => setTimeout(r, 500));
        job = await head.preheatJob(job.id);
      }
      if (opts.json) console.log(JSON.stringify(job));
      if (!job.complete) {
        const failed = job.targets.filter((t) => t.state === 'failed');
        const waiting = job.targets.filter((t) => t.state === 'pending' || t.state === 'fetching');
        throw new RswError(
          'RSW_ERR_PREHEAT_INCOMPLETE',
          `${name}@${job.version}: ${count()} of ${job.targets.length} nodes hold it` +
            (failed.length
              ? `; failed: ${failed.map((t) => `${t.host ?? t.peerId} (${t.error})`).join(', ')}`
              : '') +
            (waiting.length
              ? `; still waiting after ${timeout} s: ${waiting.map((t) => t.host ?? t.peerId).join(', ')}`
              : ''),
        );
      }
      if (!opts.json) console.log(`preheat ${name}@${job.version}: all ${job.targets.length} nodes hold it`);
    });
}
