/**
 * Confinement after set-up, for pasta and passt.
 *
 * Theory of operation
 * -------------------
 * The guest is untrusted and the daemon runs for hours with the rights of
 * the user who started it. Once everything that needs the file system,
 * exec or privileges is done (namespace and tap made, addresses configured,
 * the command started, ports bound, passt's switch to nobody), we set
 * no_new_privs and install a seccomp filter (native/shim.c, shim_sandbox)
 * that fails with EPERM the system calls a running daemon never makes: exec,
 * ptrace and process_vm_*, mount/umount/pivot_root/chroot, bpf, kexec and
 * module loading, keyctl, perf_event_open, userfaultfd, handle-based opens,
 * reboot, swap, acct, quotactl, and every x32 or foreign-architecture call.
 * SECCOMP_FILTER_FLAG_TSYNC puts it (and no_new_privs) on every thread of
 * the process, Bun's own included.
 *
 * What the original also does and we don't, and why: capabilities,
 * unshare() of the mount namespace and pivot_root() act on the calling
 * thread only (capset cannot reach other threads; a thread that unshares
 * CLONE_NEWNS gets a private copy of the file system view), and Bun runs
 * helper threads we don't control, so an empty root or a dropped capability
 * set on the main thread would leave them untouched; splicing also needs
 * setns() into the guest's namespace for each connection. Landlock, the
 * unprivileged way to hide the file system, has the same limit until
 * LANDLOCK_RESTRICT_SELF_TSYNC (Landlock ABI 8, Linux 7.0): the machines
 * this was written on run 6.18 (ABI 7), where landlock_restrict_self()
 * confines the calling thread only. An allow-list
 * filter would have to cover every system call Bun may make, which a new
 * Bun release can change: the deny-list is what stays true.
 */
import { log } from "./log.ts";
import { errnoName, sys } from "./native/ffi.ts";

/** Install the sandbox; a kernel that refuses it gets a warning, not a failed start. */
export function enterSandbox(): void {
  const rc = sys.shim_sandbox();
  if (rc < 0) log.warn(`running without the seccomp sandbox: ${errnoName(-rc)}`);
  else log.debug("sandbox: no new privileges, seccomp filter on every thread");
}
