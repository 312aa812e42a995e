/**
 * Which kernel modules go into the initramfs, and in which order /init loads them. Input: a modules tree
 * (`lib/modules/VERSION` as unpacked from Debian's linux-image .deb, after `depmod -b ROOT VERSION` wrote its
 * modules.dep) and the wanted module names. Output: the module files, every dependency before its users. Modules the
 * kernel has built in (modules.builtin) need nothing. Pure: the caller reads the files.
 */
import { RswError } from '../core/errors.ts';

export interface ModuleIndex {
  /** Module name (underscores) → path relative to the modules tree and its direct-or-transitive deps (names). */
  modules: Map<string, { path: string; deps: string[] }>;
  builtin: Set<string>;
}

/** `virtio-net`, `virtio_net.ko` and `kernel/drivers/net/virtio_net.ko` all name `virtio_net`. */
export function moduleName(pathOrName: string): string {
  const base = pathOrName.slice(pathOrName.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

/** Parses modules.dep (`path: dep-path dep-path…` per line) and modules.builtin (one path per line). */
export function parseModuleIndex(modulesDep: string, modulesBuiltin = ''): ModuleIndex {
  const modules = new Map<string, { path: string; deps: string[] }>();
  for (const line of modulesDep.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon < 0)
      throw new RswError('RSW_ERR_KERNEL_MODULE', `modules.dep: bad line ${JSON.stringify(line)}`);
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter((d) => d !== '')
      .map(moduleName);
    modules.set(moduleName(path), { path, deps });
  }
  const builtin = new Set(
    modulesBuiltin
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(moduleName),
  );
  return { modules, builtin };
}

/**
 * The module files to load for `wanted`, dependencies first (depth-first, post-order over each module's own
 * modules.dep line), each once. Throws RSW_ERR_KERNEL_MODULE for a name the tree neither has nor builds in.
 */
export function resolveModules(index: ModuleIndex, wanted: readonly string[]): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string, from?: string): void => {
    if (done.has(name)) return;
    const m = index.modules.get(name);
    if (!m) {
      if (index.builtin.has(name)) {
        done.add(name);
        return;
      }
      throw new RswError(
        'RSW_ERR_KERNEL_MODULE',
        from
          ? `module ${from} needs ${name}, which is not in modules.dep`
          : `no kernel module ${name} in this modules tree (not in modules.dep or modules.builtin)`,
      );
    }
    if (visiting.has(name))
      throw new RswError('RSW_ERR_KERNEL_MODULE', `modules.dep has a cycle through ${name}`);
    visiting.add(name);
    for (const d of m.deps) visit(d, name);
    visiting.delete(name);
    done.add(name);
    order.push(m.path);
  };
  for (const w of wanted) visit(moduleName(w));
  return order;
}
