import * as crypto from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { isAuthorized } from '../../tracker/admin-token.ts';

// Issue 9 item 12: the admin token comparison is constant-time. Timing is not asserted (no timing asserts in tests);
// what is asserted is the mechanism: every check goes through crypto.timingSafeEqual over two 32-byte digests, so
// neither the token's length nor a matching prefix changes the work done.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const TOKEN = crypto.randomBytes(32).toString('hex');

describe('admin token comparison', () => {
  it('accepts exactly "Bearer <token>" and compares equal-length digests with timingSafeEqual every time', () => {
    const spy = vi.mocked(crypto.timingSafeEqual);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.string({ maxLength: 200 }).map((s) => `Bearer ${s}`),
          fc.nat({ max: 64 }).map((n) => `Bearer ${TOKEN.slice(0, n)}`),
          fc.constant(`Bearer ${TOKEN}`),
        ),
        (header) => {
          spy.mockClear();
          expect(isAuthorized(header, TOKEN)).toBe(header === `Bearer ${TOKEN}`);
          expect(spy).toHaveBeenCalledTimes(1);
          const [a, b] = spy.mock.calls[0] as [Uint8Array, Uint8Array];
          expect([a.byteLength, b.byteLength]).toEqual([32, 32]);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a missing header or an empty token never authorizes', () => {
    expect(isAuthorized(undefined, TOKEN)).toBe(false);
    expect(isAuthorized('Bearer ', TOKEN)).toBe(false);
    expect(isAuthorized('', '')).toBe(false);
  });
});
