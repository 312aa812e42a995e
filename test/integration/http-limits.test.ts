// Issue 9, Build item 3 on the head's HTTP API, against a real `rackswarm head` over real sockets: headers and whole
// requests must arrive in time (slowloris), bodies are capped, and one client IP flooding the API is answered
// 429 RSW_ERR_RATE_LIMITED while another IP's dashboard reads (the event stream, /api/swarm) and the admin's own
// requests go on untouched.

import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.ts';
import { type RunningHead, startHead } from '../helpers/head.ts';

let t: ReturnType<typeof tempDir>;
let head: RunningHead;
let token: string;
let port: number;

beforeAll(async () => {
  t = tempDir('rsw-http-limits-');
  writeFileSync(
    join(t.dir, 'head.json'),
    JSON.stringify({
      head: {
        httpHeadersTimeoutMs: 1000,
        httpRequestTimeoutMs: 2000,
        httpRateLimit: { requestsPerSecond: 5, burst: 20 },
      },
      tracker: { dashboardIntervalMs: 200 },
    }),
  );
  head = await startHead(join(t.dir, 'head'), [], ['--config', join(t.dir, 'head.json')]);
  token = readFileSync(join(t.dir, 'head/admin-token'), 'utf8').trim();
  port = Number(new URL(head.url).port);
});
afterAll(async () => {
  await head?.stop('SIGKILL');
  t?.cleanup();
});

/** Writes `bytes` on a raw TCP connection and resolves with all the server sent once it closed (or rejects after ms). */
function raw(bytes: string, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the head kept a slow connection open for ${ms} ms; got: ${got}`));
    }, ms);
    s.on('data', (d) => {
      got += d;
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on('error', () => {});
    s.write(bytes);
  });
}

/** GET from a chosen local address (127.0.0.0/8 is all loopback): another client IP as the head sees it. */
function get(
  path: string,
  from = '127.0.0.1',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, localAddress: from, headers, agent: false },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, retryAfter: res.headers['retry-after'] as string }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('HTTP API limits on a real head', () => {
  it('closes a connection whose headers do not arrive within httpHeadersTimeoutMs', async () => {
    const answer = await raw('GET /api/images HTTP/1.1\r\nHost: x\r\n', 15_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408|^$/);
  });

  it('closes an upload whose body does not arrive within httpRequestTimeoutMs', async () => {
    const answer = await raw(
      `PUT /api/chunks/${'ab'.repeat(32)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        'Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nonly a few bytes',
      20_000,
    );
    expect(answer).not.toMatch(/^HTTP\/1\.1 20/);
    // The head is fine afterwards.
    expect((await get('/healthz', '127.0.0.9')).status).toBe(200);
  });

  it('caps bodies: a JSON body over 1 MiB, a chunk over the chunk cap, a manifest over the manifest cap → 413', async () => {
    const auth = { authorization: `Bearer ${token}` };
    const big = await fetch(`${head.url}/api/chunks/missing`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ hashes: ['x'.repeat(2 * 1024 * 1024)] }),
    });
    expect(big.status).toBe(413);
    const chunk = await fetch(`${head.url}/api/chunks/${'ab'.repeat(32)}`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(64 * 1024 * 1024 + 1),
    });
    expect(chunk.status).toBe(413);
    expect(await chunk.json()).toMatchObject({ code: 'RSW_ERR_BODY_TOO_LARGE' });
    const manifest = await fetch(`${head.url}/api/images`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(17 * 1024 * 1024),
    });
    expect(manifest.status).toBe(413);
  });

  it('answers one IP’s flood with 429 RSW_ERR_RATE_LIMITED; another IP’s dashboard and the admin are not hurt', async () => {
    // The dashboard of another client, open before and during the flood.
    const events: number[] = [];
    const sse = request(
      { host: '127.0.0.1', port, path: '/api/events', localAddress: '127.0.0.2', agent: false },
      (res) => {
        res.on('data', (d: Buffer) => {
          if (d.includes('data:')) events.push(Date.now());
        });
      },
    );
    sse.on('error', () => {});
    sse.end();
    await expect.poll(() => events.length, { timeout: 5000 }).toBeGreaterThan(0);

    const flood = await Promise.all(Array.from({ length: 200 }, () => get('/api/images', '127.0.0.3')));
    const limited = flood.filter((r) => r.status === 429);
    const ok = flood.filter((r) => r.status === 200);
    expect(ok.length).toBeGreaterThan(0);
    expect(ok.length).toBeLessThanOrEqual(25); // the burst (20), plus what refilled meanwhile
    expect(limited.length).toBeGreaterThan(150);
    expect(JSON.parse(limited[0].body)).toMatchObject({ code: 'RSW_ERR_RATE_LIMITED' });
    expect(Number(limited[0].retryAfter)).toBeGreaterThanOrEqual(1);

    // Meanwhile: the other IP reads /api/swarm, the admin's token passes, the event stream kept flowing.
    const duringFlood = events.length;
    for (let i = 0; i < 10; i++) expect((await get('/api/swarm', '127.0.0.2')).status).toBe(200);
    const admin = await Promise.all(
      Array.from({ length: 50 }, () => get('/api/images', '127.0.0.3', { authorization: `Bearer ${token}` })),
    );
    expect(admin.every((r) => r.status === 200)).toBe(true);
    await expect.poll(() => events.length, { timeout: 5000 }).toBeGreaterThan(duringFlood);
    sse.destroy();

    // The flooding IP gets requests through again once its bucket refills (5/s).
    await expect
      .poll(async () => (await get('/api/images', '127.0.0.3')).status, { timeout: 5000 })
      .toBe(200);
  });
});
