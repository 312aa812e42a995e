import type { DashboardSnapshot } from '../tracker/dashboard-snapshot.ts';
import { PEER_STAGES } from '../tracker/swarm-state.ts';
import { formatBytes, formatTable } from './format.ts';

const rate = (n: number) => `${formatBytes(Math.round(n))}/s`;
const pct = (x: number | null) => (x === null ? '-' : `${(Math.floor(x * 1000) / 10).toFixed(1)}%`);

function secs(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}

/** `rackswarm status` as text: the head, one line per image, nodes by stage, then the stuck and failed nodes. */
export function formatStatus(s: DashboardSnapshot, head: string): string {
  const out: string[] = [];
  out.push(
    `head ${head}  egress ${rate(s.head.egressRate)}  served ${formatBytes(s.head.bytesServed)}  ` +
      `offload ${pct(s.head.offload)}  at ${new Date(s.time).toISOString().replace(/\.\d+Z$/, 'Z')}`,
  );
  out.push('');
  if (s.swarms.length === 0) {
    out.push('no node has announced to this head');
    return out.join('\n');
  }
  const label = (w: DashboardSnapshot['swarms'][number]) =>
    w.name ? `${w.name}@${w.version}` : `${w.imageId.slice(0, 16)} (unregistered)`;
  out.push(
    formatTable(
      [
        'IMAGE',
        'NODES',
        'DONE',
        'PROGRESS',
        'STUCK',
        'FAILED',
        'DOWN',
        'FROM PEERS',
        'FROM HEAD',
        'ELAPSED',
        'T_MIN',
      ],
      s.swarms.map((w) => [
        label(w),
        String(w.summary.peers),
        String(w.summary.done),
        pct(w.summary.meanProgress),
        String(w.summary.stuck),
        String(w.summary.byStage.failed),
        rate(w.summary.downRate),
        formatBytes(w.summary.bytesFromPeers),
        formatBytes(w.summary.bytesFromSeeder),
        secs(w.wave.elapsedSeconds) + (w.wave.completedAt ? ' (done)' : ''),
        w.wave.tMinSeconds === null ? '-' : secs(w.wave.tMinSeconds),
      ]),
    ),
  );
  out.push('');
  out.push(
    formatTable(
      ['IMAGE', ...PEER_STAGES.map((st) => st.toUpperCase())],
      s.swarms.map((w) => [label(w), ...PEER_STAGES.map((st) => String(w.summary.byStage[st]))]),
    ),
  );
  const trouble = s.swarms.flatMap((w) =>
    w.rows.filter((r) => r.stuck || r.stage === 'failed').map((r) => ({ w, r })),
  );
  const total = s.swarms.reduce((a, w) => a + w.summary.stuck + w.summary.byStage.failed, 0);
  out.push('');
  if (total === 0) out.push('no stuck or failed nodes');
  else {
    out.push(`stuck or failed nodes: ${total}`);
    out.push(
      formatTable(
        ['IMAGE', 'RACK', 'NODE', 'STAGE', 'PROGRESS', 'LAST SEEN', 'ERROR'],
        trouble.map(({ w, r }) => [
          label(w),
          r.rack ?? '-',
          r.host ?? r.peerId,
          r.stuck ? `${r.stage} (stuck)` : r.stage,
          pct(r.progress),
          `${secs(Math.max(0, (s.time - r.lastSeen) / 1000))} ago`,
          r.error ?? '',
        ]),
      ),
    );
    if (trouble.length < total) out.push(`… and ${total - trouble.length} more (see the dashboard)`);
  }
  return out.join('\n');
}
