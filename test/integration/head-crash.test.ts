// RELIABILITY item 7: SIGKILL of the head process during an HTTP publish (`rackswarm publish --head URL`). After a
// restart on the same data directory the version is wholly there or absent, every chunk file under DATA/chunks holds
// exactly the bytes its name says (no torn chunk), the temp files are gone, and publishing again works and moves only
// what the head still lacks.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import { loadPublicKey } from '../../core/keys.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
const heads: RunningHead[] = [];

beforeAll(async () => {
  t = tempDir('rsw-head-crash-');
  const r = await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  expect(r.code, r.stderr).toBe(0);
});
afterAll(async () => {
  for (const h of heads) await h.stop('SIGKILL');
  t?.cleanup();
});

/** Every file under DATA/chunks/, as [hash named by its path, path]. */
function chunkFiles(data: string): Array<[string, string]> {
  const dir = join(data, 'chunks');
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((p) => statSync(join(dir, p)).isFile())
    .map((p) => [p.replace('/', ''), join(dir, p)]);
}

function startPublish(head: RunningHead, data: string, file: string): ChildProcess {
  return spawn(
    process.execPath,
    [
      join(projectRoot, 'bin/rackswarm.js'),
      'publish',
      file,
      '--name',
      'big',
      '--key',
      join(t.dir, 'keys/publisher.key'),
      '--head',
      head.url,
      '--token-file',
      join(data, 'admin-token'),
      '--json',
    ],
    { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

async function start(data: string): Promise<RunningHead> {
  const h = await startHead(data, ['--trust', join(t.dir, 'keys/publisher.pub')]);
  heads.push(h);
  return h;
}

describe('SIGKILL of the head during an HTTP publish', () => {
  it('at the first chunk, halfway, at the last and at the registration: after a restart the version is whole or absent, no torn chunk, publishing again works', async () => {
    const data = join(t.dir, 'data');
    const file = join(t.dir, 'big.bin');
    const image = pseudoRandomBytes(48 * MiB, 7);
    writeFileSync(file, image);
    const pub = await loadPublicKey(join(t.dir, 'keys/publisher.pub'));
    // How many chunks it has: a publish into a throwaway data directory says.
    const dry = await runCli([
      'publish',
      file,
      '--name',
      'big',
      '--key',
      join(t.dir, 'keys/publisher.key'),
      '--data',
      join(t.dir, 'dry'),
      '--json',
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    const total = (JSON.parse(dry.stdout) as { chunks: number }).chunks;
    const report: string[] = [];

    let head = await start(data);
    // Kill once the store holds this many chunk files: the first, half, all of them (registration is next).
    for (const [round, killAt] of [1, Math.floor(total / 2), total].entries()) {
      const publish = startPublish(head, data, file);
      let stderr = '';
      publish.stderr?.on('data', (d) => {
        stderr += d;
      });
      const exited = new Promise<number | null>((r) => publish.on('close', (code) => r(code)));
      const deadline = Date.now() + 30_000;
      while (chunkFiles(data).length < killAt && publish.exitCode === null) {
        if (Date.now() > deadline) throw new Error(`round ${round}: no chunks arrived in 30 s: ${stderr}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      await head.stop('SIGKILL');
      const tmpAtKill = existsSync(join(data, 'tmp')) ? readdirSync(join(data, 'tmp')).length : 0;
      const code = await exited;

      head = await start(data);
      const listed = (await (await fetch(`${head.url}/api/images`)).json()) as {
        images: Array<{ name: string }>;
      };
      const registered = listed.images.some((i) => i.name === 'big');
      report.push(
        `round ${round}: killed with ${chunkFiles(data).length} chunk files, ${tmpAtKill} temp files; publish exit ${code}; ${registered ? 'registered' : 'absent'}`,
      );
      if (round === 0) {
        // Killed at the first chunk: the publish cannot have registered anything, and says why it failed.
        expect(registered, report.join('\n')).toBe(false);
        expect(code, stderr).not.toBe(0);
        expect(stderr).toMatch(/^error RSW_ERR_[A-Z_]+: /m);
      }
      if (round === 1) expect(registered, report.join('\n')).toBe(false);
      if (registered) {
        // Whole: every chunk of the registered manifest is in the store with the right bytes.
        const res = await fetch(`${head.url}/api/images/big/1/manifest`);
        const opened = openSignedManifest(Buffer.from(await res.arrayBuffer()), [pub], {
          maxBytes: 16 * MiB,
        });
        const rebuilt = Buffer.concat(
          opened.manifest.chunks.map((c) =>
            readFileSync(join(data, 'chunks', c.hash.slice(0, 2), c.hash.slice(2))),
          ),
        );
        expect(rebuilt.equals(image), report.join('\n')).toBe(true);
      }
      // No torn chunk: every file in the store hashes to its name; the crash's temp files were cleared at start.
      for (const [hash, path] of chunkFiles(data)) expect(hashHex(readFileSync(path)), path).toBe(hash);
      expect(readdirSync(join(data, 'tmp')), report.join('\n')).toEqual([]);
    }

    // Publishing again works, uploads only what the crashes left missing, and the version is whole.
    const again = await publishToHead(
      head.url,
      join(data, 'admin-token'),
      file,
      'big',
      join(t.dir, 'keys/publisher.key'),
    );
    expect(again.code, again.stderr).toBe(0);
    const res = await fetch(`${head.url}/api/images/big/1/manifest`);
    expect(res.status).toBe(200);
    const opened = openSignedManifest(Buffer.from(await res.arrayBuffer()), [pub], { maxBytes: 16 * MiB });
    const rebuilt = Buffer.concat(
      opened.manifest.chunks.map((c) =>
        readFileSync(join(data, 'chunks', c.hash.slice(0, 2), c.hash.slice(2))),
      ),
    );
    expect(rebuilt.equals(image)).toBe(true);

    // The other side of "whole or absent": killed the moment it logs a registration (version 2, the same chunks),
    // the version is there after the restart, and whole.
    const v2 = startPublish(head, data, file);
    const v2exit = new Promise<number | null>((r) => v2.on('close', (code) => r(code)));
    const deadline = Date.now() + 30_000;
    while (!head.log.some((l) => l.includes('image registered') && l.includes('"version":2'))) {
      if (Date.now() > deadline || v2.exitCode !== null)
        throw new Error(`no v2 registration: ${head.log.join('\n')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await head.stop('SIGKILL');
    report.push(`round 3: killed at the registration log line; publish exit ${await v2exit}`);
    head = await start(data);
    const res2 = await fetch(`${head.url}/api/images/big/2/manifest`);
    expect(res2.status, report.join('\n')).toBe(200);
    const opened2 = openSignedManifest(Buffer.from(await res2.arrayBuffer()), [pub], { maxBytes: 16 * MiB });
    expect(
      Buffer.concat(
        opened2.manifest.chunks.map((c) =>
          readFileSync(join(data, 'chunks', c.hash.slice(0, 2), c.hash.slice(2))),
        ),
      ).equals(image),
    ).toBe(true);
    console.log(`head crash during publish:\n${report.join('\n')}`);
    expect(await head.stop()).toBe(0);
  }, 180_000);
});
