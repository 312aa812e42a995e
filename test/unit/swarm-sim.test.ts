import { describe, expect, it } from 'vitest';
import { simOptions, simTMin } from '../../bench/sim/main.ts';
import { simulate } from '../../bench/sim/swarm-sim.ts';

/** 16 nodes in 2 racks at 50 Mbit/s, 64 MiB in 1 MiB chunks: the testbed's case, a fraction of a second to run. */
const small = (extra: Record<string, string | boolean> = {}) =>
  simOptions({
    nodes: '16',
    racks: '2',
    rate: '50',
    size: '64',
    chunk: '1',
    latency: '0.5',
    startup: '0',
    quantum: '0',
    seed: '3',
    ...extra,
  });

describe('swarm simulator', () => {
  it('repeats a run exactly from its seed, and no node beats the physical bound', () => {
    const o = small();
    const a = simulate(o);
    const b = simulate(o);
    expect({ ...b, wallSeconds: 0, cpuSeconds: 0 }).toEqual({ ...a, wallSeconds: 0, cpuSeconds: 0 });
    expect(a.perNode).toHaveLength(16);
    expect(a.tLast).toBeGreaterThanOrEqual(simTMin(o));
    expect(a.headEgressBytes).toBeGreaterThanOrEqual(o.imageBytes);
  });

  it('with strict priority among uploads (experiment) still completes within the physical bound', () => {
    const o = small({ 'upload-order': 'priority', 'head-priority': true });
    const r = simulate(o);
    expect(r.perNode).toHaveLength(16);
    expect(r.tLast).toBeGreaterThanOrEqual(simTMin(o));
    expect(r.deliveredBytes).toBeGreaterThanOrEqual(16 * o.imageBytes);
  });
});
