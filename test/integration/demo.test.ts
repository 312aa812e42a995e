import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';

const t = tempDir('rsw-demo-');
afterAll(() => t.cleanup());

/** Command lines of the running processes that mention `text` (the demo's peers carry its data dir). */
function processesWith(text: string): string[] {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(text) && !l.startsWith('ps '));
}

describe('rackswarm demo (what npm start runs)', () => {
  it('publishes a real SquashFS sample to a head and a local swarm fetches it', async () => {
    const data = join(t.dir, 'demo');
    const r = await runCli(['demo', '--data', data, '--nodes', '2', '--once', '--http', '127.0.0.1:0'], {
      timeoutMs: 240_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sample image: SquashFS of this project's node_modules/m);
    expect(r.stdout).toMatch(/^ {2}dashboard: {2}http:\/\/127\.0\.0\.1:\d+\/$/m);
    expect(r.stdout).toMatch(
      /^ {2}status: {5}npx rackswarm status --head http:\/\/127\.0\.0\.1:\d+ --watch$/m,
    );
    // Out of the box the demo runs the closed mesh: it enrolled its own peers, which then fetched.
    expect(r.stdout).toMatch(/^ {2}mesh: {7}closed — .*\(2 local peers enrolled\)$/m);
    expect(r.stdout).toMatch(/^2\/2 local peers fetched sample v1 through the swarm/m);
    expect(existsSync(join(data, 'work/node1.img'))).toBe(true);
    // Run again: a new version whose chunks are all there already.
    const again = await runCli(['demo', '--data', data, '--nodes', '0', '--once', '--http', '127.0.0.1:0'], {
      timeoutMs: 120_000,
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/published sample version 2: .* — unchanged chunks were reused/);
  }, 300_000);

  it('falls back to a random image, and says so, when mksquashfs is missing', async () => {
    const emptyPath = join(t.dir, 'empty-path');
    mkdirSync(emptyPath);
    const r = await runCli(
      ['demo', '--data', join(t.dir, 'nosquash'), '--nodes', '1', '--once', '--http', '127.0.0.1:0'],
      {
        timeoutMs: 240_000,
        env: { PATH: emptyPath },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^sample image: 64 MiB of random bytes: mksquashfs is missing \(apt-get install squashfs-tools\)$/m,
    );
    expect(r.stdout).toMatch(/^1\/1 local peers fetched sample v1 through the swarm/m);
  }, 300_000);

  it('keeps the head and its peers running until Ctrl-C, then stops every one of them', async () => {
    const data = join(t.dir, 'ctrl-c');
    const child = spawn(
      process.execPath,
      [
        join(projectRoot, 'bin/rackswarm.js'),
        'demo',
        '--data',
        data,
        '--nodes',
        '2',
        '--http',
        '127.0.0.1:0',
      ],
      { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exit = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`demo not ready in 180 s:\n${out}\n${err}`)),
          180_000,
        );
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('Ctrl-C stops everything')) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exit.then((code) => reject(new Error(`demo exited with ${code}:\n${out}\n${err}`)));
      });
      const url = /dashboard: {2}(http:\S+)\//.exec(out)?.[1];
      const swarm = (await (await fetch(`${url}/api/swarm`)).json()) as { images: { peers: unknown[] }[] };
      expect(swarm.images[0].peers).toHaveLength(2); // still seeding
      expect(processesWith(data).length).toBeGreaterThanOrEqual(3); // the demo and its two peers
      child.kill('SIGINT');
      expect(await exit).toBe(0);
      expect(out).toMatch(/^stopped$/m);
      expect(processesWith(data)).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 300_000);
});
