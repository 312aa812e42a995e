/**
 * The one registry of rackswarm's error codes (after fastify's lib/errors.js). Every failure a user can meet has a
 * stable `RSW_ERR_*` code, an HTTP status for the API, and a one-line message; the CLI prints
 * `error CODE: message` and exits non-zero. docs/ERRORS.md lists the same codes (a test keeps them identical).
 */
export const ERRORS = {
  RSW_ERR_USAGE: { status: 400, exit: 2, summary: 'the command line is wrong' },
  RSW_ERR_BAD_REQUEST: { status: 400, exit: 1, summary: 'a request is malformed (JSON, parameters or body)' },
  RSW_ERR_UNAUTHORIZED: { status: 401, exit: 1, summary: 'the admin token is missing or wrong' },
  RSW_ERR_NOT_FOUND: { status: 404, exit: 1, summary: 'no such API route' },
  RSW_ERR_BODY_TOO_LARGE: { status: 413, exit: 1, summary: 'a request body is larger than its limit' },
  RSW_ERR_RATE_LIMITED: {
    status: 429,
    exit: 1,
    summary: 'one client sent the HTTP API more requests than its rate limit; retry later',
  },
  RSW_ERR_TOO_MANY_CLIENTS: {
    status: 503,
    exit: 1,
    summary: 'the head already serves as many live dashboard streams as it allows',
  },
  RSW_ERR_HEAD_UNREACHABLE: {
    status: 502,
    exit: 1,
    summary: 'the head node cannot be reached or answered nonsense',
  },
  RSW_ERR_CONFIG_INVALID: {
    status: 400,
    exit: 2,
    summary: 'a configuration value is out of range or of the wrong type',
  },
  RSW_ERR_FILE_NOT_FOUND: { status: 404, exit: 1, summary: 'an input file does not exist' },
  RSW_ERR_FILE_UNREADABLE: { status: 400, exit: 1, summary: 'an input file cannot be read' },
  RSW_ERR_NOT_A_FILE: { status: 400, exit: 1, summary: 'an input path is a directory or special file' },
  RSW_ERR_EMPTY_FILE: { status: 400, exit: 1, summary: 'an image file is empty' },
  RSW_ERR_INVALID_NAME: {
    status: 400,
    exit: 1,
    summary: 'an image name has characters outside [A-Za-z0-9._-] or is too long',
  },
  RSW_ERR_INVALID_VERSION: { status: 400, exit: 1, summary: 'a version is not a positive integer' },
  RSW_ERR_VERSION_NOT_NEWER: {
    status: 409,
    exit: 1,
    summary: 'a version is older than the newest published one',
  },
  RSW_ERR_VERSION_CONFLICT: {
    status: 409,
    exit: 1,
    summary: 'that version is already published with different bytes',
  },
  RSW_ERR_KEY_INVALID: {
    status: 400,
    exit: 1,
    summary: 'a key file is not an ed25519 key of the expected kind',
  },
  RSW_ERR_KEY_EXISTS: { status: 409, exit: 1, summary: 'a key file already exists and would be overwritten' },
  RSW_ERR_KEY_MISMATCH: {
    status: 403,
    exit: 1,
    summary: 'an image is already published under a different publisher key',
  },
  RSW_ERR_MANIFEST_TOO_LARGE: { status: 413, exit: 1, summary: 'a manifest is larger than the size cap' },
  RSW_ERR_MANIFEST_INVALID: { status: 400, exit: 1, summary: 'a manifest is malformed or inconsistent' },
  RSW_ERR_SIGNATURE_INVALID: { status: 403, exit: 1, summary: 'a manifest signature does not verify' },
  RSW_ERR_UNTRUSTED_KEY: {
    status: 403,
    exit: 1,
    summary: 'a manifest is signed by a key that is not pinned',
  },
  RSW_ERR_ROLLBACK: { status: 409, exit: 1, summary: 'a manifest is older than a version already seen' },
  RSW_ERR_KEY_REVOKED: {
    status: 403,
    exit: 1,
    summary: 'a manifest or channel pointer is signed by a revoked publisher key',
  },
  RSW_ERR_MANIFEST_MISMATCH: {
    status: 409,
    exit: 1,
    summary: 'a validly signed manifest is not the image asked for (another name, version or id)',
  },
  RSW_ERR_REVOCATION_INVALID: {
    status: 400,
    exit: 1,
    summary: 'a key revocation statement is malformed, or signed by a key that is not pinned',
  },
  RSW_ERR_IMAGE_KEY_UNAVAILABLE: {
    status: 403,
    exit: 1,
    summary: 'the key of an encrypted image is not available to this node (not on the head, or not released)',
  },
  RSW_ERR_MESH_OPEN: {
    status: 403,
    exit: 1,
    summary: 'the head releases image keys only on a closed mesh (mesh.closed), unless explicitly overridden',
  },
  RSW_ERR_IMAGE_KEY_WRONG: {
    status: 400,
    exit: 1,
    summary: 'an image key is not the one the encrypted image was published with (key id mismatch)',
  },
  RSW_ERR_DECRYPT_FAILED: {
    status: 400,
    exit: 1,
    summary: 'an encrypted chunk does not decrypt and authenticate under the image key',
  },
  RSW_ERR_INVALID_CHANNEL: {
    status: 400,
    exit: 1,
    summary: 'a channel name or signed channel pointer is malformed',
  },
  RSW_ERR_CHANNEL_NOT_FOUND: { status: 404, exit: 1, summary: 'no such channel' },
  RSW_ERR_CHANNEL_EXPIRED: {
    status: 409,
    exit: 1,
    summary: 'a signed channel pointer has expired (the publisher must sign it again)',
  },
  RSW_ERR_CHANNEL_STALE: {
    status: 409,
    exit: 1,
    summary: 'a signed channel pointer is older (lower sequence) than one already seen',
  },
  RSW_ERR_NO_NODES: { status: 404, exit: 1, summary: 'no running node matches the node selector' },
  RSW_ERR_PREHEAT_NOT_FOUND: { status: 404, exit: 1, summary: 'no such preheat job' },
  RSW_ERR_PREHEAT_INCOMPLETE: {
    status: 409,
    exit: 1,
    summary: 'a preheat did not reach every selected node (one failed, or the wait ran out)',
  },
  RSW_ERR_INVALID_ANNOUNCE: { status: 400, exit: 1, summary: 'a peer announce has a field out of range' },
  RSW_ERR_PROTOCOL: {
    status: 400,
    exit: 1,
    summary: 'a peer broke the wire protocol (bad length, garbage, timeout)',
  },
  RSW_ERR_IMAGE_NOT_FOUND: { status: 404, exit: 1, summary: 'no such image or version' },
  RSW_ERR_INVALID_HASH: {
    status: 400,
    exit: 1,
    summary: 'a chunk or image id is not 64 lowercase hex digits',
  },
  RSW_ERR_CHUNK_NOT_FOUND: { status: 404, exit: 1, summary: 'a chunk is not in the store' },
  RSW_ERR_CHUNKS_MISSING: { status: 409, exit: 1, summary: 'a manifest names chunks the head does not hold' },
  RSW_ERR_CHUNK_MISMATCH: {
    status: 400,
    exit: 1,
    summary: 'received chunk bytes do not hash to the name they came under',
  },
  RSW_ERR_CHUNK_CORRUPT: { status: 500, exit: 1, summary: 'a stored chunk does not match its hash' },
  RSW_ERR_DISK_FULL: {
    status: 507,
    exit: 1,
    summary: 'no space left on the device holding the data directory',
  },
  RSW_ERR_DATA_UNWRITABLE: { status: 500, exit: 1, summary: 'the data directory cannot be written' },
  RSW_ERR_DATA_LOCKED: {
    status: 409,
    exit: 1,
    summary: 'another process (a running head?) holds the data directory',
  },
  RSW_ERR_BOOT_CMDLINE: {
    status: 400,
    exit: 2,
    summary: 'the kernel command line has a missing, unknown or malformed rackswarm.* or ip= value',
  },
  RSW_ERR_KERNEL_MODULE: {
    status: 400,
    exit: 1,
    summary: 'a kernel module is missing from the modules tree (or modules.dep is absent)',
  },
  RSW_ERR_BOOT_FAILED: {
    status: 500,
    exit: 1,
    summary: 'a booting node could not bring up its network, fetch its image or prepare its root',
  },
  RSW_ERR_NOT_ENROLLED: {
    status: 403,
    exit: 1,
    summary: "the head refuses this node's peer id: it is not enrolled in the closed mesh",
  },
  RSW_ERR_HEAD_IDENTITY: {
    status: 502,
    exit: 1,
    summary:
      "the node at the head's address did not prove the pinned head peer id (a fake head, or a wrong pin)",
  },
  RSW_ERR_INVALID_PEER_ID: { status: 400, exit: 1, summary: 'a libp2p peer id is malformed' },
  RSW_ERR_INTERRUPTED: { status: 500, exit: 130, summary: 'the operation was interrupted and rolled back' },
  RSW_ERR_INTERNAL: {
    status: 500,
    exit: 1,
    summary: 'an unexpected internal error (a bug: please report it)',
  },
} as const satisfies Record<string, { status: number; exit: number; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** An error a user can act on: a stable code and a one-line message. */
export class RswError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RswError';
    this.code = code;
    this.status = ERRORS[code].status;
  }

  /** Process exit code for the CLI. */
  get exitCode(): number {
    return ERRORS[this.code].exit;
  }
}

export function isRswError(e: unknown): e is RswError {
  return e instanceof RswError;
}

/** Node's errno codes that mean "the data directory's disk or permissions", mapped to our codes. */
export function fsErrorCode(e: unknown): ErrorCode | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  // LevelDB reports I/O failures as text (LEVEL_IO_ERROR), not errno codes.
  const text = e instanceof Error ? e.message : '';
  if (/No space left on device/i.test(text)) return 'RSW_ERR_DISK_FULL';
  if (/Read-only file system|Permission denied/i.test(text)) return 'RSW_ERR_DATA_UNWRITABLE';
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return 'RSW_ERR_DISK_FULL';
    case 'EROFS':
    case 'EACCES':
    case 'EPERM':
    case 'ENOTDIR':
      return 'RSW_ERR_DATA_UNWRITABLE';
    default:
      return undefined;
  }
}

/**
 * Wraps a filesystem failure while writing under the data directory into an RswError (disk full, read-only, ...);
 * anything else is returned unchanged.
 */
export function asDataError(e: unknown, what: string): unknown {
  if (isRswError(e)) return e;
  const code = fsErrorCode(e);
  if (!code) return e;
  const errno = (e as NodeJS.ErrnoException).code ?? (e as Error).message.split('\n')[0];
  return new RswError(code, `${what}: ${errno}`, { cause: e });
}

/** The one line the CLI prints for `e` (no stack trace; RSW_DEBUG=1 adds it). */
export function formatError(e: unknown): string {
  if (isRswError(e)) return `error ${e.code}: ${e.message}`;
  const msg = e instanceof Error ? e.message : String(e);
  return `error RSW_ERR_INTERNAL: ${msg.split('\n')[0]}`;
}
