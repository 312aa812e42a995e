import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RswError } from '../../core/errors.ts';
import { Registry } from '../../tracker/registry.ts';
import { formatBytes, formatTable } from '../format.ts';

export function registerImages(program: Command): void {
  program
    .command('images')
    .description('list published images and their versions')
    .requiredOption('--data <dir>', "a stopped head's data directory")
    .option(
      '--json',
      'print a JSON array of {name, version, id, format, size, chunks, publisher, publishedAt}',
    )
    .action(async (opts: { data: string; json?: boolean }) => {
      const dataDir = resolve(opts.data);
      const isDir = await stat(dataDir).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (!isDir) throw new RswError('RSW_ERR_FILE_NOT_FOUND', `data directory ${dataDir} does not exist`);
      const registry = await Registry.open(dataDir);
      try {
        const images = await registry.list();
        if (opts.json) {
          console.log(JSON.stringify(images));
        } else if (images.length === 0) {
          console.log(`no images in ${dataDir}`);
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
      } finally {
        await registry.close();
      }
    });
}
