import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { BULK_HELLO_BYTES, BULK_TOKEN_PROTOCOL, encodeTokenAnswer } from '../../core/bulk-wire.ts';
import { hashHex } from '../../core/hash.ts';
import { chunkFetch, readPausesWaiting } from '../../peer/bulk-client.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

// The bulk reader's receive low-water mark in user space (peer/read-pause.ts) on real sockets on 127.0.0.1: a peer
// whose bulk port dribbles each chunk in small writes, as a slow link brings it in small packets. The reader pauses
// after small reads and reads what piled up in fewer reads than the peer made writes; every chunk still arrives
// bit-identical, batch after batch on one persistent connection; a peer that hangs up on a paused reader fails the
// batch, and no pause is left waiting.

const KiB = 1024;
/** A batch of one hash: its request frame (u16 count + 32-byte hash) and the batch end (u16 0). */
const ONE_HASH_BATCH_BYTES = 2 + 32 + 2;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function p2p(name: string, listen: boolean): Promise<Libp2p> {
  const t = tempDir('rsw-read-pause-');
  cleanups.push(t.cleanup);
  const n = await createP2PNode({
    keyFile: join(t.dir, `${name}.key`),
    listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [],
  });
  cleanups.push(() => n.stop());
  return n;
}

/**
 * A peer whose bulk port answers the n-th one-hash batch of a connection with chunks[n], in `piece`-byte writes
 * every `everyMs` ms; with `hangUpAfter` it destroys the connection after that many bytes of its first body.
 */
async function dribbler(chunks: Buffer[], opts: { piece: number; everyMs: number; hangUpAfter?: number }) {
  const n = await p2p('dribbler', true);
  let writes = 0;
  let connections = 0;
  const sockets: Socket[] = [];
  const timers = new Set<ReturnType<typeof setInterval>>();
  const port = await new Promise<number>((resolve) => {
    const srv = createServer((sock) => {
      connections++;
      sockets.push(sock);
      sock.on('error', () => {});
      let seen = 0;
      let answered = 0;
      const queue: Buffer[] = [];
      let timer: ReturnType<typeof setInterval> | undefined;
      const pump = () => {
        const next = queue[0];
        if (!next) {
          clearInterval(timer);
          timers.delete(timer as ReturnType<typeof setInterval>);
          timer = undefined;
          return;
        }
        const piece = next.subarray(0, opts.piece);
        queue[0] = next.subarray(piece.length);
        if (queue[0].length === 0) queue.shift();
        writes++;
        sock.write(piece);
      };
      sock.on('data', (d) => {
        seen += d.length;
        while (seen >= BULK_HELLO_BYTES + (answered + 1) * ONE_HASH_BATCH_BYTES) {
          const body = chunks[answered++];
          const header = Buffer.from([0, 0, 0, 0, 0]);
          header.writeUInt32BE(body.length, 1);
          queue.push(header);
          queue.push(opts.hangUpAfter === undefined ? body : body.subarray(0, opts.hangUpAfter));
          if (opts.hangUpAfter !== undefined) queue.push(Buffer.alloc(0));
          if (!timer) {
            timer = setInterval(() => {
              if (queue.length === 1 && queue[0].length === 0) {
                sock.destroy(); // the hang-up, mid-body
                queue.length = 0;
              }
              pump();
            }, opts.everyMs);
            timers.add(timer);
          }
        }
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port));
    cleanups.push(() => {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      return new Promise((r) => srv.close(r));
    });
  });
  await n.handle(BULK_TOKEN_PROTOCOL, async (stream) => {
    stream.send(encodeTokenAnswer({ status: 'ok', port, ttlMs: 10_000, token: Buffer.alloc(32, 7) }));
    await stream.close();
  });
  return {
    addr: n.getMultiaddrs()[0],
    get writes() {
      return writes;
    },
    get connections() {
      return connections;
    },
  };
}

describe('bulk reads on a slow link (receive low-water mark in user space)', () => {
  it('pauses after small reads, reads what piled up, and every chunk of every batch arrives intact', async () => {
    // 3 chunks of 192 KiB in 2 KiB writes every ms: ~2 KB/ms, a slow link's trickle
    const chunks = [0, 1, 2].map((i) => pseudoRandomBytes(192 * KiB + i, 600 + i));
    const peer = await dribbler(chunks, { piece: 2 * KiB, everyMs: 1 });
    const c = await p2p('client', false);
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    for (const chunk of chunks) {
      const got = await Array.fromAsync(fetch(c, peer.addr, [hashHex(chunk)]));
      expect(got.map((g) => g.status)).toEqual(['ok']);
      expect(got[0].data?.equals(chunk)).toBe(true);
    }
    expect(peer.connections).toBe(1); // one persistent connection, reused by each batch
    const counters = fetch.readCounters?.();
    expect(counters?.pauses).toBeGreaterThan(0);
    // the paused reads gathered several writes each (the header reads are reads too)
    expect(counters?.reads).toBeLessThan(peer.writes);
    expect(readPausesWaiting()).toBe(0);
  });

  it('a peer hanging up on a paused reader fails the batch, and leaves no pause waiting', async () => {
    const chunk = pseudoRandomBytes(256 * KiB, 650);
    const peer = await dribbler([chunk], { piece: 2 * KiB, everyMs: 1, hangUpAfter: 96 * KiB });
    const c = await p2p('client', false);
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    await expect(
      Array.fromAsync(fetch(c, peer.addr, [hashHex(chunk)], { timeoutMs: 5_000 })),
    ).rejects.toThrow(/closed the bulk connection/);
    expect(fetch.readCounters?.().pauses).toBeGreaterThan(0);
    await vi.waitFor(() => expect(readPausesWaiting()).toBe(0));
  });

  it('an abort while paused ends the batch at once and leaves no pause waiting', async () => {
    const chunk = pseudoRandomBytes(1024 * KiB, 660);
    const peer = await dribbler([chunk], { piece: 2 * KiB, everyMs: 1 });
    const c = await p2p('client', false);
    const fetch = chunkFetch({ dataPlane: 'bulk-tcp' });
    const ctl = new AbortController();
    const batch = Array.fromAsync(fetch(c, peer.addr, [hashHex(chunk)], { signal: ctl.signal }));
    await vi.waitFor(() => expect(fetch.readCounters?.().pauses).toBeGreaterThan(0));
    ctl.abort(new Error('stop'));
    await expect(batch).rejects.toThrow(/stop/);
    expect(readPausesWaiting()).toBe(0);
  });
});
