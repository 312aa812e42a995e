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
