// The CLI as one esbuild bundle: what bin/rackswarm.js runs when it is fresh, instead of the TypeScript sources.
//
// Why: a `rackswarm fetch` started from the sources loads ~1,600 modules (libp2p, typebox's 679, our .ts files, each
// type-stripped at every start): ~1 CPU s and ~60 MB of RSS before it does anything, on every node of a boot storm
// (docs/BENCHMARKS.md, "Process start"). The bundle is a handful of files, code-split so a command loads only its
// own code (cli/main.ts imports each command lazily).
//
// Where: node_modules/.cache/rackswarm-cli/ — built by `npm ci` (the `prepare` script), `npm run build`, `npm start`
// and `npm test` when stale; never committed. Native addons and packages that load files beside themselves at run
// time stay outside (EXTERNAL) and resolve from node_modules as before. Every `import.meta.url` keeps meaning the
// source file it is written in (dashboard assets, the boot agent's own bundling, the hash worker), so bundled and
// unbundled code find the same files.
//
// Fresh: the build records the time it started reading and every project file it read; the bundle is used only if
// none of them changed or vanished since and npm has not changed node_modules (its .package-lock.json). Otherwise
// bin/rackswarm.js runs the sources, as if there were no bundle: an edit is never hidden behind a stale bundle.
// RSW_NO_BUNDLE=1 runs the sources regardless (profiling, debugging).
//
// Plain JavaScript, not TypeScript: bin/rackswarm.js loads it before anything else, and the first .ts file a process
// loads costs ~12 MiB of RSS (Node's type stripper) that a bundled process never needs.
import { mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Bundle entry points: the CLI, and the fetch code the swarm testbed preloads behind its start gate. */
const ENTRIES = { main: 'cli/main.ts', 'fetch-image': 'cli/fetch-image.ts' };
/** @typedef {keyof typeof ENTRIES} BundleEntry */

/**
 * Left to node_modules at run time: native addons (a .node file beside their loader), esbuild (spawns its own
 * binary), pino (loads transports and worker files by path).
 */
const EXTERNAL = ['@napi-rs/*', 'classic-level', 'esbuild', 'pino', 'pino-pretty', 'thread-stream'];

/**
 * bundle.json: `startedAt` is Date.now() when the build started reading its inputs; `inputs` the project files the
 * bundle was made from, relative to `root`, the real path of the project they are in (not node_modules): a
 * node_modules shared by two checkouts (a symlink, a git worktree) holds one bundle, of one of them.
 */
const MANIFEST = 'bundle.json';

/** @typedef {{ root: string, dir: string }} BundleLocation the project whose sources are bundled, and where the bundle lives */

/** @returns {BundleLocation} */
export function defaultBundleLocation(root = PROJECT_ROOT) {
  return { root, dir: join(root, 'node_modules', '.cache', 'rackswarm-cli') };
}

/**
 * The module to import for `entry`: the bundle's if it is fresh, else the source file's. Costs one stat per
 * project source file (~100, about a millisecond).
 * @param {BundleEntry} entry
 * @param {BundleLocation} [at]
 * @returns {string} a file URL
 */
export function cliModule(entry, at = defaultBundleLocation()) {
  if (!process.env.RSW_NO_BUNDLE && bundleIsFresh(at)) return pathToFileURL(join(at.dir, `${entry}.js`)).href;
  return pathToFileURL(join(at.root, ENTRIES[entry])).href;
}

/**
 * True if the bundle at `at.dir` was built from the project's current sources and node_modules.
 * @param {BundleLocation} at
 * @returns {boolean}
 */
export function bundleIsFresh(at) {
  /** @type {{ startedAt: number, root: string, inputs: string[] }} */
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(at.dir, MANIFEST), 'utf8'));
  } catch {
    return false;
  }
  if (!Number.isFinite(manifest.startedAt) || !Array.isArray(manifest.inputs) || manifest.inputs.length === 0)
    return false;
  if (manifest.root !== realRoot(at.root)) return false;
  /** @param {string} path */
  const changed = (path) => {
    try {
      return statSync(path).mtimeMs > manifest.startedAt;
    } catch {
      return true;
    }
  };
  const lock = statSync(join(at.root, 'node_modules', '.package-lock.json'), { throwIfNoEntry: false });
  if (lock && lock.mtimeMs > manifest.startedAt) return false;
  return !manifest.inputs.some((f) => changed(join(at.root, f)));
}

/** @param {string} root */
function realRoot(root) {
  try {
    return realpathSync(root);
  } catch {
    return root;
  }
}

/**
 * Builds the bundle into a fresh directory beside `at.dir` and renames it into place, so a process starting
 * meanwhile sees the old bundle or the new one, never half of one.
 * @param {BundleLocation} [at]
 * @returns {Promise<{ inputs: number, bytes: number }>} project files read, bytes written
 */
export async function buildCliBundle(at = defaultBundleLocation()) {
  const { build } = await import('esbuild');
  const startedAt = Date.now();
  const tmp = `${at.dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(dirname(at.dir), { recursive: true });
  try {
    const result = await build({
      entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([k, v]) => [k, join(at.root, v)])),
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node22',
      outdir: tmp,
      absWorkingDir: at.root,
      metafile: true,
      logLevel: 'error',
      legalComments: 'none',
      external: EXTERNAL,
      // Bundled CommonJS dependencies call require() (Node's built-ins, the external packages).
      banner: {
        js: "import{createRequire as __rswCR}from'node:module';const require=__rswCR(import.meta.url);",
      },
      // import.meta.url in any bundled file means that file, not the bundle (see the top of this file).
      define: { 'import.meta.url': '__rswSourceUrl' },
      plugins: [
        {
          name: 'source-url',
          setup(b) {
            b.onLoad({ filter: /\.(ts|js|mjs|cjs)$/ }, async (args) => {
              const source = await readFile(args.path, 'utf8');
              if (!source.includes('import.meta')) return undefined;
              const url = JSON.stringify(pathToFileURL(args.path).href);
              return {
                contents: `const __rswSourceUrl = ${url};\n${source}`,
                loader: args.path.endsWith('.ts') ? 'ts' : 'js',
              };
            });
          },
        },
      ],
    });
    // Paths relative to absWorkingDir; packages are covered by node_modules/.package-lock.json instead.
    const inputs = Object.keys(result.metafile.inputs).filter(
      (p) => !p.startsWith('node_modules/') && !p.startsWith('../'),
    );
    writeFileSync(join(tmp, MANIFEST), `${JSON.stringify({ startedAt, root: realRoot(at.root), inputs })}\n`);
    rmSync(at.dir, { recursive: true, force: true });
    renameSync(tmp, at.dir);
    const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
    return { inputs: inputs.length, bytes };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** `node bin/cli-bundle.js [--if-stale]` (npm's prepare, build and prestart scripts). */
if (import.meta.main) {
  const at = defaultBundleLocation();
  if (process.argv.includes('--if-stale') && bundleIsFresh(at)) process.exit(0);
  try {
    const t0 = performance.now();
    const { inputs, bytes } = await buildCliBundle(at);
    process.stderr.write(
      `rackswarm: CLI bundle built from ${inputs} source files (${(bytes / 2 ** 20).toFixed(1)} MiB) in ${relative(process.cwd(), at.dir)} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
    );
  } catch (e) {
    process.stderr.write(
      `error RSW_ERR_USAGE: cannot build the CLI bundle: ${e instanceof Error ? e.message : e}\n`,
    );
    process.exit(1);
  }
}
