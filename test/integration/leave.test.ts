// A node that is done and exits says so (announce stage `stopped`): the tracker stops handing it out, and the head's
// super-seeding no longer holds back, for it to pass on, the chunks it sent it first. Before, a fetch started right
// after another one had exited got `busy` from the head for every chunk until the reserve ran out (10 s by default).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import type { RunningHead } from '../helpers/head.ts';
import { headWithImage } from '../helpers/head-with-image.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let imageHash: string;
let fetchConfig: string;

async function seederBusy(): Promise<number> {
  const text = await (await fetch(`${head.url}/metrics`)).text();
  const m = /^rsw_seeder_busy_total (\d+)/m.exec(text);
  if (!m) throw new Error(`no rsw_seeder_busy_total in /metrics:\n${text.slice(0, 2000)}`);
  return Number(m[1]);
}

function fetchAndExit(n: string) {
  const out = ['--out', join(t.dir, `out-${n}`), '--cache', join(t.dir, `cache-${n}`)];
  const trust = ['--trust', join(t.dir, 'keys/publisher.pub')];
  return runCli(
    [
      '--config',
      fetchConfig,
      'fetch',
      'compute',
      '--head',
      head.url,
      ...trust,
      ...out,
      '--linger',
      '0',
      '--json',
    ],
    {
      timeoutMs: 90_000,
    },
  );
}

beforeAll(async () => {
  t = tempDir('rsw-leave-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  // A reserve far longer than the test: were it still held for the node that left, the second fetch would be
  // refused every chunk for a minute.
  const h = await headWithImage({
    dir: t.dir,
    keysDir: join(t.dir, 'keys'),
    size: 8 * MiB,
    seed: 23,
    headConfig: { tracker: { announceIntervalSeconds: 1 }, seeder: { reserveAfterMs: 60_000 } },
  });
  head = h.head;
  fetchConfig = h.fetchConfig;
  imageHash = hashHex(h.image);
}, 120_000);
afterAll(async () => {
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('a node that leaves', () => {
  it('is no longer handed out, and the head serves the next node at once what it had sent the leaver first', async () => {
    const busy0 = await seederBusy();
    const a = await fetchAndExit('a');
    expect(a.code, a.stderr).toBe(0);
    expect(await seederBusy()).toBe(busy0); // a alone: nothing refused
    // a's record stays, done, for the dashboard
    const swarm = (await (await fetch(`${head.url}/api/swarm`)).json()) as {
      images: { peers: { stage: string }[] }[];
    };
    expect(swarm.images[0].peers.map((p) => p.stage)).toEqual(['done']);

    const b = await fetchAndExit('b');
    expect(b.code, b.stderr).toBe(0);
    const summary = JSON.parse(b.stdout.trim().split('\n').pop() as string);
    expect(summary.bytesFromSeeder).toBe(8 * MiB); // a was gone: everything from the head,
    expect(await seederBusy()).toBe(busy0); // which refused b nothing it had sent a first
    expect(hashHex(readFileSync(join(t.dir, 'out-b')))).toBe(imageHash);
  }, 240_000);
});
