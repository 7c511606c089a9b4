/**
 * Port forwarding as Podman, rootlesskit and libvirt use it (issue 14), end
 * to end as root, driven by socat and ss (src/fwd/ports.ts, src/fwd/forward.ts):
 *
 *   busy       a published port that can't be bound ends pasta and passt with
 *              status 1 and one line naming the spec and the port, in the
 *              foreground and in the background (Podman's --netns launch,
 *              libvirt's passt launch); nothing is left behind. A port
 *              that can't be bound by a spec without ranges (weak rules)
 *              is skipped with a warning, and the others work.
 *   rootlesskit  its command line with --netns FILE and -t auto -u auto: servers
 *              started in the namespace afterwards are reached from the host.
 *   podman     -t 8080-8080:80-80 and -t 127.0.0.1/8081-8081:80-80 (8081 bound
 *              on 127.0.0.1 only), -u none -T none -U none (nothing bound);
 *              and -t %lo/8082:80, bound to an interface.
 *   target     -t 0.0.0.0/5000:192.0.2.55/6000 and the same for -u reach an
 *              extra address of the namespace, through the tap; -t [::1]/… and
 *              -t * /7000:7001 forms.
 *   freebind   -t 192.0.2.77/9000 fails without --freebind, starts with it,
 *              and forwards once the host gets the address.
 *   no-splice  a connection from the host's loopback arrives in the namespace
 *              from the gateway, over the tap (its counters move), instead
 *              of from loopback over the spliced path.
 *   splice-only  no tap in the namespace (ip link: lo only); loopback
 *              forwarding both ways works, TCP and UDP; a connection from
 *              outside is closed without reaching the namespace.
 *
 * PASTA_TEST_CMD (split on spaces) runs another program with the same options.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, createWorld, describeE2E, type Child, type ExecResult, type World } from "../world.ts";
import { NetnsFiles } from "../tools/netns-file.ts";
import { pastaArgv, procsWith } from "../tools/pasta.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";
import { formatIp6, parseIp6 } from "../../src/conf/config.ts";

const BOUND_MS = 20000;
let seq = 0;

/** A string no other process has in its command line. */
function marker(): string {
  return `ports-marker-${process.pid}-${++seq}`;
}

/** The one line on stderr (passt's note on dropping root aside), prefixed with the program's name. */
function oneLine(r: ExecResult, prog: "pasta" | "passt"): string {
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("started as root"));
  expect(lines.length, `one line on stderr:\n${r.stderr}`).toBe(1);
  expect(lines[0]!).toStartWith(`${prog}: `);
  return lines[0]!;
}

describeE2E("ports: forwarding as Podman, rootlesskit and libvirt use it (root)", () => {
  let w: World;
  let s: PastaSession | null = null;
  let nsFiles: NetnsFiles;

  beforeAll(async () => {
    w = await createWorld();
    nsFiles = new NetnsFiles(w.dir, "ports");
  });
  afterAll(async () => {
    await s?.stop();
    nsFiles?.removeAll();
    await w?.destroy();
  });

  async function session(args: string[]): Promise<PastaSession> {
    await s?.stop();
    s = await startPasta(w, args);
    return s;
  }

  /** Run cmd in ns (a world namespace name, or "guest"). */
  function inNs(ns: string, cmd: string[]): Promise<ExecResult> {
    return ns === "guest" ? s!.guest(cmd, { timeoutMs: BOUND_MS }) : w.exec(ns, cmd, { timeoutMs: BOUND_MS });
  }

  /** A socat server in ns that answers every connection (or datagram) with the peer's address; resolves once it is bound. */
  async function peerServer(ns: string, listen: string, port: number, udp = false): Promise<Child> {
    const bound = async () =>
      (await inNs(ns, ["ss", udp ? "-Hlun" : "-Hltn", `sport = :${port}`])).stdout.trim().split("\n").filter(Boolean).length;
    const before = await bound();
    const cmd = ["socat", listen, "SYSTEM:echo $SOCAT_PEERADDR"];
    const c = ns === "guest" ? s!.guestSpawn(cmd) : w.spawn(ns, cmd);
    for (let i = 0; i < 100; i++) {
      if ((await bound()) > before) return c;
      await Bun.sleep(50);
    }
    throw new Error(`server ${listen} in ${ns} not listening: ${c.stderr()}`);
  }

  /**
   * What a socat client in ns gets from addr (socat address form), trimmed;
   * "" when closed without data or refused; IPv6 addresses in their short
   * form. UDP clients send a line first.
   */
  async function ask(ns: string, addr: string): Promise<string> {
    const cmd = ["socat", "-t", "3", "-T", "5", "-", addr];
    const opts = { timeoutMs: BOUND_MS, input: addr.startsWith("UDP") ? "hello\n" : "" };
    const r = ns === "guest" ? await s!.guest(cmd, opts) : await w.exec(ns, cmd, opts);
    const out = r.stdout.trim();
    // socat writes IPv6 peers in full, in brackets
    return /^\[[0-9a-f:]+\]$/.test(out) ? formatIp6(parseIp6(out.slice(1, -1))) : out;
  }

  // ------------------------------------------------------------ busy ports

  test("a busy published port: pasta exits 1 with one line naming it, nothing left (foreground and --netns)", async () => {
    await s?.stop();
    s = null;
    const tcp = await peerServer(w.host, "TCP4-LISTEN:8092,reuseaddr,fork", 8092);
    const udp = await peerServer(w.host, "UDP4-RECVFROM:8093,fork", 8093, true);
    try {
      for (const [spec, msg] of [
        [["-t", "8092-8092:80-80"], "-t 8092-8092:80-80: can't listen on TCP port 8092 of 0.0.0.0: EADDRINUSE"],
        [["-t", "8090-8094"], "-t 8090-8094: can't listen on TCP port 8092 of 0.0.0.0: EADDRINUSE"],
        [["-u", "8093"], "-u 8093: can't listen on UDP port 8093 of 0.0.0.0: EADDRINUSE"],
      ] as const) {
        const m = marker();
        const pidFile = join(w.dir, `${m}.pid`);
        const r = await w.exec(w.host, pastaArgv(["-f", "--config-net", "-P", pidFile, ...spec, "--", "sh", "-c", "sleep 600", m]), {
          timeoutMs: BOUND_MS,
        });
        expect(r.timedOut, `${spec.join(" ")}: still running`).toBe(false);
        expect(r.code, r.stderr).toBe(1);
        expect(oneLine(r, "pasta")).toContain(msg);
        expect(procsWith(m), "the command is gone").toEqual([]);
        expect(existsSync(pidFile), "no pid file").toBe(false);
      }
      // Podman's launch: --netns FILE, background, --quiet
      const path = nsFiles.make();
      const pidFile = join(w.dir, `${marker()}.pid`);
      const r = await w.exec(
        w.host,
        pastaArgv([
          "--config-net",
          "-t",
          "8092-8092:80-80",
          "-u",
          "none",
          "-T",
          "none",
          "-U",
          "none",
          "--quiet",
          "-P",
          pidFile,
          "--netns",
          path,
        ]),
        { timeoutMs: BOUND_MS },
      );
      expect(r.code, r.stderr).toBe(1);
      expect(oneLine(r, "pasta")).toContain("-t 8092-8092:80-80: can't listen on TCP port 8092");
      expect(procsWith(path), "no pasta left for the namespace").toEqual([]);
      expect(existsSync(pidFile), "no pid file").toBe(false);
    } finally {
      await tcp.kill();
      await udp.kill();
    }
  });

  test("a busy forwarded port: passt exits 1 with one line, no socket or pid file (foreground and libvirt's background launch)", async () => {
    const tcp = await peerServer(w.host, "TCP4-LISTEN:8089,reuseaddr,fork", 8089);
    try {
      for (const fg of [["-f"], []]) {
        const m = marker();
        const sock = join(w.dir, `${m}.socket`);
        const pidFile = join(w.dir, `${m}.pid`);
        const argv = pastaArgv([...fg, "--one-off", "--socket", sock, "--pid", pidFile, "--tcp-ports", "8089:80"]);
        const r = await w.exec(w.host, argv, { timeoutMs: BOUND_MS, env: { PASST_MODE: "passt" } });
        expect(r.timedOut).toBe(false);
        expect(r.code, r.stderr).toBe(1);
        expect(oneLine(r, "passt")).toContain("-t 8089:80: can't listen on TCP port 8089 of 0.0.0.0: EADDRINUSE");
        expect(existsSync(sock), "no socket file").toBe(false);
        expect(existsSync(pidFile), "no pid file").toBe(false);
        expect(procsWith(sock)).toEqual([]);
      }
    } finally {
      await tcp.kill();
    }
  });

  test("a spec without ranges (weak rules) skips a busy port with a warning; the others forward", async () => {
    const busy = await peerServer(w.host, "TCP4-LISTEN:32100,reuseaddr,fork", 32100);
    try {
      // the world's ephemeral range is 32768-60999: this spec covers 32001-32767
      const p = await session(["--config-net", "-t", "~1-32000,~61000-65535", "-u", "none", "-T", "none", "-U", "none"]);
      expect(p.log()).toContain("-t ~1-32000,~61000-65535: 1 of 1534 TCP sockets of 32001-32767 not bound");
      await peerServer("guest", "TCP4-LISTEN:32101,reuseaddr,fork", 32101);
      expect(await ask(w.upstream, `TCP4:${ADDR.host4}:32101`)).toBe(ADDR.gw4);
      expect(await ask(w.host, "TCP4:127.0.0.1:32100"), "the busy port is the host's own server").toBe("127.0.0.1");
    } finally {
      await busy.kill();
    }
  });

  // ------------------------------------------------------------ Podman

  test("Podman's specs: -t 8080-8080:80-80, -t 127.0.0.1/8081-8081:80-80 bound on loopback only; -u none -T none -U none bind nothing; %lo/8082", async () => {
    await session([
      "--config-net",
      "-t",
      "8080-8080:80-80",
      "-t",
      "127.0.0.1/8081-8081:80-80",
      "-t",
      "%lo/8082:80",
      "-u",
      "none",
      "-T",
      "none",
      "-U",
      "none",
    ]);
    await peerServer("guest", "TCP4-LISTEN:80,reuseaddr,fork", 80);
    expect(await ask(w.upstream, `TCP4:${ADDR.host4}:8080`), "8080 from outside").toBe(ADDR.gw4);
    expect(await ask(w.host, "TCP4:127.0.0.1:8080"), "8080 from the host's loopback").toBe("127.0.0.1");
    expect(await ask(w.host, "TCP4:127.0.0.1:8081"), "8081 from the host's loopback").toBe("127.0.0.1");
    expect(await ask(w.upstream, `TCP4:${ADDR.host4}:8081`), "8081 not from outside").toBe("");
    expect(await ask(w.host, "TCP4:127.0.0.1:8082"), "%lo/8082 from the host").toBe("127.0.0.1");
    expect(await ask(w.upstream, `TCP4:${ADDR.host4}:8082`), "%lo/8082 not through eth0").toBe("");
    const ss = (await inNs(w.host, ["ss", "-Hltn"])).stdout;
    expect(ss).toMatch(/127\.0\.0\.1:8081\s/);
    expect(ss).not.toMatch(/(0\.0\.0\.0|\*|\[::\]):8081\s/);
    expect(ss).toMatch(/0\.0\.0\.0:8080\s/);
    expect(ss).toMatch(/0\.0\.0\.0%lo:8082\s/);
    expect((await inNs(w.host, ["ss", "-Hlun"])).stdout.trim(), "-u none: no UDP socket on the host").toBe("");
    const guestTcp = (await inNs("guest", ["ss", "-Hltn"])).stdout.trim().split("\n");
    expect(guestTcp.length, `-T none: only the server listens in the namespace:\n${guestTcp.join("\n")}`).toBe(1);
    expect((await inNs("guest", ["ss", "-Hlun"])).stdout.trim(), "-U none: no UDP socket in the namespace").toBe("");
  });

  // ------------------------------------------------------------ rootlesskit

  test("rootlesskit's line with --netns FILE (no process in the namespace): -t auto -u auto follow servers started after pasta", async () => {
    await s?.stop();
    s = null;
    const path = nsFiles.make();
    const argv = pastaArgv([
      "--stderr",
      "--ns-ifname=tap0",
      "--mtu=65520",
      "--config-net",
      "--address",
      "10.0.2.100",
      "--netmask",
      "255.255.255.0",
      "--gateway",
      "10.0.2.2",
      "--dns-forward",
      "10.0.2.3",
      "--no-map-gw",
      "--ipv4-only",
      "-t",
      "auto",
      "-u",
      "auto",
      "--netns",
      path,
    ]);
    const r = await w.exec(w.host, argv, { timeoutMs: BOUND_MS });
    expect(r.code, r.stderr).toBe(0);
    const daemons = procsWith(path).filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--netns"));
    expect(daemons.length, "one pasta in the background").toBe(1);
    const inside = (cmd: string[]) => ["nsenter", `--net=${path}`, "--", ...cmd];
    const tcp = w.spawn(null, inside(["socat", "TCP4-LISTEN:8000,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR"]));
    const udp = w.spawn(null, inside(["socat", "UDP4-RECVFROM:8001,fork", "SYSTEM:echo $SOCAT_PEERADDR"]));
    try {
      let got = ["", ""];
      for (let i = 0; i < 40 && got.some((g) => g === ""); i++) {
        got = [await ask(w.host, "TCP4:127.0.0.1:8000"), await ask(w.host, "UDP4:127.0.0.1:8001")];
        if (got.some((g) => g === "")) await Bun.sleep(250);
      }
      expect(got, "TCP and UDP servers in the namespace reached from the host's loopback").toEqual(["127.0.0.1", "127.0.0.1"]);
    } finally {
      await tcp.kill();
      await udp.kill();
      for (const pid of daemons) process.kill(pid, "SIGTERM"); // ours: its argv names our namespace file
    }
  });

  // ------------------------------------------------------------ target addresses

  test("-t/-u 0.0.0.0/5000:192.0.2.55/6000 reach that address in the namespace, through the tap; */7000:7001 listens on both versions", async () => {
    await session([
      "--config-net",
      "-t",
      "0.0.0.0/5000:192.0.2.55/6000",
      "-u",
      "0.0.0.0/5000:192.0.2.55/6000",
      "-t",
      "*/7000:7001",
      "-T",
      "none",
      "-U",
      "none",
    ]);
    expect((await inNs("guest", ["ip", "addr", "add", "192.0.2.55/24", "dev", "eth0"])).code).toBe(0);
    await peerServer("guest", "TCP4-LISTEN:6000,bind=192.0.2.55,reuseaddr,fork", 6000);
    await peerServer("guest", "UDP4-RECVFROM:6000,bind=192.0.2.55,fork", 6000, true);
    await peerServer("guest", "TCP6-LISTEN:7001,ipv6only=1,reuseaddr,fork", 7001);
    expect(await ask(w.host, "TCP4:127.0.0.1:5000"), "TCP from the host's loopback: from the gateway").toBe(ADDR.gw4);
    expect(await ask(w.upstream, `TCP4:${ADDR.host4}:5000,bind=${ADDR.remote4}`), "TCP from outside: its own address").toBe(ADDR.remote4);
    expect(await ask(w.host, "UDP4:127.0.0.1:5000"), "UDP from the host's loopback").toBe(ADDR.gw4);
    expect(await ask(w.upstream, `UDP4:${ADDR.host4}:5000,bind=${ADDR.remote4}`), "UDP from outside").toBe(ADDR.remote4);
    expect(await ask(w.host, "TCP6:[::1]:7000"), "*/7000 on IPv6").toBe("::1");
    const ss = (await inNs(w.host, ["ss", "-Hltn"])).stdout;
    expect(ss).toMatch(/0\.0\.0\.0:5000\s/);
    expect(ss, "0.0.0.0/5000 is IPv4 only").not.toMatch(/\[::\]:5000\s/);
    expect(ss).toMatch(/0\.0\.0\.0:7000\s/);
    expect(ss).toMatch(/\[::\]:7000\s/);
  });

  // ------------------------------------------------------------ --freebind

  test("--freebind: -t 192.0.2.77/9000 fails without it, starts with it, and forwards once the host has the address", async () => {
    await s?.stop();
    s = null;
    const m = marker();
    const r = await w.exec(w.host, pastaArgv(["-f", "-t", "192.0.2.77/9000", "--", "sh", "-c", "sleep 600", m]), { timeoutMs: BOUND_MS });
    expect(r.code, r.stderr).toBe(1);
    expect(oneLine(r, "pasta")).toContain("-t 192.0.2.77/9000: can't listen on TCP port 9000 of 192.0.2.77: EADDRNOTAVAIL");
    expect(procsWith(m)).toEqual([]);
    await session(["--config-net", "--freebind", "-t", "192.0.2.77/9000", "-u", "none", "-T", "none", "-U", "none"]);
    await peerServer("guest", "TCP4-LISTEN:9000,reuseaddr,fork", 9000);
    expect((await inNs(w.host, ["ss", "-Hltn"])).stdout).toMatch(/192\.0\.2\.77:9000\s/);
    expect((await inNs(w.host, ["ip", "addr", "add", "192.0.2.77/32", "dev", "lo"])).code).toBe(0);
    try {
      expect(await ask(w.host, "TCP4:192.0.2.77:9000")).toBe("192.0.2.77");
    } finally {
      await inNs(w.host, ["ip", "addr", "del", "192.0.2.77/32", "dev", "lo"]);
    }
  });

  // ------------------------------------------------------------ --no-splice

  /** rx_packets of the namespace's eth0. */
  async function tapRx(): Promise<number> {
    const j = JSON.parse((await inNs("guest", ["ip", "-s", "-j", "link", "show", "eth0"])).stdout);
    return j[0].stats64.rx.packets;
  }

  test("--no-splice: from the host's loopback, TCP and UDP arrive from the gateway over the tap; spliced (from loopback) without it", async () => {
    for (const noSplice of [true, false]) {
      await session(["--config-net", ...(noSplice ? ["--no-splice"] : []), "-t", "8080:80", "-u", "8080:80", "-T", "none", "-U", "none"]);
      await peerServer("guest", "TCP4-LISTEN:80,reuseaddr,fork", 80);
      await peerServer("guest", "TCP6-LISTEN:80,ipv6only=1,reuseaddr,fork", 80);
      await peerServer("guest", "UDP4-RECVFROM:80,fork", 80, true);
      const rx = await tapRx();
      const what = noSplice ? "--no-splice" : "spliced";
      expect(await ask(w.host, "TCP4:127.0.0.1:8080"), `${what}: TCP`).toBe(noSplice ? ADDR.gw4 : "127.0.0.1");
      expect(await ask(w.host, "TCP6:[::1]:8080"), `${what}: TCP over IPv6`).toBe(noSplice ? ADDR.gwLL : "::1");
      expect(await ask(w.host, "UDP4:127.0.0.1:8080"), `${what}: UDP`).toBe(noSplice ? ADDR.gw4 : "127.0.0.1");
      const moved = (await tapRx()) - rx;
      if (noSplice) expect(moved, "frames through the tap").toBeGreaterThanOrEqual(10);
      else expect(moved, "frames through the tap").toBeLessThan(10);
    }
  });

  // ------------------------------------------------------------ --splice-only

  test("--splice-only: no tap in the namespace; loopback forwarding both ways; a connection from outside is closed", async () => {
    await session(["--splice-only", "-t", "8080:80", "-u", "8080:80", "-T", "9090:9091", "-U", "none"]);
    const links = JSON.parse((await inNs("guest", ["ip", "-j", "link"])).stdout).map((l: { ifname: string }) => l.ifname);
    expect(links).toEqual(["lo"]);
    await peerServer("guest", "TCP4-LISTEN:80,reuseaddr,fork", 80);
    await peerServer("guest", "UDP4-RECVFROM:80,fork", 80, true);
    const hostSrv = await peerServer(w.host, "TCP4-LISTEN:9091,reuseaddr,fork", 9091);
    try {
      expect(await ask(w.host, "TCP4:127.0.0.1:8080"), "-t from the host's loopback").toBe("127.0.0.1");
      expect(await ask(w.host, "UDP4:127.0.0.1:8080"), "-u from the host's loopback").toBe("127.0.0.1");
      expect(await ask("guest", "TCP4:127.0.0.1:9090"), "-T from the namespace's loopback").toBe("127.0.0.1");
      expect(await ask(w.upstream, `TCP4:${ADDR.host4}:8080`), "-t from outside: closed").toBe("");
      expect(s!.alive()).toBe(true);
    } finally {
      await hostSrv.kill();
    }
  });
});
