/**
 * Network boot from the head (DESIGN.md "HTTP API": GET /boot/…):
 *   GET /boot/ipxe?image=NAME[@V]&mode=stateless|reimage[&disk=/dev/…][&rack=R][&rescue=1]
 *       an iPXE script that loads the kernel and the initramfs from this head with the kernel command line the boot
 *       agent reads (core/boot-cmdline.ts writes it, so what the head writes is what a node parses);
 *   GET /boot/kernel, GET /boot/initramfs   the files the operator put in DATA/boot/ (vmlinuz, initramfs);
 *   GET /boot/images/NAME/VERSION|latest    the image's bytes in chunk order, from the chunk store — the head-only
 *       fallback of a booting node, which checks each chunk against the signed manifest as it arrives;
 *   GET /boot/nodes/MAC/ssh-host-keys       the node's own SSH host key (tracker/ssh-host-keys.ts), kept in
 *       DATA/boot/nodes/ so it survives the node's stateless reboots and is never part of the shared image.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { type BootParams, formatBootCmdline, parseBootCmdline } from '../core/boot-cmdline.ts';
import { isRswError, RswError } from '../core/errors.ts';
import { envelopeSigner, openSignedManifest } from '../core/signed-manifest.ts';
import type { ChunkStore } from '../core/store.ts';
import { imageVersionParams } from './image-params.ts';
import type { ImageRecord, Registry } from './registry.ts';
import { loadOrCreateSshHostKey } from './ssh-host-keys.ts';

export interface BootRoutesDeps {
  registry: Registry;
  store: ChunkStore;
  findVersion: (name: string, version: string) => Promise<ImageRecord>;
  maxManifestBytes: number;
  /** Where the kernel (`vmlinuz`) and initramfs (`initramfs`) are served from; absent: those two answer 404. */
  bootDir?: string;
}

const BOOT_FILES = { kernel: 'vmlinuz', initramfs: 'initramfs' } as const;

export function registerBootRoutes(app: FastifyInstance, deps: BootRoutesDeps): void {
  app.get<{ Querystring: Record<string, string> }>(
    '/boot/ipxe',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: Object.fromEntries(
            ['image', 'mode', 'disk', 'rack', 'rescue', 'linger'].map((k) => [
              k,
              { type: 'string', maxLength: 200 },
            ]),
          ),
          required: ['image', 'mode'],
          additionalProperties: false,
        },
      },
    },
    async (req, reply) => {
      const base = `${req.protocol}://${req.headers.host}`;
      const q = req.query;
      // Parsed exactly as the node will parse it: a bad request is refused here, not at boot.
      const words = [`rackswarm.head=${base}`, `rackswarm.image=${q.image}`, `rackswarm.mode=${q.mode}`];
      for (const k of ['disk', 'rack', 'rescue', 'linger'] as const)
        if (q[k] !== undefined) words.push(`rackswarm.${k}=${q[k]}`);
      let params: BootParams;
      try {
        params = parseBootCmdline(words.join(' '));
      } catch (e) {
        if (isRswError(e)) throw new RswError('RSW_ERR_BAD_REQUEST', e.message);
        throw e;
      }
      reply.header('content-type', 'text/plain; charset=utf-8');
      return [
        '#!ipxe',
        `# rackswarm: ${params.mode} boot of ${q.image}`,
        `kernel ${base}/boot/kernel initrd=initramfs console=tty0 console=ttyS0 ${formatBootCmdline(params)}`,
        `initrd --name initramfs ${base}/boot/initramfs`,
        'boot',
        '',
      ].join('\n');
    },
  );

  for (const [route, file] of Object.entries(BOOT_FILES)) {
    app.get(`/boot/${route}`, async (_req, reply) => {
      const path = deps.bootDir ? join(deps.bootDir, file) : undefined;
      const size = path
        ? await stat(path).then(
            (s) => (s.isFile() ? s.size : -1),
            () => -1,
          )
        : -1;
      if (!path || size < 0)
        throw new RswError(
          'RSW_ERR_FILE_NOT_FOUND',
          `no ${route} to serve: put it at ${path ?? 'DATA/boot/'}${path ? '' : file}`,
        );
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-length', String(size));
      return reply.send(createReadStream(path));
    });
  }

  app.get<{ Params: { mac: string } }>(
    '/boot/nodes/:mac/ssh-host-keys',
    { schema: { params: { type: 'object', properties: { mac: { type: 'string', maxLength: 40 } } } } },
    async (req) => {
      if (!deps.bootDir) throw new RswError('RSW_ERR_NOT_FOUND', 'this head keeps no node identities');
      return { ed25519: await loadOrCreateSshHostKey(deps.bootDir, req.params.mac) };
    },
  );

  app.get<{ Params: { name: string; version: string } }>(
    '/boot/images/:name/:version',
    {
      schema: {
        params: imageVersionParams,
      },
    },
    async (req, reply) => {
      const record = await deps.findVersion(req.params.name, req.params.version);
      const envelope = await deps.registry.envelope(record.id);
      if (!envelope) throw new RswError('RSW_ERR_IMAGE_NOT_FOUND', `manifest ${record.id} is missing`);
      // Registered manifests were verified on the way in; this only decodes the chunk list.
      const m = openSignedManifest(envelope, [envelopeSigner(envelope)], {
        maxBytes: deps.maxManifestBytes,
      }).manifest;
      const store = deps.store;
      async function* body() {
        for (const c of m.chunks) yield await store.get(c.hash);
      }
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-length', String(m.size));
      reply.header('x-rackswarm-image-id', record.id);
      return reply.send(Readable.from(body()));
    },
  );
}
