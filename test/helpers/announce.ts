import type { AnnounceBody } from '../../core/tracker-messages.ts';
import type { Announce } from '../../tracker/swarm-state.ts';

/** The image id the swarm-state tests announce by default. */
export const IMG = 'a'.repeat(64);

/** A plausible mid-fetch announce from `peerId` for IMG, with `over` replacing any field. */
export function announce(peerId: string, over: Partial<Announce> = {}): Announce {
  return {
    peerId,
    imageId: IMG,
    addrs: [`/ip4/10.0.0.1/tcp/4001/p2p/${peerId}`],
    rack: 'r1',
    progress: 0.5,
    bytesDone: 500,
    downRate: 100,
    upRate: 50,
    bytesFromPeers: 400,
    bytesFromSeeder: 100,
    stage: 'fetching',
    ...over,
  };
}

/** The body of a tracker announce over the wire (core/tracker-messages.ts): a peer that has just started fetching. */
export function fetchingBody(
  imageId: string,
  addrs: string[],
  over: Partial<AnnounceBody> = {},
): AnnounceBody {
  return {
    imageId,
    addrs,
    progress: 0,
    bytesDone: 0,
    downRate: 0,
    upRate: 0,
    bytesFromPeers: 0,
    bytesFromSeeder: 0,
    stage: 'fetching',
    ...over,
  };
}
