// libp2p TLS with one certificate per process (cli/libp2p-tls.ts) between real libp2p nodes over TCP on 127.0.0.1:
// it must interoperate with @libp2p/tls as every earlier rackswarm uses it (which makes a certificate per connection),
// in both directions, still refuse a peer that is not the one dialled, and make its certificate once.
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tlsCertificatesMade, tlsCertificatesVerified } from '../../cli/libp2p-tls.ts';
import { tempDir } from '../helpers/cli.ts';
import { oursNode, stockTlsNode } from '../helpers/tls-nodes.ts';

const ECHO = '/rsw-test/echo/1.0.0';
let t: ReturnType<typeof tempDir>;
const stops: Array<() => unknown> = [];

beforeAll(() => {
  t = tempDir('rsw-tls-');
});
afterAll(async () => {
  for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  t?.cleanup();
});

async function withEcho(node: Libp2p): Promise<Libp2p> {
  stops.push(() => node.stop());
  await node.handle(ECHO, async (stream) => {
    const lp = lpStream(stream);
    await lp.write((await lp.read()).subarray());
    await stream.close();
  });
  return node;
}

/** A node of ours (certificate reused). */
async function ours(name: string): Promise<Libp2p> {
  return withEcho(await oursNode(t.dir, name));
}

/** A node with stock @libp2p/tls (a certificate per connection), as rackswarm 1.1.0 runs. */
async function stock(): Promise<Libp2p> {
  return withEcho(await stockTlsNode());
}

async function echo(from: Libp2p, to: Libp2p, text: string): Promise<string> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], ECHO);
  const lp = lpStream(stream);
  await lp.write(new TextEncoder().encode(text));
  const back = new TextDecoder().decode((await lp.read()).subarray());
  await stream.close();
  return back;
}

describe('libp2p TLS with one certificate per process', () => {
  it('interoperates with @libp2p/tls both ways, and makes one certificate for many connections', async () => {
    const before = tlsCertificatesMade();
    const a = await ours('a');
    const others = [await stock(), await stock(), await ours('b')];
    for (const [i, o] of others.entries()) {
      expect(await echo(a, o, `to ${i}`)).toBe(`to ${i}`); // a dials: a client handshake
      await a.hangUp(o.peerId);
      await vi.waitFor(() => expect(o.getConnections(a.peerId)).toHaveLength(0), {
        timeout: 10_000,
        interval: 20,
      });
      expect(await echo(o, a, `from ${i}`)).toBe(`from ${i}`); // the other dials: a server handshake
    }
    // a: 6 handshakes; b: 2. One certificate each.
    expect(tlsCertificatesMade() - before).toBe(2);
  }, 60_000);

  it("verifies a peer's certificate once, and a new certificate again", async () => {
    const before = tlsCertificatesVerified();
    const a = await ours('a-verifies');
    const b = await ours('b-verified');
    const c = await stock(); // a new certificate per connection
    for (const [o, name] of [
      [b, 'b'],
      [c, 'c'],
    ] as const) {
      for (let round = 0; round < 3; round++) {
        expect(await echo(round % 2 === 0 ? a : o, round % 2 === 0 ? o : a, `${name} ${round}`)).toBe(
          `${name} ${round}`,
        );
        await a.hangUp(o.peerId);
        await vi.waitFor(() => expect(o.getConnections(a.peerId)).toHaveLength(0), {
          timeout: 10_000,
          interval: 20,
        });
      }
    }
    // a verifies b's certificate once and c's three; b verifies a's once (c is stock: not counted).
    expect(tlsCertificatesVerified() - before).toBe(1 + 3 + 1);
  }, 60_000);

  it('still refuses a peer that is not the one dialled', async () => {
    const a = await ours('a-expects');
    const b = await stock();
    await expect(a.dial(await asSomeoneElse(b))).rejects.toThrow();
    expect(a.getConnections(b.peerId)).toHaveLength(0);
  }, 60_000);

  it('refuses a peer whose certificate it has verified before when another was dialled', async () => {
    const a = await ours('a-cached');
    const b = await ours('b-cached');
    expect(await echo(a, b, 'first')).toBe('first'); // b's certificate verified and remembered
    await a.hangUp(b.peerId);
    await expect(a.dial(await asSomeoneElse(b))).rejects.toThrow();
    expect(a.getConnections(b.peerId)).toHaveLength(0);
  }, 60_000);
});

/** `node`'s address with another, fresh peer id in place of its own: a dial that must be refused. */
async function asSomeoneElse(node: { getMultiaddrs(): { toString(): string }[] }) {
  const someoneElse = peerIdFromPrivateKey(await generateKeyPair('Ed25519'));
  return multiaddr(
    `${node
      .getMultiaddrs()[0]
      .toString()
      .replace(/\/p2p\/.*$/, '')}/p2p/${someoneElse}`,
  );
}
