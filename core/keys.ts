import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { RswError } from './errors.ts';

/**
 * Publisher keys: ed25519 in PEM (PKCS#8 private, SPKI public), the formats `openssl pkey` reads. The private key file
 * is written 0600; the public key is what nodes pin (`--trust`).
 */
export const PRIVATE_KEY_FILE = 'publisher.key';
export const PUBLIC_KEY_FILE = 'publisher.pub';
export const ED25519_PUBLIC_BYTES = 32;

export interface PublisherKeyPair {
  privatePem: string;
  publicPem: string;
}

export function generatePublisherKeys(): PublisherKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

async function readKeyFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RswError('RSW_ERR_FILE_NOT_FOUND', `key file ${path} does not exist`);
    if (code === 'EISDIR') throw new RswError('RSW_ERR_NOT_A_FILE', `key file ${path} is a directory`);
    throw new RswError('RSW_ERR_FILE_UNREADABLE', `cannot read key file ${path}: ${code}`);
  }
}

/** Loads a publisher's private key; anything but an ed25519 private key is RSW_ERR_KEY_INVALID. */
export async function loadPrivateKey(path: string): Promise<KeyObject> {
  const pem = await readKeyFile(path);
  if (pem.includes('PUBLIC KEY')) {
    throw new RswError(
      'RSW_ERR_KEY_INVALID',
      `${path} is a public key; --key needs the private key (${PRIVATE_KEY_FILE})`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new RswError('RSW_ERR_KEY_INVALID', `${path} is not a PEM private key (corrupt or wrong file?)`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new RswError(
      'RSW_ERR_KEY_INVALID',
      `${path} is a ${key.asymmetricKeyType} key; rackswarm signs with ed25519`,
    );
  }
  return key;
}

/** Loads a pinned publisher public key (a private key file is accepted too: its public half is used). */
export async function loadPublicKey(path: string): Promise<KeyObject> {
  const pem = await readKeyFile(path);
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new RswError('RSW_ERR_KEY_INVALID', `${path} is not a PEM public key (corrupt or wrong file?)`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new RswError(
      'RSW_ERR_KEY_INVALID',
      `${path} is a ${key.asymmetricKeyType} key; rackswarm uses ed25519`,
    );
  }
  return key;
}

/**
 * Loads every ed25519 public key of a trust file: one PEM key, or several concatenated (the working publisher key
 * and an offline spare to rotate to: see core/revocation.ts). A private key file counts as its public half.
 */
export async function loadTrustFile(path: string): Promise<KeyObject[]> {
  const text = (await readKeyFile(path)).toString('utf8');
  const blocks = text.match(/-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----/g) ?? [];
  if (blocks.length <= 1) return [await loadPublicKey(path)];
  return blocks.map((pem, i) => {
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      throw new RswError('RSW_ERR_KEY_INVALID', `key ${i + 1} in ${path} is not a PEM public key`);
    }
    if (key.asymmetricKeyType !== 'ed25519')
      throw new RswError('RSW_ERR_KEY_INVALID', `key ${i + 1} in ${path} is a ${key.asymmetricKeyType} key`);
    return key;
  });
}

/** Every key of every trust file (`--trust A B …`), duplicates dropped. */
export async function loadTrust(paths: readonly string[]): Promise<KeyObject[]> {
  const all = (await Promise.all(paths.map((p) => loadTrustFile(p)))).flat();
  const seen = new Set<string>();
  return all.filter((k) => {
    const raw = rawPublicKey(k).toString('hex');
    return !seen.has(raw) && !!seen.add(raw);
  });
}

/** The 32 raw bytes of an ed25519 public key (what a signed manifest carries). */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  return Buffer.from(jwk.x as string, 'base64url');
}

/** An ed25519 public KeyObject from its 32 raw bytes. */
export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== ED25519_PUBLIC_BYTES)
    throw new RswError('RSW_ERR_KEY_INVALID', 'ed25519 public key must be 32 bytes');
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') },
    format: 'jwk',
  });
}

/** Short printable fingerprint of a public key: first 16 hex of its raw bytes. */
export function keyFingerprint(key: KeyObject): string {
  return rawPublicKey(key).toString('hex').slice(0, 16);
}
