// Child processes of the testbed, each started inside a network namespace (`ip netns exec` execs the command, so
// the child's PID is the command's own) and killed by that PID at cleanup.
import { type ChildProcess, spawn } from 'node:child_process';

export interface Proc {
  child: ChildProcess;
  /** Complete lines so far, with the ms (performance.now) each arrived. */
  stdout: Array<{ at: number; line: string }>;
  stderr: string;
  /** Complete stderr lines so far, with the ms each arrived. */
  stderrLines: Array<{ at: number; line: string }>;
  exited: Promise<number | null>;
  /** Resolves with the first stdout/stderr line matching `re`, rejects if the process exits first or after `ms`. */
  waitFor(re: RegExp, ms: number, stream?: 'stdout' | 'stderr'): Promise<{ at: number; line: string }>;
}

export class Procs {
  readonly #all = new Set<ChildProcess>();

  /**
   * Runs `cmd args…` in namespace `ns`, stdin a pipe (the gate), stdout/stderr collected line by line; `env` added to
   * the testbed's environment.
   */
  start(
    ns: string,
    cmd: string,
    args: string[],
    onLine?: (line: string, at: number) => void,
    env?: Record<string, string>,
  ): Proc {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(env ? { env: { ...process.env, ...env } } : {}),
    });
    this.#all.add(child);
    child.on('exit', () => this.#all.delete(child));
    const stdout: Proc['stdout'] = [];
    const errLines: Proc['stdout'] = [];
    const waiters: Array<{ re: RegExp; stream: string; resolve: (l: { at: number; line: string }) => void }> =
      [];
    const proc: Proc = {
      child,
      stdout,
      stderr: '',
      stderrLines: errLines,
      exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
      waitFor: (re, ms, stream = 'stdout') => {
        const seen = (stream === 'stdout' ? stdout : errLines).find((l) => re.test(l.line));
        if (seen) return Promise.resolve(seen);
        return new Promise((resolve, reject) => {
          const t = setTimeout(
            () =>
              reject(
                new Error(
                  `${cmd} in ${ns}: no ${re} within ${ms} ms; last output: ${stdout.at(-1)?.line ?? '(none)'}\n${proc.stderr.slice(-2000)}`,
                ),
              ),
            ms,
          );
          waiters.push({
            re,
            stream,
            resolve: (l) => {
              clearTimeout(t);
              resolve(l);
            },
          });
          void proc.exited.then((code) => {
            clearTimeout(t);
            reject(new Error(`${cmd} in ${ns} exited (${code}) before ${re}:\n${proc.stderr.slice(-2000)}`));
          });
        });
      },
    };
    child.stdin.on('error', () => {}); // a process that died before its release
    const lines = (stream: 'stdout' | 'stderr', into: Proc['stdout']) => {
      let buf = '';
      return (d: Buffer) => {
        if (stream === 'stderr') proc.stderr += d;
        buf += d;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const l = { at: performance.now(), line: buf.slice(0, nl) };
          buf = buf.slice(nl + 1);
          into.push(l);
          if (stream === 'stdout') onLine?.(l.line, l.at);
          for (let i = waiters.length - 1; i >= 0; i--) {
            if (waiters[i].stream === stream && waiters[i].re.test(l.line))
              waiters.splice(i, 1)[0].resolve(l);
          }
        }
      };
    };
    child.stdout.on('data', lines('stdout', stdout));
    child.stderr.on('data', lines('stderr', errLines));
    return proc;
  }

  /**
   * Signals every process still running, by PID, and waits until they are gone. SIGKILL by default; a daemon with
   * workers of its own (nginx) takes SIGTERM, so its master reaps them (a killed master would orphan them).
   */
  async killAll(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (const c of this.#all) {
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        waits.push(new Promise((r) => c.once('exit', r)));
        try {
          process.kill(c.pid, signal);
        } catch {
          // already gone
        }
      }
    }
    await Promise.all(waits);
  }

  /** The same, synchronously (for an exit handler). */
  killAllSync(signal: NodeJS.Signals = 'SIGKILL'): void {
    for (const c of this.#all) {
      try {
        if (c.pid !== undefined) process.kill(c.pid, signal);
      } catch {
        // already gone
      }
    }
  }
}
