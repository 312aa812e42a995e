import { execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type CpioEntry, cpioPieces, readCpio } from '../../boot/cpio.ts';
import { tempDir } from '../helpers/cli.ts';

async function archive(entries: CpioEntry[]): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const p of cpioPieces(entries)) parts.push(p);
  return Buffer.concat(parts);
}

const tmp = tempDir('rsw-cpio-');
afterAll(() => tmp.cleanup());

describe('cpio newc writer', () => {
  it('writes an archive GNU cpio extracts: dirs, files (host and inline), symlinks, device nodes listed', async () => {
    const host = join(tmp.dir, 'host.bin');
    writeFileSync(host, Buffer.alloc(5000, 7));
    const buf = await archive([
      { type: 'dir', path: 'bin' },
      { type: 'file', path: '/bin/hello', mode: 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') },
      { type: 'hostfile', path: 'big', source: host, size: 5000 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      { type: 'dir', path: 'dev' },
      { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    ]);
    expect(buf.length % 4).toBe(0);
    const out = join(tmp.dir, 'x');
    execFileSync('mkdir', ['-p', out]);
    // Not root-only: GNU cpio skips mknod without privileges, so list first, then extract regular entries.
    const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: buf }).toString();
    expect(listing).toMatch(/^crw------- .* 5,\s+1 .*dev\/console$/m);
    execFileSync('cpio', ['-id', '--quiet', '--no-absolute-filenames', 'bin/*', 'big'], {
      cwd: out,
      input: buf,
    });
    expect(readFileSync(join(out, 'bin/hello'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect(lstatSync(join(out, 'bin/hello')).mode & 0o777).toBe(0o755);
    expect(readlinkSync(join(out, 'bin/sh'))).toBe('busybox');
    expect(readFileSync(join(out, 'big')).equals(Buffer.alloc(5000, 7))).toBe(true);
  });

  it('refuses duplicate and escaping paths', async () => {
    await expect(
      archive([
        { type: 'dir', path: 'a' },
        { type: 'dir', path: '/a' },
      ]),
    ).rejects.toMatchObject({
      code: 'RSW_ERR_USAGE',
    });
    await expect(archive([{ type: 'dir', path: 'a/../b' }])).rejects.toMatchObject({ code: 'RSW_ERR_USAGE' });
  });

  it('property: every entry reads back with its path, type bits, size and bytes', async () => {
    const seg = fc.stringMatching(/^[a-zA-Z0-9_.-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
    const entry: fc.Arbitrary<CpioEntry> = fc.oneof(
      fc.record({ type: fc.constant('dir' as const), path: seg }),
      fc.record({ type: fc.constant('file' as const), path: seg, data: fc.uint8Array({ maxLength: 300 }) }),
      fc.record({
        type: fc.constant('symlink' as const),
        path: seg,
        target: fc.string({ minLength: 1, maxLength: 40 }),
      }),
      fc.record({ type: fc.constant('chardev' as const), path: seg, major: fc.nat(255), minor: fc.nat(255) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(entry, { selector: (e) => e.path, maxLength: 12 }), async (entries) => {
        const back = readCpio(await archive(entries));
        expect(back.map((r) => r.path)).toEqual(entries.map((e) => e.path));
        entries.forEach((e, i) => {
          const r = back[i];
          const type = {
            dir: 0o040000,
            file: 0o100000,
            symlink: 0o120000,
            chardev: 0o020000,
            hostfile: 0o100000,
          }[e.type];
          expect(r.mode & 0o170000).toBe(type);
          if (e.type === 'file') expect(Buffer.from(e.data).equals(r.data)).toBe(true);
          if (e.type === 'symlink') expect(r.data.toString()).toBe(e.target);
          if (e.type === 'chardev') expect([r.rdevMajor, r.rdevMinor]).toEqual([e.major, e.minor]);
        });
      }),
      { numRuns: 200 },
    );
  });
});
