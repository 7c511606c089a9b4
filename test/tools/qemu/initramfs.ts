/**
 * A tiny Linux guest for passt under QEMU: the machine's own distribution
 * kernel (/boot/vmlinuz-VERSION with its /lib/modules/VERSION), and an
 * initramfs written here (cpio "newc", uncompressed) with a static busybox,
 * the virtio-net driver and the modules it needs, and a /init script.
 *
 *   const k = findGuest();                 // { ok: false, reason } when something is missing
 *   buildInitramfs(file, k, initScript);   // then: qemu -kernel k.kernel -initrd file
 *
 * Nothing of the machine is changed: the kernel and modules are only read.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Modules the guest loads, in this order after their dependencies (those built in are skipped). */
export const GUEST_MODULES = ["virtio_pci", "virtio_net"];
const BUSYBOX_PATHS = ["/bin/busybox", "/usr/bin/busybox", "/usr/lib/busybox/busybox-static"];

export interface GuestKernel {
  kernel: string;
  version: string;
  /** module files (absolute paths) in load order */
  modules: string[];
  busybox: string;
}

export type GuestCheck = ({ ok: true } & GuestKernel) | { ok: false; reason: string };

/** The QEMU binary, the kernel, modules and busybox for the guest, or why not. */
export function findGuest(): GuestCheck {
  const fail = (reason: string): GuestCheck => ({ ok: false, reason });
  if (process.arch !== "x64") return fail(`this test boots an x86-64 guest; the machine is ${process.arch}`);
  if (!Bun.which("qemu-system-x86_64")) return fail("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)");
  const busybox = BUSYBOX_PATHS.find((p) => existsSync(p) && isStaticElf(p));
  if (!busybox) return fail("no statically linked busybox (Debian: busybox-static)");
  let versions: string[] = [];
  try {
    versions = readdirSync("/boot")
      .filter((f) => f.startsWith("vmlinuz-"))
      .map((f) => f.slice("vmlinuz-".length));
  } catch {
    /* no /boot */
  }
  const usable = versions.filter((v) => existsSync(join("/lib/modules", v, "modules.dep"))).sort();
  if (usable.length === 0) return fail("no kernel in /boot with its modules in /lib/modules (Debian: linux-image-amd64)");
  const version = usable[usable.length - 1]!;
  const kernel = join("/boot", `vmlinuz-${version}`);
  try {
    readFileSync(kernel).subarray(0, 1);
  } catch (e) {
    return fail(`cannot read ${kernel}: ${(e as Error).message}`);
  }
  const mods = moduleClosure(version, GUEST_MODULES);
  if (typeof mods === "string") return fail(mods);
  return { ok: true, kernel, version, modules: mods, busybox };
}

/** True for an ELF executable without a program interpreter (PT_INTERP). */
function isStaticElf(path: string): boolean {
  const b = readFileSync(path);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (o + 4 <= b.length && b.readUInt32LE(o) === 3) return false;
  }
  return true;
}

/**
 * The module files for names and everything they depend on, dependencies
 * first, from modules.dep; built-in modules (modules.builtin) are left out.
 * Returns an error message when one is neither a module nor built in.
 */
function moduleClosure(version: string, names: string[]): string[] | string {
  const dir = join("/lib/modules", version);
  const deps = new Map<string, string[]>();
  for (const line of readFileSync(join(dir, "modules.dep"), "utf8").split("\n")) {
    const m = line.match(/^([^:]+):\s*(.*)$/);
    if (m) deps.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
  }
  let builtin = "";
  try {
    builtin = readFileSync(join(dir, "modules.builtin"), "utf8");
  } catch {
    /* none */
  }
  const byName = new Map<string, string>();
  for (const rel of deps.keys()) byName.set(modName(rel), rel);
  const order: string[] = [];
  const visit = (rel: string) => {
    if (order.includes(rel)) return;
    for (const d of deps.get(rel) ?? []) visit(d);
    order.push(rel);
  };
  for (const n of names) {
    const rel = byName.get(n);
    if (rel) visit(rel);
    else if (!builtin.split("\n").some((l) => modName(l) === n)) return `kernel ${version} has no ${n} module`;
  }
  return order.map((rel) => join(dir, rel));
}

/** "kernel/drivers/net/virtio_net.ko.xz" → "virtio_net" (dashes and underscores are the same to the kernel). */
function modName(rel: string): string {
  const base = rel.slice(rel.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}

/** A module's bytes, uncompressed (busybox insmod takes plain .ko files only). */
function moduleBytes(path: string): Uint8Array {
  if (path.endsWith(".ko")) return readFileSync(path);
  const tool = path.endsWith(".xz") ? ["xz", "-dc"] : path.endsWith(".zst") ? ["zstd", "-dc"] : ["gzip", "-dc"];
  return execFileSync(tool[0]!, [...tool.slice(1), path], { maxBuffer: 64 << 20 });
}

// ---------------------------------------------------------------- cpio

interface Entry {
  name: string;
  mode: number;
  data?: Uint8Array;
  rdev?: [number, number];
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;
const S_IFLNK = 0o120000;

/** An uncompressed cpio archive in the "newc" format the kernel unpacks. */
function cpio(entries: Entry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    size += b.length;
    const pad = (4 - (size % 4)) % 4;
    if (pad) {
      parts.push(new Uint8Array(pad));
      size += pad;
    }
  };
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  let ino = 1;
  for (const e of [...entries, { name: "TRAILER!!!", mode: 0 }]) {
    const data = e.data ?? new Uint8Array(0);
    const name = new TextEncoder().encode(e.name + "\0");
    const [maj, min] = (e as Entry).rdev ?? [0, 0];
    const fields = [ino++, e.mode, 0, 0, e.mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, maj, min, name.length, 0];
    const hdr = new TextEncoder().encode("070701" + fields.map(hex).join(""));
    const h = new Uint8Array(hdr.length + name.length);
    h.set(hdr);
    h.set(name, hdr.length);
    push(h);
    if (data.length) push(data);
  }
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Write the initramfs to file: busybox (with its applets linked in /bin),
 * the modules in /lib/modules (load them in the order of `k.modules`, named
 * by basename, see MODULE_LIST), /dev/console, and `init` as /init.
 * Extra files go in as given (path in the guest → content).
 */
export function buildInitramfs(file: string, k: GuestKernel, init: string, extra: Record<string, string> = {}): void {
  const enc = new TextEncoder();
  const entries: Entry[] = [];
  for (const d of ["bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules", "usr", "usr/bin", "usr/sbin"]) {
    entries.push({ name: d, mode: S_IFDIR | 0o755 });
  }
  entries.push({ name: "dev/console", mode: S_IFCHR | 0o600, rdev: [5, 1] });
  entries.push({ name: "dev/null", mode: S_IFCHR | 0o666, rdev: [1, 3] });
  entries.push({ name: "bin/busybox", mode: S_IFREG | 0o755, data: readFileSync(k.busybox) });
  entries.push({ name: "bin/sh", mode: S_IFLNK | 0o777, data: enc.encode("busybox") });
  const names: string[] = [];
  for (const m of k.modules) {
    const base = m.slice(m.lastIndexOf("/") + 1).replace(/\.ko(\.(xz|zst|gz))?$/, ".ko");
    names.push(base);
    entries.push({ name: `lib/modules/${base}`, mode: S_IFREG | 0o644, data: moduleBytes(m) });
  }
  entries.push({ name: MODULE_LIST.slice(1), mode: S_IFREG | 0o644, data: enc.encode(names.join("\n") + "\n") });
  for (const [p, content] of Object.entries(extra))
    entries.push({ name: p.replace(/^\//, ""), mode: S_IFREG | 0o755, data: enc.encode(content) });
  entries.push({ name: "init", mode: S_IFREG | 0o755, data: enc.encode(init) });
  writeFileSync(file, cpio(entries));
}

/** File in the guest listing the module files to insmod, in order. */
export const MODULE_LIST = "/lib/modules/order";
