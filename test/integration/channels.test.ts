import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FetchSummary } from '../../cli/fetch-image.ts';
import { makeTree, mksquashfs, mutateTree } from '../fixtures/tree.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';

let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let pub: string;
let key: string;
let token: string;
const images: Buffer[] = [];
const out = () => join(t.dir, 'node.img');
const cache = () => join(t.dir, 'cache');

const fetch = (ref: string) =>
  runCli(
    [
      'fetch',
      ref,
      '--head',
      head.url,
      '--trust',
      pub,
      '--out',
      out(),
      '--cache',
      cache(),
      '--linger',
      '0',
      '--json',
    ],
    {
      timeoutMs: 120_000,
    },
  );
const summary = (stdout: string): FetchSummary =>
  JSON.parse(stdout.trim().split('\n').pop() as string) as FetchSummary;
const errorCode = (stderr: string): string | undefined => /error (RSW_ERR_[A-Z_]+)/.exec(stderr)?.[1];

async function channelSet(ref: string, version: number, ...extra: string[]) {
  const r = await runCli([
    'channel',
    'set',
    ref,
    String(version),
    '--key',
    key,
    '--head',
    head.url,
    '--token-file',
    token,
    '--json',
    ...extra,
  ]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { sequence: number; version: number };
}

beforeAll(async () => {
  t = tempDir('rsw-channels-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  pub = join(t.dir, 'keys/publisher.pub');
  key = join(t.dir, 'keys/publisher.key');
  token = join(t.dir, 'head/admin-token');
  const tree = join(t.dir, 'tree');
  makeTree(tree, { files: 300, seed: 31 });
  mksquashfs(tree, join(t.dir, 'v1.sqfs'));
  mutateTree(tree, { fraction: 0.01, seed: 32 });
  mksquashfs(tree, join(t.dir, 'v2.sqfs'));
  head = await startHead(join(t.dir, 'head'));
  for (const v of [1, 2]) {
    images.push(readFileSync(join(t.dir, `v${v}.sqfs`)));
    const p = await publishToHead(head.url, token, join(t.dir, `v${v}.sqfs`), 'compute', key);
    expect(p.code, p.stderr).toBe(0);
  }
}, 120_000);

afterAll(async () => {
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('channels', () => {
  let firstPointer: Buffer;

  it('a node follows compute:stable forward, and back again (rollback) without downloading', async () => {
    expect((await channelSet('compute:stable', 1)).sequence).toBe(1);
    firstPointer = Buffer.from(
      await (await globalThis.fetch(`${head.url}/api/channels/compute/stable`)).arrayBuffer(),
    );
    let r = await fetch('compute:stable');
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r.stdout)).toMatchObject({ version: 1, channel: 'compute:stable' });
    expect(readFileSync(out()).equals(images[0])).toBe(true);

    expect((await channelSet('compute:stable', 2)).sequence).toBe(2);
    r = await fetch('compute:stable');
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r.stdout).version).toBe(2);
    expect(readFileSync(out()).equals(images[1])).toBe(true);

    // Rollback: the publisher points the channel back; the node still caches v1, so nothing crosses the network.
    expect((await channelSet('compute:stable', 1)).sequence).toBe(3);
    r = await fetch('compute:stable');
    expect(r.code, r.stderr).toBe(0);
    const s = summary(r.stdout);
    expect(s.version).toBe(1);
    expect(s.bytesFromPeers + s.bytesFromSeeder).toBe(0);
    expect(readFileSync(out()).equals(images[0])).toBe(true);

    const list = await runCli(['channel', 'list', '--head', head.url, '--json']);
    expect(JSON.parse(list.stdout)).toMatchObject([
      { name: 'compute', channel: 'stable', version: 1, sequence: 3 },
    ]);
  }, 180_000);

  it('an expired pointer is refused', async () => {
    await channelSet('compute:testing', 2, '--ttl', '2');
    await new Promise((r) => setTimeout(r, 2500));
    const r = await fetch('compute:testing');
    expect(r.code).not.toBe(0);
    expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_CHANNEL_EXPIRED');
  }, 60_000);

  it('with the head gone, the node rolls back offline from its cache, and refuses an older pointer', async () => {
    await head.stop('SIGKILL');
    writeFileSync(out(), 'something else entirely');
    let r = await fetch('compute:stable');
    expect(r.code, r.stderr).toBe(0);
    expect(summary(r.stdout)).toMatchObject({
      version: 1,
      offline: true,
      bytesFromPeers: 0,
      bytesFromSeeder: 0,
    });
    expect(readFileSync(out()).equals(images[0])).toBe(true);

    // A replayed older statement (pointer #1, still unexpired) is refused: the node has seen #3.
    writeFileSync(join(cache(), 'channels', 'compute:stable'), firstPointer);
    r = await fetch('compute:stable');
    expect(r.code).not.toBe(0);
    expect(errorCode(r.stderr), r.stderr).toBe('RSW_ERR_CHANNEL_STALE');
  }, 60_000);
});
