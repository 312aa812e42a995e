import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { asDataError, RswError } from './errors.ts';
import { writeFileAtomic } from './fs-atomic.ts';
import { ED25519_PUBLIC_BYTES, rawPublicKey } from './keys.ts';
import {
  ENVELOPE_HEADER_BYTES,
  type EnvelopeKind,
  envelopeVerifies,
  sealEnvelope,
  splitEnvelope,
} from './signed-envelope.ts';

/**
 * Key revocation (`rackswarm keys revoke`): a signed statement "these publisher keys are revoked", made by any key the
 * node pins, distributed by the head and verified by every node against its own pinned keys — never trusted because
 * of where it came from.
 *
 * Why any pinned key may sign one (and a revoked key's statements still count): a revocation only ever *removes*
 * trust, so accepting it fails closed. A thief holding a pinned key can revoke the others (a denial of service the
 * operator ends by re-provisioning trust) but can never un-revoke anything: nodes keep the union of every statement
 * they have verified, persisted, and a revoked key never signs a manifest or pointer they accept again. Rotation:
 * pin a spare key next to the working one (a trust file may hold several PEM keys; keep the spare offline), revoke
 * the working key with it, publish the next version with the spare.
 *
 * Canonical bytes:  "RSWR" | u8 encoding=1 | u64 issuedAt (ms) | u16 count | count × 32-byte ed25519 key (ascending)
 * Envelope:         "RSWV" | u8 encoding=1 | u8 alg=1 (ed25519) | 32-byte signer | 64-byte signature | canonical
 * The signature covers REVOCATION_DOMAIN || canonical: a domain of its own, so no manifest or pointer signature can
 * be replayed as a revocation or the other way round.
 */
export const REVOCATION_DOMAIN = Buffer.from('rackswarm/revocation/v1\0');
const MAGIC = Buffer.from('RSWR');
const ENCODING = 1;
const KIND: EnvelopeKind = { magic: Buffer.from('RSWV'), domain: REVOCATION_DOMAIN };
/** Keys one statement may revoke. */
export const MAX_REVOKED_PER_STATEMENT = 256;
/** Statements a node or head keeps; far above any real cluster's history. */
export const MAX_REVOCATION_STATEMENTS = 1024;
export const MAX_REVOCATION_ENVELOPE_BYTES =
  ENVELOPE_HEADER_BYTES + 4 + 1 + 8 + 2 + MAX_REVOKED_PER_STATEMENT * 32;

export interface RevocationStatement {
  /** Raw ed25519 public keys revoked, hex, ascending. */
  revoked: string[];
  issuedAt: number;
  /** Raw ed25519 public key of the signer, hex. */
  signer: string;
  envelope: Buffer;
}

function invalid(why: string): RswError {
  return new RswError('RSW_ERR_REVOCATION_INVALID', `revocation invalid: ${why}`);
}

/** Signs "`keys` are revoked" with `signer` (a pinned publisher key: see the header comment for why any may). */
export function signRevocation(keys: readonly KeyObject[], signer: KeyObject, issuedAt = Date.now()): Buffer {
  const raw = [...new Set(keys.map((k) => rawPublicKey(k).toString('hex')))].sort();
  if (raw.length === 0 || raw.length > MAX_REVOKED_PER_STATEMENT)
    throw invalid(`a statement revokes 1-${MAX_REVOKED_PER_STATEMENT} keys`);
  if (!Number.isSafeInteger(issuedAt) || issuedAt < 0) throw invalid('issuedAt out of range');
  const canonical = Buffer.alloc(4 + 1 + 8 + 2 + raw.length * ED25519_PUBLIC_BYTES);
  let o = MAGIC.copy(canonical, 0);
  o = canonical.writeUInt8(ENCODING, o);
  o = canonical.writeBigUInt64BE(BigInt(issuedAt), o);
  o = canonical.writeUInt16BE(raw.length, o);
  for (const k of raw) o += canonical.write(k, o, 'hex');
  return sealEnvelope(KIND, canonical, signer);
}

/**
 * Verifies a statement against the pinned keys, then parses it. Throws RSW_ERR_REVOCATION_INVALID for anything but
 * a well-formed statement whose signer is pinned and whose signature verifies over the exact bytes.
 */
export function openRevocation(envelope: Uint8Array, pinned: readonly KeyObject[]): RevocationStatement {
  if (envelope.length > MAX_REVOCATION_ENVELOPE_BYTES)
    throw invalid(`${envelope.length} bytes is over the cap`);
  const parts = splitEnvelope(envelope, KIND, (problem) =>
    invalid(problem === 'magic' ? 'not a signed statement' : 'unsupported encoding or algorithm'),
  );
  const signer = pinned.find((k) => rawPublicKey(k).equals(parts.publisher));
  if (!signer)
    throw invalid(`signed by ${parts.publisher.toString('hex').slice(0, 16)}, which is not pinned`);
  const { canonical } = parts;
  if (!envelopeVerifies(KIND, parts, signer)) throw invalid('signature does not verify');
  if (canonical.length < 15 || !canonical.subarray(0, 4).equals(MAGIC) || canonical.readUInt8(4) !== ENCODING)
    throw invalid('bad statement header');
  const issuedAt = canonical.readBigUInt64BE(5);
  const count = canonical.readUInt16BE(13);
  if (issuedAt > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('issuedAt out of range');
  if (count === 0 || count > MAX_REVOKED_PER_STATEMENT || canonical.length !== 15 + count * 32)
    throw invalid(`length does not match ${count} keys`);
  const revoked: string[] = [];
  for (let i = 0; i < count; i++) {
    const k = canonical.toString('hex', 15 + i * 32, 15 + (i + 1) * 32);
    if (i > 0 && k <= revoked[i - 1]) throw invalid('keys are not in ascending order');
    revoked.push(k);
  }
  return {
    revoked,
    issuedAt: Number(issuedAt),
    signer: parts.publisher.toString('hex'),
    envelope: Buffer.from(envelope),
  };
}

/**
 * The keys a node (or the head) has seen revoked: the union of every statement it verified. Statements signed by a
 * key it does not pin are skipped (another cluster's, or forged), never an error: they come from the network.
 */
export class Revocations {
  readonly #revoked = new Set<string>();
  readonly #statements = new Map<string, RevocationStatement>();

  /** Verifies each envelope against `pinned` and keeps the valid ones; returns how many were new. */
  add(envelopes: Iterable<Uint8Array>, pinned: readonly KeyObject[]): number {
    let added = 0;
    for (const env of envelopes) {
      let s: RevocationStatement;
      try {
        s = openRevocation(env, pinned);
      } catch {
        continue;
      }
      const id = s.envelope.toString('base64');
      if (this.#statements.has(id)) continue;
      if (this.#statements.size >= MAX_REVOCATION_STATEMENTS) break;
      this.#statements.set(id, s);
      for (const k of s.revoked) this.#revoked.add(k);
      added++;
    }
    return added;
  }

  /** Whether the raw public key (bytes or hex) is revoked. */
  has(publisher: Uint8Array | string): boolean {
    return this.#revoked.has(
      typeof publisher === 'string' ? publisher : Buffer.from(publisher).toString('hex'),
    );
  }

  get size(): number {
    return this.#revoked.size;
  }

  revokedKeys(): string[] {
    return [...this.#revoked].sort();
  }

  envelopes(): Buffer[] {
    return [...this.#statements.values()].map((s) => s.envelope);
  }
}

/** Statements as JSON: `{"revocations": [base64, …]}` — the file format and the HTTP body of GET /api/keys/revocations. */
export function encodeRevocationList(envelopes: readonly Uint8Array[]): string {
  return JSON.stringify({ revocations: envelopes.map((e) => Buffer.from(e).toString('base64')) });
}

/** Parses a revocation list; anything malformed is RSW_ERR_REVOCATION_INVALID (each entry is verified later). */
export function decodeRevocationList(text: string): Buffer[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid('the list is not JSON');
  }
  const list = (parsed as { revocations?: unknown })?.revocations;
  if (
    !Array.isArray(list) ||
    list.length > MAX_REVOCATION_STATEMENTS ||
    !list.every((e) => typeof e === 'string')
  )
    throw invalid(
      `the list must be {"revocations": [base64, …]} with at most ${MAX_REVOCATION_STATEMENTS} entries`,
    );
  return list.map((e) => Buffer.from(e as string, 'base64'));
}

/** Reads a stored list; a missing file is an empty list. */
export async function readRevocationFile(path: string): Promise<Buffer[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new RswError(
      'RSW_ERR_FILE_UNREADABLE',
      `cannot read ${path}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
  return decodeRevocationList(text);
}

export async function writeRevocationFile(path: string, envelopes: readonly Uint8Array[]): Promise<void> {
  await writeFileAtomic(path, encodeRevocationList(envelopes)).catch((e) => {
    throw asDataError(e, `cannot write ${path}`);
  });
}
