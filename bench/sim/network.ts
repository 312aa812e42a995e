// Flow-level network model for the swarm simulator: links with a capacity, flows over a path of links, and max-min
// fair rates by progressive filling (the share TCP flows converge to on a shared bottleneck, without packets).

export interface Link {
  /** bytes/s */
  cap: number;
  flows: Set<Flow>;
  /** Scratch for the filling. */
  rem: number;
  n: number;
  key: number;
}

export interface Flow {
  links: Link[];
  /** bytes/s, as last allocated. */
  rate: number;
  /** The allocation that last fixed this flow's rate (cheaper than a set of the fixed flows). */
  fixedIn?: number;
}

let allocations = 0;

export function newLink(capBytesPerSecond: number): Link {
  return { cap: capBytesPerSecond, flows: new Set(), rem: 0, n: 0, key: 0 };
}

export function attach(f: Flow): void {
  for (const l of f.links) l.flows.add(f);
}

export function detach(f: Flow): void {
  for (const l of f.links) l.flows.delete(f);
}

/** A rate for a flow that starts between two allocations: its fair share on its tightest link, counting itself. */
export function provisionalRate(f: Flow): number {
  let r = Number.POSITIVE_INFINITY;
  for (const l of f.links) r = Math.min(r, l.cap / Math.max(1, l.flows.size));
  return r;
}

/**
 * Max-min fair rates for every flow on `links` (progressive filling): repeatedly the link whose remaining capacity
 * per unallocated flow is smallest fixes that share for its flows, which then leave every other link. A binary heap
 * of links with lazy keys makes it O(F·P·log L) for F flows over paths of P links.
 */
export function allocate(links: Iterable<Link>): void {
  const heap = new LinkHeap();
  const round = ++allocations;
  for (const l of links) {
    l.rem = l.cap;
    l.n = l.flows.size;
    if (l.n > 0) {
      l.key = l.rem / l.n;
      heap.push(l, l.key);
    }
  }
  for (let e = heap.pop(); e; e = heap.pop()) {
    const l = e.link;
    if (l.n === 0 || e.key !== l.key) continue; // a stale entry: the link's key changed after this push
    const share = l.key;
    for (const f of l.flows) {
      if (f.fixedIn === round) continue;
      f.fixedIn = round;
      f.rate = share;
      for (const m of f.links) {
        m.rem = Math.max(0, m.rem - share);
        m.n--;
        if (m !== l && m.n > 0) {
          m.key = m.rem / m.n;
          heap.push(m, m.key);
        }
      }
    }
    l.n = 0;
  }
}

/** Binary min-heap of (link, key) entries; a link may sit in it several times (lazy decrease-key). */
class LinkHeap {
  readonly #links: Link[] = [];
  readonly #keys: number[] = [];

  push(link: Link, key: number): void {
    const ls = this.#links;
    const ks = this.#keys;
    let i = ls.length;
    ls.push(link);
    ks.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (ks[p] <= key) break;
      ls[i] = ls[p];
      ks[i] = ks[p];
      i = p;
    }
    ls[i] = link;
    ks[i] = key;
  }

  pop(): { link: Link; key: number } | undefined {
    const ls = this.#links;
    const ks = this.#keys;
    if (ls.length === 0) return undefined;
    const top = { link: ls[0], key: ks[0] };
    const link = ls.pop() as Link;
    const key = ks.pop() as number;
    const n = ls.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const c = l + 1 < n && ks[l + 1] < ks[l] ? l + 1 : l;
        if (ks[c] >= key) break;
        ls[i] = ls[c];
        ks[i] = ks[c];
        i = c;
      }
      ls[i] = link;
      ks[i] = key;
    }
    return top;
  }
}
