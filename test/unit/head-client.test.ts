import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeadClient } from '../../cli/head-client.ts';
import { encodeRevocationList } from '../../core/revocation.ts';
import { projectRoot } from '../helpers/cli.ts';

const run = promisify(execFile);

// What a fetch asks the head over HTTP before its first chunk (bootstrap, revocations) goes over node:http, not
// fetch(): the first fetch() in a process loads undici, ~60 ms of CPU at every fetch's start (docs/BENCHMARKS.md).
describe('HeadClient: the GETs a fetch makes before its first chunk', () => {
  let server: Server;
  let url: string;
  let mode: 'ok' | 'error' | 'html' = 'ok';
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (mode === 'error') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 'RSW_ERR_IMAGE_NOT_FOUND', message: 'no such thing' }));
      } else if (mode === 'html') {
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html>bad gateway</html>');
      } else if (req.url === '/api/bootstrap') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ peerId: 'P', addrs: ['/ip4/127.0.0.1/tcp/1'] }));
      } else if (req.url === '/api/keys/revocations') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(encodeRevocationList([Buffer.from('one'), Buffer.from('two')]));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers bootstrap and revocations without loading undici into the process', async () => {
    mode = 'ok';
    // A fresh process: vitest's own has loaded undici long ago.
    const script = `
      import { HeadClient } from ${JSON.stringify(join(projectRoot, 'cli/head-client.ts'))};
      const c = new HeadClient(process.argv[1]);
      const boot = await c.bootstrap();
      const revs = (await c.revocations()).map((b) => b.toString());
      const undici = process.moduleLoadList.filter((m) => /undici/.test(m));
      console.log(JSON.stringify({ boot, revs, undici }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, url], {
      cwd: projectRoot,
      timeout: 30_000,
    });
    expect(JSON.parse(stdout)).toEqual({
      boot: { peerId: 'P', addrs: ['/ip4/127.0.0.1/tcp/1'] },
      revs: ['one', 'two'],
      undici: [],
    });
  });

  it("maps the head's errors and an unreachable head to their RSW_ERR codes", async () => {
    const c = new HeadClient(url);
    mode = 'error';
    await expect(c.bootstrap()).rejects.toMatchObject({ code: 'RSW_ERR_IMAGE_NOT_FOUND' });
    await expect(c.revocations()).rejects.toMatchObject({ code: 'RSW_ERR_IMAGE_NOT_FOUND' });
    mode = 'html';
    await expect(c.bootstrap()).rejects.toMatchObject({
      code: 'RSW_ERR_HEAD_UNREACHABLE',
      message: expect.stringContaining('HTTP 502'),
    });
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await expect(new HeadClient(`http://127.0.0.1:${port}`).revocations()).rejects.toMatchObject({
      code: 'RSW_ERR_HEAD_UNREACHABLE',
      message: expect.stringContaining('ECONNREFUSED'),
    });
  });
});
