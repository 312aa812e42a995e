/**
 * The Kumar–Ross lower bound on the time to give all N nodes a file of F bytes (Kumar & Ross, "Peer-to-peer file
 * distribution", 2006): the server must send every byte once, the slowest node must receive every byte, and the
 * N·F bytes delivered cannot leave the server and the nodes faster than their combined upload.
 *   T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i))
 * Rates are in bytes/s.
 */
export function kumarRossSeconds(f: {
  bytes: number;
  serverUp: number;
  nodeUps: number[];
  nodeDowns: number[];
}): number {
  const n = f.nodeUps.length;
  const sumUp = f.nodeUps.reduce((a, b) => a + b, 0);
  const dMin = Math.min(...f.nodeDowns);
  return Math.max(f.bytes / f.serverUp, f.bytes / dMin, (n * f.bytes) / (f.serverUp + sumUp));
}

/** Mbit/s (10^6 bit/s, as tc counts them) to bytes/s. */
export function mbitToBytes(mbit: number): number {
  return (mbit * 1e6) / 8;
}
