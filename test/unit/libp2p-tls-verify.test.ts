// cli/libp2p-tls-verify.ts must accept and refuse exactly the certificates @libp2p/tls's verifyPeerCertificate does:
// real certificates from @libp2p/tls's generateCertificate, and ones made by openssl with a libp2p extension that is
// right, signed over another key, missing, or not the first extension.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { generateCertificate, verifyPeerCertificate } from '@libp2p/tls/utils';
import { afterAll, describe, expect, it } from 'vitest';
import {
  firstExtension,
  makeLibp2pCertificate,
  verifyLibp2pCertificate,
} from '../../cli/libp2p-tls-verify.ts';
import { tempDir } from '../helpers/cli.ts';

const t = tempDir('rsw-tlsv-');
afterAll(() => t.cleanup());

/** DER: a tag and its content (short and long lengths). */
function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len =
    n < 128 ? Buffer.from([n]) : n < 256 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 255]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

let serial = 0;
/**
 * A self-signed P-256 certificate made by openssl whose libp2p extension carries `signer`'s public key and its
 * signature over "libp2p-tls-handshake:" + the SPKI of `spkiOf` (the certificate's own key when right).
 */
async function opensslCert(
  signer: PrivateKey,
  opts: { otherKey?: boolean; noExtension?: boolean; extensionSecond?: boolean } = {},
): Promise<Buffer> {
  const s = ++serial;
  const key = join(t.dir, `k${s}.pem`);
  const other = join(t.dir, `o${s}.pem`);
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', other]);
  const spkiOf = opts.otherKey ? other : key;
  const spki = createPublicKey(readFileSync(spkiOf)).export({ format: 'der', type: 'spki' });
  const sig = await signer.sign(Buffer.concat([Buffer.from('libp2p-tls-handshake:'), spki]));
  const value = der(
    0x30,
    Buffer.concat([
      der(0x04, Buffer.from(publicKeyToProtobuf(signer.publicKey))),
      der(0x04, Buffer.from(sig)),
    ]),
  );
  const ext = `1.3.6.1.4.1.53594.1.1=critical,DER:${value.toString('hex')}`;
  const addext = [
    ...(opts.extensionSecond ? ['-addext', 'subjectAltName=DNS:x'] : []),
    ...(opts.noExtension ? ['-addext', 'subjectAltName=DNS:y'] : ['-addext', ext]),
  ];
  const conf = join(t.dir, `c${s}.cnf`);
  writeFileSync(conf, '[req]\ndistinguished_name=dn\nx509_extensions=none\n[dn]\n[none]\n');
  const pem = execFileSync('openssl', [
    'req',
    '-new',
    '-x509',
    '-key',
    key,
    '-subj',
    '/',
    '-days',
    '30',
    '-config',
    conf,
    ...addext,
  ]);
  return new X509Certificate(pem).raw;
}

/** Both verifiers' verdicts: the peer id, or the error's name. */
async function verdicts(raw: Buffer, expected?: Parameters<typeof verifyLibp2pCertificate>[1]) {
  const ours = await verifyLibp2pCertificate(raw, expected).then(
    (p) => p.toString(),
    (e: Error) => `error ${e.name}`,
  );
  const theirs = await verifyPeerCertificate(new Uint8Array(raw), expected).then(
    (p) => p.toString(),
    (e: Error) => `error ${e.name}`,
  );
  return { ours, theirs };
}

describe('libp2p TLS certificates verified by Node X.509', () => {
  it("accepts @libp2p/tls's own certificates as the peer that made them, and refuses another expected peer", async () => {
    for (let i = 0; i < 3; i++) {
      const k = await generateKeyPair('Ed25519');
      const raw = new X509Certificate((await generateCertificate(k)).cert).raw;
      const id = peerIdFromPrivateKey(k);
      expect(firstExtension(raw)).toBeDefined();
      expect(await verdicts(raw, id)).toEqual({ ours: id.toString(), theirs: id.toString() });
      expect(await verdicts(raw)).toEqual({ ours: id.toString(), theirs: id.toString() });
      const someoneElse = peerIdFromPrivateKey(await generateKeyPair('Ed25519'));
      expect(await verdicts(raw, someoneElse)).toEqual({
        ours: 'error UnexpectedPeerError',
        theirs: 'error UnexpectedPeerError',
      });
    }
  }, 30_000);

  it('agrees with @libp2p/tls on certificates made elsewhere (openssl): right, and three ways wrong', async () => {
    const k = await generateKeyPair('Ed25519');
    const id = peerIdFromPrivateKey(k).toString();
    expect(await verdicts(await opensslCert(k))).toEqual({ ours: id, theirs: id });
    // the libp2p signature is over another key than the certificate's: anyone could copy a peer's extension
    const copied = await verdicts(await opensslCert(k, { otherKey: true }));
    expect(copied.ours).toBe('error InvalidCryptoExchangeError');
    expect(copied.theirs).toBe(copied.ours);
    for (const bad of [{ noExtension: true }, { extensionSecond: true }]) {
      const v = await verdicts(await opensslCert(k, bad));
      expect(v.ours).toBe('error InvalidCertificateError');
      expect(v.theirs).toBe(v.ours);
    }
  }, 30_000);

  it('refuses a certificate whose signature was tampered with, and bytes that are not a certificate', async () => {
    const k = await generateKeyPair('Ed25519');
    const raw = Buffer.from(new X509Certificate((await generateCertificate(k)).cert).raw);
    raw[raw.length - 5] ^= 1; // inside the ECDSA signature
    const v = await verdicts(raw);
    expect(v.ours).toMatch(/^error /);
    expect(v.theirs).toMatch(/^error /);
    await expect(verifyLibp2pCertificate(Buffer.from('not a certificate'))).rejects.toThrow(/certificate/);
  }, 30_000);
});

describe('libp2p TLS certificates made by Node crypto', () => {
  it('are accepted by @libp2p/tls, by the native verifier and by openssl, as the peer that made them', async () => {
    for (let i = 0; i < 3; i++) {
      const k = await generateKeyPair('Ed25519');
      const { cert, key } = await makeLibp2pCertificate(k);
      const x = new X509Certificate(cert);
      expect(x.checkPrivateKey(createPrivateKey(key))).toBe(true);
      expect(Date.parse(x.validTo) - Date.now()).toBeGreaterThan(99 * 365 * 86_400_000);
      expect(Date.parse(x.validFrom)).toBeLessThan(Date.now());
      const id = peerIdFromPrivateKey(k);
      expect(await verdicts(x.raw, id)).toEqual({ ours: id.toString(), theirs: id.toString() });
      const file = join(t.dir, `made${i}.pem`);
      writeFileSync(file, cert);
      expect(execFileSync('openssl', ['x509', '-in', file, '-noout', '-text']).toString()).toMatch(
        /1\.3\.6\.1\.4\.1\.53594\.1\.1: critical/,
      );
    }
  }, 30_000);
});
