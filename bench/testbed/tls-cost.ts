// `node bench/testbed/tls-cost.ts [--rounds N]`: the CPU of a libp2p TLS certificate — made once per node, verified
// once per neighbour (cli/libp2p-tls.ts) — by @libp2p/tls (@peculiar/x509, asn1js) and by rackswarm
// (cli/libp2p-tls-verify.ts: Node's crypto and X.509), alternated round by round in one process; process CPU
// (user + system) per operation, median of the rounds: CPU, not wall time, so other load on the machine barely moves it.
// Then what a node of a 16-node swarm pays cold, in a fresh process per run: one certificate made and 15 verified.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateCertificate, verifyPeerCertificate } from '@libp2p/tls/utils';
import { makeLibp2pCertificate, verifyLibp2pCertificate } from '../../cli/libp2p-tls-verify.ts';
import { benchArgs, numberArg } from '../lib/cli-args.ts';
import { fmt, median } from '../lib/stats.ts';

const USAGE = 'usage: node bench/testbed/tls-cost.ts [--rounds N]';
const { values } = benchArgs(
  { options: { rounds: { type: 'string', default: '9' }, cold: { type: 'string' } } },
  USAGE,
);
if (values.cold) {
  // (a child: one make and 15 verifications of fresh certificates, cold; prints its CPU ms)
  const key = await generateKeyPair('Ed25519');
  const raws = await Promise.all(
    Array.from({ length: 15 }, async () =>
      Buffer.from((await makeLibp2pCertificate(await generateKeyPair('Ed25519'))).cert),
    ),
  );
  const ders = raws.map((pem) => new X509Certificate(pem).raw);
  const stock = values.cold === 'stock';
  const c0 = process.cpuUsage();
  await (stock ? generateCertificate(key) : makeLibp2pCertificate(key));
  const c1 = process.cpuUsage(c0);
  for (const d of ders) await (stock ? verifyPeerCertificate(new Uint8Array(d)) : verifyLibp2pCertificate(d));
  const c2 = process.cpuUsage(c0);
  console.log(
    JSON.stringify({
      make: (c1.user + c1.system) / 1000,
      verify15: (c2.user + c2.system - c1.user - c1.system) / 1000,
    }),
  );
  process.exit(0);
}
const rounds = numberArg('rounds', values.rounds, USAGE, {
  min: 1,
  max: 10_000,
  integer: true,
}) as number;
const PER_ROUND = 20;

async function cpuMs(f: () => Promise<unknown>): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < PER_ROUND; i++) await f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / PER_ROUND;
}

const key = await generateKeyPair('Ed25519');
// Fresh certificates for the verifications (a node's verified-certificate cache would hit on repeats).
const raws = await Promise.all(
  Array.from(
    { length: PER_ROUND * rounds * 2 },
    async () => new X509Certificate((await generateCertificate(await generateKeyPair('Ed25519'))).cert).raw,
  ),
);
let next = 0;
const results: Record<string, number[]> = { makeStock: [], makeOurs: [], verifyStock: [], verifyOurs: [] };
// One cold call of each first: a process makes one certificate and verifies its first peers cold.
const cold = {
  makeStock: await cpuMs(() => generateCertificate(key)),
  makeOurs: await cpuMs(() => makeLibp2pCertificate(key)),
};
for (let r = 0; r < rounds; r++) {
  results.makeStock.push(await cpuMs(() => generateCertificate(key)));
  results.makeOurs.push(await cpuMs(() => makeLibp2pCertificate(key)));
  results.verifyStock.push(await cpuMs(() => verifyPeerCertificate(new Uint8Array(raws[next++]))));
  results.verifyOurs.push(await cpuMs(() => verifyLibp2pCertificate(raws[next++])));
}
console.log(
  `CPU ms per operation, median of ${rounds} rounds of ${PER_ROUND} (first round of making: ${fmt(cold.makeStock)} / ${fmt(cold.makeOurs)} ms):`,
);
console.log(
  `  make a certificate: @libp2p/tls ${fmt(median(results.makeStock))}, rackswarm ${fmt(median(results.makeOurs))}`,
);
console.log(
  `  verify a peer's:    @libp2p/tls ${fmt(median(results.verifyStock))}, rackswarm ${fmt(median(results.verifyOurs))}`,
);

const coldRuns: Record<string, Array<{ make: number; verify15: number }>> = { stock: [], ours: [] };
for (let r = 0; r < rounds; r++) {
  for (const which of ['stock', 'ours']) {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--cold', which]).toString();
    coldRuns[which].push(JSON.parse(out));
  }
}
for (const which of ['stock', 'ours']) {
  const xs = coldRuns[which];
  console.log(
    `  cold, a fresh process (median of ${rounds}): ${which === 'stock' ? '@libp2p/tls' : 'rackswarm  '} makes one in ` +
      `${fmt(median(xs.map((x) => x.make)))} ms, verifies 15 in ${fmt(median(xs.map((x) => x.verify15)))} ms`,
  );
}
