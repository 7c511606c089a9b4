/**
 * Loader for the C shim (native/shim.c) and thin typed wrappers.
 *
 * Two ways to get the library, tried in this order:
 * 1. native/build/libshim.so, built by the system compiler at `bun install`;
 * 2. the same source compiled at start-up by bun:ffi's TinyCC (`cc`), when the
 *    library is missing (no compiler at install time).
 * The standalone executable (`bun run build`) carries both files inside it
 * and loads them the same way, from a temporary copy.
 * PASTA_SHIM=lib or PASTA_SHIM=tcc forces one way (tests check both).
 *
 * 32-bit arguments are declared i32 even where C takes them unsigned, and
 * callers pass `x | 0`: TinyCC-compiled wrappers read a u32 argument of 2^31
 * or more wrongly (Bun passes such numbers as doubles).
 *
 * Every shim call returns -errno on failure; `sys` re-exports them unchanged so
 * the data path can test `rc < 0` without exceptions or allocation.
 */
import { cc, dlopen, FFIType } from "bun:ffi";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { EMBEDDED_DIR, isStandalone } from "../self.ts";

const NATIVE_DIR = join(import.meta.dir, "..", "..", "native");
const LIB_PATH = join(NATIVE_DIR, "build", "libshim.so");
const SOURCE_PATH = join(NATIVE_DIR, "shim.c");
/** In the standalone executable (bun run build), both are embedded next to the code. */
const EMBEDDED_LIB = join(EMBEDDED_DIR, "libshim.so");
const EMBEDDED_SOURCE = join(EMBEDDED_DIR, "shim.c");
const SHIM_VERSION = 20;

const { i32, u32, f64, ptr } = FFIType;

const symbols = {
  shim_version: { args: [], returns: i32 },
  shim_epoll_create: { args: [], returns: i32 },
  shim_epoll_ctl: { args: [i32, i32, i32, i32, i32], returns: i32 },
  shim_epoll_wait: { args: [i32, ptr, i32, i32], returns: i32 },
  shim_socket: { args: [i32, i32, i32], returns: i32 },
  shim_close: { args: [i32], returns: i32 },
  shim_bind: { args: [i32, ptr, i32], returns: i32 },
  shim_connect: { args: [i32, ptr, i32], returns: i32 },
  shim_listen: { args: [i32, i32], returns: i32 },
  shim_shutdown: { args: [i32, i32], returns: i32 },
  shim_accept: { args: [i32, ptr, ptr], returns: i32 },
  shim_setsockopt: { args: [i32, i32, i32, ptr, i32], returns: i32 },
  shim_getsockopt: { args: [i32, i32, i32, ptr, ptr], returns: i32 },
  shim_getsockname: { args: [i32, ptr, ptr], returns: i32 },
  shim_send: { args: [i32, ptr, i32, i32], returns: i32 },
  shim_recv: { args: [i32, ptr, i32, i32], returns: i32 },
  shim_sendto: { args: [i32, ptr, i32, i32, ptr, i32], returns: i32 },
  shim_recvfrom: { args: [i32, ptr, i32, i32, ptr, ptr], returns: i32 },
  shim_read: { args: [i32, ptr, i32], returns: i32 },
  shim_write: { args: [i32, ptr, i32], returns: i32 },
  shim_set_nonblock: { args: [i32], returns: i32 },
  shim_raise_nofile: { args: [], returns: i32 },
  shim_getuid: { args: [], returns: i32 },
  shim_getgid: { args: [], returns: i32 },
  shim_geteuid: { args: [], returns: i32 },
  shim_open: { args: [ptr, i32], returns: i32 },
  shim_dup2: { args: [i32, i32], returns: i32 },
  shim_inotify_dir: { args: [ptr, i32], returns: i32 },
  shim_setenv: { args: [ptr, ptr], returns: i32 },
  shim_ns_socket: { args: [i32, i32, i32, i32], returns: i32 },
  shim_ns_open: { args: [i32, ptr, i32], returns: i32 },
  shim_ns_tap_open: { args: [i32, ptr, i32, ptr], returns: i32 },
  shim_ns_socket_batch: { args: [i32, i32, i32, i32, i32, ptr], returns: i32 },
  shim_tap_set_vnet_hdr_sz: { args: [i32, i32], returns: i32 },
  shim_tap_set_offload: { args: [i32, i32], returns: i32 },
  shim_release: { args: [ptr, i32], returns: i32 },
  shim_read_batch: { args: [i32, ptr, i32, i32, ptr], returns: i32 },
  shim_write_batch: { args: [i32, ptr, ptr, i32], returns: i32 },
  shim_csum: { args: [ptr, i32, i32], returns: u32 },
  shim_signal_pipe: { args: [ptr, i32], returns: i32 },
  shim_pidfd_open: { args: [i32], returns: i32 },
  shim_kill: { args: [i32, i32], returns: i32 },
  shim_waitpid: { args: [i32, ptr], returns: i32 },
  shim_spawn_ns: { args: [ptr, i32, i32, ptr, ptr], returns: i32 },
  shim_execvp: { args: [ptr, i32], returns: i32 },
  shim_tcp_peek: { args: [i32, ptr, i32, i32, i32, i32, i32, i32], returns: i32 },
  shim_tcp_peek_iov: { args: [i32, ptr, ptr, i32, i32], returns: i32 },
  shim_tcp_discard: { args: [i32, i32], returns: i32 },
  shim_tcp_sndspace: { args: [i32], returns: i32 },
  shim_sock_error: { args: [i32], returns: i32 },
  shim_setsockopt_int: { args: [i32, i32, i32, i32], returns: i32 },
  shim_abort_close: { args: [i32], returns: i32 },
  shim_udp_recv_batch: { args: [i32, ptr, i32, i32, i32, i32, ptr, ptr], returns: i32 },
  shim_udp_send_batch: { args: [i32, ptr, ptr, i32, ptr], returns: i32 },
  shim_pipe: { args: [ptr, i32], returns: i32 },
  shim_splice_pump: { args: [i32, i32, i32, i32, ptr, i32], returns: i32 },
  shim_send_frames: { args: [i32, ptr, ptr, i32, i32], returns: i32 },
  shim_socketpair: { args: [ptr], returns: i32 },
  shim_drop_privileges: { args: [i32, i32], returns: i32 },
  shim_set_nofile: { args: [i32], returns: i32 },
  shim_sandbox: { args: [], returns: i32 },
  shim_udp_send_gso: { args: [i32, ptr, ptr, i32, ptr], returns: i32 },
  shim_udp_csum_fill: { args: [ptr, i32, i32], returns: u32 },
  shim_tcp_segments: { args: [ptr, i32, i32, i32, i32, i32, i32, i32, i32], returns: i32 },
  shim_tcp_frames_at: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32, i32], returns: i32 },
  shim_recv_fds: { args: [i32, ptr, i32, ptr, i32], returns: i32 },
  shim_map_shared: { args: [i32, f64], returns: ptr },
  shim_map_private: { args: [f64], returns: ptr },
  shim_unmap: { args: [ptr, f64], returns: i32 },
  shim_copy: { args: [ptr, ptr, i32], returns: i32 },
  shim_eventfd: { args: [], returns: i32 },
  shim_send_fds: { args: [i32, ptr, i32, ptr, i32], returns: i32 },
  shim_memfd: { args: [i32], returns: i32 },
} as const;

export type ShimKind = "lib" | "tcc";

function load(): { kind: ShimKind; fns: ReturnType<typeof dlopen<typeof symbols>>["symbols"] } {
  const want = process.env.PASTA_SHIM;
  const libPath = isStandalone ? EMBEDDED_LIB : LIB_PATH;
  if (want !== "tcc" && existsSync(libPath)) {
    const lib = isStandalone ? withRealCopy(libPath, (p) => dlopen(p, symbols)) : dlopen(libPath, symbols);
    if (lib.symbols.shim_version() === SHIM_VERSION) return { kind: "lib", fns: lib.symbols };
    lib.close();
    if (want === "lib") throw new Error(`${libPath} is out of date: run 'bun run build:native'`);
  } else if (want === "lib") {
    throw new Error(`${libPath} not found: run 'bun run build:native'`);
  }
  const compile = (source: string) => cc({ source, symbols, library: ["pthread"] });
  const lib = isStandalone ? withRealCopy(EMBEDDED_SOURCE, compile) : compile(SOURCE_PATH);
  return { kind: "tcc", fns: lib.symbols };
}

/**
 * Run use() on a copy of the embedded file at path in the real file system
 * (dlopen and TinyCC read files through the kernel, not Bun's embedded file
 * system); the copy is removed once used (a loaded library stays mapped).
 */
function withRealCopy<T>(path: string, use: (copy: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "pasta-shim-"));
  const copy = join(dir, basename(path));
  try {
    writeFileSync(copy, readFileSync(path), { mode: 0o600 });
    return use(copy);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const loaded = load();

/** Which way the shim was loaded: the prebuilt library or TinyCC at start-up. */
export const shimKind: ShimKind = loaded.kind;

/** The raw shim functions: each returns -errno on failure. */
export const sys = loaded.fns;

/** Encode strings as one NUL-separated blob, the form shim_spawn_ns/execvp take. */
export function argBlob(args: string[]): Uint8Array {
  return new TextEncoder().encode(args.map((a) => a + "\0").join(""));
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

/** Throw a readable Error for a negative shim result; return it otherwise. */
export function check(rc: number, what: string): number {
  if (rc < 0) throw new Error(`${what}: ${errnoName(-rc)}`);
  return rc;
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM (operation not permitted)",
  2: "ENOENT (no such file or directory)",
  3: "ESRCH (no such process)",
  4: "EINTR",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES (permission denied)",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV (no such device)",
  22: "EINVAL (invalid argument)",
  24: "EMFILE (too many open files)",
  28: "ENOSPC",
  32: "EPIPE",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE (address already in use)",
  99: "EADDRNOTAVAIL (cannot assign requested address)",
  101: "ENETUNREACH",
  104: "ECONNRESET",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
  115: "EINPROGRESS",
};

export function errnoName(e: number): string {
  return ERRNO_NAMES[e] ?? `errno ${e}`;
}
