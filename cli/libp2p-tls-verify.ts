import { X509Certificate } from 'node:crypto';
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys';
import { InvalidCryptoExchangeError, type PeerId, UnexpectedPeerError } from '@libp2p/interface';
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
  if (Date.parse(cert.validFrom) > now) throw new InvalidCertificateError('The certificate is not valid yet');
  if (Date.parse(cert.validTo) < now) throw new InvalidCertificateError('The certificate has expired');
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
  if (!(await key.verify(signed, ext.value.subarray(sig.start, sig.end)))) {
    throw new InvalidCryptoExchangeError('Could not verify signature');
  }
  const peer = peerIdFromPublicKey(key);
  if (expected?.equals(peer) === false) throw new UnexpectedPeerError();
  return peer;
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
