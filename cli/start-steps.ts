// The steps of a fetch's start (libp2p up, head dialled, manifest, first tracker answer, first request, first chunk…),
// each with the process's own CPU then: with RSW_FETCH_STEPS=1 in its environment a fetch writes one line per step
// to stderr, `{"step":NAME,"ms":…,"cpuMs":…,"monoUs":…}`: ms since the fetch began; cpuMs the process's user + system
// CPU since it started, so a reader that knows its CPU at some instant (the testbed's release) can take differences;
// monoUs the monotonic clock in µs, as V8's --cpu-prof timestamps count it (a profile's samples between two steps).
// The testbed (bench/testbed) times each line's arrival from its release and reports the medians per step.

/** Calls `step(name)` at each point of the start; only the first call of each name counts. */
export type StepMark = (name: string) => void;

const noop: StepMark = () => {};

/** A StepMark writing to stderr when RSW_FETCH_STEPS is set in `env`, else one that does nothing. */
export function startSteps(env: NodeJS.ProcessEnv = process.env, began = performance.now()): StepMark {
  if (!env.RSW_FETCH_STEPS) return noop;
  const seen = new Set<string>();
  return (name) => {
    if (seen.has(name)) return;
    seen.add(name);
    const c = process.cpuUsage();
    process.stderr.write(
      `${JSON.stringify({ step: name, ms: Math.round(performance.now() - began), cpuMs: Math.round((c.user + c.system) / 1000), monoUs: Number(process.hrtime.bigint() / 1000n) })}\n`,
    );
  };
}

/** Parses a step line written by startSteps, or undefined for any other line. */
export function parseStepLine(
  line: string,
): { step: string; ms: number; cpuMs: number; monoUs?: number } | undefined {
  if (!line.startsWith('{"step":')) return undefined;
  try {
    const v = JSON.parse(line) as { step: unknown; ms: unknown; cpuMs: unknown; monoUs: unknown };
    if (typeof v.step !== 'string' || typeof v.ms !== 'number' || typeof v.cpuMs !== 'number')
      return undefined;
    return {
      step: v.step,
      ms: v.ms,
      cpuMs: v.cpuMs,
      ...(typeof v.monoUs === 'number' ? { monoUs: v.monoUs } : {}),
    };
  } catch {
    return undefined;
  }
}
