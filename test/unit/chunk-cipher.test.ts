import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CHUNK_CIPHER_OVERHEAD,
  ChunkCipher,
  generateImageKey,
  imageKeyId,
  plainLayout,
  readImageKeyFile,
  writeImageKeyFile,
} from '../../core/chunk-cipher.ts';
import { DecryptingTarget } from '../../core/decrypting-target.ts';
import { hashHex } from '../../core/hash.ts';
import { ImageKeyStore } from '../../core/image-key-store.ts';
import { decodeManifest, encodeManifest, type Manifest } from '../../core/manifest.ts';
import { ImageWriter } from '../../peer/image-writer.ts';
import { ResumeState } from '../../peer/resume-state.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const t = tempDir('rsw-cipher-');
afterAll(() => t.cleanup());
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

describe('chunk cipher', () => {
  const key = generateImageKey();
  const cipher = new ChunkCipher(key);

  it('seals to plaintext + 48 bytes that do not contain the plaintext, and opens back', () => {
    const plain = Buffer.from('root:x:0:0:root:/root:/bin/bash\n'.repeat(100));
    const sealed = cipher.seal(plain);
    expect(sealed.length).toBe(plain.length + CHUNK_CIPHER_OVERHEAD);
    expect(sealed.includes(plain.subarray(0, 32))).toBe(false);
    expect(cipher.open(sealed).equals(plain)).toBe(true);
    expect(cipher.open(cipher.seal(Buffer.alloc(1))).equals(Buffer.alloc(1))).toBe(true);
  });

  it('is deterministic under one key (dedup, re-serving) and differs under another', () => {
    const plain = pseudoRandomBytes(70_000, 5);
    expect(cipher.seal(plain).equals(cipher.seal(plain))).toBe(true);
    expect(new ChunkCipher(key).seal(plain).equals(cipher.seal(plain))).toBe(true);
    // Sealing in place (the plaintext in the output buffer's tail) gives the same bytes.
    const inPlace = Buffer.alloc(plain.length + CHUNK_CIPHER_OVERHEAD);
    plain.copy(inPlace, CHUNK_CIPHER_OVERHEAD);
    expect(cipher.sealInto(inPlace.subarray(CHUNK_CIPHER_OVERHEAD), inPlace).equals(cipher.seal(plain))).toBe(
      true,
    );
    const other = new ChunkCipher(generateImageKey());
    expect(other.seal(plain).equals(cipher.seal(plain))).toBe(false);
    // Different plaintexts give different synthetic IVs, hence different per-chunk keys (no GCM nonce reuse).
    const a = cipher.seal(Buffer.from('a'.repeat(64)));
    const b = cipher.seal(Buffer.from('b'.repeat(64)));
    expect(a.subarray(0, 32).equals(b.subarray(0, 32))).toBe(false);
  });

  it('refuses a wrong key, and any flipped bit, with RSW_ERR_DECRYPT_FAILED', () => {
    const sealed = cipher.seal(pseudoRandomBytes(1000, 6));
    expect(code(() => new ChunkCipher(generateImageKey()).open(sealed))).toBe('RSW_ERR_DECRYPT_FAILED');
    for (const at of [0, 31, 32, 500, sealed.length - 1]) {
      const flipped = Buffer.from(sealed);
      flipped[at] ^= 0x10;
      expect(code(() => cipher.open(flipped))).toBe('RSW_ERR_DECRYPT_FAILED');
    }
    expect(code(() => cipher.open(Buffer.alloc(20)))).toBe('RSW_ERR_DECRYPT_FAILED');
  });

  it('a key id names the key without revealing it; a bad key length is RSW_ERR_KEY_INVALID', () => {
    expect(cipher.keyId).toBe(imageKeyId(key));
    expect(cipher.keyId).toMatch(/^[0-9a-f]{32}$/);
    expect(key.toString('hex').includes(cipher.keyId)).toBe(false);
    expect(code(() => new ChunkCipher(Buffer.alloc(16)))).toBe('RSW_ERR_KEY_INVALID');
  });

  it('key files are 0600 hex; the head’s store finds a key by its id only', async () => {
    const file = join(t.dir, 'image.key');
    await writeImageKeyFile(file, key);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await readImageKeyFile(file)).equals(key)).toBe(true);
    const store = new ImageKeyStore(join(t.dir, 'head'));
    expect(await store.put(key)).toBe(cipher.keyId);
    expect((await store.get(cipher.keyId))?.equals(key)).toBe(true);
    expect(await store.get('00'.repeat(16))).toBeUndefined();
    expect(await store.get('../../etc/passwd')).toBeUndefined();
  });
});

describe('encrypted manifests', () => {
  const cipher = new ChunkCipher(generateImageKey());
  const sealedManifest = (plain: Buffer[]): Manifest => {
    let offset = 0;
    const chunks = plain.map((p) => {
      const s = cipher.seal(p);
      const c = { offset, length: s.length, hash: hashHex(s) };
      offset += s.length;
      return c;
    });
    return {
      name: 'secret',
      version: 1,
      format: 'raw',
      size: offset,
      chunks,
      encryption: { cipher: 'chunk-v1', keyId: cipher.keyId },
    };
  };

  it('encode as encoding 2 with the key id, round-trip; plain manifests keep encoding 1', () => {
    const m = sealedManifest([Buffer.from('one'), Buffer.from('two!')]);
    const bytes = encodeManifest(m);
    expect(bytes[4]).toBe(2);
    expect(bytes.includes(Buffer.from(cipher.keyId, 'hex'))).toBe(true);
    expect(decodeManifest(bytes, 4096)).toEqual(m);
    const { encryption: _, ...plain } = m;
    expect(encodeManifest(plain)[4]).toBe(1);
    expect(decodeManifest(encodeManifest(plain), 4096).encryption).toBeUndefined();
  });

  it('refuse a sealed chunk shorter than the cipher overhead + 1', () => {
    const m = sealedManifest([Buffer.from('x')]);
    m.chunks[0].length = 48;
    m.size = 48;
    expect(code(() => encodeManifest(m))).toBe('RSW_ERR_MANIFEST_INVALID');
  });

  it('a DecryptingTarget writes plaintext at plaintext offsets, reads back the exact sealed chunks, and a resume check sees a changed byte', async () => {
    const plain = [pseudoRandomBytes(1000, 1), Buffer.alloc(4096), pseudoRandomBytes(333, 2)];
    const m = sealedManifest(plain);
    const layout = plainLayout(m.chunks);
    expect(layout.size).toBe(1000 + 4096 + 333);
    const out = join(t.dir, 'plain.img');
    const target = new DecryptingTarget(await ImageWriter.open(out, layout.size), m, cipher);
    for (const [i, c] of [...m.chunks.entries()].reverse())
      await target.write(c.offset, cipher.seal(plain[i]));
    for (const c of m.chunks) expect(hashHex(await target.read(c.offset, c.length))).toBe(c.hash);
    const buf = Buffer.alloc(m.chunks[2].length);
    await target.readInto(buf, m.chunks[2].offset);
    expect(hashHex(buf)).toBe(m.chunks[2].hash);
    await target.close();
    expect(readFileSync(out).equals(Buffer.concat(plain))).toBe(true);
    // Resume: the record is checked in sealed coordinates too — a plaintext byte changed behind the record's back
    // makes that chunk's re-sealed bytes miss its name, so it is forgotten and fetched again.
    const resume = await ResumeState.open(join(t.dir, 'plain.resume'), 'ab'.repeat(32), m.chunks.length);
    await resume.markVerified([0, 1, 2]);
    const fd = openSync(out, 'r+');
    writeSync(fd, Buffer.from([0xff]), 0, 1, layout.offsets[2] + 5);
    closeSync(fd);
    const again = new DecryptingTarget(await ImageWriter.open(out, layout.size), m, cipher);
    expect(await resume.verifyRecorded(again, m)).toEqual([2]);
    await again.close();
    await resume.close();
    expect(
      () =>
        new DecryptingTarget({ size: layout.size } as ImageWriter, m, new ChunkCipher(generateImageKey())),
    ).toThrow(/sealed with key/);
  });
});
