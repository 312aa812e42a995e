import { describe, expect, it } from 'vitest';
import { nodeIdentity } from '../../boot/identity.ts';
import { dhcpCommand, parseLease, staticPlan } from '../../boot/network.ts';
import { pickRootPartition } from '../../boot/reimage.ts';
import { fetchAttempts } from '../../boot/retry.ts';
import { pickHeadAddr } from '../../cli/fetch-image.ts';

describe('boot steps (pure parts)', () => {
  it('tries the mesh with doubling waits, then the head alone over HTTP, and stops', () => {
    expect(fetchAttempts('mesh', 3, 1000)).toEqual([
      { source: 'mesh', delayMs: 0 },
      { source: 'mesh', delayMs: 1000 },
      { source: 'mesh', delayMs: 2000 },
      { source: 'http', delayMs: 4000 },
      { source: 'http', delayMs: 16000 },
    ]);
    expect(fetchAttempts('http', 3, 1000).map((a) => a.source)).toEqual(['http', 'http']);
    expect(fetchAttempts('mesh', 0, 500)[0]).toEqual({ source: 'http', delayMs: 0 });
  });

  it('configures a static address with busybox ip, DHCP with udhcpc, and reads the lease', () => {
    expect(
      staticPlan({ kind: 'static', address: '10.0.0.5', prefix: 24, gateway: '10.0.0.1', dns: [] }, 'eth0'),
    ).toEqual([
      ['ip', 'link', 'set', 'lo', 'up'],
      ['ip', 'link', 'set', 'eth0', 'up'],
      ['ip', 'addr', 'add', '10.0.0.5/24', 'dev', 'eth0'],
      ['ip', 'route', 'add', 'default', 'via', '10.0.0.1', 'dev', 'eth0'],
    ]);
    expect(dhcpCommand('eth1', '/s')).toContain('eth1');
    expect(
      parseLease('ip=10.0.2.15\nmask=24\nrouter=10.0.2.2 10.0.2.3\ndns=10.0.2.3\nhostname=\n', 'eth0', 'aa'),
    ).toEqual({
      iface: 'eth0',
      mac: 'aa',
      address: '10.0.2.15',
      prefix: 24,
      gateway: '10.0.2.2',
      dns: ['10.0.2.3'],
    });
  });

  it('derives a stable identity from the MAC unless the command line or network names the host', () => {
    const net = {
      iface: 'eth0',
      mac: '52:54:00:12:34:56',
      address: '10.0.0.5',
      prefix: 24,
      dns: ['10.0.0.1'],
    };
    const a = nodeIdentity(net);
    expect(a.hostname).toBe('node-525400123456');
    expect(a.machineId).toMatch(/^[0-9a-f]{32}$/);
    expect(nodeIdentity(net).machineId).toBe(a.machineId);
    expect(nodeIdentity({ ...net, mac: '52:54:00:12:34:57' }).machineId).not.toBe(a.machineId);
    expect(nodeIdentity({ ...net, hostname: 'dhcp-name' }).hostname).toBe('dhcp-name');
    expect(nodeIdentity({ ...net, hostname: 'dhcp-name' }, 'cmdline-name').files['etc/hostname']).toBe(
      'cmdline-name\n',
    );
    expect(a.files['etc/resolv.conf']).toBe('nameserver 10.0.0.1\n');
  });

  it('picks the largest ext partition of a written disk as its root', () => {
    expect(
      pickRootPartition([
        { device: '/dev/vda1', bytes: 512 << 20, ext: false },
        { device: '/dev/vda2', bytes: 2 ** 30, ext: true },
        { device: '/dev/vda3', bytes: 8 * 2 ** 30, ext: true },
      ])?.device,
    ).toBe('/dev/vda3');
    expect(pickRootPartition([{ device: '/dev/vda1', bytes: 1, ext: false }])).toBeUndefined();
  });

  it("dials the head at the address the node was told, not at the head's own loopback", () => {
    const addrs = ['/ip4/127.0.0.1/tcp/7481/p2p/12D3K', '/ip4/10.1.0.1/tcp/7481/p2p/12D3K'];
    expect(pickHeadAddr(addrs, 'http://10.1.0.1:7480')).toBe('/ip4/10.1.0.1/tcp/7481/p2p/12D3K');
    // behind NAT (QEMU user networking: the host is 10.0.2.2 to the guest)
    expect(pickHeadAddr(['/ip4/127.0.0.1/tcp/5000/p2p/12D3K'], 'http://10.0.2.2:7480')).toBe(
      '/ip4/10.0.2.2/tcp/5000/p2p/12D3K',
    );
    expect(pickHeadAddr(addrs, 'http://head.lan:7480')).toBe('/ip4/10.1.0.1/tcp/7481/p2p/12D3K');
  });
});
