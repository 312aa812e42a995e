import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { detectFormat } from '../../core/image-format.ts';
import { chooseVersion } from '../../core/version-policy.ts';

describe('version policy', () => {
  it('gives a new image version 1 and an existing one newest + 1', () => {
    expect(chooseVersion([], undefined, 'x')).toEqual({ version: 1, exists: false });
    expect(chooseVersion([1, 2, 5], undefined, 'x')).toEqual({ version: 6, exists: false });
  });

  it('accepts a requested version that is newer, or one that exists (bytes checked later)', () => {
    expect(chooseVersion([1, 2], 10, 'x')).toEqual({ version: 10, exists: false });
    expect(chooseVersion([1, 2], 1, 'x')).toEqual({ version: 1, exists: true });
  });

  it('refuses a requested version older than the newest that does not exist', () => {
    expect(() => chooseVersion([1, 5], 3, 'x')).toThrow(
      expect.objectContaining({ code: 'RSW_ERR_VERSION_NOT_NEWER' }),
    );
  });
});

describe('image format detection', () => {
  const blank = () => Buffer.alloc(4096);
  it('recognises SquashFS, disk images and plain files', () => {
    const sq = blank();
    sq.write('hsqs', 0, 'latin1');
    expect(detectFormat(sq)).toBe('squashfs');
    const mbr = blank();
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    expect(detectFormat(mbr)).toBe('raw');
    const ext4 = blank();
    ext4.writeUInt16LE(0xef53, 1080);
    expect(detectFormat(ext4)).toBe('raw');
    expect(detectFormat(Buffer.from('just some text'))).toBe('file');
    expect(detectFormat(blank())).toBe('file');
  });
});

describe('config schema', () => {
  it('is the source of the defaults', () => {
    expect(loadConfig()).toEqual({
      chunker: {
        minSize: 128 * 1024,
        avgSize: 512 * 1024,
        maxSize: 2 * 1024 * 1024,
        squashfs: { minSize: 8 * 1024, avgSize: 32 * 1024, maxSize: 128 * 1024 },
      },
      manifest: { maxBytes: 16 * 1024 * 1024 },
      mesh: { closed: false, releaseImageKeysWhenOpen: false, headPeerId: '', cacheSeconds: 60 },
      store: { verifyOnRead: true, writeConcurrency: 16 },
      head: {
        http: '0.0.0.0:7480',
        listen: ['/ip4/0.0.0.0/tcp/7481'],
        keepVersions: 3,
        gcGraceSeconds: 3600,
        httpHeadersTimeoutMs: 10_000,
        httpRequestTimeoutMs: 120_000,
        httpRateLimit: { requestsPerSecond: 50, burst: 500, maxClients: 10_000 },
      },
      seeder: {
        maxStreamsPerPeer: 2,
        maxConcurrentTotal: 32,
        perPeerBytesPerSecond: 0,
        totalBytesPerSecond: 0,
        readTimeoutMs: 10_000,
        reserveAfterMs: 10_000,
        sendsAtOnce: 8,
        sendRampEvery: 2,
        rackSpreadWindowMs: 1000,
      },
      tracker: {
        peerTtlMs: 90_000,
        handoutSize: 30,
        announceIntervalSeconds: 10,
        maxPeers: 100_000,
        readTimeoutMs: 10_000,
        maxInboundStreams: 4,
        dashboardIntervalMs: 1000,
        maxEventClients: 64,
        headUplinkBytesPerSecond: 1_250_000_000,
        nodeLinkBytesPerSecond: 1_250_000_000,
      },
      p2p: {
        maxConnections: 1024,
        inboundConnectionThreshold: 1000,
        maxIncomingPendingConnections: 256,
        pingIntervalMs: 60_000,
        encryption: ['tls', 'noise'],
        dataPlane: 'bulk-tcp',
        bulkPort: 0,
      },
      channel: { ttlSeconds: 86_400 },
      peer: {
        listen: ['/ip4/0.0.0.0/tcp/0'],
        lingerSeconds: 600,
        maxServeStreams: 4,
        serveTurnoverMs: 100,
        maxSources: 4,
        paceBehindShare: 0.005,
        pipelineBatches: 2,
        rackReserveMs: 2000,
        cacheVersions: 2,
        cacheCopies: true,
        verifyWritten: false,
      },
      boot: {
        modules: [
          'loop',
          'squashfs',
          'overlay',
          'ext4',
          'crc32c_generic',
          'virtio_pci',
          'virtio_net',
          'virtio_blk',
          'e1000',
          'e1000e',
        ],
        compression: 'zstd',
        peerPort: 7482,
        meshAttempts: 3,
        retryBaseMs: 2000,
        linkTimeoutSeconds: 30,
        agentTimeoutSeconds: 3600,
      },
    });
  });

  it('fills in around a partial config', () => {
    expect(loadConfig({ store: { writeConcurrency: 8 } }).store).toEqual({
      verifyOnRead: true,
      writeConcurrency: 8,
    });
  });

  it.each([
    [{ chunker: { minSize: 'big' } }, /minSize/],
    [{ chunker: { minSize: 2 * 1024 * 1024 } }, /minSize < avgSize < maxSize/],
    [{ store: { writeConcurrency: 0 } }, /writeConcurrency/],
    [{ nonsense: true }, /nonsense/],
  ])('refuses %j', (partial, message) => {
    expect(() => loadConfig(partial)).toThrow(message);
    expect(() => loadConfig(partial)).toThrow(expect.objectContaining({ code: 'RSW_ERR_CONFIG_INVALID' }));
  });
});
