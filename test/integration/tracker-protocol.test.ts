import { createPrivateKey, createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { generatePublisherKeys } from '../../core/keys.ts';
import { createSignedManifest, openSignedManifest } from '../../core/signed-manifest.ts';
import { type AnnounceBody, TRACKER_PROTOCOL } from '../../core/tracker-messages.ts';
import { announce, fetchManifest } from '../../peer/tracker-client.ts';
import { Registry } from '../../tracker/registry.ts';
import { SwarmState } from '../../tracker/swarm-state.ts';
import { TrackerService } from '../../tracker/tracker-service.ts';
import { tempDir } from '../helpers/cli.ts';

let t: ReturnType<typeof tempDir>;
let registry: Registry;
let swarm: SwarmState;
let tracker: TrackerService;
let head: Libp2p;
const clients: Libp2p[] = [];
const keys = generatePublisherKeys();
const signed = createSignedManifest(
  {
    name: 'compute',
    version: 3,
    format: 'file',
    size: 10,
    chunks: [{ offset: 0, length: 10, hash: hashHex(Buffer.from('0123456789')) }],
  },
  createPrivateKey(keys.privatePem),
);
let announces = 0;

async function client(name: string): Promise<Libp2p> {
  const n = await createP2PNode({ keyFile: join(t.dir, `${name}.key`), listen: ['/ip4/127.0.0.1/tcp/0'] });
  clients.push(n);
  return n;
}

function body(node: Libp2p, progress: number, rack = 'r1'): AnnounceBody {
  return {
    imageId: signed.id,
    addrs: node.getMultiaddrs().map((a) => a.toString()),
    rack,
    progress,
    bytesDone: Math.round(progress * 10),
    downRate: 0,
    upRate: 0,
    bytesFromPeers: 0,
    bytesFromSeeder: 0,
    stage: progress >= 1 ? 'done' : 'fetching',
  };
}

beforeAll(async () => {
  t = tempDir('rsw-tracker-');
  registry = await Registry.open(t.dir);
  await registry.register(signed);
  swarm = new SwarmState();
  head = await createP2PNode({ keyFile: join(t.dir, 'head.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  tracker = new TrackerService(
    { swarm, registry, onAnnounce: () => announces++ },
    {
      handoutSize: 30,
      announceIntervalSeconds: 7,
      maxManifestBytes: 1 << 20,
      readTimeoutMs: 1000,
      maxInboundStreams: 4,
    },
  );
  await tracker.start(head);
});
afterAll(async () => {
  for (const c of clients) await c.stop();
  await tracker.stop();
  await head.stop();
  await registry.close();
  t.cleanup();
});

describe('tracker protocol over libp2p', () => {
  it('records announces under the authenticated peer id and hands out the other peers', async () => {
    const a = await client('a');
    const b = await client('b');
    const c = await client('c');
    const headAddr = head.getMultiaddrs()[0];
    await announce(a, headAddr, {
      ...body(a, 1),
      addrs: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWSpoofedSpoofedSpoofedSpoofedSpoofedSpoof'],
    });
    await announce(b, headAddr, body(b, 0.5, 'r2'));
    const r = await announce(c, headAddr, body(c, 0));
    expect(r.intervalSeconds).toBe(7);
    expect(r.peers.map((p) => p.peerId).sort()).toEqual([a.peerId.toString(), b.peerId.toString()].sort());
    expect(r.peers[0]).toMatchObject({ peerId: a.peerId.toString(), rack: 'r1', progress: 1 }); // same rack first
    const recordA = swarm.peer(a.peerId.toString(), signed.id);
    expect(recordA?.addrs).toEqual([`/ip4/127.0.0.1/tcp/1/p2p/${a.peerId.toString()}`]); // the claimed id is replaced
    expect(swarm.summary(signed.id)).toMatchObject({ peers: 3 });
    expect(announces).toBe(3);
  });

  it('serves signed manifests by name and version, or latest', async () => {
    const a = await client('m');
    for (const version of [3, 'latest'] as const) {
      const m = await fetchManifest(a, head.getMultiaddrs()[0], 'compute', version, { maxBytes: 1 << 20 });
      expect(m).toMatchObject({ id: signed.id, version: 3 });
      expect(
        openSignedManifest(m.envelope, [createPublicKey(keys.publicPem)], { maxBytes: 1 << 20 }).id,
      ).toBe(signed.id);
    }
    await expect(
      fetchManifest(a, head.getMultiaddrs()[0], 'compute', 9, { maxBytes: 1 << 20 }),
    ).rejects.toMatchObject({
      code: 'RSW_ERR_IMAGE_NOT_FOUND',
    });
    await expect(
      fetchManifest(a, head.getMultiaddrs()[0], '../x', 1, { maxBytes: 1 << 20 }),
    ).rejects.toMatchObject({
      code: 'RSW_ERR_INVALID_NAME',
    });
  });

  it('refuses malformed announces and garbage with a code, and keeps serving others', async () => {
    const a = await client('bad');
    const headAddr = head.getMultiaddrs()[0];
    await expect(announce(a, headAddr, { ...body(a, 0.1), imageId: 'nothex' })).rejects.toMatchObject({
      code: 'RSW_ERR_INVALID_ANNOUNCE',
    });
    await expect(announce(a, headAddr, { ...body(a, 0.1), stage: 'dancing' })).rejects.toMatchObject({
      code: 'RSW_ERR_INVALID_ANNOUNCE',
    });
    // Raw garbage, then an oversized length prefix, then silence: answered with an error or cut off.
    const outcomes: unknown[] = [];
    for (const payload of [Uint8Array.from([3, 1, 2, 3]), Uint8Array.from([0xff, 0xff, 0xff, 0x7f])]) {
      const stream = await a.dialProtocol(headAddr, TRACKER_PROTOCOL);
      const lp = lpStream(stream);
      stream.send(payload);
      outcomes.push(
        await lp.read({ signal: AbortSignal.timeout(5000) }).then(
          (m) => JSON.parse(new TextDecoder().decode(m.subarray())),
          () => `cut off (${stream.status})`,
        ),
      );
    }
    expect(outcomes).toEqual([
      { ok: false, code: 'RSW_ERR_PROTOCOL', message: 'tracker message is not UTF-8 JSON' },
      { ok: false, code: 'RSW_ERR_PROTOCOL', message: expect.stringMatching(/too long/i) },
    ]);
    const silent = await a.dialProtocol(headAddr, TRACKER_PROTOCOL);
    const reply = await lpStream(silent).read({ signal: AbortSignal.timeout(5000) });
    expect(JSON.parse(new TextDecoder().decode(reply.subarray()))).toMatchObject({
      ok: false,
      code: 'RSW_ERR_PROTOCOL',
    });
    // A well-behaved peer is still served.
    const good = await client('good');
    expect((await announce(good, headAddr, body(good, 0.2))).peers.length).toBeGreaterThan(0);
  });
});
