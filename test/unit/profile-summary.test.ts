// bench/testbed/profile-summary.ts on small hand-made V8 CPU profiles: buckets, modules and inclusive shares.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  bundleModuleOf,
  type CpuProfile,
  cutToWindow,
  profilePid,
  stepWindow,
  summarise,
} from '../../bench/testbed/profile-summary.ts';

const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });

// (root) → idle; (root) → main → hashHex; (root) → main → ondata(js_stream_socket) → readFile(fs) → work;
// (root) → main → ondata(js_stream_socket) → yamux
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 3] },
    { id: 2, callFrame: frame('(idle)') },
    { id: 3, callFrame: frame('main', 'file:///app/x.js', 10), children: [4, 5] },
    { id: 4, callFrame: frame('hashHex', 'file:///app/x.js', 20) },
    { id: 5, callFrame: frame('ondata', 'node:internal/js_stream_socket', 65), children: [6, 8] },
    { id: 6, callFrame: frame('readFile', 'node:internal/fs/promises', 1), children: [7] },
    { id: 7, callFrame: frame('work', 'file:///app/y.js', 5) },
    { id: 8, callFrame: frame('yamux', 'file:///app/y.js', 9) },
  ],
  samples: [2, 2, 2, 2, 4, 7, 7, 8],
};

describe('summarise', () => {
  it('leaves idle out and puts each busy sample in the first bucket one of its frames matches', () => {
    const s = summarise([profile, profile]);
    expect(s.busy).toBe(8);
    const share = (name: string) => s.buckets.find((b) => b.name.startsWith(name))?.share;
    expect(share('BLAKE3')).toBe(0.25);
    expect(share('file I/O')).toBe(0.5); // under a libp2p read, but file I/O comes first
    expect(share('libp2p inbound')).toBe(0.25);
    expect(share('other')).toBe(0);
    expect(s.buckets.reduce((a, b) => a + b.share, 0)).toBeCloseTo(1);
    expect(s.inclusive[0]).toEqual({ name: 'main x.js:10', share: 1 });
    expect(s.inclusive.find((f) => f.name.startsWith('ondata'))?.share).toBe(0.75);
    expect(s.modules[0]).toEqual({ name: 'file:///app/y.js', share: 0.75 });
    expect(s.modulesInclusive.find((m) => m.name === 'node:internal/fs/promises')?.share).toBe(0.5);
  });

  it('maps bundle lines to the modules esbuild marked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rsw-profile-summary-'));
    const file = join(dir, 'bundle.js');
    writeFileSync(
      file,
      ['// node_modules/@libp2p/tls/dist/src/index.js', 'a();', '// peer/bulk-client.ts', 'b();'].join('\n'),
    );
    const moduleOf = bundleModuleOf();
    const url = pathToFileURL(file).href;
    expect(moduleOf(frame('a', url, 1))).toBe('@libp2p/tls');
    expect(moduleOf(frame('b', url, 3))).toBe('peer/bulk-client.ts');
    expect(moduleOf(frame('writeBuffer'))).toBe('(native) writeBuffer');
    expect(moduleOf(frame('x', 'node:net', 3))).toBe('node:net');
    rmSync(dir, { recursive: true });
  });

  it("cuts a node's profile to the window between two of its start steps", () => {
    // samples at 1000 + 10, 20, ... 80 µs
    const timed: CpuProfile = { ...profile, startTime: 1000, timeDeltas: [10, 10, 10, 10, 10, 10, 10, 10] };
    const steps = [
      { t: 0.5, step: 'begin', monoUs: 500_035 },
      { t: 0.5, step: 'run', monoUs: 1030 },
      { t: 0.6, step: 'firstChunk', monoUs: 1070 },
    ];
    const window = stepWindow(steps, 'run', 'firstChunk');
    expect(window).toEqual([1030, 1070]);
    expect(cutToWindow(timed, ...(window as [number, number])).samples).toEqual([2, 2, 4, 7, 7]); // the 3rd to 7th, at 1030-1070
    expect(stepWindow(steps, 'release', 'begin')).toEqual([35, 500_035]);
    expect(stepWindow(steps, 'run', 'verified')).toBeUndefined();
    expect(stepWindow(steps, 'firstChunk', 'end')).toEqual([1070, Number.POSITIVE_INFINITY]);
    expect(cutToWindow(timed, 1070, Number.POSITIVE_INFINITY).samples).toEqual([7, 8]); // the 7th and 8th, at 1070-1080
    expect(() => cutToWindow(profile, 0, 1)).toThrow(/no sample times/);
    expect(profilePid('CPU.20261122.215243.10443.0.001.cpuprofile')).toBe(10443);
    expect(profilePid('other.json')).toBeUndefined();
  });
});
