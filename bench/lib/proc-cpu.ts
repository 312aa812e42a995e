import { readFileSync } from 'node:fs';

/** CPU seconds (user + system, every thread) a live process has used so far, from /proc/PID/stat; NaN once gone. */
export function processCpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}
