/**
 * pasta's command line, end to end: bad arguments and set-up failures end
 * with status 1, one clear line on stderr, and nothing left behind (no pid
 * file, no process); --help and --version; a command that doesn't exist; the
 * pid file (-P) while pasta runs and after it exits.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { HOST_IF, createWorld, describeE2E, isAlive, type ExecResult, type World } from "../world.ts";
import { pastaArgv, procsWith, stripAnsi } from "../tools/pasta.ts";

let seq = 0;
/** A string no other process has in its command line. */
function marker(): string {
  return `pasta-cli-marker-${process.pid}-${++seq}`;
}

/** One line on stderr, prefixed with the program's name, no stack trace, nothing on stdout. */
function expectOneErrorLine(r: ExecResult, what: string): string {
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  expect(lines.length, `${what}: stderr should be one line:\n${r.stderr}`).toBe(1);
  expect(lines[0]!, what).toMatch(/^pasta: \S/);
  expect(lines[0]!, what).not.toMatch(/^\s+at |node_modules|\.ts:\d+/);
  expect(r.stdout, what).toBe("");
  return lines[0]!;
}

describeE2E("pasta command line", () => {
  let w: World;
  beforeAll(async () => {
    w = await createWorld();
  });
  afterAll(async () => {
    await w?.destroy();
  });

  /** Run pasta in the host namespace, bounded, with a marker command after the options. */
  async function pasta(args: string[], command: string[] | null, timeoutMs = 20000): Promise<ExecResult> {
    return w.exec(w.host, pastaArgv(command ? [...args, "--", ...command] : args), { timeoutMs });
  }

  /** After a failed run: no process with the marker anywhere, no pid file. */
  function expectNothingLeft(m: string, pidFile: string, what: string): void {
    const left = procsWith(m);
    for (const pid of left) {
      try {
        process.kill(pid, "SIGKILL"); // ours: the marker is in argv of what this test started
      } catch {
        /* gone */
      }
    }
    expect(left, `${what}: processes left behind`).toEqual([]);
    expect(existsSync(pidFile), `${what}: pid file left behind`).toBe(false);
  }

  const badArgs: [string, string[]][] = [
    ["unknown option", ["--no-such-option"]],
    ["unknown short option", ["-y"]],
    ["MTU too small", ["-m", "10"]],
    ["MTU not a number", ["--mtu", "lots"]],
    ["-4 with -6", ["-4", "-6"]],
    ["bad port spec", ["-t", "notaport"]],
    ["bad address", ["-a", "300.1.2.3"]],
    ["bad MAC address", ["-M", "02:00:00"]],
    ["interface name too long", ["-I", "averyveryverylongifname"]],
    ["no such host interface", ["-i", "nosuchif0"]],
  ];

  for (const [what, args] of badArgs) {
    test(`bad arguments: ${what} → status 1, one error line, nothing left`, async () => {
      const m = marker();
      const pidFile = join(w.dir, `${m}.pid`);
      const r = await pasta(["-P", pidFile, ...args], ["sh", "-c", "sleep 600", m]);
      expect(r.timedOut, `${what}: pasta still running`).toBe(false);
      expect(r.code, `${what}: ${r.stderr}`).toBe(1);
      expectOneErrorLine(r, what);
      expectNothingLeft(m, pidFile, what);
    });
  }

  test("option value missing at the end → status 1, one error line", async () => {
    const r = await pasta(["--pcap"], null);
    expect(r.code, r.stderr).toBe(1);
    expect(expectOneErrorLine(r, "--pcap")).toContain("pcap");
  });

  test("set-up failures after the command was cloned (pcap, pid file) → status 1, one line, the command is gone", async () => {
    for (const [what, args] of [
      ["pcap file in a missing directory", ["-p", "/nonexistent-dir/x.pcap"]],
      ["pid file in a missing directory", ["-P", "/nonexistent-dir/x.pid"]],
    ] as const) {
      const m = marker();
      const r = await pasta([...args], ["sh", "-c", "sleep 600", m]);
      expect(r.timedOut, `${what}: pasta still running`).toBe(false);
      expect(r.code, `${what}: ${r.stderr}`).toBe(1);
      expect(expectOneErrorLine(r, what)).toContain("/nonexistent-dir/");
      expectNothingLeft(m, "/nonexistent-dir/x.pid", what);
    }
  });

  test("--netns to a namespace that doesn't exist → status 1, one error line", async () => {
    const m = marker();
    const pidFile = join(w.dir, `${m}.pid`);
    const r = await pasta(["-P", pidFile, "--netns", `/nonexistent/${m}`], null);
    expect(r.timedOut, "pasta still running").toBe(false);
    expect(r.code, r.stderr).toBe(1);
    expect(expectOneErrorLine(r, "--netns")).toContain(`/nonexistent/${m}`);
    expectNothingLeft(m, pidFile, "--netns");
  });

  test("--help lists the options, status 0", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await pasta([flag], null);
      expect(r.code, r.stderr).toBe(0);
      const out = stripAnsi(r.stdout);
      for (const opt of [
        "--config-net",
        "--pcap",
        "-p",
        "--pid",
        "-P",
        "--mtu",
        "-m",
        "--ns-ifname",
        "-I",
        "--debug",
        "-d",
        "--ipv4-only",
        "-4",
        "--ipv6-only",
        "-6",
        "--foreground",
        "-f",
        "--no-dhcp",
        "--tcp-ports",
        "--version",
        "--help",
      ]) {
        expect(out, `${flag} should mention ${opt}`).toMatch(new RegExp(`(^|[\\s,])${opt.replace(/-/g, "\\-")}\\b`, "m"));
      }
    }
  });

  test("--version prints a version, status 0", async () => {
    const r = await pasta(["--version"], null);
    expect(r.code, r.stderr).toBe(0);
    const out = stripAnsi(r.stdout).trim();
    expect(out).toMatch(/^pasta\b.*\d+\.\d+/);
    expect(out.split("\n").length).toBe(1);
  });

  test("a command that doesn't exist → non-zero status, one clear error line, nothing left", async () => {
    for (const cmd of [`/nonexistent/${marker()}`, `no-such-command-${marker()}`]) {
      const r = await pasta([], [cmd]);
      expect(r.timedOut, `${cmd}: pasta still running`).toBe(false);
      expect(r.code, r.stderr).not.toBe(0);
      const line = expectOneErrorLine(r, cmd);
      expect(line).toContain(cmd);
      expect(line).toMatch(/no such file|not found|ENOENT/i);
      expect(procsWith(cmd)).toEqual([]);
    }
  });

  test("-P: the pid file holds pasta's pid while the command runs, and is removed after", async () => {
    const pidFile = join(w.dir, "pasta.pid");
    const seen = join(w.dir, "pid-seen");
    // the pid file may be written just after the command starts: wait for it, bounded
    const script = `i=0; while [ ! -s ${pidFile} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; cat ${pidFile} >${seen}; ip link show ${HOST_IF} >/dev/null`;
    const child = w.spawn(w.host, pastaArgv(["-P", pidFile, "--", "sh", "-c", script]));
    const code = await Promise.race([child.exited, Bun.sleep(30000).then(() => child.kill())]);
    expect(code, child.stderr()).toBe(0);
    const pid = readFileSync(seen, "utf8");
    expect(pid).toMatch(/^\d+\n$/);
    // `ip netns exec` and pasta (as root: no re-exec) keep the pid of the process we started
    expect(Number(pid)).toBe(child.pid);
    expect(isAlive(child.pid)).toBe(false);
    expect(existsSync(pidFile), "pid file left after exit").toBe(false);
  }, 40000);
});
