import type { Command } from 'commander';
import type { Config } from '../../core/config.ts';
import type { FetchOptions } from '../fetch-image.ts';

export function registerFetch(program: Command, config: () => Config): void {
  program
    .command('fetch')
    .description('download an image through the swarm, verify it, write it, and keep serving it for a while')
    .argument(
      '<image>',
      'NAME, NAME@VERSION (default: the newest version) or NAME:CHANNEL (a signed channel pointer)',
    )
    .requiredOption('--head <url>', 'the head node, e.g. http://head:7480')
    .requiredOption('--trust <pubfile...>', 'publisher public key(s) the manifest must be signed with')
    .requiredOption('--out <path>', 'file or block device to write the image to')
    .option(
      '--cache <dir>',
      'identity, resume records, seen versions, and chunks of earlier versions so the next one moves only what changed (default: ~/.cache/rackswarm, without chunks)',
    )
    .option('--rack <label>', 'rack label: peers in the same rack are preferred')
    .option('--host <label>', 'node name shown on the dashboard (default: the host name)')
    .option(
      '--linger <seconds>',
      'keep serving this many seconds after completing (default: until no peer of the swarm still fetches, at most peer.lingerSeconds = 600)',
    )
    .option(
      '--image-key <file>',
      'an encrypted image: its key from FILE (default: released by the head over the tracker protocol, closed mesh only)',
    )
    .option('--json', 'progress as JSON lines, then one final JSON line')
    .option(
      '--head-peer-id <id>',
      "pin the head's libp2p peer id (a fake head at its address then fails the handshake); needed with mesh.closed",
    )
    .option(
      '--peer-key <file>',
      "this node's libp2p identity (default: CACHE/peer.key, created on first use)",
    )
    .action(async (image: string, opts: FetchOptions) => {
      const { fetchImage } = await import('../fetch-image.ts'); // loaded only when fetching
      await fetchImage(image, opts, config());
    });
}
