/**
 * The closed mesh's vocabulary, shared by the head (tracker/enrollments.ts answers) and every node (cli/ asks):
 * peer-id text validation and the enrollment query protocol.
 *
 *   /rackswarm/enrolled/1.0.0   one request per stream, length-prefixed JSON both ways:
 *     → {peerIds: [ID, …]}             at most MAX_QUERY_IDS
 *     ← {ok: true, enrolled: [ID, …]}  the subset the head has enrolled
 *     ← {ok: false, code, message}
 * The head serves it only on connections its gater admitted, i.e. to enrolled peers: an outsider cannot even ask.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import { RswError } from './errors.ts';

export const ENROLLED_PROTOCOL = '/rackswarm/enrolled/1.0.0';
/** Peer ids per query: a node asks about the few peers it is meeting, not the cluster. */
export const MAX_QUERY_IDS = 64;
/** 64 ids of ≤ 64 characters and the JSON around them. */
export const MAX_ENROLLED_MESSAGE_BYTES = 8 * 1024;

/** A libp2p peer id in its string form (base58btc `12D3Koo…` or CIDv1), checked and normalised. */
export function parsePeerId(text: string): string {
  if (typeof text !== 'string' || text.length === 0 || text.length > 128)
    throw new RswError(
      'RSW_ERR_INVALID_PEER_ID',
      `${JSON.stringify(String(text).slice(0, 80))} is not a peer id`,
    );
  try {
    return peerIdFromString(text).toString();
  } catch {
    throw new RswError('RSW_ERR_INVALID_PEER_ID', `${JSON.stringify(text)} is not a libp2p peer id`);
  }
}

/**
 * Peer ids from an enrollment list file: one per line (or whitespace-separated); `#` starts a comment, so a line may
 * say which machine an id is (`12D3Koo…  # node-r12-07`). Every malformed id is named, none is half-applied.
 */
export function parsePeerIdList(text: string): string[] {
  const ids: string[] = [];
  const bad: string[] = [];
  for (const line of text.split('\n')) {
    for (const word of line.replace(/#.*/, '').trim().split(/\s+/)) {
      if (word === '') continue;
      try {
        ids.push(parsePeerId(word));
      } catch {
        bad.push(word);
      }
    }
  }
  if (bad.length > 0)
    throw new RswError(
      'RSW_ERR_INVALID_PEER_ID',
      `not peer ids: ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ` (and ${bad.length - 5} more)` : ''}`,
    );
  return [...new Set(ids)];
}

export interface EnrolledQuery {
  peerIds: string[];
}

/** Decodes a query; throws RSW_ERR_PROTOCOL on anything but {peerIds: [valid ids]}. */
export function decodeEnrolledQuery(bytes: Uint8Array): EnrolledQuery {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new RswError('RSW_ERR_PROTOCOL', 'enrollment query is not JSON');
  }
  const ids = (v as { peerIds?: unknown } | null)?.peerIds;
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_QUERY_IDS)
    throw new RswError('RSW_ERR_PROTOCOL', `enrollment query needs 1-${MAX_QUERY_IDS} peerIds`);
  try {
    return { peerIds: ids.map((id) => parsePeerId(id as string)) };
  } catch (e) {
    throw new RswError('RSW_ERR_PROTOCOL', (e as Error).message);
  }
}
