// A stopped libp2p node must not keep its process alive: libp2p 3's address manager leaves a 1 s debounce timer
// behind when the transports close, so every fetch exited ~1 s after its summary. stopP2PNode (cli/p2p-node.ts)
// cancels it. Real nodes over TCP on 127.0.0.1, connected, in a fresh process each (test/fixtures/p2p-stop.ts), so
// no other timer of the test runner is counted.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('../fixtures/p2p-stop.ts', import.meta.url));

function timersAfterStop(how: 'helper' | 'plain'): number {
  const r = spawnSync(process.execPath, [fixture, how], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as { timers: number }).timers;
}

it('stopP2PNode leaves no timer keeping the process alive', () => {
  expect(timersAfterStop('helper')).toBe(0);
});

it('a plain stop() leaves libp2p timers behind (why stopP2PNode exists; if libp2p fixes it, this fails and the helper can go)', () => {
  expect(timersAfterStop('plain')).toBeGreaterThan(0);
});
