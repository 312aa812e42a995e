/**
 * Lives in core/ because two roles use it: the head writes it into iPXE scripts (tracker/boot-routes.ts), the node
 * reads it (cli/boot-agent.ts); roles never import each other.
 *
 * The kernel command line of a booting node (DESIGN.md "Boot", a contract):
 *   rackswarm.head=URL rackswarm.image=NAME[@VERSION] rackswarm.mode=stateless|reimage rackswarm.disk=/dev/…
 *   rackswarm.rack=LABEL  plus  ip=dhcp | ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>
 * and these optional keys: rackswarm.rescue=0|1 (a shell instead of a reboot on failure), rackswarm.linger=SECONDS
 * (keep seeding after the pivot), rackswarm.hostname=NAME (identity when ip= does not name the host),
 * rackswarm.source=mesh|http (http: the head alone over plain HTTP, verified the same way — the fallback, and the
 * benchmark's baseline), rackswarm.headid=PEERID (pins the head's libp2p peer id when the initramfs does not: the
 * closed mesh, docs/SECURITY.md; an initramfs pin wins, and a different one here is refused at boot).
 * Strict: an unknown or repeated rackswarm.* key, or a malformed value, is RSW_ERR_BOOT_CMDLINE — a node must not
 * boot something other than what its operator wrote. Other kernel parameters are ignored.
 */
import { parsePeerId } from './enrollment.ts';
import { isRswError, RswError } from './errors.ts';
import { parseVersion, validateImageName } from './manifest.ts';

export type BootMode = 'stateless' | 'reimage';
export type FetchSource = 'mesh' | 'http';

export interface StaticIp {
  kind: 'static';
  address: string;
  /** Prefix length from the netmask. */
  prefix: number;
  gateway?: string;
  hostname?: string;
  device?: string;
  dns: string[];
}
export interface DhcpIp {
  kind: 'dhcp';
  device?: string;
}
export type IpConfig = StaticIp | DhcpIp;

export interface BootParams {
  /** Head URL without a trailing slash, e.g. `http://10.0.0.1:7480`. */
  head: string;
  image: { name: string; version: number | 'latest' };
  mode: BootMode;
  /** Target block device; set exactly when mode is `reimage`. */
  disk?: string;
  rack?: string;
  ip: IpConfig;
  rescue: boolean;
  /** Seconds to keep seeding after the pivot; unset: the config default. */
  linger?: number;
  hostname?: string;
  source: FetchSource;
  /** The head's libp2p peer id to pin (rackswarm.headid). */
  headPeerId?: string;
}

const KEYS = [
  'head',
  'image',
  'mode',
  'disk',
  'rack',
  'rescue',
  'linger',
  'hostname',
  'source',
  'headid',
] as const;
type Key = (typeof KEYS)[number];

const HOSTNAME_RE = /^(?=.{1,63}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
const LABEL_RE = /^[A-Za-z0-9._-]{1,64}$/;
const DISK_RE = /^\/dev\/[A-Za-z0-9._/-]{1,64}$/;
const DEVICE_RE = /^[A-Za-z0-9._-]{1,15}$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function bad(what: string): RswError {
  return new RswError('RSW_ERR_BOOT_CMDLINE', `kernel command line: ${what}`);
}

/** Splits a kernel command line into words the way the kernel does: spaces separate, double quotes group. */
export function splitCmdline(text: string): string[] {
  const words: string[] = [];
  let cur = '';
  let quoted = false;
  let inWord = false;
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted;
      inWord = true;
    } else if (!quoted && /\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quoted) throw bad('unbalanced double quote');
  if (inWord) words.push(cur);
  return words;
}

function isIpv4(s: string): boolean {
  return IPV4_RE.test(s);
}

function netmaskPrefix(mask: string): number {
  if (!isIpv4(mask)) throw bad(`ip=: netmask ${JSON.stringify(mask)} is not a dotted IPv4 netmask`);
  const n = mask.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const bits = n.toString(2).padStart(32, '0');
  if (!/^1*0*$/.test(bits)) throw bad(`ip=: netmask ${mask} is not contiguous`);
  return bits.indexOf('0') < 0 ? 32 : bits.indexOf('0');
}

function prefixNetmask(prefix: number): string {
  const n = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

/** `ip=` as the kernel's nfsroot.rst documents it (only the forms a rackswarm node uses). */
export function parseIp(value: string): IpConfig {
  if (value === 'dhcp' || value === 'on' || value === 'any') return { kind: 'dhcp' };
  const f = value.split(':');
  if (f.length < 4 || f.length > 10)
    throw bad(`ip=${value}: expected ip=dhcp or ip=client:server:gw:netmask:…`);
  const [client, , gw = '', mask = '', host = '', device = '', autoconf = '', dns0 = '', dns1 = ''] = f;
  if (client === '' && (autoconf === 'dhcp' || autoconf === 'on' || autoconf === 'any')) {
    if (device && !DEVICE_RE.test(device)) throw bad(`ip=: device ${JSON.stringify(device)} is invalid`);
    return { kind: 'dhcp', ...(device ? { device } : {}) };
  }
  if (!isIpv4(client)) throw bad(`ip=: client address ${JSON.stringify(client)} is not IPv4`);
  if (autoconf !== '' && autoconf !== 'off' && autoconf !== 'none')
    throw bad(`ip=: autoconf ${JSON.stringify(autoconf)} with a static address (use off or leave it empty)`);
  if (gw !== '' && !isIpv4(gw)) throw bad(`ip=: gateway ${JSON.stringify(gw)} is not IPv4`);
  if (host !== '' && !HOSTNAME_RE.test(host)) throw bad(`ip=: hostname ${JSON.stringify(host)} is invalid`);
  if (device !== '' && !DEVICE_RE.test(device)) throw bad(`ip=: device ${JSON.stringify(device)} is invalid`);
  const dns = [dns0, dns1].filter((d) => d !== '');
  for (const d of dns) if (!isIpv4(d)) throw bad(`ip=: DNS server ${JSON.stringify(d)} is not IPv4`);
  return {
    kind: 'static',
    address: client,
    prefix: mask === '' ? 24 : netmaskPrefix(mask),
    ...(gw ? { gateway: gw } : {}),
    ...(host ? { hostname: host } : {}),
    ...(device ? { device } : {}),
    dns,
  };
}

function parseHead(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad(`rackswarm.head=${value} is not a URL`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username)
    throw bad(`rackswarm.head=${value}: expected http(s)://HOST[:PORT][/path]`);
  return url.toString().replace(/\/+$/, '');
}

function parseImage(value: string): BootParams['image'] {
  const at = value.lastIndexOf('@');
  const name = at < 0 ? value : value.slice(0, at);
  try {
    validateImageName(name);
    return { name, version: at < 0 ? 'latest' : parseVersion(value.slice(at + 1)) };
  } catch (e) {
    if (isRswError(e)) throw bad(`rackswarm.image=${value}: ${e.message}`);
    throw e;
  }
}

/** Parses a whole kernel command line (the text of /proc/cmdline). Throws RSW_ERR_BOOT_CMDLINE. */
export function parseBootCmdline(text: string): BootParams {
  const seen = new Map<Key, string>();
  let ip: string | undefined;
  for (const word of splitCmdline(text)) {
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? '' : word.slice(eq + 1);
    if (key === 'ip') {
      if (ip !== undefined) throw bad('ip= is given twice');
      ip = value;
      continue;
    }
    if (!key.startsWith('rackswarm.')) continue;
    const k = key.slice('rackswarm.'.length) as Key;
    if (!KEYS.includes(k))
      throw bad(`unknown parameter ${key} (known: ${KEYS.map((x) => `rackswarm.${x}`).join(' ')})`);
    if (eq < 0 || value === '') throw bad(`${key} needs a value (${key}=…)`);
    if (seen.has(k)) throw bad(`${key} is given twice`);
    seen.set(k, value);
  }
  for (const k of ['head', 'image', 'mode'] as const)
    if (!seen.has(k)) throw bad(`rackswarm.${k}= is missing`);
  const mode = seen.get('mode');
  if (mode !== 'stateless' && mode !== 'reimage')
    throw bad(`rackswarm.mode=${mode}: expected stateless or reimage`);
  const disk = seen.get('disk');
  if (mode === 'reimage' && disk === undefined)
    throw bad('rackswarm.mode=reimage needs rackswarm.disk=/dev/…');
  if (mode === 'stateless' && disk !== undefined)
    throw bad('rackswarm.disk= is only for rackswarm.mode=reimage (a stateless root lives in memory)');
  if (disk !== undefined && (!DISK_RE.test(disk) || disk.includes('..')))
    throw bad(`rackswarm.disk=${disk}: expected a device path like /dev/vda`);
  const rack = seen.get('rack');
  if (rack !== undefined && !LABEL_RE.test(rack))
    throw bad(`rackswarm.rack=${rack}: use 1-64 of A-Z a-z 0-9 . _ -`);
  const rescue = seen.get('rescue') ?? '0';
  if (rescue !== '0' && rescue !== '1') throw bad(`rackswarm.rescue=${rescue}: expected 0 or 1`);
  const lingerText = seen.get('linger');
  if (lingerText !== undefined && !/^\d{1,5}$/.test(lingerText))
    throw bad(`rackswarm.linger=${lingerText}: expected whole seconds (0-99999)`);
  const hostname = seen.get('hostname');
  if (hostname !== undefined && !HOSTNAME_RE.test(hostname))
    throw bad(`rackswarm.hostname=${hostname}: expected a host name (letters, digits, -)`);
  const source = seen.get('source') ?? 'mesh';
  if (source !== 'mesh' && source !== 'http') throw bad(`rackswarm.source=${source}: expected mesh or http`);
  const headid = seen.get('headid');
  let headPeerId: string | undefined;
  if (headid !== undefined) {
    try {
      headPeerId = parsePeerId(headid);
    } catch {
      throw bad(`rackswarm.headid=${headid}: expected a libp2p peer id (12D3Koo…)`);
    }
  }
  return {
    head: parseHead(seen.get('head') as string),
    image: parseImage(seen.get('image') as string),
    mode,
    ...(disk !== undefined ? { disk } : {}),
    ...(rack !== undefined ? { rack } : {}),
    ip: ip === undefined ? { kind: 'dhcp' } : parseIp(ip),
    rescue: rescue === '1',
    ...(lingerText !== undefined ? { linger: Number(lingerText) } : {}),
    ...(hostname !== undefined ? { hostname } : {}),
    source,
    ...(headPeerId !== undefined ? { headPeerId } : {}),
  };
}

/** The kernel parameters for `p` (iPXE scripts, tests): parseBootCmdline(formatBootCmdline(p)) deep-equals p. */
export function formatBootCmdline(p: BootParams): string {
  const image = p.image.version === 'latest' ? p.image.name : `${p.image.name}@${p.image.version}`;
  const words = [`rackswarm.head=${p.head}`, `rackswarm.image=${image}`, `rackswarm.mode=${p.mode}`];
  if (p.disk !== undefined) words.push(`rackswarm.disk=${p.disk}`);
  if (p.rack !== undefined) words.push(`rackswarm.rack=${p.rack}`);
  if (p.rescue) words.push('rackswarm.rescue=1');
  if (p.linger !== undefined) words.push(`rackswarm.linger=${p.linger}`);
  if (p.hostname !== undefined) words.push(`rackswarm.hostname=${p.hostname}`);
  if (p.source !== 'mesh') words.push(`rackswarm.source=${p.source}`);
  if (p.headPeerId !== undefined) words.push(`rackswarm.headid=${p.headPeerId}`);
  words.push(`ip=${formatIp(p.ip)}`);
  return words.join(' ');
}

export function formatIp(ip: IpConfig): string {
  if (ip.kind === 'dhcp') return ip.device ? `:::::${ip.device}:dhcp` : 'dhcp';
  return [
    ip.address,
    '',
    ip.gateway ?? '',
    prefixNetmask(ip.prefix),
    ip.hostname ?? '',
    ip.device ?? '',
    'off',
    ...ip.dns,
  ].join(':');
}
