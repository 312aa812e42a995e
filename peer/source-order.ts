/**
 * The order in which a fetch offers its neighbours requests (peer/fetcher.ts and bench/sim: each turn walks them with
 * Scheduler.askable(now, start) until `maxSources` have a batch in flight): a pure policy, `random` injected.
 *
 * Every turn starts at a uniformly random slot of the list (rotationStart: one draw of `random`, 0 for an empty list)
 * and goes round it once. Walking the list from its start,
 * as the fetcher did, every node filled its few source slots (config `peer.maxSources`: 4) with the neighbours it had
 * learnt of first — the tracker hands out the nodes that announced first, so the same few for everyone. Those nodes
 * uploaded at their link's rate all through while the nodes that started a second later served little, and the busy
 * uploaders finished last: their own downloads came from one another, each of them serving its 4 streams to the
 * swarm (testbed, 16 nodes, `--dump`: the six first to start uploaded 76–120 MiB of a 64 MiB image by the time they
 * finished last, 23.5–27.3 s; the six last to start 9–43 MiB and finished first; docs/BENCHMARKS.md, "Session 9").
 * A random start gives every holder of a missing chunk the same chance of a freed slot, so the uploads spread over
 * every uplink, as BitTorrent's requesters spread theirs by choosing peers at random.
 */
export function rotationStart(n: number, random: () => number): number {
  return n === 0 ? 0 : Math.min(Math.floor(random() * n), n - 1);
}
