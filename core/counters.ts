/**
 * Event counters for finding where a node's CPU goes (how many frames, messages, reads, writes and loop turns a fetch
 * costs), off unless `RSW_COUNTERS=1` is in the environment. `count()` is then a Map increment; off, a test of a
 * constant. A fetch writes them as one stderr line, `counters {…}`, when it is done (cli/fetch-image.ts), and the
 * testbed prints the median node's (bench/testbed: counters.ts).
 */

const on = /^(1|true|yes)$/i.test(process.env.RSW_COUNTERS ?? '');
const counts = new Map<string, number>();

/** Whether counting is on (RSW_COUNTERS=1): for hooks that cost something to install. */
export function countersOn(): boolean {
  return on;
}

/** Adds `n` to counter `name` (no-op unless RSW_COUNTERS=1). */
export function count(name: string, n = 1): void {
  if (on) counts.set(name, (counts.get(name) ?? 0) + n);
}

/** Every counter so far, by name (sorted). */
export function counterSnapshot(): Record<string, number> {
  return Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The stderr line a process writes its counters as (`counters {json}`), or undefined when counting is off. */
export function counterLine(): string | undefined {
  return on ? `counters ${JSON.stringify(counterSnapshot())}\n` : undefined;
}

/** The counters of a `counters {json}` line, or undefined for any other line. */
export function parseCounterLine(line: string): Record<string, number> | undefined {
  if (!line.startsWith('counters {')) return undefined;
  try {
    return JSON.parse(line.slice('counters '.length)) as Record<string, number>;
  } catch {
    return undefined;
  }
}
