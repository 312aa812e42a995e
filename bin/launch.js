// The V8 flags and environment a rackswarm command runs with: bin/rackswarm.js starts (or re-executes) itself with
// them, and the swarm testbed (bench/testbed/) starts its peers with the same, so what it measures is what ships.
//
// Memory: a peer streams gigabytes through a process that must stay small (initramfs nodes; goal ≤ 150 MB while
// fetching 4 GiB, docs/BENCHMARKS.md). V8's young generation and glibc's per-thread malloc arenas are sized for
// throughput on big machines, so a command runs with
//   --max-semi-space-size=4  young generation 4+4 MiB instead of up to 16+16 (measured: ~30 MB less RSS), and
//   MALLOC_ARENA_MAX=2       libuv's 16 pool threads share two malloc arenas instead of growing one each.
// Not --optimize-for-size (V8 favours memory over speed), which `fetch` had until session 8: peak RSS fetching 4 GiB
// 110-114 MiB with it against 125-128 without (goal ≤ 150 MB either way), but a node in a swarm spent ~15 % more CPU
// (the control plane's per-frame JavaScript optimised less; testbed N = 16: 1.72-1.88 against 1.51-1.60 CPU s per
// node), while one peer on loopback spent about the same (docs/BENCHMARKS.md, "(c)" and the testbed's session 8).

/** V8 flags for every command. */
export const V8_FLAGS = ['--max-semi-space-size=4'];
/** Environment for every command (set before the process starts: glibc and libuv read it once). */
export const ENV = { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '16' }; // writes fsync in libuv's pool: 4 threads cap overlap
