// cli/start-steps.ts: a fetch's start steps on stderr only when RSW_FETCH_STEPS is set, once per name, and read back.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseStepLine } from '../../cli/start-steps.ts';

const module = fileURLToPath(new URL('../../cli/start-steps.ts', import.meta.url));
const script = `const { startSteps } = await import(${JSON.stringify(module)});
const step = startSteps();
step('begin'); for (let i = 0; i < 1e6; i++) Math.sqrt(i); step('run'); step('run'); step('firstChunk');`;

function run(env: Record<string, string>): string[] {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  expect(r.status).toBe(0);
  return r.stderr.split('\n').filter(Boolean);
}

describe('start steps', () => {
  it('writes each named step once, in order, with times and CPU that grow, when RSW_FETCH_STEPS is set', () => {
    const lines = run({ RSW_FETCH_STEPS: '1' }).map(parseStepLine);
    expect(lines.map((l) => l?.step)).toEqual(['begin', 'run', 'firstChunk']);
    const [a, b] = lines as Array<NonNullable<(typeof lines)[0]>>;
    expect(b.ms).toBeGreaterThanOrEqual(a.ms);
    expect(b.cpuMs).toBeGreaterThanOrEqual(a.cpuMs);
    expect(b.monoUs).toBeGreaterThan(a.monoUs ?? Number.POSITIVE_INFINITY);
  });

  it('writes nothing without it, and other lines are not steps', () => {
    const { RSW_FETCH_STEPS: _, ...rest } = process.env;
    expect(run({ ...rest, RSW_FETCH_STEPS: '' })).toEqual([]);
    expect(parseStepLine('mesh: {"streamsHandled":{}}')).toBeUndefined();
    expect(parseStepLine('{"step":1}')).toBeUndefined();
  });
});
