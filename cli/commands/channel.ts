import { createPublicKey } from 'node:crypto';
import type { Command } from 'commander';
import { parseChannelRef, peekChannelPointer, signChannelPointer } from '../../core/channel.ts';
import type { Config } from '../../core/config.ts';
import { RswError } from '../../core/errors.ts';
import { loadPrivateKey } from '../../core/keys.ts';
import { parseVersion } from '../../core/manifest.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { formatTable } from '../format.ts';
import { HeadClient } from '../head-client.ts';

interface SetOptions {
  key: string;
  head: string;
  tokenFile: string;
  ttl?: string;
  json?: boolean;
}

export function registerChannel(program: Command, config: () => Config): void {
  const channel = program
    .command('channel')
    .description('named, signed, short-lived pointers to image versions (NAME:CHANNEL, e.g. compute:stable)');

  channel
    .command('set')
    .description(
      'point NAME:CHANNEL at VERSION (signed here; also re-signs an unchanged pointer before it expires)',
    )
    .argument('<channel>', 'NAME:CHANNEL')
    .argument('<version>', 'the image version it points to (an older one is a rollback)')
    .requiredOption('--key <keyfile>', 'publisher private key the image is published under')
    .requiredOption('--head <url>', 'the head node, e.g. http://head:7480')
    .requiredOption('--token-file <file>', "the head's admin token")
    .option('--ttl <seconds>', 'how long the pointer is valid (default from config: 86400)')
    .option('--json', 'print the stored pointer as JSON')
    .action(async (ref: string, versionText: string, opts: SetOptions) => {
      const { name, channel: chan } = parseChannelRef(ref);
      const version = parseVersion(versionText);
      const ttl = opts.ttl === undefined ? config().channel.ttlSeconds : Number(opts.ttl);
      if (!Number.isInteger(ttl) || ttl < 1)
        throw new RswError('RSW_ERR_USAGE', '--ttl takes whole seconds ≥ 1');
      const key = await loadPrivateKey(opts.key);
      const head = new HeadClient(opts.head, await HeadClient.readToken(opts.tokenFile));
      // The manifest id comes from the manifest itself, checked to be ours: never sign an id the head just claims.
      const manifest = openSignedManifest(
        await head.manifestEnvelope(name, version),
        [createPublicKey(key)],
        {
          maxBytes: config().manifest.maxBytes,
        },
      );
      if (manifest.manifest.name !== name || manifest.manifest.version !== version)
        throw new RswError(
          'RSW_ERR_MANIFEST_INVALID',
          `the head sent ${manifest.manifest.name}@${manifest.manifest.version}`,
        );
      const current = await head.channelEnvelope(name, chan);
      const sequence = current ? peekChannelPointer(current).sequence + 1 : 1;
      const issuedAt = Date.now();
      const signed = signChannelPointer(
        {
          name,
          channel: chan,
          version,
          manifestId: manifest.id,
          sequence,
          issuedAt,
          expiresAt: issuedAt + ttl * 1000,
        },
        key,
      );
      const stored = await head.setChannel(signed.envelope);
      if (opts.json) console.log(JSON.stringify(stored));
      else
        console.log(
          `${name}:${chan} → version ${version} (pointer #${sequence}, valid until ${new Date(stored.expiresAt).toISOString()})`,
        );
    });

  channel
    .command('list')
    .description("the head's channels and where they point")
    .requiredOption('--head <url>', 'the head node, e.g. http://head:7480')
    .option(
      '--json',
      'print a JSON array of {name, channel, version, manifestId, sequence, issuedAt, expiresAt, expired}',
    )
    .action(async (opts: { head: string; json?: boolean }) => {
      const list = await new HeadClient(opts.head).channels();
      if (opts.json) console.log(JSON.stringify(list));
      else if (list.length === 0) console.log('no channels');
      else
        console.log(
          formatTable(
            ['CHANNEL', 'VERSION', 'POINTER', 'EXPIRES'],
            list.map((c) => [
              `${c.name}:${c.channel}`,
              String(c.version),
              `#${c.sequence}`,
              `${new Date(c.expiresAt).toISOString().replace(/\.\d+Z$/, 'Z')}${c.expired ? ' (expired)' : ''}`,
            ]),
          ),
        );
    });
}
