// Worker side of HashPool: BLAKE3 of each buffer it is handed, which it hands back (transferred, not copied).
import { parentPort } from 'node:worker_threads';
import { blake3 } from '@napi-rs/blake-hash';

parentPort?.on('message', (msg: { id: number; buf: ArrayBuffer }) => {
  const hash = blake3(Buffer.from(msg.buf)).toString('hex');
  parentPort?.postMessage({ id: msg.id, hash, buf: msg.buf }, [msg.buf]);
});
