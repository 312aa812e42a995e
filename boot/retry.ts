/**
 * What a booting node tries, in order, to get its image: the mesh a few times with doubling waits, then the head
 * alone over plain HTTP (same signed manifest, every chunk verified); after the last attempt /init gives up loudly
 * (rescue shell or reboot). Pure, so the order is tested without a network.
 */
import type { FetchSource } from '../core/boot-cmdline.ts';

export interface Attempt {
  source: FetchSource;
  /** Wait this long before the attempt. */
  delayMs: number;
}

export function fetchAttempts(start: FetchSource, meshAttempts: number, baseDelayMs: number): Attempt[] {
  const plan: Attempt[] = [];
  if (start === 'mesh') {
    for (let i = 0; i < meshAttempts; i++)
      plan.push({ source: 'mesh', delayMs: i === 0 ? 0 : baseDelayMs * 2 ** (i - 1) });
  }
  plan.push({ source: 'http', delayMs: plan.length === 0 ? 0 : baseDelayMs * 2 ** (plan.length - 1) });
  plan.push({ source: 'http', delayMs: baseDelayMs * 2 ** plan.length });
  return plan;
}
