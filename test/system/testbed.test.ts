// The network testbed end to end at N = 4 (2 racks, so the spine is exercised): real namespaces, tbf-shaped links,
// a real head and real fetch processes, then nginx + curl. Checks what must hold whatever the timings: every
// output is the image bit for bit, the counters saw the traffic, and nothing of the testbed is left behind.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summary } from '../../bench/testbed/dump.ts';
import { type NodeSeries, runTestbed } from '../../bench/testbed/testbed.ts';

describe('swarm testbed', () => {
  it('gives 4 nodes in 2 racks a bit-identical image through rackswarm and through nginx, then cleans up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rsw-testbed-dump-'));
    const dump = join(dir, 'dump.json');
    const r = await runTestbed({ nodes: 4, racks: 2, rateMbit: 200, sizeMiB: 4, dump });
    const F = r.imageBytes;
    // --dump: each node's progress lines, the last one (stage done) with the whole fetch's flow counters
    const d = JSON.parse(readFileSync(dump, 'utf8')) as { nodes: NodeSeries[] };
    rmSync(dir, { recursive: true, force: true });
    expect(d.nodes).toHaveLength(4);
    for (const n of d.nodes) {
      const last = n.lines.at(-1);
      expect(last?.progress.bytesDone).toBe(F);
      expect(last?.progress.stage).toBe('done');
      const flow = last?.flow;
      expect(flow).toBeDefined();
      expect((flow?.batchesPeers ?? 0) + (flow?.batchesSeeder ?? 0)).toBeGreaterThan(0);
      expect((flow?.peerSourceMs ?? 0) + (flow?.seederMs ?? 0)).toBeGreaterThan(0);
      expect(last?.serve?.requests).toBeGreaterThanOrEqual(0);
      expect(summary(n)).toContain(`done ${n.done.toFixed(2)} s`);
    }
    expect(d.nodes.reduce((a, n) => a + n.summary.bytesFromPeers, 0)).toBe(r.rackswarm.fromPeers);
    expect(r.rackswarm.identical).toBe(true);
    expect(r.nginx?.identical).toBe(true);
    expect(r.rackswarm.perNode).toHaveLength(4);
    // the head sent at least one image; each rack took at least one across the spine (counters include headers)
    expect(r.rackswarm.headEgressBytes).toBeGreaterThanOrEqual(F);
    expect(r.rackswarm.crossRackBytes).toBeGreaterThanOrEqual(2 * F);
    expect(r.rackswarm.fromSeeder + r.rackswarm.fromPeers).toBeGreaterThanOrEqual(4 * F);
    // where the nodes' CPU went: a node read its image off sockets (system calls counted from /proc), so did the head
    const node = r.rackswarm.cpuDetail.node;
    expect(node?.reads).toBeGreaterThan(0);
    expect((node?.user ?? 0) + (node?.sys ?? 0)).toBeGreaterThan(0);
    expect(r.rackswarm.cpuDetail.head?.writes).toBeGreaterThan(0);
    expect(r.rackswarm.tcpOpens.active).toBeGreaterThan(0); // its dials, to the head at least
    // The start, step by step: every node reached each step, in order, with the CPU it spent growing.
    const steps = r.rackswarm.startSteps.map((x) => x.step);
    for (const name of ['begin', 'libp2p', 'dialled', 'manifest', 'run', 'firstChunk'])
      expect(r.rackswarm.startSteps.find((x) => x.step === name)?.nodes).toBe(4);
    expect(steps.indexOf('begin')).toBeLessThan(steps.indexOf('manifest'));
    expect(steps.indexOf('manifest')).toBeLessThan(steps.indexOf('firstChunk'));
    const cpuOf = (name: string) =>
      r.rackswarm.startSteps.find((x) => x.step === name)?.cpuMedian ?? Number.NaN;
    expect(cpuOf('firstChunk')).toBeGreaterThan(cpuOf('begin'));
    expect(r.rackswarm.headStart.cpuSeconds).toBeGreaterThan(0);
    for (const n of d.nodes) expect(n.steps.map((x) => x.step)).toContain('firstChunk');
    // nginx sends every node its own copy
    expect(r.nginx?.headEgressBytes).toBeGreaterThanOrEqual(4 * F);
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(left).not.toContain(`rswtb${process.pid}-`);
  }, 240_000);
});
