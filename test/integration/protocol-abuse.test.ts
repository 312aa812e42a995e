import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Libp2p, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { TRACKER_PROTOCOL } from '../../core/tracker-messages.ts';
import {
  CHUNK_PROTOCOL,
  encodeChunkRequest,
  encodeChunkResponseHeader,
  encodeHave,
  HAVE_PROTOCOL,
} from '../../core/wire.ts';
import { fetchChunks } from '../../peer/chunk-client.ts';
import { HaveExchange } from '../../peer/have-exchange.ts';
import { announce } from '../../peer/tracker-client.ts';
import type { ChunkServer } from '../../seeder/chunk-server.ts';
import { fetchingBody } from '../helpers/announce.ts';
import { tempDir } from '../helpers/cli.ts';
import { startProtocolTarget } from '../helpers/protocol-target.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';
import { endOf, rawStream } from '../helpers/raw-stream.ts';

// Issue 9, Show item 3, on the real protocols over libp2p (TCP + encryption + yamux on 127.0.0.1): a length prefix of
// 2^31, a message longer than it declares, and garbage, on the chunk, have and tracker protocols. The stream ends
// (reset on the binary protocols; the tracker answers with its error code), a good client is still served, and memory
// stays flat over many rounds (generous bounds: the point is that a 2 GiB prefix is never honoured by allocation).

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;
const IMAGE_ID = 'cd'.repeat(32);
const MISSING = 'ab'.repeat(32);
/** The varint (unsigned LEB128) of 2^31, as a length prefix of @libp2p/utils' lpStream. */
const VARINT_2_31 = [0x80, 0x80, 0x80, 0x80, 0x08];

let t: ReturnType<typeof tempDir>;
let target: Libp2p;
let abuser: Libp2p;
let good: Libp2p;
let server: ChunkServer;
let exchange: HaveExchange;
const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(MiB + i, i));
const stops: Array<() => Promise<unknown> | unknown> = [];

async function node(name: string, listen = true): Promise<Libp2p> {
  const n = await createP2PNode({
    keyFile: join(t.dir, `${name}.key`),
    listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [],
  });
  stops.push(() => n.stop());
  return n;
}

beforeAll(async () => {
  t = tempDir('rsw-abuse-');
  // One node runs all three protocols: a seeder's chunk server, a peer's have exchange and the head's tracker.
  ({
    node: target,
    server,
    exchange,
  } = await startProtocolTarget({
    dir: t.dir,
    chunks,
    imageId: IMAGE_ID,
    limits: {
      maxStreamsPerPeer: 4,
      maxConcurrentTotal: 64,
      perPeerBytesPerSecond: 0,
      totalBytesPerSecond: 0,
      readTimeoutMs: 2000,
    },
    stops,
  }));
  abuser = await node('abuser');
  good = await node('good');
});
afterAll(async () => {
  while (stops.length) await stops.pop()?.();
  t?.cleanup();
});

const addr = () => target.getMultiaddrs()[0];
const lp = (n: number, body: Uint8Array) => Buffer.concat([Buffer.from([n]), body]);

/** Abusive inputs per protocol; every one must end its stream. */
const ABUSE: Record<string, { protocol: string; bytes: Uint8Array }[]> = {
  chunk: [
    // 2^31 as a big-endian u32 where the u16 hash count is: a count of 32768, refused before any hash is awaited.
    { protocol: CHUNK_PROTOCOL, bytes: Buffer.from([0x80, 0, 0, 0, ...Buffer.alloc(64)]) },
    // A frame with more bytes than its count declares: the surplus is read as the next frame's header (0xffff).
    {
      protocol: CHUNK_PROTOCOL,
      bytes: Buffer.concat([encodeChunkRequest([MISSING]), Buffer.alloc(40, 0xff)]),
    },
    { protocol: CHUNK_PROTOCOL, bytes: Buffer.concat([Buffer.from([0xde]), pseudoRandomBytes(4096, 9)]) },
  ],
  have: [
    { protocol: HAVE_PROTOCOL, bytes: Buffer.from([...VARINT_2_31, ...Buffer.alloc(64)]) },
    // A `have` of one index carrying two.
    { protocol: HAVE_PROTOCOL, bytes: lp(11, Buffer.concat([encodeHave([1]), Buffer.alloc(4)])) },
    { protocol: HAVE_PROTOCOL, bytes: lp(100, Buffer.concat([Buffer.from([7]), pseudoRandomBytes(99, 10)])) },
    // A length prefix that never ends: @libp2p/utils buffered it forever until core/wire.ts boundedLengthDecoder.
    { protocol: HAVE_PROTOCOL, bytes: Buffer.alloc(16, 0xff) },
  ],
  tracker: [
    { protocol: TRACKER_PROTOCOL, bytes: Buffer.from([...VARINT_2_31, ...Buffer.alloc(64)]) },
    // Declares 5 bytes, sends a whole request: the first 5 bytes are not JSON.
    { protocol: TRACKER_PROTOCOL, bytes: lp(5, Buffer.from('{"type":"manifest","name":"x","version":1}')) },
    { protocol: TRACKER_PROTOCOL, bytes: Buffer.concat([Buffer.from([0x20]), pseudoRandomBytes(200, 11)]) },
    { protocol: TRACKER_PROTOCOL, bytes: Buffer.alloc(16, 0xff) },
  ],
};

/** Sends one abusive input on a fresh stream; resolves with how the stream ended and any answer read. */
async function abuse(a: {
  protocol: string;
  bytes: Uint8Array;
}): Promise<{ status: string; answer?: unknown }> {
  console.log('ABUSE', a.protocol, Buffer.from(a.bytes.subarray(0, 6)).toString('hex'), Date.now() % 100000);
  if (a.protocol === TRACKER_PROTOCOL) {
    const stream: Stream = await abuser.dialProtocol(addr(), TRACKER_PROTOCOL);
    const reader = lpStream(stream);
    stream.send(a.bytes);
    const answer = await reader.read({ signal: AbortSignal.timeout(5000) }).then(
      (m) => JSON.parse(new TextDecoder().decode(m.subarray())),
      () => undefined,
    );
    await stream.close().catch(() => {});
    return { status: (await endOf(stream)).status, answer };
  }
  const stream = await rawStream(abuser, addr(), a.protocol, a.bytes);
  return { status: (await endOf(stream)).status };
}

function memory() {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, arrayBuffers: m.arrayBuffers };
}

describe('abusive bytes on every protocol (2^31 prefix, longer than declared, garbage)', () => {
  it('each one ends its stream: reset on chunk and have, a typed error answer on the tracker', async () => {
    for (const a of [...ABUSE.chunk, ...ABUSE.have]) {
      expect(await abuse(a), `${a.protocol} ${Buffer.from(a.bytes.subarray(0, 8)).toString('hex')}`).toEqual({
        status: 'reset',
      });
    }
    for (const a of ABUSE.tracker) {
      const end = await abuse(a);
      expect(['closed', 'reset']).toContain(end.status);
      expect(end.answer).toMatchObject({ ok: false, code: 'RSW_ERR_PROTOCOL' });
    }
  });

  it('over 25 rounds of all of them, memory stays flat and a good client is still served on all three', async () => {
    const all = [...ABUSE.chunk, ...ABUSE.have, ...ABUSE.tracker];
    for (const a of all) await abuse(a); // warm-up: first-use allocations are not growth
    const before = memory();
    for (let round = 0; round < 25; round++) for (const a of all) await abuse(a);
    const after = memory();
    // 250 abusive streams: a single honoured 2^31 prefix would be 2 GiB; leaked per-stream state would show too.
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(32 * MiB);
    expect(after.rss - before.rss).toBeLessThan(128 * MiB);

    const fetched = await Array.fromAsync(fetchChunks(good, addr(), chunks.map(hashHex)));
    expect(fetched.map((r, i) => r.data?.equals(chunks[i]))).toEqual([true, true, true]);
    const heard: number[][] = [];
    const neighbour = new HaveExchange(good, {
      imageId: IMAGE_ID,
      chunkCount: chunks.length,
      has: () => false,
      onHave: (_peer, indices) => heard.push(indices),
    });
    await neighbour.connect(target.peerId.toString(), addr());
    await expect.poll(() => heard, { timeout: 5000 }).toEqual([[0, 1, 2]]);
    await neighbour.stop();
    const answer = await announce(good, addr(), fetchingBody(IMAGE_ID, ['/ip4/127.0.0.1/tcp/1']));
    expect(answer.ok).toBe(true);
    expect(server.stats()).toMatchObject({ activeStreams: 0 });
  });
});

describe('a lying chunk server (the fetching side)', () => {
  /** A node whose chunk handler answers any request with `reply`, and records how each stream ended. */
  async function liar(name: string, reply: Uint8Array) {
    const n = await node(name);
    const ends: Promise<{ status: string }>[] = [];
    await n.handle(CHUNK_PROTOCOL, (stream) => {
      let sent = false;
      stream.addEventListener('message', () => {
        if (!sent) stream.send(reply);
        sent = true;
      });
      ends.push(endOf(stream));
    });
    return { addr: n.getMultiaddrs()[0], ends };
  }

  it('a 2^31 body length, a body longer than declared and garbage: RSW_ERR_PROTOCOL, stream reset, memory flat', async () => {
    const [a, b] = chunks.map(hashHex);
    const liars = await Promise.all([
      liar('liar-2-31', encodeChunkResponseHeader({ status: 'not-found', length: 0 }).fill(0x80, 1, 2)),
      liar(
        'liar-longer',
        Buffer.concat([
          encodeChunkResponseHeader({ status: 'ok', length: chunks[0].length }),
          chunks[0],
          Buffer.alloc(16, 0xff),
        ]),
      ),
      liar('liar-garbage', Buffer.from('HTTP/1.1 200 OK\r\n\r\n')),
    ]);
    const round = async () => {
      for (const l of liars) {
        const err = await Array.fromAsync(fetchChunks(good, l.addr, [a, b], { timeoutMs: 5000 })).catch(
          (e) => e,
        );
        expect(err).toMatchObject({ code: 'RSW_ERR_PROTOCOL' });
      }
    };
    await round();
    const before = memory();
    for (let i = 0; i < 20; i++) await round();
    const after = memory();
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(32 * MiB);
    expect(after.rss - before.rss).toBeLessThan(128 * MiB);
    for (const l of liars)
      expect((await Promise.all(l.ends)).map((e) => e.status)).toEqual(Array(21).fill('reset'));
    // The same node still fetches from an honest server.
    const fetched = await Array.fromAsync(fetchChunks(good, addr(), [a, b]));
    expect(fetched.map((r, i) => r.data?.equals(chunks[i]))).toEqual([true, true]);
  });
});

describe('a stream flood (issue 9 item 4)', () => {
  it('2,000 chunk streams at once from one peer: the extra ones are refused, the server’s state stays bounded', async () => {
    // maxStreamsPerPeer 4 → the handler admits at most max(2 × 4, 4 + 2) = 8 inbound streams per connection.
    const MAX_INBOUND = 8;
    const flooder = await node('flooder');
    await flooder.dial(addr());
    const before = memory();
    let peakActive = 0;
    const sample = setInterval(() => {
      peakActive = Math.max(peakActive, server.stats().activeStreams);
    }, 5);
    const request = encodeChunkRequest([MISSING]);
    const results = await Promise.allSettled(
      Array.from({ length: 2000 }, async () => {
        const s = await flooder.dialProtocol(addr(), CHUNK_PROTOCOL, { signal: AbortSignal.timeout(20_000) });
        s.addEventListener('message', () => {});
        s.send(request);
        await s.close().catch(() => {});
        return s;
      }),
    );
    clearInterval(sample);
    const admitted = results.filter((r) => r.status === 'fulfilled').length;
    const after = memory();
    expect(admitted).toBeGreaterThan(0);
    expect(admitted).toBeLessThan(2000); // the rest were refused, not queued
    expect(peakActive).toBeLessThanOrEqual(MAX_INBOUND);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(32 * MiB);
    expect(after.rss - before.rss).toBeLessThan(128 * MiB);
    await expect.poll(() => server.stats().activeStreams, { timeout: 10_000 }).toBe(0);
    const fetched = await Array.fromAsync(fetchChunks(good, addr(), chunks.map(hashHex)));
    expect(fetched.map((r, i) => r.data?.equals(chunks[i]))).toEqual([true, true, true]);
  });
});

describe('a stream flood on the have and tracker protocols (issue 9 item 4)', () => {
  it('2,000 streams of each at once from one peer: the extra ones are refused, state stays bounded', async () => {
    const flooder = await node('flooder-2');
    await flooder.dial(addr());
    const before = memory();
    let peakNeighbours = 0;
    const sample = setInterval(() => {
      peakNeighbours = Math.max(peakNeighbours, exchange.neighbours().length);
    }, 5);
    const flood = (protocol: string, bytes: Uint8Array) =>
      Promise.allSettled(
        Array.from({ length: 2000 }, async () => {
          const s = await flooder.dialProtocol(addr(), protocol, { signal: AbortSignal.timeout(20_000) });
          s.addEventListener('message', () => {});
          s.send(bytes);
          await s.close().catch(() => {});
        }),
      );
    const [have, track] = await Promise.all([
      flood(HAVE_PROTOCOL, lp(1, Buffer.from([9]))),
      flood(TRACKER_PROTOCOL, lp(2, Buffer.from('{}'))),
    ]);
    clearInterval(sample);
    const after = memory();
    for (const results of [have, track]) {
      const refused = results.filter((r) => r.status === 'rejected').length;
      expect(refused).toBeGreaterThan(0);
    }
    // One exchange per neighbour peer: a newer stream from the same peer replaces the older one.
    expect(peakNeighbours).toBeLessThanOrEqual(1);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(32 * MiB);
    expect(after.rss - before.rss).toBeLessThan(128 * MiB);
    const answer = await announce(good, addr(), fetchingBody(IMAGE_ID, ['/ip4/127.0.0.1/tcp/1']));
    expect(answer.ok).toBe(true);
  });
});
