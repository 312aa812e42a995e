/**
 * The nodes' event counters (RSW_COUNTERS=1, core/counters.ts): each fetch writes one `counters {…}` stderr line when
 * it is done; this takes, counter by counter, the median over the nodes that wrote one (a counter a node lacks is 0
 * for it), with the min and max.
 */
import { parseCounterLine } from '../../core/counters.ts';
import { median } from '../lib/stats.ts';

export interface CounterSpread {
  min: number;
  median: number;
  max: number;
}

/** Per counter, over the nodes whose stderr lines held a counter line (the last one of each); undefined: none did. */
export function counterSpreads(
  nodes: string[][],
): { nodes: number; counters: Record<string, CounterSpread> } | undefined {
  const per = nodes.flatMap((lines) => {
    const found = lines.map(parseCounterLine).filter((c) => c !== undefined);
    return found.length > 0 ? [found[found.length - 1]] : [];
  });
  if (per.length === 0) return undefined;
  const names = [...new Set(per.flatMap((c) => Object.keys(c)))].sort();
  const counters: Record<string, CounterSpread> = {};
  for (const name of names) {
    const xs = per.map((c) => c[name] ?? 0);
    counters[name] = { min: Math.min(...xs), median: median(xs), max: Math.max(...xs) };
  }
  return { nodes: per.length, counters };
}

/** One line per counter: `name  median (min–max)`. */
export function formatCounterSpreads(s: NonNullable<ReturnType<typeof counterSpreads>>): string {
  const w = Math.max(...Object.keys(s.counters).map((n) => n.length));
  return [
    `counters (RSW_COUNTERS), per node from its release to its summary, median (min–max) of ${s.nodes} nodes:`,
    ...Object.entries(s.counters).map(
      ([n, c]) => `  ${n.padEnd(w)}  ${fmt(c.median)} (${fmt(c.min)}–${fmt(c.max)})`,
    ),
  ].join('\n');
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}
