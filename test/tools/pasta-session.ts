/**
 * A long-lived pasta in a test world, with commands run in its guest one by
 * one from the test (rather than one guest script per pasta run):
 *
 *   const s = await startPasta(w, ["--config-net", "-t", "8000"]);
 *   await s.guest(["ip", "addr"]);            // nsenter into the guest's netns
 *   const srv = s.guestSpawn(["socat", ...]); // tracked by the world
 *   s.fdCount();                              // pasta's open descriptors
 *   await s.stop();
 *
 * pasta runs as root in w.host with -f and -P FILE; its command is a /bin/sh
 * that is PID 1 of the guest's PID namespace and waits until pasta (or
 * stop()) sends it SIGTERM. The guest's processes are found as the
 * descendants of pasta in another network namespace; commands join only that
 * network namespace (nsenter -n), so they see the same files as the test.
 *
 * The program is `bun src/main.ts`; PASTA_TEST_CMD (split on spaces) runs
 * something else with the same options, e.g. PASTA_TEST_CMD=/usr/bin/pasta.
 */
import { existsSync, readFileSync, readlinkSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BUN, REPO, isAlive, type Child, type ExecOptions, type ExecResult, type SpawnOptions, type World } from "../world.ts";

/** argv of the program under test with args. */
export function programArgv(args: string[]): string[] {
  const override = process.env.PASTA_TEST_CMD?.trim();
  if (override) return [...override.split(/\s+/), ...args];
  return [BUN, join(REPO, "src", "main.ts"), ...args];
}

export interface PastaSession {
  /** pasta's pid (from its pid file) */
  readonly pid: number;
  /** a process in the guest's network namespace (the command, PID 1 there) */
  readonly guestPid: number;
  /** the process spawned in the host namespace */
  readonly child: Child;
  /** argv prefix that runs a command in the guest's network namespace */
  guestArgv(cmd: string[]): string[];
  guest(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  guestSpawn(cmd: string[], opts?: SpawnOptions): Child;
  /** /bin/sh -c script in the guest */
  guestSh(script: string, opts?: ExecOptions): Promise<ExecResult>;
  /** number of pasta's open file descriptors, or -1 once it is gone */
  fdCount(): number;
  alive(): boolean;
  /** what pasta printed so far */
  log(): string;
  /** SIGTERM pasta (and its command), SIGKILL what is left; resolves with pasta's status */
  stop(): Promise<number>;
}

function netnsOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** First descendant of pid (breadth first) whose network namespace is not pid's. */
export function findGuest(pid: number): number | null {
  const own = netnsOf(pid);
  const queue = childrenOf(pid);
  for (let n = 0; queue.length && n < 1000; n++) {
    const p = queue.shift()!;
    const ns = netnsOf(p);
    if (ns && ns !== own) return p;
    queue.push(...childrenOf(p));
  }
  return null;
}

let sessions = 0;

/**
 * Start pasta with args in w.host and wait (bounded) until its pid file is
 * written, its guest is found and the guest's IPv6 addresses are usable
 * (no longer tentative). Rejects with pasta's output if it exits first.
 */
export async function startPasta(
  w: World,
  args: string[],
  opts: {
    readyMs?: number;
    env?: Record<string, string>;
    /** argv in front of the program, e.g. prlimit --nofile=N:N -- */
    launcher?: string[];
    /** the program's argv instead of programArgv's (the bench: a snapshot of ours, or the reference) */
    program?: string[];
  } = {},
): Promise<PastaSession> {
  const pidFile = join(w.dir, `pasta-session-${++sessions}.pid`);
  const guestCmd = ["/bin/sh", "-c", 'trap "exit 0" TERM INT HUP; while :; do sleep 3600 & wait $!; done'];
  const pastaArgs = ["-f", ...args, "-P", pidFile, "--", ...guestCmd];
  const program = opts.program ? [...opts.program, ...pastaArgs] : programArgv(pastaArgs);
  const child = w.spawn(w.host, [...(opts.launcher ?? []), ...program], { env: opts.env });
  const deadline = Date.now() + (opts.readyMs ?? 30000);
  const fail = (what: string) =>
    new Error(`pasta ${what}\nargv: ${child.argv.join(" ")}\nstdout: ${child.stdout()}\nstderr: ${child.stderr()}`);
  let exited = false;
  child.exited.then(() => (exited = true));

  let pid = 0;
  let guestPid: number | null = null;
  while (Date.now() < deadline) {
    if (exited) throw fail("exited during start-up");
    if (!pid && existsSync(pidFile)) pid = Number(readFileSync(pidFile, "utf8").trim()) || 0;
    if (pid && (guestPid = findGuest(pid)) !== null) break;
    await Bun.sleep(50);
  }
  if (!pid || guestPid === null) {
    await child.kill();
    throw fail("did not start (no pid file or no guest) in time");
  }
  const gpid = guestPid;
  const guestArgv = (cmd: string[]) => ["nsenter", "-t", String(gpid), "-n", "--", ...cmd];

  // --config-net sets addresses before the command runs; the link-local one goes through DAD.
  for (;;) {
    const r = await w.exec(null, guestArgv(["ip", "-6", "addr", "show", "tentative"]), { timeoutMs: 5000 });
    if (r.code === 0 && r.stdout.trim() === "") break;
    if (Date.now() > deadline || exited) {
      await child.kill();
      throw fail(`guest IPv6 addresses still tentative: ${r.stdout}${r.stderr}`);
    }
    await Bun.sleep(100);
  }

  const session: PastaSession = {
    pid,
    guestPid: gpid,
    child,
    guestArgv,
    guest: (cmd, o) => w.exec(null, guestArgv(cmd), o),
    guestSpawn: (cmd, o) => w.spawn(null, guestArgv(cmd), o),
    guestSh: (script, o) => w.exec(null, guestArgv(["/bin/sh", "-c", script]), o),
    fdCount() {
      try {
        return readdirSync(`/proc/${pid}/fd`).length;
      } catch {
        return -1;
      }
    },
    alive: () => !exited && isAlive(pid),
    log: () => child.stdout() + child.stderr(),
    async stop() {
      const code = await child.kill({ graceMs: 3000 });
      for (const p of [gpid, pid]) {
        if (isAlive(p)) {
          try {
            process.kill(p, "SIGKILL");
          } catch {
            /* gone */
          }
        }
      }
      return code;
    },
  };
  return session;
}
