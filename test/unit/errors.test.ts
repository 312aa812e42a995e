import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { asDataError, ERRORS, formatError, RswError } from '../../core/errors.ts';
import { projectRoot } from '../helpers/cli.ts';

describe('error registry', () => {
  it('is exactly the list documented in docs/ERRORS.md', () => {
    const doc = readFileSync(join(projectRoot, 'docs/ERRORS.md'), 'utf8');
    const documented = [...doc.matchAll(/^\| `(RSW_ERR_[A-Z_]+)` \| (\d+) \| (\d+) \| (.+) \|$/gm)].map(
      (m) => [m[1], { status: Number(m[2]), exit: Number(m[3]), summary: m[4] }],
    );
    expect(Object.fromEntries(documented)).toEqual(ERRORS);
  });

  it('formats one line with the code, never a stack', () => {
    expect(formatError(new RswError('RSW_ERR_EMPTY_FILE', 'x is empty'))).toBe(
      'error RSW_ERR_EMPTY_FILE: x is empty',
    );
    expect(formatError(new Error('boom\n    at somewhere'))).toBe('error RSW_ERR_INTERNAL: boom');
  });

  it('maps disk-full and read-only filesystem errors to their codes', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space'), { code: 'ENOSPC' });
    const erofs = Object.assign(new Error('EROFS'), { code: 'EROFS' });
    expect(asDataError(enospc, 'w')).toMatchObject({ code: 'RSW_ERR_DISK_FULL' });
    expect(asDataError(erofs, 'w')).toMatchObject({ code: 'RSW_ERR_DATA_UNWRITABLE' });
    const other = new Error('other');
    expect(asDataError(other, 'w')).toBe(other);
  });
});
