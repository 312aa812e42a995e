// Preloaded with `node --import` into each `rackswarm fetch` of the testbed: loads the fetch code (libp2p, Noise,
// Yamux, LevelDB bindings: most of the ~0.6 s of CPU a peer spends starting, DESIGN.md) and then holds the process
// until a line arrives on stdin, so the testbed can start every peer first and release them all together. The
// reported times start at the release; the pre-start is reported apart.
import { cliModule } from '../../bin/cli-bundle.js';

await import(cliModule('fetch-image')); // the module bin/rackswarm.js will run: the bundle's, if it is fresh
process.stderr.write('testbed-gate ready\n');
await new Promise<void>((resolve) => {
  process.stdin.once('data', () => {
    process.stdin.destroy();
    resolve();
  });
});
