/**
 * A node's identity, written into its root (the overlay's upper layer, or the freshly written disk): host name,
 * machine-id, hosts, resolv.conf, the network it booted with, and its SSH host key when the head keeps one for it. Derived from the node's MAC so a stateless node
 * is the same machine on every boot even though its root is new each time. Pure: a map of relative path → content.
 */
import { createHash } from 'node:crypto';
import type { NetConfig } from './network.ts';

export interface NodeIdentity {
  hostname: string;
  machineId: string;
  files: Record<string, string>;
  /** Written 0600: the node's SSH host key, when the head keeps one for it. */
  secretFiles: Record<string, string>;
}

export interface SshHostKeyFiles {
  privateKey: string;
  publicKey: string;
}

export function nodeIdentity(net: NetConfig, hostname?: string, sshHostKey?: SshHostKeyFiles): NodeIdentity {
  const name = hostname ?? net.hostname ?? `node-${net.mac.replaceAll(':', '')}`;
  const machineId = createHash('sha256').update(`rackswarm machine-id ${net.mac}`).digest('hex').slice(0, 32);
  const env = [
    `IFACE=${net.iface}`,
    `MAC=${net.mac}`,
    `ADDRESS=${net.address}/${net.prefix}`,
    `GATEWAY=${net.gateway ?? ''}`,
    `DNS="${net.dns.join(' ')}"`,
  ];
  return {
    hostname: name,
    machineId,
    files: {
      'etc/hostname': `${name}\n`,
      'etc/machine-id': `${machineId}\n`,
      'etc/hosts': `127.0.0.1\tlocalhost\n${net.address}\t${name}\n`,
      'etc/resolv.conf': net.dns.map((d) => `nameserver ${d}\n`).join(''),
      'etc/rackswarm/network.env': `${env.join('\n')}\n`,
      ...(sshHostKey ? { 'etc/ssh/ssh_host_ed25519_key.pub': sshHostKey.publicKey } : {}),
    },
    secretFiles: sshHostKey ? { 'etc/ssh/ssh_host_ed25519_key': sshHostKey.privateKey } : {},
  };
}
