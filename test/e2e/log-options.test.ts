/**
 * Options that change what pasta says and how it joins namespaces, end to
 * end: --trace (a line per frame, both ways), --log-size (the log file stays
 * within it under --trace), --stats (counter lines while traffic moves),
 * --netns-only (the PID's user namespace is not joined), and upstream options
 * we refuse (one line, status 1, nothing left).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ADDR, createWorld, describeE2E, ensureTestUser, repoForUser, type World } from "../world.ts";
import { pastaArgv, procsWith } from "../tools/pasta.ts";

describeE2E("logging and namespace options", () => {
  let w: World;
  beforeAll(async () => {
    w = await createWorld();
  });
  afterAll(async () => {
    await w?.destroy();
  });

  /** pasta -f with args, its command the guest script; bounded. */
  function pasta(args: string[], script: string) {
    return w.exec(w.host, pastaArgv(["--config-net", ...args, "--", "sh", "-c", script]), { timeoutMs: 60000 });
  }

  test("--trace: one line per frame, from and to the guest, in the log file", async () => {
    const logFile = join(w.dir, "trace.log");
    const r = await pasta(["--trace", "-l", logFile], `ping -c1 -W5 ${ADDR.gw4}`);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(logFile, "utf8");
    expect(text).toMatch(new RegExp(`from guest: \\d+ bytes, IPv4 ICMP type 8 code 0 [\\d.]+ > ${ADDR.gw4.replace(/\./g, "\\.")}`));
    expect(text).toMatch(new RegExp(`to guest: \\d+ bytes, IPv4 ICMP type 0 code 0 ${ADDR.gw4.replace(/\./g, "\\.")} > `));
    expect(text).toMatch(/from guest: \d+ bytes, (ARP request|IPv6 ICMPv6 type 13[35])/);
  });

  test("without --trace there is no frame line", async () => {
    const logFile = join(w.dir, "debug.log");
    const r = await pasta(["-d", "-l", logFile], `ping -c1 -W5 ${ADDR.gw4}`);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(logFile, "utf8")).not.toContain("from guest:");
  });

  test("--log-size: under --trace and a 32 MiB transfer the log file stays within the limit and ends with fresh lines", async () => {
    const logFile = join(w.dir, "small.log");
    const server = w.spawn(w.host, ["socat", "-u", "TCP-LISTEN:5401,reuseaddr", "OPEN:/dev/null"]);
    await Bun.sleep(200);
    const r = await pasta(
      ["--trace", "-l", logFile, "--log-size", "40960"],
      `head -c 33554432 /dev/zero | socat -u - TCP:${ADDR.gw4}:5401`,
    );
    expect(r.code, r.stderr).toBe(0);
    await server.exited;
    expect(statSync(logFile).size).toBeLessThanOrEqual(40960);
    expect(statSync(logFile).size).toBeGreaterThan(20000);
    const text = readFileSync(logFile, "utf8");
    expect(text.endsWith("\n"), "the last line is whole").toBe(true);
    expect(/from guest: \d+ bytes, IPv4 TCP [^\n]*\[F?PA\]/.test(text), "the transfer's last segments are in the kept part").toBe(true);
  });

  test("--stats: counter lines while frames move", async () => {
    const logFile = join(w.dir, "stats.log");
    const r = await pasta(["--stats", "1", "-l", logFile], `ping -c4 -i 0.5 -W5 ${ADDR.gw4}`);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(logFile, "utf8")).toMatch(/stats: tap: rxFrames [1-9]\d* txFrames [1-9]\d* .*; dispatch: frames [1-9]/);
  });

  test("--netns-only: an unprivileged pasta does not join the PID's user namespace, so it can't enter its network namespace", async () => {
    const user = ensureTestUser();
    const repo = repoForUser(user);
    const marker = `29.${process.pid}`;
    const target = w.spawn(w.host, ["unshare", "-Urn", "sleep", marker], { user });
    try {
      let pid = 0;
      for (let i = 0; i < 50 && !pid; i++) {
        pid = procsWith(marker).find((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("sleep\0")) ?? 0;
        if (!pid) await Bun.sleep(100);
      }
      expect(pid).toBeGreaterThan(0);
      const joined = await w.exec(w.host, pastaArgv(["-f", "--config-net", String(pid)], repo), { user, timeoutMs: 3000 });
      expect(joined.stderr, "without --netns-only pasta joins and runs (until the timeout stops it)").not.toContain("EPERM");
      expect(joined.timedOut).toBe(true);
      const only = await w.exec(w.host, pastaArgv(["-f", "--netns-only", "--config-net", String(pid)], repo), { user, timeoutMs: 10000 });
      expect(only.code).toBe(1);
      expect(only.stderr).toMatch(/EPERM|not permitted|permission denied/);
    } finally {
      await target.kill();
    }
  });

  test("pasta --runas naming its own user runs (the bench passes --runas 0 as root); another user is refused", async () => {
    const own = await pasta(["--runas", "0"], "true");
    expect(own.code, own.stderr).toBe(0);
    const other = await pasta(["--runas", "nobody"], "true");
    expect(other.code).toBe(1);
    expect(other.stderr.trim()).toMatch(/^pasta: --runas nobody: pasta keeps the user that started it/);
  });

  test("upstream options we can't honour are refused by name: status 1, one line, nothing left", async () => {
    for (const [mode, args] of [
      ["pasta", ["--conf-path", join(w.dir, "conf.sock")]],
      ["pasta", ["--chroot-fallback"]],
      ["pasta", ["--runas", "nobody"]],
      ["passt", ["--chroot-fallback"]],
      ["pasta", ["-F", "5"]],
    ] as const) {
      const pidFile = join(w.dir, `refused-${mode}.pid`);
      const r = await w.exec(w.host, pastaArgv(["-P", pidFile, ...args]), {
        env: mode === "passt" ? { PASST_MODE: "passt" } : {},
        timeoutMs: 10000,
      });
      expect(r.code, `${args.join(" ")}`).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toContain(args[0]!.replace(/^-F$/, "--fd"));
      expect(existsSync(pidFile)).toBe(false);
    }
  });
});
