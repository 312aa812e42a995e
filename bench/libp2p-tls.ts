// libp2p TLS between two of our nodes in one process, over TCP on 127.0.0.1 (cli/p2p-node.ts, cli/libp2p-tls.ts):
// the control plane's pattern (small request, small answer, one at a time: latency), one stream's bulk throughput,
// and a dial + hang-up; CPU seconds of the process (both ends) per unit. With `--against DIR` the same in another
// checkout (its cli/p2p-node.ts), alternated run by run, so both see the same load.
// `node bench/libp2p-tls.ts [--runs N] [--against DIR]`
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Libp2p, Stream } from '@libp2p/interface';
import { pEvent } from 'p-event';
import { benchArgs, numberArg } from './lib/cli-args.ts';
import { fmt, median } from './lib/stats.ts';

const here = fileURLToPath(new URL('../', import.meta.url));
const PING = '/rsw-bench/ping/1.0.0';
const SINK = '/rsw-bench/sink/1.0.0';
const MiB = 1024 * 1024;

interface Result {
  /** Round trips of a 64-byte message on one stream: median µs, and CPU µs per round trip (both ends). */
  rttUs: number;
  rttCpuUs: number;
  /** 64 MiB on one stream, 256 KiB sends: MB/s and CPU s per GiB. */
  mbps: number;
  cpuPerGiB: number;
  /** A dial (TCP, TLS, Yamux) and a hang-up: median ms and CPU ms per dial. */
  dialMs: number;
  dialCpuMs: number;
}

const cpu = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

/** One measurement in this process with the checkout at `root`; prints its Result as JSON. */
async function child(root: string): Promise<void> {
  const { createP2PNode } = (await import(join(root, 'cli/p2p-node.ts'))) as {
    createP2PNode(init: { keyFile: string; listen: string[] }): Promise<Libp2p>;
  };
  const dir = mkdtempSync(join(tmpdir(), 'rsw-bench-tls-'));
  const a = await createP2PNode({ keyFile: join(dir, 'a.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  const b = await createP2PNode({ keyFile: join(dir, 'b.key'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  await b.handle(PING, (s: Stream) => {
    s.addEventListener('message', (e) => s.send(e.data));
  });
  let sunk = 0;
  await b.handle(SINK, (s: Stream) => {
    s.addEventListener('message', (e) => {
      sunk += e.data.byteLength;
    });
    s.addEventListener('remoteCloseWrite', () => s.close().catch(() => {}));
  });
  const to = b.getMultiaddrs()[0];

  // Control plane: one small message out, its echo back, 2,000 times.
  const ping = await a.dialProtocol(to, PING);
  let answered: (() => void) | undefined;
  ping.addEventListener('message', () => answered?.());
  const msg = new Uint8Array(64);
  const rtts: number[] = [];
  for (let i = 0; i < 200; i++) {
    await new Promise<void>((r) => {
      answered = r;
      ping.send(msg);
    });
  }
  let c0 = cpu();
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    await new Promise<void>((r) => {
      answered = r;
      ping.send(msg);
    });
    rtts.push((performance.now() - t) * 1000);
  }
  const rttCpuUs = ((cpu() - c0) / 2000) * 1e6;
  ping.abort(new Error('done'));

  // Bulk: 64 MiB on one stream.
  const sink = await a.dialProtocol(to, SINK);
  const piece = new Uint8Array(256 * 1024).fill(7);
  c0 = cpu();
  let t0 = performance.now();
  for (let sent = 0; sent < 64 * MiB; sent += piece.byteLength) {
    if (!sink.send(piece)) await pEvent(sink, 'drain', { rejectionEvents: ['close'] });
  }
  await sink.close();
  while (sunk < 64 * MiB) await new Promise((r) => setTimeout(r, 1));
  const seconds = (performance.now() - t0) / 1000;
  const mbps = (64 * MiB) / seconds / 1e6;
  const cpuPerGiB = ((cpu() - c0) / (64 * MiB)) * 1024 * MiB;

  // Dials: hang up, dial again, 50 times.
  await a.hangUp(b.peerId);
  const dials: number[] = [];
  c0 = cpu();
  t0 = performance.now();
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    await a.dial(to);
    dials.push(performance.now() - t);
    await a.hangUp(b.peerId);
  }
  const dialCpuMs = ((cpu() - c0) / 50) * 1000;
  await a.stop();
  await b.stop();
  rmSync(dir, { recursive: true, force: true });
  const result: Result = {
    rttUs: median(rtts),
    rttCpuUs,
    mbps,
    cpuPerGiB,
    dialMs: median(dials),
    dialCpuMs,
  };
  console.log(JSON.stringify(result));
}

async function main(): Promise<void> {
  const usage = 'usage: node bench/libp2p-tls.ts [--runs N] [--against DIR]';
  const { values } = benchArgs(
    {
      options: {
        runs: { type: 'string', default: '5' },
        against: { type: 'string' },
        child: { type: 'string' },
      },
    },
    usage,
  );
  if (values.child) return child(values.child);
  const builds = [here, ...(values.against ? [values.against] : [])];
  const results = new Map<string, Result[]>(builds.map((b) => [b, []]));
  const runs = numberArg('runs', values.runs, usage, { min: 1, max: 1000, integer: true }) as number;
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? builds : [...builds].reverse();
    for (const root of order) {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', root], {
        encoding: 'utf8',
        timeout: 300_000,
      });
      if (r.status !== 0) throw new Error(`run in ${root} failed:\n${r.stderr}`);
      const res = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as Result;
      results.get(root)?.push(res);
      console.error(`${root}: ${JSON.stringify(res)}`);
    }
  }
  console.log(`libp2p TLS between two nodes in one process, 127.0.0.1, median of ${runs} (both ends' CPU)`);
  console.log(
    '| checkout | round trip, 64 B (µs) | CPU µs per round trip | one stream (MB/s) | CPU s per GiB | dial + TLS + Yamux (ms) | CPU ms per dial |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const [root, rs] of results) {
    const m = (k: keyof Result) => median(rs.map((r) => r[k]));
    console.log(
      `| ${root === here ? 'this checkout' : root} | ${fmt(m('rttUs'), 0)} | ${fmt(m('rttCpuUs'), 0)} | ${fmt(m('mbps'), 0)} | ${fmt(m('cpuPerGiB'), 2)} | ${fmt(m('dialMs'), 1)} | ${fmt(m('dialCpuMs'), 1)} |`,
    );
  }
}

await main();
