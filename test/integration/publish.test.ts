import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPublicKey } from '../../core/keys.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { ChunkStore } from '../../core/store.ts';
import { Registry } from '../../tracker/registry.ts';
import { makeTree, mksquashfs, mutateTree } from '../fixtures/tree.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let key: string;
let pub: string;

beforeAll(async () => {
  t = tempDir('rsw-publish-');
  const r = await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  expect(r.code, r.stderr).toBe(0);
  key = join(t.dir, 'keys', 'publisher.key');
  pub = join(t.dir, 'keys', 'publisher.pub');
  expect(statSync(key).mode & 0o777).toBe(0o600);
});
afterAll(() => t.cleanup());

async function publishJson(file: string, data: string, ...extra: string[]) {
  const r = await runCli(['publish', file, '--key', key, '--data', data, '--json', ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as {
    id: string;
    name: string;
    version: number;
    format: string;
    size: number;
    chunks: number;
    newChunks: number;
    newBytes: number;
    seconds: number;
  };
}

/** Rebuilds an image from the store through its verified manifest: proves what was stored is bit-identical. */
async function reassemble(data: string, name: string, version: number): Promise<Buffer> {
  const registry = await Registry.open(data);
  try {
    const record = await registry.get(name, version);
    expect(record).toBeDefined();
    const envelope = await registry.envelope(record?.id ?? '');
    const opened = openSignedManifest(envelope ?? Buffer.alloc(0), [await loadPublicKey(pub)], {
      maxBytes: 16 * MiB,
    });
    expect(opened.id).toBe(record?.id);
    const store = await ChunkStore.open({ dataDir: data });
    return Buffer.concat(await Promise.all(opened.manifest.chunks.map((c) => store.get(c.hash))));
  } finally {
    await registry.close();
  }
}

/** What a user would call the state of DATA: registered images, stored chunks, temp files. */
async function snapshot(data: string) {
  if (!existsSync(data)) return 'absent';
  const list = (dir: string) =>
    existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).sort() : [];
  const images = await runCli(['images', '--data', data, '--json']);
  return { images: images.stdout, chunks: list(join(data, 'chunks')), tmp: list(join(data, 'tmp')) };
}

describe('rackswarm publish into a data directory', () => {
  it('publishes a real SquashFS image made by mksquashfs, bit-identical in the store', async () => {
    const src = join(t.dir, 'tree');
    makeTree(src, { files: 300, seed: 1 });
    const img = join(t.dir, 'v1.squashfs');
    mksquashfs(src, img);
    const data = join(t.dir, 'data-sq');
    const out = await publishJson(img, data, '--name', 'compute');
    expect(out).toMatchObject({ name: 'compute', version: 1, format: 'squashfs', size: statSync(img).size });
    expect(out.id).toMatch(/^[0-9a-f]{64}$/);
    expect(out.chunks).toBeGreaterThan(1);
    expect(out.newChunks).toBeGreaterThan(0);
    expect(out.newChunks).toBeLessThanOrEqual(out.chunks);
    expect((await reassemble(data, 'compute', 1)).equals(readFileSync(img))).toBe(true);

    const listed = await runCli(['images', '--data', data, '--json']);
    expect(JSON.parse(listed.stdout)).toMatchObject([
      { name: 'compute', version: 1, id: out.id, format: 'squashfs' },
    ]);
    const table = await runCli(['images', '--data', data]);
    expect(table.stdout).toMatch(/^NAME +VERSION +ID/);
    expect(table.stdout).toContain(out.id.slice(0, 16));

    // The same bytes again: a new version, every chunk reused.
    const again = await publishJson(img, data, '--name', 'compute');
    expect(again).toMatchObject({ version: 2, chunks: out.chunks, newChunks: 0, newBytes: 0 });

    // 1 % of the files changed: only the changed chunks are stored.
    mutateTree(src, { fraction: 0.01, seed: 2 });
    const img3 = join(t.dir, 'v3.squashfs');
    mksquashfs(src, img3);
    const v3 = await publishJson(img3, data, '--name', 'compute');
    expect(v3.version).toBe(3);
    expect(v3.newChunks).toBeGreaterThan(0);
    expect(v3.newChunks).toBeLessThan(v3.chunks); // the dedup share at scale is measured by `npm run bench`
    expect(v3.newBytes).toBeLessThan(0.5 * v3.size);
    expect((await reassemble(data, 'compute', 3)).equals(readFileSync(img3))).toBe(true);
  });

  it('publishes a raw disk image holding an ext4 filesystem', async () => {
    const src = join(t.dir, 'rawtree');
    makeTree(src, { files: 100, seed: 3 });
    const img = join(t.dir, 'disk.img');
    execFileSync('truncate', ['-s', '48M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', src, img]);
    const data = join(t.dir, 'data-raw');
    const out = await publishJson(img, data, '--name', 'disk', '--version', '10');
    expect(out).toMatchObject({ format: 'raw', version: 10, size: 48 * MiB });
    expect((await reassemble(data, 'disk', 10)).equals(readFileSync(img))).toBe(true);
  });

  it('is idempotent for the same bytes at the same version, and refuses different bytes there', async () => {
    const data = join(t.dir, 'data-ver');
    const a = join(t.dir, 'a.bin');
    const b = join(t.dir, 'b.bin');
    writeFileSync(a, pseudoRandomBytes(3 * MiB, 11));
    writeFileSync(b, pseudoRandomBytes(3 * MiB, 12));
    await publishJson(a, data, '--name', 'img', '--version', '4');
    expect(await publishJson(a, data, '--name', 'img', '--version', '4')).toMatchObject({
      version: 4,
      newChunks: 0,
    });
    const before = await snapshot(data);
    const conflict = await runCli([
      'publish',
      b,
      '--name',
      'img',
      '--version',
      '4',
      '--key',
      key,
      '--data',
      data,
    ]);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/^error RSW_ERR_VERSION_CONFLICT: .*version 4 is already published/);
    expect(await snapshot(data)).toEqual(before);
    const older = await runCli([
      'publish',
      b,
      '--name',
      'img',
      '--version',
      '3',
      '--key',
      key,
      '--data',
      data,
    ]);
    expect(older.stderr).toMatch(/^error RSW_ERR_VERSION_NOT_NEWER: /);
    expect(await snapshot(data)).toEqual(before);
  });

  it('refuses a new version of an image signed with a different key', async () => {
    const data = join(t.dir, 'data-key');
    const img = join(t.dir, 'k.bin');
    writeFileSync(img, pseudoRandomBytes(MiB, 21));
    await publishJson(img, data, '--name', 'img');
    const other = join(t.dir, 'other-keys');
    await runCli(['keys', 'generate', '--out', other]);
    const before = await snapshot(data);
    const r = await runCli([
      'publish',
      img,
      '--name',
      'img',
      '--key',
      join(other, 'publisher.key'),
      '--data',
      data,
    ]);
    expect(r.stderr).toMatch(/^error RSW_ERR_KEY_MISMATCH: img is published under key [0-9a-f]{16}/);
    expect(await snapshot(data)).toEqual(before);
  });
});

describe('rackswarm publish refuses bad input with one line and leaves DATA as it was', () => {
  let data: string;
  let img: string;
  beforeAll(async () => {
    data = join(t.dir, 'data-bad');
    img = join(t.dir, 'good.bin');
    writeFileSync(img, pseudoRandomBytes(2 * MiB, 31));
    await publishJson(img, data, '--name', 'base');
    writeFileSync(join(t.dir, 'empty.bin'), '');
    writeFileSync(
      join(t.dir, 'corrupt.key'),
      '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n',
    );
    execFileSync('openssl', [
      'genpkey',
      '-algorithm',
      'RSA',
      '-pkeyopt',
      'rsa_keygen_bits:1024',
      '-out',
      join(t.dir, 'rsa.key'),
    ]);
  });

  const cases: [string, () => string[], RegExp][] = [
    [
      'a missing file',
      () => [join(t.dir, 'nope.bin'), '--name', 'x'],
      /^error RSW_ERR_FILE_NOT_FOUND: .*nope\.bin does not exist\n$/,
    ],
    ['a directory', () => [t.dir, '--name', 'x'], /^error RSW_ERR_NOT_A_FILE: .* is a directory/],
    ['an empty file', () => [join(t.dir, 'empty.bin'), '--name', 'x'], /^error RSW_ERR_EMPTY_FILE: /],
    ['a name with /', () => [img, '--name', 'a/b'], /^error RSW_ERR_INVALID_NAME: image name "a\/b"/],
    ['a name with ..', () => [img, '--name', '..'], /^error RSW_ERR_INVALID_NAME: /],
    ['a name with a control character', () => [img, '--name', 'a\tb'], /^error RSW_ERR_INVALID_NAME: /],
    [
      'a non-integer version',
      () => [img, '--name', 'base', '--version', '1.5'],
      /^error RSW_ERR_INVALID_VERSION: /,
    ],
    ['a zero version', () => [img, '--name', 'base', '--version', '0'], /^error RSW_ERR_INVALID_VERSION: /],
    [
      'an unknown format',
      () => [img, '--name', 'base', '--format', 'iso'],
      /^error RSW_ERR_USAGE: --format must be/,
    ],
  ];
  it.each(cases)('%s', async (_what, args, expected) => {
    const before = await snapshot(data);
    const r = await runCli(['publish', ...args(), '--key', key, '--data', data]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(expected);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(await snapshot(data)).toEqual(before);
  });

  const keyCases: [string, () => string, RegExp][] = [
    [
      'the public key instead of the private one',
      () => pub,
      /^error RSW_ERR_KEY_INVALID: .* is a public key/,
    ],
    [
      'a corrupt key file',
      () => join(t.dir, 'corrupt.key'),
      /^error RSW_ERR_KEY_INVALID: .* not a PEM private key/,
    ],
    ['an RSA key', () => join(t.dir, 'rsa.key'), /^error RSW_ERR_KEY_INVALID: .* is a rsa key/],
    ['a missing key file', () => join(t.dir, 'none.key'), /^error RSW_ERR_FILE_NOT_FOUND: key file/],
  ];
  it.each(keyCases)('%s', async (_what, keyFile, expected) => {
    const before = await snapshot(data);
    const r = await runCli(['publish', img, '--name', 'base', '--key', keyFile(), '--data', data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(expected);
    expect(await snapshot(data)).toEqual(before);
  });

  it('a data directory that is a file', async () => {
    const r = await runCli(['publish', img, '--name', 'x', '--key', key, '--data', img]);
    expect(r.stderr).toMatch(/^error RSW_ERR_DATA_UNWRITABLE: .*not a directory/);
  });

  it('a new data directory is not left behind when the publish fails', async () => {
    const fresh = join(t.dir, 'fresh-data');
    const r = await runCli([
      'publish',
      join(t.dir, 'empty.bin'),
      '--name',
      'x',
      '--key',
      key,
      '--data',
      fresh,
    ]);
    expect(r.stderr).toMatch(/^error RSW_ERR_EMPTY_FILE/);
    expect(existsSync(fresh)).toBe(false);
  });
});

describe('rackswarm publish on a full or read-only disk (real tmpfs mounts; needs root)', () => {
  const mounts: string[] = [];
  function mountTmpfs(dir: string, options: string): void {
    execFileSync('mkdir', ['-p', dir]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]); // fails loudly when not root
    mounts.push(dir);
  }
  afterAll(() => {
    for (const m of mounts.reverse()) execFileSync('umount', [m]);
  });

  it('a full disk: RSW_ERR_DISK_FULL, the chunks it wrote are removed, existing images intact', async () => {
    const data = join(t.dir, 'full');
    mountTmpfs(data, 'size=6m');
    const small = join(t.dir, 'small.bin');
    writeFileSync(small, pseudoRandomBytes(MiB, 41));
    await publishJson(small, data, '--name', 'small');
    const before = await snapshot(data);
    const big = join(t.dir, 'big.bin');
    writeFileSync(big, pseudoRandomBytes(16 * MiB, 42));
    const r = await runCli(['publish', big, '--name', 'big', '--key', key, '--data', data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error RSW_ERR_DISK_FULL: .*ENOSPC\n$/);
    expect(await snapshot(data)).toEqual(before);
    expect((await reassemble(data, 'small', 1)).equals(readFileSync(small))).toBe(true);
  });

  it('a read-only data directory: RSW_ERR_DATA_UNWRITABLE', async () => {
    const data = join(t.dir, 'ro');
    mountTmpfs(data, 'ro,size=1m');
    const small = join(t.dir, 'small.bin');
    const r = await runCli(['publish', small, '--name', 'small', '--key', key, '--data', data]);
    expect(r.stderr).toMatch(/^error RSW_ERR_DATA_UNWRITABLE: .*EROFS\n$/);
    expect(readdirSync(data)).toEqual([]);
  });
});

describe('rackswarm publish interrupted', () => {
  let big: string;
  beforeAll(() => {
    big = join(t.dir, 'interrupt.bin');
    writeFileSync(big, pseudoRandomBytes(48 * MiB, 51));
    const more = pseudoRandomBytes(48 * MiB, 52);
    writeFileSync(big, more, { flag: 'a' });
  });

  function startPublish(data: string): ChildProcess {
    // One chunk write in flight keeps the publish slow enough to be caught in the middle.
    const config = join(t.dir, 'slow.json');
    writeFileSync(config, JSON.stringify({ store: { writeConcurrency: 1 } }));
    return spawn(
      process.execPath,
      [
        join(projectRoot, 'bin/rackswarm.js'),
        '--config',
        config,
        'publish',
        big,
        '--name',
        'big',
        '--key',
        key,
        '--data',
        data,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
  }

  /** Waits until the publish has staged a few chunks (temp files, not yet committed). */
  async function untilChunksAppear(data: string): Promise<void> {
    const dir = join(data, 'tmp');
    for (let i = 0; i < 2000; i++) {
      if (existsSync(dir) && readdirSync(dir).length > 2) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error('publish never started writing chunks');
  }

  it('by SIGINT: rolls back, says RSW_ERR_INTERRUPTED, leaves DATA as it was', async () => {
    const data = join(t.dir, 'int');
    const small = join(t.dir, 'int-small.bin');
    writeFileSync(small, pseudoRandomBytes(MiB, 53));
    await publishJson(small, data, '--name', 'small');
    const before = await snapshot(data);
    const child = startPublish(data);
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    await untilChunksAppear(data);
    child.kill('SIGINT');
    const code = await new Promise((r) => child.on('close', r));
    expect(stderr).toMatch(/^error RSW_ERR_INTERRUPTED: /);
    expect(code).toBe(130);
    expect(await snapshot(data)).toEqual(before);
  });

  it('by SIGKILL: nothing registered, temp files cleared at the next start, publishing again works', async () => {
    const data = join(t.dir, 'kill');
    const child = startPublish(data);
    await untilChunksAppear(data);
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    expect((await snapshot(data)) as { images: string }).toMatchObject({ images: '[]\n' });
    const out = await publishJson(big, data, '--name', 'big');
    expect(out.version).toBe(1);
    expect(readdirSync(join(data, 'tmp'))).toEqual([]);
    expect((await reassemble(data, 'big', 1)).equals(readFileSync(big))).toBe(true);
  });
});
