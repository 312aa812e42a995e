import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type BundleLocation,
  buildCliBundle,
  bundleIsFresh,
  cliModule,
  defaultBundleLocation,
} from '../../bin/cli-bundle.js';
import { projectRoot, tempDir } from '../helpers/cli.ts';

// bin/cli-bundle.js: bin/rackswarm.js runs the esbuild bundle of the CLI when it is fresh, and the sources when it
// is not — an edit must never run as the old code — and bundled code must find files next to its sources as before.
describe('the CLI bundle', () => {
  const dirs: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of dirs.splice(0)) cleanup();
  });

  /** A tiny project with the two entry points, whose output says where import.meta.url points. */
  function fakeProject(): BundleLocation {
    const { dir, cleanup } = tempDir('rsw-bundle-');
    dirs.push(cleanup);
    for (const d of ['cli', 'core', 'node_modules']) mkdirSync(join(dir, d));
    writeFileSync(
      join(dir, 'cli/main.ts'),
      "import { where } from '../core/where.ts';\nconst n: number = 1;\nconsole.log(JSON.stringify({ main: import.meta.url, where: where(), n }));\n",
    );
    writeFileSync(join(dir, 'core/where.ts'), 'export const where = (): string => import.meta.url;\n');
    writeFileSync(join(dir, 'cli/fetch-image.ts'), "export const ready: string = 'yes';\n");
    writeFileSync(join(dir, 'node_modules/.package-lock.json'), '{}\n');
    return { root: dir, dir: join(dir, 'node_modules/.cache/rackswarm-cli') };
  }

  const run = (url: string) =>
    spawnSync(process.execPath, [new URL(url).pathname], { encoding: 'utf8', timeout: 30_000 });
  /** An edit after the last build (mtime a second ahead: no same-millisecond tie with the build's start). */
  const edit = (path: string) => utimesSync(path, new Date(), new Date(Date.now() + 1000));
  /** As if that edit had been made a minute before the next build. */
  const settle = (path: string) => utimesSync(path, new Date(), new Date(Date.now() - 60_000));

  it('is used while fresh, keeps import.meta.url pointing at the sources, and is dropped after an edit', async () => {
    const at = fakeProject();
    expect(bundleIsFresh(at)).toBe(false); // none built yet
    expect(cliModule('main', at)).toBe(pathToFileURL(join(at.root, 'cli/main.ts')).href);

    await buildCliBundle(at);
    expect(bundleIsFresh(at)).toBe(true);
    const bundled = cliModule('main', at);
    expect(bundled).toBe(pathToFileURL(join(at.dir, 'main.js')).href);
    expect(existsSync(join(at.dir, 'fetch-image.js'))).toBe(true);
    const fromBundle = run(bundled);
    const fromSource = run(pathToFileURL(join(at.root, 'cli/main.ts')).href);
    expect(fromBundle.status).toBe(0);
    expect(JSON.parse(fromBundle.stdout)).toEqual({
      main: pathToFileURL(join(at.root, 'cli/main.ts')).href,
      where: pathToFileURL(join(at.root, 'core/where.ts')).href,
      n: 1,
    });
    expect(fromBundle.stdout).toBe(fromSource.stdout);

    edit(join(at.root, 'core/where.ts')); // an edit to a file the bundle was made from
    expect(bundleIsFresh(at)).toBe(false);
    expect(cliModule('main', at)).toBe(pathToFileURL(join(at.root, 'cli/main.ts')).href);

    settle(join(at.root, 'core/where.ts'));
    await buildCliBundle(at);
    expect(bundleIsFresh(at)).toBe(true);
    edit(join(at.root, 'node_modules/.package-lock.json')); // npm changed the dependencies
    expect(bundleIsFresh(at)).toBe(false);

    settle(join(at.root, 'node_modules/.package-lock.json'));
    await buildCliBundle(at);
    expect(bundleIsFresh(at)).toBe(true);
    // Another checkout sharing this node_modules (a symlink): the bundle is of this one, not of that.
    const other = fakeProject();
    expect(bundleIsFresh({ root: other.root, dir: at.dir })).toBe(false);
    rmSync(join(at.root, 'core/where.ts')); // an input vanished
    expect(bundleIsFresh(at)).toBe(false);
  });

  it('is not used with RSW_NO_BUNDLE=1', async () => {
    const at = fakeProject();
    await buildCliBundle(at);
    process.env.RSW_NO_BUNDLE = '1';
    try {
      expect(cliModule('fetch-image', at)).toBe(pathToFileURL(join(at.root, 'cli/fetch-image.ts')).href);
    } finally {
      delete process.env.RSW_NO_BUNDLE;
    }
    expect(cliModule('fetch-image', at)).toBe(pathToFileURL(join(at.dir, 'fetch-image.js')).href);
  });

  // What bin/rackswarm.js loads, seen by a module resolve hook in the real process.
  const loaded = (env: NodeJS.ProcessEnv): string[] => {
    const { dir, cleanup } = tempDir();
    dirs.push(cleanup);
    const hook = join(dir, 'hook.mjs');
    writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';
registerHooks({ resolve(s, c, next) { const r = next(s, c); process.stderr.write('loaded ' + r.url + '\\n'); return r; } });
`,
    );
    const p = spawnSync(
      process.execPath,
      ['--import', hook, join(projectRoot, 'bin/rackswarm.js'), 'fetch', '--help'],
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } },
    );
    expect(p.status).toBe(0);
    expect(p.stdout).toMatch(/^Usage: rackswarm fetch/);
    return [...p.stderr.matchAll(/^loaded (\S+)$/gm)].map((m) => m[1]);
  };

  it('is what bin/rackswarm.js runs in this project (the test setup built it), and no TypeScript source is loaded', () => {
    expect(
      bundleIsFresh(defaultBundleLocation()),
      'the project bundle is stale: see test/helpers/global-setup.ts',
    ).toBe(true);
    const urls = loaded({});
    expect(urls).toContain(pathToFileURL(join(defaultBundleLocation().dir, 'main.js')).href);
    // not one TypeScript source: each would load Node's type stripper (~12 MiB) and strip it at every start
    expect(urls.filter((u) => u.startsWith(pathToFileURL(projectRoot).href) && u.endsWith('.ts'))).toEqual(
      [],
    );

    const sources = loaded({ RSW_NO_BUNDLE: '1' });
    expect(sources).toContain(pathToFileURL(join(projectRoot, 'cli/main.ts')).href);
    expect(sources.some((u) => u.includes('rackswarm-cli'))).toBe(false);
  });

  it('starts from an older Node (the system Node 20) by running the bundled Node 22', () => {
    const system = '/usr/bin/node';
    const version = spawnSync(system, ['--version'], { encoding: 'utf8' });
    expect(version.stdout, `${system} (the Node a fresh Debian 12 machine has) is needed`).toMatch(
      /^v2[01]\./,
    );
    const p = spawnSync(system, [join(projectRoot, 'bin/rackswarm.js'), '--version'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(p.stderr).toBe('');
    expect(p.stdout.trim()).toBe('0.1.0');
    expect(p.status).toBe(0);
  });
});
