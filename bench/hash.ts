import { randomFillSync } from 'node:crypto';
import { hash, StreamHasher } from '../core/hash.ts';
import { fmt, gbps, median, repeat } from './lib/stats.ts';

/** BLAKE3 throughput on one core: one-shot per 1 MiB / 4 MiB chunk, and streaming over 64 MiB pieces. */
export async function benchHash(opts: { quick?: boolean }): Promise<string> {
  const total = (opts.quick ? 256 : 1024) * 1024 * 1024;
  const buf = randomFillSync(Buffer.alloc(total));
  const rows: string[] = [];
  for (const piece of [1 << 20, 4 << 20]) {
    const secs = await repeat(5, () => {
      const t0 = performance.now();
      for (let off = 0; off < total; off += piece) hash(buf.subarray(off, off + piece));
      return (performance.now() - t0) / 1000;
    });
    rows.push(`| one-shot \`hash()\`, ${piece >> 20} MiB chunks | ${fmt(gbps(total, median(secs)))} |`);
    process.stderr.write(`hash one-shot ${piece >> 20} MiB: ${fmt(gbps(total, median(secs)))} GB/s\n`);
  }
  const secs = await repeat(5, () => {
    const t0 = performance.now();
    const h = new StreamHasher();
    for (let off = 0; off < total; off += 64 << 20) h.update(buf.subarray(off, off + (64 << 20)));
    h.digest();
    return (performance.now() - t0) / 1000;
  });
  rows.push(`| streaming \`StreamHasher\`, 64 MiB updates | ${fmt(gbps(total, median(secs)))} |`);
  return [
    '## BLAKE3 (core/hash.ts, @napi-rs/blake-hash)',
    '',
    `${total >> 20} MiB of random bytes in memory, one core, median of 5. Goal: ≥ 4 GB/s/core.`,
    '',
    '| case | GB/s |',
    '|---|---|',
    ...rows,
  ].join('\n');
}
