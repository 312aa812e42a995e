// A neighbour whose have exchange breaks (its stream aborted, a dial timed out while one side was frozen or cut off)
// must not stay a source whose holdings are never learnt: the node forgets it and meets it again at the tracker's next
// handout, over a new exchange. Found as a flake of linger.test.ts: a node frozen (SIGSTOP) while dialling its only
// neighbour timed the dial out on thaw and then took every byte from the throttled head.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { hashHex } from '../../core/hash.ts';
import { loadPublicKey } from '../../core/keys.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { startEvilPeer } from '../helpers/evil-peer.ts';
import { startFetchPeer } from '../helpers/fetch-peer.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
let t: ReturnType<typeof tempDir>;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(() => {
  t = tempDir('rsw-recovery-');
});
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
  t?.cleanup();
});

describe('a neighbour whose exchange broke', () => {
  it('is met again at the next handout and its chunks are used', async () => {
    const keys = join(t.dir, 'keys');
    expect((await runCli(['keys', 'generate', '--out', keys])).code).toBe(0);
    const pub = join(keys, 'publisher.pub');
    // The head at 2 MiB/s (16 s for the image alone) and announces every second: the handouts come often, and the
    // head alone would be slow enough that a node which never learns its neighbour's holdings shows it.
    writeFileSync(
      join(t.dir, 'head.json'),
      JSON.stringify({ tracker: { announceIntervalSeconds: 1 }, seeder: { totalBytesPerSecond: 2 * MiB } }),
    );
    const head: RunningHead = await startHead(
      join(t.dir, 'head'),
      [],
      ['--config', join(t.dir, 'head.json')],
    );
    stops.push(() => head.stop('SIGKILL'));
    const image = pseudoRandomBytes(SIZE, 4242);
    writeFileSync(join(t.dir, 'image.bin'), image);
    const p = await publishToHead(
      head.url,
      join(t.dir, 'head/admin-token'),
      join(t.dir, 'image.bin'),
      'compute',
      join(keys, 'publisher.key'),
    );
    expect(p.code, p.stderr).toBe(0);
    const res = await fetch(`${head.url}/api/images/compute/latest/manifest`);
    const opened = openSignedManifest(Buffer.from(await res.arrayBuffer()), [await loadPublicKey(pub)], {
      maxBytes: 16 * MiB,
    });
    // A complete seeder that serves true chunks but aborts the first have-exchange stream opened to it, and never
    // opens one itself: only the fetching node can mend the exchange.
    const flaky = await startEvilPeer({
      dir: t.dir,
      tracker: head.p2p[0],
      imageId: opened.id,
      manifest: opened.manifest,
      behaviour: 'honest',
      image,
      abortExchanges: 1,
      announceEveryMs: 1000,
    });
    stops.push(() => flaky.stop());

    writeFileSync(join(t.dir, 'fetch.json'), JSON.stringify({ peer: { listen: ['/ip4/127.0.0.1/tcp/0'] } }));
    const node = startFetchPeer({
      head: head.url,
      pub,
      image: 'compute',
      dir: t.dir,
      name: 'n0',
      linger: 0,
      config: join(t.dir, 'fetch.json'),
    });
    stops.push(() => node.stop());
    const s = (await node.summary) as unknown as FetchSummary;
    expect(hashHex(readFileSync(join(t.dir, 'n0.img')))).toBe(hashHex(image));
    console.log(
      `neighbour recovery: first exchange aborted ${flaky.exchangesAborted()}×; from the neighbour ` +
        `${(s.bytesFromPeers / MiB).toFixed(1)} MiB, from the head ${(s.bytesFromSeeder / MiB).toFixed(1)} MiB ` +
        `in ${s.seconds.toFixed(1)} s`,
    );
    // The fault happened (else this proves nothing)…
    expect(flaky.exchangesAborted()).toBe(1);
    // …and the node came back to the neighbour: most of the image came from it, not from the 2 MiB/s head.
    expect(s.bytesFromPeers).toBeGreaterThan(SIZE / 2);
  }, 120_000);
});
