/**
 * Going to the background, as the original does without -f, for pasta
 * attached to a namespace and for passt.
 *
 * Theory of operation
 * -------------------
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
import { log } from "./log.ts";
import { check, cstr, sys } from "./native/ffi.ts";
import { detectMode } from "./conf/options.ts";
import { programName, selfArgv } from "./self.ts";

/** Set in the environment of the background copy. */
const BACKGROUND_ENV = "PASST_BACKGROUND_COPY";
const O_RDWR = 2;

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
