/**
 * pasta started the way Podman starts it, then real rootless Podman runs a
 * container in the namespace pasta configured (issue 14).
 *
 * Debian 12's Podman (4.3.1) predates `--network pasta`, so the test does
 * Podman 5's part itself, as its source does it (test/tools/launchers.ts):
 * inside rootless Podman's user and mount namespace (`podman unshare`), an
 * empty file in $XDG_RUNTIME_DIR/netns becomes a network namespace
 * (`unshare --net=FILE`), pasta is run with Podman 5's arguments, one pipe
 * for its output, and the caller waits for its exit and the pipe's end.
 * Then the real Podman runs busybox containers with `--network ns:FILE`
 * (and `--dns 169.254.1.1`, what Podman 5 writes into a pasta container's
 * resolv.conf), and the namespace file is removed as Podman removes it
 * (umount -l, then unlink): pasta must quit by itself.
 *
 * The container must see the host's address and routes; reach a server
 * upstream, through the gateway and on a remote address; resolve a name
 * through --dns-forward 169.254.1.1; reach the host's own address through
 * --map-guest-addr 169.254.1.2; and serve busybox httpd to the host at
 * 8080 (any address) and 127.0.0.1:8081 (loopback only). A second
 * container publishing the same port must get a pasta that fails (status 1,
 * naming the port), not one that starts and forwards nothing.
 *
 * Podman 5's rootless-netns launch (--pid FILE, read once pasta returns,
 * SIGTERM to end it), Podman 4.4's launch (two pipes, no --map-guest-addr)
 * and the message Podman 5's retry rule looks for ("unrecognized option
 * '...'") are checked too. All of it rootless: an ordinary user made for the test, with
 * subordinate ranges (test/tools/podman.ts).
 *
 * PASTA_TEST_CMD (split on spaces) launches another pasta instead, e.g.
 * PASTA_TEST_CMD=/usr/bin/pasta checks these tests against the reference;
 * each launch prints its time on stdout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ADDR, BUN, HOST_IF, canRunE2E, createWorld, describeE2E, isAlive, repoForUser, type Child, type World } from "../world.ts";
import { pastaArgv } from "../tools/pasta.ts";
import {
  PODMAN_DNS_FORWARD,
  PODMAN_MAP_GUEST_ADDR,
  pidsWithArgs,
  runLikeCaller,
  type Launch,
  type LaunchSpec,
  type PortMapping,
} from "../tools/launchers.ts";
import { IMAGE_PAGE, createRootlessPodman, podmanMissing, type RootlessPodman } from "../tools/podman.ts";

const UPSTREAM_PORT = 18070;
const HOST_PORT = 18071;
const UPSTREAM_PAGE = "upstream-page";
const HOST_PAGE = "host-page";
const PORTS: PortMapping[] = [
  { hostPort: 8080, containerPort: 80, protocol: "tcp" },
  { hostIP: "127.0.0.1", hostPort: 8081, containerPort: 80, protocol: "tcp" },
];
/** How long pasta may take to notice its namespace file is gone (the reference: ~0.1 s). */
const QUIT_WAIT_MS = 5000;

const missing = canRunE2E().ok ? podmanMissing() : null;

/** Sections of a container script's output: "@@ NAME", the output and a newline, "@@ rc N". */
function sections(out: string): Record<string, { out: string; rc: number }> {
  const res: Record<string, { out: string; rc: number }> = {};
  for (const m of out.matchAll(/^@@ (\S+)\n([\s\S]*?)^@@ rc (\d+)$/gm)) res[m[1]!] = { out: m[2]!.replace(/\n$/, ""), rc: Number(m[3]) };
  return res;
}

/** sh lines that run each check under its section marker. */
function checks(list: [string, string][]): string {
  return list.map(([name, cmd]) => `echo "@@ ${name}"; ${cmd} 2>&1; rc=$?; echo; echo "@@ rc $rc"`).join("\n");
}

async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  while (Date.now() < end && pids.some(isAlive)) await Bun.sleep(50);
  return pids.filter(isAlive);
}

if (missing) {
  console.log(`SKIP pasta launched as Podman does: ${missing}`);
  describe.skip("pasta launched as Podman does", () => {
    test("skipped", () => {});
  });
} else {
  describeE2E("pasta launched as Podman does, rootless Podman in its namespace", () => {
    let w: World;
    let pm: RootlessPodman;
    let repo: string;
    const servers: Child[] = [];
    const files: string[] = [];

    beforeAll(async () => {
      w = await createWorld({ dns: true });
      pm = await createRootlessPodman(w);
      repo = repoForUser(pm.user);
      const serve = (ns: string, host: string, port: number, page: string) =>
        w.spawn(ns, [
          BUN,
          "-e",
          `Bun.serve({ hostname: ${JSON.stringify(host)}, port: ${port}, fetch: () => new Response(${JSON.stringify(page)}) }); console.log("http ready");`,
        ]);
      servers.push(serve(w.upstream, "0.0.0.0", UPSTREAM_PORT, UPSTREAM_PAGE), serve(w.host, ADDR.host4, HOST_PORT, HOST_PAGE));
      await Promise.all(servers.map((s) => s.waitFor("http ready", { timeoutMs: 15000 })));
    }, 180000);

    afterAll(async () => {
      for (const f of files) for (const pid of pidsWithArgs(["--netns", f])) process.kill(pid, "SIGKILL");
      await pm?.destroy();
      await w?.destroy();
    }, 60000);

    /** A namespace file as Podman makes one: inside its namespaces, an empty file, then unshare --net=FILE. */
    async function makeNetnsFile(name: string): Promise<string> {
      const f = join(pm.runtimeDir, "netns", `netns-${name}`);
      const r = await pm.unshare(["sh", "-c", 'mkdir -p "${0%/*}" && touch "$0" && unshare --net="$0" true', f]);
      if (r.code !== 0) throw new Error(`making ${f}: ${r.stderr}`);
      files.push(f);
      return f;
    }

    /** Podman's UnmountNS(): detach the mount, then unlink. */
    async function removeNetnsFile(f: string): Promise<void> {
      const r = await pm.unshare(["sh", "-c", 'umount -l "$0" && rm "$0"', f]);
      expect(r.code, `removing ${f}: ${r.stderr}`).toBe(0);
    }

    /** Run a launch inside Podman's namespaces, where Podman itself runs pasta. */
    async function launchInside(spec: LaunchSpec): Promise<Launch> {
      const r = await pm.unshare([BUN, join(repo, "test", "tools", "launchers.ts"), JSON.stringify(spec)], { timeoutMs: 60000 });
      const line = r.stdout.trim().split("\n").at(-1) ?? "";
      if (r.code !== 0 || !line.startsWith("{")) throw new Error(`launcher: exit ${r.code}\n${r.stderr}\n${r.stdout}`);
      const l = JSON.parse(line) as Launch;
      console.log(
        `launch time (${spec.launcher}, ${spec.launcher === "libvirt" ? spec.passt[0] : spec.pasta.at(-1)}): exited after ${l.exitMs} ms, caller went on after ${l.ms} ms${l.hung ? " (hung: pipe never closed)" : ""}`,
      );
      return l;
    }

    const why = (l: Launch) =>
      `argv: ${l.argv.join(" ")}\nexit ${l.code} after ${l.exitMs} ms, caller waited ${l.ms} ms${l.hung ? " and gave up (a pipe is still open)" : ""}\noutput: ${l.output}\nstderr: ${l.stderr}`;

    let p5 = "";
    let p5Pids: number[] = [];

    test("Podman 5's launch returns: exit 0, end of its output pipe, nothing printed, no retry, pasta left running", async () => {
      p5 = await makeNetnsFile("p5");
      const l = await launchInside({ launcher: "podman5", pasta: pastaArgv([], repo), netns: p5, ports: PORTS });
      p5Pids = pidsWithArgs(["--netns", p5]);
      expect(l.hung, `the caller hangs: ${why(l)}`).toBe(false);
      expect(l.code, why(l)).toBe(0);
      expect(l.retries, why(l)).toBe(0);
      expect(l.output, `Podman logs any output as warnings: ${why(l)}`).toBe("");
      expect(p5Pids.length, `one pasta left running for ${p5}: ${why(l)}`).toBe(1);
    }, 90000);

    /** A busybox container in the namespace, with the nameserver Podman 5 gives it: the output of checks(list), by section. */
    async function inContainer(netns: string, list: [string, string][]) {
      const r = await pm.podman(
        ["run", "--rm", "--network", `ns:${netns}`, "--dns", PODMAN_DNS_FORWARD, pm.image, "sh", "-c", checks(list)],
        { timeoutMs: 90000 },
      );
      return { s: sections(r.stdout), code: r.code, why: `podman run: exit ${r.code}\n${r.stdout}\n${r.stderr}` };
    }

    test("a container in that namespace: the host's addresses and routes, upstream and remote servers, DNS forwarding", async () => {
      const { s, code, why } = await inContainer(p5, [
        ["addr4", `ip -o -4 addr show dev ${HOST_IF}`],
        ["addr6", `ip -o -6 addr show dev ${HOST_IF} scope global`],
        ["route4", "ip -4 route show default"],
        ["gateway", `timeout 10 wget -q -O - http://${ADDR.gw4}:${UPSTREAM_PORT}/`],
        ["remote", `timeout 10 wget -q -O - http://${ADDR.remote4}:${UPSTREAM_PORT}/`],
        ["dns", `nslookup ${ADDR.remoteName}`],
        ["resolv", "cat /etc/resolv.conf"],
      ]);
      expect(code, why).toBe(0);
      expect(s.addr4?.out, why).toContain(`inet ${ADDR.host4}/${ADDR.prefix4}`);
      expect(s.addr6?.out, why).toContain(`inet6 ${ADDR.host6}/`);
      expect(s.route4?.out, why).toMatch(new RegExp(`^default via ${ADDR.gw4.replace(/\./g, "\\.")} dev ${HOST_IF}`, "m"));
      expect(s.gateway, why).toEqual({ out: UPSTREAM_PAGE, rc: 0 });
      expect(s.remote, why).toEqual({ out: UPSTREAM_PAGE, rc: 0 });
      expect(s.resolv?.out, why).toContain(`nameserver ${PODMAN_DNS_FORWARD}`);
      expect(s.dns?.rc, why).toBe(0);
      expect(s.dns?.out, why).toMatch(new RegExp(`Address:\\s+${ADDR.remote4.replace(/\./g, "\\.")}`));
    }, 120000);

    test("the host's own address from the container, through --map-guest-addr 169.254.1.2 (Podman's host.containers.internal)", async () => {
      const { s, why } = await inContainer(p5, [["hostaddr", `timeout 10 wget -q -O - http://${PODMAN_MAP_GUEST_ADDR}:${HOST_PORT}/`]]);
      expect(s.hostaddr, why).toEqual({ out: HOST_PAGE, rc: 0 });
    }, 120000);

    test("published ports: busybox httpd in the container answers on the host at :8080 (any address) and 127.0.0.1:8081 only", async () => {
      const run = await pm.podman(
        ["run", "-d", "--name", "web", "--network", `ns:${p5}`, pm.image, "httpd", "-f", "-p", "80", "-h", "/www"],
        { timeoutMs: 90000 },
      );
      expect(run.code, `podman run -d: ${run.stderr}`).toBe(0);
      const get = (addr: string, port: number) =>
        w.exec(w.host, ["busybox", "wget", "-q", "-O", "-", `http://${addr}:${port}/`], { timeoutMs: 15000 });
      let first = await get("127.0.0.1", 8080);
      for (let i = 0; i < 50 && first.stdout !== IMAGE_PAGE; i++) {
        await Bun.sleep(100); // httpd starting
        first = await get("127.0.0.1", 8080);
      }
      const results = {
        "127.0.0.1:8080": first.stdout,
        [`${ADDR.host4}:8080`]: (await get(ADDR.host4, 8080)).stdout,
        "127.0.0.1:8081": (await get("127.0.0.1", 8081)).stdout,
      };
      expect(results).toEqual({ "127.0.0.1:8080": IMAGE_PAGE, [`${ADDR.host4}:8080`]: IMAGE_PAGE, "127.0.0.1:8081": IMAGE_PAGE });
      const outside = await get(ADDR.host4, 8081);
      expect(outside.code, `${ADDR.host4}:8081 must not be forwarded: ${outside.stdout}${outside.stderr}`).not.toBe(0);
      const rm = await pm.podman(["rm", "--force", "--time", "0", "web"]);
      expect(rm.code, rm.stderr).toBe(0);
    }, 120000);

    test("a second container publishing the same port: its pasta fails with status 1 naming the port, and leaves nothing running", async () => {
      const f = await makeNetnsFile("busy");
      const l = await launchInside({ launcher: "podman5", pasta: pastaArgv([], repo), netns: f, ports: [PORTS[0]!] });
      const left = pidsWithArgs(["--netns", f]);
      for (const pid of left) process.kill(pid, "SIGKILL");
      expect(l.hung, `the caller hangs: ${why(l)}`).toBe(false);
      expect(l.code, why(l)).toBe(1);
      expect(l.output, why(l)).toContain(`${PORTS[0]!.hostPort}`);
      expect(left, why(l)).toEqual([]);
      await removeNetnsFile(f);
    }, 90000);

    test("removing the namespace file (umount, unlink) ends pasta", async () => {
      expect(p5Pids.length).toBeGreaterThan(0);
      await removeNetnsFile(p5);
      const left = await waitGone(p5Pids, QUIT_WAIT_MS);
      expect(left, `pasta still running ${QUIT_WAIT_MS} ms after ${p5} was removed`).toEqual([]);
    }, 30000);

    test("Podman 4.4's launch (two pipes, no --map-guest-addr) returns; a container sees the address; the namespace file's removal ends pasta", async () => {
      const f = await makeNetnsFile("p44");
      const l = await launchInside({ launcher: "podman44", pasta: pastaArgv([], repo), netns: f, ports: [] });
      const pids = pidsWithArgs(["--netns", f]);
      expect(l.hung, `the caller hangs: ${why(l)}`).toBe(false);
      expect(l.code, why(l)).toBe(0);
      expect(pids.length, why(l)).toBe(1);
      const r = await pm.podman(["run", "--rm", "--network", `ns:${f}`, pm.image, "ip", "-o", "-4", "addr", "show", "dev", HOST_IF], {
        timeoutMs: 90000,
      });
      expect(r.stdout, r.stderr).toContain(`inet ${ADDR.host4}/${ADDR.prefix4}`);
      await removeNetnsFile(f);
      expect(await waitGone(pids, QUIT_WAIT_MS), `pasta still running after ${f} was removed`).toEqual([]);
    }, 120000);

    test("Podman 5's rootless-netns launch (--pid FILE): the pid file names the running pasta when the launch returns; SIGTERM, Podman's teardown, ends it", async () => {
      const f = await makeNetnsFile("rootless");
      const pidFile = join(pm.runtimeDir, "containers", "networks", "rootless-netns", "rootless-netns-conn.pid");
      await pm.exec(["mkdir", "-p", join(pidFile, "..")]);
      const l = await launchInside({ launcher: "podman5", pasta: pastaArgv([], repo), netns: f, ports: [], extra: ["--pid", pidFile] });
      const pids = pidsWithArgs(["--netns", f]);
      expect(l.hung, `the caller hangs: ${why(l)}`).toBe(false);
      expect(l.code, why(l)).toBe(0);
      const r = await pm.exec(["cat", pidFile]);
      const pid = Number(r.stdout.trim());
      expect(pids, `pid file ${pidFile}: ${JSON.stringify(r.stdout)}: ${why(l)}`).toEqual([pid]);
      process.kill(pid, "SIGTERM");
      expect(await waitGone(pids, QUIT_WAIT_MS), `pasta still running ${QUIT_WAIT_MS} ms after SIGTERM`).toEqual([]);
      await removeNetnsFile(f);
    }, 90000);

    test("an option pasta doesn't know: status 1 and the getopt message Podman 5's retry rule looks for", async () => {
      const l = await runLikeCaller(pastaArgv(["--no-such-option", "--netns", "/nonexistent"]), { combined: true });
      expect(l.code, why(l)).toBe(1);
      expect(l.output, why(l)).toContain("unrecognized option '--no-such-option'");
    }, 30000);
  });
}
