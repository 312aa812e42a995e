/**
 * Bringing up a booting node's network with busybox: which interface, the `ip` commands for a static `ip=`, the
 * `udhcpc` call for DHCP and the lease its script leaves behind. Planning is pure; `run` executes a plan.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { IpConfig } from '../core/boot-cmdline.ts';
import { RswError } from '../core/errors.ts';

const exec = promisify(execFile);

/** What the node ends up with, from ip= or from the DHCP lease. */
export interface NetConfig {
  iface: string;
  mac: string;
  address: string;
  prefix: number;
  gateway?: string;
  dns: string[];
  /** A host name the network gave (ip= or DHCP option 12). */
  hostname?: string;
}

/** The commands for a static configuration. */
export function staticPlan(ip: Extract<IpConfig, { kind: 'static' }>, iface: string): string[][] {
  const plan = [
    ['ip', 'link', 'set', 'lo', 'up'],
    ['ip', 'link', 'set', iface, 'up'],
    ['ip', 'addr', 'add', `${ip.address}/${ip.prefix}`, 'dev', iface],
  ];
  if (ip.gateway) plan.push(['ip', 'route', 'add', 'default', 'via', ip.gateway, 'dev', iface]);
  return plan;
}

/** udhcpc: quit after the lease (-q), fail instead of backgrounding (-n), 5 tries 2 s apart; the script applies it. */
export function dhcpCommand(iface: string, script: string): string[] {
  return ['udhcpc', '-i', iface, '-n', '-q', '-f', '-t', '5', '-T', '2', '-s', script];
}

/** The lease file the udhcpc script writes: KEY=VALUE lines (ip, mask as prefix, router, dns, hostname). */
export function parseLease(text: string, iface: string, mac: string): NetConfig {
  const v = Object.fromEntries(
    text
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]),
  );
  if (!v.ip) throw new RswError('RSW_ERR_BOOT_FAILED', `DHCP on ${iface} gave no address`);
  return {
    iface,
    mac,
    address: v.ip,
    prefix: Number(v.mask ?? 24),
    ...(v.router ? { gateway: v.router.split(' ')[0] } : {}),
    dns: (v.dns ?? '').split(' ').filter((d: string) => d !== ''),
    ...(v.hostname ? { hostname: v.hostname } : {}),
  };
}

/** The first Ethernet interface (or `wanted`), waiting up to `timeoutMs` for the driver to create it. */
export async function findInterface(
  wanted: string | undefined,
  timeoutMs: number,
  sysfs = '/sys/class/net',
): Promise<{ iface: string; mac: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const names = (await readdir(sysfs).catch(() => [] as string[])).sort();
    const candidates = wanted ? names.filter((n) => n === wanted) : names.filter((n) => n !== 'lo');
    for (const iface of candidates) {
      const type = (await readFile(`${sysfs}/${iface}/type`, 'utf8').catch(() => '')).trim();
      if (type !== '1') continue; // ARPHRD_ETHER
      const mac = (await readFile(`${sysfs}/${iface}/address`, 'utf8')).trim();
      return { iface, mac };
    }
    if (Date.now() > deadline)
      throw new RswError(
        'RSW_ERR_BOOT_FAILED',
        wanted
          ? `network interface ${wanted} did not appear (driver module missing from the initramfs?)`
          : `no Ethernet interface appeared in ${timeoutMs / 1000} s (driver module missing from the initramfs?)`,
      );
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs a command; a failure is RSW_ERR_BOOT_FAILED with its stderr. */
export async function run(argv: string[]): Promise<string> {
  try {
    const { stdout } = await exec(argv[0], argv.slice(1), { timeout: 120_000 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new RswError(
      'RSW_ERR_BOOT_FAILED',
      `${argv.join(' ')} failed: ${(err.stderr || err.message).trim().split('\n').slice(-1)[0]}`,
    );
  }
}

/** Configures the interface per `ip` and returns what it got. */
export async function bringUpNetwork(
  ip: IpConfig,
  opts: { dhcpScript: string; leaseFile: string; linkTimeoutMs: number },
): Promise<NetConfig> {
  const { iface, mac } = await findInterface(ip.device, opts.linkTimeoutMs);
  if (ip.kind === 'static') {
    for (const argv of staticPlan(ip, iface)) await run(argv);
    return {
      iface,
      mac,
      address: ip.address,
      prefix: ip.prefix,
      ...(ip.gateway ? { gateway: ip.gateway } : {}),
      dns: ip.dns,
      ...(ip.hostname ? { hostname: ip.hostname } : {}),
    };
  }
  await run(['ip', 'link', 'set', 'lo', 'up']);
  await run(['ip', 'link', 'set', iface, 'up']);
  await run(dhcpCommand(iface, opts.dhcpScript));
  return parseLease(await readFile(opts.leaseFile, 'utf8'), iface, mac);
}
