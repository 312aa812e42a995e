// A node in a rack tells its rack-mates which chunks it is fetching from the head, as it does for chunks it fetches
// from another rack (scheduler rules 4 and 6): the head is outside every rack, and without it a rack took the same
// chunk from the head and from another rack at once (the testbed's 2 racks × 8, the head's repeats after its
// super-seeding reserve). Real `rackswarm head` and `rackswarm fetch` processes, a real libp2p rack-mate on 127.0.0.1.
import { join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { HaveExchange } from '../../peer/have-exchange.ts';
import { announce } from '../../peer/tracker-client.ts';
import { fetchingBody } from '../helpers/announce.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { startFetchPeer } from '../helpers/fetch-peer.ts';
import { headWithImage } from '../helpers/head-with-image.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
const stops: Array<() => unknown> = [];

beforeAll(async () => {
  t = tempDir('rsw-rack-intents-');
  const r = await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  expect(r.code, r.stderr).toBe(0);
});
afterAll(async () => {
  for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  t?.cleanup();
});

describe('a fetch in a rack', () => {
  it('tells its rack-mates the chunks it asks the head for, and a neighbour in another rack nothing', async () => {
    // The head sends at 2 MiB/s: the 6 MiB fetch lasts long enough for the have exchanges to open.
    const { head, opened, fetchConfig } = await headWithImage({
      dir: t.dir,
      keysDir: join(t.dir, 'keys'),
      size: 6 * MiB,
      seed: 7,
      headConfig: { seeder: { totalBytesPerSecond: 2 * MiB } },
    });
    stops.push(() => head.stop('SIGKILL'));
    const chunks = opened.manifest.chunks.length;
    expect(chunks).toBeGreaterThan(2);

    // Two listeners that hold nothing and announce to the tracker as working peers: one in rack r0, one in r1.
    const listeners = await Promise.all(
      ['r0', 'r1'].map(async (rack) => {
        const node = await createP2PNode({
          keyFile: join(t.dir, `${rack}.key`),
          listen: ['/ip4/127.0.0.1/tcp/0'],
        });
        stops.push(() => node.stop());
        const intents: string[] = [];
        const exchange = new HaveExchange(node, {
          imageId: opened.id,
          chunkCount: chunks,
          has: () => false,
          rack,
          onImporting: (peerId, indices, on) => {
            for (const i of indices) intents.push(`${peerId} ${on ? '+' : '-'}${i}`);
          },
          onHave: () => {},
        });
        await exchange.start();
        stops.push(() => exchange.stop());
        await announce(
          node,
          multiaddr(head.p2p[0]),
          fetchingBody(
            opened.id,
            node.getMultiaddrs().map((a) => a.toString()),
            { rack },
          ),
        );
        return { rack, intents };
      }),
    );

    const fetch = startFetchPeer({
      head: head.url,
      pub: join(t.dir, 'keys/publisher.pub'),
      image: 'compute',
      dir: t.dir,
      name: 'n0',
      rack: 'r0',
      linger: 0,
      config: fetchConfig,
    });
    stops.push(() => fetch.stop());
    const summary = await fetch.summary;
    expect(summary.bytesFromSeeder).toBe(opened.manifest.size);
    const [mate, far] = listeners;
    // Every chunk came from the head; the rack-mate heard of most of them as intents before they arrived (the
    // first batch may go out before its have exchange opened).
    await vi.waitFor(() => expect(mate.intents.length).toBeGreaterThan(0), { timeout: 10_000, interval: 50 });
    const announced = new Set(
      mate.intents.filter((s) => s.includes(' +')).map((s) => Number(s.split('+')[1])),
    );
    expect(announced.size).toBeGreaterThan(0);
    for (const i of announced) expect(i).toBeLessThan(chunks);
    expect(mate.intents.filter((s) => s.includes(' -'))).toEqual([]); // nothing given up
    expect(far.intents).toEqual([]);
    expect(await fetch.stop()).toBe(0);
  }, 90_000);
});
