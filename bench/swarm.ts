// The "Swarm testbed and simulator" section of docs/BENCHMARKS.md (issue 5): the network testbed at N = 8 and 16 and
// in 2 racks × 8, each beside nginx; the simulator at 1,000 and 10,000 nodes; and the validation table (simulator vs
// testbed at N = 8 and 16). Needs root (network namespaces, tc). `node bench/swarm.ts [--quick]` prints the section.
import { mbitToBytes } from './lib/bounds.ts';
import { fmt, median } from './lib/stats.ts';
import { simTMin } from './sim/main.ts';
import { type SimOptions, type SimResult, simulate } from './sim/swarm-sim.ts';
import { cpuBound } from './testbed/main.ts';
import { runTestbed, type TestbedResult } from './testbed/testbed.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface TestbedCase {
  nodes: number;
  racks: number;
}

function testbedRow(r: TestbedResult): string {
  const o = r.options;
  const s = r.rackswarm;
  const F = r.imageBytes;
  return (
    `| ${o.nodes} | ${o.racks} | ${fmt(r.tMin, 1)} s | ${fmt(s.tLast, 1)} s (${fmt(s.tLast / r.tMin)} ×) | ` +
    `${fmt(s.perNode[0], 1)} / ${fmt(median(s.perNode), 1)} / ${fmt(s.tLast, 1)} s | ${fmt(s.startupMedian, 1)} s | ` +
    `${fmt(s.headEgressBytes / F)} × | ${o.racks > 1 ? `${fmt(s.crossRackBytes / (o.racks * F))} ×` : '–'} | ` +
    `${fmt(s.cpu.meanBusy * 100, 0)} %${cpuBound(s.cpu) ? ' **CPU-bound**' : ''} | ` +
    `${r.nginx ? `${fmt(r.nginx.tLast, 1)} s` : '–'} | ${r.nginx ? `${fmt(r.nginx.tLast / s.tLast, 1)} ×` : '–'} |`
  );
}

function simRow(o: SimOptions, r: SimResult): string {
  const F = o.imageBytes;
  const tMin = simTMin(o);
  return (
    `| ${o.nodes} | ${o.racks} | ${fmt(F / GiB, 0)} GiB / ${fmt(o.chunkBytes / MiB, 0)} MiB | ${fmt(tMin, 2)} s | ` +
    `${fmt(r.tLast, 2)} s (${fmt(r.tLast / tMin)} ×) | ${fmt(r.perNode[0], 2)} / ${fmt(median(r.perNode), 2)} s | ` +
    `${fmt(r.headEgressBytes / F)} × | ${fmt(r.crossRackBytes / (o.racks * F))} × | ` +
    `${fmt(r.cpuSeconds, 0)} s CPU (${fmt(r.wallSeconds, 0)} s wall) |`
  );
}

/** The cluster-scale case of the issue: 10 Gbit/s nodes, a 100 Gbit/s head on the spine, 400 Gbit/s rack uplinks. */
export function clusterCase(nodes: number, racks: number, chunkMiB: number, seed = 1): SimOptions {
  return {
    nodes,
    racks,
    imageBytes: 4 * GiB,
    chunkBytes: chunkMiB * MiB,
    nodeRate: mbitToBytes(10_000),
    headRate: mbitToBytes(100_000),
    spineRate: mbitToBytes(400_000),
    latency: 0.00005,
    quantum: 0.005,
    seed,
  };
}

export async function benchSwarm(opts: { quick?: boolean }): Promise<string> {
  const log = (l: string) => process.stderr.write(`${l}\n`);
  const rate = 50;
  const sizeMiB = opts.quick ? 16 : 64;
  const cases: TestbedCase[] = [
    { nodes: 8, racks: 1 },
    { nodes: 16, racks: 1 },
    { nodes: 16, racks: 2 },
  ];
  const testbed: TestbedResult[] = [];
  const failures: string[] = [];
  for (const c of cases) {
    try {
      testbed.push(await runTestbed({ ...c, rateMbit: rate, sizeMiB, log }));
      log(testbedRow(testbed[testbed.length - 1]));
    } catch (e) {
      // one failed run (e.g. a node that never completes) is reported, not the end of the section
      failures.push(`| ${c.nodes} | ${c.racks} | FAILED: ${String(e).split('\n')[0]} |||||||||`);
      log(failures[failures.length - 1]);
    }
  }

  // validation: the simulator on the testbed's links, each node starting after the testbed's median start-up
  const validation: string[] = [];
  for (const r of testbed.filter((t) => t.options.racks === 1)) {
    const o: SimOptions = {
      nodes: r.options.nodes,
      racks: 1,
      imageBytes: r.imageBytes,
      chunkBytes: Math.round(r.imageBytes / r.chunks),
      nodeRate: mbitToBytes(rate),
      headRate: mbitToBytes(rate),
      spineRate: mbitToBytes(rate),
      latency: 0.0005,
      startup: r.rackswarm.startupMedian,
      seed: 1,
    };
    const sims = [1, 2, 3].map((seed) => simulate({ ...o, seed }).tLast);
    const sim = median(sims);
    const tb = r.rackswarm.tLast;
    validation.push(
      `| ${o.nodes} | ${fmt(tb, 1)} s | ${fmt(r.rackswarm.startupMedian, 1)} s | ${fmt(sim, 1)} s | ` +
        `${fmt(((sim - tb) / tb) * 100, 0)} % | ${cpuBound(r.rackswarm.cpu) ? 'testbed CPU-bound' : ''} |`,
    );
  }

  const simRows: string[] = [];
  for (const [nodes, racks, chunk] of opts.quick
    ? [[1000, 4, 64]]
    : [
        [1000, 4, 64],
        [1000, 4, 16],
        [10_000, 40, 64],
        // 256 chunks of 16 MiB: within the 5 minutes since session 12's cheaper scheduler books (docs/BENCHMARKS.md)
        [10_000, 40, 16],
      ]) {
    const o = clusterCase(nodes, racks, chunk);
    log(`sim: ${nodes} nodes`);
    simRows.push(simRow(o, simulate(o)));
    log(simRows[simRows.length - 1]);
  }

  return [
    '## Swarm testbed and simulator',
    '',
    `Testbed (bench/testbed/): a head and N nodes, each in a network namespace of its own, every host link shaped`,
    `with \`tc tbf\` to ${rate} Mbit/s both ways (the head's too); with 2 racks, one bridge per rack and ${rate} Mbit/s`,
    'rack uplinks to a spine that the head hangs off. A real `rackswarm head`, a generated random image published to',
    'it, and a real `rackswarm fetch` per node. The peers are pre-started (they load their code, then wait at a gate:',
    'bench/testbed/gate.ts) and released together; t_last counts from the release, and "start-up" is the median time',
    "from the release to a node's first progress line (p2p node up, manifest fetched) — part of t_last. Head egress",
    "and cross-rack bytes come from the kernel's interface counters (TCP/IP headers included, ~3.5 %). T_min =",
    'max(F/u_s, F/d_min, N·F/(u_s+Σu_i)). nginx: Debian nginx-light in the head namespace, N curl clients at once.',
    '',
    `| nodes | racks | T_min | t_last | per node min / median / max | start-up | head egress / F | cross-rack / (racks·F) | CPU busy | nginx t_last | speed-up |`,
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...testbed.map(testbedRow),
    ...failures,
    '',
    `Image ${sizeMiB} MiB (${testbed[0]?.chunks ?? '?'} chunks). CPU busy is the whole machine during the rackswarm phase (2`,
    'cores, shared with other work); "CPU-bound" marks a run where the cores were ≥ 85 % busy on average or ≥ 90 %',
    'busy in half the samples: there, the N node processes (Noise encryption, hashing, libp2p) and not the links set',
    'the pace, and t_last says little about the protocol.',
    '',
    'Simulator (bench/sim/): a deterministic discrete-event simulation driving the real `Scheduler` (one per node,',
    'peer/scheduler.ts) and the real `HandoutPool` (tracker/handout-policy.ts), with max-min fair flows over node,',
    'rack-uplink and head links, 50 µs one-way latency, rates re-allocated at most every 5 ms, no CPU costs. Cluster',
    'case: 10 Gbit/s nodes, a 100 Gbit/s head on the spine, 400 Gbit/s rack uplinks, 4 GiB image. Chunks are larger',
    "than the chunker's 1 MiB average so the 10,000-node run fits in minutes (the scheduler's cost grows with chunks",
    '× neighbours per arrival); 16 MiB chunks are the finer model, 64 MiB the cheaper one.',
    '',
    '| nodes | racks | image / chunk | T_min | t_last | per node min / median | head egress / F | cross-rack / (racks·F) | run time |',
    '|---|---|---|---|---|---|---|---|---|',
    ...simRows,
    '',
    "Validation (simulator on the testbed's links and chunk count, each node starting after the testbed's median",
    'start-up; median of 3 seeds):',
    '',
    '| nodes | testbed t_last | testbed start-up | simulator t_last | difference | note |',
    '|---|---|---|---|---|---|',
    ...validation,
    '',
    'Reproduce: `npm run bench:swarm -- --nodes 16 --rate 50 --size 64 [--racks 2]` (one testbed run, root needed),',
    '`node bench/sim/main.ts --nodes 10000 --racks 40 --rate 10000 --head-rate 100000 --spine-rate 400000 --size 4096',
    '--chunk 64 --latency 0.05 --quantum 2` (`--chunk 16`: 256 chunks), and `node bench/swarm.ts` for this whole',
    'section.',
  ].join('\n');
}

if (import.meta.main) console.log(await benchSwarm({ quick: process.argv.includes('--quick') }));
