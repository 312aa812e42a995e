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
  /** Scratch for reallocate(): the pass that last listed it, and its load and largest rate at the check. */
  seen?: number;
  checked?: number;
  load?: number;
  top?: number;
}

export interface Flow {
  links: Link[];
  /** bytes/s, as last allocated. */
  rate: number;
  /** The filling that last fixed this flow's rate (cheaper than a set of the fixed flows). */
  fixedIn?: number;
  /** The reallocate() pass that re-allocates it. */
  member?: number;
}

/** Stamps for the scratch fields: every filling and every reallocate() pass takes a new one. */
let stamps = 0;

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
  for (const l of links) {
    l.rem = l.cap;
    l.n = l.flows.size;
    if (l.n > 0) {
      l.key = l.rem / l.n;
      heap.push(l, l.key);
    }
  }
  fill(heap, undefined);
}

/** Share of all flows past which reallocate() gives up on locality and fills everything once. */
const FULL_AT = 0.05;

/** Relative tolerance of the bottleneck check (rates are sums of floating-point shares). */
const EPS = 1e-9;

/**
 * The max-min fair allocation again after the flows on `dirty` changed (added, removed), re-computing only what it
 * must: the flows on the dirty links are re-filled over the capacity the other flows leave them; then every flow on
 * a link they use is checked for a bottleneck — a saturated link on which no flow is faster (an allocation where
 * every flow has one is the max-min fair one, Bertsekas & Gallager §6.5.2). A flow without one, and the flows
 * sharing its links, join the re-filled set, until none is left. Equal to allocate() (test/unit/sim-network.test.ts);
 * it returns the flows it re-filled, each with the rate it had before in `previous`.
 */
export function reallocate(
  dirty: Iterable<Link>,
  all: readonly Link[],
  totalFlows: number,
  fullAt = FULL_AT,
): { flows: Flow[]; previous: number[] } {
  const member = ++stamps;
  const flows: Flow[] = [];
  const previous: number[] = [];
  const join = (f: Flow): void => {
    if (f.member === member) return;
    f.member = member;
    flows.push(f);
    previous.push(f.rate);
  };
  for (const l of dirty) for (const f of l.flows) join(f);
  for (let joined = flows.length; joined > 0; ) {
    if (flows.length > totalFlows * fullAt) {
      // In a saturated mesh a change ripples through most flows (each node's down link is shared by its sources,
      // each source's up link by its receivers), and re-filling a growing set ring by ring costs more than one
      // global filling.
      for (const l of all) for (const f of l.flows) join(f);
      allocate(all);
      break;
    }
    const pass = ++stamps;
    const touched: Link[] = [];
    for (const f of flows) {
      for (const l of f.links) {
        if (l.seen === pass) continue;
        l.seen = pass;
        touched.push(l);
      }
    }
    const heap = new LinkHeap();
    for (const l of touched) {
      let rem = l.cap;
      let n = 0;
      for (const f of l.flows) {
        if (f.member === member) n++;
        else rem -= f.rate;
      }
      l.rem = Math.max(0, rem);
      l.n = n;
      if (n > 0) {
        l.key = l.rem / n;
        heap.push(l, l.key);
      }
    }
    fill(heap, member);
    const before = flows.length;
    for (const l of touched) {
      for (const f of l.flows) {
        if (bottlenecked(f, pass)) continue;
        join(f);
        for (const m of f.links) for (const g of m.flows) join(g);
      }
    }
    joined = flows.length - before;
  }
  return { flows, previous };
}

function bottlenecked(f: Flow, pass: number): boolean {
  for (const l of f.links) {
    if (l.checked !== pass) {
      l.checked = pass;
      let load = 0;
      let top = 0;
      for (const g of l.flows) {
        load += g.rate;
        if (g.rate > top) top = g.rate;
      }
      l.load = load;
      l.top = top;
    }
    if ((l.load as number) > l.cap * (1 + EPS)) return false; // over capacity: every flow on it is re-filled
  }
  for (const l of f.links) {
    if ((l.load as number) >= l.cap * (1 - EPS) && f.rate >= (l.top as number) * (1 - EPS)) return true;
  }
  return false;
}

/**
 * Progressive filling of the flows stamped `member` (undefined: of every flow on the links), from the links in `heap` (rem, n and key set; one entry each).
 * A link's key only grows as flows are fixed elsewhere (a flow fixed at share s ≤ key leaves (rem − s)/(n − 1) ≥
 * rem/n), so an entry is a lower bound of its link's key: a popped entry whose link's key has grown goes back in
 * with the new key, and the first entry popped at its link's key is the smallest. One push per link and per such
 * return instead of one per flow and link it crosses: the filling was two thirds of a 10,000-node run's CPU.
 */
function fill(heap: LinkHeap, member: number | undefined): void {
  const round = ++stamps;
  for (let l = heap.pop(); l !== undefined; l = heap.pop()) {
    if (l.n === 0) continue;
    if (heap.key !== l.key) {
      heap.push(l, l.key);
      continue;
    }
    const share = l.key;
    for (const f of l.flows) {
      if ((member !== undefined && f.member !== member) || f.fixedIn === round) continue;
      f.fixedIn = round;
      f.rate = share;
      for (const m of f.links) {
        m.rem = Math.max(0, m.rem - share);
        m.n--;
        if (m !== l && m.n > 0) m.key = m.rem / m.n;
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

  /** The key of the entry pop() returned last. */
  key = 0;

  /** The link of the smallest entry, removed (its key in `key`); no object per pop: a filling pops ~20,000. */
  pop(): Link | undefined {
    const ls = this.#links;
    const ks = this.#keys;
    if (ls.length === 0) return undefined;
    const top = ls[0];
    this.key = ks[0];
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
