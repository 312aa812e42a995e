/**
 * Per-node SSH host keys, kept by the head so a stateless node presents the same host key on every boot without the
 * key being baked into the shared image: one Ed25519 key per MAC under DATA/boot/nodes/, created on first request, handed
 * to the node's boot agent (GET /boot/nodes/MAC/ssh-host-keys), which writes it into the overlay's upper layer. Like
 * every provisioning system that does this over the boot network, it trusts that network: anyone who can reach the
 * head's HTTP port and knows a MAC can read that node's host key.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { asDataError, RswError } from '../core/errors.ts';
import { ensureWritableDir, writeFileAtomic } from '../core/fs-atomic.ts';

export interface SshHostKey {
  /** OpenSSH private key file (openssh-key-v1, unencrypted), as sshd reads /etc/ssh/ssh_host_ed25519_key. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment`, as in /etc/ssh/ssh_host_ed25519_key.pub. */
  publicKey: string;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** The openssh-key-v1 encoding (PROTOCOL.key in OpenSSH) of an Ed25519 key: 32-byte seed and public key. */
export function opensshEd25519(
  seed: Buffer,
  pub: Buffer,
  comment: string,
  check = randomBytes(4),
): SshHostKey {
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  let priv = Buffer.concat([
    check,
    check,
    sshString('ssh-ed25519'),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const nkeys = Buffer.alloc(4);
  nkeys.writeUInt32BE(1);
  const blob = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    nkeys,
    sshString(pubBlob),
    sshString(priv),
  ]);
  const b64 = blob
    .toString('base64')
    .match(/.{1,70}/g)
    ?.join('\n');
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment}\n`,
  };
}

export function normalizeMac(mac: string): string {
  const m = mac.toLowerCase().replaceAll('-', ':');
  if (!MAC_RE.test(m))
    throw new RswError('RSW_ERR_BAD_REQUEST', `${JSON.stringify(mac.slice(0, 40))} is not a MAC address`);
  return m;
}

const creating = new Map<string, Promise<SshHostKey>>();

/** The node's key under `bootDir`/nodes/, created (0600, atomically; once even for concurrent calls) on first use. */
export function loadOrCreateSshHostKey(bootDir: string, mac: string): Promise<SshHostKey> {
  const m = normalizeMac(mac);
  const dir = join(bootDir, 'nodes', m.replaceAll(':', ''));
  const pending = creating.get(dir);
  if (pending) return pending;
  const p = loadOrCreate(dir, m).finally(() => creating.delete(dir));
  creating.set(dir, p);
  return p;
}

async function loadOrCreate(dir: string, m: string): Promise<SshHostKey> {
  const file = join(dir, 'ssh_host_ed25519_key.json');
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SshHostKey;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw asDataError(e, `cannot read ${file}`);
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwkPriv = privateKey.export({ format: 'jwk' });
  const key = opensshEd25519(
    Buffer.from(jwkPriv.d as string, 'base64url'),
    Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url'),
    `root@rackswarm-${m.replaceAll(':', '')}`,
  );
  try {
    await ensureWritableDir(dir);
    await writeFileAtomic(file, JSON.stringify(key), { mode: 0o600 });
  } catch (e) {
    throw asDataError(e, `cannot write ${file}`);
  }
  return key;
}
