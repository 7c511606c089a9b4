/**
 * What both runs (src/pasta.ts, src/passt.ts) do the same way as daemons:
 * going to the background, the pid file, and the signals that end the run.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP are blocked and delivered through a
 * descriptor the loop watches (shim_signal_pipe), made early in a run, before
 * any thread starts; watchSignals stops the loop (status 0) on the first one.
 *
 * Pid file (-P): written once the run is set up, removed when it ends.
 *
 * Going to the background, as the original does without -f, for pasta
 * attached to a namespace and for passt
 * ------------------------------------------------------------------------
 * The programs that start us (Podman, rootlesskit, libvirt) hand us pipes for
 * standard output and error, and wait until we exit *and* both pipes reach
 * end of file; only then do they go on (and read our exit status, and what we
 * printed, to report errors). The original forks after set-up and points the
 * daemon's 0, 1 and 2 at /dev/null. Bun cannot fork, so:
 *
 * 1. the first process (the "caller-facing" one) spawns a copy of itself with
 *    the same arguments, BACKGROUND_ENV set, stdin on /dev/null and stdout and
 *    stderr on pipes of its own: the copy never holds the caller's pipes;
 * 2. the copy sets everything up; messages it prints meanwhile (and a set-up
 *    error, after which it exits 1) go to the stderr pipe; when ready it
 *    writes "ready" on stdout, then puts /dev/null on its 0, 1 and 2
 *    (readyInBackground), which closes both pipes;
 * 3. the first process copies what the copy printed to its own stderr and
 *    exits: 0 once "ready" came, else the copy's exit status (1 if none).
 *
 * So the caller sees our messages and status as it would from the original,
 * and its pipes close when the first process exits. The copy logs to the
 * --log-file if one was given, else nowhere (the original would use syslog).
 */
import { rmSync, writeFileSync } from "node:fs";
import type { Mode } from "./conf/config.ts";
import { detectMode, type RunOptions } from "./conf/options.ts";
import { log } from "./log.ts";
import { Kind } from "./loop/kinds.ts";
import { EPOLLIN, type Loop } from "./loop/loop.ts";
import { check, cstr, sys } from "./native/ffi.ts";
import { programName, selfArgv } from "./self.ts";

/** Set in the environment of the background copy. */
const BACKGROUND_ENV = "PASST_BACKGROUND_COPY";
const O_RDWR = 2;

const SIGHUP = 1;
const SIGINT = 2;
const SIGTERM = 15;

/** True in the background copy (it must not go to the background again). */
export function isBackgroundCopy(): boolean {
  return process.env[BACKGROUND_ENV] === "1";
}

/**
 * Run the background copy and wait until it is ready or gone; keepFd, if
 * given, is passed on to the copy at the same number (passt -F). Returns the
 * status for this process.
 */
export async function runInBackground(keepFd: number | null = null): Promise<number> {
  const stdio: ("ignore" | "pipe" | number)[] = ["ignore", "pipe", "pipe"];
  if (keepFd !== null) {
    while (stdio.length < keepFd) stdio.push("ignore");
    stdio[keepFd] = keepFd;
  }
  const child = Bun.spawn(selfArgv(), {
    // the copy's name may not say which program it is (a standalone executable started through a link)
    env: { ...process.env, [BACKGROUND_ENV]: "1", PASST_MODE: detectMode(programName()) },
    stdio: stdio as ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const messages = new Response(child.stderr).text();
  const said = await new Response(child.stdout).text();
  process.stderr.write(await messages);
  if (said.startsWith("ready")) {
    child.unref();
    return 0;
  }
  return (await child.exited) || 1;
}

/**
 * In the background copy, once set up: tell the first process, then leave
 * its pipes (standard input, output and error become /dev/null).
 */
export function readyInBackground(): void {
  if (!isBackgroundCopy()) return;
  check(sys.shim_write(1, cstr("ready\n"), 6), "ready");
  const devnull = check(sys.shim_open(cstr("/dev/null"), O_RDWR), "/dev/null");
  for (const fd of [0, 1, 2]) check(sys.shim_dup2(devnull, fd), "standard descriptors");
  sys.shim_close(devnull);
  log.debug("in the background");
}

/**
 * Whether this process starts the background copy and waits for it: not with
 * -f, not in the copy itself; pasta only when attached to a namespace (with a
 * command of its own it stays with it); passt unless -F hands it one of the
 * standard descriptors.
 */
export function goesToBackground(mode: Mode, opts: RunOptions): boolean {
  if (opts.foreground || isBackgroundCopy()) return false;
  if (mode === "passt") return opts.fd === null || opts.fd > 2;
  return opts.attachPid !== null || opts.netns !== null;
}

/** Block SIGINT, SIGTERM and SIGHUP and return the descriptor that delivers them (before any thread starts). */
export function signalPipe(): number {
  return check(sys.shim_signal_pipe(new Int32Array([SIGINT, SIGTERM, SIGHUP]), 3), "signals");
}

/** On the first signal from fd (signalPipe): run then(), if given, and stop the loop with status 0. */
export function watchSignals(loop: Loop, fd: number, then?: () => void): void {
  const b = new Uint8Array(16);
  loop.on(Kind.SIGNAL, () => {
    const n = sys.shim_read(fd, b, 16);
    log.debug(`signal ${n > 0 ? b[0] : "?"}: exiting`);
    then?.();
    loop.stop(0);
  });
  loop.add(fd, EPOLLIN, Kind.SIGNAL, 0);
}

/** Write our PID to path (-P); throws with one line if it can't. */
export function writePidFile(path: string): void {
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (e) {
    throw new Error(`cannot write pid file ${path}: ${(e as Error).message}`);
  }
}

/** Remove the pid file at the end of the run (quietly: it may be gone, or no longer ours). */
export function removePidFile(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    /* gone, or no longer ours to remove */
  }
}
