// RELIABILITY item 2: peers that advertise every chunk but never serve one — one accepts chunk streams and stays
// silent, one answers `ok` and then sends the chunk at 1 byte per second — in a live swarm of a real head and four
// real `rackswarm fetch` processes. Their requests must move elsewhere: every node completes bit-identical, without
// banning anyone (a stall is not a lie), having taken (almost) nothing from them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { hashHex } from '../../core/hash.ts';
import { loadPublicKey } from '../../core/keys.ts';
import { openSignedManifest } from '../../core/signed-manifest.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { type EvilPeer, startEvilPeer } from '../helpers/evil-peer.ts';
import { type FetchPeer, startFetchPeer } from '../helpers/fetch-peer.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(() => {
  t = tempDir('rsw-stalls-');
});
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
  t?.cleanup();
});

describe('peers that stall', () => {
  it('one silent and one at 1 B/s, both claiming every chunk: requests move elsewhere, all complete, nobody banned', async () => {
    const keys = join(t.dir, 'keys');
    expect((await runCli(['keys', 'generate', '--out', keys])).code).toBe(0);
    const pub = join(keys, 'publisher.pub');
    // The head at 8 MiB/s: the fetch lasts seconds, time enough to be handed the stalling peers and to ask them.
    writeFileSync(join(t.dir, 'head.json'), JSON.stringify({ seeder: { totalBytesPerSecond: 8 * MiB } }));
    const head: RunningHead = await startHead(
      join(t.dir, 'head'),
      [],
      ['--config', join(t.dir, 'head.json')],
    );
    stops.push(() => head.stop('SIGKILL'));
    const image = pseudoRandomBytes(32 * MiB, 2222);
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

    const stallers: Record<'silent' | 'slow', EvilPeer> = {
      silent: await startEvilPeer({
        dir: join(t.dir),
        tracker: head.p2p[0],
        imageId: opened.id,
        manifest: opened.manifest,
        behaviour: 'silent',
      }),
      slow: await startEvilPeer({
        dir: join(t.dir, 'keys'), // another key file: another identity
        tracker: head.p2p[0],
        imageId: opened.id,
        manifest: opened.manifest,
        behaviour: 'slow',
        slowBytesPerSecond: 1,
        image,
      }),
    };
    for (const e of Object.values(stallers)) stops.push(() => e.stop());

    writeFileSync(join(t.dir, 'fetch.json'), JSON.stringify({ peer: { listen: ['/ip4/127.0.0.1/tcp/0'] } }));
    const t0 = Date.now();
    const fetchers: FetchPeer[] = Array.from({ length: 4 }, (_, i) =>
      startFetchPeer({
        head: head.url,
        pub,
        image: 'compute',
        dir: t.dir,
        name: `n${i}`,
        linger: 2,
        config: join(t.dir, 'fetch.json'),
      }),
    );
    for (const f of fetchers) stops.push(() => f.stop());
    const summaries = (await Promise.all(fetchers.map((f) => f.summary))) as unknown as FetchSummary[];
    const seconds = (Date.now() - t0) / 1000;
    for (const [i, s] of summaries.entries()) {
      expect(s.size).toBe(image.length);
      expect(s.banned, `n${i} banned a peer for stalling`).toBe(0);
      expect(hashHex(readFileSync(join(t.dir, `n${i}.img`))), `n${i} output`).toBe(hashHex(image));
    }
    // --linger 2: each exits by itself, cleanly, though the silent peer still holds a stream of it open.
    for (const f of fetchers) {
      const deadline = Date.now() + 30_000;
      while (f.child.exitCode === null && f.child.signalCode === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect([f.child.exitCode, f.child.signalCode], f.stderr()).toEqual([0, null]);
    }

    const asked = Object.fromEntries(
      Object.entries(stallers).map(([k, e]) => [
        k,
        [...e.streams.values()].reduce((a, l) => a + l.length, 0),
      ]),
    );
    console.log(
      `stalling peers: all 4 nodes complete in ${seconds.toFixed(1)} s; chunk streams opened to the silent peer ` +
        `${asked.silent}, to the slow one ${asked.slow}; bytes the slow one sent ${stallers.slow.bytesDribbled()}`,
    );
    // The nodes did ask them (else this proves nothing about moving requests elsewhere)…
    expect(asked.silent, 'streams to the silent peer').toBeGreaterThan(0);
    expect(asked.slow, 'streams to the slow peer').toBeGreaterThan(0);
    // …and every byte of every image came from the head and the honest nodes (a 1 B/s body never completes).
    expect(stallers.slow.bytesDribbled()).toBeLessThan(opened.manifest.chunks[0].length);
  }, 150_000);
});
