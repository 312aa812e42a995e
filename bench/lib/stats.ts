/** Median of a list of numbers (benchmarks quote medians: the machines are shared and noisy). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Runs `fn` `runs` times and returns each run's result. */
export async function repeat<T>(runs: number, fn: (i: number) => Promise<T> | T): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < runs; i++) out.push(await fn(i));
  return out;
}

export function gbps(bytes: number, seconds: number): number {
  return bytes / seconds / 1e9;
}

export function fmt(x: number, digits = 2): string {
  return x.toFixed(digits);
}
