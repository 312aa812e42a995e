/**
 * The closed mesh (issue 9, Build 1 / Show 6): real `rackswarm head` and `rackswarm fetch` processes with
 * mesh.closed, real libp2p over TCP. What must hold: a peer id the head has not enrolled reaches no protocol handler
 * on the head nor on an enrolled peer; an enrolled node fetches; a fake head at the head's address fails the
 * handshake; removing an enrollment closes that peer's connections and refuses it from then on.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createP2PNode, loadOrCreatePeerKey } from '../../cli/p2p-node.ts';
import { hashHex } from '../../core/hash.ts';
import { CHUNK_PROTOCOL } from '../../core/wire.ts';
import { queryEnrolled } from '../../peer/enrollment-client.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { type FetchPeer, startFetchPeer } from '../helpers/fetch-peer.ts';
import { publishToHead, type RunningHead, startHead } from '../helpers/head.ts';
import { pseudoRandomBytes } from '../helpers/random.ts';

const MiB = 1024 * 1024;
let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let pub: string;
let token: string;
let closedConfig: string;
let imageHash: string;
const peers: FetchPeer[] = [];
const nodes: Libp2p[] = [];

async function peerIdOf(keyFile: string): Promise<string> {
  return peerIdFromPrivateKey(await loadOrCreatePeerKey(keyFile)).toString();
}

async function headView(
  peerId: string,
): Promise<{ enrolled: boolean; streamsHandled: number; refused: number }> {
  const r = await fetch(`${head.url}/api/enrollments/${peerId}`, {
    headers: { authorization: `Bearer ${readFileSync(token, 'utf8').trim()}` },
  });
  expect(r.status).toBe(200);
  return (await r.json()) as { enrolled: boolean; streamsHandled: number; refused: number };
}

function fetchArgs(name: string, keyFile: string, extra: string[] = []): string[] {
  return [
    '--config',
    closedConfig,
    'fetch',
    'compute',
    '--head',
    head.url,
    '--trust',
    pub,
    '--out',
    join(t.dir, `${name}.img`),
    '--cache',
    join(t.dir, `${name}-cache`),
    '--peer-key',
    keyFile,
    '--linger',
    '0',
    '--json',
    ...extra,
  ];
}

/** A libp2p node of the test's own, without any gater: what an intruder (or a node later removed) runs. */
async function rawNode(keyFile: string): Promise<Libp2p> {
  const n = await createP2PNode({ keyFile, listen: [] });
  nodes.push(n);
  return n;
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  t = tempDir('rsw-mesh-');
  await runCli(['keys', 'generate', '--out', join(t.dir, 'keys')]);
  pub = join(t.dir, 'keys/publisher.pub');
  closedConfig = join(t.dir, 'closed.json');
  // cacheSeconds 2: peers re-ask the head about their connections every 2 s, so a removal reaches them quickly.
  writeFileSync(
    closedConfig,
    JSON.stringify({ mesh: { closed: true, cacheSeconds: 2 }, peer: { listen: ['/ip4/127.0.0.1/tcp/0'] } }),
  );
  const img = join(t.dir, 'image.bin');
  const data = pseudoRandomBytes(8 * MiB, 9);
  writeFileSync(img, data);
  imageHash = hashHex(data);
  head = await startHead(join(t.dir, 'head'), [], ['--config', closedConfig]);
  token = join(t.dir, 'head/admin-token');
  const p = await publishToHead(head.url, token, img, 'compute', join(t.dir, 'keys/publisher.key'));
  expect(p.code, p.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  for (const n of nodes) await Promise.resolve(n.stop()).catch(() => {});
  for (const p of peers) await p.stop();
  await head?.stop('SIGKILL');
  t.cleanup();
});

describe('closed mesh (mesh.closed)', () => {
  it('a node that is not enrolled fails with RSW_ERR_NOT_ENROLLED, and no handler of the head ever ran for it', async () => {
    const key = join(t.dir, 'outsider.key');
    const outsider = await peerIdOf(key);
    const r = await runCli(fetchArgs('outsider', key, ['--head-peer-id', head.peerId]), {
      timeoutMs: 60_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error RSW_ERR_NOT_ENROLLED: .*not enrolled/m);
    expect(r.stderr).toContain(outsider);
    const seen = await headView(outsider);
    expect(seen).toMatchObject({ enrolled: false, streamsHandled: 0 });
    expect(seen.refused).toBeGreaterThanOrEqual(1);
    expect(head.log.some((l) => l.includes('mesh: refused') && l.includes(outsider))).toBe(true);
  }, 90_000);

  it('a node run as on an open mesh is told the head runs a closed one (RSW_ERR_NOT_ENROLLED), not a bare EOF', async () => {
    const key = join(t.dir, 'opennode.key');
    const id = await peerIdOf(key);
    // The same fetch without the closed-mesh config: no gater of its own, no pinned head.
    const args = fetchArgs('opennode', key).slice(2);
    const r = await runCli(args, { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error RSW_ERR_NOT_ENROLLED: .*runs a closed mesh/m);
    expect(r.stderr).toContain(id);
    expect(await headView(id)).toMatchObject({ enrolled: false, streamsHandled: 0 });
  }, 90_000);

  it('a closed-mesh node without a pinned head id is refused before it dials anything', async () => {
    const r = await runCli(fetchArgs('nopin', join(t.dir, 'nopin.key')), { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error RSW_ERR_USAGE: a closed mesh needs the head's peer id pinned/m);
  }, 90_000);

  it('enrolled nodes fetch bit-identical; an intruder reaches no handler of an enrolled peer', async () => {
    const keys = ['a', 'b'].map((n) => join(t.dir, `${n}.key`));
    const add = await runCli([
      'enroll',
      'add',
      '--key',
      ...keys,
      '--head',
      head.url,
      '--token-file',
      token,
      '--json',
    ]);
    expect(add.code, add.stderr).toBe(0);
    const [a, b] = await Promise.all(keys.map(peerIdOf));
    expect(JSON.parse(add.stdout).added.sort()).toEqual([a, b].sort());

    for (const [i, name] of ['a', 'b'].entries()) {
      peers.push(
        startFetchPeer({
          head: head.url,
          pub,
          image: 'compute',
          dir: t.dir,
          name,
          linger: 120,
          config: closedConfig,
          extra: ['--head-peer-id', head.peerId, '--peer-key', keys[i]],
        }),
      );
    }
    const [peerA] = peers;
    await Promise.all(peers.map((p) => p.summary));
    for (const name of ['a', 'b']) expect(hashHex(readFileSync(join(t.dir, `${name}.img`)))).toBe(imageHash);
    expect((await headView(a)).streamsHandled).toBeGreaterThan(0);

    // The intruder learns A's address (the swarm list is public) and dials it straight, chunk protocol and all.
    const swarm = (await (await fetch(`${head.url}/api/swarm`)).json()) as {
      images: { peers: { peerId: string; addrs: string[] }[] }[];
    };
    const addrA = swarm.images[0].peers.find((p) => p.peerId === a)?.addrs[0];
    expect(addrA).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
    const intruderKey = join(t.dir, 'intruder.key');
    const intruder = await peerIdOf(intruderKey);
    const evil = await rawNode(intruderKey);
    for (let i = 0; i < 3; i++) {
      await expect(
        evil.dialProtocol(multiaddr(addrA as string), CHUNK_PROTOCOL).then(() => 'opened'),
      ).rejects.toThrow();
    }
    await waitFor('A to log the refusal', () =>
      peerA.stderr().includes(`mesh: refused peer ${intruder} (inbound)`),
    );
    const seenByHead = await headView(intruder);
    expect(seenByHead).toMatchObject({ enrolled: false, streamsHandled: 0, refused: 0 }); // it never tried the head

    // A's handler-side count, printed (stderr) when it stops: streams from other peers may have reached its
    // handlers, none from the intruder, whose three connections the gater refused.
    expect(await peerA.stop()).toBe(0);
    const meshLine = peerA
      .stderr()
      .split('\n')
      .find((l) => l.startsWith('mesh: {'));
    const mesh = JSON.parse((meshLine as string).slice('mesh: '.length));
    expect(mesh.streamsHandled[intruder]).toBeUndefined();
    expect(mesh.refused[intruder]).toBeGreaterThanOrEqual(1);
  }, 180_000);

  it('removing an enrollment: the head and the peers hang up on it, and it is refused from then on', async () => {
    // C: a lingering enrolled node; X: enrolled, connected to the head and to C, then removed.
    const keyC = join(t.dir, 'c.key');
    const keyX = join(t.dir, 'x.key');
    const [c, x] = await Promise.all([peerIdOf(keyC), peerIdOf(keyX)]);
    // In bulk, from a list file (one id per line, # comments), as an operator enrolls a rack.
    const list = join(t.dir, 'rack.txt');
    writeFileSync(list, `# rack r9\n${c}  # node-c\n\n${x}  # node-x\n`);
    const add = await runCli([
      'enroll',
      'add',
      '--file',
      list,
      '--note',
      'rack r9',
      '--head',
      head.url,
      '--token-file',
      token,
    ]);
    expect(add.code, add.stderr).toBe(0);
    const listed = await runCli(['enroll', 'list', '--head', head.url, '--token-file', token, '--json']);
    const enrolled = JSON.parse(listed.stdout) as {
      closed: boolean;
      enrollments: { peerId: string; note?: string }[];
    };
    expect(enrolled.closed).toBe(true);
    expect(
      enrolled.enrollments
        .filter((e) => e.note === 'rack r9')
        .map((e) => e.peerId)
        .sort(),
    ).toEqual([c, x].sort());
    const peerC = startFetchPeer({
      head: head.url,
      pub,
      image: 'compute',
      dir: t.dir,
      name: 'c',
      linger: 120,
      config: closedConfig,
      extra: ['--head-peer-id', head.peerId, '--peer-key', keyC],
    });
    peers.push(peerC);
    await peerC.summary;
    const swarm = (await (await fetch(`${head.url}/api/swarm`)).json()) as {
      images: { peers: { peerId: string; addrs: string[] }[] }[];
    };
    const addrC = multiaddr(swarm.images[0].peers.find((p) => p.peerId === c)?.addrs[0] as string);
    const headAddr = multiaddr(head.p2p[0]);

    const nodeX = await rawNode(keyX);
    await nodeX.dial(headAddr);
    await nodeX.dial(addrC);
    expect(
      nodeX
        .getConnections()
        .map((conn) => conn.remotePeer.toString())
        .sort(),
    ).toEqual([head.peerId, c].sort());

    const rm = await runCli(['enroll', 'remove', x, '--head', head.url, '--token-file', token, '--json']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(JSON.parse(rm.stdout).removed).toEqual([x]);
    // The head hangs up at once; C at its next re-check (mesh.cacheSeconds = 2 here).
    await waitFor('the head and C to hang up on X', () => nodeX.getConnections().length === 0);
    await waitFor('C to log why', () => peerC.stderr().includes(`mesh: refused peer ${x} (recheck)`));

    // A round trip, not just a dial: the dialler's side of an upgrade can finish before the remote's gater refuses.
    await expect(queryEnrolled(nodeX, headAddr, [x], { timeoutMs: 10_000 })).rejects.toThrow();
    await expect(nodeX.dialProtocol(addrC, CHUNK_PROTOCOL).then(() => 'opened')).rejects.toThrow();
    const r = await runCli(fetchArgs('x', keyX, ['--head-peer-id', head.peerId]), { timeoutMs: 60_000 });
    expect(r.stderr).toMatch(/^error RSW_ERR_NOT_ENROLLED: /m);
    expect(await headView(x)).toMatchObject({ enrolled: false });
    expect((await headView(x)).refused).toBeGreaterThanOrEqual(2);
  }, 180_000);

  it('a fake head at the head’s address: the handshake fails, RSW_ERR_HEAD_IDENTITY, nothing fetched', async () => {
    // The real head goes away; an impostor with its own key takes over its HTTP and libp2p ports.
    const realPeerId = head.peerId;
    const realUrl = head.url;
    const realP2p = head.p2p.find((a) => a.startsWith('/ip4/127.0.0.1/')) as string;
    for (const p of peers) await p.stop();
    await head.stop();
    const fake = await startHead(
      join(t.dir, 'fake-head'),
      ['--http', realUrl.replace('http://', ''), '--listen', realP2p.replace(/\/p2p\/.*$/, '')],
      ['--config', closedConfig],
    );
    try {
      expect(fake.url).toBe(realUrl);
      expect(fake.peerId).not.toBe(realPeerId);
      const key = join(t.dir, 'a.key'); // an enrolled node of the real head
      const r = await runCli(
        [...fetchArgs('fooled', key, ['--head-peer-id', realPeerId])].map((a) =>
          a === head.url ? realUrl : a,
        ),
        { timeoutMs: 60_000 },
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/^error RSW_ERR_HEAD_IDENTITY: .*is not the pinned head/m);
      const fakeSwarm = (await (await fetch(`${fake.url}/api/swarm`)).json()) as { images: unknown[] };
      expect(fakeSwarm.images).toEqual([]); // the node never announced to it
    } finally {
      await fake.stop('SIGKILL');
    }
  }, 120_000);
});
