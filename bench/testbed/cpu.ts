// CPU load of the whole machine from /proc/stat, sampled every 500 ms: a run where the cores, not the shaped links,
// were the bottleneck shows up as a high busy share (the testbed's processes and everything else on the machine).
import { readFileSync } from 'node:fs';

function sample(): { busy: number; total: number; irq: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  // irq + softirq: the kernel's packet work (veth, bridge, tc shaping), charged to no process
  return { busy: total - idle, total, irq: (f[5] ?? 0) + (f[6] ?? 0) };
}

/**
 * meanBusy: busy share of all cores over the run; share90: share of 500 ms samples with the cores ≥ 90 % busy;
 * irqShare: share of all cores in interrupt and softirq context (packet processing, no process's CPU time).
 */
export interface CpuLoad {
  meanBusy: number;
  share90: number;
  irqShare: number;
}

export class CpuMeter {
  readonly #first = sample();
  #last = this.#first;
  readonly #shares: number[] = [];
  readonly #timer = setInterval(() => this.#tick(), 500);
  #result: CpuLoad | undefined;

  #tick(): void {
    const s = sample();
    if (s.total > this.#last.total)
      this.#shares.push((s.busy - this.#last.busy) / (s.total - this.#last.total));
    this.#last = s;
  }

  stop(): CpuLoad {
    if (this.#result) return this.#result;
    clearInterval(this.#timer);
    this.#tick();
    const s = this.#last;
    const meanBusy = (s.busy - this.#first.busy) / Math.max(1, s.total - this.#first.total);
    const share90 = this.#shares.length
      ? this.#shares.filter((x) => x >= 0.9).length / this.#shares.length
      : 0;
    const irqShare = (s.irq - this.#first.irq) / Math.max(1, s.total - this.#first.total);
    this.#result = { meanBusy, share90, irqShare };
    return this.#result;
  }
}
