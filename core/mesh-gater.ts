/**
 * The closed mesh's connection gater (docs/SECURITY.md), the same on the head and on every node: a libp2p connection
 * survives only if the remote's peer id — which TLS 1.3 or Noise has just authenticated — is enrolled on the head.
 * libp2p asks after the security handshake and before the muxer (`deny*EncryptedConnection`), so a refused peer never
 * opens a stream and no protocol handler ever runs for it; `denyDialPeer` spares the dial to a known outsider.
 *
 * Where the answer comes from is injected: the head looks in its enrollment records (tracker/enrollments.ts); a node
 * asks the head (core/enrollment-cache.ts). Whatever goes wrong while deciding refuses (fail closed).
 */
import type { ConnectionGater, PeerId } from '@libp2p/interface';

export type GateDirection = 'inbound' | 'outbound' | 'dial';

export interface MeshGaterInit {
  /** The pinned head's peer id: always admitted (it is the enrollment authority), on a node. */
  head?: string;
  isEnrolled: (peerId: string) => boolean | Promise<boolean>;
  /** Told about every refusal (logs, counters). */
  onRefuse?: (peerId: string, direction: GateDirection) => void;
}

export function meshGater(init: MeshGaterInit): ConnectionGater {
  const deny = async (peer: PeerId, direction: GateDirection): Promise<boolean> => {
    const id = peer.toString();
    if (id === init.head) return false;
    let admitted = false;
    try {
      admitted = (await init.isEnrolled(id)) === true;
    } catch {
      admitted = false;
    }
    if (!admitted) init.onRefuse?.(id, direction);
    return !admitted;
  };
  return {
    denyDialPeer: (peer) => deny(peer, 'dial'),
    denyInboundEncryptedConnection: (peer) => deny(peer, 'inbound'),
    denyOutboundEncryptedConnection: (peer) => deny(peer, 'outbound'),
  };
}
