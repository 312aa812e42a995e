// The V8 flags and environment a rackswarm command runs with: bin/rackswarm.js starts (or re-executes) itself with
// them, and the swarm testbed (bench/testbed/) starts its peers with the same, so what it measures is what ships.
//
// Memory: a peer streams gigabytes through a process that must stay small (initramfs nodes; goal ≤ 150 MB while
// fetching 4 GiB, docs/BENCHMARKS.md). V8's young generation and glibc's per-thread malloc arenas are sized for
// throughput on big machines, so a command runs with
//   --max-semi-space-size=4  young generation 4+4 MiB instead of up to 16+16 (measured: ~30 MB less RSS), and
//   MALLOC_ARENA_MAX=2       libuv's 16 pool threads share two malloc arenas instead of growing one each.
// and for `fetch` on the bulk data plane (the default; see p2p.dataPlane in core/config.ts):
//   --optimize-for-size      V8 favours memory over speed (heap growth, inlining): the bulk path does little in
//                            JavaScript, so peak RSS fetching 4 GiB 159 -> 134 MiB (--heap-growing-percent=10 alone:
//                            149) at no measurable CPU cost. Not with `p2p.dataPlane: "libp2p"` in --config: its
//                            per-frame JavaScript then costs 3x the CPU per GiB (docs/BENCHMARKS.md, "Fetch"). Set at
//                            start: set later (v8.setFlagsFromString), V8 has already grown the heap.
import { readFileSync } from 'node:fs';

/**
 * The flags and environment for `rackswarm ...args`.
 * @param {string[]} args the command line after `rackswarm`
 * @returns {{ v8Flags: string[], env: Record<string, string> }}
 */
export function launch(args) {
  return {
    v8Flags: ['--max-semi-space-size=4', ...(bulkFetch(args) ? ['--optimize-for-size'] : [])],
    // writes fsync in libuv's pool: 4 threads cap overlap
    env: { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '16' },
  };
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
