import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { moduleName, parseModuleIndex, resolveModules } from '../../boot/modules.ts';

// The shape of Debian 6.1's modules.dep (after depmod -b), trimmed.
const DEP = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/fs/squashfs/squashfs.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
`;
const BUILTIN = 'kernel/drivers/block/loop.ko\nkernel/net/packet/af_packet.ko\n';

describe('kernel module resolver', () => {
  const index = parseModuleIndex(DEP, BUILTIN);

  it('orders every dependency before its users, each module once', () => {
    expect(resolveModules(index, ['virtio-net', 'virtio_pci', 'squashfs']).map(moduleName)).toEqual([
      'failover',
      'net_failover',
      'virtio',
      'virtio_ring',
      'virtio_net',
      'virtio_pci_legacy_dev',
      'virtio_pci_modern_dev',
      'virtio_pci',
      'squashfs',
    ]);
  });

  it('needs nothing for built-in modules', () => {
    expect(resolveModules(index, ['loop', 'af_packet'])).toEqual([]);
  });

  it('names the missing module (and who needs it)', () => {
    expect(() => resolveModules(index, ['nbd'])).toThrow(/no kernel module nbd/);
    const broken = parseModuleIndex('kernel/a.ko: kernel/b.ko\n');
    expect(() => resolveModules(broken, ['a'])).toThrow(/module a needs b/);
  });

  it('property: for any wanted subset, a module comes after all of its modules.dep entries', () => {
    const names = [...index.modules.keys()];
    fc.assert(
      fc.property(fc.subarray(names), (wanted) => {
        const order = resolveModules(index, wanted).map(moduleName);
        expect(new Set(order).size).toBe(order.length);
        for (const w of wanted) expect(order).toContain(w);
        order.forEach((m, i) => {
          for (const d of index.modules.get(m)?.deps ?? []) expect(order.indexOf(d)).toBeLessThan(i);
        });
      }),
    );
  });
});
