// core/counters.ts's stderr line and bench/testbed/counters.ts's per-counter spread over a run's nodes
// (RSW_COUNTERS=1: how many frames, messages, reads and loop turns a node cost).
import { describe, expect, it } from 'vitest';
import { counterSpreads, formatCounterSpreads } from '../../bench/testbed/counters.ts';
import { parseCounterLine } from '../../core/counters.ts';

describe('event counters', () => {
  it('parses a counters line, and nothing else', () => {
    expect(parseCounterLine('counters {"a":1,"b.c":20}')).toEqual({ a: 1, 'b.c': 20 });
    expect(parseCounterLine('{"step":"run","t":1}')).toBeUndefined();
    expect(parseCounterLine('counters {broken')).toBeUndefined();
    expect(parseCounterLine('mesh: {"a":1}')).toBeUndefined();
  });

  it('takes each counter over the nodes that wrote a line (the last one each; missing counters are 0)', () => {
    const s = counterSpreads([
      ['{"step":"run"}', 'counters {"x":1}', 'counters {"x":10,"y":4}'],
      ['counters {"x":20}'],
      ['counters {"x":30,"y":2}'],
      ['no counters here'],
    ]);
    expect(s).toEqual({
      nodes: 3,
      counters: { x: { min: 10, median: 20, max: 30 }, y: { min: 0, median: 2, max: 4 } },
    });
    const text = formatCounterSpreads(s as NonNullable<typeof s>);
    expect(text).toContain('of 3 nodes');
    expect(text).toMatch(/ {2}x {2}20 \(10–30\)/);
    expect(counterSpreads([['nothing'], []])).toBeUndefined();
  });
});
