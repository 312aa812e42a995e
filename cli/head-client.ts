import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { ChannelPointer } from '../core/channel.ts';
import { ERRORS, type ErrorCode, RswError } from '../core/errors.ts';
import { decodeRevocationList } from '../core/revocation.ts';
import type { DashboardSnapshot } from '../tracker/dashboard-snapshot.ts';
import type { GcReport } from '../tracker/gc.ts';
import type { PreheatJob } from '../tracker/preheat.ts';
import type { ImageRecord } from '../tracker/registry.ts';

/** One dashboard event at most (a snapshot is bounded to ~150 KB by tracker/dashboard-snapshot.ts). */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;

export interface ImageVersions {
  name: string;
  latest: number;
  versions: ImageRecord[];
}

/** A small client for the head's HTTP API; the head's `{code, message}` errors come back as RswErrors. */
export class HeadClient {
  readonly base: string;
  readonly #token: string | undefined;

  constructor(url: string, token?: string) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new RswError(
        'RSW_ERR_USAGE',
        `--head ${JSON.stringify(url)} is not a URL (e.g. http://head:7480)`,
      );
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new RswError('RSW_ERR_USAGE', `--head must be an http:// or https:// URL, not ${u.protocol}`);
    }
    this.base = u.toString().replace(/\/$/, '');
    this.#token = token;
  }

  /** Reads the admin token the head wrote to DATA/admin-token (copied to wherever the publisher runs). */
  static async readToken(file: string): Promise<string> {
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch (e) {
      throw new RswError(
        'RSW_ERR_FILE_NOT_FOUND',
        `cannot read token file ${file}: ${(e as NodeJS.ErrnoException).code}`,
      );
    }
  }

  async images(): Promise<ImageVersions[]> {
    return ((await this.#json('GET', '/api/images')) as { images: ImageVersions[] }).images;
  }

  /** Versions of one image, or undefined if the head has none. */
  async image(name: string): Promise<ImageVersions | undefined> {
    try {
      return (await this.#json('GET', `/api/images/${encodeURIComponent(name)}`)) as ImageVersions;
    } catch (e) {
      if ((e as RswError).code === 'RSW_ERR_IMAGE_NOT_FOUND') return undefined;
      throw e;
    }
  }

  /** The head's libp2p peer id and addresses (tracker and seeder). */
  async bootstrap(): Promise<{ peerId: string; addrs: string[] }> {
    const b = (await this.#getJson('/api/bootstrap')) as { peerId: string; addrs: string[] };
    if (!b.addrs?.length)
      throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `the head at ${this.base} lists no libp2p address`);
    return b;
  }

  async hasChunk(hash: string): Promise<boolean> {
    const r = await this.#fetch('HEAD', `/api/chunks/${hash}`);
    if (r.status === 200) return true;
    if (r.status === 404) return false;
    throw await this.#error(r);
  }

  /** Uploads a chunk; resolves true if the head stored it, false if it had it. */
  async putChunk(hash: string, data: Buffer): Promise<boolean> {
    const r = await this.#fetch('PUT', `/api/chunks/${hash}`, data);
    if (!r.ok) throw await this.#error(r);
    return ((await r.json()) as { stored: boolean }).stored;
  }

  /** Registers a signed manifest whose chunks are on the head. */
  async register(envelope: Buffer): Promise<ImageRecord & { existed: boolean }> {
    const r = await this.#fetch('POST', '/api/images', envelope);
    if (!r.ok) throw await this.#error(r);
    return (await r.json()) as ImageRecord & { existed: boolean };
  }

  /** The signed manifest of NAME@VERSION (envelope bytes). */
  async manifestEnvelope(name: string, version: number): Promise<Buffer> {
    const r = await this.#fetch('GET', `/api/images/${encodeURIComponent(name)}/${version}/manifest`);
    if (!r.ok) throw await this.#error(r);
    return Buffer.from(await r.arrayBuffer());
  }

  /** The signed pointer of NAME:CHANNEL, or undefined if the head has none. */
  async channelEnvelope(name: string, channel: string): Promise<Buffer | undefined> {
    const r = await this.#fetch(
      'GET',
      `/api/channels/${encodeURIComponent(name)}/${encodeURIComponent(channel)}`,
    );
    if (r.status === 404) {
      const e = await this.#error(r);
      if (e.code === 'RSW_ERR_CHANNEL_NOT_FOUND') return undefined;
      throw e;
    }
    if (!r.ok) throw await this.#error(r);
    return Buffer.from(await r.arrayBuffer());
  }

  /** Every key revocation statement the head holds (envelopes; the caller verifies them). */
  async revocations(): Promise<Buffer[]> {
    return decodeRevocationList((await this.#getOk('/api/keys/revocations')).toString());
  }

  /** Gives the head an encrypted image's key (admin token); resolves with its id. */
  async putImageKey(key: Buffer): Promise<string> {
    const r = await this.#fetch('PUT', '/api/image-keys', key);
    if (!r.ok) throw await this.#error(r);
    return ((await r.json()) as { keyId: string }).keyId;
  }

  /** Gives the head a signed revocation statement (admin token); resolves with the keys it revokes. */
  async revoke(envelope: Buffer): Promise<string[]> {
    const r = await this.#fetch('POST', '/api/keys/revocations', envelope);
    if (!r.ok) throw await this.#error(r);
    return ((await r.json()) as { revoked: string[] }).revoked;
  }

  async channels(): Promise<(ChannelPointer & { expired: boolean })[]> {
    return (
      (await this.#json('GET', '/api/channels')) as { channels: (ChannelPointer & { expired: boolean })[] }
    ).channels;
  }

  /** Stores a signed channel pointer on the head (admin token). */
  async setChannel(envelope: Buffer): Promise<ChannelPointer> {
    const r = await this.#fetch('POST', '/api/channels', envelope);
    if (!r.ok) throw await this.#error(r);
    return (await r.json()) as ChannelPointer;
  }

  /** Starts a preheat job (admin token). */
  async preheat(name: string, version: number | 'latest', nodes?: string): Promise<PreheatJob> {
    const body = Buffer.from(JSON.stringify({ name, version, ...(nodes ? { nodes } : {}) }));
    const r = await this.#fetch('POST', '/api/preheat', body, 'application/json');
    if (!r.ok) throw await this.#error(r);
    return (await r.json()) as PreheatJob;
  }

  async preheatJob(id: string): Promise<PreheatJob> {
    return (await this.#json('GET', `/api/preheat/${encodeURIComponent(id)}`)) as PreheatJob;
  }

  /** Runs garbage collection on the head (admin token). */
  async gc(keep: number, graceSeconds: number): Promise<GcReport> {
    const r = await this.#fetch(
      'POST',
      '/api/gc',
      Buffer.from(JSON.stringify({ keep, graceSeconds })),
      'application/json',
    );
    if (!r.ok) throw await this.#error(r);
    return (await r.json()) as GcReport;
  }

  /** Enrolls peer ids in the closed mesh (admin token); at most 10,000 per call. */
  async enroll(peerIds: string[], note?: string): Promise<{ added: string[]; count: number }> {
    return this.#postJson('/api/enrollments', { peerIds, ...(note ? { note } : {}) }) as Promise<{
      added: string[];
      count: number;
    }>;
  }

  /** Removes enrollments (admin token); the head hangs up on those peers. */
  async unenroll(peerIds: string[]): Promise<{ removed: string[]; count: number }> {
    return this.#postJson('/api/enrollments/remove', { peerIds }) as Promise<{
      removed: string[];
      count: number;
    }>;
  }

  async enrollments(): Promise<{
    closed: boolean;
    count: number;
    enrollments: { peerId: string; addedAt: string; note?: string }[];
  }> {
    return this.#json('GET', '/api/enrollments') as never;
  }

  async enrollment(
    peerId: string,
  ): Promise<{ peerId: string; enrolled: boolean; streamsHandled: number; refused: number }> {
    return this.#json('GET', `/api/enrollments/${encodeURIComponent(peerId)}`) as never;
  }

  async #postJson(path: string, body: object): Promise<unknown> {
    const r = await this.#fetch('POST', path, Buffer.from(JSON.stringify(body)), 'application/json');
    if (!r.ok) throw await this.#error(r);
    return r.json();
  }

  /**
   * The head's live dashboard stream (GET /api/events, Server-Sent Events): yields each snapshot as it arrives, one
   * per interval, until `signal` aborts. A head silent for `idleMs` (it sends every second) is an error.
   */
  async *events(signal: AbortSignal, idleMs = 15_000): AsyncGenerator<DashboardSnapshot> {
    const idle = new AbortController();
    let timer = setTimeout(() => idle.abort(), idleMs);
    const both = AbortSignal.any([signal, idle.signal]);
    let r: Response;
    try {
      r = await fetch(`${this.base}/api/events`, { headers: { accept: 'text/event-stream' }, signal: both });
    } catch (e) {
      clearTimeout(timer);
      if (signal.aborted) return;
      throw this.#unreachable(e, idle.signal.aborted);
    }
    if (!r.ok) {
      clearTimeout(timer);
      throw await this.#error(r);
    }
    if (!r.headers.get('content-type')?.startsWith('text/event-stream')) {
      clearTimeout(timer);
      await r.body?.cancel();
      throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `${this.base} does not serve a rackswarm event stream`);
    }
    const reader = (r.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    try {
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (signal.aborted) return;
          throw this.#unreachable(e, idle.signal.aborted);
        }
        if (chunk.done)
          throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `the head at ${this.base} closed the stream`);
        buf += chunk.value;
        if (buf.length > MAX_EVENT_CHARS)
          throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `the head at ${this.base} sent an oversized event`);
        let end = buf.indexOf('\n\n');
        while (end >= 0) {
          const data = buf
            .slice(0, end)
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
          buf = buf.slice(end + 2);
          end = buf.indexOf('\n\n');
          if (!data) continue;
          let snapshot: DashboardSnapshot;
          try {
            snapshot = JSON.parse(data) as DashboardSnapshot;
          } catch {
            throw new RswError(
              'RSW_ERR_HEAD_UNREACHABLE',
              `the head at ${this.base} sent an event that is not JSON`,
            );
          }
          // Only time spent waiting on the head counts as silence, not the time the caller holds the event.
          clearTimeout(timer);
          yield snapshot;
          timer = setTimeout(() => idle.abort(), idleMs);
        }
      }
    } finally {
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
    }
  }

  #unreachable(e: unknown, idle: boolean): RswError {
    if (idle)
      return new RswError('RSW_ERR_HEAD_UNREACHABLE', `the head at ${this.base} sent nothing for too long`);
    const c = (e as { cause?: { code?: string; message?: string } }).cause;
    const cause = c?.code ?? c?.message ?? (e as Error).message;
    return new RswError('RSW_ERR_HEAD_UNREACHABLE', `cannot reach the head at ${this.base}: ${cause}`);
  }

  async #json(method: string, path: string): Promise<unknown> {
    const r = await this.#fetch(method, path);
    if (!r.ok) throw await this.#error(r);
    return r.json();
  }

  async #fetch(
    method: string,
    path: string,
    body?: Buffer,
    contentType = 'application/octet-stream',
  ): Promise<Response> {
    const headers = this.#headers();
    if (body) headers['content-type'] = contentType;
    try {
      return await fetch(`${this.base}${path}`, {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(120_000),
      });
    } catch (e) {
      const c = (e as { cause?: { code?: string; message?: string } }).cause;
      const cause = c?.code ?? c?.message ?? (e as Error).message;
      throw new RswError('RSW_ERR_HEAD_UNREACHABLE', `cannot reach the head at ${this.base}: ${cause}`);
    }
  }

  async #error(r: Response): Promise<RswError> {
    return this.#errorOf(r.status, await r.text().catch(() => ''));
  }

  #errorOf(status: number, text: string): RswError {
    try {
      const { code, message } = JSON.parse(text) as { code?: string; message?: string };
      if (code && Object.hasOwn(ERRORS, code))
        return new RswError(code as ErrorCode, message ?? `HTTP ${status}`);
    } catch {}
    return new RswError('RSW_ERR_HEAD_UNREACHABLE', `the head at ${this.base} answered HTTP ${status}`);
  }

  async #getJson(path: string): Promise<unknown> {
    const body = await this.#getOk(path);
    try {
      return JSON.parse(body.toString());
    } catch {
      throw new RswError(
        'RSW_ERR_HEAD_UNREACHABLE',
        `the head at ${this.base} answered GET ${path} with no JSON`,
      );
    }
  }

  /** #get()'s body, or the head's error when it did not answer 200. */
  async #getOk(path: string): Promise<Buffer> {
    const r = await this.#get(path);
    if (r.status !== 200) throw this.#errorOf(r.status, r.body.toString());
    return r.body;
  }

  /** Headers of every request: the admin token, when the client has one. */
  #headers(): Record<string, string> {
    return this.#token ? { authorization: `Bearer ${this.#token}` } : {};
  }

  /**
   * A GET over node:http(s) instead of fetch(): what a fetch asks the head before its first chunk (bootstrap,
   * revocations). The first fetch() in a process loads undici, ~60 ms of CPU there against ~15 for node:http
   * (docs/BENCHMARKS.md, "(a) One peer"), and nothing else in a fetch needs it.
   */
  async #get(path: string): Promise<{ status: number; body: Buffer }> {
    const url = `${this.base}${path}`;
    // getBuiltinModule, not import(): an ES import of node:http runs every lazy getter of its exports, undici's too.
    const { get } = url.startsWith('https:')
      ? process.getBuiltinModule('node:https')
      : process.getBuiltinModule('node:http');
    const headers = this.#headers();
    try {
      return await new Promise((resolve, reject) => {
        const req = get(url, { headers, signal: AbortSignal.timeout(120_000) }, (res: IncomingMessage) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
          res.on('error', reject);
        });
        req.on('error', reject);
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new RswError(
        'RSW_ERR_HEAD_UNREACHABLE',
        `cannot reach the head at ${this.base}: ${err.code ?? err.message}`,
      );
    }
  }
}

/** Sends a publish's new chunks to a running head (the publisher key never leaves this machine). */
export class HeadUploader {
  readonly #client: HeadClient;
  constructor(client: HeadClient) {
    this.#client = client;
  }
  async put(hash: string, data: Buffer): Promise<boolean> {
    if (await this.#client.hasChunk(hash)) return false;
    // publish hands out views of shared slabs (core/slab-pool.ts), which fetch refuses as a body: send a copy.
    return this.#client.putChunk(hash, data.buffer instanceof SharedArrayBuffer ? Buffer.from(data) : data);
  }
  async commit(): Promise<void> {}
  // Chunks already uploaded stay on the head unreferenced; they cost disk only until garbage collection.
  async abort(): Promise<void> {}
  async undo(): Promise<void> {}
}
