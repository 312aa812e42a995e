import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeManifest } from '../../core/manifest.ts';
import { envelopeCanonical } from '../../core/signed-manifest.ts';
import { ChunkStore } from '../../core/store.ts';
import { Registry } from '../../tracker/registry.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { startFetchPeer } from '../helpers/fetch-peer.ts';
import { publishToHead, startHead } from '../helpers/head.ts';

const MiB = 1024 * 1024;
const t = tempDir('rsw-gc-');
afterAll(() => t.cleanup());
const key = join(t.dir, 'keys/publisher.key');
const pub = join(t.dir, 'keys/publisher.pub');

/** Every chunk of every registered version is in the store and hashes right; returns chunks stored vs referenced. */
async function checkConsistent(
  dataDir: string,
): Promise<{ stored: number; referenced: number; versions: number[] }> {
  const registry = await Registry.open(dataDir);
  try {
    const store = await ChunkStore.open({ dataDir, verifyOnRead: true });
    const live = new Set<string>();
    const records = await registry.list();
    for (const r of records) {
      const m = decodeManifest(envelopeCanonical((await registry.envelope(r.id)) as Buffer), 16 * MiB);
      for (const c of m.chunks) live.add(c.hash);
    }
    for (const h of live) await store.get(h); // throws on a missing or corrupt chunk
    let stored = 0;
    for await (const _ of store.list()) stored++;
    return { stored, referenced: live.size, versions: records.map((r) => r.version) };
  } finally {
    await registry.close();
  }
}

describe('rackswarm gc', () => {
  it('SIGKILL in the middle of gc leaves a consistent store; the next gc finishes the job', async () => {
    await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
    const data = join(t.dir, 'stopped-head');
    // Small chunks, so there are thousands of files to delete and the kill lands mid-way.
    const config = join(t.dir, 'small-chunks.json');
    writeFileSync(config, JSON.stringify({ chunker: { minSize: 2048, avgSize: 4096, maxSize: 16384 } }));
    for (let v = 1; v <= 3; v++) {
      writeFileSync(join(t.dir, `img${v}`), randomBytes(8 * MiB));
      const p = await runCli([
        '--config',
        config,
        'publish',
        join(t.dir, `img${v}`),
        '--name',
        'img',
        '--key',
        key,
        '--data',
        data,
      ]);
      expect(p.code, p.stderr).toBe(0);
    }
    const before = await checkConsistent(data);
    expect(before.versions).toEqual([1, 2, 3]);

    const gc = spawn(
      process.execPath,
      [join(projectRoot, 'bin/rackswarm.js'), 'gc', '--data', data, '--keep', '1', '--grace', '0', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    gc.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      gc.on('exit', (_code, signal) => resolve(signal)),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no gc progress in 60 s: ${stderr}`)), 60_000);
      gc.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('"progress"')) {
          clearTimeout(timer);
          gc.kill('SIGKILL');
          resolve();
        }
      });
    });
    expect(await exited).toBe('SIGKILL');

    const mid = await checkConsistent(data);
    expect(mid.versions).toEqual([3]);
    expect(mid.stored).toBeGreaterThan(mid.referenced); // killed before the end: orphans are left, nothing else lost

    const again = await runCli(['gc', '--data', data, '--keep', '1', '--grace', '0', '--json']);
    expect(again.code, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout.trim().split('\n').pop() as string);
    expect(report.chunksRemoved).toBe(mid.stored - mid.referenced);
    expect(report.bytesFreed).toBeGreaterThan(0);
    const after = await checkConsistent(data);
    expect(after.stored).toBe(after.referenced);
  }, 240_000);

  it('on a running head, gc keeps a channel target and a version an active swarm uses', async () => {
    const data = join(t.dir, 'running-head');
    const head = await startHead(data);
    const token = join(data, 'admin-token');
    const linger: ReturnType<typeof spawn>[] = [];
    try {
      for (let v = 1; v <= 4; v++) {
        writeFileSync(join(t.dir, `r${v}`), randomBytes(3 * MiB));
        const p = await publishToHead(head.url, token, join(t.dir, `r${v}`), 'img', key);
        expect(p.code, p.stderr).toBe(0);
      }
      const set = await runCli([
        'channel',
        'set',
        'img:stable',
        '1',
        '--key',
        key,
        '--head',
        head.url,
        '--token-file',
        token,
      ]);
      expect(set.code, set.stderr).toBe(0);
      // A node fetches version 2 and keeps seeding it: an active swarm. (Its summary line is read line by line: read
      // as chunks, a progress line and the summary arriving in one chunk hid the summary, and the test waited out its
      // 60 s — seen once in CI.)
      const node = startFetchPeer({
        head: head.url,
        pub,
        image: 'img@2',
        dir: t.dir,
        name: 'n',
        linger: 120,
      });
      linger.push(node.child);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        node.summary,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`the seeding node did not finish its fetch: ${node.stderr()}`)),
            60_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));

      const gc = await runCli([
        'gc',
        '--head',
        head.url,
        '--token-file',
        token,
        '--keep',
        '1',
        '--grace',
        '0',
        '--json',
      ]);
      expect(gc.code, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout.trim());
      expect(report.versionsRemoved).toEqual([{ name: 'img', version: 3 }]);
      expect(report.bytesFreed).toBe(3 * MiB);

      const images = await runCli(['images', '--head', head.url, '--json']);
      expect(JSON.parse(images.stdout).map((r: { version: number }) => r.version)).toEqual([1, 2, 4]);
      const f = await runCli([
        'fetch',
        'img:stable',
        '--head',
        head.url,
        '--trust',
        pub,
        '--out',
        join(t.dir, 'stable.img'),
        '--cache',
        join(t.dir, 's-cache'),
        '--linger',
        '0',
        '--json',
      ]);
      expect(f.code, f.stderr).toBe(0);
      expect(readFileSync(join(t.dir, 'stable.img')).equals(readFileSync(join(t.dir, 'r1')))).toBe(true);
    } finally {
      for (const p of linger) p.kill('SIGKILL');
      await head.stop('SIGKILL');
    }
  }, 240_000);
});
