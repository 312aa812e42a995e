import { createPrivateKey } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { asDataError, RswError } from '../../core/errors.ts';
import { writeFileAtomic } from '../../core/fs-atomic.ts';
import { generatePublisherKeys, keyFingerprint, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../core/keys.ts';

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('manage publisher signing keys (ed25519)');
  keys
    .command('generate')
    .description(`write ${PRIVATE_KEY_FILE} (mode 0600) and ${PUBLIC_KEY_FILE} into DIR`)
    .requiredOption('--out <dir>', 'directory for the key pair (created if missing)')
    .option('--force', 'replace an existing key pair (images signed with the old key stay pinned to it)')
    .option('--json', 'print {privateKey, publicKey, fingerprint} as JSON')
    .action(async (opts: { out: string; force?: boolean; json?: boolean }) => {
      const dir = resolve(opts.out);
      const priv = join(dir, PRIVATE_KEY_FILE);
      const pub = join(dir, PUBLIC_KEY_FILE);
      if (!opts.force) {
        for (const f of [priv, pub]) {
          if (await exists(f))
            throw new RswError('RSW_ERR_KEY_EXISTS', `${f} already exists (use --force to replace it)`);
        }
      }
      const pair = generatePublisherKeys();
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await writeFileAtomic(priv, pair.privatePem, { mode: 0o600 });
        await writeFileAtomic(pub, pair.publicPem, { mode: 0o644 });
      } catch (e) {
        throw asDataError(e, `cannot write keys into ${dir}`);
      }
      const fingerprint = keyFingerprint(createPrivateKey(pair.privatePem));
      if (opts.json) {
        console.log(JSON.stringify({ privateKey: priv, publicKey: pub, fingerprint }));
      } else {
        console.log(
          `wrote ${priv} (keep it secret) and ${pub} (give it to nodes: --trust); fingerprint ${fingerprint}`,
        );
      }
    });
}
