/**
 * The lower bound on a wave's duration the dashboard compares elapsed time with. Pure.
 *
 * For one image of S bytes sent from a head with uplink U to N nodes, each with downlink D and uplink u, no schedule
 * can finish sooner than (Kumar & Ross, "Peer-assisted file distribution", 2006):
 *
 *   T_min = max( S / U,            the head must send every byte at least once
 *                S / D,            every node must receive every byte
 *                N·S / (U + N·u) ) the N·S bytes delivered cannot exceed everyone's upload capacity together
 *
 * U, D and u are the link rates the operator configures (core/config.ts, tracker.headUplinkBytesPerSecond and
 * tracker.nodeLinkBytesPerSecond, a node's link counted both ways); a seeder rate cap lowers U. With symmetric
 * links T_min = S / min(U, D): a perfect swarm delivers the image to every node in the time one copy takes.
 */
export interface WaveInputs {
  /** Image size, bytes. */
  size: number;
  /** Nodes in the wave. */
  nodes: number;
  /** Bytes per second. */
  headUplink: number;
  nodeDownlink: number;
  nodeUplink: number;
}

export function tMinSeconds(w: WaveInputs): number {
  if (w.size <= 0 || w.nodes <= 0) return 0;
  return Math.max(
    w.size / w.headUplink,
    w.size / w.nodeDownlink,
    (w.nodes * w.size) / (w.headUplink + w.nodes * w.nodeUplink),
  );
}
