/**
 * Self-test of the test world (test/world.ts) and its tools: if these fail,
 * no other end-to-end result means anything.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import {
  ADDR,
  DEFAULT_RESOLV_CONF,
  HOST_IF,
  UPSTREAM_IF,
  createWorld,
  describeE2E,
  ensureTestUser,
  isAlive,
  run,
  withWorld,
  type World,
} from "../world.ts";
import { prepareDhclient } from "../tools/dhclient.ts";

function netns(): string[] {
  return run(["ip", "netns", "list"])
    .stdout.split("\n")
    .map((l) => l.split(/\s+/)[0]!)
    .filter(Boolean);
}

const alive = isAlive;

describeE2E("test world", () => {
  let w: World;

  beforeAll(async () => {
    w = await createWorld({ dns: true });
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("both namespaces exist with unique names", () => {
    const list = netns();
    expect(list).toContain(w.host);
    expect(list).toContain(w.upstream);
    expect(w.host).not.toBe(w.upstream);
    expect(w.host).toContain(String(process.pid));
  });

  test("host namespace: eth0 addresses, fixed MAC, default routes, ping_group_range", async () => {
    const links = JSON.parse((await w.exec(w.host, ["ip", "-j", "addr", "show"])).stdout);
    const lo = links.find((l: any) => l.ifname === "lo");
    expect(lo.flags).toContain("UP");
    const eth0 = links.find((l: any) => l.ifname === HOST_IF);
    expect(eth0.address).toBe(ADDR.hostMac);
    expect(eth0.flags).toContain("UP");
    const addrs = eth0.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
    expect(addrs).toContain(`${ADDR.host4}/24`);
    expect(addrs).toContain(`${ADDR.host6}/64`);
    expect(addrs).toContain(`${w.hostLinkLocal}/64`);
    expect(eth0.addr_info.some((a: any) => a.tentative)).toBe(false);

    const r4 = JSON.parse((await w.exec(w.host, ["ip", "-j", "-4", "route", "show", "default"])).stdout);
    expect(r4[0]).toMatchObject({ dst: "default", gateway: ADDR.gw4, dev: HOST_IF });
    const r6 = JSON.parse((await w.exec(w.host, ["ip", "-j", "-6", "route", "show", "default"])).stdout);
    expect(r6[0]).toMatchObject({ dst: "default", gateway: ADDR.gwLL, dev: HOST_IF });

    const pgr = await w.exec(w.host, ["sysctl", "-n", "net.ipv4.ping_group_range"]);
    expect(pgr.stdout.trim().split(/\s+/)).toEqual(["0", "2147483647"]);
  });

  test("upstream namespace: gateway, link-local gateway, remote addresses, forwarding", async () => {
    const links = JSON.parse((await w.exec(w.upstream, ["ip", "-j", "addr", "show"])).stdout);
    const gw = links.find((l: any) => l.ifname === UPSTREAM_IF);
    expect(gw.address).toBe(ADDR.upstreamMac);
    const gwAddrs = gw.addr_info.map((a: any) => a.local);
    expect(gwAddrs).toEqual(expect.arrayContaining([ADDR.gw4, ADDR.gw6, ADDR.gwLL]));
    const lo = links.find((l: any) => l.ifname === "lo");
    const loAddrs = lo.addr_info.map((a: any) => a.local);
    expect(loAddrs).toEqual(expect.arrayContaining([ADDR.remote4, ADDR.dns4, ADDR.remote6, ADDR.dns6]));
    const fwd = await w.exec(w.upstream, ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]);
    expect(fwd.stdout.trim().split(/\s+/)).toEqual(["1", "1"]);
    // no way out: the upstream namespace has no default route
    const def = await w.exec(w.upstream, ["ip", "route", "show", "default"]);
    expect(def.stdout.trim()).toBe("");
  });

  test("host reaches the gateway and the remote addresses (ping, ping -6)", async () => {
    for (const [fam, dst] of [
      ["-4", ADDR.gw4],
      ["-6", ADDR.gw6],
      ["-6", `${ADDR.gwLL}%${HOST_IF}`],
      ["-4", ADDR.remote4],
      ["-6", ADDR.remote6],
      ["-4", ADDR.dns4],
      ["-6", ADDR.dns6],
    ] as const) {
      const r = await w.exec(w.host, ["ping", fam, "-c", "1", "-W", "2", dst], { timeoutMs: 10000 });
      expect(`${dst}: ${r.code} ${r.stderr}`).toBe(`${dst}: 0 `);
    }
  });

  test("inside `ip netns exec host`, /etc/resolv.conf is the private one; the machine's is untouched", async () => {
    const before = existsSync("/etc/resolv.conf") ? readFileSync("/etc/resolv.conf", "utf8") : null;
    const r = await w.exec(w.host, ["cat", "/etc/resolv.conf"]);
    expect(r.stdout).toBe(DEFAULT_RESOLV_CONF);
    expect(w.resolvConf).toBe(DEFAULT_RESOLV_CONF);
    const after = existsSync("/etc/resolv.conf") ? readFileSync("/etc/resolv.conf", "utf8") : null;
    expect(after).toBe(before);
  });

  test("DNS responder answers A/AAAA over UDP and TCP, NXDOMAIN for unknown names", async () => {
    const dig = async (...args: string[]) => {
      const r = await w.exec(w.host, ["dig", "+time=2", "+tries=1", ...args], { timeoutMs: 10000 });
      expect(r.code).toBe(0);
      return r.stdout.trim();
    };
    if (!Bun.which("dig")) {
      console.log("dig not installed (bind9-dnsutils): DNS checked with getent only");
    } else {
      expect(await dig("+short", `@${ADDR.dns4}`, ADDR.remoteName, "A")).toBe(ADDR.remote4);
      expect(await dig("+short", `@${ADDR.dns6}`, ADDR.remoteName, "AAAA")).toBe(ADDR.remote6);
      expect(await dig("+short", "+tcp", `@${ADDR.dns4}`, ADDR.remoteName, "AAAA")).toBe(ADDR.remote6);
      expect(await dig(`@${ADDR.dns4}`, "nosuch.example.test", "A")).toContain("status: NXDOMAIN");
    }
    // through the private resolv.conf, search domain included
    const g = await w.exec(w.host, ["getent", "ahosts", "remote"], { timeoutMs: 10000 });
    expect(g.code).toBe(0);
    expect(g.stdout).toContain(ADDR.remote4);
    expect(g.stdout).toContain(ADDR.remote6);
    expect(g.stdout).toContain(ADDR.remoteName);
    await w.dns!.waitFor(new RegExp(`query A ${ADDR.remoteName.replace(/\./g, "\\.")} from ${ADDR.host4.replace(/\./g, "\\.")} `));
  });

  test("exec: output, exit code, stdin, timeout", async () => {
    const r = await w.exec(w.host, ["sh", "-c", "cat; echo err >&2; exit 3"], { input: "hello" });
    expect(r).toMatchObject({ code: 3, stdout: "hello", stderr: "err\n", timedOut: false });
    const t0 = Date.now();
    const slow = await w.exec(w.host, ["sleep", "30"], { timeoutMs: 300 });
    expect(slow.timedOut).toBe(true);
    expect(slow.code).not.toBe(0);
    expect(Date.now() - t0).toBeLessThan(10000);
  });

  test("spawn: waitFor and kill of the whole process group", async () => {
    const c = w.spawn(w.host, ["sh", "-c", "sleep 60 & echo child=$!; echo ready; wait"]);
    const m = await c.waitFor(/child=(\d+)/);
    await c.waitFor("ready");
    const grandchild = Number(m[1]);
    expect(alive(grandchild)).toBe(true);
    await c.kill();
    for (let i = 0; i < 20 && alive(grandchild); i++) await Bun.sleep(50);
    expect(alive(grandchild)).toBe(false);
  });

  test("unprivileged user: exists, runs commands in the host namespace, /dev/net/tun open", async () => {
    const u = ensureTestUser();
    expect(ensureTestUser()).toBe(u); // idempotent
    expect(u.uid).toBeGreaterThan(0);
    expect(statSync("/dev/net/tun").mode & 0o666).toBe(0o666);
    const id = await w.exec(w.host, ["sh", "-c", 'id -u; echo "$HOME"; cat /proc/self/status | grep ^CapEff'], { user: true });
    const [uid, home, capEff] = id.stdout.trim().split("\n");
    expect(Number(uid)).toBe(u.uid);
    expect(home).toBe(u.home);
    expect(capEff).toMatch(/^CapEff:\s+0+$/);
    const ping = await w.exec(w.host, ["ping", "-c", "1", "-W", "2", ADDR.remote4], { user: true, timeoutMs: 10000 });
    expect(ping.code).toBe(0);
  });

  test("dhclient helper: gives up with a non-zero status when no server answers", async () => {
    const d = prepareDhclient(4, { iface: HOST_IF, timeoutSec: 2, noConfig: true });
    try {
      const r = await w.exec(w.host, ["sh", "-c", d.shell], { timeoutMs: 30000 });
      expect(r.code).not.toBe(0);
      expect(d.lastBound()).toBeUndefined();
      expect(d.records().map((x) => x.reason)).toContain("PREINIT");
    } finally {
      d.cleanup();
    }
  });

  const reference = existsSync("/usr/bin/pasta") ? test : test.skip;
  reference("reference pasta (Debian passt), unprivileged, gives leases the private dhclient-script records and applies", async () => {
    const d4 = prepareDhclient(4);
    const d6 = prepareDhclient(6);
    try {
      const script = `${d4.shell}; echo rc4=$?; ${d6.shell}; echo rc6=$?; ip -j addr show dev eth0; echo; ip -j route show default`;
      const r = await w.exec(w.host, ["/usr/bin/pasta", "-f", "-q", "--", "sh", "-c", script], { user: true, timeoutMs: 60000 });
      expect(r.stdout).toContain("rc4=0");
      expect(r.stdout).toContain("rc6=0");
      const b4 = d4.lastBound()!;
      expect(b4).toMatchObject({
        reason: "BOUND",
        interface: "eth0",
        new_ip_address: ADDR.host4,
        new_subnet_mask: "255.255.255.0",
        new_routers: ADDR.gw4,
      });
      const b6 = d6.lastBound()!;
      expect(b6).toMatchObject({ reason: "BOUND6", interface: "eth0", new_ip6_address: ADDR.host6 });
      // the script configured the guest with what it received
      const lines = r.stdout.split("\n");
      const addr = JSON.parse(lines.find((l) => l.startsWith("[{") && l.includes("addr_info"))!);
      const locals = addr[0].addr_info.map((a: any) => `${a.local}/${a.prefixlen}`);
      expect(locals).toContain(`${ADDR.host4}/24`);
      expect(locals).toContain(`${ADDR.host6}/128`);
      if (b4.new_interface_mtu) expect(addr[0].mtu).toBe(Number(b4.new_interface_mtu));
      const route = JSON.parse(lines.findLast((l) => l.startsWith("["))!);
      expect(route[0]).toMatchObject({ dst: "default", gateway: ADDR.gw4 });
    } finally {
      d4.cleanup();
      d6.cleanup();
    }
  });
});

describeE2E("test world teardown", () => {
  test("destroy() kills children and removes namespaces, /etc/netns dirs and the temp dir", async () => {
    const w = await createWorld({ dns: true });
    const c = w.spawn(w.host, ["sleep", "600"]);
    const names = [w.host, w.upstream];
    expect(existsSync(`/etc/netns/${w.host}/resolv.conf`)).toBe(true);
    await w.destroy();
    await w.destroy(); // idempotent
    for (const n of names) {
      expect(netns()).not.toContain(n);
      expect(existsSync(`/etc/netns/${n}`)).toBe(false);
      expect(existsSync(`/run/netns/${n}`)).toBe(false);
    }
    expect(existsSync(w.dir)).toBe(false);
    expect(alive(c.pid)).toBe(false);
  });

  test("withWorld() tears down when the body throws", async () => {
    let names: string[] = [];
    await expect(
      withWorld({}, async (w) => {
        names = [w.host, w.upstream];
        w.spawn(w.upstream, ["sleep", "600"]);
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(names.length).toBe(2);
    for (const n of names) expect(netns()).not.toContain(n);
  });

  test("two worlds at once do not collide", async () => {
    const [a, b] = await Promise.all([createWorld(), createWorld()]);
    try {
      expect(new Set([a.host, a.upstream, b.host, b.upstream]).size).toBe(4);
      for (const x of [a, b]) {
        const r = await x.exec(x.host, ["ping", "-c", "1", "-W", "2", ADDR.remote4], { timeoutMs: 10000 });
        expect(r.code).toBe(0);
      }
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
    for (const n of [a.host, b.host]) expect(netns()).not.toContain(n);
  });
});
