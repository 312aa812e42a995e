/**
 * The boot agent: what /init runs (under the initramfs's Node) on a booting node. It composes the peer (fetch through
 * the mesh, keep seeding) with boot/ (network, identity, stateless root, reimage) the way `rackswarm fetch` composes
 * the peer for a running machine. Bundled into one file by `rackswarm boot initramfs` (esbuild).
 *
 * Talks to /init through files in /run/rackswarm: `ready` (shell assignments: ACTION=switch_root|reboot, NEWROOT,
 * INIT) when the root is prepared, or `failed` (one line, the reason) before it exits non-zero.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeIdentity, type SshHostKeyFiles } from '../boot/identity.ts';
import { bringUpNetwork } from '../boot/network.ts';
import { injectIdentityIntoDisk } from '../boot/reimage.ts';
import { fetchAttempts } from '../boot/retry.ts';
import { mountStatelessRoot, statelessLayout } from '../boot/stateless.ts';
import { parseBootCmdline } from '../core/boot-cmdline.ts';
import { loadConfig } from '../core/config.ts';
import { formatError, isRswError, RswError } from '../core/errors.ts';
import { writeFileAtomic } from '../core/fs-atomic.ts';
import { loadTrust } from '../core/keys.ts';
import { fetchOverHttp } from './fetch-http.ts';
import { type FetchSummary, fetchImage } from './fetch-image.ts';
import { HeadClient } from './head-client.ts';
import { nodeRevocations } from './node-revocations.ts';

const RUN = '/run/rackswarm';
const HOME = '/rackswarm';
const NEW_ROOT = '/newroot';

function say(msg: string): void {
  console.log(`rackswarm: ${msg}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** This node's SSH host key from the head; without it the image's sshd makes its own (a warning, not a failure). */
async function sshHostKey(head: string, mac: string): Promise<SshHostKeyFiles | undefined> {
  try {
    const r = await fetch(`${head}/boot/nodes/${mac}/ssh-host-keys`, { signal: AbortSignal.timeout(15_000) });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const body = (await r.json()) as { ed25519?: SshHostKeyFiles };
    if (typeof body.ed25519?.privateKey !== 'string' || typeof body.ed25519.publicKey !== 'string')
      throw new Error('no ed25519 key in the answer');
    return body.ed25519;
  } catch (e) {
    say(`warning: no SSH host key from the head (${(e as Error).message}); the image will make its own`);
    return undefined;
  }
}

/**
 * The closed mesh's credentials (docs/SECURITY.md), never from the network: the node's libp2p key from its initramfs
 * (or a credentials archive loaded with it), the head's peer id from the initramfs, else from the kernel command line.
 */
async function meshCredentials(
  baked: { mesh?: { headPeerId?: string; closed?: boolean } },
  cmdlineHeadId: string | undefined,
): Promise<{ mesh: { headPeerId: string; closed?: boolean }; peerKey?: string }> {
  const node = JSON.parse(await readFile(join(HOME, 'mesh.json'), 'utf8').catch(() => '{}')) as {
    headPeerId?: string;
  };
  const pinned = node.headPeerId || baked.mesh?.headPeerId || '';
  if (pinned && cmdlineHeadId && cmdlineHeadId !== pinned)
    throw new RswError(
      'RSW_ERR_BOOT_CMDLINE',
      `rackswarm.headid=${cmdlineHeadId} differs from the head pinned in the initramfs (${pinned}): refusing it`,
    );
  const peerKey = join(HOME, 'peer.key');
  const hasKey = await readFile(peerKey).then(
    () => true,
    () => false,
  );
  if (baked.mesh?.closed && !hasKey)
    throw new RswError(
      'RSW_ERR_BOOT_FAILED',
      'closed mesh, but the initramfs carries no node key (/rackswarm/peer.key): load a `rackswarm boot credentials` archive with it',
    );
  return {
    mesh: { ...baked.mesh, headPeerId: pinned || cmdlineHeadId || '' },
    ...(hasKey ? { peerKey } : {}),
  };
}

async function main(): Promise<void> {
  const params = parseBootCmdline(await readFile('/proc/cmdline', 'utf8'));
  const bakedConfig = JSON.parse(await readFile(join(HOME, 'config.json'), 'utf8').catch(() => '{}'));
  const creds = await meshCredentials(bakedConfig, params.headPeerId);
  const baked = { ...bakedConfig, mesh: creds.mesh };
  const config = loadConfig(baked);
  const ref = `${params.image.name}${params.image.version === 'latest' ? '' : `@${params.image.version}`}`;
  say(`${params.mode} boot of ${ref} from ${params.head}`);

  const net = await bringUpNetwork(params.ip, {
    dhcpScript: join(HOME, 'udhcpc.sh'),
    leaseFile: join(RUN, 'lease'),
    linkTimeoutMs: config.boot.linkTimeoutSeconds * 1000,
  });
  const identity = nodeIdentity(net, params.hostname, await sshHostKey(params.head, net.mac));
  say(`network up: ${net.iface} ${net.mac} ${net.address}/${net.prefix}; this node is ${identity.hostname}`);

  const trustFiles = (await readdir(join(HOME, 'trust'))).filter((f) => f.endsWith('.pub')).sort();
  if (trustFiles.length === 0)
    throw new RswError('RSW_ERR_BOOT_FAILED', 'the initramfs pins no publisher key');
  const trusted = await loadTrust(trustFiles.map((f) => join(HOME, 'trust', f)));
  const layout = statelessLayout(RUN, NEW_ROOT);
  const target = params.mode === 'stateless' ? layout.image : (params.disk as string);
  // Listen on the node's own address only: that is what the tracker hands to other nodes (not 127.0.0.1).
  const nodeConfig = loadConfig({
    ...baked,
    peer: { ...baked.peer, listen: [`/ip4/${net.address}/tcp/${config.boot.peerPort}`] },
  });
  // rackswarm.linger=S seeds S seconds; by default, until the tracker says no node still fetches (bounded).
  const lingerText =
    params.linger === undefined
      ? `until no node still fetches (at most ${config.peer.lingerSeconds} s)`
      : `for ${params.linger} s`;

  let prepared = false;
  const prepare = async (s: FetchSummary, source: string): Promise<void> => {
    console.log(JSON.stringify({ fetched: { ...s, source, host: identity.hostname } }));
    if (params.mode === 'stateless') {
      await mountStatelessRoot(layout, identity);
      prepared = true;
      // Whole or absent (written aside, then renamed): /init polls for the file and sources it at once.
      await writeFileAtomic(join(RUN, 'ready'), `ACTION=switch_root\nNEWROOT=${NEW_ROOT}\nINIT=/sbin/init\n`);
      say(`root ready (SquashFS + OverlayFS on tmpfs); seeding ${lingerText} after the pivot`);
    }
  };

  let last: unknown;
  for (const attempt of fetchAttempts(params.source, config.boot.meshAttempts, config.boot.retryBaseMs)) {
    if (attempt.delayMs > 0) {
      say(`retrying in ${(attempt.delayMs / 1000).toFixed(0)} s (${attempt.source})`);
      await sleep(attempt.delayMs);
    }
    try {
      if (attempt.source === 'mesh') {
        await fetchImage(
          ref,
          {
            head: params.head,
            trust: trustFiles.map((f) => join(HOME, 'trust', f)),
            out: target,
            cache: join(RUN, 'cache'),
            rack: params.rack,
            linger: params.linger === undefined ? undefined : String(params.linger),
            json: true,
            peerKey: creds.peerKey,
          },
          nodeConfig,
          { onComplete: (s) => prepare(s, 'mesh') },
        );
      } else {
        say('fetching from the head alone over HTTP');
        // The mesh path learns revocations inside fetchImage; this one asks the head too (verified, persisted).
        const revoked = await nodeRevocations(new HeadClient(params.head), join(RUN, 'cache'), trusted);
        const s = await fetchOverHttp(params.head, params.image, trusted, target, {
          maxManifestBytes: config.manifest.maxBytes,
          revoked,
        });
        await prepare(s, 'http');
      }
      last = undefined;
      break;
    } catch (e) {
      if (prepared) return; // the node has pivoted; a failure while seeding is not a boot failure
      last = e;
      say(`attempt failed: ${formatError(e)}`);
      // A refusal is not a failure to retry, nor to route around over plain HTTP: a head that refuses this node's
      // id (closed mesh), or a node at the head's address that is not the pinned head, ends the boot here.
      if (isRswError(e) && (e.code === 'RSW_ERR_NOT_ENROLLED' || e.code === 'RSW_ERR_HEAD_IDENTITY')) break;
    }
  }
  if (last) throw last;
  if (params.mode === 'reimage') {
    const part = await injectIdentityIntoDisk(params.disk as string, join(RUN, 'target'), identity);
    say(`identity of ${identity.hostname} written into ${part}`);
    await writeFileAtomic(join(RUN, 'ready'), 'ACTION=reboot\n'); // whole or absent, as above
  }
}

try {
  await main();
  process.exit(0);
} catch (e) {
  const line = formatError(e);
  await writeFile(join(RUN, 'failed'), `${line}\n`).catch(() => {});
  console.log(`rackswarm: ${line}`);
  process.exit(isRswError(e) ? e.exitCode : 1);
}
