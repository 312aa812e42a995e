import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fetchOverHttp } from '../../cli/fetch-http.ts';
import { parseBootCmdline, splitCmdline } from '../../core/boot-cmdline.ts';
import { hashHex } from '../../core/hash.ts';
import { generatePublisherKeys } from '../../core/keys.ts';
import { createSignedManifest } from '../../core/signed-manifest.ts';
import { ChunkStore } from '../../core/store.ts';
import { buildHttpApi } from '../../tracker/http-api.ts';
import { createMetrics } from '../../tracker/metrics.ts';
import { Registry } from '../../tracker/registry.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const TOKEN = 'b'.repeat(64);
const pair = generatePublisherKeys();
const publisher = { priv: createPrivateKey(pair.privatePem), pub: createPublicKey(pair.publicPem) };

let t: ReturnType<typeof tempDir>;
let registry: Registry;
let app: FastifyInstance;
const chunks = [pseudoRandomBytes(70_000, 1), pseudoRandomBytes(50_000, 2), pseudoRandomBytes(30_000, 3)];
const imageBytes = Buffer.concat(chunks);

beforeEach(async () => {
  t = tempDir('rsw-boot-routes-');
  registry = await Registry.open(t.dir);
  const store = await ChunkStore.open({ dataDir: t.dir });
  mkdirSync(join(t.dir, 'boot'));
  app = buildHttpApi({
    registry,
    store,
    swarm: { images: () => [], summary: () => ({}), peers: () => [] },
    seederStats: () => ({}),
    bootstrap: () => ({ peerId: 'x', addrs: [] }),
    trusted: [publisher.pub],
    adminToken: TOKEN,
    metrics: createMetrics({
      peersByImage: () => new Map(),
      seeder: () => ({ bytesServed: 0, requests: 0, notFound: 0, busy: 0 }),
      imageVersions: async () => 0,
      announces: () => 0,
    }),
    maxManifestBytes: 64 * 1024,
    bootDir: join(t.dir, 'boot'),
  });
  let offset = 0;
  const refs = chunks.map((c) => {
    const r = { offset, length: c.length, hash: hashHex(c) };
    offset += c.length;
    return r;
  });
  for (const c of chunks) await store.put(hashHex(c), c);
  const signed = createSignedManifest(
    { name: 'compute', version: 3, format: 'squashfs', size: imageBytes.length, chunks: refs },
    publisher.priv,
  );
  const r = await app.inject({
    method: 'POST',
    url: '/api/images',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream' },
    payload: signed.envelope,
  });
  expect(r.statusCode).toBe(201);
});

afterEach(async () => {
  await app.close();
  await registry.close();
  t.cleanup();
});

describe('head: network boot routes', () => {
  it('GET /boot/ipxe writes a script whose kernel command line the node parses back to the request', async () => {
    const r = await app.inject({
      url: '/boot/ipxe?image=compute@3&mode=reimage&disk=/dev/sda&rack=r7',
      headers: { host: 'head.lan:7480' },
    });
    expect(r.statusCode).toBe(200);
    const lines = r.body.split('\n');
    expect(lines[0]).toBe('#!ipxe');
    expect(lines).toContain('initrd --name initramfs http://head.lan:7480/boot/initramfs');
    expect(lines).toContain('boot');
    const kernel = lines.find((l) => l.startsWith('kernel '));
    expect(splitCmdline(kernel as string)[1]).toBe('http://head.lan:7480/boot/kernel');
    expect(parseBootCmdline(kernel as string)).toEqual({
      head: 'http://head.lan:7480',
      image: { name: 'compute', version: 3 },
      mode: 'reimage',
      disk: '/dev/sda',
      rack: 'r7',
      ip: { kind: 'dhcp' },
      rescue: false,
      source: 'mesh',
    });
  });

  it('refuses a script a node could not boot from (reimage without a disk)', async () => {
    const r = await app.inject('/boot/ipxe?image=compute&mode=reimage');
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({
      code: 'RSW_ERR_BAD_REQUEST',
      message: expect.stringMatching(/rackswarm.disk/),
    });
  });

  it('serves the kernel and initramfs put in DATA/boot/, and says where to put a missing one', async () => {
    writeFileSync(join(t.dir, 'boot', 'vmlinuz'), 'kernel-bytes');
    const k = await app.inject('/boot/kernel');
    expect(k.statusCode).toBe(200);
    expect(k.body).toBe('kernel-bytes');
    const i = await app.inject('/boot/initramfs');
    expect(i.statusCode).toBe(404);
    expect(i.json()).toMatchObject({
      code: 'RSW_ERR_FILE_NOT_FOUND',
      message: expect.stringContaining('boot/initramfs'),
    });
  });

  it('streams an image in chunk order, and the head-only fetch verifies and writes it', async () => {
    const r = await app.inject('/boot/images/compute/latest');
    expect(r.statusCode).toBe(200);
    expect(r.rawPayload.equals(imageBytes)).toBe(true);
    expect((await app.inject('/boot/images/compute/9')).json()).toMatchObject({
      code: 'RSW_ERR_IMAGE_NOT_FOUND',
    });

    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const out = join(t.dir, 'out.img');
    const s = await fetchOverHttp(url, { name: 'compute', version: 'latest' }, [publisher.pub], out, {
      maxManifestBytes: 64 * 1024,
    });
    expect(s).toMatchObject({
      name: 'compute',
      version: 3,
      size: imageBytes.length,
      bytesFromSeeder: imageBytes.length,
    });
    expect(readFileSync(out).equals(imageBytes)).toBe(true);
    const other = createPublicKey(generatePublisherKeys().publicPem);
    await expect(
      fetchOverHttp(url, { name: 'compute', version: 3 }, [other], out, { maxManifestBytes: 64 * 1024 }),
    ).rejects.toMatchObject({ code: 'RSW_ERR_UNTRUSTED_KEY' });
  });

  it('keeps one SSH host key per node, which OpenSSH reads', async () => {
    const get = (mac: string) => app.inject(`/boot/nodes/${mac}/ssh-host-keys`);
    const a = await get('52:54:00:12:34:56');
    expect(a.statusCode).toBe(200);
    const key = a.json().ed25519 as { privateKey: string; publicKey: string };
    expect(key.publicKey).toMatch(/^ssh-ed25519 AAAA\S+ root@rackswarm-525400123456\n$/);
    expect((await get('52-54-00-12-34-56')).json().ed25519).toEqual(key); // same node, same key, every boot
    expect((await get('52:54:00:12:34:57')).json().ed25519.publicKey).not.toBe(key.publicKey);
    expect((await get('not-a-mac')).json()).toMatchObject({ code: 'RSW_ERR_BAD_REQUEST' });
    const file = join(t.dir, 'host_key');
    writeFileSync(file, key.privateKey);
    chmodSync(file, 0o600);
    const derived = execFileSync('ssh-keygen', ['-y', '-f', file]).toString().trim();
    expect(key.publicKey.startsWith(derived)).toBe(true);
  });
});
