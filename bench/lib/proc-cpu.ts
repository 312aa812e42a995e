import { readdirSync, readFileSync } from 'node:fs';

/**
 * A /proc stat file (a process's or a thread's): its name, and the fields after it (fields[0] is the state, [7]
 * minor faults, [11] and [12] user and system ticks). Split after the last ') ': the name may hold one.
 */
function procStat(path: string): { name: string; fields: string[] } {
  const s = readFileSync(path, 'utf8');
  return {
    name: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')),
    fields: s.slice(s.lastIndexOf(') ') + 2).split(' '),
  };
}

/** CPU seconds (user + system, every thread) a live process has used so far, from /proc/PID/stat; NaN once gone. */
export function processCpuSeconds(pid: number | undefined): number {
  try {
    const { fields } = procStat(`/proc/${pid}/stat`);
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * Where a live process's CPU went so far: user and system seconds, seconds per thread name (the main thread is
 * "node"; libuv's pool "libuv-worker", V8's "V8Worker", worker_threads by their own names), read and write system
 * calls (/proc/PID/io syscr, syscw: every read(), recvmsg, pread… counts once) and voluntary context switches of all
 * its threads (a wakeup each: a thread that slept in epoll_wait, a futex…) and minor page faults. Undefined once the process is gone.
 */
export interface CpuBreakdown {
  user: number;
  sys: number;
  threads: Record<string, number>;
  reads: number;
  writes: number;
  wakeups: number;
  /** Minor page faults: fresh anonymous memory touched (a new big Buffer is mmap'd and zeroed page by page). */
  faults: number;
}

export function processCpuBreakdown(pid: number | undefined): CpuBreakdown | undefined {
  try {
    const stat = procStat(`/proc/${pid}/stat`).fields;
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const ioField = (name: string) =>
      Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
    const threads: Record<string, number> = {};
    let wakeups = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const { name, fields: f } = procStat(`/proc/${pid}/task/${tid}/stat`);
        threads[name] = (threads[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
        const st = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
        wakeups += Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(st)?.[1] ?? 0);
      } catch {
        // a thread that ended between the listing and the read
      }
    }
    return {
      user: Number(stat[11]) / 100,
      sys: Number(stat[12]) / 100,
      threads,
      reads: ioField('syscr'),
      writes: ioField('syscw'),
      wakeups,
      faults: Number(stat[7]),
    };
  } catch {
    return undefined;
  }
}

/** b − a, field by field (threads by name; a thread that ended before b is not counted). */
export function cpuBreakdownDelta(
  a: CpuBreakdown | undefined,
  b: CpuBreakdown | undefined,
): CpuBreakdown | undefined {
  if (!a || !b) return undefined;
  const threads: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.threads)) threads[k] = v - (a.threads[k] ?? 0);
  return {
    user: b.user - a.user,
    sys: b.sys - a.sys,
    threads,
    reads: b.reads - a.reads,
    writes: b.writes - a.writes,
    wakeups: b.wakeups - a.wakeups,
    faults: b.faults - a.faults,
  };
}

/**
 * TCP connections opened in a process's network namespace since it was made (/proc/PID/net/snmp: ActiveOpens,
 * PassiveOpens): for a testbed host, alone in its namespace, its dials and accepts (libp2p and bulk alike).
 */
export function netnsTcpOpens(pid: number | undefined): { active: number; passive: number } | undefined {
  try {
    const lines = readFileSync(`/proc/${pid}/net/snmp`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Tcp:'));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/).map(Number);
    return { active: values[names.indexOf('ActiveOpens')], passive: values[names.indexOf('PassiveOpens')] };
  } catch {
    return undefined;
  }
}
