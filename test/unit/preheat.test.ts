import { describe, expect, it } from 'vitest';
import type { AnnounceBodyExt } from '../../core/tracker-messages.ts';
import { matches, PreheatJobs, parseSelector } from '../../tracker/preheat.ts';

const peers = [
  { peerId: 'a', host: 'node-01', rack: 'r1' },
  { peerId: 'b', host: 'node-02', rack: 'r1' },
  { peerId: 'c', host: 'login', rack: 'r2' },
  { peerId: 'a2', host: 'node-01+preheat', rack: 'r1' }, // a node's preheat identity: never selected
];
const body = (preheat?: AnnounceBodyExt['preheat']) => ({ preheat }) as AnnounceBodyExt;

describe('preheat node selectors', () => {
  it('all, rack=, host= (glob) and peer=', () => {
    const pick = (text?: string) => peers.filter((p) => matches(parseSelector(text), p)).map((p) => p.peerId);
    expect(pick()).toEqual(['a', 'b', 'c', 'a2']);
    expect(pick('rack=r2')).toEqual(['c']);
    expect(pick('host=node-0?')).toEqual(['a', 'b']);
    expect(pick('host=login,node-02')).toEqual(['b', 'c']);
    expect(pick('peer=b')).toEqual(['b']);
    expect(() => parseSelector('racks=r1')).toThrow(/--nodes/);
  });
});

describe('PreheatJobs', () => {
  it('instructs each selected node until it reports done; the barrier completes when all have', () => {
    const jobs = new PreheatJobs({ peers: () => peers });
    const job = jobs.create({ name: 'img', version: 2, imageId: 'f'.repeat(64), nodes: 'rack=r1' });
    expect(job.targets.map((t) => t.peerId)).toEqual(['a', 'b']);
    expect(jobs.onAnnounce('c', body())).toBeUndefined();
    expect(jobs.onAnnounce('a', body())?.instructions).toEqual([
      { kind: 'preheat', job: job.id, name: 'img', version: 2, imageId: 'f'.repeat(64) },
    ]);
    expect(jobs.onAnnounce('a', body([{ job: job.id, state: 'done' }]))).toBeUndefined();
    expect(jobs.get(job.id).complete).toBe(false);
    expect(jobs.inUse()).toEqual(['f'.repeat(64)]);
    jobs.onAnnounce('b', body([{ job: job.id, state: 'failed', error: 'disk full' }]));
    expect(jobs.get(job.id)).toMatchObject({ complete: false, settled: true });
    expect(jobs.inUse()).toEqual([]);
    jobs.onAnnounce('b', body([{ job: job.id, state: 'done' }])); // a retry that worked
    expect(jobs.get(job.id).complete).toBe(true);
  });

  it('a report from a node the job did not select, or a malformed one, changes nothing', () => {
    const jobs = new PreheatJobs({ peers: () => peers });
    const job = jobs.create({ name: 'img', version: 2, imageId: 'e'.repeat(64), nodes: 'peer=a' });
    jobs.onAnnounce('c', body([{ job: job.id, state: 'done' }]));
    jobs.onAnnounce('a', { preheat: [{ job: 'nope', state: 'done' }, 'junk'] } as unknown as AnnounceBodyExt);
    expect(jobs.get(job.id).targets[0].state).toBe('pending');
    expect(() => jobs.create({ name: 'img', version: 2, imageId: 'e'.repeat(64), nodes: 'rack=r9' })).toThrow(
      expect.objectContaining({ code: 'RSW_ERR_NO_NODES' }),
    );
  });
});
