import { describe, expect, it } from 'vitest';
import { planGc } from '../../tracker/gc.ts';
import type { ImageRecord } from '../../tracker/registry.ts';

const rec = (name: string, version: number): ImageRecord => ({
  name,
  version,
  id: `${name}-${version}`,
  format: 'squashfs',
  size: 1,
  chunks: 1,
  publisher: 'k',
  publishedAt: '',
});
const names = (rs: ImageRecord[]) => rs.map((r) => `${r.name}@${r.version}`).sort();

describe('planGc', () => {
  const versions = [1, 2, 3, 4, 5].map((v) => rec('compute', v)).concat([rec('login', 1)]);

  it('keeps the newest K versions of each image', () => {
    expect(names(planGc({ versions, keep: 2, pinned: new Set() }))).toEqual([
      'compute@1',
      'compute@2',
      'compute@3',
    ]);
    expect(planGc({ versions, keep: 5, pinned: new Set() })).toEqual([]);
  });

  it('never drops a pinned version (a channel target, an active swarm, a running preheat)', () => {
    const pinned = new Set(['compute-1', 'compute-3']);
    expect(names(planGc({ versions, keep: 1, pinned }))).toEqual(['compute@2', 'compute@4']);
  });
});
