import { createPrivateKey } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { asDataError, RswError } from '../../core/errors.ts';
import { writeFileAtomic } from '../../core/fs-atomic.ts';
import {
  generatePublisherKeys,
  keyFingerprint,
  loadPrivateKey,
  loadTrustFile,
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
} from '../../core/keys.ts';
import { signRevocation } from '../../core/revocation.ts';
import { HeadClient } from '../head-client.ts';

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
  keys
    .command('revoke')
    .description(
      'sign a statement revoking publisher keys and give it to the head, which serves it to every node (see core/revocation.ts)',
    )
    .argument('<pubfile...>', 'public key file(s) to revoke (every key in each file)')
    .requiredOption(
      '--key <keyfile>',
      'private key that signs the statement: any key the nodes pin (the spare you rotate to, or the revoked key itself)',
    )
    .option('--head <url>', 'a running head to give the statement to')
    .option('--token-file <file>', "the head's admin token (DATA/admin-token)")
    .option('--out <file>', 'also write the statement to FILE (for an initramfs, or a head that is down)')
    .option('--json', 'print {revoked, signer, out?} as JSON')
    .action(
      async (
        pubfiles: string[],
        opts: { key: string; head?: string; tokenFile?: string; out?: string; json?: boolean },
      ) => {
        if (!opts.head && !opts.out)
          throw new RswError('RSW_ERR_USAGE', 'give --head URL, --out FILE, or both');
        if (opts.head && !opts.tokenFile)
          throw new RswError(
            'RSW_ERR_UNAUTHORIZED',
            'revoking on a head needs --token-file (DATA/admin-token)',
          );
        const signer = await loadPrivateKey(opts.key);
        const keysToRevoke = (await Promise.all(pubfiles.map((f) => loadTrustFile(f)))).flat();
        const envelope = signRevocation(keysToRevoke, signer);
        if (opts.out) {
          await writeFileAtomic(resolve(opts.out), envelope).catch((e) => {
            throw asDataError(e, `cannot write ${opts.out}`);
          });
        }
        if (opts.head) {
          const client = new HeadClient(opts.head, await HeadClient.readToken(opts.tokenFile as string));
          await client.revoke(envelope);
        }
        const revoked = keysToRevoke.map((k) => keyFingerprint(k));
        if (opts.json) {
          console.log(
            JSON.stringify({
              revoked,
              signer: keyFingerprint(signer),
              ...(opts.out ? { out: opts.out } : {}),
            }),
          );
        } else {
          console.log(
            `revoked ${revoked.join(', ')} (signed by ${keyFingerprint(signer)})` +
              `${opts.head ? `; the head at ${opts.head} now serves the statement` : ''}` +
              `${opts.out ? `; written to ${opts.out}` : ''}`,
          );
        }
      },
    );
}
