import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../helpers/cli.ts';

// cli/main.ts loads only the module of the command that runs, and bin/rackswarm.js enables V8's compile cache and
// runs the CLI's bundle when it is fresh (bin/cli-bundle.js; test/helpers/global-setup.ts builds it): none of them
// may change what a command does, and a node whose cache directory cannot exist (initramfs) must still run. Each
// case runs from the bundle and from the sources (RSW_NO_BUNDLE=1).
describe.each([
  { from: 'the bundle', env: {} },
  { from: 'the sources', env: { RSW_NO_BUNDLE: '1' } },
])('rackswarm start-up from $from', ({ env: fromEnv }) => {
  const dirs: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of dirs.splice(0)) cleanup();
  });

  it('lists every command in --help though each command loads only its own module', async () => {
    const help = await runCli(['--help'], { env: fromEnv });
    expect(help.code).toBe(0);
    const listed = [...help.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]);
    expect(listed).toEqual([
      'keys',
      'head',
      'fetch',
      'publish',
      'images',
      'status',
      'demo',
      'channel',
      'gc',
      'preheat',
      'boot',
      'enroll',
      'help',
    ]);
    const fetchHelp = await runCli(['fetch', '--help'], { env: fromEnv });
    expect(fetchHelp.code).toBe(0);
    expect(fetchHelp.stdout).toMatch(/^Usage: rackswarm fetch \[options\] <image>/);
    const unknown = await runCli(['fetchh'], { env: fromEnv });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^error RSW_ERR_USAGE: unknown command 'fetchh'/);
  });

  it('loads fewer modules for one command than for the list of all (counted as compile cache entries)', async () => {
    const { dir, cleanup } = tempDir();
    dirs.push(cleanup);
    const modules = async (args: string[], cache: string): Promise<number> => {
      expect((await runCli(args, { env: { ...fromEnv, NODE_COMPILE_CACHE: join(dir, cache) } })).code).toBe(
        0,
      );
      const [version] = readdirSync(join(dir, cache));
      return readdirSync(join(dir, cache, version)).length;
    };
    const all = await modules(['--help'], 'all');
    const fetchOnly = await modules(['--config', join(dir, 'unread.json'), 'fetch', '--help'], 'fetch');
    expect(fetchOnly).toBeGreaterThan(1);
    expect(fetchOnly).toBeLessThan(all);
  });

  it('caches compiled code in NODE_COMPILE_CACHE, and runs uncached where no cache directory can be made', async () => {
    const { dir, cleanup } = tempDir();
    dirs.push(cleanup);
    const cache = join(dir, 'cache');
    const cached = await runCli(['fetch', '--help'], { env: { ...fromEnv, NODE_COMPILE_CACHE: cache } });
    expect(cached.code).toBe(0);
    const [version] = readdirSync(cache);
    expect(readdirSync(join(cache, version)).length).toBeGreaterThan(1);

    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, '');
    const uncached = await runCli(['fetch', '--help'], {
      env: { ...fromEnv, NODE_COMPILE_CACHE: '', TMPDIR: join(blocker, 'tmp') },
    });
    expect(uncached).toMatchObject({ code: 0, stderr: '' });
    expect(uncached.stdout).toBe(cached.stdout);
  });
});
