import fc from 'fast-check';
import { expect } from 'vitest';
import { ERRORS, RswError } from '../../core/errors.ts';

/**
 * Runs `parse`; it may return anything, or throw an RswError whose code is in the registry (and, when `codes` is
 * given, one of those). Any other throw — a TypeError, a RangeError from a Buffer read, an unregistered code — is
 * what a fuzz property looks for.
 */
export function onlyTypedErrors<T>(parse: () => T, codes?: readonly string[]): T | RswError {
  try {
    return parse();
  } catch (e) {
    if (!(e instanceof RswError)) throw new Error(`untyped error: ${String(e)}`, { cause: e });
    expect(Object.hasOwn(ERRORS, e.code), `unregistered code ${e.code}`).toBe(true);
    if (codes) expect(codes).toContain(e.code);
    return e;
  }
}

/** 64 lowercase hex digits (a BLAKE3-256 hash or an image id). */
export const hexHash = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => Buffer.from(b).toString('hex'));

/**
 * Mutations of a valid encoding: random bytes alone rarely get past a magic number, so most inputs start from a
 * real one and flip bits, truncate, overwrite or append.
 */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 512 }),
    fc.tuple(valid, fc.nat(), fc.integer({ min: 0, max: 7 })).map(([v, at, bit]) => {
      const out = Buffer.from(v);
      if (out.length > 0) out[at % out.length] ^= 1 << bit;
      return out;
    }),
    fc.tuple(valid, fc.nat()).map(([v, n]) => Buffer.from(v).subarray(0, n % (v.length + 1))),
    fc.tuple(valid, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([v, at, bytes]) => {
      const out = Buffer.from(v);
      out.set(bytes.subarray(0, Math.max(0, out.length - (at % (out.length + 1)))), at % (out.length + 1));
      return out;
    }),
    fc
      .tuple(valid, fc.uint8Array({ minLength: 1, maxLength: 64 }))
      .map(([v, tail]) => Buffer.concat([v, tail])),
  );
}

/** Strings that break naive `key in object` lookups and JSON handling. */
export const nastyKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '',
  'RSW_ERR_',
  '\u0000',
);
