// Encryption benchmarks (issue 9, Build item 4): the chunk cipher in-process, then `rackswarm publish --data` and a
// `rackswarm fetch` from a real head, each with and without --encrypt, runs interleaved so both see the same load.
// Quoted: medians, the encrypted/plain ratio measured side by side, and CPU seconds per GiB (load inflates it less).
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChunkCipher, generateImageKey } from '../core/chunk-cipher.ts';
import { hash } from '../core/hash.ts';
import { type RunningHead, startHead } from '../test/helpers/head.ts';
import { writeRandomFile } from './lib/random-file.ts';
import { fmt, median } from './lib/stats.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const bin = join(root, 'bin/rackswarm.js');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface Run {
  seconds: number;
  cpuSeconds: number;
}

/** CPU-only: seal and open `total` bytes in chunks of `chunk` bytes; BLAKE3 of the same bytes for scale. */
function cipherMicro(chunk: number, total: number): { seal: number; open: number; blake3: number } {
  const cipher = new ChunkCipher(generateImageKey());
  const plain = randomFillSync(Buffer.alloc(chunk));
  const n = Math.max(1, Math.floor(total / chunk));
  const time = (f: () => void) => {
    const t0 = performance.now();
    f();
    return (n * chunk) / ((performance.now() - t0) / 1000) / 1e6;
  };
  const sealed = cipher.seal(plain);
  return {
    seal: time(() => {
      for (let i = 0; i < n; i++) cipher.seal(plain);
    }),
    open: time(() => {
      for (let i = 0; i < n; i++) cipher.open(sealed);
    }),
    blake3: time(() => {
      for (let i = 0; i < n; i++) hash(plain);
    }),
  };
}

function publishOnce(file: string, data: string, key: string, encrypt: boolean): Run {
  rmSync(data, { recursive: true, force: true });
  const args = ['publish', file, '--name', 'img', '--key', key, '--data', data, '--json'];
  if (encrypt) args.push('--encrypt', join(data, '..', 'image.key'));
  const p = spawnSync(process.execPath, ['--import', join(root, 'bench/lib/report-rss.js'), bin, ...args], {
    encoding: 'utf8',
  });
  if (p.status !== 0) throw new Error(`publish failed: ${p.stderr}`);
  return {
    seconds: JSON.parse(p.stdout).seconds,
    cpuSeconds: Number(/bench-cpu-ms (\d+)/.exec(p.stderr)?.[1]) / 1000,
  };
}

function fetchOnce(head: RunningHead, dir: string, pub: string, name: string, n: number): Promise<Run> {
  const args = [
    '--import',
    join(root, 'bench/lib/report-rss.js'),
    bin,
    'fetch',
    name,
    '--head',
    head.url,
    '--trust',
    pub,
    '--out',
    join(dir, `out-${name}-${n}`),
    '--cache',
    join(dir, `cache-${name}-${n}`),
    '--linger',
    '0',
    '--json',
  ];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('close', (code) => {
      rmSync(join(dir, `out-${name}-${n}`), { force: true });
      rmSync(join(dir, `cache-${name}-${n}`), { recursive: true, force: true });
      if (code !== 0) return reject(new Error(`fetch failed: ${err}`));
      resolve({
        seconds: JSON.parse(out.trim().split('\n').pop() as string).seconds,
        cpuSeconds: Number(/bench-cpu-ms (\d+)/.exec(err)?.[1]) / 1000,
      });
    });
  });
}

export async function benchEncryption(opts: { quick?: boolean }): Promise<string> {
  const size = opts.quick ? 128 * MiB : 512 * MiB;
  const runs = opts.quick ? 2 : 3;
  const work = mkdtempSync(join(tmpdir(), 'rsw-bench-encrypt-'));
  let head: RunningHead | undefined;
  try {
    spawnSync(process.execPath, [bin, 'keys', 'generate', '--out', join(work, 'keys')]);
    const key = join(work, 'keys/publisher.key');
    const pub = join(work, 'keys/publisher.pub');
    const img = join(work, 'image.bin');
    writeRandomFile(img, size);

    const micro = [32 * 1024, 512 * 1024].map((c) => ({
      chunk: c,
      ...cipherMicro(c, opts.quick ? 64 * MiB : 256 * MiB),
    }));

    const pubRuns: Record<'plain' | 'encrypted', Run[]> = { plain: [], encrypted: [] };
    for (let i = 0; i < runs; i++) {
      pubRuns.plain.push(publishOnce(img, join(work, 'pub-data'), key, false));
      pubRuns.encrypted.push(publishOnce(img, join(work, 'pub-data'), key, true));
    }
    rmSync(join(work, 'pub-data'), { recursive: true, force: true });

    // One head holding both: "plain" and "secret" (the same bytes, encrypted), on a closed mesh.
    const data = join(work, 'head');
    for (const [name, enc] of [
      ['plain', false],
      ['secret', true],
    ] as const) {
      const args = [bin, 'publish', img, '--name', name, '--key', key, '--data', data];
      if (enc) args.push('--encrypt');
      const p = spawnSync(process.execPath, args, { encoding: 'utf8' });
      if (p.status !== 0) throw new Error(p.stderr);
    }
    writeFileSync(join(work, 'closed.json'), JSON.stringify({ mesh: { closed: true } }));
    head = await startHead(data, [], ['--config', join(work, 'closed.json')]);
    const fetchRuns: Record<'plain' | 'secret', Run[]> = { plain: [], secret: [] };
    for (let i = 0; i < runs; i++) {
      fetchRuns.plain.push(await fetchOnce(head, work, pub, 'plain', i));
      fetchRuns.secret.push(await fetchOnce(head, work, pub, 'secret', i));
    }

    const mbps = (r: Run[]) => size / median(r.map((x) => x.seconds)) / 1e6;
    const cpu = (r: Run[]) => median(r.map((x) => x.cpuSeconds)) / (size / GiB);
    const row = (what: string, r: Run[], base: Run[]) =>
      `| ${what} | ${fmt(mbps(r), 0)} | ${fmt(mbps(r) / mbps(base), 2)} | ${r.map((x) => fmt(x.seconds, 2)).join(', ')} | ${fmt(cpu(r), 2)} |`;
    return [
      '## Encryption (publish --encrypt, core/chunk-cipher.ts)',
      '',
      `(a) The chunk cipher alone, one core, in-process (MB/s of plaintext): seal = keyed BLAKE3 + AES-256-GCM, open =`,
      'AES-256-GCM + keyed BLAKE3 check; BLAKE3 of the same bytes for scale.',
      '',
      '| chunk | seal MB/s | open MB/s | BLAKE3 MB/s |',
      '|---|---|---|---|',
      ...micro.map(
        (m) => `| ${m.chunk / 1024} KiB | ${fmt(m.seal, 0)} | ${fmt(m.open, 0)} | ${fmt(m.blake3, 0)} |`,
      ),
      '',
      `(b) ${size / MiB} MiB pseudo-random image, plain and encrypted runs interleaved, median of ${runs}. Publish:`,
      '`rackswarm publish --data` into a fresh data directory (fsynced chunks). Fetch: one `rackswarm fetch` from a real',
      'head on loopback (closed mesh, so the head releases the key), end to end. CPU: the CLI process, user + system.',
      '',
      '| case | MB/s | vs plain | runs (s) | CPU s/GiB |',
      '|---|---|---|---|---|',
      row('publish, plain', pubRuns.plain, pubRuns.plain),
      row('publish --encrypt', pubRuns.encrypted, pubRuns.plain),
      row('fetch, plain', fetchRuns.plain, fetchRuns.plain),
      row('fetch, encrypted (decrypt into the output)', fetchRuns.secret, fetchRuns.plain),
      '',
      'Reproduce: `node bench/encryption.ts` (add `--quick` for a shorter run).',
    ].join('\n');
  } finally {
    await head?.stop('SIGKILL').catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(await benchEncryption({ quick: process.argv.includes('--quick') }));
