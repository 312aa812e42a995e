import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { ChunkStore } from '../../core/store.ts';
import { CHUNK_PROTOCOL, encodeChunkRequest, encodeChunkResponseHeader } from '../../core/wire.ts';
import { type FetchedChunk, fetchChunks } from '../../peer/chunk-client.ts';
import { ChunkServer, type ChunkServerComponents, type ChunkServerInit } from '../../seeder/chunk-server.ts';
import { HeadServing } from '../../seeder/head-serving.ts';
import { RackReserve } from '../../seeder/rack-reserve.ts';
import { RackSpread } from '../../seeder/rack-spread.ts';
import { ServeTurnover } from '../../seeder/serve-turnover.ts';
import { SuperSeeding } from '../../seeder/super-seeding.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';
import { endOf, rawStream } from '../helpers/raw-stream.ts';

const MiB = 1024 * 1024;
const MISSING = 'ab'.repeat(32);
const UNLIMITED: ChunkServerInit = {
  maxStreamsPerPeer: 4,
  maxConcurrentTotal: 64,
  perPeerBytesPerSecond: 0,
  totalBytesPerSecond: 0,
  readTimeoutMs: 5_000,
};

// Teardown in reverse order of creation: clients, then servers, then their directories.
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function node(dir: string, listen = true): Promise<Libp2p> {
  const n = await createP2PNode({
    keyFile: join(dir, `${listen ? 'server' : 'client'}-${Math.random()}.key`),
    listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [],
  });
  cleanups.push(() => n.stop());
  return n;
}

/** A seeder: a chunk store in a temp dir holding `chunks`, served by a ChunkServer on 127.0.0.1. */
async function seeder(
  chunks: Buffer[],
  init: Partial<ChunkServerInit> = {},
  components: Omit<ChunkServerComponents, 'store'> = {},
) {
  const t = tempDir('rsw-chunk-proto-');
  cleanups.push(t.cleanup);
  const store = await ChunkStore.open({ dataDir: join(t.dir, 'data') });
  for (const c of chunks) await store.put(hashHex(c), c);
  const n = await node(t.dir);
  const server = new ChunkServer({ store, ...components }, { ...UNLIMITED, ...init });
  await server.start(n);
  cleanups.push(() => server.stop());
  return { node: n, store, server, addr: n.getMultiaddrs()[0], dir: t.dir };
}

async function client(): Promise<Libp2p> {
  const t = tempDir('rsw-chunk-client-');
  cleanups.push(t.cleanup);
  return node(t.dir, false);
}

async function fetchAll(
  from: Libp2p,
  addr: Multiaddr,
  hashes: string[],
  opts?: Parameters<typeof fetchChunks>[3],
) {
  return Array.fromAsync(fetchChunks(from, addr, hashes, opts));
}

const statuses = (results: FetchedChunk[]) => results.map((r) => r.status);

describe('chunk protocol over libp2p (TCP + Noise + Yamux on 127.0.0.1)', () => {
  it('fetches multi-MiB chunks bit-identical, in request order, over several pipelined request frames', async () => {
    const big = [3, 5, 8, 1].map((m, i) => pseudoRandomBytes(m * MiB + i, i + 1));
    const small = Array.from({ length: 150 }, (_, i) => pseudoRandomBytes(4096 + i, 100 + i));
    const chunks = [big[0], ...small.slice(0, 70), big[1], big[2], ...small.slice(70), big[3]];
    const s = await seeder(chunks);
    const results = await fetchAll(await client(), s.addr, chunks.map(hashHex));
    expect(results).toHaveLength(chunks.length);
    results.forEach((r, i) => {
      expect(r.status).toBe('ok');
      expect(r.hash).toBe(hashHex(chunks[i]));
      expect(r.data?.equals(chunks[i])).toBe(true);
    });
    const bytes = chunks.reduce((n, c) => n + c.length, 0);
    expect(s.server.stats()).toMatchObject({ bytesServed: bytes, requests: chunks.length, errors: 0 });
  });

  it('with head serving (one chunk on the wire at a time), serves three clients at once bit-identical', async () => {
    const chunks = Array.from({ length: 12 }, (_, i) => pseudoRandomBytes(MiB + i, 300 + i));
    const turns = new HeadServing<() => void>({ sendsAtOnce: 1, maxWaiting: 8, rampEvery: 0 });
    let most = 0;
    const watched = {
      admits: () => turns.admits(),
      ask: (go: () => void) => {
        const now = turns.ask(go);
        most = Math.max(most, turns.sending);
        return now;
      },
      done: () => turns.done(),
    };
    const s = await seeder(chunks, {}, { headServing: watched });
    const hashes = chunks.map(hashHex);
    const clients = await Promise.all([client(), client(), client()]);
    const results = await Promise.all(clients.map((c) => fetchAll(c, s.addr, hashes)));
    for (const r of results) {
      expect(statuses(r)).toEqual(hashes.map(() => 'ok'));
      expect(r.map((x, i) => x.data?.equals(chunks[i]))).toEqual(chunks.map(() => true));
    }
    expect(most).toBe(1);
    expect([turns.sending, turns.waiting]).toEqual([0, 0]);
  });

  it("with a rack reserve, sends a chunk into another rack once: that rack's second asker gets busy", async () => {
    const chunks = [pseudoRandomBytes(MiB, 31), pseudoRandomBytes(MiB, 32)];
    const hashes = chunks.map(hashHex);
    const [far1, far2, mate] = [await client(), await client(), await client()];
    const racks = new Map([far1, far2, mate].map((c, i) => [c.peerId.toString(), ['r1', 'r1', 'r0'][i]]));
    const reserve = new RackReserve({ reserveAfterMs: 60_000, rack: 'r0', rackOf: (p) => racks.get(p) });
    const s = await seeder(chunks, {}, { superSeeding: reserve });
    expect(statuses(await fetchAll(far1, s.addr, [hashes[0]]))).toEqual(['ok']);
    // far2 is in far1's rack: chunk 0 went there already (and a busy ends the answers, as super-seeding's do)
    expect(statuses(await fetchAll(far2, s.addr, hashes))).toEqual(['busy', 'busy']);
    expect(statuses(await fetchAll(far2, s.addr, [hashes[1]]))).toEqual(['ok']);
    const fromMate = await fetchAll(mate, s.addr, hashes); // this node's own rack: served as before
    expect(statuses(fromMate)).toEqual(['ok', 'ok']);
    expect(fromMate.map((r, k) => r.data?.equals(chunks[k]))).toEqual([true, true]);
  });

  it("with the head's streams spread over the racks, a rack at its share gets busy and another rack is served", async () => {
    const chunks = [pseudoRandomBytes(MiB, 51), pseudoRandomBytes(MiB, 52)];
    const hashes = chunks.map(hashHex);
    const [a1, a2, b] = [await client(), await client(), await client()];
    const racks = new Map([a1, a2, b].map((c, i) => [c.peerId.toString(), ['A', 'A', 'B'][i]]));
    let clock = 0;
    const spread = new RackSpread({ slots: 2, windowMs: 1000, rackOf: (p) => racks.get(p) });
    const s = await seeder(chunks, {}, { rackSpread: spread, now: () => clock });
    expect(statuses(await fetchAll(a1, s.addr, hashes))).toEqual(['ok', 'ok']); // A alone: its streams end
    expect(spread.streams('A')).toBe(0);
    spread.asking(b.peerId.toString(), clock); // B announced: 2 racks, one stream each
    const held = spread.started(a1.peerId.toString(), clock); // (a stream of A's in progress)
    expect(statuses(await fetchAll(a2, s.addr, hashes))).toEqual(['busy', 'busy']);
    const fromB = await fetchAll(b, s.addr, hashes);
    expect(statuses(fromB)).toEqual(['ok', 'ok']);
    expect(fromB.map((r, k) => r.data?.equals(chunks[k]))).toEqual([true, true]);
    spread.ended(held);
    expect(statuses(await fetchAll(a2, s.addr, [hashes[0]]))).toEqual(['ok']);
    clock = 5000; // B quiet for longer than the window: A alone again, up to both slots
    spread.started(a1.peerId.toString(), clock);
    expect(statuses(await fetchAll(a2, s.addr, [hashes[1]]))).toEqual(['ok']);
    expect(s.server.stats()).toMatchObject({ refusedBatches: 1 });
  });

  it('with a serving turnover, a peer served long in a row yields its next batch while another waits', async () => {
    const chunks = [pseudoRandomBytes(MiB, 41), pseudoRandomBytes(MiB, 42)];
    const hashes = chunks.map(hashHex);
    const [a, b] = [await client(), await client()];
    let clock = 0;
    // every batch of a within a minute of its last continues its service; 1 ms of it is enough to yield
    const turnover = new ServeTurnover({ turnoverMs: 1, waitingMs: 60_000, gapMs: 60_000 });
    const s = await seeder(chunks, {}, { turnover, now: () => clock });
    expect(statuses(await fetchAll(a, s.addr, [hashes[0]]))).toEqual(['ok']);
    clock = 10;
    expect(statuses(await fetchAll(a, s.addr, [hashes[1]]))).toEqual(['ok']); // nobody waits
    turnover.refused(15); // another peer was refused
    clock = 20;
    expect(statuses(await fetchAll(a, s.addr, [hashes[1]]))).toEqual(['busy']); // a yields
    expect(statuses(await fetchAll(b, s.addr, hashes))).toEqual(['ok', 'ok']); // a service of its own
    expect(s.server.stats()).toMatchObject({ refusedBatches: 1 });
  });

  it("with super-seeding, a chunk waiting behind its batch's earlier ones is not reserved yet: another asker gets it", async () => {
    // A batch's later chunks can wait seconds behind its first on a slow connection; reserved from the frame's
    // arrival, they were refused to everyone meanwhile and then sent to every asker at once (head egress 1.17 x).
    // Here every asker gets 4 MiB/s (the seeder's per-peer rate): the slow asker's chunk 0 (32 MiB) takes 8 s, and
    // chunks 1 and 2 wait behind it all that time.
    const chunks = [32, 1, 1].map((mib, k) => pseudoRandomBytes(mib * MiB, 40 + k));
    const hashes = chunks.map(hashHex);
    const s = await seeder(
      chunks,
      { readTimeoutMs: 60_000, perPeerBytesPerSecond: 4 * MiB },
      { superSeeding: new SuperSeeding({ reserveAfterMs: 60_000 }) },
    );
    const slow = await rawStream(await client(), s.addr, CHUNK_PROTOCOL, encodeChunkRequest(hashes));
    await vi.waitFor(() => expect(s.server.stats().bytesServed).toBeGreaterThan(0), {
      timeout: 20_000,
      interval: 20,
    });
    const other = await fetchAll(await client(), s.addr, [hashes[2], hashes[1], hashes[0]]);
    // chunks 2 and 1 not started yet: they go here; chunk 0 is being sent to the slow asker, reserved
    expect(statuses(other)).toEqual(['ok', 'ok', 'busy']);
    expect(other[0].data?.equals(chunks[2])).toBe(true);
    expect(other[1].data?.equals(chunks[1])).toBe(true);
    expect(s.server.stats().bytesServed).toBeLessThan(chunks[0].length + 2 * MiB); // the slow asker's chunk 0 unfinished
    slow.abort(new Error('done'));
  });

  it('answers not-found for a chunk the seeder does not have, and serves the rest', async () => {
    const a = pseudoRandomBytes(MiB, 1);
    const s = await seeder([a]);
    const results = await fetchAll(await client(), s.addr, [MISSING, hashHex(a), MISSING]);
    expect(statuses(results)).toEqual(['not-found', 'ok', 'not-found']);
    expect(results[1].data?.equals(a)).toBe(true);
    expect(s.server.stats()).toMatchObject({ notFound: 2, requests: 3, errors: 0 });
  });

  it('never serves a chunk corrupted on the seeder disk: not-found, and the bad file is dropped', async () => {
    const a = pseudoRandomBytes(2 * MiB, 1);
    const b = pseudoRandomBytes(MiB, 2);
    const s = await seeder([a, b]);
    const bad = Buffer.from(a);
    bad[12345] ^= 1;
    await writeFile(s.store.path(hashHex(a)), bad);
    const results = await fetchAll(await client(), s.addr, [hashHex(a), hashHex(b)]);
    expect(statuses(results)).toEqual(['not-found', 'ok']);
    expect(await s.store.has(hashHex(a))).toBe(false);
    expect(s.server.stats().bytesServed).toBe(b.length);
  });

  it('throws RSW_ERR_CHUNK_CORRUPT naming the peer when a peer sends bytes that do not match', async () => {
    const t = tempDir('rsw-liar-');
    cleanups.push(t.cleanup);
    const liar = await node(t.dir);
    const wanted = hashHex(Buffer.from('the real chunk'));
    await liar.handle(CHUNK_PROTOCOL, (stream) => {
      stream.addEventListener('message', () => {
        const body = Buffer.from('something else');
        stream.send(Buffer.concat([encodeChunkResponseHeader({ status: 'ok', length: body.length }), body]));
        stream.close().catch(() => {});
      });
    });
    const err = await fetchAll(await client(), liar.getMultiaddrs()[0], [wanted]).catch((e) => e);
    expect(err).toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
    expect(err.message).toContain(liar.peerId.toString());
    expect(err.message).toContain(wanted);
  });

  it('answers busy, at once, for streams past maxStreamsPerPeer', async () => {
    const chunks = [1, 2, 3, 4].map((i) => pseudoRandomBytes(MiB, i));
    // 2 MiB/s per peer: the two admitted streams take ~1 s, so the others arrive while they are served.
    const s = await seeder(chunks, { maxStreamsPerPeer: 2, perPeerBytesPerSecond: 2 * MiB });
    const c = await client();
    await c.dial(s.addr);
    const started = Date.now();
    const results = await Promise.all(
      chunks.map(async (chunk) => {
        const [r] = await fetchAll(c, s.addr, [hashHex(chunk)]);
        return { status: r.status, ms: Date.now() - started };
      }),
    );
    const busy = results.filter((r) => r.status === 'busy');
    expect(results.filter((r) => r.status === 'ok')).toHaveLength(2);
    expect(busy).toHaveLength(2);
    for (const r of busy) expect(r.ms).toBeLessThan(700);
    // The server's streams end once both sides have closed, which may be just after the client has its bytes.
    await vi.waitFor(() => expect(s.server.stats()).toMatchObject({ busy: 2, activeStreams: 0, errors: 0 }), {
      timeout: 2000,
    });
  });

  it('answers busy past maxConcurrentTotal, across peers, and a busy fetch marks every remaining hash busy', async () => {
    const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(MiB, i));
    const s = await seeder(chunks, { maxConcurrentTotal: 1, perPeerBytesPerSecond: 2 * MiB });
    const [c1, c2] = [await client(), await client()];
    await Promise.all([c1.dial(s.addr), c2.dial(s.addr)]);
    const first = fetchAll(c1, s.addr, [hashHex(chunks[0])]);
    await new Promise((r) => setTimeout(r, 150));
    const second = await fetchAll(c2, s.addr, chunks.map(hashHex));
    expect(statuses(second)).toEqual(['busy', 'busy', 'busy']);
    expect(statuses(await first)).toEqual(['ok']);
  });

  it.each([
    ['per peer', { perPeerBytesPerSecond: MiB }],
    ['in total', { totalBytesPerSecond: MiB }],
  ])('a 1 MiB/s upload limit %s makes a 3 MiB fetch take ≥ 2 s', async (_, limit) => {
    const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(MiB, i));
    const s = await seeder(chunks, limit);
    const c = await client();
    await c.dial(s.addr);
    const t0 = performance.now();
    const results = await fetchAll(c, s.addr, chunks.map(hashHex));
    const seconds = (performance.now() - t0) / 1000;
    expect(statuses(results)).toEqual(['ok', 'ok', 'ok']);
    expect(seconds).toBeGreaterThanOrEqual(2);
    expect(seconds).toBeLessThan(15);
  });

  it('paces a slow reader: the stream pauses instead of overflowing, and every chunk arrives', async () => {
    const chunks = Array.from({ length: 20 }, (_, i) => pseudoRandomBytes(4 * MiB, i + 1));
    const s = await seeder(chunks);
    let n = 0;
    let ahead = 0; // bytes the seeder has sent beyond what the caller has taken
    for await (const r of fetchChunks(await client(), s.addr, chunks.map(hashHex))) {
      expect(r.data?.equals(chunks[n++])).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 100));
      ahead = Math.max(ahead, s.server.stats().bytesServed - n * 4 * MiB);
    }
    expect(n).toBe(20);
    expect(s.server.stats().errors).toBe(0);
    // Bound: bodies decoded from one resume (≤ one 16 MiB yamux window + the body in progress), one more window
    // received while paused, a send slice in flight. Without pausing, the seeder would be ~76 MiB ahead.
    expect(ahead).toBeLessThanOrEqual(40 * MiB);
  });

  it('resets abusive streams (huge count, garbage, a flood of requests, truncated, silence) while a good client on another connection is served', async () => {
    const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(2 * MiB, i));
    const s = await seeder(chunks, { readTimeoutMs: 500 });
    const abuser = await client();
    const huge = await rawStream(
      abuser,
      s.addr,
      CHUNK_PROTOCOL,
      Buffer.from([0xff, 0xff, ...Buffer.alloc(64)]),
    );
    const garbage = await rawStream(
      abuser,
      s.addr,
      CHUNK_PROTOCOL,
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    );
    const truncated = await rawStream(
      abuser,
      s.addr,
      CHUNK_PROTOCOL,
      encodeChunkRequest([MISSING]).subarray(0, 20),
    );
    const silent = await rawStream(abuser, s.addr, CHUNK_PROTOCOL);
    const frame = encodeChunkRequest(Array(64).fill(MISSING));
    const flood = await rawStream(abuser, s.addr, CHUNK_PROTOCOL, Buffer.concat(Array(10).fill(frame)));

    const good = await fetchAll(await client(), s.addr, chunks.map(hashHex));
    expect(good.map((r, i) => r.data?.equals(chunks[i]))).toEqual([true, true, true]);

    for (const stream of [huge, garbage, flood]) {
      const end = await endOf(stream);
      expect(end.status).toBe('reset');
    }
    for (const stream of [truncated, silent]) {
      const end = await endOf(stream);
      expect(end.status).toBe('reset');
      expect(end.ms).toBeLessThan(3_000);
    }
    // The server's handler ends once both sides have closed, which may be just after the client saw the reset.
    await vi.waitFor(() => expect(s.server.stats()).toMatchObject({ errors: 5, activeStreams: 0 }), {
      timeout: 2000,
    });
  });

  it('resets a stream whose half-close cuts a request frame short', async () => {
    const s = await seeder([]);
    const stream = await rawStream(
      await client(),
      s.addr,
      CHUNK_PROTOCOL,
      encodeChunkRequest([MISSING]).subarray(0, 20),
    );
    await stream.close();
    expect((await endOf(stream)).status).toBe('reset');
  });

  it('gives up on a peer that accepts the stream but never answers, after timeoutMs', async () => {
    const t = tempDir('rsw-mute-');
    cleanups.push(t.cleanup);
    const mute = await node(t.dir);
    await mute.handle(CHUNK_PROTOCOL, (stream) => {
      stream.addEventListener('message', () => {});
    });
    const t0 = Date.now();
    const err = await fetchAll(await client(), mute.getMultiaddrs()[0], [MISSING], { timeoutMs: 300 }).catch(
      (e) => e,
    );
    expect(err).toMatchObject({ code: 'RSW_ERR_PROTOCOL', message: expect.stringMatching(/300 ms/) });
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('stops serving on stop(): a new fetch is refused', async () => {
    const a = pseudoRandomBytes(1000, 1);
    const s = await seeder([a]);
    const c = await client();
    expect(statuses(await fetchAll(c, s.addr, [hashHex(a)]))).toEqual(['ok']);
    await s.server.stop();
    await expect(fetchAll(c, s.addr, [hashHex(a)])).rejects.toThrow(/protocol/i);
  });

  it('counts bytes and requests per peer, and forgets a peer once it disconnects', async () => {
    const a = pseudoRandomBytes(3 * MiB, 1);
    const b = pseudoRandomBytes(MiB, 2);
    const s = await seeder([a, b]);
    const [c1, c2] = [await client(), await client()];
    await fetchAll(c1, s.addr, [hashHex(a), hashHex(b)]);
    await fetchAll(c2, s.addr, [hashHex(b), MISSING]);
    const perPeer = Object.fromEntries(s.server.stats().perPeer.map((p) => [p.peerId, p]));
    expect(perPeer[c1.peerId.toString()]).toMatchObject({ bytesServed: a.length + b.length, requests: 2 });
    expect(perPeer[c2.peerId.toString()]).toMatchObject({ bytesServed: b.length, requests: 2 });
    expect(s.server.stats()).toMatchObject({
      bytesServed: a.length + 2 * b.length,
      requests: 4,
      notFound: 1,
    });

    await c1.stop();
    await expect
      .poll(() => s.server.stats().perPeer.map((p) => p.peerId), { timeout: 5_000 })
      .toEqual([c2.peerId.toString()]);
    expect(s.server.stats().bytesServed).toBe(a.length + 2 * b.length);
  });

  it('stops a fetch on abort, and the seeder frees the stream', async () => {
    const chunks = [1, 2, 3, 4].map((i) => pseudoRandomBytes(MiB, i));
    const s = await seeder(chunks, { perPeerBytesPerSecond: MiB });
    const ac = new AbortController();
    const got: FetchedChunk[] = [];
    const run = (async () => {
      for await (const r of fetchChunks(await client(), s.addr, chunks.map(hashHex), { signal: ac.signal })) {
        got.push(r);
        ac.abort(new Error('enough'));
      }
    })();
    await expect(run).rejects.toThrow('enough');
    expect(got).toHaveLength(1);
    await expect.poll(() => s.server.stats().activeStreams, { timeout: 5_000 }).toBe(0);
  });

  it('encrypts with TLS 1.3 by default, and still talks to a Noise-only node (both authenticate the peer id)', async () => {
    const chunk = pseudoRandomBytes(MiB, 9);
    const s = await seeder([chunk]);
    const c = await client();
    const conn = await c.dial(s.addr);
    expect(conn.encryption).toBe('/tls/1.0.0');
    expect(conn.remotePeer.equals(s.node.peerId)).toBe(true);

    const t = tempDir('rsw-noise-client-');
    cleanups.push(t.cleanup);
    const noiseOnly = await createP2PNode({
      keyFile: join(t.dir, 'noise.key'),
      listen: [],
      limits: { encryption: ['noise'] },
    });
    cleanups.push(() => noiseOnly.stop());
    const noiseConn = await noiseOnly.dial(s.addr);
    expect(noiseConn.encryption).toBe('/noise');
    expect(noiseConn.remotePeer.equals(s.node.peerId)).toBe(true);
    const [r] = await fetchAll(noiseOnly, s.addr, [hashHex(chunk)]);
    expect(r.status).toBe('ok');
    expect(hashHex(r.data as Buffer)).toBe(hashHex(chunk));
  });

  it('keeps the peer identity across restarts in a 0600 key file, and refuses a corrupt one', async () => {
    const t = tempDir('rsw-identity-');
    cleanups.push(t.cleanup);
    const keyFile = join(t.dir, 'keys', 'peer.key');
    const first = await createP2PNode({ keyFile, listen: [] });
    await first.stop();
    const again = await createP2PNode({ keyFile, listen: [] });
    await again.stop();
    expect(again.peerId.equals(first.peerId)).toBe(true);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);

    await writeFile(keyFile, 'not a key');
    await expect(createP2PNode({ keyFile, listen: [] })).rejects.toMatchObject({
      code: 'RSW_ERR_KEY_INVALID',
    });
  });
});
