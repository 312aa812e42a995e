import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { zstdDecompressSync } from 'node:zlib';
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCpio } from '../../boot/cpio.ts';
import { loadOrCreatePeerKey } from '../../cli/p2p-node.ts';
import { runCli, tempDir } from '../helpers/cli.ts';

// The real `rackswarm boot initramfs` against a small modules tree of its own (no kernel needed): what goes in, and
// that the bundled agent runs under the carried Node with the carried libraries.
describe('rackswarm boot initramfs', () => {
  const tmp = tempDir('rsw-initramfs-');
  const mods = join(tmp.dir, 'lib/modules/6.1.0-test');
  let archive: ReturnType<typeof readCpio>;
  let report: { bytes: number; modules: string[]; libraries: string[]; peerId: string };
  const headKey = join(tmp.dir, 'head.key');
  let headPeerId: string;

  beforeAll(async () => {
    for (const m of [
      'fs/squashfs/squashfs',
      'fs/overlayfs/overlay',
      'lib/crc16',
      'fs/ext4/ext4',
      'fs/jbd2/jbd2',
    ])
      mkdirSync(join(mods, 'kernel', m, '..'), { recursive: true });
    for (const m of [
      'fs/squashfs/squashfs',
      'fs/overlayfs/overlay',
      'lib/crc16',
      'fs/ext4/ext4',
      'fs/jbd2/jbd2',
    ])
      writeFileSync(join(mods, 'kernel', `${m}.ko`), `module ${m}`);
    writeFileSync(
      join(mods, 'modules.dep'),
      'kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko\nkernel/lib/crc16.ko:\nkernel/fs/jbd2/jbd2.ko:\n' +
        'kernel/fs/squashfs/squashfs.ko:\nkernel/fs/overlayfs/overlay.ko:\n',
    );
    writeFileSync(join(mods, 'modules.builtin'), 'kernel/drivers/block/loop.ko\n');
    expect((await runCli(['keys', 'generate', '--out', join(tmp.dir, 'keys')])).code).toBe(0);
    headPeerId = peerIdFromPrivateKey(await loadOrCreatePeerKey(headKey)).toString();
    const out = join(tmp.dir, 'initrd');
    const r = await runCli(
      [
        'boot',
        'initramfs',
        '--out',
        out,
        '--trust',
        join(tmp.dir, 'keys/publisher.pub'),
        '--kernel-modules',
        mods,
        '--modules',
        'loop,ext4,squashfs,overlay',
        // The closed mesh's credentials, baked for one node: its key, the head it pins.
        '--closed',
        '--head-peer-id',
        headPeerId,
        '--peer-key',
        join(tmp.dir, 'node.key'),
        '--json',
      ],
      { timeoutMs: 120_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    report = JSON.parse(r.stdout);
    archive = readCpio(zstdDecompressSync(readFileSync(out)));
  }, 180_000);
  afterAll(() => tmp.cleanup());

  const entry = (path: string) => archive.find((e) => e.path === path);

  it('holds /init, busybox with its applets, Node with its libraries, the agent and its addon, and the pinned key', () => {
    expect(entry('init')?.mode).toBe(0o100755);
    expect(entry('init')?.data.toString()).toMatch(/^#!\/bin\/sh\n/);
    expect(entry('bin/busybox')?.size).toBeGreaterThan(500_000);
    expect(entry('bin/sh')?.data.toString()).toBe('busybox');
    expect(entry('bin/switch_root')?.data.toString()).toBe('busybox');
    expect(entry('dev/console')).toMatchObject({ mode: 0o020600, rdevMajor: 5, rdevMinor: 1 });
    expect(entry('rackswarm/node')?.size).toBeGreaterThan(50_000_000);
    for (const lib of report.libraries) expect(entry(lib.slice(1)), lib).toBeDefined();
    expect(report.libraries).toEqual(
      expect.arrayContaining([expect.stringMatching(/ld-linux-x86-64\.so\.2$/)]),
    );
    expect(
      entry('rackswarm/node_modules/@napi-rs/blake-hash-linux-x64-gnu/blake.linux-x64-gnu.node'),
    ).toBeDefined();
    expect(entry('rackswarm/trust/00-publisher.pub')?.data.toString()).toBe(
      readFileSync(join(tmp.dir, 'keys/publisher.pub'), 'utf8'),
    );
    expect(report.bytes).toBeLessThan(60 * 1024 * 1024);
  });

  it('carries the node key (0600, the id it reported), the pinned head and the closed mesh in its config', async () => {
    const key = entry('rackswarm/peer.key');
    expect(key?.mode).toBe(0o100600);
    expect(peerIdFromPrivateKey(privateKeyFromProtobuf(key?.data as Buffer)).toString()).toBe(report.peerId);
    expect(report.peerId).toBe(
      peerIdFromPrivateKey(await loadOrCreatePeerKey(join(tmp.dir, 'node.key'))).toString(),
    );
    const config = JSON.parse(entry('rackswarm/config.json')?.data.toString() as string);
    expect(config.mesh).toMatchObject({ closed: true, headPeerId });
  });

  it('boot credentials: a per-node archive to append, with the key (0600) and the pinned head', async () => {
    const out = join(tmp.dir, 'node7.cpio');
    const r = await runCli([
      'boot',
      'credentials',
      '--peer-key',
      join(tmp.dir, 'node7.key'),
      '--head-peer-id',
      headPeerId,
      '--out',
      out,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { peerId } = JSON.parse(r.stdout);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const creds = readCpio(readFileSync(out));
    const key = creds.find((e) => e.path === 'rackswarm/peer.key');
    expect(key?.mode).toBe(0o100600);
    expect(peerIdFromPrivateKey(privateKeyFromProtobuf(key?.data as Buffer)).toString()).toBe(peerId);
    expect(
      JSON.parse(creds.find((e) => e.path === 'rackswarm/mesh.json')?.data.toString() as string),
    ).toEqual({
      headPeerId,
    });
    const bad = await runCli([
      'boot',
      'credentials',
      '--peer-key',
      join(tmp.dir, 'n8.key'),
      '--head-peer-id',
      'nope',
      '--out',
      join(tmp.dir, 'n8.cpio'),
    ]);
    expect(bad.stderr).toMatch(/^error RSW_ERR_INVALID_PEER_ID: /m);
  });

  it('lists the modules for /init in dependency order; built-in ones need nothing', () => {
    const order =
      'kernel/lib/crc16.ko\nkernel/fs/jbd2/jbd2.ko\nkernel/fs/ext4/ext4.ko\nkernel/fs/squashfs/squashfs.ko\nkernel/fs/overlayfs/overlay.ko\n';
    expect(entry('etc/rackswarm/modules')?.data.toString()).toBe(order);
    expect(entry('lib/modules/kernel/fs/ext4/ext4.ko')?.data.toString()).toBe('module fs/ext4/ext4');
  });

  it('carries an agent bundle that starts under the carried Node and checks the command line first', () => {
    const root = join(tmp.dir, 'root');
    for (const e of archive) {
      if ((e.mode & 0o170000) !== 0o100000) continue;
      mkdirSync(join(root, e.path, '..'), { recursive: true });
      writeFileSync(join(root, e.path), e.data, { mode: e.mode & 0o777 });
    }
    // The carried loader and libraries, not the host's (what the node will run).
    const ld = report.libraries.find((l) => l.includes('ld-linux')) as string;
    const libPath = [...new Set(report.libraries.map((l) => join(root, l, '..')))].join(':');
    let out = '';
    try {
      execFileSync(
        join(root, ld),
        ['--library-path', libPath, join(root, 'rackswarm/node'), join(root, 'rackswarm/agent.mjs')],
        {
          stdio: 'pipe',
        },
      );
    } catch (e) {
      out = String((e as { stdout?: Buffer }).stdout);
    }
    // This host's /proc/cmdline has no rackswarm.* parameters: a clear boot error, not a crash while loading.
    expect(out).toContain(
      'rackswarm: error RSW_ERR_BOOT_CMDLINE: kernel command line: rackswarm.head= is missing',
    );
  });
});
