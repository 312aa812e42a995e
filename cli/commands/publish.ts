import type { KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ChunkBatch } from '../../core/chunk-batch.ts';
import {
  ChunkCipher,
  generateImageKey,
  readImageKeyFile,
  writeImageKeyFile,
} from '../../core/chunk-cipher.ts';
import { type Config, chunkerParamsFor } from '../../core/config.ts';
import { RswError } from '../../core/errors.ts';
import { ImageKeyStore } from '../../core/image-key-store.ts';
import { loadPrivateKey } from '../../core/keys.ts';
import { IMAGE_FORMATS, type ImageFormat, parseVersion, validateImageName } from '../../core/manifest.ts';
import type { OpenedManifest } from '../../core/signed-manifest.ts';
import { ChunkStore } from '../../core/store.ts';
import { chooseVersion } from '../../core/version-policy.ts';
import { type ChunkSink, checkImageFile, publishFile } from '../../seeder/publish.ts';
import { Registry } from '../../tracker/registry.ts';
import { formatBytes } from '../format.ts';
import { HeadClient, HeadUploader } from '../head-client.ts';
import { byteProgress } from '../progress.ts';
import { onInterrupt } from '../signals.ts';

export interface PublishOptions {
  name: string;
  version?: string;
  key: string;
  data?: string;
  head?: string;
  tokenFile?: string;
  format?: string;
  json?: boolean;
  /** `--encrypt`: a fresh image key; `--encrypt FILE`: the key in FILE (created if missing), reused across versions. */
  encrypt?: boolean | string;
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
  /** Encrypted images: the id of the image key (the key itself stays with the publisher and the head). */
  keyId?: string;
}

/** Everything checked before any destination is touched. */
interface Prepared {
  file: string;
  size: number;
  name: string;
  requested: number | undefined;
  format: ImageFormat | undefined;
  key: KeyObject;
  json: boolean;
  started: number;
  imageKey?: Buffer;
}

export function registerPublish(program: Command, config: () => Config): void {
  program
    .command('publish')
    .description('chunk, sign and store an image file, and register it as a new version')
    .argument('<file>', 'image file (SquashFS, raw disk image, or any file) or block device')
    .requiredOption('--name <name>', 'image name: letters, digits, . _ -')
    .option('--version <n>', 'version number (default: newest + 1)')
    .requiredOption(
      '--key <keyfile>',
      'publisher private key (from `rackswarm keys generate`); it never leaves this machine',
    )
    .option(
      '--head <url>',
      'a running head node to publish to, e.g. http://head:7480 (uploads only the chunks it lacks)',
    )
    .option('--token-file <file>', "the head's admin token (the head writes it to DATA/admin-token)")
    .option('--data <dir>', "or: a stopped head's data directory to publish into (created if missing)")
    .option('--format <format>', `one of ${IMAGE_FORMATS.join(', ')} (default: detected)`)
    .option('--json', 'print the result as one JSON object')
    .option(
      '--encrypt [keyfile]',
      'seal every chunk with an image key (released by the head only to enrolled nodes); with KEYFILE: use that key ' +
        '(created 0600 if missing) — reuse it across versions to keep dedup, at the cost of showing which chunks stayed',
    )
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

/** `rackswarm publish FILE (--head URL | --data DIR)`: every input is checked before the destination is touched. */
export async function publish(file: string, opts: PublishOptions, config: Config): Promise<PublishSummary> {
  if (!opts.head === !opts.data)
    throw new RswError('RSW_ERR_USAGE', 'give exactly one of --head URL and --data DIR');
  const started = performance.now();
  validateImageName(opts.name);
  const requested = opts.version === undefined ? undefined : parseVersion(opts.version);
  const format = opts.format === undefined ? undefined : parseFormat(opts.format);
  const size = await checkImageFile(file);
  const key = await loadPrivateKey(opts.key);
  const imageKey = opts.encrypt === undefined ? undefined : await imageKeyFor(opts.encrypt);
  const p: Prepared = {
    file,
    size,
    name: opts.name,
    requested,
    format,
    key,
    json: !!opts.json,
    started,
    imageKey,
  };
  if (opts.head) {
    if (!opts.tokenFile)
      throw new RswError(
        'RSW_ERR_UNAUTHORIZED',
        'publishing to a head needs --token-file (DATA/admin-token on the head)',
      );
    return publishToHead(p, new HeadClient(opts.head, await HeadClient.readToken(opts.tokenFile)), config);
  }
  return publishToData(p, resolve(opts.data as string), config);
}

/** Into a stopped head's DATA: a failure rolls back the chunks it added, and removes DATA if it created it. */
async function publishToData(p: Prepared, dataDir: string, config: Config): Promise<PublishSummary> {
  const created = !existsSync(dataDir);
  try {
    const store = await ChunkStore.open({ dataDir, verifyOnRead: config.store.verifyOnRead });
    const registry = await Registry.open(dataDir);
    try {
      const existing = (await registry.versions(p.name)).map((r) => r.version);
      return await run(p, existing, new ChunkBatch(store), config, async (opened) => {
        if (p.imageKey) await new ImageKeyStore(dataDir).put(p.imageKey);
        await registry.register(opened);
      });
    } finally {
      await registry.close();
    }
  } catch (e) {
    if (created) await rm(dataDir, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
}

/** To a running head: chunked and signed here, only the chunks the head lacks are uploaded, then registered. */
async function publishToHead(p: Prepared, client: HeadClient, config: Config): Promise<PublishSummary> {
  const existing = ((await client.image(p.name))?.versions ?? []).map((r) => r.version);
  return run(p, existing, new HeadUploader(client), config, async (opened) => {
    if (p.imageKey) await client.putImageKey(p.imageKey); // before the image is visible: nodes may ask at once
    await client.register(opened.envelope);
  });
}

async function run(
  p: Prepared,
  existing: number[],
  sink: ChunkSink,
  config: Config,
  register: (opened: OpenedManifest) => Promise<void>,
): Promise<PublishSummary> {
  const { version } = chooseVersion(existing, p.requested, p.name);
  const interrupt = onInterrupt();
  const progress = byteProgress(`publishing ${p.name} v${version}`, p.size, !p.json);
  try {
    const result = await publishFile({
      file: p.file,
      name: p.name,
      version,
      format: p.format,
      key: p.key,
      sink,
      chunker: (format) => chunkerParamsFor(config.chunker, format),
      writeConcurrency: config.store.writeConcurrency,
      signal: interrupt.signal,
      onProgress: (done) => progress.update(done),
      cipher: p.imageKey && new ChunkCipher(p.imageKey),
    }).finally(() => progress.stop());
    try {
      await register(result.opened);
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
      seconds: Number(((performance.now() - p.started) / 1000).toFixed(3)),
      ...(m.encryption ? { keyId: m.encryption.keyId } : {}),
    };
  } finally {
    interrupt.dispose();
  }
}

/** `--encrypt` → a fresh key; `--encrypt FILE` → FILE's key, or a new one written there (0600). */
async function imageKeyFor(encrypt: boolean | string): Promise<Buffer> {
  if (encrypt === true) return generateImageKey();
  const file = resolve(String(encrypt));
  if (existsSync(file)) return readImageKeyFile(file);
  const key = generateImageKey();
  await writeImageKeyFile(file, key);
  return key;
}

function parseFormat(text: string): ImageFormat {
  if ((IMAGE_FORMATS as readonly string[]).includes(text)) return text as ImageFormat;
  throw new RswError('RSW_ERR_USAGE', `--format must be one of ${IMAGE_FORMATS.join(', ')}`);
}
