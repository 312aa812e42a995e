import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashHex } from '../../core/hash.ts';
import type { ChunkRef } from '../../core/manifest.ts';
import { ResumeState } from '../../peer/resume-state.ts';
import { projectRoot, tempDir } from '../helpers/cli.ts';

/*
 * A real Node process fetches a ~64 MiB image "from the swarm" (generated locally), chunk by chunk in random order,
 * 4 writes in flight, following the resume protocol: write → (every 8 chunks or 50 ms) writer.sync() →
 * resume.markVerified(batch). We SIGKILL it mid-way several times. After every kill the record must claim only chunks
 * that are intact in the output, and must still hold every batch the child saw recorded; each run must write only
 * chunks missing from the record it started with; the finished output must be bit-identical.
 */
const ID = 'c'.repeat(64);
const KILLS = 4;

const script = `
  import { createCipheriv } from 'node:crypto';
  import { readFileSync, writeFileSync } from 'node:fs';
  import { StreamHasher, hashHex } from ${JSON.stringify(join(projectRoot, 'core/hash.ts'))};
  import { ImageWriter } from ${JSON.stringify(join(projectRoot, 'peer/image-writer.ts'))};
  import { ResumeState } from ${JSON.stringify(join(projectRoot, 'peer/resume-state.ts'))};

  // 256 chunks of 128-384 KiB (~64 MiB); every fifth is all zeros (a raw disk image has runs of them).
  const COUNT = 256;
  let x = 0x9e3779b9;
  const next = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
  const lengths = Array.from({ length: COUNT }, () => 128 * 1024 + (next() % (256 * 1024)));
  const chunkData = (i) => {
    if (i % 5 === 2) return Buffer.alloc(lengths[i]);
    const iv = Buffer.alloc(16); iv.writeUInt32BE(i, 12);
    return createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), iv).update(Buffer.alloc(lengths[i]));
  };
  const emit = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
  const [mode, ...args] = process.argv.slice(1);

  if (mode === 'manifest') {
    const whole = new StreamHasher();
    let offset = 0;
    const chunks = lengths.map((length, i) => {
      const data = chunkData(i);
      whole.update(data);
      const c = { offset, length, hash: hashHex(data) };
      offset += length;
      return c;
    });
    writeFileSync(args[0], JSON.stringify({ size: offset, chunks, hash: whole.digest().toString('hex') }));
  } else {
    const [out, record, manifestFile, seed] = args;
    const m = JSON.parse(readFileSync(manifestFile, 'utf8'));
    const writer = await ImageWriter.open(out, m.size);
    const resume = await ResumeState.open(record, ${JSON.stringify(ID)}, m.chunks.length);
    const dropped = resume.count > 0 ? await resume.verifyRecorded(writer, m) : [];
    emit({ start: resume.indices(), dropped });
    const todo = m.chunks.map((_, i) => i).filter((i) => !resume.has(i));
    let r = Number(seed);
    for (let i = todo.length - 1; i > 0; i--) {
      r = (r * 1103515245 + 12345) >>> 0;
      const j = r % (i + 1);
      [todo[i], todo[j]] = [todo[j], todo[i]];
    }
    let unsynced = [];
    let lastSync = Date.now();
    const flush = async () => {
      const batch = unsynced;
      unsynced = [];
      lastSync = Date.now();
      await writer.sync();
      await resume.markVerified(batch);
      emit({ marked: batch });
    };
    const worker = async () => {
      for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
        await writer.write(m.chunks[i].offset, chunkData(i));
        emit({ wrote: i });
        unsynced.push(i);
        if (unsynced.length >= 8 || Date.now() - lastSync >= 50) await flush();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await flush();
    await writer.close();
    emit({ done: writer.stats() });
  }
`;

interface Run {
  start: number[];
  dropped: number[];
  wrote: number[];
  marked: number[];
  done?: { bytesWritten: number; bytesSkippedZero: number };
  signal: NodeJS.Signals | null;
}

/** Runs the child; with `killAfter`, SIGKILLs it once it has reported that many written chunks. */
function runChild(args: string[], killAfter?: number): Promise<Run> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const run: Run = { start: [], dropped: [], wrote: [], marked: [], signal: null };
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.start) Object.assign(run, msg);
    if (msg.wrote !== undefined) {
      run.wrote.push(msg.wrote);
      if (run.wrote.length === killAfter) child.kill('SIGKILL');
    }
    if (msg.marked) run.marked.push(...msg.marked);
    if (msg.done) run.done = msg.done;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      run.signal = signal;
      if (killAfter === undefined && code !== 0) reject(new Error(`child exited with ${code ?? signal}`));
      else resolve(run);
    });
  });
}

async function hashRegion(path: string, c: ChunkRef): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(c.length);
    await fh.read(buf, 0, c.length, c.offset);
    return hashHex(buf);
  } finally {
    await fh.close();
  }
}

describe('resume after SIGKILL', () => {
  const t = tempDir('rsw-resume-');
  const out = join(t.dir, 'image.raw');
  const record = join(t.dir, 'cache', `${ID}.resume`);
  const manifestFile = join(t.dir, 'manifest.json');
  let m: { size: number; chunks: ChunkRef[]; hash: string };

  beforeAll(async () => {
    await runChild(['manifest', manifestFile]);
    m = JSON.parse(readFileSync(manifestFile, 'utf8'));
    expect(m.size).toBeGreaterThan(60 * 1024 * 1024);
  });
  afterAll(() => t.cleanup());

  it('a fetch killed mid-way again and again resumes with only intact chunks and finishes bit-identical', async () => {
    let recorded: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const run = await runChild(['fetch', out, record, manifestFile, String(k + 1)], 10 + 13 * k);
      expect(run.signal).toBe('SIGKILL');
      expect(run.start).toEqual(recorded); // the child resumed from exactly what was recorded
      expect(run.dropped).toEqual([]); // and the protocol never recorded a chunk that was not there
      expect(run.wrote.filter((i) => run.start.includes(i))).toEqual([]); // wrote only missing chunks

      const state = await ResumeState.open(record, ID, m.chunks.length);
      try {
        expect(state.origin).toBe('resumed');
        for (const i of state.indices())
          expect(await hashRegion(out, m.chunks[i]), `chunk ${i}`).toBe(m.chunks[i].hash);
        for (const i of run.marked)
          expect(state.has(i), `chunk ${i} was recorded before the kill`).toBe(true);
        expect(state.count).toBeGreaterThanOrEqual(recorded.length);
        recorded = state.indices();
      } finally {
        await state.close();
      }
    }
    expect(recorded.length).toBeGreaterThan(0);
    expect(recorded.length).toBeLessThan(m.chunks.length);

    const last = await runChild(['fetch', out, record, manifestFile, '99']);
    expect(last.start).toEqual(recorded);
    const missing = m.chunks.map((_, i) => i).filter((i) => !recorded.includes(i));
    expect([...last.wrote].sort((a, b) => a - b)).toEqual(missing);
    const missingBytes = missing.reduce((n, i) => n + m.chunks[i].length, 0);
    expect(last.done && last.done.bytesWritten + last.done.bytesSkippedZero).toBe(missingBytes);
    expect(last.done?.bytesSkippedZero).toBeGreaterThan(0); // zero chunks over holes were not written

    const whole = await hashRegion(out, { offset: 0, length: m.size, hash: '' });
    expect(whole).toBe(m.hash);
  });
});
