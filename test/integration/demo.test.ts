import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../helpers/cli.ts';

const t = tempDir('rsw-demo-');
afterAll(() => t.cleanup());

describe('rackswarm demo (what npm start runs)', () => {
  it('publishes a real SquashFS sample to a head and a local swarm fetches it', async () => {
    const data = join(t.dir, 'demo');
    const r = await runCli(['demo', '--data', data, '--nodes', '2', '--once', '--http', '127.0.0.1:0'], {
      timeoutMs: 240_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sample image: SquashFS of this project's node_modules/m);
    expect(r.stdout).toMatch(/^head node: http:\/\/127\.0\.0\.1:\d+/m);
    expect(r.stdout).toMatch(/^2\/2 local peers fetched sample v1 through the swarm/m);
    expect(existsSync(join(data, 'work/node1.img'))).toBe(true);
    // Run again: a new version whose chunks are all there already.
    const again = await runCli(['demo', '--data', data, '--nodes', '0', '--once', '--http', '127.0.0.1:0'], {
      timeoutMs: 120_000,
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/published sample version 2: .* — unchanged chunks were reused/);
  }, 300_000);
});
