/**
 * Lifecycle as the programs that start us see it: going to the background
 * (the caller's pipes reach end of file when the first process exits, the
 * daemon's 0/1/2 are /dev/null), set-up errors still reaching the caller, and
 * pasta quitting when its --netns file is removed (umount + unlink, as Podman
 * does when a container stops) unless --no-netns-quit; the daemon confined
 * (no_new_privs and the seccomp filter on every thread).
 *
 * Each launch waits, as Podman and libvirt do, for the exit status *and* end
 * of file on stdout and stderr; a launch that never gets there fails the test
 * after LAUNCH_BOUND_MS (a hang, not a speed check).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { threadStatuses } from "../tools/proc-stats.ts";
import { join } from "node:path";
import { ADDR, createWorld, describeE2E, isAlive, run, type World } from "../world.ts";
import { NetnsFiles } from "../tools/netns-file.ts";
import { pastaArgv, procsWith } from "../tools/pasta.ts";

const LAUNCH_BOUND_MS = 20000;
const QUIT_BOUND_MS = 5000;

interface Launch {
  code: number;
  stdout: string;
  stderr: string;
}

/** Start argv with pipes on stdout and stderr; resolve once it exited and both pipes reached end of file. */
async function launch(argv: string[], env: Record<string, string> = {}): Promise<Launch> {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const done = Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const bound = new Promise<never>((_, reject) =>
    setTimeout(
      () => reject(new Error(`launch did not return (exit and EOF) within ${LAUNCH_BOUND_MS} ms: ${argv.join(" ")}`)),
      LAUNCH_BOUND_MS,
    ),
  );
  const [code, stdout, stderr] = await Promise.race([done, bound]);
  return { code, stdout, stderr };
}

/** Poll cond every 50 ms for up to ms; its last value. */
async function within(ms: number, cond: () => boolean): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await Bun.sleep(50);
  return cond();
}

/** Where the daemon's descriptor fd points. */
function fdTarget(pid: number, fd: number): string {
  return readlinkSync(`/proc/${pid}/fd/${fd}`);
}

/** Every thread of the daemon has no_new_privs and the seccomp filter (src/sandbox.ts). */
function expectSandboxed(pid: number): void {
  for (const [t, status] of threadStatuses(pid)) {
    expect(status, `thread ${t}`).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status, `thread ${t}`).toMatch(/^Seccomp:\s+2$/m);
  }
}

describeE2E("lifecycle: background, pipes, quitting with the namespace", () => {
  let w: World;
  const started: number[] = [];
  let nsFiles: NetnsFiles;
  beforeAll(async () => {
    w = await createWorld();
    nsFiles = new NetnsFiles(w.dir, "lifecycle");
  });
  afterAll(async () => {
    for (const pid of started) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    nsFiles?.removeAll();
    await w?.destroy();
  });

  /** The one background pasta for this namespace file (its path is in the argv). */
  function daemonOf(path: string): number {
    const pids = procsWith(path).filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").includes("main.ts"));
    expect(pids.length, `one pasta for ${path}: ${pids}`).toBe(1);
    started.push(pids[0]!);
    return pids[0]!;
  }

  const podmanArgs = (path: string) => [
    "--config-net",
    "-t",
    "none",
    "-u",
    "none",
    "-T",
    "none",
    "-U",
    "none",
    "--no-map-gw",
    "--quiet",
    "--netns",
    path,
  ];

  test("Podman's launch returns once pasta is set up; the daemon holds none of the caller's pipes; removing the file ends it", async () => {
    const path = nsFiles.make();
    const r = await launch(["ip", "netns", "exec", w.host, ...pastaArgv(podmanArgs(path))]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr, "--quiet: nothing printed").toBe("");
    const pid = daemonOf(path);
    for (const fd of [0, 1, 2]) expect(fdTarget(pid, fd), `daemon fd ${fd}`).toBe("/dev/null");
    expectSandboxed(pid);
    const addr = run(["nsenter", `--net=${path}`, "ip", "-4", "-o", "addr", "show", "scope", "global"]);
    expect(addr.stdout, "--config-net gave the host's address").toContain(ADDR.host4);
    nsFiles.remove(path);
    expect(await within(QUIT_BOUND_MS, () => !isAlive(pid)), "pasta quits once the namespace file is gone").toBe(true);
  });

  test("--no-netns-quit: pasta stays when the file is removed", async () => {
    const path = nsFiles.make();
    const r = await launch(["ip", "netns", "exec", w.host, ...pastaArgv(["--no-netns-quit", ...podmanArgs(path)])]);
    expect(r.code, r.stderr).toBe(0);
    const pid = daemonOf(path);
    nsFiles.remove(path);
    await Bun.sleep(1500);
    expect(isAlive(pid), "still running").toBe(true);
    process.kill(pid, "SIGTERM");
    expect(await within(QUIT_BOUND_MS, () => !isAlive(pid)), "ends on SIGTERM").toBe(true);
  });

  test("a set-up error in the background copy reaches the caller: status 1, its line on stderr", async () => {
    const path = join(w.dir, `lifecycle-not-a-netns-${process.pid}`);
    writeFileSync(path, "");
    const r = await launch(["ip", "netns", "exec", w.host, ...pastaArgv(["--config-net", "--netns", path])]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(path);
    expect(procsWith(path).length, "nothing left running").toBe(0);
  });

  test("passt as libvirt starts it returns; the daemon's 0/1/2 are /dev/null; its socket and pid file are there", async () => {
    const socket = join(w.dir, `lifecycle-passt-${process.pid}.socket`);
    const pidFile = join(w.dir, `lifecycle-passt-${process.pid}.pid`);
    const r = await launch(["ip", "netns", "exec", w.host, ...pastaArgv(["--one-off", "--socket", socket, "--pid", pidFile])], {
      PASST_MODE: "passt",
    });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(socket)).toBe(true);
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    started.push(pid);
    expect(isAlive(pid)).toBe(true);
    for (const fd of [0, 1, 2]) expect(fdTarget(pid, fd), `daemon fd ${fd}`).toBe("/dev/null");
    expectSandboxed(pid);
    process.kill(pid, "SIGTERM");
    expect(await within(QUIT_BOUND_MS, () => !isAlive(pid))).toBe(true);
  });
});
