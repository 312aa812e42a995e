import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { Command } from 'commander';
import { parsePeerId, parsePeerIdList } from '../../core/enrollment.ts';
import { RswError } from '../../core/errors.ts';
import { HeadClient } from '../head-client.ts';
import { loadOrCreatePeerKey } from '../p2p-node.ts';

interface HeadOpts {
  head: string;
  tokenFile: string;
  json?: boolean;
}
interface IdsOpts extends HeadOpts {
  file?: string;
  key?: string[];
  note?: string;
}

/** Ids per HTTP request (the route's cap, under the API's 1 MiB body limit). */
const BATCH = 10_000;

/** Ids from the arguments, `--file` (one per line, # comments) and `--key` files (created 0600 if missing). */
async function collectIds(args: string[], opts: IdsOpts): Promise<string[]> {
  const ids = args.map(parsePeerId);
  if (opts.file) {
    const text = await readFile(resolve(opts.file), 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new RswError(
        e.code === 'ENOENT' ? 'RSW_ERR_FILE_NOT_FOUND' : 'RSW_ERR_FILE_UNREADABLE',
        `cannot read ${opts.file}: ${e.code}`,
      );
    });
    ids.push(...parsePeerIdList(text));
  }
  for (const k of opts.key ?? [])
    ids.push(peerIdFromPrivateKey(await loadOrCreatePeerKey(resolve(k))).toString());
  if (ids.length === 0)
    throw new RswError('RSW_ERR_USAGE', 'name at least one peer id (arguments, --file or --key)');
  return [...new Set(ids)];
}

async function client(opts: HeadOpts): Promise<HeadClient> {
  return new HeadClient(opts.head, await HeadClient.readToken(opts.tokenFile));
}

export function registerEnroll(program: Command): void {
  const enroll = program
    .command('enroll')
    .description(
      "manage the closed mesh's enrolled nodes (peer ids the head and every peer admit; mesh.closed)",
    );
  const headOptions = (c: Command) =>
    c
      .requiredOption('--head <url>', 'the head node, e.g. http://head:7480')
      .requiredOption('--token-file <file>', "the head's admin token")
      .option('--json', 'print the result as JSON');

  headOptions(
    enroll
      .command('add')
      .description('enroll nodes by libp2p peer id')
      .argument('[peer-ids...]', 'peer ids (12D3Koo…)')
      .option('--file <list>', 'a file of peer ids, one per line (# starts a comment)')
      .option(
        '--key <file...>',
        "a node's libp2p key file: its peer id is enrolled; a missing file is created (0600) — bake it into the node's initramfs with `boot initramfs --peer-key`",
      )
      .option('--note <text>', 'what the nodes are (host name, asset tag), kept with the record'),
  ).action(async (args: string[], opts: IdsOpts) => {
    const ids = await collectIds(args, opts);
    const head = await client(opts);
    const added: string[] = [];
    let count = 0;
    for (let i = 0; i < ids.length; i += BATCH) {
      const r = await head.enroll(ids.slice(i, i + BATCH), opts.note);
      added.push(...r.added);
      count = r.count;
    }
    if (opts.json) console.log(JSON.stringify({ added, requested: ids, count }));
    else
      console.log(
        `enrolled ${added.length} new of ${ids.length} peer id${ids.length === 1 ? '' : 's'}${ids.length === 1 ? ` (${ids[0]})` : ''}; ${count} enrolled in all`,
      );
  });

  headOptions(
    enroll
      .command('remove')
      .description(
        'remove enrollments: the head hangs up on those nodes at once, peers within mesh.cacheSeconds',
      )
      .argument('[peer-ids...]', 'peer ids')
      .option('--file <list>', 'a file of peer ids, one per line'),
  ).action(async (args: string[], opts: IdsOpts) => {
    const ids = await collectIds(args, opts);
    const head = await client(opts);
    const removed: string[] = [];
    let count = 0;
    for (let i = 0; i < ids.length; i += BATCH) {
      const r = await head.unenroll(ids.slice(i, i + BATCH));
      removed.push(...r.removed);
      count = r.count;
    }
    if (opts.json) console.log(JSON.stringify({ removed, count }));
    else console.log(`removed ${removed.length} of ${ids.length}; ${count} enrolled in all`);
  });

  headOptions(enroll.command('list').description('the enrolled peer ids')).action(async (opts: HeadOpts) => {
    const r = await (await client(opts)).enrollments();
    if (opts.json) console.log(JSON.stringify(r));
    else {
      console.log(`mesh ${r.closed ? 'closed' : 'open (mesh.closed is false)'}; ${r.count} enrolled`);
      for (const e of r.enrollments) console.log(`${e.peerId}  ${e.addedAt}${e.note ? `  ${e.note}` : ''}`);
    }
  });

  headOptions(
    enroll
      .command('show')
      .description('one peer id: enrolled or not, streams the head handled for it, connections it refused')
      .argument('<peer-id>'),
  ).action(async (id: string, opts: HeadOpts) => {
    const r = await (await client(opts)).enrollment(parsePeerId(id));
    if (opts.json) console.log(JSON.stringify(r));
    else
      console.log(
        `${r.peerId}: ${r.enrolled ? 'enrolled' : 'not enrolled'}; ${r.streamsHandled} streams handled, ${r.refused} connections refused`,
      );
  });
}
