import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from './cli.ts';

export interface FetchPeer {
  child: ChildProcess;
  stderr: () => string;
  /** The fetch's final JSON line (it then lingers, seeding). */
  summary: Promise<{ id: string; bytesFromPeers: number; bytesFromSeeder: number }>;
  /** SIGTERM (a lingering fetch stops seeding and exits 0), then its exit code; SIGKILL after 15 s. */
  stop(): Promise<number | null>;
}

/** A real `rackswarm fetch NAME --json` process against `head`, with its output and cache under `dir/name`. */
export function startFetchPeer(o: {
  head: string;
  pub: string;
  image: string;
  dir: string;
  name: string;
  rack?: string;
  linger: number;
  /** A config file (e.g. loopback-only listen addresses). */
  config?: string;
  /** More `fetch` options (e.g. --head-peer-id, --peer-key). */
  extra?: string[];
}): FetchPeer {
  const args = [join(projectRoot, 'bin/rackswarm.js')];
  if (o.config) args.push('--config', o.config);
  args.push('fetch', o.image, '--head', o.head, '--trust', o.pub, '--json', '--linger', String(o.linger));
  args.push(
    '--out',
    join(o.dir, `${o.name}.img`),
    '--cache',
    join(o.dir, `${o.name}-cache`),
    '--host',
    o.name,
  );
  if (o.rack) args.push('--rack', o.rack);
  args.push(...(o.extra ?? []));
  const child = spawn(process.execPath, args, { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const summary = new Promise<{ id: string; bytesFromPeers: number; bytesFromSeeder: number }>(
    (resolve, reject) => {
      let buf = '';
      child.stdout?.on('data', (d) => {
        buf += d;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const j = JSON.parse(line);
            if (typeof j.id === 'string') resolve(j);
          } catch {}
        }
      });
      void exit.then((code) => reject(new Error(`fetch ${o.name} exited with ${code}: ${stderr}`)));
    },
  );
  summary.catch(() => {}); // observed by whoever awaits it
  return {
    child,
    stderr: () => stderr,
    summary,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const code = await exit;
        clearTimeout(kill);
        return code;
      }
      return exit;
    },
  };
}
