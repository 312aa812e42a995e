import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { nastyKey, onlyTypedErrors } from '../helpers/fuzz.ts';

// Property-based fuzzing (issue 9, item 13) of the one config parser that the config file, the CLI and (later) the
// kernel command line all feed: anything in gives a complete config or RSW_ERR_CONFIG_INVALID.

const defaults = loadConfig();

/** Every path to a leaf of the default config, e.g. ['chunker', 'squashfs', 'minSize']. */
function leaves(v: unknown, path: string[] = []): string[][] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return [path];
  return Object.entries(v).flatMap(([k, child]) => leaves(child, [...path, k]));
}
const paths = leaves(defaults);

function withValue(path: string[], value: unknown): Record<string, unknown> {
  return path.reduceRight<unknown>((acc, key) => ({ [key]: acc }), value) as Record<string, unknown>;
}

const json = fc.jsonValue({ maxDepth: 2 });

describe('fuzz: config', () => {
  it('arbitrary values at any known key, or anywhere, give a config or RSW_ERR_CONFIG_INVALID', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          json,
          fc.tuple(fc.constantFrom(...paths), json).map(([p, v]) => withValue(p, v)),
          fc.tuple(fc.constantFrom(...paths), fc.integer(), fc.double()).map(([p, i, d]) => ({
            ...withValue(p, i),
            ...withValue([...p.slice(0, -1), 'x'], d),
          })),
          fc.dictionary(fc.oneof(fc.string(), nastyKey), json, { maxKeys: 4 }),
        ),
        (partial) => {
          const c = onlyTypedErrors(() => loadConfig(partial), ['RSW_ERR_CONFIG_INVALID']);
          if (!(c instanceof Error)) expect(leaves(c).length).toBe(paths.length);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a config round-trips through JSON unchanged', () => {
    expect(loadConfig(JSON.parse(JSON.stringify(defaults)))).toEqual(defaults);
  });
});
