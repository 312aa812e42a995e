import { writeFile } from 'node:fs/promises';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Connection, Libp2p } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import {
  BULK_BATCH_END,
  BULK_TOKEN_PROTOCOL,
  encodeBulkHello,
  encodeTokenAnswer,
} from '../../core/bulk-wire.ts';
import type { RswError } from '../../core/errors.ts';
import { hashHex } from '../../core/hash.ts';
import { ChunkStore } from '../../core/store.ts';
import { encodeChunkRequest } from '../../core/wire.ts';
import { chunkFetch, requestBulkToken } from '../../peer/bulk-client.ts';
import { BulkServer } from '../../seeder/bulk-server.ts';
import { ChunkServer, type ChunkServerInit } from '../../seeder/chunk-server.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

// The bulk data plane (p2p.dataPlane "bulk-tcp") on real libp2p nodes and real TCP sockets on 127.0.0.1: chunks come
// over the bulk port, the chunk server's limits hold there too, a client falls back to the libp2p chunk protocol by
// itself, and a bulk port only ever answers a connection that presents a fresh token its peer asked for. A bulk
// connection is persistent (core/bulk-wire.ts version 2): one token and one TCP connection serve batch after batch.

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;
const LIMITS: ChunkServerInit = {
  maxStreamsPerPeer: 2,
  maxConcurrentTotal: 64,
  perPeerBytesPerSecond: 0,
  totalBytesPerSecond: 0,
  readTimeoutMs: 3_000,
};

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function node(dir: string, name: string, listen = true): Promise<Libp2p> {
  const n = await createP2PNode({
    keyFile: join(dir, `${name}.key`),
    listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [],
  });
  cleanups.push(() => n.stop());
  return n;
}

/** A seeder with a chunk store holding `chunks`; with `bulk` its bulk port too. `now` drives token expiry. */
async function seeder(
  chunks: Buffer[],
  opts: {
    bulk?: boolean;
    limits?: Partial<ChunkServerInit>;
    now?: () => number;
    verifyOnRead?: boolean;
    /** The store's clock (ChunkStore: how old its files look). */
    storeNow?: () => number;
    /** The bulk server's idle close (BulkServerInit.idleMs). */
    idleMs?: number;
  } = {},
) {
  const t = tempDir('rsw-bulk-');
  cleanups.push(t.cleanup);
  const store = await ChunkStore.open({
    dataDir: join(t.dir, 'data'),
    verifyOnRead: opts.verifyOnRead,
    now: opts.storeNow,
  });
  for (const c of chunks) await store.put(hashHex(c), c);
  const n = await node(t.dir, 'server');
  const limits = { ...LIMITS, ...opts.limits };
  const server = new ChunkServer({ store }, limits);
  await server.start(n);
  cleanups.push(() => server.stop());
  let bulk: BulkServer | undefined;
  if (opts.bulk ?? true) {
    bulk = new BulkServer(
      { chunkServer: server, now: opts.now },
      {
        host: '127.0.0.1',
        port: 0,
        readTimeoutMs: limits.readTimeoutMs,
        maxTokensPerPeer: 3,
        idleMs: opts.idleMs,
      },
    );
    await bulk.start(n);
    cleanups.push(() => bulk?.stop());
  }
  return { node: n, server, bulk, store, addr: n.getMultiaddrs()[0], dir: t.dir };
}

async function client(): Promise<Libp2p> {
  const t = tempDir('rsw-bulk-client-');
  cleanups.push(t.cleanup);
  return node(t.dir, 'client', false);
}

async function token(from: Libp2p, addr: Multiaddr) {
  const connection: Connection = await from.dial(addr);
  const { host, answer } = await requestBulkToken(connection, AbortSignal.timeout(5_000));
  if (answer.status !== 'ok') throw new Error('no token');
  return { host, port: answer.port, token: answer.token };
}

/** Opens a raw TCP connection, writes `bytes`, and resolves with what came back and whether the server closed it. */
function rawBulk(
  port: number,
  bytes: Uint8Array,
  waitMs = 5_000,
): Promise<{ received: number; closed: boolean }> {
  return new Promise((resolve) => {
    let received = 0;
    const s: Socket = tcpConnect({ port, host: '127.0.0.1' }, () => s.write(bytes));
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ received, closed: false });
    }, waitMs);
    s.on('data', (d) => {
      received += d.length;
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ received, closed: true });
    });
  });
}

const fetchBulk = chunkFetch({ dataPlane: 'bulk-tcp' });

describe('bulk data plane (token over libp2p, chunks over plain TCP)', () => {
  it('fetches multi-MiB chunks bit-identical over the bulk port, in request order', async () => {
    const chunks = [3, 1, 4, 1, 5].map((m, i) => pseudoRandomBytes(m * MiB + i, i + 1));
    const small = Array.from({ length: 100 }, (_, i) => pseudoRandomBytes(4096 + i, 50 + i));
    const all = [...chunks.slice(0, 2), ...small, ...chunks.slice(2)];
    const s = await seeder(all);
    const got = await Array.fromAsync(fetchBulk(await client(), s.addr, all.map(hashHex)));
    expect(got.map((g) => g.status)).toEqual(all.map(() => 'ok'));
    got.forEach((g, i) => {
      expect(g.data?.equals(all[i])).toBe(true);
    });
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 1, connections: 1, refused: 0 });
    expect(s.server.stats().bytesServed).toBe(all.reduce((a, c) => a + c.length, 0));
  });

  it('falls back to the libp2p chunk protocol when a peer offers no bulk port, or its port refuses', async () => {
    const chunks = [1, 2].map((i) => pseudoRandomBytes(MiB + i, 10 + i));
    const plain = await seeder(chunks, { bulk: false });
    const c = await client();
    const got = await Array.fromAsync(fetchBulk(c, plain.addr, chunks.map(hashHex)));
    expect(got.map((g) => g.data?.equals(chunks[got.indexOf(g)]))).toEqual([true, true]);
    // Tokens are issued but the port named drops every connection (a middlebox, a crashed bulk listener).
    const broken = await seeder(chunks, { bulk: false });
    const squatter = createServer((sock) => sock.destroy());
    const bulkPort = await new Promise<number>((r) =>
      squatter.listen(0, '127.0.0.1', () => r((squatter.address() as { port: number }).port)),
    );
    cleanups.push(() => new Promise((r) => squatter.close(r)));
    await broken.node.handle(BULK_TOKEN_PROTOCOL, async (stream) => {
      stream.send(
        encodeTokenAnswer({ status: 'ok', port: bulkPort, ttlMs: 10_000, token: Buffer.alloc(32, 1) }),
      );
      await stream.close();
    });
    const again = await Array.fromAsync(fetchBulk(c, broken.addr, chunks.map(hashHex)));
    expect(again.map((g) => g.status)).toEqual(['ok', 'ok']);
    expect(again[1].data?.equals(chunks[1])).toBe(true);
    expect(broken.server.stats().bytesServed).toBe(chunks[0].length + chunks[1].length); // over libp2p
  });

  it('serves a chunk it hashed before without hashing it again, and never one whose file changed since: not-found', async () => {
    const chunks = [1, 2].map((i) => pseudoRandomBytes(MiB + i, 170 + i));
    // files written now look 10 s old, so the store remembers what it hashed
    const s = await seeder(chunks, { storeNow: () => Date.now() + 10_000 });
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    const first = await Array.fromAsync(fetch(c, s.addr, chunks.map(hashHex)));
    expect(first.map((r) => r.data?.equals(chunks[first.indexOf(r)]))).toEqual([true, true]);
    expect(s.store.verifiedCount).toBe(2);
    await new Promise((r) => setTimeout(r, 50)); // past the file's timestamp tick
    const rotten = Buffer.from(chunks[0]);
    rotten[4242] ^= 1;
    await writeFile(s.store.path(hashHex(chunks[0])), rotten); // same size, in place
    const again = await Array.fromAsync(fetch(c, s.addr, chunks.map(hashHex)));
    expect(again.map((r) => r.status)).toEqual(['not-found', 'ok']);
    expect(again[1].data?.equals(chunks[1])).toBe(true);
    expect(await s.store.has(hashHex(chunks[0]))).toBe(false);
    expect(s.server.stats()).toMatchObject({
      bytesServed: chunks[0].length + 2 * chunks[1].length,
      notFound: 1,
    });
  });

  it('a body that does not hash to what was asked for fails the batch as RSW_ERR_CHUNK_CORRUPT, naming the peer', async () => {
    const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(MiB + i, 30 + i));
    const s = await seeder(chunks, { verifyOnRead: false });
    const path = s.store.path(hashHex(chunks[1]));
    const rotten = Buffer.from(chunks[1]);
    rotten[12345] ^= 1;
    await writeFile(path, rotten); // disk rot the (unverifying) seeder serves as is
    const got: string[] = [];
    const error = await (async () => {
      for await (const g of fetchBulk(await client(), s.addr, chunks.map(hashHex))) got.push(g.status);
    })().catch((e: unknown) => e as RswError);
    expect(got).toEqual(['ok']);
    expect(error?.code).toBe('RSW_ERR_CHUNK_CORRUPT');
    expect(error?.message).toContain(s.node.peerId.toString());
    expect(s.bulk?.stats().connections).toBe(1); // it came over the bulk port
  });

  it('keeps the chunk server limits: over maxStreamsPerPeer a bulk connection is answered busy', async () => {
    // more than the kernel's socket buffers and the client's read-ahead hold: the first batch stays unfinished
    const chunks = Array.from({ length: 10 }, (_, i) => pseudoRandomBytes(4 * MiB, 70 + i));
    const s = await seeder(chunks, { limits: { maxStreamsPerPeer: 1 } });
    const c = await client();
    // The first batch is held open: its consumer stops after one chunk, so the stream slot stays taken.
    const first = fetchBulk(c, s.addr, chunks.map(hashHex));
    const one = await first.next();
    expect(one.value?.status).toBe('ok');
    const second = await Array.fromAsync(fetchBulk(c, s.addr, chunks.slice(0, 2).map(hashHex)));
    expect(second.map((g) => g.status)).toEqual(['busy', 'busy']);
    await first.return(undefined);
    expect(s.bulk?.stats().connections).toBe(2);
  });

  it('closes a bulk connection with a bad, reused or expired token, garbage, or an oversized request, unanswered', async () => {
    let now = Date.now();
    const chunks = [pseudoRandomBytes(MiB, 90)];
    const s = await seeder(chunks, { now: () => now });
    const c = await client();
    const request = encodeChunkRequest([hashHex(chunks[0])]);
    const good = await token(c, s.addr);
    // a good token works once...
    const ok = await rawBulk(good.port, Buffer.concat([encodeBulkHello(good.token), request]));
    expect(ok.received).toBe(5 + MiB);
    // ...and never again
    expect(await rawBulk(good.port, Buffer.concat([encodeBulkHello(good.token), request]))).toEqual({
      received: 0,
      closed: true,
    });
    // a token nobody was given
    const forged = Buffer.concat([encodeBulkHello(Buffer.alloc(32, 7)), request]);
    expect(await rawBulk(good.port, forged)).toEqual({ received: 0, closed: true });
    // an expired one
    const stale = await token(c, s.addr);
    now += 60_000;
    expect(await rawBulk(good.port, Buffer.concat([encodeBulkHello(stale.token), request]))).toEqual({
      received: 0,
      closed: true,
    });
    now = Date.now();
    // garbage instead of a hello
    expect(await rawBulk(good.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(4)))).toEqual({
      received: 0,
      closed: true,
    });
    // a good hello, then a request frame declaring 65535 hashes
    const fresh = await token(c, s.addr);
    const huge = Buffer.concat([encodeBulkHello(fresh.token), Buffer.from([0xff, 0xff]), Buffer.alloc(64)]);
    expect(await rawBulk(good.port, huge)).toEqual({ received: 0, closed: true });
    // half a hello, then silence: closed after readTimeoutMs
    const t0 = Date.now();
    expect(await rawBulk(good.port, Buffer.from('RSWB'), 10_000)).toEqual({ received: 0, closed: true });
    expect(Date.now() - t0).toBeLessThan(9_000);
    expect(s.bulk?.stats().refused).toBe(5);
    expect(s.bulk?.stats().connections).toBe(2);
  });

  it('a token is refused (busy) beyond the per-peer limit, and the client then uses the chunk protocol', async () => {
    const chunks = [pseudoRandomBytes(MiB, 91)];
    const s = await seeder(chunks);
    const c = await client();
    for (let i = 0; i < 3; i++) await token(c, s.addr); // maxTokensPerPeer: 3, none used
    const connection = await c.dial(s.addr);
    expect((await requestBulkToken(connection, AbortSignal.timeout(5_000))).answer.status).toBe('busy');
    const got = await Array.fromAsync(fetchBulk(c, s.addr, chunks.map(hashHex)));
    expect(got[0].data?.equals(chunks[0])).toBe(true);
    expect(s.bulk?.stats().connections).toBe(0);
    expect(s.bulk?.stats().tokensRefused).toBe(2);
  });

  it('a client closes the connection when a bulk server declares a 4 GiB body, and memory stays flat', async () => {
    // A hostile peer: a real libp2p token protocol naming a TCP port that answers every hello with a huge header.
    const t = tempDir('rsw-bulk-evil-');
    cleanups.push(t.cleanup);
    const evil = await node(t.dir, 'evil');
    let closedByClient = 0;
    const port = await new Promise<number>((resolve) => {
      const srv = createServer((sock) => {
        sock.on('error', () => {});
        sock.on('close', () => closedByClient++);
        sock.resume(); // read, so the client's close is seen
        sock.write(Buffer.from([0, 0xff, 0xff, 0xff, 0xff])); // ok, 4 GiB - 1
        sock.write(Buffer.alloc(64 * 1024, 0xaa));
      });
      srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port));
      cleanups.push(() => new Promise((r) => srv.close(r)));
    });
    await evil.handle(BULK_TOKEN_PROTOCOL, async (stream) => {
      stream.send(encodeTokenAnswer({ status: 'ok', port, ttlMs: 10_000, token: Buffer.alloc(32, 2) }));
      await stream.close();
    });
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    const hash = hashHex(Buffer.from('x'));
    gc();
    const before = process.memoryUsage();
    for (let i = 0; i < 30; i++) {
      await expect(Array.fromAsync(fetch(c, evil.getMultiaddrs()[0], [hash]))).rejects.toThrow(
        /allowed 1\.\./,
      );
    }
    gc();
    const after = process.memoryUsage();
    await vi.waitFor(() => expect(closedByClient).toBe(30));
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(32 * MiB);
    expect(after.rss - before.rss).toBeLessThan(64 * MiB);
  });
});

describe('persistent bulk connections (bulk version 2)', () => {
  it('serves batch after batch over one token and one TCP connection, holding no stream slot between batches', async () => {
    const chunks = Array.from({ length: 12 }, (_, i) => pseudoRandomBytes(MiB / 2 + i, 200 + i));
    const s = await seeder(chunks);
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    for (let b = 0; b < 6; b++) {
      const batch = chunks.slice(2 * b, 2 * b + 2);
      const got = await Array.fromAsync(fetch(c, s.addr, batch.map(hashHex)));
      expect(got.map((g, i) => g.data?.equals(batch[i]))).toEqual([true, true]);
      expect(s.server.stats().activeStreams).toBe(0); // the batch gave its slot back; the connection stays
    }
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 1, connections: 1, refused: 0 });
    expect(s.bulk?.openConnections).toBe(1);
    expect(s.server.stats().bytesServed).toBe(chunks.reduce((a, x) => a + x.length, 0));
  });

  it('queues a second batch (queue) behind the one in progress on its connection: its answers follow, verified, and no second connection opens', async () => {
    const chunks = Array.from({ length: 9 }, (_, i) => pseudoRandomBytes(MiB / 2 + i, 260 + i));
    const s = await seeder(chunks, { limits: { maxStreamsPerPeer: 1 } });
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    const order: string[] = [];
    const read = async (name: string, batch: Buffer[], gen: AsyncGenerator<{ data?: Buffer }>) => {
      const got: boolean[] = [];
      for await (const g of gen) {
        order.push(name);
        got.push(g.data?.equals(batch[got.length]) === true);
      }
      return got;
    };
    // A opens the connection; B and then C (once A is done) queue behind the batch in progress. The server's one
    // stream slot for this peer is enough: it serves a connection's batches one after another.
    const [a, b, c2] = [chunks.slice(0, 3), chunks.slice(3, 6), chunks.slice(6)];
    const genA = fetch(c, s.addr, a.map(hashHex), { queue: true });
    const first = await genA.next();
    expect(first.value?.data?.equals(a[0])).toBe(true);
    order.push('A');
    const pb = read('B', b, fetch(c, s.addr, b.map(hashHex), { queue: true }));
    const pa = read('A', a.slice(1), genA);
    expect(await pa).toEqual([true, true]);
    const pc = read('C', c2, fetch(c, s.addr, c2.map(hashHex), { queue: true }));
    expect(await pb).toEqual([true, true, true]);
    expect(await pc).toEqual([true, true, true]);
    expect(order.join('')).toBe('AAABBBCCC');
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 1, connections: 1, refused: 0 });
    expect(s.server.stats()).toMatchObject({ busy: 0, errors: 0, refusedBatches: 0, activeStreams: 0 });
  });

  it('a refused batch (busy) leaves its connection in step and usable for the next batch', async () => {
    const chunks = Array.from({ length: 10 }, (_, i) => pseudoRandomBytes(4 * MiB, 220 + i));
    const s = await seeder(chunks, { limits: { maxStreamsPerPeer: 1 } });
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    // batch A holds the peer's only slot (its consumer stops after one chunk)
    const a = fetch(c, s.addr, chunks.map(hashHex));
    expect((await a.next()).value?.status).toBe('ok');
    // batch B, over three frames (more than the client pipelines), on a second connection: refused, every hash busy
    const many = Array.from({ length: 150 }, (_, i) => hashHex(chunks[i % 10]));
    const b = await Array.fromAsync(fetch(c, s.addr, many));
    expect(new Set(b.map((g) => g.status))).toEqual(new Set(['busy']));
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 2, connections: 2 });
    await a.return(undefined); // broken off mid-batch: that connection is closed, not reused
    await vi.waitFor(() => expect(s.bulk?.openConnections).toBe(1));
    await vi.waitFor(() => expect(s.server.stats().activeStreams).toBe(0));
    // batch C goes over B's connection and is served
    const got = await Array.fromAsync(fetch(c, s.addr, chunks.slice(0, 3).map(hashHex)));
    expect(got.map((g, i) => g.data?.equals(chunks[i]))).toEqual([true, true, true]);
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 2, connections: 2 });
  });

  it('limits hold with persistent connections: maxConcurrentTotal counts batches in flight across peers', async () => {
    const chunks = Array.from({ length: 10 }, (_, i) => pseudoRandomBytes(4 * MiB, 240 + i));
    const s = await seeder(chunks, { limits: { maxStreamsPerPeer: 4, maxConcurrentTotal: 1 } });
    const [c1, c2] = [await client(), await client()];
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    // both peers warm a connection first
    for (const c of [c1, c2]) await Array.fromAsync(fetch(c, s.addr, [hashHex(chunks[0])]));
    const held = fetch(c1, s.addr, chunks.map(hashHex));
    expect((await held.next()).value?.status).toBe('ok');
    const refused = await Array.fromAsync(fetch(c2, s.addr, chunks.slice(0, 2).map(hashHex)));
    expect(refused.map((g) => g.status)).toEqual(['busy', 'busy']);
    await held.return(undefined);
    await vi.waitFor(() => expect(s.server.stats().activeStreams).toBe(0));
    const served = await Array.fromAsync(fetch(c2, s.addr, chunks.slice(0, 2).map(hashHex)));
    expect(served.map((g) => g.status)).toEqual(['ok', 'ok']);
    // c2 used one connection throughout; c1 a second, closed when its batch was broken off
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 2, connections: 2 });
  });

  it('closes idle connections (server and client side), and a later batch opens a fresh one', async () => {
    const chunks = [1, 2].map((i) => pseudoRandomBytes(MiB + i, 260 + i));
    const s = await seeder(chunks, { idleMs: 300 });
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' }); // client idle close: 20 s, after the server's 300 ms
    await Array.fromAsync(fetch(c, s.addr, [hashHex(chunks[0])]));
    expect(s.bulk?.openConnections).toBe(1);
    await vi.waitFor(() => expect(s.bulk?.openConnections).toBe(0), { timeout: 5_000 });
    const again = await Array.fromAsync(fetch(c, s.addr, [hashHex(chunks[1])]));
    expect(again[0].data?.equals(chunks[1])).toBe(true);
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 2, connections: 2 });
    // the client's own idle close (a server that would keep it)
    const patient = await seeder(chunks);
    const quick = chunkFetch({ dataPlane: 'bulk-tcp', idleMs: 300 });
    await Array.fromAsync(quick(c, patient.addr, [hashHex(chunks[0])]));
    expect(patient.bulk?.openConnections).toBe(1);
    await vi.waitFor(() => expect(patient.bulk?.openConnections).toBe(0), { timeout: 5_000 });
    expect(patient.server.stats().errors).toBe(0); // a clean close, not a reset
  });

  it('a corrupt body closes that connection; the peer disconnecting (gater, hang-up) closes its bulk connections', async () => {
    const chunks = [1, 2, 3].map((i) => pseudoRandomBytes(MiB + i, 280 + i));
    const s = await seeder(chunks, { verifyOnRead: false });
    const rotten = Buffer.from(chunks[1]);
    rotten[777] ^= 1;
    await writeFile(s.store.path(hashHex(chunks[1])), rotten);
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    await expect(Array.fromAsync(fetch(c, s.addr, chunks.map(hashHex)))).rejects.toMatchObject({
      code: 'RSW_ERR_CHUNK_CORRUPT',
    });
    await vi.waitFor(() => expect(s.bulk?.openConnections).toBe(0));
    // the next batch needs a new token and connection
    const ok = await Array.fromAsync(fetch(c, s.addr, [hashHex(chunks[2])]));
    expect(ok[0].data?.equals(chunks[2])).toBe(true);
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 2, connections: 2 });
    expect(s.bulk?.openConnections).toBe(1);
    await c.hangUp(s.node.peerId);
    await vi.waitFor(() => expect(s.bulk?.openConnections).toBe(0));
    const after = await Array.fromAsync(fetch(c, s.addr, [hashHex(chunks[0])]));
    expect(after[0].data?.equals(chunks[0])).toBe(true);
    expect(s.bulk?.stats()).toMatchObject({ tokensIssued: 3, connections: 3 });
  });

  it('a stalled answer on a pooled connection fails the batch after timeoutMs (fresh connection, then libp2p)', async () => {
    // A peer whose bulk port answers the first batch of its first connection and then nothing, ever.
    const t = tempDir('rsw-bulk-stall-');
    cleanups.push(t.cleanup);
    const stall = await node(t.dir, 'stall');
    const chunk = pseudoRandomBytes(64 * 1024, 299);
    let connections = 0;
    const sockets: Socket[] = [];
    const port = await new Promise<number>((resolve) => {
      const srv = createServer((sock) => {
        sockets.push(sock);
        sock.on('error', () => {});
        if (connections++ > 0) return;
        let seen = 0;
        sock.on('data', (d) => {
          seen += d.length;
          // hello (37) + one frame of one hash (34) + batch end (2)
          if (seen === 37 + 34 + 2) {
            const header = Buffer.from([0, 0, 0, 0, 0]);
            header.writeUInt32BE(chunk.length, 1);
            sock.write(Buffer.concat([header, chunk]));
          }
        });
      });
      srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port));
      cleanups.push(() => {
        for (const x of sockets) x.destroy();
        return new Promise((r) => srv.close(r));
      });
    });
    await stall.handle(BULK_TOKEN_PROTOCOL, async (stream) => {
      stream.send(encodeTokenAnswer({ status: 'ok', port, ttlMs: 10_000, token: Buffer.alloc(32, 3) }));
      await stream.close();
    });
    const c = await client();
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    const addr = stall.getMultiaddrs()[0];
    const first = await Array.fromAsync(fetch(c, addr, [hashHex(chunk)], { timeoutMs: 500 }));
    expect(first[0].data?.equals(chunk)).toBe(true);
    // the pooled connection stalls, so does a fresh one, and the peer has no chunk protocol: the batch fails
    await expect(Array.fromAsync(fetch(c, addr, [hashHex(chunk)], { timeoutMs: 500 }))).rejects.toThrow();
    expect(connections).toBe(2);
  });

  it('still serves a version 1 connection (one batch, ended by the half-close)', async () => {
    const chunks = [pseudoRandomBytes(MiB, 300)];
    const s = await seeder(chunks);
    const c = await client();
    const { port, token: tk } = await token(c, s.addr);
    const received = await new Promise<number>((resolve) => {
      let n = 0;
      const sock: Socket = tcpConnect({ port, host: '127.0.0.1' }, () => {
        sock.end(Buffer.concat([encodeBulkHello(tk, 1), encodeChunkRequest([hashHex(chunks[0])])]));
      });
      sock.on('data', (d) => {
        n += d.length;
      });
      sock.on('close', () => resolve(n));
    });
    expect(received).toBe(5 + MiB);
    // a version 2 batch end on a version 1 connection is a protocol violation: closed unanswered
    const again = await token(c, s.addr);
    expect(
      await rawBulk(
        again.port,
        Buffer.concat([
          encodeBulkHello(again.token, 1),
          BULK_BATCH_END,
          encodeChunkRequest([hashHex(chunks[0])]),
        ]),
      ),
    ).toEqual({ received: 0, closed: true });
  });
});
