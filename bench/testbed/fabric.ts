// The testbed's network: a head and N nodes, each in a network namespace of its own, on one bridge per rack; with
// more than one rack, the rack bridges hang off a spine bridge through shaped links. Every host link is shaped with
// `tc tbf` in both directions (the kernel here lacks netem): the host's egress on its side of the veth pair (its
// upload), the fabric's egress on the other side (its download). Everything lives in namespaces this process
// creates and names (prefix with its PID), so cleanup deletes exactly those and nothing else.
import { execFileSync } from 'node:child_process';

export interface FabricInit {
  nodes: number;
  racks: number;
  /** Host link rate, both directions, Mbit/s. */
  rateMbit: number;
  /** Head link rate, both directions, Mbit/s. */
  headRateMbit: number;
  /** Rack-to-spine link rate, both directions, Mbit/s (only with racks > 1). */
  spineRateMbit: number;
  /**
   * net.ipv4.tcp_min_tso_segs in every host's namespace (kernel default 2). TCP sizes its TSO packets to ~1 ms of
   * its pacing rate, ~6 KB at 50 Mbit/s, so each host's kernel moves a 64 MiB image as ~11,000 packets through veth,
   * bridge and tbf, and the receiver reads it in as many pieces; 44 lets 64 KiB packets through (the tbf burst
   * takes them whole). For measuring what the emulation's packet rate costs the 2 shared cores: real hosts do this
   * work on their own cores and NICs. Undefined: the kernel default.
   */
  minTsoSegs?: number;
}

export interface Host {
  ns: string;
  ip: string;
  rack: number;
}

const SUBNET = '10.77';

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function tc(ns: string, args: string[]): void {
  execFileSync('ip', ['netns', 'exec', ns, 'tc', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * tbf both ways needs a burst of at least rate/HZ; a bigger one lets GSO super-packets (up to 64 KiB on veth) through
 * whole, and ~5 ms of the rate keeps the shaping tight at 50 Mbit/s as at 10 Gbit/s.
 */
function shape(ns: string, dev: string, mbit: number): void {
  const burst = Math.max(128 * 1024, Math.round((mbit * 1e6) / 8 / 200));
  tc(ns, [
    'qdisc',
    'replace',
    'dev',
    dev,
    'root',
    'tbf',
    'rate',
    `${mbit}mbit`,
    'burst',
    `${burst}`,
    'latency',
    '200ms',
  ]);
}

export class Fabric {
  readonly prefix: string;
  readonly fabricNs: string;
  readonly head: Host;
  readonly nodes: Host[] = [];
  readonly #created: string[] = [];
  readonly #init: FabricInit;

  constructor(init: FabricInit) {
    if (init.nodes < 1 || init.nodes > 60_000) throw new RangeError(`nodes must be 1..60000: ${init.nodes}`);
    if (init.racks < 1 || init.racks > init.nodes)
      throw new RangeError(`racks must be 1..nodes: ${init.racks}`);
    this.#init = init;
    this.prefix = `rswtb${process.pid}`;
    this.fabricNs = `${this.prefix}-fab`;
    this.head = { ns: `${this.prefix}-head`, ip: `${SUBNET}.0.1`, rack: -1 };
    for (let i = 0; i < init.nodes; i++) {
      this.nodes.push({
        ns: `${this.prefix}-n${i}`,
        ip: `${SUBNET}.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`,
        // nodes are dealt to racks in blocks: rack r holds nodes r·N/R … (r+1)·N/R − 1
        rack: Math.floor((i * init.racks) / init.nodes),
      });
    }
  }

  /** Creates every namespace, bridge and link; on failure, removes what it made and rethrows. */
  up(): void {
    try {
      this.#build();
    } catch (e) {
      this.down();
      throw e;
    }
  }

  /** Deletes every namespace this fabric created (their links and qdiscs go with them). Safe to call twice. */
  down(): void {
    for (const ns of this.#created.splice(0).reverse()) {
      try {
        ip(['netns', 'delete', ns]);
      } catch {
        // already gone
      }
    }
  }

  #netns(name: string): void {
    ip(['netns', 'add', name]);
    this.#created.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }

  #build(): void {
    const { racks, rateMbit, headRateMbit, spineRateMbit } = this.#init;
    const fab = this.fabricNs;
    this.#netns(fab);
    for (let r = 0; r < racks; r++) {
      ip(['-n', fab, 'link', 'add', `rack${r}`, 'type', 'bridge']);
      ip(['-n', fab, 'link', 'set', `rack${r}`, 'up']);
    }
    // One rack: the head is on the rack's bridge. Several: the head and the racks hang off the spine.
    let headBridge = 'rack0';
    if (racks > 1) {
      headBridge = 'spine';
      ip(['-n', fab, 'link', 'add', 'spine', 'type', 'bridge']);
      ip(['-n', fab, 'link', 'set', 'spine', 'up']);
      for (let r = 0; r < racks; r++) {
        // up<r>: rack side (its egress = traffic leaving the rack); dn<r>: spine side (traffic entering the rack)
        ip(['-n', fab, 'link', 'add', `up${r}`, 'type', 'veth', 'peer', 'name', `dn${r}`]);
        ip(['-n', fab, 'link', 'set', `up${r}`, 'master', `rack${r}`, 'up']);
        ip(['-n', fab, 'link', 'set', `dn${r}`, 'master', 'spine', 'up']);
        shape(fab, `up${r}`, spineRateMbit);
        shape(fab, `dn${r}`, spineRateMbit);
      }
    }
    this.#host(this.head, 'vhead', headBridge, headRateMbit);
    this.nodes.forEach((n, i) => {
      this.#host(n, `v${i}`, `rack${n.rack}`, rateMbit);
    });
  }

  #host(h: Host, port: string, bridge: string, mbit: number): void {
    const fab = this.fabricNs;
    this.#netns(h.ns);
    ip(['-n', fab, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
    ip(['-n', fab, 'link', 'set', port, 'master', bridge, 'up']);
    ip(['-n', h.ns, 'addr', 'add', `${h.ip}/16`, 'dev', 'eth0']);
    ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    if (this.#init.minTsoSegs !== undefined) {
      execFileSync('ip', [
        'netns',
        'exec',
        h.ns,
        'sysctl',
        '-qw',
        `net.ipv4.tcp_min_tso_segs=${this.#init.minTsoSegs}`,
      ]);
    }
    shape(h.ns, 'eth0', mbit); // upload
    shape(fab, port, mbit); // download
  }

  /**
   * Cuts (false) or restores (true) rack `r`'s link to the spine: its nodes keep each other but lose the head and the
   * other racks. Link down drops every packet both ways, with no RST or ICMP: a partition as a cut cable makes it.
   */
  setRackLink(r: number, up: boolean): void {
    if (this.#init.racks < 2 || r < 0 || r >= this.#init.racks)
      throw new RangeError(`no spine link for rack ${r}`);
    ip(['-n', this.fabricNs, 'link', 'set', `up${r}`, up ? 'up' : 'down']);
  }

  /** Transmitted bytes of a host's eth0, from the kernel's interface counters. */
  txBytes(h: Host): number {
    return linkBytes(h.ns, 'eth0').tx;
  }

  /** Bytes that entered the racks from the spine (cross-rack traffic, the head's included); 0 with one rack. */
  crossRackBytes(): number {
    let sum = 0;
    for (let r = 0; r < this.#init.racks && this.#init.racks > 1; r++)
      sum += linkBytes(this.fabricNs, `dn${r}`).tx;
    return sum;
  }
}

function linkBytes(ns: string, dev: string): { tx: number; rx: number } {
  const j = JSON.parse(ip(['-n', ns, '-j', '-s', 'link', 'show', 'dev', dev])) as Array<{
    stats64: { tx: { bytes: number }; rx: { bytes: number } };
  }>;
  return { tx: j[0].stats64.tx.bytes, rx: j[0].stats64.rx.bytes };
}
