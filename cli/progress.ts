import cliProgress from 'cli-progress';
import { formatBytes } from './format.ts';

export interface Progress {
  update(done: number): void;
  stop(): void;
}

/**
 * A byte progress bar on stderr when it is a terminal (and not --json); otherwise nothing, so pipes and logs stay
 * clean.
 */
export function byteProgress(label: string, total: number, enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return { update() {}, stop() {} };
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {doneH} / {totalH} | {rate} | eta {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const payload = (done: number) => ({
    doneH: formatBytes(done),
    totalH: formatBytes(total),
    rate: `${formatBytes(done / Math.max(0.001, (Date.now() - started) / 1000))}/s`,
  });
  bar.start(total, 0, payload(0));
  return {
    update: (done) => bar.update(done, payload(done)),
    stop: () => bar.stop(),
  };
}
