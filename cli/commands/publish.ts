import type { KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ChunkBatch } from '../../core/chunk-batch.ts';
import type { Config } from '../../core/config.ts';
import { RswError } from '../../core/errors.ts';
import { loadPrivateKey } from '../../core/keys.ts';
import { IMAGE_FORMATS, type ImageFormat, parseVersion, validateImageName } from '../../core/manifest.ts';
import { ChunkStore } from '../../core/store.ts';
import { chooseVersion } from '../../core/version-policy.ts';
import { checkImageFile, publishFile } from '../../seeder/publish.ts';
import { Registry } from '../../tracker/registry.ts';
import { formatBytes } from '../format.ts';
import { byteProgress } from '../progress.ts';
import { onInterrupt } from '../signals.ts';

interface PublishOptions {
  name: string;
  version?: string;
  key: string;
  data: string;
  format?: string;
  json?: boolean;
}

export interface PublishSummary {
  id: string;
  name: string;
  version: number;
  format: ImageFormat;
  size: number;
  chunks: number;
  newChunks: number;
  newBytes: number;
  seconds: number;
}

export function registerPublish(program: Command, config: () => Config): void {
  program
    .command('publish')
    .description('chunk, sign and store an image file, and register it as a new version')
    .argument('<file>', 'image file (SquashFS, raw disk image, or any file) or block device')
    .requiredOption('--name <name>', 'image name: letters, digits, . _ -')
    .option('--version <n>', 'version number (default: newest + 1)')
    .requiredOption('--key <keyfile>', 'publisher private key (from `rackswarm keys generate`)')
    .requiredOption('--data <dir>', "a stopped head's data directory to publish into (created if missing)")
    .option('--format <format>', `one of ${IMAGE_FORMATS.join(', ')} (default: detected)`)
    .option('--json', 'print the result as one JSON object')
    .action(async (file: string, opts: PublishOptions) => {
      const summary = await publish(file, opts, config());
      if (opts.json) {
        console.log(JSON.stringify(summary));
      } else {
        console.log(
          `published ${summary.name} version ${summary.version} id ${summary.id}\n` +
            `  ${formatBytes(summary.size)} ${summary.format}, ${summary.chunks} chunks, ` +
            `${summary.newChunks} new (${formatBytes(summary.newBytes)}), ${summary.seconds.toFixed(2)} s`,
        );
      }
    });
}

/**
 * `rackswarm publish FILE --data DIR`: every input is checked before DATA is touched; a failure rolls back the
 * chunks it added, and removes DATA again if this publish created it.
 */
export async function publish(file: string, opts: PublishOptions, config: Config): Promise<PublishSummary> {
  validateImageName(opts.name);
  const requested = opts.version === undefined ? undefined : parseVersion(opts.version);
  const format = opts.format === undefined ? undefined : parseFormat(opts.format);
  const total = await checkImageFile(file);
  const key = await loadPrivateKey(opts.key);
  const dataDir = resolve(opts.data);
  const created = !existsSync(dataDir);
  try {
    return await publishInto(dataDir, file, total, requested, format, key, opts, config);
  } catch (e) {
    if (created) await rm(dataDir, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
}

async function publishInto(
  dataDir: string,
  file: string,
  total: number,
  requested: number | undefined,
  format: ImageFormat | undefined,
  key: KeyObject,
  opts: PublishOptions,
  config: Config,
): Promise<PublishSummary> {
  const started = performance.now();
  const store = await ChunkStore.open({ dataDir, verifyOnRead: config.store.verifyOnRead });
  const registry = await Registry.open(dataDir);
  const interrupt = onInterrupt();
  try {
    const existing = (await registry.versions(opts.name)).map((r) => r.version);
    const { version } = chooseVersion(existing, requested, opts.name);
    const progress = byteProgress(`publishing ${opts.name} v${version}`, total, !opts.json);
    let result: Awaited<ReturnType<typeof publishFile>>;
    try {
      result = await publishFile({
        file,
        name: opts.name,
        version,
        format,
        key,
        sink: new ChunkBatch(store),
        chunker: config.chunker,
        writeConcurrency: config.store.writeConcurrency,
        signal: interrupt.signal,
        onProgress: (done) => progress.update(done),
      });
    } finally {
      progress.stop();
    }
    try {
      await registry.register(result.opened);
    } catch (e) {
      await result.rollback();
      throw e;
    }
    const m = result.opened.manifest;
    return {
      id: result.opened.id,
      name: m.name,
      version: m.version,
      format: m.format,
      size: m.size,
      chunks: m.chunks.length,
      newChunks: result.newChunks,
      newBytes: result.newBytes,
      seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
    };
  } finally {
    interrupt.dispose();
    await registry.close();
  }
}

function parseFormat(text: string): ImageFormat {
  if ((IMAGE_FORMATS as readonly string[]).includes(text)) return text as ImageFormat;
  throw new RswError('RSW_ERR_USAGE', `--format must be one of ${IMAGE_FORMATS.join(', ')}`);
}
