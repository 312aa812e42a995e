// `npm run bench [-- --quick]`: runs every benchmark and writes docs/BENCHMARKS-latest.md — not docs/BENCHMARKS.md,
// the curated record (every session's figures with their commands, times and history), which it used to overwrite.
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchBoot } from './boot.ts';
import { benchChunkServing } from './chunk-serving.ts';
import { benchChunker } from './chunker.ts';
import { benchDashboard } from './dashboard.ts';
import { benchEncryption } from './encryption.ts';
import { benchFetch } from './fetch.ts';
import { benchHash } from './hash.ts';
import { benchHead } from './head.ts';
import { benchMesh } from './mesh.ts';
import { benchPublish } from './publish.ts';
import { benchSwarm } from './swarm.ts';
import { benchTracker } from './tracker.ts';
import { benchVersions } from './versions.ts';

const quick = process.argv.includes('--quick');
const out = fileURLToPath(new URL('../docs/BENCHMARKS-latest.md', import.meta.url));

const sections: string[] = [];
for (const [name, run] of [
  ['hash', benchHash],
  ['chunker', benchChunker],
  ['publish', benchPublish],
  ['tracker', benchTracker],
  ['dashboard', benchDashboard],
  ['head', benchHead],
  ['mesh', benchMesh],
  ['chunk-serving', benchChunkServing],
  ['fetch', benchFetch],
  ['encryption', benchEncryption],
  ['versions', benchVersions],
  ['boot', benchBoot],
  ['swarm', benchSwarm],
] as const) {
  process.stderr.write(`== ${name}\n`);
  sections.push(await run({ quick }));
}

let disk = '';
try {
  disk = execSync('df -h --output=source,fstype,size / | tail -1', { encoding: 'utf8' }).trim();
} catch {}
const header = [
  '# Benchmarks: the latest full run',
  '',
  `Written by \`npm run bench${quick ? ' -- --quick' : ''}\` (bench/run.ts) on ${new Date().toISOString().slice(0, 10)}:`,
  `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version},`,
  `root filesystem ${disk}. The machines are shared and noisy: figures are medians of several runs; compare ratios`,
  'measured side by side in one run rather than absolute numbers across runs. The curated record, with every',
  "session's measurements and the goals' status, is docs/BENCHMARKS.md.",
].join('\n');
writeFileSync(out, `${header}\n\n${sections.join('\n\n')}\n`);
process.stderr.write(`wrote ${out}\n`);
