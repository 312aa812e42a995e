import { join } from 'node:path';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Libp2p } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { tls } from '@libp2p/tls';
import { createLibp2p } from 'libp2p';
import { createP2PNode } from '../../cli/p2p-node.ts';

/** A libp2p node of ours (cli/p2p-node.ts: TLS with one certificate per process) on 127.0.0.1, its key in `dir`. */
export function oursNode(dir: string, name: string): Promise<Libp2p> {
  return createP2PNode({ keyFile: join(dir, `${name}.key`), listen: ['/ip4/127.0.0.1/tcp/0'] });
}

/**
 * A node with stock @libp2p/tls (a certificate per connection, over a JavaScript Duplex), as rackswarm 1.1.0 runs,
 * and stock Yamux (with `yamuxInit`, e.g. the stream options every rackswarm node has).
 */
export function stockTlsNode(yamuxInit?: Parameters<typeof yamux>[0]): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [tls()],
    streamMuxers: [yamux(yamuxInit)],
  });
}
