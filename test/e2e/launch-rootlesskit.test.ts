/**
 * pasta started the way rootlesskit 2 starts it (rootless Docker and
 * nerdctl with `--net=pasta`), rebuilt from its source (test/tools/launchers.ts):
 * an ordinary user's child process in a new user and network namespace, the
 * two feature probes (`pasta --version`, `pasta --host-lo-to-ns-lo
 * --version`), then pasta with rootlesskit's arguments and Docker's defaults
 * (tap0, MTU 65520, 10.0.2.100/24 via 10.0.2.2, DNS forwarded from 10.0.2.3,
 * host loopback disabled, IPv4 only, the implicit port driver: -t auto -u
 * auto) and the child's PID, one pipe for its output, waiting for its exit
 * and the pipe's end.
 *
 * Then the namespace must carry traffic: its interface as configured, a
 * transfer to a remote server and back, a name resolved through 10.0.2.3, a
 * server started in the namespace reachable from the host (what `docker run
 * -p` relies on), and pasta gone once the child is.
 *
 * PASTA_TEST_CMD (split on spaces) launches another pasta instead, e.g.
 * PASTA_TEST_CMD=/usr/bin/pasta.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readlinkSync } from "node:fs";
import { join } from "node:path";
import {
  ADDR,
  BUN,
  TOOLS,
  asUser,
  createWorld,
  describeE2E,
  ensureTestUser,
  isAlive,
  repoForUser,
  type Child,
  type TestUser,
  type World,
} from "../world.ts";
import { pastaArgv } from "../tools/pasta.ts";
import { launchRootlesskit, pidsWithArgs, rootlesskitAddrs, type Launch, type RootlesskitLaunch } from "../tools/launchers.ts";

const PEER = join(TOOLS, "splice-peer.ts");
const REMOTE_PORT = 18072;
/** A server in the namespace, found by -t auto. */
const NS_PORT = 18073;
const MTU = 65520;
const NET = rootlesskitAddrs();
const TRANSFER = 1 << 20;
const QUIT_WAIT_MS = 5000;

describeE2E("pasta launched as rootlesskit 2 does", () => {
  let w: World;
  let user: TestUser;
  let repo: string;
  let child: Child;
  let l: RootlesskitLaunch;
  let pastaPids: number[] = [];

  /** Run cmd in the child's network namespace (root, like rootlesskit's own helpers would). */
  const inChild = (cmd: string[], timeoutMs = 30000) => w.exec(null, ["nsenter", `--target=${child.pid}`, "--net", ...cmd], { timeoutMs });

  beforeAll(async () => {
    w = await createWorld({ dns: true });
    user = ensureTestUser();
    repo = repoForUser(user);
    // rootlesskit's child: a new user namespace (root inside) and network namespace
    child = w.spawn(w.host, ["unshare", "--user", "--map-root-user", "--net", "sleep", "600"], { user });
    const hostNet = readlinkSync("/proc/self/ns/net");
    for (let i = 0; i < 100; i++) {
      try {
        const net = readlinkSync(`/proc/${child.pid}/ns/net`);
        if (net !== hostNet && readlinkSync(`/proc/${child.pid}/exe`).endsWith("/sleep")) break;
      } catch {
        /* not yet */
      }
      await Bun.sleep(50);
    }
    const server = w.spawn(w.upstream, [BUN, PEER, "echo", "--host", "0.0.0.0", "--port", String(REMOTE_PORT)]);
    await server.waitFor("splice-peer ready", { timeoutMs: 15000 });
    const pasta = ["ip", "netns", "exec", w.host, ...asUser(pastaArgv([], repo), user)];
    l = await launchRootlesskit(pasta, { childPid: child.pid }, { cwd: repo });
    pastaPids = pidsWithArgs(l.argv.slice(-3));
    console.log(
      `launch time (rootlesskit, ${pastaArgv([]).at(-1)}): exited after ${l.exitMs} ms, caller went on after ${l.ms} ms${l.hung ? " (hung: pipe never closed)" : ""}`,
    );
  }, 120000);

  afterAll(async () => {
    for (const pid of pastaPids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    await w?.destroy();
  }, 60000);

  const why = (x: Launch) =>
    `argv: ${x.argv.join(" ")}\nexit ${x.code} after ${x.exitMs} ms, caller waited ${x.ms} ms${x.hung ? " and gave up (a pipe is still open)" : ""}\noutput: ${x.output}`;

  test("the feature probes succeed: --version, and --host-lo-to-ns-lo is known", () => {
    expect(l.version.code, why(l.version)).toBe(0);
    expect(l.hostLoProbe.code, why(l.hostLoProbe)).toBe(0);
    expect(l.argv, why(l)).toContain("--host-lo-to-ns-lo");
  });

  test("the launch returns: exit 0, end of its output pipe, pasta left running", () => {
    expect(l.hung, `the caller hangs: ${why(l)}`).toBe(false);
    expect(l.code, why(l)).toBe(0);
    expect(pastaPids.length, `one pasta left running: ${why(l)}`).toBe(1);
  });

  test("tap0 has rootlesskit's address, MTU and default route", async () => {
    const addr = await inChild(["ip", "-j", "addr", "show", "dev", "tap0"]);
    expect(addr.code, addr.stderr).toBe(0);
    const link = JSON.parse(addr.stdout)[0];
    expect(link.mtu, addr.stdout).toBe(MTU);
    expect(
      link.addr_info.filter((a: any) => a.family === "inet").map((a: any) => `${a.local}/${a.prefixlen}`),
      addr.stdout,
    ).toEqual([`${NET.address}/24`]);
    const route = await inChild(["ip", "-j", "-4", "route", "show", "default"]);
    expect(JSON.parse(route.stdout)[0], route.stdout).toMatchObject({ dst: "default", gateway: NET.gateway, dev: "tap0" });
  });

  test("1 MiB to a remote server and back, through the gateway", async () => {
    const r = await inChild([
      BUN,
      PEER,
      "client",
      "--host",
      ADDR.remote4,
      "--port",
      String(REMOTE_PORT),
      "--send",
      String(TRANSFER),
      "--then",
      "end",
      "--max-ms",
      "20000",
    ]);
    const res = JSON.parse(r.stdout.trim().split("\n").at(-1) || "{}");
    expect(res, r.stdout + r.stderr).toMatchObject({ event: "end", bytes: TRANSFER });
  }, 40000);

  test("a name resolved through --dns-forward 10.0.2.3", async () => {
    const r = await inChild(["dig", `@${NET.dns}`, ADDR.remoteName, "A", "+short", "+time=5", "+tries=2"]);
    expect(r.stdout.trim(), r.stderr).toBe(ADDR.remote4);
  }, 30000);

  test("a server started in the namespace is reachable from the host (-t auto), on loopback and on the host's address", async () => {
    const server = w.spawn(null, [
      "nsenter",
      `--target=${child.pid}`,
      "--net",
      BUN,
      PEER,
      "echo",
      "--host",
      "0.0.0.0",
      "--port",
      String(NS_PORT),
    ]);
    await server.waitFor("splice-peer ready", { timeoutMs: 15000 });
    for (const host of ["127.0.0.1", ADDR.host4]) {
      const r = await w.exec(
        w.host,
        [BUN, PEER, "probe", "--host", host, "--port", String(NS_PORT), "--want", "echo", "--max-ms", "10000"],
        { timeoutMs: 20000 },
      );
      expect(JSON.parse(r.stdout.trim().split("\n").at(-1) || "{}"), `${host}:${NS_PORT}: ${r.stdout}${r.stderr}`).toMatchObject({
        ok: true,
        outcome: "echo",
      });
    }
    await server.kill();
  }, 60000);

  test("pasta quits once the child process is gone", async () => {
    expect(pastaPids.length).toBeGreaterThan(0);
    await child.kill();
    const end = Date.now() + QUIT_WAIT_MS;
    while (Date.now() < end && pastaPids.some(isAlive)) await Bun.sleep(50);
    expect(pastaPids.filter(isAlive), `pasta still running ${QUIT_WAIT_MS} ms after its target process ended`).toEqual([]);
  }, 30000);
});
