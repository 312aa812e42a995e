import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchOverHttp } from '../../cli/fetch-http.ts';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { generateImageKey, plainLayout, writeImageKeyFile } from '../../core/chunk-cipher.ts';
import { hashHex } from '../../core/hash.ts';
import { loadTrust } from '../../core/keys.ts';
import { decodeManifest } from '../../core/manifest.ts';
import { envelopeCanonical } from '../../core/signed-manifest.ts';
import { fetchChunks } from '../../peer/chunk-client.ts';
import { makeTree, mksquashfs, mutateTree } from '../fixtures/tree.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { startFetchPeer } from '../helpers/fetch-peer.ts';
import { type RunningHead, startHead } from '../helpers/head.ts';

/**
 * Issue 9, Build item 4: an image published with --encrypt is sealed chunk by chunk before hashing; the head keeps
 * ciphertext, releases the image key only on a closed mesh, and real `rackswarm fetch` processes relay ciphertext to
 * each other (each verifies the sealed chunk's BLAKE3 before it is decrypted into the output).
 */
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
const MARKER = 'RACKSWARM-PLAINTEXT-MARKER-0123456789abcdef';
const sqfs = (v: number) => join(t.dir, `v${v}.sqfs`);
const closedConfig = () => join(t.dir, 'closed.json');
const errorCode = (stderr: string) => /error (RSW_ERR_[A-Z_]+)/.exec(stderr)?.[1];
const lastJson = <T>(stdout: string): T => JSON.parse(stdout.trim().split('\n').pop() as string) as T;

/**
 * A node on `h`'s closed mesh (the head's data in `dataDir`): its own peer key, enrolled on that head, the head's id
 * pinned; the global options go before `fetch`, the rest after.
 */
async function closedNode(
  h: RunningHead,
  dataDir: string,
  name: string,
): Promise<{ pre: string[]; args: string[] }> {
  const keyFile = join(t.dir, `${name}.peer.key`);
  const add = await runCli([
    'enroll',
    'add',
    '--key',
    keyFile,
    '--head',
    h.url,
    '--token-file',
    join(dataDir, 'admin-token'),
  ]);
  expect(add.code, add.stderr).toBe(0);
  return { pre: ['--config', closedConfig()], args: ['--peer-key', keyFile, '--head-peer-id', h.peerId] };
}

const fetch = (
  name: string,
  out: string,
  headUrl: string,
  ...extra: (string | { pre: string[]; args: string[] })[]
) =>
  runCli(
    [
      ...extra.flatMap((e) => (typeof e === 'string' ? [] : e.pre)),
      'fetch',
      name,
      '--head',
      headUrl,
      '--trust',
      join(t.dir, 'keys/publisher.pub'),
      '--out',
      out,
      '--cache',
      join(t.dir, `cache-${out.split('/').pop()}`),
      '--json',
      ...extra.flatMap((e) => (typeof e === 'string' ? [e] : e.args)),
    ],
    { timeoutMs: 180_000 },
  );

/** Every chunk file under DIR/chunks: the bytes a node or head would serve. */
function chunkFiles(dataDir: string): Buffer[] {
  const root = join(dataDir, 'chunks');
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.includes('.tmp'))
    .map((e) => readFileSync(join(e.parentPath, e.name)));
}

beforeAll(async () => {
  t = tempDir('rsw-encrypt-');
  expect((await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')])).code).toBe(0);
  const tree = join(t.dir, 'tree');
  makeTree(tree, { files: 160, seed: 91 });
  writeFileSync(join(tree, 'etc', 'shadow'), `${MARKER}\n`.repeat(2000));
  // Uncompressed data blocks, so the plaintext marker is visibly in the image (and must not be in the store).
  mksquashfs(tree, sqfs(1), ['-noD', '-noF']);
  mutateTree(tree, { fraction: 0.02, seed: 92 });
  mksquashfs(tree, sqfs(2), ['-noD', '-noF']);
  expect(readFileSync(sqfs(1)).includes(MARKER)).toBe(true);
  writeFileSync(closedConfig(), JSON.stringify({ mesh: { closed: true } }));
  head = await startHead(join(t.dir, 'head'), [], ['--config', closedConfig()]);
}, 120_000);

afterAll(async () => {
  await head?.stop();
  t?.cleanup();
});

const publish = (v: number, headUrl: string, ...dest: string[]) =>
  runCli([
    'publish',
    sqfs(v),
    '--name',
    'secret',
    '--key',
    join(t.dir, 'keys/publisher.key'),
    '--encrypt',
    join(t.dir, 'image.key'),
    '--json',
    ...(dest.length ? dest : ['--head', headUrl, '--token-file', join(t.dir, 'head/admin-token')]),
  ]);

describe('encrypted images (publish --encrypt)', () => {
  it('publish over HTTP to a running head: the store holds ciphertext only; the manifest names the key, not the key', async () => {
    const p = await publish(1, head.url);
    expect(p.code, p.stderr).toBe(0);
    const s = JSON.parse(p.stdout) as { keyId: string; size: number };
    expect(s.keyId).toMatch(/^[0-9a-f]{32}$/);
    const chunks = chunkFiles(join(t.dir, 'head'));
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks) expect(c.includes(MARKER)).toBe(false);
    const key = readFileSync(join(t.dir, 'image.key'), 'utf8').trim();
    const manifest = Buffer.from(
      await (await globalThis.fetch(`${head.url}/api/images/secret/1/manifest`)).arrayBuffer(),
    );
    expect(manifest.includes(Buffer.from(s.keyId, 'hex'))).toBe(true);
    expect(manifest.includes(Buffer.from(key, 'hex'))).toBe(false);
  }, 120_000);

  it('two real fetch processes on a closed mesh: bit-identical plaintext, ciphertext relayed between them', async () => {
    const outs = ['a.img', 'b.img'].map((f) => join(t.dir, f));
    const runs = await Promise.all(
      outs.map(async (o) =>
        fetch(
          'secret',
          o,
          head.url,
          await closedNode(head, join(t.dir, 'head'), basename(o)),
          '--linger',
          '3',
        ),
      ),
    );
    const summaries = runs.map((r) => {
      expect(r.code, r.stderr).toBe(0);
      return lastJson<FetchSummary>(r.stdout);
    });
    const plain = hashHex(readFileSync(sqfs(1)));
    for (const o of outs) expect(hashHex(readFileSync(o))).toBe(plain);
    // Each node verified every sealed chunk it received against the manifest's BLAKE3 before decrypting it: what
    // the other node served it was the ciphertext, re-sealed from its plaintext output.
    expect(summaries.reduce((a, s) => a + s.bytesFromPeers, 0)).toBeGreaterThan(0);
    // The node's chunk cache keeps ciphertext too.
    for (const c of chunkFiles(join(t.dir, 'cache-a.img'))) expect(c.includes(MARKER)).toBe(false);
    expect(head.log.some((l) => l.includes('image key released'))).toBe(true);
  }, 240_000);

  it('on the wire: a lingering node serves the sealed chunks (the head’s bytes), never its plaintext output', async () => {
    const peer = startFetchPeer({
      head: head.url,
      pub: join(t.dir, 'keys/publisher.pub'),
      image: 'secret',
      dir: t.dir,
      name: 'wire',
      linger: 120,
      config: closedConfig(),
      extra: (await closedNode(head, join(t.dir, 'head'), 'wire')).args,
    });
    // The reader is enrolled too: the lingering node's gater admits enrolled peer ids only.
    await closedNode(head, join(t.dir, 'head'), 'client');
    const client = await createP2PNode({ keyFile: join(t.dir, 'client.peer.key'), listen: [] });
    try {
      const { id } = await peer.summary;
      const swarm = (await (await globalThis.fetch(`${head.url}/api/swarm`)).json()) as {
        images: { imageId: string; peers: { addrs: string[]; host?: string }[] }[];
      };
      const addr = swarm.images.find((i) => i.imageId === id)?.peers.find((p) => p.host === 'wire')?.addrs[0];
      expect(addr).toBeDefined();
      const env = Buffer.from(
        await (await globalThis.fetch(`${head.url}/api/images/secret/1/manifest`)).arrayBuffer(),
      );
      const m = decodeManifest(envelopeCanonical(env), 16 * 1024 * 1024);
      const { offsets } = plainLayout(m.chunks);
      const output = readFileSync(join(t.dir, 'wire.img'));
      // The chunks whose plaintext (in the node's output) holds the marker: the ones a leak would show.
      const secretChunks = m.chunks
        .map((c, i) => ({ ...c, plain: output.subarray(offsets[i], offsets[i] + c.length - 48) }))
        .filter((c) => c.plain.includes(MARKER));
      expect(secretChunks.length).toBeGreaterThan(0);
      const got = await Array.fromAsync(
        fetchChunks(
          client,
          multiaddr(addr as string),
          secretChunks.map((c) => c.hash),
        ),
      );
      for (const [i, r] of got.entries()) {
        expect(r.status).toBe('ok'); // and fetchChunks checked its BLAKE3 against the manifest's (sealed) name
        expect(r.data?.includes(MARKER)).toBe(false);
        expect(
          r.data?.equals(
            readFileSync(
              join(t.dir, 'head/chunks', secretChunks[i].hash.slice(0, 2), secretChunks[i].hash.slice(2)),
            ),
          ),
        ).toBe(true);
      }
    } finally {
      await client.stop();
      await peer.stop();
    }
  }, 180_000);

  it('version 2 with the same image key: chunks dedup, and a node with v1 cached fetches only what changed', async () => {
    const p = await publish(2, head.url);
    expect(p.code, p.stderr).toBe(0);
    const s = JSON.parse(p.stdout) as { chunks: number; newChunks: number };
    expect(s.newChunks).toBeLessThan(s.chunks / 4);
    const r = await fetch(
      'secret',
      join(t.dir, 'a.img'),
      head.url,
      await closedNode(head, join(t.dir, 'head'), 'a.img'),
      '--linger',
      '0',
    );
    expect(r.code, r.stderr).toBe(0);
    const sum = lastJson<FetchSummary>(r.stdout);
    expect(sum.version).toBe(2);
    expect(sum.bytesReused).toBeGreaterThan(sum.size / 2);
    expect(hashHex(readFileSync(join(t.dir, 'a.img')))).toBe(hashHex(readFileSync(sqfs(2))));
  }, 180_000);

  it('a wrong image key is RSW_ERR_IMAGE_KEY_WRONG; the HTTP path refuses encrypted images (RSW_ERR_IMAGE_KEY_UNAVAILABLE)', async () => {
    const wrong = join(t.dir, 'wrong.key');
    await writeImageKeyFile(wrong, generateImageKey());
    const r = await fetch(
      'secret',
      join(t.dir, 'w.img'),
      head.url,
      await closedNode(head, join(t.dir, 'head'), 'w'),
      '--image-key',
      wrong,
      '--linger',
      '0',
    );
    expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_IMAGE_KEY_WRONG');
    const viaHttp = await fetchOverHttp(
      head.url,
      { name: 'secret', version: 'latest' },
      await loadTrust([join(t.dir, 'keys/publisher.pub')]),
      join(t.dir, 'http.img'),
      { maxManifestBytes: 16 * 1024 * 1024 },
    ).catch((e: { code?: string }) => e.code);
    expect(viaHttp).toBe('RSW_ERR_IMAGE_KEY_UNAVAILABLE');
  }, 120_000);

  it('a node does not get the key from a head on an open mesh (RSW_ERR_MESH_OPEN), nor one the head lacks (RSW_ERR_IMAGE_KEY_UNAVAILABLE)', async () => {
    const data = join(t.dir, 'open-head');
    const p = await publish(1, '', '--data', data);
    expect(p.code, p.stderr).toBe(0);
    let open = await startHead(data); // mesh.closed defaults to false
    try {
      const r = await fetch('secret', join(t.dir, 'o.img'), open.url, '--linger', '0');
      expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_MESH_OPEN');
    } finally {
      await open.stop();
    }
    rmSync(join(data, 'image-keys'), { recursive: true });
    open = await startHead(data, [], ['--config', closedConfig()]);
    try {
      const r = await fetch(
        'secret',
        join(t.dir, 'o.img'),
        open.url,
        await closedNode(open, data, 'o'),
        '--linger',
        '0',
      );
      expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_IMAGE_KEY_UNAVAILABLE');
    } finally {
      await open.stop();
    }
  }, 180_000);
});
