import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { Config } from '../../core/config.ts';
import { writeFileAtomic } from '../../core/fs-atomic.ts';
import { generatePublisherKeys, PRIVATE_KEY_FILE } from '../../core/keys.ts';
import { Registry } from '../../tracker/registry.ts';
import { formatBytes, formatTable } from '../format.ts';
import { publish } from './publish.ts';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Builds the demo's sample image: a real SquashFS of the project's own installed packages (thousands of real files),
 * or, when mksquashfs is missing, 64 MiB of pseudo-random bytes (and says so).
 */
async function sampleImage(dir: string): Promise<{ file: string; what: string }> {
  const squash = join(dir, 'sample.squashfs');
  try {
    execFileSync(
      'mksquashfs',
      [join(projectRoot, 'node_modules'), squash, '-noappend', '-quiet', '-no-progress', '-comp', 'lz4'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    return { file: squash, what: "SquashFS of this project's node_modules (made with mksquashfs)" };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const raw = join(dir, 'sample.img');
    const buf = Buffer.alloc(64 * 1024 * 1024);
    let x = 0x9e3779b9;
    for (let i = 0; i < buf.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeInt32LE(x | 0, i);
    }
    await writeFile(raw, buf);
    return {
      file: raw,
      what: '64 MiB of random bytes: mksquashfs is missing (apt-get install squashfs-tools)',
    };
  }
}

export function registerDemo(program: Command, config: () => Config): void {
  program
    .command('demo')
    .description('what `npm start` runs: make a publisher key and a sample image, publish it into a data dir')
    .option('--data <dir>', 'data directory for the demo', 'demo-data')
    .action(async (opts: { data: string }) => {
      const dataDir = resolve(opts.data);
      const keyDir = join(dataDir, 'keys');
      const key = join(keyDir, PRIVATE_KEY_FILE);
      await mkdir(keyDir, { recursive: true, mode: 0o700 });
      if (!existsSync(key)) {
        const pair = generatePublisherKeys();
        await writeFileAtomic(key, pair.privatePem, { mode: 0o600 });
        await writeFileAtomic(join(keyDir, 'publisher.pub'), pair.publicPem);
        console.log(`publisher key pair written to ${keyDir}`);
      }
      const work = join(dataDir, 'work');
      await mkdir(work, { recursive: true });
      const sample = await sampleImage(work);
      console.log(`sample image: ${sample.what}`);
      const s = await publish(sample.file, { name: 'sample', key, data: dataDir }, config());
      console.log(
        `published sample version ${s.version}: ${formatBytes(s.size)} in ${s.chunks} chunks, ` +
          `${s.newChunks} new (${formatBytes(s.newBytes)}) in ${s.seconds.toFixed(2)} s` +
          (s.newChunks < s.chunks ? ' — unchanged chunks were reused' : ''),
      );
      const registry = await Registry.open(dataDir);
      const images = await registry.list().finally(() => registry.close());
      console.log(
        `\n${formatTable(
          ['NAME', 'VERSION', 'ID', 'SIZE', 'CHUNKS'],
          images.map((r) => [
            r.name,
            String(r.version),
            r.id.slice(0, 16),
            formatBytes(r.size),
            String(r.chunks),
          ]),
        )}\n\nData directory: ${dataDir}. Run again to publish a new version (only changed chunks are stored).`,
      );
    });
}
