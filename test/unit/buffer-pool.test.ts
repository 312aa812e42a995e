import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../core/buffer-pool.ts';
import { ChunkResponseDecoder, encodeChunkResponseHeader } from '../../core/wire.ts';

describe('BufferPool', () => {
  it('hands out buffers of the exact length and reuses a released slab of the same size class', () => {
    const pool = new BufferPool();
    const a = pool.acquire(700_000);
    expect(a.length).toBe(700_000);
    a.fill(1);
    pool.release(a);
    expect(pool.pooledBytes).toBe(1024 * 1024); // 700 kB rounds up to the 1 MiB class
    const b = pool.acquire(600_000);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.pooledBytes).toBe(0);
    const c = pool.acquire(600_000); // the slab is out: a new one
    expect(c.buffer).not.toBe(b.buffer);
  });

  it('ignores a second release and buffers it did not make, and keeps at most keepPerClass slabs', () => {
    const pool = new BufferPool({ keepPerClass: 2 });
    const bufs = [1, 2, 3].map(() => pool.acquire(100_000));
    pool.release(bufs[0]);
    pool.release(bufs[0]);
    pool.release(Buffer.alloc(100_000));
    pool.release(undefined);
    expect(pool.pooledBytes).toBe(128 * 1024);
    pool.release(bufs[1]);
    pool.release(bufs[2]);
    expect(pool.pooledBytes).toBe(2 * 128 * 1024);
    const again = [pool.acquire(100_000), pool.acquire(100_000)];
    expect(new Set(again.map((b) => b.buffer))).toEqual(new Set([bufs[0].buffer, bufs[1].buffer]));
  });

  it('feeds the chunk response decoder: ok bodies land in pooled buffers, intact', () => {
    const pool = new BufferPool();
    const body = Buffer.from('x'.repeat(5000));
    const wire = Buffer.concat([encodeChunkResponseHeader({ status: 'ok', length: body.length }), body]);
    const decoder = new ChunkResponseDecoder((n) => pool.acquire(n));
    const [r] = decoder.push([wire.subarray(0, 7), wire.subarray(7)]);
    expect(r.body?.equals(body)).toBe(true);
    pool.release(r.body);
    expect(pool.pooledBytes).toBe(64 * 1024);
  });
});
