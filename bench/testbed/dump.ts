// `node bench/testbed/dump.ts FILE [--series]`: reads a testbed --dump (bench/testbed/testbed.ts NodeSeries) and
// prints per node, in finishing order, where its time went: from the seeder, peak upload, mean download, batches
// refused by neighbours, idle time with nothing in flight and why, mean sources; with --series, the per-second rows of
// the first, median and last node.
import { readFileSync } from 'node:fs';
import type { FetchFlow } from '../../peer/fetcher.ts';
import { benchArgs, usageExit } from '../lib/cli-args.ts';
import { median } from '../lib/stats.ts';
import type { NodeSeries } from './testbed.ts';

const MB = 1e6;
const MiB = 1024 * 1024;

type Line = NodeSeries['lines'][number];

function f(x: number, d = 2): string {
  return Number.isFinite(x) ? x.toFixed(d) : '–';
}

/** Per-second rows of a node: rates from the differences of its cumulative counters. */
export function rows(n: NodeSeries): string[] {
  const out = [
    '    t s | down MB/s (seeder) | up MB/s | srcs | holding/backed-off | batches / busy (peers) | busy seeder | idle backoff/nothing/other ms | served busy batches | serve active',
  ];
  let prev: Line | undefined;
  for (const l of n.lines) {
    if (prev && l.flow && prev.flow && l.serve && prev.serve) {
      const dt = l.t - prev.t;
      const down = l.progress.bytesFromPeers + l.progress.bytesFromSeeder;
      const pdown = prev.progress.bytesFromPeers + prev.progress.bytesFromSeeder;
      const d = (k: keyof FetchFlow) => (l.flow?.[k] ?? 0) - (prev?.flow?.[k] ?? 0);
      out.push(
        `  ${f(l.t, 1).padStart(5)} | ${f((down - pdown) / dt / MB)} (${f((l.progress.bytesFromSeeder - prev.progress.bytesFromSeeder) / dt / MB)}) | ` +
          `${f((l.serve.bytes - prev.serve.bytes) / dt / MB)} | ${f(d('peerSourceMs') / (dt * 1000), 1)} | ` +
          `${l.flow.holding}/${l.flow.backedOff} | ${d('batchesPeers')} / ${d('busyPeers')} | ${d('busySeeder')}/${d('batchesSeeder')} | ` +
          `${f(d('idleBackoffMs'), 0)}/${f(d('idleNothingMs'), 0)}/${f(d('idleOtherMs'), 0)} | ` +
          `${l.serve.refusedBatches - prev.serve.refusedBatches} | ${l.serve.active}`,
      );
    }
    prev = l;
  }
  return out;
}

/** One line per node: what its whole fetch looked like (its last progress line before completion). */
export function summary(n: NodeSeries): string {
  const last = n.lines.filter((l) => l.t <= n.done && l.flow).at(-1) ?? n.lines.at(-1);
  const fl = last?.flow;
  if (!fl) return `node ${n.node} done ${f(n.done)} s (no flow counters)`;
  let peakUp = 0;
  let minDown = Number.POSITIVE_INFINITY;
  for (let k = 1; k < n.lines.length; k++) {
    const a = n.lines[k - 1];
    const b = n.lines[k];
    const dt = b.t - a.t;
    if (b.serve && a.serve) peakUp = Math.max(peakUp, (b.serve.bytes - a.serve.bytes) / dt);
    if (b.t <= n.done && k > 1)
      minDown = Math.min(
        minDown,
        (b.progress.bytesFromPeers +
          b.progress.bytesFromSeeder -
          a.progress.bytesFromPeers -
          a.progress.bytesFromSeeder) /
          dt,
      );
  }
  const secs = (fl.peerSourceMs ?? 0) > 0 && last ? last.t - (n.lines[0]?.t ?? 0) : Number.NaN;
  const got = n.summary.bytesFromPeers + n.summary.bytesFromSeeder;
  const upBytes = n.lines.filter((l) => l.t <= n.done).at(-1)?.serve?.bytes ?? 0;
  return (
    `node ${String(n.node).padStart(2)} ${n.rack} done ${f(n.done)} s | seeder ${f(n.summary.bytesFromSeeder / MiB, 1)} MiB | ` +
    `up by then ${f(upBytes / MiB, 1)} MiB (peak ${f(peakUp / MB)} MB/s) | down ${f(got / MB / n.done)} MB/s (min ${f(minDown / MB)}) | ` +
    `batches ${fl.batchesPeers} busy ${fl.busyPeers} (${f((100 * fl.busyPeers) / Math.max(1, fl.batchesPeers), 0)} %), seeder ${fl.batchesSeeder} busy ${fl.busySeeder} | ` +
    `idle backoff/nothing/other ${f(fl.idleBackoffMs / 1000)}/${f(fl.idleNothingMs / 1000)}/${f(fl.idleOtherMs / 1000)} s | ` +
    `mean sources ${f(fl.peerSourceMs / 1000 / secs)} (${f(got / MB / (fl.peerSourceMs / 1000))} MB/s per source-second) | ` +
    `refused given ${last?.serve?.refusedBatches ?? 0} batches` +
    batchLine(fl)
  );
}

/**
 * A chunk's time on the wire, ms, from the batches of 2+ chunks (first → last answer); the rest of a batch's wait for
 * its first answer is its request's trip, the server's admission and first read (and, pipelined, the batch ahead).
 */
function chunkOnWireMs(fl: FetchFlow): number {
  return fl.batchXferMs / Math.max(1, fl.batchChunks - (fl.batchesPeers + fl.batchesSeeder));
}

/**
 * Where a source's time went per batch (FetchFlow's batch counters; absent from older dumps): request → first answer,
 * first → last answer, MB/s while answering, the gap to the next request to that neighbour, batches pipelined, and
 * the time a source slot was free while an askable neighbour held something (with next() coming back empty).
 */
export function batchLine(fl: FetchFlow): string {
  if (fl.batchWaitMs === undefined) return '';
  const batches = fl.batchesPeers + fl.batchesSeeder;
  const per = (x: number) => f(x / Math.max(1, batches), 0);
  const chunkMs = chunkOnWireMs(fl);
  return (
    `
      batches: wait ${per(fl.batchWaitMs)} ms, answering ${per(fl.batchXferMs)} ms, ${f(fl.batchBytes / MiB / Math.max(1, batches))} MiB each ` +
    `(${f(fl.batchBytes / MB / ((fl.batchWaitMs + fl.batchXferMs) / 1000))} MB/s over wait+answering, ${f(fl.batchBytes / MB / (fl.batchXferMs / 1000))} answering) | ` +
    `chunk on the wire ~${f(chunkMs, 0)} ms, so wait − chunk ~${f(fl.batchWaitMs / Math.max(1, batches) - chunkMs, 0)} ms | ` +
    `gap to next ${f(fl.batchGapMs / Math.max(1, fl.batchGaps), 0)} ms × ${fl.batchGaps} | pipelined ${fl.batchesPipelined} | ` +
    `free slot with an idle holder ${f(fl.freeSlotMs / 1000)} s, next() empty ${fl.nextEmpty}`
  );
}

/** The median of the finite ones (NaN for none). */
const finiteMedian = (xs: number[]): number => median(xs.filter(Number.isFinite));

/**
 * The run in one line, medians over the nodes (for side-by-side tables; start-up, which a loaded machine stretches by
 * seconds, left out): download rate over the data phase (its first request → its verified image), mean sources,
 * MB/s per source-second, a batch's wait for its first answer minus a chunk's time on the wire, the free-slot time.
 */
export function overall(nodes: NodeSeries[]): string {
  const rate: number[] = [];
  const sources: number[] = [];
  const perSource: number[] = [];
  const overhead: number[] = [];
  const freeSlot: number[] = [];
  const pipelined: number[] = [];
  const nextEmpty: number[] = [];
  for (const n of nodes) {
    const first = Math.min(...n.steps.filter((st) => st.step.startsWith('firstRequest')).map((st) => st.t));
    const got = n.summary.bytesFromPeers + n.summary.bytesFromSeeder;
    rate.push(got / MB / (n.done - first));
    const last = n.lines.filter((l) => l.t <= n.done && l.flow).at(-1);
    const fl = last?.flow;
    if (!fl) continue;
    sources.push((fl.peerSourceMs + fl.seederMs) / 1000 / (n.done - first));
    perSource.push(got / MB / ((fl.peerSourceMs + fl.seederMs) / 1000));
    if (fl.batchWaitMs === undefined) continue;
    const batches = fl.batchesPeers + fl.batchesSeeder;
    overhead.push(fl.batchWaitMs / Math.max(1, batches) - chunkOnWireMs(fl));
    freeSlot.push(fl.freeSlotMs / 1000);
    nextEmpty.push(fl.nextEmpty);
    pipelined.push(fl.batchesPipelined / Math.max(1, batches));
  }
  return (
    `medians over nodes: download ${f(finiteMedian(rate))} MB/s over the data phase (min ${f(Math.min(...rate))}) | ` +
    `mean sources ${f(finiteMedian(sources))} (the head included) | ${f(finiteMedian(perSource))} MB/s per source-second | ` +
    `batch wait − chunk ${f(finiteMedian(overhead), 0)} ms | free slot ${f(finiteMedian(freeSlot))} s (next() empty ${f(finiteMedian(nextEmpty), 0)}) | pipelined ${f(100 * finiteMedian(pipelined), 0)} %`
  );
}

if (import.meta.main) {
  const usage = 'usage: node bench/testbed/dump.ts FILE [--series]';
  const { values, positionals } = benchArgs(
    { allowPositionals: true, options: { series: { type: 'boolean', default: false } } },
    usage,
  );
  if (positionals.length !== 1) usageExit('one testbed --dump FILE', usage);
  const d = JSON.parse(readFileSync(positionals[0], 'utf8')) as { tMin: number; nodes: NodeSeries[] };
  const byDone = [...d.nodes].sort((a, b) => a.done - b.done);
  console.log(`T_min ${f(d.tMin)} s; ${overall(d.nodes)}\nnodes in finishing order:`);
  for (const n of byDone) console.log(summary(n));
  if (values.series) {
    for (const [who, n] of [
      ['first', byDone[0]],
      ['median', byDone[Math.floor((byDone.length - 1) / 2)]],
      ['last', byDone.at(-1) as NodeSeries],
    ] as const) {
      console.log(`\n${who} node ${n.node} (done ${f(n.done)} s):`);
      for (const r of rows(n)) console.log(r);
    }
  }
}
