// Chunk serving throughput: a ChunkServer in one process, fetchChunks in another, over loopback; raw Node TCP
// between two processes moving the same chunk bytes, in the same run, for the ceiling.
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { multiaddr } from '@multiformats/multiaddr';
import { pEvent } from 'p-event';
import { createP2PNode } from '../cli/p2p-node.ts';
import { hashHex } from '../core/hash.ts';
import { ChunkStore } from '../core/store.ts';
import { ChunkResponseDecoder, encodeChunkResponseHeader } from '../core/wire.ts';
import { fetchChunks } from '../peer/chunk-client.ts';
import { ChunkServer } from '../seeder/chunk-server.ts';
import { fmt, median } from './lib/stats.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const self = fileURLToPath(import.meta.url);
const BARE_PROTOCOL = '/rackswarm-bench/bare/1.0.0';

type Case = 'libp2p' | 'libp2p-noise' | 'libp2p-bare' | 'libp2p-bare-noise' | 'raw' | 'raw-verified';
const CASES: Array<{ id: Case; label: string }> = [
  { id: 'raw', label: 'raw Node TCP, chunk files read from the store, bytes only' },
  {
    id: 'raw-verified',
    label: 'raw Node TCP + store.get (verify on read) + client BLAKE3, same wire format',
  },
  {
    id: 'libp2p-bare-noise',
    label: 'bare libp2p stream (TCP + Noise + Yamux): the same chunk files in 1 MiB `send()`s, bytes only',
  },
  {
    id: 'libp2p-bare',
    label: 'bare libp2p stream (TCP + TLS 1.3 + Yamux), bytes only',
  },
  {
    id: 'libp2p-noise',
    label: 'ChunkServer → fetchChunks (TCP + Noise + Yamux, verify on read and on receipt)',
  },
  {
    id: 'libp2p',
    label: 'ChunkServer → fetchChunks (TCP + TLS 1.3 + Yamux: the default), verify on read and on receipt',
  },
];

/** The libp2p encryption a bench child uses: its case id ends in -noise for Noise, else the default (TLS first). */
function limitsFor(): { encryption?: Array<'tls' | 'noise'> } {
  return process.env.RSW_BENCH_ENCRYPTION === 'noise' ? { encryption: ['noise'] } : {};
}

interface Dataset {
  dir: string;
  hashesFile: string;
  bytes: number;
  chunks: number;
}

/** Random chunks of 512 KiB–2 MiB straight into a store's layout (no fsync: this is set-up, not publish). */
function makeDataset(totalBytes: number): Dataset {
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-serve-'));
  const store = join(dir, 'data');
  const hashes: string[] = [];
  let bytes = 0;
  let seed = 12345;
  const buf = Buffer.allocUnsafe(2 * MiB);
  while (bytes < totalBytes) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const size = 512 * KiB + (seed % (1536 * KiB + 1));
    const data = randomFillSync(buf.subarray(0, size));
    const h = hashHex(data);
    const path = join(store, 'chunks', h.slice(0, 2), h.slice(2));
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, data);
    hashes.push(h);
    bytes += size;
  }
  const hashesFile = join(dir, 'hashes.json');
  writeFileSync(hashesFile, JSON.stringify(hashes));
  return { dir, hashesFile, bytes, chunks: hashes.length };
}

/** Spawns this file in a child role; resolves with the child's first stdout line. */
function child(args: string[]): { line: Promise<string>; done: Promise<string>; kill: () => void } {
  const noise = args[1].endsWith('-noise');
  const role = noise ? args[1].slice(0, -'-noise'.length) : args[1];
  const p = spawn(process.execPath, [self, args[0], role, ...args.slice(2)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, RSW_BENCH_ENCRYPTION: noise ? 'noise' : '' },
  });
  const lines = createInterface({ input: p.stdout });
  const all: string[] = [];
  const line = new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    p.once('exit', (code) => reject(new Error(`bench child ${args[1]} exited ${code} before answering`)));
  });
  lines.on('line', (l) => all.push(l));
  const done = new Promise<string>((resolve, reject) => {
    p.once('exit', (code) =>
      code === 0 ? resolve(all.at(-1) ?? '') : reject(new Error(`bench child ${args[1]} exited ${code}`)),
    );
  });
  line.catch(() => {});
  return { line, done, kill: () => p.stdin.end() };
}

async function runOnce(c: Case, ds: Dataset): Promise<number> {
  const server = child(['--child', `serve-${c}`, ds.dir]);
  const addr = await server.line;
  const client = child(['--child', `fetch-${c}`, addr, ds.hashesFile]);
  const result = JSON.parse(await client.done) as { seconds: number; bytes: number };
  server.kill();
  await server.done;
  if (result.bytes !== ds.bytes) throw new Error(`${c}: fetched ${result.bytes} bytes, expected ${ds.bytes}`);
  return result.seconds;
}

export async function benchChunkServing(opts: { quick?: boolean }): Promise<string> {
  const runs = opts.quick ? 3 : 5;
  const ds = makeDataset((opts.quick ? 256 : 1024) * MiB);
  const seconds = new Map<Case, number[]>(CASES.map((c) => [c.id, []]));
  try {
    // Interleaved run by run, so the machine's noise falls on every case alike.
    for (let r = 0; r < runs; r++) {
      for (const c of CASES) {
        const s = await runOnce(c.id, ds);
        seconds.get(c.id)?.push(s);
        process.stderr.write(`chunk serving ${c.id} run ${r + 1}: ${fmt(ds.bytes / s / 1e6, 0)} MB/s\n`);
      }
    }
  } finally {
    rmSync(ds.dir, { recursive: true, force: true });
  }
  const mbps = (c: Case) => seconds.get(c)?.map((s) => ds.bytes / s / 1e6) ?? [];
  const libp2p = median(mbps('libp2p'));
  const rows = CASES.map((c) => {
    const xs = mbps(c.id);
    return `| ${c.label} | ${fmt(median(xs), 0)} | ${fmt(Math.min(...xs), 0)}–${fmt(Math.max(...xs), 0)} | ${fmt(libp2p / median(xs))} |`;
  });
  const cmd = `node bench/chunk-serving.ts${opts.quick ? ' --quick' : ''}`;
  return [
    '## Chunk serving (seeder/chunk-server.ts → peer/chunk-client.ts)',
    '',
    `${fmt(ds.bytes / MiB, 0)} MiB in ${ds.chunks} random chunks of 512 KiB–2 MiB (page cache), fetched in one`,
    'call (one stream, 64 hashes per request frame, two frames in flight) by a client process from a server',
    `process on 127.0.0.1; MB/s = 10⁶ bytes/s at the receiver, median of ${runs} runs, cases interleaved run by run;`,
    'each client process dials and fetches 8 chunks before the timed fetch. The raw rows are the same bytes over a',
    'plain socket: the transport ceiling, then the same with the chunk store and BLAKE3 work our protocol does.',
    '',
    '| case | MB/s | range | libp2p / this |',
    '|---|---|---|---|',
    ...rows,
    '',
    `Reproduce: \`${cmd}\` (or \`npm run bench${opts.quick ? ' -- --quick' : ''}\` for every section).`,
  ].join('\n');
}

// ---- child roles ----------------------------------------------------------------------------------------------------

async function serveLibp2p(dir: string): Promise<void> {
  const store = await ChunkStore.open({ dataDir: join(dir, 'data') });
  const node = await createP2PNode({
    keyFile: join(dir, 'server.key'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    limits: limitsFor(),
  });
  const server = new ChunkServer(
    { store },
    {
      maxStreamsPerPeer: 4,
      maxConcurrentTotal: 64,
      perPeerBytesPerSecond: 0,
      totalBytesPerSecond: 0,
      readTimeoutMs: 10_000,
    },
  );
  await server.start(node);
  process.stdout.write(`${node.getMultiaddrs()[0].toString()}\n`);
  await waitForStdinEnd();
  await server.stop();
  await node.stop();
}

/** The transport alone: chunk files read from the store (no verify) and sent raw on one stream. */
async function serveLibp2pBare(dir: string): Promise<void> {
  const store = await ChunkStore.open({ dataDir: join(dir, 'data') });
  const hashes = JSON.parse(readFileSync(join(dir, 'hashes.json'), 'utf8')) as string[];
  const node = await createP2PNode({
    keyFile: join(dir, 'server.key'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    limits: limitsFor(),
  });
  await node.handle(BARE_PROTOCOL, async (stream) => {
    let next = readFile(store.path(hashes[0]));
    for (let i = 0; i < hashes.length; i++) {
      const data = await next;
      if (i + 1 < hashes.length) next = readFile(store.path(hashes[i + 1]));
      for (let off = 0; off < data.byteLength; off += MiB) {
        if (!stream.send(data.subarray(off, off + MiB))) {
          await pEvent(stream, 'drain', { rejectionEvents: ['close'] });
        }
      }
    }
    await stream.close();
  });
  process.stdout.write(`${node.getMultiaddrs()[0].toString()}\n`);
  await waitForStdinEnd();
  await node.stop();
}

async function fetchLibp2pBare(addr: string, hashesFile: string): Promise<void> {
  const node = await createP2PNode({
    keyFile: join(dirname(hashesFile), 'client.key'),
    listen: [],
    limits: limitsFor(),
  });
  await node.dial(multiaddr(addr));
  const t0 = performance.now();
  const stream = await node.dialProtocol(multiaddr(addr), BARE_PROTOCOL);
  let bytes = 0;
  stream.addEventListener('message', (evt) => {
    bytes += evt.data.byteLength;
  });
  if (stream.remoteWriteStatus === 'writable') await pEvent(stream, 'remoteCloseWrite');
  const seconds = (performance.now() - t0) / 1000;
  await node.stop();
  process.stdout.write(`${JSON.stringify({ seconds, bytes })}\n`);
}

async function fetchLibp2p(addr: string, hashesFile: string): Promise<void> {
  const hashes = JSON.parse(readFileSync(hashesFile, 'utf8')) as string[];
  const node = await createP2PNode({
    keyFile: join(dirname(hashesFile), 'client.key'),
    listen: [],
    limits: limitsFor(),
  });
  const ma = multiaddr(addr);
  for await (const _ of fetchChunks(node, ma, hashes.slice(0, 8))); // dial, warm the windows
  let bytes = 0;
  const t0 = performance.now();
  for await (const c of fetchChunks(node, ma, hashes)) {
    if (c.status !== 'ok') throw new Error(`chunk ${c.hash}: ${c.status}`);
    bytes += c.data?.byteLength ?? 0;
  }
  const seconds = (performance.now() - t0) / 1000;
  await node.stop();
  process.stdout.write(`${JSON.stringify({ seconds, bytes })}\n`);
}

async function serveRaw(dir: string, verify: boolean): Promise<void> {
  const store = await ChunkStore.open({ dataDir: join(dir, 'data') });
  const hashes = JSON.parse(readFileSync(join(dir, 'hashes.json'), 'utf8')) as string[];
  const read = (h: string) => (verify ? store.get(h) : readFile(store.path(h)));
  const server = createServer((socket) => {
    socket.once('data', async () => {
      let next = read(hashes[0]);
      for (let i = 0; i < hashes.length; i++) {
        const data = await next;
        if (i + 1 < hashes.length) next = read(hashes[i + 1]);
        socket.write(encodeChunkResponseHeader({ status: 'ok', length: data.byteLength }));
        if (!socket.write(data)) await new Promise((resolve) => socket.once('drain', resolve));
      }
      socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  process.stdout.write(`${address.port}\n`);
  await waitForStdinEnd();
  server.close();
}

async function fetchRaw(port: string, hashesFile: string, verify: boolean): Promise<void> {
  const hashes = JSON.parse(readFileSync(hashesFile, 'utf8')) as string[];
  const socket: Socket = connect(Number(port), '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const decoder = new ChunkResponseDecoder();
  let bytes = 0;
  let n = 0;
  const t0 = performance.now();
  socket.write('go');
  for await (const piece of socket as AsyncIterable<Buffer>) {
    if (!verify) {
      bytes += piece.byteLength;
      continue;
    }
    for (const r of decoder.push(piece)) {
      if (!r.body || hashHex(r.body) !== hashes[n++]) throw new Error('raw: bad chunk');
      bytes += r.body.byteLength;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!verify) bytes -= hashes.length * 5; // the 5-byte response headers
  process.stdout.write(`${JSON.stringify({ seconds, bytes })}\n`);
}

function waitForStdinEnd(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.resume();
    process.stdin.once('end', resolve);
  });
}

async function childMain(role: string, a: string, b: string): Promise<void> {
  switch (role) {
    case 'serve-libp2p':
      return serveLibp2p(a);
    case 'fetch-libp2p':
      return fetchLibp2p(a, b);
    case 'serve-libp2p-bare':
      return serveLibp2pBare(a);
    case 'fetch-libp2p-bare':
      return fetchLibp2pBare(a, b);
    case 'serve-raw':
      return serveRaw(a, false);
    case 'serve-raw-verified':
      return serveRaw(a, true);
    case 'fetch-raw':
      return fetchRaw(a, b, false);
    case 'fetch-raw-verified':
      return fetchRaw(a, b, true);
    default:
      throw new Error(`unknown bench child role ${role}`);
  }
}

if (import.meta.main) {
  const at = process.argv.indexOf('--child');
  if (at > 0) {
    await childMain(process.argv[at + 1], process.argv[at + 2], process.argv[at + 3]);
    process.exit(0);
  } else {
    process.stdout.write(`${await benchChunkServing({ quick: process.argv.includes('--quick') })}\n`);
  }
}
