import {
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys';
import {
  InvalidCryptoExchangeError,
  type PeerId,
  type PrivateKey,
  type PublicKey,
  UnexpectedPeerError,
} from '@libp2p/interface';
import { peerIdFromPublicKey } from '@libp2p/peer-id';

/**
 * A libp2p TLS peer certificate verified as @libp2p/tls 3.1's verifyPeerCertificate does it (dist/src/utils.js) — the
 * same checks in the same order, with the same errors — but parsed and checked by Node's own X.509 (OpenSSL) instead
 * of @peculiar/x509 + asn1js + @peculiar/webcrypto in JavaScript: in a testbed swarm's start (N = 16) those took ~16 %
 * of every node's CPU between its first announce and its first chunk, one full verification per neighbour
 * (docs/BENCHMARKS.md, "Session 9: the start"). The checks (https://github.com/libp2p/specs/blob/master/tls/tls.md):
 * the certificate is valid now; its signature verifies with its own key and it is self-signed (issuer = subject);
 * its first extension is the libp2p public key extension, whose signature by the peer's libp2p key over
 * "libp2p-tls-handshake:" + the certificate's SubjectPublicKeyInfo verifies; the peer id is that key's; and it is
 * the expected one, if any. That the peer holds the certificate's private key is the TLS handshake's own proof.
 */
export async function verifyLibp2pCertificate(raw: Uint8Array, expected?: PeerId): Promise<PeerId> {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(raw);
  } catch (e) {
    throw new InvalidCertificateError(`The certificate could not be parsed: ${(e as Error).message}`);
  }
  const now = Date.now();
  // A date this process cannot read counts as outside the validity (NaN compares false both ways).
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!(notBefore <= now)) throw new InvalidCertificateError('The certificate is not valid yet');
  if (!(notAfter >= now)) throw new InvalidCertificateError('The certificate has expired');
  if (!cert.verify(cert.publicKey))
    throw new InvalidCryptoExchangeError('Invalid certificate self signature');
  if (cert.issuer !== cert.subject) throw new InvalidCryptoExchangeError('Certificate must be self signed');
  const ext = firstExtension(cert.raw);
  if (!ext || !Buffer.from(ext.oid).equals(LIBP2P_PUBLIC_KEY_EXTENSION)) {
    throw new InvalidCertificateError('The certificate did not include the libp2p public key extension');
  }
  // SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }
  const seq = expectTlv(ext.value, 0, 0x30);
  const keyPb = expectTlv(ext.value, seq.start, 0x04);
  const sig = expectTlv(ext.value, keyPb.end, 0x04);
  const key = publicKeyFromProtobuf(ext.value.subarray(keyPb.start, keyPb.end));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const signed = Buffer.concat([CERT_PREFIX, spki]);
  if (!(await verifySigned(key, signed, ext.value.subarray(sig.start, sig.end)))) {
    throw new InvalidCryptoExchangeError('Could not verify signature');
  }
  const peer = peerIdFromPublicKey(key);
  if (expected?.equals(peer) === false) throw new UnexpectedPeerError();
  return peer;
}

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32-byte key. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * `key`'s signature of `data`: an Ed25519 key (every rackswarm node's) straight by Node's crypto from its raw bytes;
 * @libp2p/crypto's verify imports it through a JWK each time, a third of a verification's CPU. Others: @libp2p/crypto.
 */
async function verifySigned(key: PublicKey, data: Uint8Array, sig: Uint8Array): Promise<boolean> {
  if (key.type !== 'Ed25519') return key.verify(data, sig);
  if (sig.length !== 64) return false;
  const pub = createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, key.raw]),
    format: 'der',
    type: 'spki',
  });
  return verify(null, data, pub, sig);
}

/**
 * A libp2p TLS certificate for `privateKey` (the node's identity), as @libp2p/tls's generateCertificate makes it — a
 * fresh P-256 key; self-signed, ecdsa-with-SHA256; empty subject and issuer; valid from an hour ago for 100 years;
 * one extension, the libp2p public key extension (critical) — but encoded here in DER and signed by Node's crypto
 * instead of by @peculiar/x509 and asn1js (~10 ms of a node's CPU on its first handshake, in the swarm's start).
 * Returns the certificate and its key in PEM, for a TLS context.
 */
export async function makeLibp2pCertificate(privateKey: PrivateKey): Promise<{ cert: string; key: string }> {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = keys.publicKey.export({ type: 'spki', format: 'der' });
  const signature = await privateKey.sign(Buffer.concat([CERT_PREFIX, spki]));
  const signedKey = der(
    0x30,
    der(0x04, Buffer.from(publicKeyToProtobuf(privateKey.publicKey))),
    der(0x04, Buffer.from(signature)),
  );
  const now = Date.now();
  const notAfter = new Date(now + CERT_VALIDITY_TO_MS);
  notAfter.setMilliseconds(0);
  // A positive serial of 8 random bytes (the top bit cleared; not starting 0x80 either way).
  const serial = randomBytes(8);
  serial[0] = (serial[0] & 0x7f) | 0x01;
  const ecdsaWithSha256 = der(0x30, der(0x06, Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2])));
  const emptyName = der(0x30);
  const tbs = der(
    0x30,
    der(0xa0, der(0x02, Buffer.from([2]))), // v3
    der(0x02, serial),
    ecdsaWithSha256,
    emptyName,
    der(0x30, x509Time(new Date(now - CERT_VALIDITY_FROM_MS)), x509Time(notAfter)),
    emptyName,
    spki,
    der(
      0xa3,
      der(
        0x30,
        der(
          0x30,
          der(0x06, LIBP2P_PUBLIC_KEY_EXTENSION),
          der(0x01, Buffer.from([0xff])), // critical
          der(0x04, signedKey),
        ),
      ),
    ),
  );
  const sig = sign('sha256', tbs, keys.privateKey); // DER ECDSA-Sig-Value
  const cert = der(0x30, tbs, ecdsaWithSha256, der(0x03, Buffer.from([0]), sig));
  return {
    cert: pem('CERTIFICATE', cert),
    key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** @libp2p/tls's validity: from an hour ago (clock skew) for about a century. */
const CERT_VALIDITY_FROM_MS = 60 * 60 * 1000;
const CERT_VALIDITY_TO_MS = 100 * 365 * 24 * 60 * 60 * 1000;

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime after. */
function x509Time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return d.getUTCFullYear() < 2050
    ? der(0x17, Buffer.from(digits.slice(2), 'ascii'))
    : der(0x18, Buffer.from(digits, 'ascii'));
}

/** One DER element: `tag`, its definite length and the concatenated `parts`. */
function der(tag: number, ...parts: Uint8Array[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len =
    n < 0x80
      ? [n]
      : n < 0x100
        ? [0x81, n]
        : n < 0x10000
          ? [0x82, n >> 8, n & 0xff]
          : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

function pem(label: string, body: Buffer): string {
  const b64 = body.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.endsWith('\n') ? b64 : `${b64}\n`}-----END ${label}-----\n`;
}

/** @libp2p/tls's error for a malformed certificate (same name, so callers and logs see the same). */
class InvalidCertificateError extends Error {
  constructor(message = 'Invalid certificate') {
    super(message);
    this.name = 'InvalidCertificateError';
  }
}

const CERT_PREFIX = Buffer.from('libp2p-tls-handshake:');
/** The OID 1.3.6.1.4.1.53594.1.1, DER-encoded content (without tag and length). */
export const LIBP2P_PUBLIC_KEY_EXTENSION = Buffer.from([0x2b, 6, 1, 4, 1, 0x83, 0xa2, 0x5a, 1, 1]);

interface Tlv {
  tag: number;
  /** Offsets of the content in the buffer. */
  start: number;
  end: number;
}

/** One DER element at `at` (definite lengths only, as DER has). */
function tlv(b: Uint8Array, at: number): Tlv {
  if (at + 2 > b.length) throw new InvalidCertificateError('truncated DER');
  const tag = b[at];
  let len = b[at + 1];
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > b.length) throw new InvalidCertificateError('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i];
    start += n;
  }
  const end = start + len;
  if (end > b.length) throw new InvalidCertificateError('truncated DER');
  return { tag, start, end };
}

function expectTlv(b: Uint8Array, at: number, tag: number): Tlv {
  const t = tlv(b, at);
  if (t.tag !== tag) throw new InvalidCertificateError(`unexpected DER tag 0x${t.tag.toString(16)}`);
  return t;
}

/**
 * The first extension of a DER certificate (RFC 5280: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
 * OPTIONAL, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [1] and [2] OPTIONAL,
 * [3] EXPLICIT SEQUENCE OF Extension } … }; Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
 * extnValue OCTET STRING }): its OID's content and its value's, or undefined when it has none.
 */
export function firstExtension(der: Uint8Array): { oid: Uint8Array; value: Uint8Array } | undefined {
  const certificate = expectTlv(der, 0, 0x30);
  const tbs = expectTlv(der, certificate.start, 0x30);
  let at = tbs.start;
  while (at < tbs.end) {
    const t = tlv(der, at);
    if (t.tag === 0xa3) {
      const list = expectTlv(der, t.start, 0x30);
      if (list.start >= list.end) return undefined;
      const ext = expectTlv(der, list.start, 0x30);
      const oid = expectTlv(der, ext.start, 0x06);
      let v = tlv(der, oid.end);
      if (v.tag === 0x01) v = tlv(der, v.end); // critical
      if (v.tag !== 0x04 || v.end > ext.end) throw new InvalidCertificateError('malformed extension');
      return { oid: der.subarray(oid.start, oid.end), value: der.subarray(v.start, v.end) };
    }
    at = t.end;
  }
  return undefined;
}
