import { readFileSync } from 'node:fs';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';
import { RswError } from './errors.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * rackswarm's configuration: the only source of defaults and types. The CLI's flags, a config file (`--config`) and
 * later the kernel command line all produce a partial object that `loadConfig` completes and checks.
 */
export const ConfigSchema = Type.Object(
  {
    chunker: Type.Object(
      {
        /** @default 131072 (128 KiB) */
        minSize: Type.Integer({ minimum: 64, default: 128 * KiB }),
        /**
         * 512 KiB: half the update traffic of 1 MiB (21 % vs 40 % of v2's bytes with 1 % of files changed; 7 % vs
         * 16 % when the changes cluster) for ~20 % slower durable publish; 256 KiB gains little more (17 %) and
         * doubles the chunk count again. Sweep: "Chunker" in docs/BENCHMARKS.md.
         * @default 524288 (512 KiB)
         */
        avgSize: Type.Integer({ minimum: 128, default: 512 * KiB }),
        /** @default 2097152 (2 MiB) */
        maxSize: Type.Integer({ minimum: 256, maximum: 64 * MiB, default: 2 * MiB }),
        /**
         * Chunk sizes for SquashFS images, which override the three above. Publish cuts a SquashFS image at its
         * compressed-block boundaries (core/squashfs-chunker.ts), merging blocks smaller than minSize; FastCDC with
         * these sizes cuts the metadata tables and, as a fallback, images whose layout it cannot read (xz, lzo, lz4
         * metadata). With 1 % of the files rewritten a node holding v1 fetches ~2.6 % of v2 (block-aligned) or ~5 %
         * (FastCDC 32K; the general 512K defaults: ~21 %). Sweep: "Chunker" in docs/BENCHMARKS.md.
         */
        squashfs: Type.Object(
          {
            /** @default 8192 (8 KiB) */
            minSize: Type.Integer({ minimum: 64, default: 8 * KiB }),
            /** @default 32768 (32 KiB) */
            avgSize: Type.Integer({ minimum: 128, default: 32 * KiB }),
            /** @default 131072 (128 KiB) */
            maxSize: Type.Integer({ minimum: 256, maximum: 64 * MiB, default: 128 * KiB }),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    manifest: Type.Object(
      {
        /** Size cap checked before a manifest is parsed. @default 16777216 (16 MiB: ~460k chunks, ~225 GiB image) */
        maxBytes: Type.Integer({ minimum: 4 * KiB, maximum: 256 * MiB, default: 16 * MiB }),
      },
      { default: {}, additionalProperties: false },
    ),
    store: Type.Object(
      {
        /** Re-hash a chunk when it is read from disk. @default true */
        verifyOnRead: Type.Boolean({ default: true }),
        /**
         * Chunk writes in flight while publishing (each temp file + fsync + rename). 16 with 16 libuv threads
         * overlaps enough fsyncs to reach ~87 % of this disk's durable write rate (4: ~55 %; docs/BENCHMARKS.md).
         * @default 16
         */
        writeConcurrency: Type.Integer({ minimum: 1, maximum: 64, default: 16 }),
      },
      { default: {}, additionalProperties: false },
    ),
    head: Type.Object(
      {
        /** HTTP API and dashboard. @default "0.0.0.0:7480" */
        http: Type.String({ default: '0.0.0.0:7480', maxLength: 300 }),
        /** libp2p listen multiaddrs. @default ["/ip4/0.0.0.0/tcp/7481"] */
        listen: Type.Array(Type.String({ maxLength: 300 }), {
          default: ['/ip4/0.0.0.0/tcp/7481'],
          maxItems: 16,
        }),
        /**
         * Versions of each image `rackswarm gc` keeps (the newest); older ones go unless a channel points to them or a
         * swarm or preheat is using them. @default 3
         */
        keepVersions: Type.Integer({ minimum: 1, maximum: 10_000, default: 3 }),
        /**
         * gc leaves unreferenced chunks younger than this alone: they may be a publish's uploads whose manifest is
         * not registered yet. @default 3600
         */
        gcGraceSeconds: Type.Integer({ minimum: 0, maximum: 30 * 86_400, default: 3600 }),
        /** An HTTP request's headers must arrive within this many ms (slowloris). @default 10000 */
        httpHeadersTimeoutMs: Type.Integer({ minimum: 1000, maximum: 600_000, default: 10_000 }),
        /**
         * A whole HTTP request, body included, must arrive within this many ms: a 2 MiB chunk upload needs ≥ 18 KB/s.
         * Responses (image downloads, the dashboard's event stream) are not bounded by it. @default 120000
         */
        httpRequestTimeoutMs: Type.Integer({ minimum: 1000, maximum: 3_600_000, default: 120_000 }),
        /**
         * Per client IP, a token bucket over HTTP requests; past it, 429 RSW_ERR_RATE_LIMITED. Requests with the admin
         * token are not counted (a publish uploads thousands of chunks); nodes announce over libp2p, not HTTP, and a
         * dashboard is one event stream. A booting node makes ~5 requests; `status --watch` one a second.
         */
        httpRateLimit: Type.Object(
          {
            /** Sustained requests per second per IP; 0 turns the limit off. @default 50 */
            requestsPerSecond: Type.Number({ minimum: 0, maximum: 1_000_000, default: 50 }),
            /** Requests one IP may send at once after a quiet spell. @default 500 */
            burst: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 500 }),
            /** Client IPs tracked at most; idle full buckets go first, then the oldest. @default 10000 */
            maxClients: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 10_000 }),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    seeder: Type.Object(
      {
        /**
         * Chunk streams served at once to one peer; more get `busy`. Clients pipeline on one stream, and more streams
         * on one connection are slower (340 vs 640 MB/s, LIBP2P-NOTES.md). @default 2
         */
        maxStreamsPerPeer: Type.Integer({ minimum: 1, maximum: 256, default: 2 }),
        /**
         * Chunk streams served at once in total: each holds ~5 MiB, and one process tops out near 450-640 MB/s, so
         * serving fewer peers fast (who then re-seed) beats many slowly. @default 32
         */
        maxConcurrentTotal: Type.Integer({ minimum: 1, maximum: 65536, default: 32 }),
        /** Upload rate to one peer in bytes/s; 0 = unlimited. @default 0 */
        perPeerBytesPerSecond: Type.Integer({ minimum: 0, default: 0 }),
        /** Upload rate to all peers together in bytes/s; 0 = unlimited (the head's egress budget). @default 0 */
        totalBytesPerSecond: Type.Integer({ minimum: 0, default: 0 }),
        /** A request must arrive, and a peer must take our bytes, within this many ms (frees stalled slots). @default 10000 */
        readTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
        /**
         * Super-seeding (the head only, seeder/super-seeding.ts): for this many ms after a chunk's first send, a repeat
         * is answered `busy`, so nodes take repeats from each other; 0 turns it off. Without it, the head sent
         * 1.5-2 × the image to 16 nodes (bench/swarm.ts). @default 10000
         */
        reserveAfterMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 10_000 }),
        /**
         * Chunks the head sends at once, its streams taking turns chunk by chunk (seeder/head-serving.ts; the other
         * admitted streams wait for a turn); 0 = every stream at once. bench/sim, medians of 3 seeds, 8 against 0: one
         * rack of 16 nodes at 50 Mbit/s 1.32 against 1.51 × T_min (8 nodes 1.21 against 1.23 ×), but 2 racks × 8
         * 1.86 against 1.77 × and 1,000 nodes in 4 racks 2.99 against 2.63 × (session 8's policies). Re-measured
         * with session 14's (docs/BENCHMARKS.md, "Session 15: the head's sends at once"), 8 against 0, seeds 1-3,
         * start-up 0: 16 nodes 1.19 / 1.20 / 1.19 against 1.24 / 1.23 / 1.25 × (at 100 ms latency 1.29-1.30 against
         * 1.34-1.38 ×), 2 × 8 1.25-1.28 against 1.28-1.29 ×; 1,000 nodes in 4 racks 1.19-1.20 against 1.18-1.19 ×
         * and 10,000 in 40 racks 4.232 against 4.215 s (1.23 × both): a little worse at a head 10 × a node's link,
         * kept for the head whose link is a node's. With every stream at once 16 streams share the head's link: its
         * first chunks land together after 16 chunk-times, the nodes' uplinks idle until then; 1 at a time is held to
         * a node's share of its own downlink (16 nodes 2.1 ×), 4 lose in racks (2 × 8 1.31-1.39 ×).
         * @default 8
         */
        sendsAtOnce: Type.Integer({ minimum: 0, maximum: 65536, default: 8 }),
        /**
         * The head starts with one send at a time and allows one more for every this many sends completed, up to
         * sendsAtOnce (the first chunks reach nodes whole, early); 0 = sendsAtOnce from the start. @default 2
         */
        sendRampEvery: Type.Integer({ minimum: 0, maximum: 65536, default: 2 }),
        /**
         * The head's streams spread over the racks (seeder/rack-spread.ts): a rack (the `--rack` its nodes announce) holds
         * at most ceil(maxConcurrentTotal / racks asking) of the head's streams, a rack counting as asking for this
         * many ms after one of its nodes asked the head or announced itself fetching; more from it get `busy`, so a rack
         * that reaches the head first does not take all its slots. Longer than a node's busy back-off (250-500 ms).
         * 0 = off (first come, first served). bench/sim, 1,000 nodes in 4 racks, seeds 1-3: 1.17 / 1.17 / 1.17 against
         * 1.25 / 1.24 / 1.24 x T_min (500, 1000 and 2000 ms alike), with the nodes started at random within 1 ms
         * 1.18 / 1.22 / 1.23 against 1.20 / 1.23 / 1.24 x; 16 nodes and 2 x 8 the same output (a rack's share, 16, is
         * more than its 8 nodes ask for). docs/BENCHMARKS.md "Session 13: the head's sends spread over the racks".
         * @default 1000
         */
        rackSpreadWindowMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000 }),
      },
      { default: {}, additionalProperties: false },
    ),
    tracker: Type.Object(
      {
        /** A peer silent this long is dropped from the swarm. @default 90000 */
        peerTtlMs: Type.Integer({ minimum: 1000, default: 90_000 }),
        /** Peers handed out per announce. @default 30 */
        handoutSize: Type.Integer({ minimum: 1, maximum: 200, default: 30 }),
        /** Seconds a peer should wait before announcing again. @default 10 */
        announceIntervalSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 10 }),
        /** Tracked (peer, image) pairs at most; the longest-silent are dropped first. @default 100000 */
        maxPeers: Type.Integer({ minimum: 10, default: 100_000 }),
        /** A tracker request must arrive within this many ms. @default 10000 */
        readTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
        /** Tracker streams open at once per connection (one request each). @default 4 */
        maxInboundStreams: Type.Integer({ minimum: 1, maximum: 1024, default: 4 }),
        /** The dashboard's live stream (GET /api/events) sends one snapshot per this many ms. @default 1000 */
        dashboardIntervalMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000 }),
        /** Live dashboard streams at once; each costs one snapshot write per interval. @default 64 */
        maxEventClients: Type.Integer({ minimum: 1, maximum: 10_000, default: 64 }),
        /**
         * The head's uplink in bytes/s, for the dashboard's T_min (tracker/wave.ts); a seeder rate cap lowers it.
         * @default 1250000000 (10 Gbit/s)
         */
        headUplinkBytesPerSecond: Type.Integer({ minimum: 1, default: 1_250_000_000 }),
        /** A node's link in bytes/s (each way), for the dashboard's T_min. @default 1250000000 (10 Gbit/s) */
        nodeLinkBytesPerSecond: Type.Integer({ minimum: 1, default: 1_250_000_000 }),
      },
      { default: {}, additionalProperties: false },
    ),
    p2p: Type.Object(
      {
        /** Connections kept before libp2p's manager prunes (each idle one costs ~60-200 KB). @default 1024 */
        maxConnections: Type.Integer({ minimum: 16, maximum: 100_000, default: 1024 }),
        /**
         * Inbound connections per second from one remote host: a LAN boot storm (or peers behind one NAT address, or a
         * test on 127.0.0.1) opens many at once; libp2p's default is 5. @default 1000
         */
        inboundConnectionThreshold: Type.Integer({ minimum: 1, default: 1000 }),
        /** Inbound connections still in the Noise/Yamux upgrade at once (libp2p's default is 10). @default 256 */
        maxIncomingPendingConnections: Type.Integer({ minimum: 1, default: 256 }),
        /**
         * Connection-monitor ping interval: 10 s cost a hub ~25 % of a core with 1,000 idle connections, 60 s under
         * 1 % (LIBP2P-NOTES.md). @default 60000
         */
        pingIntervalMs: Type.Integer({ minimum: 1000, default: 60_000 }),
        /**
         * Connection encryption, in order of preference (the dialler's first choice that the listener also offers
         * wins). Both authenticate the libp2p peer id, which is what the mesh trusts; integrity never depends on it
         * (every chunk is BLAKE3-checked against the signed manifest). TLS 1.3 runs in Node's OpenSSL: ~830 MB/s per
         * connection here against Noise's ~640 (LIBP2P-NOTES.md) and less CPU per byte on the receiver (docs/BENCHMARKS.md).
         * @default ["tls", "noise"]
         */
        encryption: Type.Array(Type.Union([Type.Literal('tls'), Type.Literal('noise')]), {
          default: ['tls', 'noise'],
          minItems: 1,
          maxItems: 2,
          uniqueItems: true,
        }),
        /**
         * How chunk bodies travel. `bulk-tcp`: the client asks, over its authenticated libp2p connection, for a
         * short-lived single-use token bound to its peer id, then takes the bodies over a plain TCP connection to the
         * server's bulk port (seeder/bulk-server.ts) — the same request/response framing, no encryption or muxing, so
         * the receiver spends its CPU on BLAKE3 and the disk (one peer from the seeder: docs/BENCHMARKS.md, "Fetch";
         * libp2p's encrypted streams top out at ~830 MB/s (TLS) / ~640 (Noise) here, raw TCP at 1.6-2.9 GB/s).
         * Access control stays with the libp2p identity (no connection, no token: a connection gater gates the data
         * too), integrity with BLAKE3 against the signed manifest; the bytes are readable on the wire (use image
         * encryption where that matters). `libp2p`: bodies on /rackswarm/chunk/1.0.0 streams, encrypted. A client
         * falls back to `libp2p` by itself when a peer offers no token or its bulk port cannot be reached.
         * @default "bulk-tcp"
         */
        dataPlane: Type.Union([Type.Literal('bulk-tcp'), Type.Literal('libp2p')], { default: 'bulk-tcp' }),
        /**
         * TCP port of the bulk data plane, on the host of the node's first libp2p TCP listen address; 0 = any free
         * port (announced in each token answer, so peers need no configuration). @default 0
         */
        bulkPort: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
      },
      { default: {}, additionalProperties: false },
    ),
    mesh: Type.Object(
      {
        /**
         * Closed mesh (docs/SECURITY.md): the head and every peer admit a libp2p connection only from a peer id the
         * head has enrolled (`rackswarm enroll add`), decided by the connection gater after the TLS/Noise handshake
         * has authenticated the id and before any protocol runs; the head also releases image keys only when this is
         * on. Default false: a fresh head has enrolled nobody and its nodes hold no pinned head id yet, so closing
         * by default would refuse every node of an existing cluster (and `npm start`, the quick start) the moment it
         * upgrades. Turn it on on the head and on the nodes (`boot initramfs` bakes it) once they are enrolled.
         * @default false
         */
        closed: Type.Boolean({ default: false }),
        /**
         * Release image keys over the tracker protocol even on an open mesh, to any peer that asks — i.e. to anyone
         * who can reach the head. Only for a network that is itself closed. @default false
         */
        releaseImageKeysWhenOpen: Type.Boolean({ default: false }),
        /**
         * The head's libp2p peer id, pinned: a node dials the head only as this id, so a fake head at the head's
         * address fails the handshake (`RSW_ERR_HEAD_IDENTITY`). Required when `closed`; `fetch --head-peer-id`,
         * `boot initramfs --head-peer-id` and the kernel's `rackswarm.headid=` set it too. "" = take the id the head's
         * HTTP bootstrap names (unauthenticated: fine for an open mesh only). @default ""
         */
        headPeerId: Type.String({ default: '', maxLength: 128 }),
        /**
         * How long a peer trusts the head's answer "X is enrolled" for a peer it meets; also how often it re-asks
         * for the peers it is connected to, and hangs up on those no longer enrolled (a removal reaches the head at
         * once and every peer within this). @default 60
         */
        cacheSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60 }),
        /*
         * No `psk` (libp2p private network): @libp2p/pnet 3.0.27, the newest release on the registry, aborts a
         * connection after 50-630 MB (its XSalsa20 WebAssembly memory grows without bound; fixed upstream in
         * js-libp2p#3585, not released), cuts throughput ~3x, and its stream has no MAC, so it authenticates
         * nothing. The gater over TLS/Noise identities is the authentication.
         */
      },
      { default: {}, additionalProperties: false },
    ),
    channel: Type.Object(
      {
        /**
         * How long a signed channel pointer is valid. Short, so a head that stops passing on new pointers can hold
         * nodes on an old version only this long (freeze); re-run `channel set` (cron) well within it. @default 86400
         */
        ttlSeconds: Type.Integer({ minimum: 60, maximum: 366 * 86_400, default: 86_400 }),
      },
      { default: {}, additionalProperties: false },
    ),
    peer: Type.Object(
      {
        /** libp2p listen multiaddrs of a fetching node (it serves chunks onward). @default ["/ip4/0.0.0.0/tcp/0"] */
        listen: Type.Array(Type.String({ maxLength: 300 }), {
          default: ['/ip4/0.0.0.0/tcp/0'],
          maxItems: 16,
        }),
        /**
         * Without --linger, a node that completed keeps serving until the tracker reports no peer of its image still
         * fetching — but at most this many seconds (a head that is gone cannot say so). @default 600
         */
        lingerSeconds: Type.Integer({ minimum: 0, maximum: 86_400, default: 600 }),
        /**
         * Chunk streams a fetching node serves at once: it is downloading too, from as many sources at most
         * (`maxSources`). Few streams, each at a large share of the uplink, pass a chunk on sooner than many at a small
         * one (BitTorrent unchokes 4 too). @default 4
         */
        maxServeStreams: Type.Integer({ minimum: 1, maximum: 1024, default: 4 }),
        /**
         * Serving turnover (seeder/serve-turnover.ts): while another peer was refused `busy` within this many ms, a
         * peer served this long in a row (its pipelined batches take the slot the last one frees) is refused its next
         * batch, so the slot goes to whoever asks next. With the scheduler's hungryBackoffMs and the fetcher's wake-up
         * at a back-off's end, bench/sim's 1,000 nodes went 1.36 / 1.35 / 1.41 → 1.31 / 1.32 / 1.37 × T_min with 256
         * chunks (median node −12 %) and 1.78 / 1.63 / 1.63 → 1.61 / 1.61 / 1.62 × with 64; 16 nodes 1.26 → 1.24 ×
         * (docs/BENCHMARKS.md, "Session 11"). 0: off. @default 100
         */
        serveTurnoverMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 100 }),
        /**
         * Peers a fetching node has requests at at once, the head included (peer/scheduler.ts `maxSources`); 0: no
         * limit. With `maxServeStreams` 4: the simulator's 10,000 nodes 1.88 × T_min instead of 2.34 × (8 streams, no
         * limit), 1,000 nodes 1.66 × instead of 2.30 ×; the testbed's 16 nodes the same within its noise (idle, 5 pairs
         * of runs), 8 nodes −20 % CPU per node (docs/BENCHMARKS.md, "Issue 5 follow-up D"). @default 4
         */
        maxSources: Type.Integer({ minimum: 0, maximum: 1024, default: 4 }),
        /**
         * The pace (peer/scheduler.ts `behindShare`): a node holding at least this share of the image fewer chunks
         * than its neighbours on average, as their haves tell (/rackswarm/have/1.2.0 carries the sender's count), asks
         * again 50 ms after `busy` (`hungryBackoffMs`) instead of 250–500 ms, so the nodes behind take the serving
         * slots that free and the swarm progresses at one pace. bench/sim, 1,000 nodes with 256 chunks: 1.31 / 1.32 /
         * 1.37 → 1.25 / 1.24 / 1.24 × T_min (seeds 1–3), 5 % more events; 16 nodes and 2 × 8 even
         * (docs/BENCHMARKS.md, "Session 13"). 0: off. @default 0.005
         */
        paceBehindShare: Type.Number({ minimum: 0, maximum: 1, default: 0.005 }),
        /**
         * Batches a fetching node has in flight to one peer at once (peer/fetcher.ts): with 2 the next batch is
         * asked as soon as the scheduler's budget has room, while the current one is still arriving, and on a bulk
         * connection it waits at the server behind it — so a source's link does not idle for a round trip between
         * batches (on the testbed a batch's first chunk came 0.1–0.6 s after its time on the wire:
         * docs/BENCHMARKS.md, Session 10). To the head one when the node has a rack (its egress: with 2 the testbed's
         * 2 racks × 8 took 1.10–1.17 × the image from it). 1: one batch at a time. @default 2
         */
        pipelineBatches: Type.Integer({ minimum: 1, maximum: 2, default: 2 }),
        /**
         * A node with `--rack` sends a chunk into another rack once per this many ms (seeder/rack-reserve.ts): a repeat
         * request from that rack is answered `busy`, and the rack spreads its first copy inside. 0: off. @default 2000
         */
        rackReserveMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 2000 }),
        /**
         * Versions of each image a node's chunk cache (`fetch --cache DIR`) keeps, most recently used first: the one
         * running, the one to roll back to. 0 keeps no chunks. @default 2
         */
        cacheVersions: Type.Integer({ minimum: 0, maximum: 100, default: 2 }),
        /**
         * The chunk cache keeps its own copy of every cached version's chunks (read back from the output and re-hashed
         * after the summary: a second write of the image, ~1 CPU s per GiB), so a node can rebuild a version offline
         * even when its output was lost or overwritten behind the cache's back (a wiped disk, a RAM root after a
         * reboot). false: the output is the only seed (half the writes; an in-place update still saves what it would
         * destroy). @default true
         */
        cacheCopies: Type.Boolean({ default: true }),
        /**
         * After a fetch, re-read the whole output and hash every chunk again (~1 s of disk and CPU per GiB). Off by
         * default: every chunk is BLAKE3-checked on receipt before it is written, and recorded done only after an
         * fdatasync; turn it on for storage suspected of losing or corrupting writes. @default false
         */
        verifyWritten: Type.Boolean({ default: false }),
      },
      { default: {}, additionalProperties: false },
    ),
    boot: Type.Object(
      {
        /**
         * Kernel modules the initramfs loads (with their dependencies from modules.dep): SquashFS + loop + OverlayFS
         * for the stateless root, ext4 (+ crc32c) for identity injection after a reimage, and virtio/e1000 NICs and
         * disks (QEMU, most clouds); add real hardware's NIC and storage drivers here.
         * @default ["loop","squashfs","overlay","ext4","crc32c_generic","virtio_pci","virtio_net","virtio_blk","e1000","e1000e"]
         */
        modules: Type.Array(Type.String({ maxLength: 64 }), {
          default: [
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
          maxItems: 256,
        }),
        /**
         * Initramfs compression. zstd level 3: the 107 MB stripped Node binary packs to 38 MB in 2 s (gzip -6:
         * 41 MB in 6 s; zstd 19: 29 MB in 95 s); the Debian kernel unpacks all three. @default "zstd"
         */
        compression: Type.Union([Type.Literal('zstd'), Type.Literal('gzip'), Type.Literal('none')], {
          default: 'zstd',
        }),
        /** TCP port a booting node's peer listens on (other nodes dial it). @default 7482 */
        peerPort: Type.Integer({ minimum: 1, maximum: 65535, default: 7482 }),
        /** Mesh attempts before falling back to the head alone over HTTP. @default 3 */
        meshAttempts: Type.Integer({ minimum: 0, maximum: 20, default: 3 }),
        /** Wait before the second attempt; doubles each time. @default 2000 */
        retryBaseMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 2000 }),
        /** Seconds to wait for the network interface to appear after the driver loads. @default 30 */
        linkTimeoutSeconds: Type.Integer({ minimum: 1, maximum: 600, default: 30 }),
        /**
         * /init's last resort: if the boot agent has neither prepared the root nor failed by then, /init gives up
         * (rescue shell or reboot) — a node never hangs silently. Size it for the largest image at the slowest
         * link. @default 3600
         */
        agentTimeoutSeconds: Type.Integer({ minimum: 60, maximum: 86_400, default: 3600 }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;

/** Completes `partial` with the schema's defaults and checks it; a bad value is RSW_ERR_CONFIG_INVALID. */
export function loadConfig(partial: unknown = {}): Config {
  const value = Value.Default(ConfigSchema, Value.Clone(partial ?? {}));
  if (!Value.Check(ConfigSchema, value)) {
    const first = Value.Errors(ConfigSchema, value)[0];
    const where = first?.instancePath || '/';
    throw new RswError('RSW_ERR_CONFIG_INVALID', `${where}: ${first?.message ?? 'invalid'}`);
  }
  const c = value as Config;
  for (const [where, p] of [
    ['/chunker', c.chunker],
    ['/chunker/squashfs', c.chunker.squashfs],
  ] as const) {
    if (!(p.minSize < p.avgSize && p.avgSize < p.maxSize)) {
      throw new RswError('RSW_ERR_CONFIG_INVALID', `${where}: needs minSize < avgSize < maxSize`);
    }
  }
  return c;
}

/** The chunk sizes an image of `format` is cut with: SquashFS has its own (see the schema), the rest share one. */
export function chunkerParamsFor(
  chunker: Config['chunker'],
  format: 'squashfs' | 'raw' | 'file',
): { minSize: number; avgSize: number; maxSize: number } {
  const p = format === 'squashfs' ? chunker.squashfs : chunker;
  return { minSize: p.minSize, avgSize: p.avgSize, maxSize: p.maxSize };
}

/** Reads a JSON config file and completes it (see loadConfig). */
export function readConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RswError(
      'RSW_ERR_CONFIG_INVALID',
      `cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RswError('RSW_ERR_CONFIG_INVALID', `config file ${path} is not valid JSON`);
  }
  return loadConfig(parsed);
}
