/**
 * Namespaces: where pasta's guest lives, and how we get the rights to it.
 *
 * Theory of operation
 * -------------------
 * pasta needs CAP_SYS_ADMIN and CAP_NET_ADMIN over the guest's network
 * namespace (to create a tap there and configure it) but none on the host. An
 * unprivileged user gets them by living in a user namespace of its own, where
 * its uid maps to 0. The kernel refuses unshare(CLONE_NEWUSER) and
 * setns(CLONE_NEWUSER) to a multi-threaded process, and Bun has threads from
 * the start, so that step happens before Bun: enterUserNamespace() re-executes
 * this very program through util-linux's single-threaded `unshare --user
 * --map-root-user` (or `nsenter --user=... --preserve-credentials` to join an
 * existing one). The network namespace stays the host's: that is where our
 * sockets must live.
 *
 * Then spawnCommand() clones the command's process into a new network, PID
 * and UTS namespace (it is PID 1 there, so everything it starts ends with
 * it; its host name is -H NAME, else "pasta-" and the host's, as the
 * original names it). The child waits on a pipe until pasta has made the tap and, with --config-net,
 * configured it; then it execs. Root needs no user namespace at all.
 *
 * Anything made inside the namespace afterwards (tap, netlink socket) is made
 * by a shim thread that enters it; see native/shim.c.
 */
import { readFileSync, statfsSync } from "node:fs";
import { hostname } from "node:os";
import { log } from "../log.ts";
import { argBlob, check, cstr, errnoName, sys } from "../native/ffi.ts";
import { selfArgv } from "../self.ts";

const CLONE_NEWNET = 0x40000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWUTS = 0x04000000;
/** Longest host name the kernel takes (HOST_NAME_MAX). */
const HOST_NAME_MAX = 64;
/** What the original puts before the host's name to name a namespace it creates. */
const HOSTNAME_PREFIX = "pasta-";
const O_RDONLY = 0;

/** Environment mark that says: this process was re-executed into its user namespace. */
const USERNS_MARK = "PASTA_USERNS_DONE";

/** Where the launcher should put us before Bun's threads exist. */
export type UserNsPlan = { kind: "none" } | { kind: "new" } | { kind: "join"; path: string };

/**
 * Re-execute through a single-threaded launcher so that this process runs in
 * the planned user namespace. Returns only when nothing needs doing (root, or
 * already done); otherwise the process image is replaced, or it throws.
 */
export function enterUserNamespace(plan: UserNsPlan): void {
  if (plan.kind === "none" || process.env[USERNS_MARK] === "1") return;
  if (plan.kind === "new" && !userNamespacesAllowed()) {
    throw new Error("user namespaces are disabled on this system (user.max_user_namespaces or kernel.unprivileged_userns_clone is 0)");
  }
  const self = selfArgv();
  const launcher =
    plan.kind === "new"
      ? ["unshare", "--user", "--map-root-user", "--"]
      : ["nsenter", `--user=${plan.path}`, "--preserve-credentials", "--"];
  sys.shim_setenv(cstr(USERNS_MARK), cstr("1"));
  const argv = [...launcher, ...self];
  const rc = sys.shim_execvp(argBlob(argv), argv.length);
  throw new Error(`cannot start ${launcher[0]} to enter a user namespace: ${errnoName(-rc)}`);
}

/** False when the kernel's settings forbid new user namespaces to this user. */
function userNamespacesAllowed(): boolean {
  for (const path of ["/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone"]) {
    try {
      if (readFileSync(path, "utf8").trim() === "0") return false;
    } catch {
      /* the setting does not exist on this kernel */
    }
  }
  return true;
}

/** The command's process in its new namespaces. */
export interface Child {
  pid: number;
  /** pidfd: readable when the child exits. */
  pidfd: number;
  /** The child's network namespace. */
  nsfd: number;
  /** Write one byte here to let the child exec. */
  goFd: number;
  /** The exec error (an errno as 4 bytes) arrives here, or EOF when exec worked. */
  errFd: number;
}

/**
 * The host name of a namespace we create: configured (-H), else "pasta-" and
 * the host's own, cut to what the kernel takes. A configured name too long for
 * it is not set (a warning, as the original), so "" comes back.
 */
export function namespaceHostname(configured: string, host: string = hostname()): string {
  if (configured === "") return `${HOSTNAME_PREFIX}${host}`.slice(0, HOST_NAME_MAX);
  if (configured.length <= HOST_NAME_MAX) return configured;
  log.warn(`hostname ${configured} is longer than ${HOST_NAME_MAX} characters: the namespace keeps the host's`);
  return "";
}

/** Clone `cmd` into a new network, PID and UTS namespace named utsName (if not empty); it waits for release(). */
export function spawnCommand(cmd: string[], utsName: string): Child {
  const out = new Int32Array(3);
  check(sys.shim_spawn_ns(argBlob(cmd), cmd.length, CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWUTS, cstr(utsName), out), "clone");
  const pid = out[0]!;
  const pidfd = check(sys.shim_pidfd_open(pid), "pidfd_open");
  const nsfd = check(sys.shim_open(cstr(`/proc/${pid}/ns/net`), O_RDONLY), "open network namespace");
  return { pid, pidfd, nsfd, goFd: out[1]!, errFd: out[2]! };
}

/**
 * Let the child exec its command. Returns null when exec worked, or the
 * error text when it did not (command not found...).
 */
export function release(child: Child): string | null {
  sys.shim_write(child.goFd, new Uint8Array([1]), 1);
  sys.shim_close(child.goFd);
  const errBuf = new Int32Array(1);
  const n = sys.shim_read(child.errFd, errBuf, 4);
  sys.shim_close(child.errFd);
  return n === 4 ? errnoName(errBuf[0]!) : null;
}

/** Exit status of a finished child in shell convention (128+N for signal N); null if still running. */
export function reap(pid: number): number | null {
  const st = new Int32Array(1);
  const rc = sys.shim_waitpid(pid, st);
  if (rc <= 0) return null;
  const s = st[0]!;
  const sig = s & 0x7f;
  return sig === 0 ? (s >> 8) & 0xff : 128 + sig;
}

/** statfs() type of the namespace file system (what a bound namespace file and /proc/PID/ns/net are on). */
const NSFS_MAGIC = 0x6e736673;

/** Open the network namespace at path (a /proc/PID/ns/net, a bind mount, or a name under /run/netns). */
export function openNetns(target: string): number {
  const path = target.includes("/") ? target : `/run/netns/${target}`;
  const fd = check(sys.shim_open(cstr(path), O_RDONLY), `cannot open network namespace ${path}`);
  if (statfsSync(path).type !== NSFS_MAGIC) {
    sys.shim_close(fd);
    throw new Error(`${path} is not a namespace`);
  }
  return fd;
}
