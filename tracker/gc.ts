import { stat } from 'node:fs/promises';
import { decodeManifest, manifestId } from '../core/manifest.ts';
import { envelopeCanonical } from '../core/signed-manifest.ts';
import type { ChunkStore } from '../core/store.ts';
import type { ChannelStore } from './channel-store.ts';
import type { ImageRecord, Registry } from './registry.ts';

/**
 * Garbage collection of the head's store: which versions to keep (pure, below), then removing the others and every
 * chunk no kept version references.
 *
 * Kept: the newest `keep` versions of each image, and any version a channel points to or whose image id is pinned
 * (an active swarm, a running preheat). Crash safety comes from the order: version records are removed first (each
 * in one atomic LevelDB batch), chunks after, one unlink at a time — a crash at any point leaves only unreferenced
 * chunks behind (collected next time), never a kept version with a missing chunk. A running head does all of it
 * inside the registry's serialised step (Registry.exclusive), where registrations also check their chunks, so a
 * publish cannot register a manifest over a chunk being removed; chunks younger than `graceMs` are left alone, as they
 * may belong to an upload whose manifest is not registered yet.
 */
export interface GcPlanInput {
  versions: readonly ImageRecord[];
  keep: number;
  /** Image ids that must stay (channel targets, active swarms, running preheats). */
  pinned: ReadonlySet<string>;
}

/** Pure: the versions to remove. */
export function planGc(input: GcPlanInput): ImageRecord[] {
  const byName = new Map<string, ImageRecord[]>();
  for (const r of input.versions) {
    const list = byName.get(r.name) ?? [];
    list.push(r);
    byName.set(r.name, list);
  }
  const drop: ImageRecord[] = [];
  for (const list of byName.values()) {
    list.sort((a, b) => b.version - a.version);
    list.forEach((r, i) => {
      if (i >= input.keep && !input.pinned.has(r.id)) drop.push(r);
    });
  }
  return drop;
}

export interface GcReport {
  versionsRemoved: { name: string; version: number }[];
  chunksRemoved: number;
  bytesFreed: number;
  chunksKept: number;
  /** Unreferenced chunks left because they are younger than the grace period. */
  chunksTooYoung: number;
  seconds: number;
}

export interface GcComponents {
  registry: Registry;
  store: ChunkStore;
  channels: ChannelStore;
  /** Image ids in use right now (a running head: swarms with peers, running preheats). */
  inUse?: () => Iterable<string>;
  now?: () => number;
}

export interface GcInit {
  keep: number;
  graceMs: number;
  /** Called every `progressEvery` removed chunks. */
  onProgress?: (p: { chunksRemoved: number; bytesFreed: number }) => void;
  progressEvery?: number;
}

export async function collectGarbage(c: GcComponents, init: GcInit): Promise<GcReport> {
  const t0 = performance.now();
  const now = c.now ?? Date.now;
  return c.registry.exclusive(async () => {
    const versions = await c.registry.list();
    const pinned = new Set<string>(c.inUse?.() ?? []);
    for (const p of await c.channels.list()) pinned.add(p.manifestId);
    const drop = planGc({ versions, keep: init.keep, pinned });
    for (const r of drop) await c.registry.removeHeld(r.name, r.version);

    const live = new Set<string>();
    for (const r of await c.registry.list()) {
      const envelope = await c.registry.envelope(r.id);
      if (!envelope) throw new Error(`registry has ${r.name}@${r.version} but not its manifest`);
      const canonical = envelopeCanonical(envelope);
      if (manifestId(canonical) !== r.id)
        throw new Error(`manifest of ${r.name}@${r.version} does not match its id`);
      for (const ch of decodeManifest(canonical, Number.MAX_SAFE_INTEGER).chunks) live.add(ch.hash);
    }
    const report: GcReport = {
      versionsRemoved: drop.map((r) => ({ name: r.name, version: r.version })),
      chunksRemoved: 0,
      bytesFreed: 0,
      chunksKept: 0,
      chunksTooYoung: 0,
      seconds: 0,
    };
    const every = init.progressEvery ?? 100;
    for await (const hash of c.store.list()) {
      if (live.has(hash)) {
        report.chunksKept++;
        continue;
      }
      const st = await stat(c.store.path(hash)).catch(() => undefined);
      if (!st) continue;
      if (now() - st.mtimeMs < init.graceMs) {
        report.chunksTooYoung++;
        continue;
      }
      if (await c.store.delete(hash)) {
        report.chunksRemoved++;
        report.bytesFreed += st.size;
        if (report.chunksRemoved % every === 0) init.onProgress?.(report);
      }
    }
    report.seconds = Number(((performance.now() - t0) / 1000).toFixed(3));
    return report;
  });
}
