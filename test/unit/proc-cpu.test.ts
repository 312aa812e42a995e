// bench/lib/proc-cpu.ts against a real process: the counters it reads from /proc move with what the process does.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { cpuBreakdownDelta, processCpuBreakdown } from '../../bench/lib/proc-cpu.ts';

describe('processCpuBreakdown', () => {
  it('counts a child process’s read system calls, CPU and threads, and is undefined once it is gone', async () => {
    // The child reads /proc/self/stat 500 times when told to, then says so and waits to be ended.
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         process.stdin.once('data', () => {
           for (let i = 0; i < 500; i++) fs.readFileSync('/proc/self/stat');
           let x = 0; for (let i = 0; i < 2e7; i++) x += i; // some CPU, so user time can move
           process.stdout.write('done ' + x + '\\n');
         });
         process.stdout.write('ready\\n');`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      await once(child.stdout, 'data');
      const before = processCpuBreakdown(child.pid);
      child.stdin.write('go\n');
      await once(child.stdout, 'data');
      const after = processCpuBreakdown(child.pid);
      expect(before).toBeDefined();
      expect(after).toBeDefined();
      const d = cpuBreakdownDelta(before, after);
      expect(d?.reads).toBeGreaterThanOrEqual(500);
      expect(d?.user).toBeGreaterThanOrEqual(0);
      expect(Object.keys(after?.threads ?? {}).length).toBeGreaterThan(0);
      expect((after?.user ?? 0) + (after?.sys ?? 0)).toBeGreaterThan(0);
      expect(after?.faults).toBeGreaterThan(0);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    expect(processCpuBreakdown(child.pid)).toBeUndefined();
    expect(cpuBreakdownDelta(undefined, processCpuBreakdown(process.pid))).toBeUndefined();
  });
});
