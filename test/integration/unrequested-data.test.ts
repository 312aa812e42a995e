import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Libp2p, Stream } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createP2PNode } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { CHUNK_PROTOCOL, encodeChunkResponseHeader } from '../../core/wire.ts';
import { fetchChunks } from '../../peer/chunk-client.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';
import { endOf } from '../helpers/raw-stream.ts';

// Issue 9, Build item 3, "unrequested data dropped": a chunk server that answers a request and then keeps sending
// well-formed `ok` responses nobody asked for. The fetch returns exactly what it asked for, the stream ends, and the
// unrequested megabytes are not kept (memory flat over many rounds).

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let server: Libp2p;
let client: Libp2p;
const chunk = pseudoRandomBytes(MiB, 77);
const ends: Promise<{ status: string }>[] = [];
let extraSent = 0;

beforeAll(async () => {
  t = tempDir('rsw-unrequested-');
  server = await createP2PNode({ keyFile: join(t.dir, 's.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  client = await createP2PNode({ keyFile: join(t.dir, 'c.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  const ok = Buffer.concat([encodeChunkResponseHeader({ status: 'ok', length: chunk.length }), chunk]);
  await server.handle(CHUNK_PROTOCOL, (stream: Stream) => {
    ends.push(endOf(stream));
    let answered = false;
    stream.addEventListener('message', () => {
      if (answered) return;
      answered = true;
      stream.send(ok);
      // Then 32 more responses (32 MiB) that were never requested, as fast as the stream takes them.
      void (async () => {
        for (let i = 0; i < 32 && stream.status === 'open' && stream.writeStatus === 'writable'; i++) {
          if (!stream.send(ok)) await new Promise((r) => stream.addEventListener('drain', r, { once: true }));
          extraSent += chunk.length;
        }
      })().catch(() => {});
    });
  });
});
afterAll(async () => {
  await client?.stop();
  await server?.stop();
  t?.cleanup();
});

function memory() {
  gc();
  return process.memoryUsage().arrayBuffers;
}

describe('unrequested chunk responses', () => {
  it('are dropped: the fetch yields what it asked for, the stream ends, memory stays flat', async () => {
    const addr = server.getMultiaddrs()[0];
    const round = async () => {
      const got = await Array.fromAsync(fetchChunks(client, addr, [hashHex(chunk)], { timeoutMs: 5000 }));
      expect(got.map((r) => [r.status, r.data?.equals(chunk)])).toEqual([['ok', true]]);
    };
    await round();
    const before = memory();
    for (let i = 0; i < 20; i++) await round();
    // Every stream ends (it is not left open, buffering what the server keeps sending).
    const statuses = await Promise.race([
      Promise.all(ends),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a stream never ended')), 15_000)),
    ]);
    const grown = (memory() - before) / MiB;
    console.log(
      `unrequested data: ${(extraSent / MiB).toFixed(0)} MiB pushed unasked over 21 fetches; streams ended ${JSON.stringify(
        statuses.reduce<Record<string, number>>((a, s) => {
          a[s.status] = (a[s.status] ?? 0) + 1;
          return a;
        }, {}),
      )}; arrayBuffers +${grown.toFixed(1)} MiB`,
    );
    expect(statuses).toHaveLength(21);
    // 672 MiB pushed: what is still in flight in the muxers at the end is all that may remain.
    expect(grown).toBeLessThan(64);
    expect(
      client
        .getConnections()
        .flatMap((c) => c.streams)
        .filter((s) => s.protocol === CHUNK_PROTOCOL),
    ).toEqual([]);
  });
});
