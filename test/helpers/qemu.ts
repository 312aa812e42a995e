/**
 * Booting real VMs for the system tests: the Debian kernel unpacked by .ci/fetch-test-kernel (never installed on the
 * host), the initramfs built by the real `rackswarm boot initramfs`, a SquashFS test root whose init prints a marker
 * and leaves through QEMU's isa-debug-exit (a real exit code), and qemu-system-x86_64 with -accel tcg (the /dev/kvm
 * here hangs guests). Pass/fail is by that exit code and the serial console, never by QEMU's plain exit status.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { mksquashfs, seededBytes } from '../fixtures/tree.ts';
import { runCli } from './cli.ts';

/** isa-debug-exit turns a byte v written to port 0xf4 into QEMU exit status (v << 1) | 1. */
export const ROOT_OK_BYTE = 0x10;
export const ROOT_OK_EXIT = (ROOT_OK_BYTE << 1) | 1;
export const ROOT_MARKER = 'RSW-TEST-ROOT-OK';

export interface TestKernel {
  vmlinuz: string;
  modules: string;
}

/** The unpacked Debian kernel; fails loudly (with the command to fetch it) when it is not there. */
export function testKernel(): TestKernel {
  const dir = process.env.RSW_TEST_KERNEL ?? join(homedir(), '.cache', 'rackswarm-kernel');
  const boot = join(dir, 'root', 'boot');
  const vmlinuz = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
  if (!vmlinuz) {
    throw new Error(
      `no unpacked Debian kernel in ${dir}: run \`bash .ci/fetch-test-kernel ${dir}\` (apt-get download + dpkg-deb -x + depmod; nothing is installed)`,
    );
  }
  const version = vmlinuz.slice('vmlinuz-'.length);
  const modules = join(dir, 'root', 'lib', 'modules', version);
  if (!existsSync(join(modules, 'modules.dep')))
    throw new Error(`${modules}/modules.dep is missing: run \`bash .ci/fetch-test-kernel ${dir}\``);
  return { vmlinuz: join(boot, vmlinuz), modules };
}

/**
 * A SquashFS root: static busybox and an /sbin/init that prints the marker with the identity it finds, waits
 * `rsw.test.hold=SECONDS` from the kernel command line (so its peer keeps seeding for the others), then writes
 * ROOT_OK_BYTE to port 0xf4 through /dev/port (busybox dd; no compiler needed). `blobBytes` of seeded data make
 * the image big enough to have many chunks.
 */
export function makeTestRoot(dir: string, out: string, blobBytes: number, seed = 1): void {
  const root = join(dir, 'root');
  for (const d of ['bin', 'sbin', 'proc', 'sys', 'dev', 'run', 'etc', 'tmp'])
    mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  for (const a of ['sh', 'cat', 'dd', 'printf', 'grep', 'sleep', 'echo', 'sed', 'poweroff', 'stat'])
    symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(
    join(root, 'sbin/init'),
    `#!/bin/sh
echo "${ROOT_MARKER} host=$(cat /etc/hostname) machine-id=$(cat /etc/machine-id) root=$(grep ' / ' /proc/mounts | cut -d' ' -f3) ssh=$(cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null) sshmode=$(stat -c %a /etc/ssh/ssh_host_ed25519_key 2>/dev/null)"
hold=$(sed -n 's/.*rsw\\.test\\.hold=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
[ -n "$hold" ] && sleep "$hold"
printf '\\${ROOT_OK_BYTE.toString(8).padStart(3, '0')}' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
echo "RSW-TEST-ROOT: isa-debug-exit did not stop the machine"
poweroff -f
`,
  );
  chmodSync(join(root, 'sbin/init'), 0o755);
  symlinkSync('busybox', join(root, 'bin', 'cut'));
  writeFileSync(join(root, 'blob'), seededBytes(blobBytes, seed));
  mksquashfs(root, out);
}

export interface VmResult {
  /** QEMU's exit status: ROOT_OK_EXIT when the test root ran to its end. */
  code: number | null;
  log: string;
}

export interface Vm {
  proc: ChildProcess;
  /** Serial console so far. */
  log(): string;
  done: Promise<VmResult>;
  kill(): void;
  /** Types `text` on the serial console (needs `console: true`). */
  type(text: string): void;
  /** Resolves once the console shows `text`. */
  waitFor(text: string): Promise<void>;
}

export interface VmOptions {
  kernel: string;
  initrd: string;
  append: string;
  /** 'user': QEMU's own NAT, the host at 10.0.2.2, DHCP; or a tap device (in `netns`). */
  net: { kind: 'user' } | { kind: 'tap'; ifname: string; mac: string };
  netns?: string;
  /** A raw disk file attached as virtio (/dev/vda). */
  disk?: string;
  memoryMiB?: number;
  timeoutMs: number;
  /** Keep QEMU's stdin (the serial console's input) open for typing into the guest: Vm.type(). */
  console?: boolean;
}

export function startVm(o: VmOptions): Vm {
  const netdev =
    o.net.kind === 'user'
      ? ['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0']
      : [
          '-netdev',
          `tap,id=n0,ifname=${o.net.ifname},script=no,downscript=no`,
          '-device',
          `virtio-net-pci,netdev=n0,mac=${o.net.mac}`,
        ];
  const args = [
    '-accel',
    'tcg',
    '-m',
    String(o.memoryMiB ?? 1024),
    '-smp',
    '1',
    '-nographic',
    '-no-reboot',
    '-kernel',
    o.kernel,
    '-initrd',
    o.initrd,
    '-append',
    `console=ttyS0 quiet panic=-1 ${o.append}`,
    ...netdev,
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x01',
    ...(o.disk ? ['-drive', `file=${o.disk},format=raw,if=virtio`] : []),
  ];
  const cmd = o.netns ? 'ip' : 'qemu-system-x86_64';
  const argv = o.netns ? ['netns', 'exec', o.netns, 'qemu-system-x86_64', ...args] : args;
  const proc = spawn(cmd, argv, { stdio: [o.console ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout?.on('data', (d) => {
    log += d;
  });
  proc.stderr?.on('data', (d) => {
    log += d;
  });
  const timer = setTimeout(() => {
    log += `\n[test] VM killed after ${o.timeoutMs} ms\n`;
    proc.kill('SIGKILL');
  }, o.timeoutMs);
  const done = new Promise<VmResult>((resolve) => {
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, log });
    });
  });
  return {
    proc,
    log: () => log,
    done,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
    type: (text) => {
      proc.stdin?.write(text);
    },
    waitFor: (text) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (log.includes(text)) {
            proc.stdout?.off('data', check);
            resolve();
          }
        };
        proc.stdout?.on('data', check);
        void done.then(() =>
          log.includes(text) ? resolve() : reject(new Error(`VM ended without "${text}"`)),
        );
        check();
      }),
  };
}

/** JSON objects the guest printed one per line under `key` (e.g. the agent's {"fetched": …} summary). */
export function consoleJson<T>(log: string, key: string): T[] {
  const out: T[] = [];
  for (const line of log.split(/\r?\n/)) {
    const start = line.indexOf(`{"${key}":`);
    if (start < 0) continue;
    try {
      out.push(JSON.parse(line.slice(start))[key] as T);
    } catch {}
  }
  return out;
}

/** An isolated L2 segment: a network namespace with a bridge, the head on it, one tap device per VM. */
export class BridgeNet {
  readonly ns: string;
  readonly hostAddr: string;
  readonly #prefix: string;
  #taps = 0;

  constructor(name: string, prefix = '10.77.0') {
    this.ns = name;
    this.#prefix = prefix;
    this.hostAddr = `${prefix}.1`;
    const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
    ip('netns', 'add', name);
    ip('-n', name, 'link', 'set', 'lo', 'up');
    ip('-n', name, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', name, 'addr', 'add', `${this.hostAddr}/24`, 'dev', 'br0');
    ip('-n', name, 'link', 'set', 'br0', 'up');
  }

  /** A tap device on the bridge and the guest address/MAC to use with it. */
  addTap(): { ifname: string; mac: string; address: string } {
    const n = ++this.#taps;
    const ifname = `tap${n}`;
    execFileSync('ip', ['-n', this.ns, 'tuntap', 'add', ifname, 'mode', 'tap'], { stdio: 'pipe' });
    execFileSync('ip', ['-n', this.ns, 'link', 'set', ifname, 'master', 'br0', 'up'], { stdio: 'pipe' });
    return {
      ifname,
      mac: `52:54:00:77:00:${(10 + n).toString(16).padStart(2, '0')}`,
      address: `${this.#prefix}.${10 + n}`,
    };
  }

  cleanup(): void {
    execFileSync('ip', ['netns', 'del', this.ns], { stdio: 'ignore' });
  }
}

/**
 * Publisher keys under DIR/keys and DIR/initrd.img from the real `rackswarm boot initramfs` (`global` options such
 * as `--config FILE` go before the command); throws with the command's stderr when it fails.
 */
export async function buildTestInitramfs(
  dir: string,
  kernel: TestKernel,
  /** `extra`: more `boot initramfs` options (e.g. the closed mesh's --closed --head-peer-id). */
  opts: { global?: string[]; json?: boolean; extra?: string[] } = {},
): Promise<{ keys: string; initrd: string; stdout: string; stderr: string }> {
  const keys = join(dir, 'keys');
  const k = await runCli(['keys', 'generate', '--out', keys]);
  if (k.code !== 0) throw new Error(`keys generate failed: ${k.stderr}`);
  const initrd = join(dir, 'initrd.img');
  const built = await runCli(
    [
      ...(opts.global ?? []),
      'boot',
      'initramfs',
      '--out',
      initrd,
      '--trust',
      join(keys, 'publisher.pub'),
      '--kernel-modules',
      kernel.modules,
      ...(opts.json ? ['--json'] : []),
      ...(opts.extra ?? []),
    ],
    { timeoutMs: 120_000 },
  );
  if (built.code !== 0) throw new Error(`boot initramfs failed: ${built.stderr}`);
  return { keys, initrd, stdout: built.stdout, stderr: built.stderr };
}
