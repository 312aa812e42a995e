import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BufferPool } from '../../core/buffer-pool.ts';
import { hashHex } from '../../core/hash.ts';
import type { Manifest } from '../../core/manifest.ts';
import { Fetcher, type FetcherComponents } from '../../peer/fetcher.ts';
import { ImageWriter } from '../../peer/image-writer.ts';
import { ResumeState } from '../../peer/resume-state.ts';
import { tempDir } from '../helpers/cli.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

// What a node serves onward (Fetcher.chunkSource, behind its chunk server): verified chunks re-read from its output
// and hashed again before they go out, into the chunk server's pooled buffers on bulk connections.

const t = tempDir('rsw-fetcher-source-');
afterAll(() => t.cleanup());

async function fetched(name: string) {
  const bytes = pseudoRandomBytes(300_000, 9);
  const lengths = [100_000, 120_000, 80_000];
  const chunks = lengths.map((length, k) => {
    const offset = lengths.slice(0, k).reduce((a, b) => a + b, 0);
    return { offset, length, hash: hashHex(bytes.subarray(offset, offset + length)) };
  });
  const m = { name: 'img', version: 1, format: 'file', size: bytes.length, chunks } as Manifest;
  const out = join(t.dir, `${name}.img`);
  writeFileSync(out, bytes);
  const writer = await ImageWriter.open(out, bytes.length);
  const id = hashHex(Buffer.from(name));
  const resume = await ResumeState.open(join(t.dir, `${name}.resume`), id, chunks.length);
  await resume.markVerified([0, 1]); // chunk 2 not fetched yet
  const fetcher = new Fetcher(
    {
      node: {} as FetcherComponents['node'], // not started: only the chunk source is used
      writer,
      resume,
      head: { peerId: 'head', addr: {} as FetcherComponents['head']['addr'] },
    },
    { manifest: m, imageId: id },
  );
  return { bytes, chunks, out, writer, source: fetcher.chunkSource() };
}

describe('Fetcher.chunkSource', () => {
  it('reads a verified chunk into the buffer the server gives, bit-identical; not one it does not hold yet', async () => {
    const f = await fetched('a');
    const pool = new BufferPool();
    const given: Buffer[] = [];
    const data = await f.source.read(f.chunks[1].hash, (n) => {
      const b = pool.acquire(n);
      given.push(b);
      return b;
    });
    expect(data).toBe(given[0]);
    expect(data.equals(f.bytes.subarray(100_000, 220_000))).toBe(true);
    expect((await f.source.get(f.chunks[0].hash)).equals(f.bytes.subarray(0, 100_000))).toBe(true);
    await expect(f.source.read(f.chunks[2].hash)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_NOT_FOUND' });
    expect(await f.source.has(f.chunks[2].hash)).toBe(false);
    await f.writer.close();
  });

  it('never serves a chunk that changed in the output since it was verified, and gives the buffer back', async () => {
    const f = await fetched('b');
    const changed = Buffer.from(f.bytes);
    changed[150_000] ^= 1; // inside chunk 1
    writeFileSync(f.out, changed);
    const back: Buffer[] = [];
    await expect(
      f.source.read(
        f.chunks[1].hash,
        (n) => Buffer.alloc(n),
        (b) => back.push(b),
      ),
    ).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
    expect(back).toHaveLength(1);
    await expect(f.source.get(f.chunks[1].hash)).rejects.toMatchObject({ code: 'RSW_ERR_CHUNK_CORRUPT' });
    expect((await f.source.get(f.chunks[0].hash)).equals(f.bytes.subarray(0, 100_000))).toBe(true);
    await f.writer.close();
  });
});
