import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../../core/config.ts';
import { RswError } from '../../core/errors.ts';
import { ChunkStore } from '../../core/store.ts';
import { ChannelStore } from '../../tracker/channel-store.ts';
import { collectGarbage, type GcReport } from '../../tracker/gc.ts';
import { Registry } from '../../tracker/registry.ts';
import { formatBytes } from '../format.ts';
import { HeadClient } from '../head-client.ts';

interface GcOptions {
  data?: string;
  head?: string;
  tokenFile?: string;
  keep?: string;
  grace?: string;
  json?: boolean;
}

const wholeNumber = (text: string | undefined, flag: string, min: number): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    throw new RswError('RSW_ERR_USAGE', `${flag} takes a whole number ≥ ${min}`);
  return n;
};

export function registerGc(program: Command, config: () => Config): void {
  program
    .command('gc')
    .description(
      'remove image versions beyond the newest K and every chunk no kept version uses (never one a channel, swarm or preheat needs)',
    )
    .option('--data <dir>', "a stopped head's data directory")
    .option('--head <url>', 'or: a running head, e.g. http://head:7480 (with --token-file)')
    .option('--token-file <file>', "the head's admin token")
    .option('--keep <k>', 'versions to keep per image (default from config: head.keepVersions = 3)')
    .option('--grace <seconds>', 'leave unreferenced chunks younger than this (default from config: 3600)')
    .option('--json', 'progress lines, then the report as one JSON line')
    .action(async (opts: GcOptions) => {
      if (!opts.head === !opts.data)
        throw new RswError('RSW_ERR_USAGE', 'give exactly one of --data DIR and --head URL');
      const keep = wholeNumber(opts.keep, '--keep', 1) ?? config().head.keepVersions;
      const grace = wholeNumber(opts.grace, '--grace', 0) ?? config().head.gcGraceSeconds;
      let report: GcReport;
      if (opts.head) {
        if (!opts.tokenFile) throw new RswError('RSW_ERR_USAGE', '--head needs --token-file');
        report = await new HeadClient(opts.head, await HeadClient.readToken(opts.tokenFile)).gc(keep, grace);
      } else {
        const dataDir = resolve(opts.data as string);
        const registry = await Registry.open(dataDir); // first: refuses a directory a running head holds
        try {
          const store = await ChunkStore.open({ dataDir, verifyOnRead: config().store.verifyOnRead });
          report = await collectGarbage(
            { registry, store, channels: new ChannelStore(registry, []) },
            {
              keep,
              graceMs: grace * 1000,
              onProgress: (p) => {
                if (opts.json) console.log(JSON.stringify({ progress: p }));
              },
            },
          );
        } finally {
          await registry.close();
        }
      }
      if (opts.json) console.log(JSON.stringify(report));
      else
        console.log(
          `gc: removed ${report.versionsRemoved.length} versions and ${report.chunksRemoved} chunks, freed ${formatBytes(report.bytesFreed)}; ` +
            `${report.chunksKept} chunks in use${report.chunksTooYoung ? `, ${report.chunksTooYoung} too young to judge` : ''}`,
        );
    });
}
