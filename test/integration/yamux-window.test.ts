// Yamux whose small data frames draw no window update each (cli/yamux-window.ts), between real libp2p nodes over TCP
// on 127.0.0.1: small frames cost no window update each (stock sends one per frame), large frames are answered as
// stock does (6 MiB through the 256 KiB window), and it interoperates with stock @chainsafe/libp2p-yamux both ways.
import type { Libp2p } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { YAMUX_STREAM_OPTIONS } from '../../cli/p2p-node.ts';
import { windowUpdateStats } from '../../cli/yamux-window.ts';
import { HAVE_PROTOCOLS } from '../../core/wire.ts';
import { tempDir } from '../helpers/cli.ts';
import { oursNode, stockTlsNode } from '../helpers/tls-nodes.ts';

// The have exchange's protocols: only their streams defer their updates (cli/p2p-node.ts); the sink stands in for the
// exchange, by default on the version it prefers (the newest: session 13's 1.2.0 was left out of the deferring list).
const SINK = HAVE_PROTOCOLS[0];
/** Any other protocol: stock updates, one per data frame. */
const OTHER = '/rsw-test/sink/1.0.0';
const KiB = 1024;
let t: ReturnType<typeof tempDir>;
const stops: Array<() => unknown> = [];

beforeAll(() => {
  t = tempDir('rsw-yamux-');
});
afterAll(async () => {
  for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  t?.cleanup();
});

/** Reads length-prefixed messages until the remote closes, then answers with how many and how many bytes. */
async function withSink(node: Libp2p): Promise<Libp2p> {
  stops.push(() => node.stop());
  await node.handle([...HAVE_PROTOCOLS, OTHER], async (stream) => {
    const lp = lpStream(stream, { maxDataLength: 1024 * KiB });
    let messages = 0;
    let bytes = 0;
    for (;;) {
      const m = await lp.read().catch(() => undefined);
      if (!m) break;
      messages++;
      bytes += m.byteLength;
    }
    await lp.write(new TextEncoder().encode(JSON.stringify({ messages, bytes })));
    await stream.close();
  });
  return node;
}

async function ours(name: string): Promise<Libp2p> {
  return withSink(await oursNode(t.dir, name));
}

/** Stock yamux (a window update after every data frame), the same stream options as every rackswarm node. */
async function stock(): Promise<Libp2p> {
  return withSink(await stockTlsNode({ streamOptions: YAMUX_STREAM_OPTIONS }));
}

/** Sends `count` messages of `size` bytes, one at a time (each its own data frame), and returns what the sink saw. */
async function send(
  from: Libp2p,
  to: Libp2p,
  count: number,
  size: number,
  protocol = SINK,
): Promise<{ messages: number; bytes: number }> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], protocol);
  const lp = lpStream(stream, { maxDataLength: 1024 * KiB });
  const body = new Uint8Array(size).fill(7);
  for (let i = 0; i < count; i++) {
    await lp.write(body);
    await new Promise((resolve) => setImmediate(resolve)); // let each go out as its own frame
  }
  await stream.close({ signal: AbortSignal.timeout(30_000) });
  const answer = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as {
    messages: number;
    bytes: number;
  };
  return answer;
}

describe('yamux: no window update per small frame', () => {
  it('sends no window update per small frame, and still one when half the window is used', async () => {
    const a = await ours('a');
    const b = await ours('b');
    await send(a, b, 1, 10); // connect first: the handshake's own streams are not counted below
    const before = windowUpdateStats();
    expect(await send(a, b, 300, 40)).toEqual({ messages: 300, bytes: 300 * 40 });
    const small = windowUpdateStats();
    // stock: ~300 updates from b (one per data frame); deferred: the stream's SYN/ACK and close only
    expect(small.deferred - before.deferred).toBeGreaterThanOrEqual(300);
    expect(small.sent - before.sent).toBeLessThanOrEqual(10);
    // 6 MiB through a 256 KiB initial window: large frames draw an update each, as stock (≥ one per message)
    expect(await send(a, b, 96, 64 * KiB)).toEqual({ messages: 96, bytes: 96 * 64 * KiB });
    expect(windowUpdateStats().sent - small.sent).toBeGreaterThanOrEqual(96);
    // another protocol's small frames: an update each, as stock
    const other = windowUpdateStats();
    expect(await send(a, b, 100, 40, OTHER)).toEqual({ messages: 100, bytes: 100 * 40 });
    expect(windowUpdateStats().deferred - other.deferred).toBe(0);
    expect(windowUpdateStats().sent - other.sent).toBeGreaterThanOrEqual(100);
    // past half the window in small frames, the update comes (the sender would stall without it): 3,000 × 100 B
    expect(await send(a, b, 3000, 100)).toEqual({ messages: 3000, bytes: 3000 * 100 });
    // every version of the have exchange defers, not only the one the sink used above
    for (const protocol of HAVE_PROTOCOLS) {
      const at = windowUpdateStats();
      expect(await send(a, b, 100, 40, protocol)).toEqual({ messages: 100, bytes: 100 * 40 });
      expect(windowUpdateStats().deferred - at.deferred, protocol).toBeGreaterThanOrEqual(100);
      expect(windowUpdateStats().sent - at.sent, protocol).toBeLessThanOrEqual(10);
    }
  }, 60_000);

  it('interoperates with stock yamux both ways', async () => {
    const a = await ours('a-interop');
    const s = await stock();
    const patched = windowUpdateStats().patched;
    expect(await send(a, s, 96, 64 * KiB)).toEqual({ messages: 96, bytes: 96 * 64 * KiB });
    expect(await send(s, a, 96, 64 * KiB)).toEqual({ messages: 96, bytes: 96 * 64 * KiB });
    expect(await send(s, a, 200, 40)).toEqual({ messages: 200, bytes: 200 * 40 });
    expect(windowUpdateStats().patched).toBeGreaterThan(patched); // a's side of those streams was ours
  }, 60_000);
});
