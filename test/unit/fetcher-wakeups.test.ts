// peer/fetcher.ts: a neighbour's have wakes the fetch loop only when the scheduler may offer that neighbour something
// (Scheduler.peerHaveOne) — with the node's source slots full, have increments are taken in without a loop turn
// (RSW_COUNTERS at N = 16: ~870 of ~1,100 turns per node were such wake-ups, docs/BENCHMARKS.md "Session 12"). The
// counts come from core/counters.ts, switched on for this file before the modules load.
import type { Connection, Stream } from '@libp2p/interface';
import { lpStream, streamPair } from '@libp2p/utils';
import { afterEach, describe, expect, it, vi } from 'vitest';

vi.stubEnv('RSW_COUNTERS', '1');
const { counterSnapshot } = await import('../../core/counters.ts');
const { encodeBitfield, encodeHave } = await import('../../core/wire.ts');
const { Fetcher } = await import('../../peer/fetcher.ts');
type Components = ConstructorParameters<typeof Fetcher>[0];
type Init = ConstructorParameters<typeof Fetcher>[1];

const IMAGE_ID = 'ab'.repeat(32);
const CHUNKS = 16;
const HASHES = Array.from({ length: CHUNKS }, (_, i) => i.toString(16).padStart(64, '0'));

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
});

/**
 * A fetcher whose head holds every chunk and whose batches never answer (each stays in flight: a source slot taken),
 * and a way to open a have exchange from neighbour `id` (its end of the stream, to write bitfield and increments on).
 */
async function fetcherWith(maxSources: number) {
  let accept: ((stream: Stream, connection: Connection) => void) | undefined;
  const asked: string[] = [];
  const never = Promise.withResolvers<void>();
  const node = {
    peerId: { toString: () => 'me' },
    handle: async (_p: unknown, handler: (s: Stream, c: Connection) => void) => {
      accept = handler;
    },
    unhandle: async () => {},
    dialProtocol: async () => {
      throw new Error('no tracker here');
    },
    dial: async () => {
      throw new Error('no dials here');
    },
    getMultiaddrs: () => [],
  } as unknown as Components['node'];
  const fetcher = new Fetcher(
    {
      node,
      writer: {} as Components['writer'],
      resume: { has: () => false } as unknown as Components['resume'],
      head: { peerId: 'head', addr: { toString: () => 'head' } as Components['head']['addr'] },
      fetchChunks: async function* (_node, peer) {
        asked.push(String(peer));
        await never.promise;
        yield* [];
      },
    },
    {
      manifest: {
        name: 'img',
        version: 1,
        size: CHUNKS * 1000,
        chunks: HASHES.map((hash, i) => ({ hash, offset: i * 1000, length: 1000 })),
      } as Init['manifest'],
      imageId: IMAGE_ID,
      maxSources,
    },
  );
  const stop = new AbortController();
  const running = fetcher.run(stop.signal).catch(() => {});
  cleanups.push(async () => {
    stop.abort();
    never.resolve();
    await fetcher.stop();
    await running;
  });
  await vi.waitFor(() => expect(asked).toContain('head'));
  const neighbour = async (id: string) => {
    const [ours, theirs] = await streamPair();
    accept?.(ours, { remotePeer: { toString: () => id } } as unknown as Connection);
    const lp = lpStream(theirs);
    await lp.write(encodeBitfield(IMAGE_ID, CHUNKS, () => false));
    return lp;
  };
  return { asked, neighbour };
}

const counter = (name: string) => counterSnapshot()[name] ?? 0;

describe('fetch loop wake-ups from have increments', () => {
  it('a have the node cannot act on (its one source slot is the head) does not wake the loop', async () => {
    const f = await fetcherWith(1);
    const before = { quiet: counter('fetch.haveQuiet'), woke: counter('fetch.poke.have') };
    const lp = await f.neighbour('nbr1');
    for (let i = 0; i < 5; i++) await lp.write(encodeHave([i]));
    // the bitfield (empty) and the 5 increments, all taken in without a wake-up
    await vi.waitFor(() => expect(counter('fetch.haveQuiet') - before.quiet).toBe(6));
    expect(counter('fetch.poke.have') - before.woke).toBe(0);
    expect(f.asked).toEqual(['head']);
  });

  it('a have the node can act on (a source slot free) wakes the loop, which asks that neighbour', async () => {
    const f = await fetcherWith(2);
    const before = counter('fetch.poke.have');
    const lp = await f.neighbour('nbr2');
    await lp.write(encodeHave([3]));
    await vi.waitFor(() => expect(f.asked).toContain('nbr2'));
    expect(counter('fetch.poke.have') - before).toBeGreaterThanOrEqual(1);
  });
});
