// cli/p2p-node.ts skips libp2p's peer-store merge for a stream whose protocol it already recorded for a connected
// peer (skipRepeatedProtocolMerges). Real nodes over TCP on 127.0.0.1 (libp2p TLS, yamux): the protocol is recorded
// on both sides with the first stream, the repeats are skipped, and a reconnect records again.
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { afterAll, expect, it } from 'vitest';
import { createP2PNode, peerStoreMergesSkipped, stopP2PNode } from '../../cli/p2p-node.ts';
import { tempDir } from '../helpers/cli.ts';

const PROTOCOL = '/rackswarm-test/echo/1.0.0';
const t = tempDir();
const nodes: Libp2p[] = [];
afterAll(async () => {
  await Promise.all(nodes.map((n) => stopP2PNode(n)));
  t.cleanup();
});

async function node(name: string): Promise<Libp2p> {
  const n = await createP2PNode({ keyFile: join(t.dir, `${name}.key`), listen: ['/ip4/127.0.0.1/tcp/0'] });
  nodes.push(n);
  await n.handle(PROTOCOL, (stream) => {
    void stream.close().catch(() => {});
  });
  return n;
}

async function streams(from: Libp2p, to: Libp2p, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const stream = await from.dialProtocol(to.getMultiaddrs(), PROTOCOL);
    await stream.close();
  }
}

it('records a protocol once per connection and skips the repeats, on both sides', async () => {
  const [a, b] = [await node('a'), await node('b')];
  await streams(a, b, 5);
  // Both sides have it in the peer store, as libp2p alone would have it.
  expect((await a.peerStore.get(b.peerId)).protocols).toContain(PROTOCOL);
  await expect.poll(async () => (await b.peerStore.get(a.peerId)).protocols).toContain(PROTOCOL);
  // The first stream was merged; the four after it were not (the dialler), nor the accepted ones after the first.
  expect(peerStoreMergesSkipped(a)).toBe(4);
  await expect.poll(() => peerStoreMergesSkipped(b)).toBe(4);

  // A disconnect forgets the peer: the first stream after a reconnect is merged again, the second skipped.
  await a.hangUp(b.peerId);
  await expect.poll(() => a.getConnections(b.peerId).length + b.getConnections(a.peerId).length).toBe(0);
  await a.peerStore.delete(b.peerId);
  await streams(a, b, 2);
  expect((await a.peerStore.get(b.peerId)).protocols).toContain(PROTOCOL);
  expect(peerStoreMergesSkipped(a)).toBe(5);
});
