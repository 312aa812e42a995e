import { yamux } from '@chainsafe/libp2p-yamux';
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream';

/**
 * Yamux (@chainsafe/libp2p-yamux 8) with window updates sent at half a window instead of after every data frame.
 *
 * Stock js-yamux answers every data frame it receives with a WindowUpdate frame (YamuxStream.handleData →
 * sendWindowUpdate), however small the frame. A rackswarm node's libp2p traffic is control traffic — have
 * increments of a few bytes to every neighbour, tokens, intents — so about every second frame on its libp2p
 * connections was such an update: its own TLS record and TCP segment (noDelay), and a trip through the JS-stream
 * TLS socket and the muxer on both ends (docs/BENCHMARKS.md, "Where the testbed's CPU goes"). Go, Rust and Python
 * yamux send an update only once half the receive window is used; the spec leaves when to the receiver. So here a
 * stream that is established (no SYN/ACK/FIN flag to carry) and still has more than half its receive window defers
 * the update; the first frame past half sends one that restores the whole window, as stock does (and grows the window
 * the same way when that half was used within 4 round trips). Peers running stock yamux interoperate either way:
 * a sender only ever waits for credit the receiver still owes it, and the receiver sends it by half a window.
 *
 * The streams are patched per instance, through the stream class the package exports; if the muxer or its streams
 * do not look as expected (another yamux version), they are left as they are (stock behaviour) and `patched` in
 * windowUpdateStats() stays 0.
 */
export function lazyWindowYamux(init: Parameters<typeof yamux>[0]): ReturnType<typeof yamux> {
  const factory = yamux(init);
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
          deferWindowUpdates(stream);
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
  state: StreamState;
  recvWindow: number;
  recvWindowCapacity: number;
  sendWindowUpdate: () => void;
}

function deferWindowUpdates(stream: unknown): void {
  if (!(stream instanceof YamuxStream)) return;
  const s = stream as unknown as WindowFields;
  if (
    typeof s.sendWindowUpdate !== 'function' ||
    typeof s.recvWindow !== 'number' ||
    typeof s.recvWindowCapacity !== 'number'
  )
    return;
  const send = s.sendWindowUpdate.bind(stream);
  s.sendWindowUpdate = () => {
    if (s.state === StreamState.Established && s.recvWindowCapacity * 2 > s.recvWindow) {
      stats.deferred++;
      return;
    }
    stats.sent++;
    send();
  };
  stats.patched++;
}
