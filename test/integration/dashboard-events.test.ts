import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeadClient } from '../../cli/head-client.ts';
import type { AvailabilityView } from '../../tracker/availability.ts';
import type { DashboardSnapshot } from '../../tracker/dashboard-snapshot.ts';
import type { ImageSwarmSummary, PeerRecord } from '../../tracker/swarm-state.ts';
import { type CliResult, projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { type FetchPeer, startFetchPeer } from '../helpers/fetch-peer.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;

interface SwarmApi {
  images: {
    imageId: string;
    name: string;
    summary: ImageSwarmSummary;
    availability: AvailabilityView;
    peers: PeerRecord[];
  }[];
}

let t: ReturnType<typeof tempDir>;
let head: RunningHead;
const peers: FetchPeer[] = [];

beforeAll(async () => {
  t = tempDir('rsw-events-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  // A slow seeder (6 MiB/s) keeps the fetch running for several snapshots; peers announce every second.
  writeFileSync(
    join(t.dir, 'head.json'),
    JSON.stringify({ seeder: { totalBytesPerSecond: 6 * MiB }, tracker: { announceIntervalSeconds: 1 } }),
  );
  writeFileSync(join(t.dir, 'peer.json'), JSON.stringify({ peer: { listen: ['/ip4/127.0.0.1/tcp/0'] } }));
  head = await startHead(join(t.dir, 'head'), [], ['--config', join(t.dir, 'head.json')]);
  writeFileSync(join(t.dir, 'image.bin'), pseudoRandomBytes(48 * MiB, 48));
  const p = await publishToHead(
    head.url,
    join(t.dir, 'head/admin-token'),
    join(t.dir, 'image.bin'),
    'compute',
    join(t.dir, 'keys/publisher.key'),
  );
  expect(p.code, p.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  for (const p of peers) await p.stop();
  await head?.stop('SIGKILL');
  t?.cleanup();
});

const NODE_FIELDS = [
  'stage',
  'progress',
  'bytesDone',
  'downRate',
  'upRate',
  'bytesFromPeers',
  'bytesFromSeeder',
  'lastSeen',
] as const;

describe('the live stream (GET /api/events) during a running fetch', () => {
  it('agrees with GET /api/swarm, node by node, and rackswarm status reports it', async () => {
    for (let i = 0; i < 2; i++) {
      peers.push(
        startFetchPeer({
          head: head.url,
          pub: join(t.dir, 'keys/publisher.pub'),
          image: 'compute',
          dir: t.dir,
          name: `node${i}`,
          rack: 'r1',
          linger: 60,
          config: join(t.dir, 'peer.json'),
        }),
      );
    }
    const stop = new AbortController();
    const timeout = setTimeout(() => stop.abort(), 120_000);
    let fetchingCompared = 0; // node records compared while that node was fetching
    let wholeSwarms = 0; // snapshots where every node was unchanged between the two reads
    // The CLI runs beside the loop (a process start takes seconds on a loaded machine; the loop must keep up).
    let status: Promise<[CliResult, CliResult]> | undefined;
    let events = 0;
    try {
      for await (const snap of new HeadClient(head.url).events(stop.signal)) {
        events++;
        const w = snap.swarms[0];
        if (!w) continue;
        const api = (await (await fetch(`${head.url}/api/swarm`)).json()) as SwarmApi;
        const a = api.images.find((i) => i.imageId === w.imageId);
        expect(a, 'the image is in /api/swarm too').toBeDefined();
        if (!a) break;
        const byPeer = new Map(a.peers.map((p) => [p.peerId, p]));
        let same = 0;
        for (const row of w.rows) {
          const p = byPeer.get(row.peerId);
          // A node that announced between the two reads has moved on; every other one must be identical.
          if (!p || p.lastSeen !== row.lastSeen) continue;
          same++;
          for (const f of NODE_FIELDS) expect(row[f], `${row.host} ${f}`).toEqual(p[f]);
          expect(row.stuck).toBe(false);
          if (row.stage === 'fetching') fetchingCompared++;
        }
        if (same === a.peers.length && a.peers.length === w.rows.length) {
          wholeSwarms++;
          expect(w.summary).toEqual(a.summary);
          expect(w.availability).toEqual(a.availability);
          expect(w.name).toBe('compute');
        }
        if (!status && w.summary.byStage.fetching > 0) {
          // The terminal view during the same fetch: one JSON object, and the table.
          status = Promise.all([
            runCli(['status', '--head', head.url, '--json']),
            runCli(['status', '--head', head.url]),
          ]);
        }
        const complete = w.summary.done === 2;
        if ((complete && fetchingCompared >= 3 && wholeSwarms >= 1) || events > 90) break;
      }
    } finally {
      clearTimeout(timeout);
      stop.abort();
    }
    expect(fetchingCompared, 'node records compared mid-fetch').toBeGreaterThanOrEqual(3);
    expect(wholeSwarms, 'snapshots compared whole').toBeGreaterThanOrEqual(1);
    await Promise.all(peers.map((p) => p.summary));

    const [json, text] = (await status) as [CliResult, CliResult];
    expect(json.code, json.stderr).toBe(0);
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    const statusJson = JSON.parse(json.stdout) as DashboardSnapshot;
    expect(text.code, text.stderr).toBe(0);
    const statusText = text.stdout;

    expect(statusJson.swarms[0]).toMatchObject({ name: 'compute', version: 1 });
    expect(statusJson.swarms[0].summary.peers).toBe(2);
    expect(statusText).toMatch(/^head http:\/\/127\.0\.0\.1:\d+ {2}egress /);
    expect(statusText).toMatch(/^compute@1 +2 +\d +\d+\.\d% /m);
    expect(statusText).toMatch(/^IMAGE +ANNOUNCED +FETCHING +VERIFYING +DONE +SEEDING +FAILED$/m);
  }, 180_000);

  it('rackswarm status --watch --json prints one JSON line per update until Ctrl-C', async () => {
    const child = spawn(
      process.execPath,
      [join(projectRoot, 'bin/rackswarm.js'), 'status', '--head', head.url, '--watch', '--json'],
      { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exit = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    let out = '';
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`3 updates not seen in 30 s: ${out}`)), 30_000);
        child.stdout.on('data', (d) => {
          out += d;
          if (out.split('\n').length > 3) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      child.kill('SIGINT');
      expect(await exit).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as DashboardSnapshot);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < lines.length; i++) expect(lines[i].time).toBeGreaterThanOrEqual(lines[i - 1].time);
    expect(lines[0].swarms[0]?.name).toBe('compute');
  });

  it('rackswarm status fails with a code when no head answers', async () => {
    const r = await runCli(['status', '--head', 'http://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error RSW_ERR_HEAD_UNREACHABLE: cannot reach the head at http:\/\/127\.0\.0\.1:1/,
    );
    const notHead = await runCli(['status', '--head', `${head.url}/healthz`]);
    expect(notHead.code).toBe(1);
    expect(notHead.stderr).toMatch(/^error RSW_ERR_NOT_FOUND: /);
    const usage = await runCli(['status']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^error RSW_ERR_USAGE: .*--head/);
  });
});
