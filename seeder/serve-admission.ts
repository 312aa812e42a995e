/**
 * A serving node's admission when its slots are contested (the swarm's ramp-up): the last `reserved` of its serving
 * slots go only to askers holding less than `hungryShare` of the image, so a node holding nothing is not refused
 * `busy` by every holder while nodes that already have sources fill their slots (bench/sim, 1,000 nodes: 0.9 sources
 * in flight per unfinished node at 0.6 s while 14 neighbours held something it lacked). Pure; what the asker holds is
 * the caller's (a node's view of its neighbours' haves: cli/fetch-image.ts, bench/sim/swarm-sim.ts).
 */
export interface ServeAdmissionInit {
  /** Slots kept for hungry askers (0: first come, first served). */
  reserved: number;
  /** An asker holding fewer than this share of the image's chunks is hungry. */
  hungryShare: number;
}

/**
 * Whether a new batch may take a slot: `serving` of `maxServing` slots are taken; `askerHeld` chunks of `chunks` the
 * asker holds (undefined: not known, so taken as hungry — a node that has not sent its haves yet is a new one).
 */
export function admitsServe(
  init: ServeAdmissionInit,
  serving: number,
  maxServing: number,
  askerHeld: number | undefined,
  chunks: number,
): boolean {
  if (serving >= maxServing) return false;
  const reserved = Math.min(init.reserved, maxServing - 1);
  if (serving < maxServing - reserved) return true;
  return askerHeld === undefined || askerHeld < init.hungryShare * chunks;
}
