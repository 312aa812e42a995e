import { createPublicKey } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { fetchChunks } from '../../peer/chunk-client.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let key: string;
let pub: string;
let img: string;
const heads: RunningHead[] = [];

async function head(dataDir: string, extra: string[] = []): Promise<RunningHead> {
  const h = await startHead(dataDir, extra);
  heads.push(h);
  return h;
}

beforeAll(async () => {
  t = tempDir('rsw-head-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  key = join(t.dir, 'keys/publisher.key');
  pub = join(t.dir, 'keys/publisher.pub');
  img = join(t.dir, 'img.bin');
  writeFileSync(img, pseudoRandomBytes(6 * MiB, 1));
});
afterAll(async () => {
  for (const h of heads) await h.stop('SIGKILL');
  t.cleanup();
});

function publishTo(h: RunningHead, data: string, ...extra: string[]) {
  return runCli([
    'publish',
    img,
    '--name',
    'compute',
    '--key',
    key,
    '--head',
    h.url,
    '--token-file',
    join(data, 'admin-token'),
    '--json',
    ...extra,
  ]);
}

describe('rackswarm head', () => {
  it('takes publishes over HTTP, serves the chunks over libp2p, and keeps everything across restarts', async () => {
    const data = join(t.dir, 'head1');
    let h = await head(data);
    expect(statSync(join(data, 'admin-token')).mode & 0o777).toBe(0o600);
    expect(h.log.join('\n')).toContain('admin token written to');

    const first = await publishTo(h, data);
    expect(first.stderr).toBe('');
    const out = JSON.parse(first.stdout);
    expect(out).toMatchObject({ name: 'compute', version: 1, size: 6 * MiB, newBytes: 6 * MiB });
    const again = JSON.parse((await publishTo(h, data)).stdout);
    expect(again).toMatchObject({ version: 2, newChunks: 0, newBytes: 0 });

    const listed = JSON.parse((await runCli(['images', '--head', h.url, '--json'])).stdout);
    expect(listed.map((r: { version: number }) => r.version)).toEqual([1, 2]);

    // The signed manifest over HTTP verifies against the publisher key.
    const res = await fetch(`${h.url}/api/images/compute/1/manifest`);
    const opened = openSignedManifest(
      Buffer.from(await res.arrayBuffer()),
      [createPublicKey(readFileSync(pub))],
      {
        maxBytes: MiB,
      },
    );
    expect(opened.id).toBe(out.id);

    // The seeder serves those chunks over libp2p (TCP + Noise + Yamux), bit-identical.
    const client = await createP2PNode({ keyFile: join(t.dir, 'client.key'), listen: [] });
    try {
      const got: Buffer[] = [];
      const hashes = opened.manifest.chunks.map((c) => c.hash);
      for await (const c of fetchChunks(client, multiaddr(h.p2p[0]), hashes)) {
        expect(c.status).toBe('ok');
        got.push(c.data as Buffer);
      }
      expect(hashHex(Buffer.concat(got))).toBe(hashHex(readFileSync(img)));
    } finally {
      await client.stop();
    }
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(metrics).toMatch(/^rsw_seeder_bytes_served_total 6291456$/m);

    // A clean stop, then a restart: same images, same identity, same admin token.
    const token = readFileSync(join(data, 'admin-token'), 'utf8');
    expect(await h.stop('SIGTERM')).toBe(0);
    h = await head(data);
    expect(h.log.join('\n')).not.toContain('admin token written to');
    expect(readFileSync(join(data, 'admin-token'), 'utf8')).toBe(token);
    const after = await (await fetch(`${h.url}/api/images/compute`)).json();
    expect(after).toMatchObject({ name: 'compute', latest: 2 });

    // SIGKILL loses nothing that was acknowledged.
    expect(JSON.parse((await publishTo(h, data)).stdout).version).toBe(3);
    await h.stop('SIGKILL');
    h = await head(data);
    expect(((await (await fetch(`${h.url}/api/images/compute`)).json()) as { latest: number }).latest).toBe(
      3,
    );
    await h.stop();
  });

  it('keeps its libp2p identity across restarts', async () => {
    const data = join(t.dir, 'head-id');
    const a = await head(data);
    await a.stop();
    const b = await head(data);
    expect(b.peerId).toBe(a.peerId);
    expect(statSync(join(data, 'peer.key')).mode & 0o777).toBe(0o600);
    await b.stop();
  });

  it('refuses publishes without the right token, or signed by a key it does not trust', async () => {
    const data = join(t.dir, 'head-trust');
    const other = join(t.dir, 'other');
    await runCli(['keys', 'generate', '--out', other]);
    const h = await head(data, ['--trust', join(other, 'publisher.pub')]);
    const noToken = await runCli(['publish', img, '--name', 'x', '--key', key, '--head', h.url]);
    expect(noToken.stderr).toMatch(/^error RSW_ERR_UNAUTHORIZED: /);
    writeFileSync(join(t.dir, 'wrong-token'), 'f'.repeat(64));
    const wrong = await publishToHead(h.url, join(t.dir, 'wrong-token'), img, 'x', key);
    expect(wrong.stderr).toMatch(/^error RSW_ERR_UNAUTHORIZED: /);
    const untrusted = await publishTo(h, data);
    expect(untrusted.stderr).toMatch(/^error RSW_ERR_UNTRUSTED_KEY: /);
    expect(JSON.parse((await runCli(['images', '--head', h.url, '--json'])).stdout)).toEqual([]);
    const trusted = await publishToHead(
      h.url,
      join(data, 'admin-token'),
      img,
      'x',
      join(other, 'publisher.key'),
    );
    expect(trusted.code).toBe(0);
    await h.stop();
  });

  it('owns its data directory while it runs', async () => {
    const data = join(t.dir, 'head-lock');
    const h = await head(data);
    const r = await runCli(['publish', img, '--name', 'x', '--key', key, '--data', data]);
    expect(r.stderr).toMatch(/^error RSW_ERR_DATA_LOCKED: .*--head/);
    const port = new URL(h.url).port;
    const second = await runCli(['head', '--data', join(t.dir, 'head-lock2'), '--http', `127.0.0.1:${port}`]);
    expect(second.stderr).toMatch(/^error RSW_ERR_USAGE: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
    await h.stop();
  });

  it('says clearly when the head is not there', async () => {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    server.close(); // nothing listens there any more
    const r = await runCli(['images', '--head', `http://127.0.0.1:${port}`, '--json']);
    expect(r.stderr).toBe(
      `error RSW_ERR_HEAD_UNREACHABLE: cannot reach the head at http://127.0.0.1:${port}: ECONNREFUSED\n`,
    );
    const bad = await runCli(['head', '--data', join(t.dir, 'x'), '--http', 'nonsense']);
    expect(bad.stderr).toMatch(/^error RSW_ERR_USAGE: --http "nonsense" is not HOST:PORT/);
  });
});
