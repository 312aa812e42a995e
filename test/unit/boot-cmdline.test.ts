import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type BootParams,
  formatBootCmdline,
  parseBootCmdline,
  splitCmdline,
} from '../../core/boot-cmdline.ts';
import { isRswError } from '../../core/errors.ts';

const base = 'rackswarm.head=http://10.0.0.1:7480 rackswarm.image=compute@3 rackswarm.mode=stateless';

function code(text: string): string {
  try {
    parseBootCmdline(text);
    return 'ok';
  } catch (e) {
    return isRswError(e) ? e.code : `not an RswError: ${e}`;
  }
}

/** A real Ed25519 peer id (the closed mesh's rackswarm.headid pins one). */
const HEAD_ID = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';

describe('kernel command line', () => {
  it('pins the head with rackswarm.headid (a peer id, normalised)', () => {
    expect(parseBootCmdline(`${base} rackswarm.headid=${HEAD_ID}`).headPeerId).toBe(HEAD_ID);
  });

  it('parses a stateless node with DHCP, ignoring other kernel parameters', () => {
    expect(parseBootCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0 quiet ${base} rackswarm.rack=r12`)).toEqual({
      head: 'http://10.0.0.1:7480',
      image: { name: 'compute', version: 3 },
      mode: 'stateless',
      rack: 'r12',
      ip: { kind: 'dhcp' },
      rescue: false,
      source: 'mesh',
    });
  });

  it('parses a reimage node with a static ip= (netmask to prefix, hostname, device, DNS)', () => {
    const p = parseBootCmdline(
      'rackswarm.head=http://head:7480/ rackswarm.image=rocky9 rackswarm.mode=reimage rackswarm.disk=/dev/vda ' +
        'ip=10.1.2.3::10.1.0.1:255.255.0.0:n17:eth0:off:10.1.0.2 rackswarm.rescue=1 rackswarm.linger=30',
    );
    expect(p).toMatchObject({
      head: 'http://head:7480',
      image: { name: 'rocky9', version: 'latest' },
      disk: '/dev/vda',
      rescue: true,
      linger: 30,
      ip: {
        kind: 'static',
        address: '10.1.2.3',
        prefix: 16,
        gateway: '10.1.0.1',
        hostname: 'n17',
        device: 'eth0',
        dns: ['10.1.0.2'],
      },
    });
  });

  it('accepts the DHCP forms of ip=', () => {
    expect(parseBootCmdline(`${base} ip=dhcp`).ip).toEqual({ kind: 'dhcp' });
    expect(parseBootCmdline(`${base} ip=:::::eth1:dhcp`).ip).toEqual({ kind: 'dhcp', device: 'eth1' });
  });

  it.each([
    ['a missing head', 'rackswarm.image=a rackswarm.mode=stateless'],
    ['a missing mode', 'rackswarm.head=http://h rackswarm.image=a'],
    ['an unknown key (a typo must not boot silently)', `${base} rackswarm.dsik=/dev/vda`],
    ['a repeated key', `${base} rackswarm.rack=a rackswarm.rack=b`],
    ['an empty value', `${base} rackswarm.rack=`],
    ['reimage without a disk', base.replace('stateless', 'reimage')],
    ['a disk on a stateless node', `${base} rackswarm.disk=/dev/vda`],
    ['a disk outside /dev', `${base.replace('stateless', 'reimage')} rackswarm.disk=/etc/passwd`],
    ['a bad mode', base.replace('stateless', 'diskless')],
    ['a non-http head', base.replace('http://10.0.0.1:7480', 'ftp://h')],
    ['an invalid image name', base.replace('compute@3', '../etc')],
    ['an invalid version', base.replace('compute@3', 'compute@0')],
    ['a non-contiguous netmask', `${base} ip=10.0.0.2::10.0.0.1:255.0.255.0::eth0:off`],
    ['a bad address', `${base} ip=10.0.0.256::10.0.0.1:255.255.255.0::eth0:off`],
    ['two ip=', `${base} ip=dhcp ip=dhcp`],
    ['an unbalanced quote', `${base} foo="bar`],
    ['rescue other than 0/1', `${base} rackswarm.rescue=yes`],
    ['a head id that is not a peer id', `${base} rackswarm.headid=12D3KooWnotreally`],
    ['a head id given twice', `${base} rackswarm.headid=${HEAD_ID} rackswarm.headid=${HEAD_ID}`],
  ])('refuses %s with RSW_ERR_BOOT_CMDLINE', (_what, text) => {
    expect(code(text)).toBe('RSW_ERR_BOOT_CMDLINE');
  });

  it('splits words like the kernel: double quotes group spaces', () => {
    expect(splitCmdline(' a  b="c d" "e f"g \n')).toEqual(['a', 'b=c d', 'e fg']);
  });

  const name = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/).filter((s) => !s.includes('..'));
  const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join('.'));
  const host = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
  const params: fc.Arbitrary<BootParams> = fc
    .record({
      head: fc.constantFrom('http://10.0.0.1:7480', 'https://head.example/rsw', 'http://[fd00::1]:7480'),
      image: fc.record({
        name,
        version: fc.oneof(fc.constant('latest' as const), fc.integer({ min: 1, max: 2 ** 40 })),
      }),
      mode: fc.constantFrom('stateless' as const, 'reimage' as const),
      rack: fc.option(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), { nil: undefined }),
      ip: fc.oneof(
        fc.record({ kind: fc.constant('dhcp' as const) }),
        fc.record({
          kind: fc.constant('static' as const),
          address: ipv4,
          prefix: fc.integer({ min: 0, max: 32 }),
          gateway: fc.option(ipv4, { nil: undefined }),
          hostname: fc.option(host, { nil: undefined }),
          device: fc.option(fc.constantFrom('eth0', 'ens3', 'enp0s3'), { nil: undefined }),
          dns: fc.array(ipv4, { maxLength: 2 }),
        }),
      ),
      rescue: fc.boolean(),
      linger: fc.option(fc.integer({ min: 0, max: 99_999 }), { nil: undefined }),
      hostname: fc.option(host, { nil: undefined }),
      source: fc.constantFrom('mesh' as const, 'http' as const),
      headPeerId: fc.option(fc.constant(HEAD_ID), { nil: undefined }),
    })
    .map((p) => {
      const out = { ...p, ...(p.mode === 'reimage' ? { disk: '/dev/vda' } : {}) } as BootParams;
      for (const k of Object.keys(out) as (keyof BootParams)[]) if (out[k] === undefined) delete out[k];
      if (out.ip.kind === 'static')
        for (const k of ['gateway', 'hostname', 'device'] as const)
          if (out.ip[k] === undefined) delete out.ip[k];
      return out;
    });

  it('property: formatting then parsing gives the same parameters back', () => {
    fc.assert(
      fc.property(params, (p) => {
        expect(parseBootCmdline(`console=ttyS0 ${formatBootCmdline(p)} quiet`)).toEqual(p);
      }),
      { numRuns: 300 },
    );
  });

  it('property: any text either parses or fails with RSW_ERR_BOOT_CMDLINE, never anything else', () => {
    const word = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom('rackswarm.', 'rackswarm.head=', 'rackswarm.mode=reimage', 'ip=', '"', '@', ':'),
      fc.string({ maxLength: 20 }).map((s) => `rackswarm.${s}`),
    );
    fc.assert(
      fc.property(fc.array(word, { maxLength: 8 }), fc.boolean(), (words, withBase) => {
        const c = code(`${withBase ? base : ''} ${words.join(' ')}`);
        expect(['ok', 'RSW_ERR_BOOT_CMDLINE']).toContain(c);
      }),
      { numRuns: 500 },
    );
  });
});
