import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AvailabilityView } from '../../tracker/availability.ts';
import { type ImageSwarmSummary, type PeerRecord, SwarmState } from '../../tracker/swarm-state.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { projectRoot, runCli, tempDir } from '../helpers/cli.ts';
import { type FetchPeer, startFetchPeer } from '../helpers/fetch-peer.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';
import { startSyntheticHead, syntheticAnnounces, syntheticImage } from '../helpers/synthetic-swarm.ts';

/** The README's pictures (docs/NAME) are rewritten only with RSW_UPDATE_SCREENSHOTS=1: a run leaves the checkout be. */
const screenshot = (name: string): string | undefined =>
  process.env.RSW_UPDATE_SCREENSHOTS ? join(projectRoot, 'docs', name) : undefined;

/** The little of the DOM the page scrape below uses (the project's types are Node's, not the browser's). */
interface El {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): Iterable<El> & { length: number };
}
declare const document: El & { getElementById(id: string): El | null };

const MiB = 1024 * 1024;
const NODES = 4;
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
const peers: FetchPeer[] = [];

beforeAll(async () => {
  t = tempDir('rsw-dash-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  // Announce every second so the page converges quickly.
  writeFileSync(join(t.dir, 'head.json'), JSON.stringify({ tracker: { announceIntervalSeconds: 1 } }));
  writeFileSync(join(t.dir, 'peer.json'), JSON.stringify({ peer: { listen: ['/ip4/127.0.0.1/tcp/0'] } }));
  head = await startHead(join(t.dir, 'head'), [], ['--config', join(t.dir, 'head.json')]);
  writeFileSync(join(t.dir, 'image.bin'), pseudoRandomBytes(64 * MiB, 77));
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
  await chromium?.close();
  for (const p of peers) await p.stop();
  await head?.stop('SIGKILL');
  t?.cleanup();
});

describe('dashboard in a real browser', () => {
  it('shows every node of a real swarm done, with the numbers /api/swarm has', async () => {
    chromium = await launchChromium();
    const page = await chromium.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${head.url}/`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20_000 });

    for (let i = 0; i < NODES; i++) {
      peers.push(
        startFetchPeer({
          head: head.url,
          pub: join(t.dir, 'keys/publisher.pub'),
          image: 'compute',
          dir: t.dir,
          name: `node${i}`,
          rack: `rack${i % 2}`,
          linger: 300,
          config: join(t.dir, 'peer.json'),
        }),
      );
    }
    await Promise.all(peers.map((p) => p.summary));
    // Every node done, and past it (seeding): from then on no number changes.
    await page.waitForSelector(
      `section.swarm[data-peers="${NODES}"][data-done="${NODES}"] .chips [data-stage="seeding"]`,
      { timeout: 60_000 },
    );
    await page.waitForFunction(
      (n) => document.querySelector('.chips [data-stage="seeding"]')?.textContent === `seeding ${n}`,
      NODES,
      { timeout: 30_000 },
    );

    const shown = await page.evaluate(() => {
      const swarm = document.querySelector('section.swarm') as El;
      const text = (sel: string, root: El = swarm) => root.querySelector(sel)?.textContent ?? '';
      const value = (sel: string, root: El = swarm) => Number(root.querySelector(sel)?.dataset.value);
      return {
        imageId: swarm.dataset.imageId,
        title: text('h2'),
        done: text('.done-count'),
        meanProgress: text('.mean-progress'),
        stuck: text('.stuck-count'),
        failed: text('.failed-count'),
        fromPeers: value('.cards .from-peers'),
        fromSeeder: value('.cards .from-seeder'),
        heatMin: text('.heat-min'),
        heatMax: text('.heat-max'),
        headNodes: document.getElementById('head-nodes')?.textContent,
        images: [...document.querySelectorAll('#images tr')].map((tr) => tr.dataset.imageId),
        rows: [...swarm.querySelectorAll('tr.node')].map((el) => {
          return {
            peerId: el.dataset.peerId,
            host: el.querySelector('td')?.textContent,
            stage: el.dataset.stage,
            progress: text('.progress', el),
            fromPeers: value('.from-peers', el),
            fromSeeder: value('.from-seeder', el),
          };
        }),
        racks: [...swarm.querySelectorAll('.rack')].map((r) => ({
          rack: r.dataset.rack,
          tiles: r.querySelectorAll('.tile').length,
        })),
      };
    });
    await page.screenshot({ path: screenshot('dashboard.png'), fullPage: true });

    const api = (await (await fetch(`${head.url}/api/swarm`)).json()) as {
      images: {
        imageId: string;
        version: number;
        summary: ImageSwarmSummary;
        availability: AvailabilityView;
        peers: PeerRecord[];
      }[];
    };
    expect(api.images).toHaveLength(1);
    const img = api.images[0];
    expect(shown.imageId).toBe(img.imageId);
    expect(shown.title).toContain(`compute v${img.version}`);
    expect(shown.done).toBe(`${img.summary.done}/${img.summary.peers}`);
    expect(shown.done).toBe(`${NODES}/${NODES}`);
    expect(shown.headNodes).toBe(`${NODES} / ${NODES} done`);
    expect(shown.meanProgress).toBe('100%');
    expect(shown.stuck).toBe(String(img.summary.stuck));
    expect(shown.failed).toBe(String(img.summary.byStage.failed));
    expect(shown.fromPeers).toBe(img.summary.bytesFromPeers);
    expect(shown.fromSeeder).toBe(img.summary.bytesFromSeeder);
    expect(shown.heatMin).toBe(String(img.availability.min));
    expect(shown.heatMax).toBe(String(img.availability.max));
    expect(shown.images).toEqual([img.imageId]);
    const apiPeers = new Map(img.peers.map((p) => [p.peerId, p]));
    expect(shown.rows).toHaveLength(NODES);
    for (const row of shown.rows) {
      const p = apiPeers.get(row.peerId as string) as PeerRecord;
      expect(p, row.peerId).toBeDefined();
      expect(row).toEqual({
        peerId: p.peerId,
        host: p.host,
        stage: p.stage,
        progress: '100%',
        fromPeers: p.bytesFromPeers,
        fromSeeder: p.bytesFromSeeder,
      });
    }
    expect(shown.racks).toEqual([
      { rack: 'rack0', tiles: 2 },
      { rack: 'rack1', tiles: 2 },
    ]);
    expect(errors).toEqual([]);
  }, 240_000);

  it('stays usable at 1,000 nodes: a tile per node, rows for the ones needing attention', async () => {
    // The real swarm state and dashboard feed behind the real HTTP API, fed 1,000 synthetic announces.
    const image = syntheticImage('ab'.repeat(32), 8192);
    // Its clock runs 61 s ahead after the first round of announces: past the 60 s after which a node is stuck.
    let offset = 0;
    const now = () => Date.now() + offset;
    const swarm = new SwarmState({ now, chunkCount: (id) => (id === image.id ? image.chunks : undefined) });
    const fleet = syntheticAnnounces(1000, { image, seed: 1000 });
    for (const a of fleet) swarm.announce(a);
    offset = 61_000;
    // Every 50th node reports no progress since: stuck.
    fleet.forEach((a, i) => {
      swarm.announce(i % 50 === 7 ? a : { ...a, bytesDone: a.bytesDone + 1 });
    });
    const synthetic = await startSyntheticHead(join(t.dir, 'synthetic'), swarm, [image], now);
    try {
      chromium ??= await launchChromium();
      const page = await chromium.browser.newPage();
      await page.goto(`${synthetic.url}/`);
      await page.waitForSelector('body[data-nodes="1000"]', { timeout: 30_000 });
      const api = (await (await fetch(`${synthetic.url}/api/swarm`)).json()) as {
        images: { summary: ImageSwarmSummary }[];
      };
      const sum = api.images[0].summary;
      expect(sum.stuck).toBeGreaterThan(0);
      expect(sum.byStage.failed).toBeGreaterThan(0);
      const shown = await page.evaluate(() => ({
        tiles: [...document.querySelectorAll('.tile')].length,
        stuckTiles: [...document.querySelectorAll('.tile.stuck')].length,
        racks: [...document.querySelectorAll('.rack')].length,
        rows: [...document.querySelectorAll('tr.node')].length,
        failedRows: [...document.querySelectorAll('tr.node.failed')].length,
        stuckRows: [...document.querySelectorAll('tr.node.stuck')].length,
        heading: [...document.querySelectorAll('section.swarm h3')]
          .map((h) => h.textContent ?? '')
          .join(' | '),
        stuckCount: document.querySelector('.stuck-count')?.textContent,
        done: document.querySelector('.done-count')?.textContent,
      }));
      expect(shown).toMatchObject({
        tiles: 1000,
        stuckTiles: sum.stuck,
        racks: 25,
        rows: 64,
        failedRows: sum.byStage.failed,
        stuckRows: sum.stuck,
        stuckCount: String(sum.stuck),
        done: `${sum.done}/1000`,
      });
      expect(shown.heading).toContain('nodes needing attention (64 of 1000');
      await page.setViewportSize({ width: 1280, height: 1300 });
      await page.screenshot({ path: screenshot('dashboard-1000.png') });
      await page.close();
    } finally {
      await synthetic.stop();
    }
  }, 120_000);
});
