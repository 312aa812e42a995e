import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RswError } from '../../core/errors.ts';
import { type ImageRecord, Registry } from '../../tracker/registry.ts';
import { formatBytes, formatTable } from '../format.ts';
import { HeadClient } from '../head-client.ts';

export function registerImages(program: Command): void {
  program
    .command('images')
    .description('list published images and their versions')
    .option('--head <url>', 'a running head node, e.g. http://head:7480')
    .option('--data <dir>', "or: a stopped head's data directory")
    .option(
      '--json',
      'print a JSON array of {name, version, id, format, size, chunks, publisher, publishedAt}',
    )
    .action(async (opts: { data?: string; head?: string; json?: boolean }) => {
      if (!opts.head === !opts.data)
        throw new RswError('RSW_ERR_USAGE', 'give exactly one of --head URL and --data DIR');
      const images = opts.head
        ? (await new HeadClient(opts.head).images()).flatMap((g) => g.versions)
        : await fromData(opts.data as string);
      if (opts.json) {
        console.log(JSON.stringify(images));
      } else if (images.length === 0) {
        console.log('no images');
      } else {
        console.log(
          formatTable(
            ['NAME', 'VERSION', 'ID', 'FORMAT', 'SIZE', 'CHUNKS', 'PUBLISHED'],
            images.map((r) => [
              r.name,
              String(r.version),
              r.id.slice(0, 16),
              r.format,
              formatBytes(r.size),
              String(r.chunks),
              r.publishedAt.replace(/\.\d+Z$/, 'Z'),
            ]),
          ),
        );
      }
    });
}

async function fromData(dir: string): Promise<ImageRecord[]> {
  const dataDir = resolve(dir);
  const isDir = await stat(dataDir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw new RswError('RSW_ERR_FILE_NOT_FOUND', `data directory ${dataDir} does not exist`);
  const registry = await Registry.open(dataDir);
  try {
    return await registry.list();
  } finally {
    await registry.close();
  }
}
