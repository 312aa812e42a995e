import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { type CliResult, projectRoot, runCli } from './cli.ts';

export interface RunningHead {
  url: string;
  p2p: string[];
  peerId: string;
  proc: ChildProcess;
  /** Every log line so far (JSON lines from pino). */
  log: string[];
  /** SIGTERM (or `signal`), then resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a real `rackswarm head` on 127.0.0.1 with OS-chosen ports and waits for its "head ready" line. */
/** `global` options (e.g. --config FILE) go before the subcommand. */
/** `where`: another address (e.g. a bridge in a network namespace the head runs in); `root`: another checkout's CLI. */
export function startHead(
  dataDir: string,
  extra: string[] = [],
  global: string[] = [],
  where: { netns?: string; host?: string; root?: string } = {},
): Promise<RunningHead> {
  const host = where.host ?? '127.0.0.1';
  const args = [
    join(where.root ?? projectRoot, 'bin/rackswarm.js'),
    ...global,
    'head',
    '--data',
    dataDir,
    '--http',
    `${host}:0`,
    '--listen',
    `/ip4/${host}/tcp/0`,
    ...extra,
  ];
  const proc = where.netns
    ? spawn('ip', ['netns', 'exec', where.netns, process.execPath, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`head did not become ready in 60 s:\n${log.join('\n')}\n${stderr}`));
    }, 60_000);
    proc.stderr?.on('data', (d) => {
      stderr += d;
    });
    let buf = '';
    proc.stdout?.on('data', (d) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        log.push(line);
        try {
          const j = JSON.parse(line);
          if (typeof j.msg === 'string' && j.msg.startsWith('head ready')) {
            clearTimeout(timer);
            resolve({
              url: j.http,
              p2p: j.p2p,
              peerId: j.peerId,
              proc,
              log,
              stop: async (signal = 'SIGTERM') => {
                if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
                return exited;
              },
            });
          }
        } catch {}
        nl = buf.indexOf('\n');
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`head exited with ${code} before it was ready:\n${log.join('\n')}\n${stderr}`));
    });
  });
}

/** `rackswarm publish FILE --name NAME --key KEY --head URL --token-file TOKEN` against a running head. */
export function publishToHead(
  headUrl: string,
  tokenFile: string,
  file: string,
  name: string,
  key: string,
): Promise<CliResult> {
  return runCli([
    'publish',
    file,
    '--name',
    name,
    '--key',
    key,
    '--head',
    headUrl,
    '--token-file',
    tokenFile,
  ]);
}
