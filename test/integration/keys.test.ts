import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchOverHttp } from '../../cli/fetch-http.ts';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { HeadClient } from '../../cli/head-client.ts';
import { nodeRevocations } from '../../cli/node-revocations.ts';
import { loadTrust } from '../../core/keys.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

/**
 * Issue 9, Show item 5: image A's manifest served as image B, and a manifest or pointer signed by a revoked key, are
 * refused with codes of their own — by a real `rackswarm fetch` (tracker protocol), by the boot agent's HTTP path
 * (fetchOverHttp, the head's manifest route) and by the head itself.
 */
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
const k = (f: string) => join(t.dir, 'keys', f);
const token = () => join(t.dir, 'head/admin-token');
const errorCode = (stderr: string) => /error (RSW_ERR_[A-Z_]+)/.exec(stderr)?.[1];
const images: Record<string, Buffer> = {};

const fetch = (name: string, cache: string, headUrl = head.url) =>
  runCli(
    [
      'fetch',
      name,
      '--head',
      headUrl,
      '--trust',
      k('trust.pem'),
      '--out',
      join(t.dir, `${name}-${Date.now()}.img`),
      '--cache',
      cache,
      '--linger',
      '0',
      '--json',
    ],
    { timeoutMs: 120_000 },
  );
const summary = (stdout: string): FetchSummary =>
  JSON.parse(stdout.trim().split('\n').pop() as string) as FetchSummary;
const httpFetch = async (name: string, version: number | 'latest', cache: string) => {
  const trusted = await loadTrust([k('trust.pem')]);
  const revoked = await nodeRevocations(new HeadClient(head.url), cache, trusted);
  return fetchOverHttp(head.url, { name, version }, trusted, join(t.dir, `${name}-http.img`), {
    maxManifestBytes: 16 * 1024 * 1024,
    revoked,
  }).then(
    (s) => s,
    (e: { code?: string }) => e.code,
  );
};

beforeAll(async () => {
  t = tempDir('rsw-keys-');
  for (const who of ['working', 'spare', 'stranger']) {
    const r = await runCli(['keys', 'generate', '--out', join(t.dir, 'keys', who)]);
    expect(r.code, r.stderr).toBe(0);
  }
  // One trust file with two keys: the working publisher key and the offline spare to rotate to.
  writeFileSync(
    k('trust.pem'),
    readFileSync(k('working/publisher.pub'), 'utf8') + readFileSync(k('spare/publisher.pub'), 'utf8'),
  );
  for (const [name, seed] of [
    ['alpha', 1],
    ['beta', 2],
  ] as const) {
    images[name] = pseudoRandomBytes(3 * 1024 * 1024 + 77, seed);
    writeFileSync(join(t.dir, `${name}.img`), images[name]);
  }
  head = await startHead(join(t.dir, 'head'), ['--trust', k('trust.pem')]);
  for (const name of ['alpha', 'beta']) {
    const p = await publishToHead(
      head.url,
      token(),
      join(t.dir, `${name}.img`),
      name,
      k('working/publisher.key'),
    );
    expect(p.code, p.stderr).toBe(0);
  }
}, 120_000);

afterAll(async () => {
  await head?.stop();
  t?.cleanup();
});

describe("image A's manifest served as image B", () => {
  it('is refused with RSW_ERR_MANIFEST_MISMATCH by fetch (tracker) and by the HTTP path (the head’s manifest route)', async () => {
    // Both are validly signed by a pinned key: only the name tells them apart. Make the head's registry answer
    // "beta" with alpha's manifest (a compromised or buggy head), then ask for beta both ways.
    await head.stop();
    const db = new Level(join(t.dir, 'head/registry'));
    const recs = db.sublevel<string, { id: string; name: string }>('images', { valueEncoding: 'json' });
    const key = (name: string) => `${name}\x00${'1'.padStart(16, '0')}`;
    const alpha = await recs.get(key('alpha'));
    const beta = await recs.get(key('beta'));
    expect(alpha?.id).toMatch(/^[0-9a-f]{64}$/);
    await recs.put(key('beta'), { ...(beta as { id: string; name: string }), id: alpha?.id as string });
    await db.close();
    head = await startHead(join(t.dir, 'head'), ['--trust', k('trust.pem')]);

    const r = await fetch('beta', join(t.dir, 'cache-swap'));
    expect(r.code).not.toBe(0);
    expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_MANIFEST_MISMATCH');
    expect(await httpFetch('beta', 1, join(t.dir, 'cache-swap'))).toBe('RSW_ERR_MANIFEST_MISMATCH');
    // alpha itself is fine: the refusal is about the swap, not the manifest.
    const ok = await fetch('alpha', join(t.dir, 'cache-swap'));
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(join(t.dir, 'alpha.img')).equals(images.alpha)).toBe(true);
  }, 180_000);
});

describe('key revocation (`rackswarm keys revoke`) and rotation', () => {
  const nodeCache = () => join(t.dir, 'cache-node');

  it('a node fetches alpha v1 signed by the working key', async () => {
    const r = await fetch('alpha', nodeCache());
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r.stdout).version).toBe(1);
  }, 120_000);

  it('a statement signed by a key nobody pins is refused by the head (RSW_ERR_REVOCATION_INVALID)', async () => {
    const r = await runCli([
      'keys',
      'revoke',
      k('spare/publisher.pub'),
      '--key',
      k('stranger/publisher.key'),
      '--head',
      head.url,
      '--token-file',
      token(),
    ]);
    expect(r.code).not.toBe(0);
    expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_REVOCATION_INVALID');
  });

  it('after the spare revokes the working key: fetch, the HTTP path, publish and channel set all refuse it with RSW_ERR_KEY_REVOKED', async () => {
    const rev = await runCli([
      'keys',
      'revoke',
      k('working/publisher.pub'),
      '--key',
      k('spare/publisher.key'),
      '--head',
      head.url,
      '--token-file',
      token(),
      '--out',
      join(t.dir, 'revocation.bin'),
      '--json',
    ]);
    expect(rev.code, rev.stderr).toBe(0);
    expect(JSON.parse(rev.stdout).revoked).toHaveLength(1);

    const f = await fetch('alpha', nodeCache());
    expect(errorCode(f.stderr), f.stderr).toBe('RSW_ERR_KEY_REVOKED');
    expect(await httpFetch('alpha', 1, join(t.dir, 'cache-boot'))).toBe('RSW_ERR_KEY_REVOKED');

    writeFileSync(join(t.dir, 'alpha2.img'), pseudoRandomBytes(1024 * 1024, 9));
    const p = await publishToHead(
      head.url,
      token(),
      join(t.dir, 'alpha2.img'),
      'alpha',
      k('working/publisher.key'),
    );
    expect(errorCode(p.stderr), p.stderr).toBe('RSW_ERR_KEY_REVOKED');
    const c = await runCli([
      'channel',
      'set',
      'alpha:stable',
      '1',
      '--key',
      k('working/publisher.key'),
      '--head',
      head.url,
      '--token-file',
      token(),
    ]);
    expect(errorCode(c.stderr), c.stderr).toBe('RSW_ERR_KEY_REVOKED');
  }, 180_000);

  it('rotation: the next version, signed by the spare, is published and fetched by the same node', async () => {
    const p = await publishToHead(
      head.url,
      token(),
      join(t.dir, 'alpha2.img'),
      'alpha',
      k('spare/publisher.key'),
    );
    expect(p.code, p.stderr).toBe(0);
    const r = await fetch('alpha', nodeCache());
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r.stdout).version).toBe(2);
  }, 120_000);

  it('a node that learnt of the revocation keeps refusing the key from a head that never heard of it', async () => {
    // A second head (fresh data, no revocations) serves alpha v1 signed by the working key, as an attacker
    // replaying the old head's state would: the node refuses it from its own persisted, verified record.
    const data2 = join(t.dir, 'head2');
    const pub = await runCli([
      'publish',
      join(t.dir, 'alpha.img'),
      '--name',
      'alpha',
      '--key',
      k('working/publisher.key'),
      '--data',
      data2,
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    const head2 = await startHead(data2, ['--trust', k('trust.pem')]);
    try {
      const refused = await fetch('alpha', nodeCache(), head2.url);
      expect(errorCode(refused.stderr), refused.stderr).toBe('RSW_ERR_KEY_REVOKED');
      // A node that never saw the statement accepts it: the refusal above was the node's own knowledge.
      const fresh = await fetch('alpha', join(t.dir, 'cache-fresh'), head2.url);
      expect(fresh.code, fresh.stderr).toBe(0);
    } finally {
      await head2.stop();
    }
  }, 180_000);
});
