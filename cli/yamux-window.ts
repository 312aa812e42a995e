import { yamux } from '@chainsafe/libp2p-yamux';
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream';
import { count } from '../core/counters.ts';

/**
 * Data frames up to this many bytes on a deferring stream (the have exchange's: its haves, bitfields and intents) do
 * not draw a window update of their own while the stream still has more than half its receive window; a larger
 * frame is answered as stock yamux does.
 */
export const SMALL_FRAME_BYTES = 4096;

/**
 * Yamux (@chainsafe/libp2p-yamux 8) whose streams do not answer every small data frame with a window update.
 *
 * Stock js-yamux answers every data frame it receives with a WindowUpdate frame (YamuxStream.handleData →
 * sendWindowUpdate), however small the frame. A rackswarm node's libp2p traffic is control traffic — have
 * increments of a few bytes to every neighbour — so at N = 16 a node received ~1,040 data frames and sent ~1,120
 * window updates, about half of the frames on its libp2p connections both ways (RSW_COUNTERS=1, docs/BENCHMARKS.md
 * "Session 12"): each update its own TLS record and write(2) on this side and a read, a TLS record and a trip through
 * the muxer on the other. Go, Rust and Python yamux send an update only once half the receive window is used; the
 * spec leaves when to the receiver. Here a small frame (≤ SMALL_FRAME_BYTES, after a small one or none) on an
 * established stream (no SYN/ACK flag to carry) with more than half its receive window left defers the update; the
 * first frame past half — or any larger frame — sends one that restores the whole window, as stock does. Large frames are answered exactly as stock
 * (session 8's version deferred them too, and the window's growth with them; it was reverted for a tail at N = 8 that
 * was not explained). Peers running stock yamux interoperate either way: a sender only ever waits for credit the
 * receiver still owes it, and the receiver sends it by half a window.
 *
 * Only streams of `protocols` (the have exchange's: once the protocol is chosen) defer. On every stream, the testbed
 * with the libp2p data plane (`{"p2p":{"dataPlane":"libp2p"}}`, 2 pairs against main, 05:08–05:10 UTC under load)
 * took 2.75 / 2.35 × against 2.37 / 2.07 ×, a node 1.97 / 1.69 against 1.74 / 1.43 CPU s, the head 1.30 / 1.14 against
 * 1.05 / 0.77 s; and one stream's first 64 MiB after 2,200 deferring round trips in the same process went at 350–370
 * against 430–460 MB/s (`node bench/libp2p-tls.ts`; equal from the second 64 MiB on: a warm-up cost, cause not found).
 *
 * The streams are patched per instance, through the stream class the package exports; a stream that does not look as
 * expected (another yamux version) is left as it is (stock behaviour), and windowUpdateStats().patched says so.
 */
export function smallFrameYamux(
  init: Parameters<typeof yamux>[0],
  protocols: readonly string[],
): ReturnType<typeof yamux> {
  const factory = yamux(init);
  const deferring = new Set(protocols);
  return () => {
    const muxerFactory = factory();
    const create = muxerFactory.createStreamMuxer.bind(muxerFactory);
    muxerFactory.createStreamMuxer = (maConn) => {
      const muxer = create(maConn);
      const m = muxer as unknown as { _newStream?: (...args: unknown[]) => unknown };
      const newStream = m._newStream;
      if (typeof newStream === 'function') {
        m._newStream = (...args: unknown[]) => {
          const stream = newStream.apply(muxer, args);
          deferSmallFrameUpdates(stream, deferring);
          return stream;
        };
      }
      return muxer;
    };
    return muxerFactory;
  };
}

const stats = { patched: 0, sent: 0, deferred: 0 };

/** Streams patched, window updates passed on to yamux and deferred, in this process (for tests and benchmarks). */
export function windowUpdateStats(): { patched: number; sent: number; deferred: number } {
  return { ...stats };
}

interface WindowFields {
  protocol?: string;
  state: StreamState;
  recvWindow: number;
  recvWindowCapacity: number;
  sendWindowUpdate: () => void;
  handleData: (frame: { header: { length: number } }) => void;
}

function deferSmallFrameUpdates(stream: unknown, protocols: ReadonlySet<string>): void {
  if (!(stream instanceof YamuxStream)) return;
  const s = stream as unknown as WindowFields;
  if (
    typeof s.sendWindowUpdate !== 'function' ||
    typeof s.handleData !== 'function' ||
    typeof s.recvWindow !== 'number' ||
    typeof s.recvWindowCapacity !== 'number'
  )
    return;
  const handle = s.handleData.bind(stream);
  const send = s.sendWindowUpdate.bind(stream);
  /**
   * The data frame being handled is small and so was the one before it on this stream (set around stock handleData,
   * which calls sendWindowUpdate). A small frame right after a large one is the tail of a bulk send that ran into the
   * window (one libp2p stream, 64 MiB in 256 KiB writes: 114 of 369 frames ≤ 4 KiB): its update goes out as stock.
   */
  let small = false;
  let lastLarge = false;
  s.handleData = (frame) => {
    const isSmall = frame.header.length <= SMALL_FRAME_BYTES;
    small = isSmall && !lastLarge && protocols.has(s.protocol ?? '');
    lastLarge = !isSmall;
    try {
      handle(frame);
    } finally {
      small = false;
    }
  };
  s.sendWindowUpdate = () => {
    if (small && s.state === StreamState.Established && s.recvWindowCapacity * 2 > s.recvWindow) {
      stats.deferred++;
      count('yamux.windowUpdate.deferred');
      return;
    }
    stats.sent++;
    send();
  };
  stats.patched++;
}
