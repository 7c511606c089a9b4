/**
 * What pasta's services and --config-net hand the namespace, seen by real
 * clients: busybox udhcpc and ISC dhclient for DHCP and DHCPv6, the kernel's
 * own view (ip addr, ip route) for --config-net. Each test is one pasta run
 * in the world's host namespace; the guest script records into $OUT.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { hostname } from "node:os";
import { join } from "node:path";
import { ADDR, HOST_IF, createWorld, describeE2E, type World } from "../world.ts";
import { prepareDhclient, type DhcpRecord } from "../tools/dhclient.ts";
import { addrsOf, record, runPasta, waitUntil } from "../tools/pasta.ts";
import { startGuest, startPasst } from "../tools/relay.ts";
import { prepareUdhcpc } from "../tools/udhcpc.ts";

const IF = HOST_IF;

/** sh lines: bring link ifname up and wait (bounded) for a usable link-local address, as rdisc6 and dhclient -6 need. */
function linkLocal(name: string, ifname = IF): string {
  return [
    `ip link set ${ifname} up`,
    waitUntil(name, `ip -6 addr show dev ${ifname} scope link | grep -q inet6 && ! ip -6 addr show dev ${ifname} | grep -q tentative`),
  ].join("\n");
}

/** sh lines: ask for a Router Advertisement on ifname with rdisc6, once there is a link-local address. */
function rdisc6On(ifname: string, name: string): string {
  return [linkLocal(`${name}-ll`, ifname), record(name, `rdisc6 -1 -n -r 5 ${ifname}`)].join("\n");
}

/** rdisc6On for the interface named after the host's. */
function rdisc6(name: string): string {
  return rdisc6On(IF, name);
}

/** The DNS fields of a dhclient -4 or -6 lease record. */
function dnsOf(lease: DhcpRecord | undefined): Record<string, string | undefined> {
  const keys = ["new_domain_name_servers", "new_domain_search", "new_domain_name", "new_dhcp6_name_servers", "new_dhcp6_domain_search"];
  return Object.fromEntries(keys.filter((k) => lease?.[k] !== undefined).map((k) => [k, lease![k]]));
}

describeE2E("pasta services (root)", () => {
  let w: World;
  beforeAll(async () => {
    w = await createWorld();
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("udhcpc, which asks for no MTU, gets the MTU all the same", async () => {
    const u = prepareUdhcpc({ iface: IF });
    try {
      const r = await runPasta(w, [], record("udhcpc", u.shell));
      const why = () => `${r.dump()}\n--- udhcpc records\n${JSON.stringify(u.records(), null, 1)}`;
      expect(r.out("udhcpc.rc").trim(), why()).toBe("0");
      const lease = u.lastBound();
      expect(lease, why()).toMatchObject({ ip: ADDR.host4, subnet: "255.255.255.0", router: ADDR.gw4, mtu: "65520" });
    } finally {
      u.cleanup();
    }
  }, 60000);

  test("pasta hands out DNS servers and search list only with --dhcp-dns and --dhcp-search: dhclient -4, dhclient -6, rdisc6", async () => {
    for (const [args, want] of [
      [[], false],
      [["--dhcp-dns", "--dhcp-search"], true],
    ] as const) {
      const d4 = prepareDhclient(4, { iface: IF, noConfig: true });
      const d6 = prepareDhclient(6, { iface: IF, noConfig: true });
      try {
        const r = await runPasta(w, [...args], [record("dhcp4", d4.shell), rdisc6("ra"), record("dhcp6", d6.shell)].join("\n"));
        const why = () => `${args.join(" ")}\n${r.dump()}\n--- dhclient\n${JSON.stringify([d4.records(), d6.records()], null, 1)}`;
        expect([r.out("dhcp4.rc").trim(), r.out("ra.rc").trim(), r.out("dhcp6.rc").trim()], why()).toEqual(["0", "0", "0"]);
        const ra = r.out("ra");
        if (want) {
          expect(dnsOf(d4.lastBound()), why()).toEqual({
            new_domain_name_servers: ADDR.dns4,
            new_domain_search: `${ADDR.searchDomain}.`,
            new_domain_name: ADDR.searchDomain,
          });
          expect(dnsOf(d6.lastBound()), why()).toEqual({
            new_dhcp6_name_servers: ADDR.dns6,
            new_dhcp6_domain_search: `${ADDR.searchDomain}.`,
          });
          expect(ra, why()).toMatch(new RegExp(`Recursive DNS server\\s*: ${ADDR.dns6}`));
          expect(ra, why()).toMatch(new RegExp(`DNS search list\\s*: ${ADDR.searchDomain}`));
        } else {
          expect(dnsOf(d4.lastBound()), why()).toEqual({});
          expect(dnsOf(d6.lastBound()), why()).toEqual({});
          expect(ra, why()).toContain("Prefix");
          expect(ra, why()).not.toContain("DNS");
        }
      } finally {
        d4.cleanup();
        d6.cleanup();
      }
    }
  }, 120000);

  test("passt hands them out unless --no-dhcp-dns and --no-dhcp-search: dhclient -4 in a relayed guest", async () => {
    for (const [args, want] of [
      [[], true],
      [["--no-dhcp-dns", "--no-dhcp-search"], false],
    ] as const) {
      const sock = join(w.dir, `passt-dns-${want}.socket`);
      const passt = await startPasst(w, ["-s", sock, ...args]);
      const d4 = prepareDhclient(4, { iface: IF, noConfig: true });
      try {
        const g = await startGuest(w, ["--socket", sock]);
        try {
          const c = await g.exec(["sh", "-c", d4.shell], { timeoutMs: 40000 });
          const why = () =>
            `${args.join(" ")}: dhclient ${c.code} ${c.stderr}\n${JSON.stringify(d4.records(), null, 1)}\n${passt.stderr()}`;
          expect(d4.lastBound(), why()).toBeDefined();
          const dns = want
            ? { new_domain_name_servers: ADDR.dns4, new_domain_search: `${ADDR.searchDomain}.`, new_domain_name: ADDR.searchDomain }
            : {};
          expect(dnsOf(d4.lastBound()), why()).toEqual(dns);
        } finally {
          await g.child.kill();
        }
      } finally {
        d4.cleanup();
        await passt.kill();
      }
    }
  }, 120000);

  test("-a ADDR/PREFIX: udhcpc gets the mask, --config-net sets each address with its prefix length; -n still works", async () => {
    for (const args of [
      ["-a", "192.0.2.5/28"],
      ["-a", "192.0.2.5", "-n", "28"],
    ]) {
      const u = prepareUdhcpc({ iface: IF });
      try {
        const r = await runPasta(w, args, record("udhcpc", u.shell));
        const why = () => `${args.join(" ")}\n${r.dump()}\n--- udhcpc records\n${JSON.stringify(u.records(), null, 1)}`;
        expect(u.lastBound(), why()).toMatchObject({ ip: "192.0.2.5", subnet: "255.255.255.240", router: ADDR.gw4 });
      } finally {
        u.cleanup();
      }
    }
    const r = await runPasta(w, ["--config-net", "-a", "192.0.2.5/28", "-a", "2001:db8::5/80"], record("addr", "ip -j addr show"));
    const addrs = addrsOf(r.json("addr"), IF)
      .filter((a) => a.scope === "global")
      .map((a) => `${a.local}/${a.prefixlen}`);
    expect(addrs.sort(), r.dump()).toEqual(["192.0.2.5/28", "2001:db8::5/80"]);
  }, 60000);

  test("-H and --fqdn: the namespace's host name; DHCP 12 and 81 (udhcpc, dhclient -4), DHCPv6 39 (dhclient -6)", async () => {
    for (const args of [["-H", "guest1", "--fqdn", "guest1.example.test"], []]) {
      const named = args.length > 0;
      const u = prepareUdhcpc({ iface: IF });
      const d4 = prepareDhclient(4, { iface: IF, noConfig: true });
      const d6 = prepareDhclient(6, { iface: IF, noConfig: true });
      try {
        const script = [
          record("uts", "hostname"),
          record("udhcpc", u.shell),
          record("dhcp4", d4.shell),
          linkLocal("ll"),
          record("dhcp6", d6.shell),
        ].join("\n");
        const r = await runPasta(w, args, script);
        const why = () =>
          `${args.join(" ")}\n${r.dump()}\n--- clients\n${JSON.stringify([u.records(), d4.records(), d6.records()], null, 1)}`;
        expect(r.out("uts").trim(), why()).toBe(named ? "guest1" : `pasta-${hostname()}`.slice(0, 64));
        const [lu, l4, l6] = [u.lastBound(), d4.lastBound(), d6.lastBound()];
        expect([lu?.hostname, lu?.opt81], why()).toEqual(
          named ? ["guest1", "04ffff06677565737431076578616d706c65047465737400"] : [undefined, undefined],
        );
        expect([l4?.new_host_name, l4?.new_fqdn_fqdn], why()).toEqual(named ? ["guest1", "guest1.example.test"] : [undefined, undefined]);
        expect(l6?.new_fqdn_fqdn, why()).toEqual(named ? "guest1.example.test" : undefined);
      } finally {
        u.cleanup();
        d4.cleanup();
        d6.cleanup();
      }
    }
  }, 60000);

  test("--config-net copies every address (not link-local ones) and route of the host interface; -a, -g, --no-copy-* give one", async () => {
    const H = (args: string[]) => w.exec(w.host, ["ip", ...args]);
    const extra: [string[], string[]][] = [
      [
        ["addr", "add", "203.0.113.5/24", "dev", IF],
        ["addr", "del", "203.0.113.5/24", "dev", IF],
      ],
      [
        ["-6", "addr", "add", "2001:db8::77/64", "dev", IF, "nodad"],
        ["-6", "addr", "del", "2001:db8::77/64", "dev", IF],
      ],
      [
        ["route", "add", "10.99.0.0/16", "via", ADDR.gw4, "dev", IF, "metric", "50"],
        ["route", "del", "10.99.0.0/16"],
      ],
      [
        ["-6", "route", "add", "2001:db8:99::/48", "via", ADDR.gwLL, "dev", IF],
        ["-6", "route", "del", "2001:db8:99::/48"],
      ],
    ];
    try {
      for (const [add] of extra) expect((await H(add)).code).toBe(0);
      const view = async (args: string[]) => {
        const r = await runPasta(
          w,
          ["--config-net", ...args],
          [record("addr", "ip -j addr show"), record("route4", "ip -j -4 route show"), record("route6", "ip -j -6 route show")].join("\n"),
        );
        const addrs = addrsOf(r.json("addr"), IF)
          .filter((a) => a.scope !== "link")
          .map((a) => `${a.local}/${a.prefixlen}`)
          .sort();
        const lls = addrsOf(r.json("addr"), IF)
          .filter((a) => a.scope === "link")
          .map((a) => a.local);
        const routes = [...r.json<any[]>("route4"), ...r.json<any[]>("route6")]
          .filter((x) => x.gateway)
          .map((x) => `${x.dst} via ${x.gateway}${x.metric ? ` metric ${x.metric}` : ""}`)
          .sort();
        return { addrs, lls, routes, dump: r.dump() };
      };
      const all = await view([]);
      expect(all.addrs, all.dump).toEqual([`${ADDR.host4}/24`, "2001:db8::2/64", "2001:db8::77/64", "203.0.113.5/24"]);
      expect(all.lls, all.dump).not.toContain(w.hostLinkLocal);
      expect(all.routes, all.dump).toEqual([
        "10.99.0.0/16 via 192.0.2.1 metric 50",
        "2001:db8:99::/48 via fe80::1 metric 1024",
        "default via 192.0.2.1",
        "default via fe80::1 metric 1024",
      ]);

      // one address per version: the one DHCP and DHCPv6 hand out (the host's first, as the kernel lists them)
      const none = await view(["--no-copy-addrs", "--no-copy-routes"]);
      expect(none.addrs.length, none.dump).toBe(2);
      expect(none.addrs[0], none.dump).toBe(`${ADDR.host4}/24`);
      expect(["2001:db8::2/64", "2001:db8::77/64"], none.dump).toContain(none.addrs[1]!);
      expect(none.routes, none.dump).toEqual(["default via 192.0.2.1", "default via fe80::1 metric 1024"]);

      const mixed = await view(["-a", "192.0.2.9/24", "-g", "fe80::1"]);
      expect(mixed.addrs, mixed.dump).toEqual(["192.0.2.9/24", "2001:db8::2/64", "2001:db8::77/64"]);
      expect(mixed.routes, mixed.dump).toEqual([
        "10.99.0.0/16 via 192.0.2.1 metric 50",
        "default via 192.0.2.1",
        "default via fe80::1 metric 1024",
      ]);
    } finally {
      for (const [, del] of extra.reverse()) await H(del);
    }
  }, 90000);

  test("no default route on the host: the interface with a route, its addresses, no gateway", async () => {
    const H = (args: string[]) => w.exec(w.host, ["ip", ...args]);
    expect((await H(["route", "del", "default"])).code).toBe(0);
    expect((await H(["-6", "route", "del", "default"])).code).toBe(0);
    try {
      const r = await runPasta(
        w,
        ["--config-net"],
        [record("addr", "ip -j addr show"), record("route4", "ip -j -4 route show"), record("route6", "ip -j -6 route show")].join("\n"),
      );
      const addrs = addrsOf(r.json("addr"), IF)
        .filter((a) => a.scope === "global")
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort();
      expect(addrs, r.dump()).toEqual([`${ADDR.host4}/24`, "2001:db8::2/64"]);
      expect(
        [...r.json<any[]>("route4"), ...r.json<any[]>("route6")].filter((x) => x.dst === "default"),
        r.dump(),
      ).toEqual([]);
    } finally {
      await H(["route", "add", "default", "via", ADDR.gw4, "dev", IF]);
      await H(["-6", "route", "add", "default", "via", ADDR.gwLL, "dev", IF]);
    }
  }, 60000);
});

describeE2E("pasta in local mode: a host with no interface to copy (root)", () => {
  let w: World;
  beforeAll(async () => {
    w = await createWorld();
    // eth0 down: its routes go, and with them every interface with a route
    const r = await w.exec(w.host, ["ip", "link", "set", HOST_IF, "down"]);
    if (r.code !== 0) throw new Error(r.stderr);
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("--config-net: 169.254.2.1/16 via 169.254.2.2, and fe80::1; the gateway reaches the host's loopback", async () => {
    const port = 20931;
    const server = w.spawn(w.host, ["socat", `TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, "SYSTEM:echo local-ok"]);
    try {
      await Bun.sleep(300);
      const script = [
        record("addr", "ip -j addr show"),
        record("route4", "ip -j -4 route show"),
        record("route6", "ip -j -6 route show"),
        record("tcp", `socat -T5 - TCP4:169.254.2.2:${port} </dev/null`),
      ].join("\n");
      const r = await runPasta(w, ["--config-net"], script);
      const why = () => `${r.dump()}\n--- server\n${server.stderr()}`;
      expect(r.code, why()).toBe(0);
      const addrs = addrsOf(r.json("addr"), "tap0")
        .filter((a) => a.scope !== "link")
        .map((a) => `${a.local}/${a.prefixlen}`);
      expect(addrs, why()).toEqual(["169.254.2.1/16"]);
      const defaults = [...r.json<any[]>("route4"), ...r.json<any[]>("route6")].filter((x) => x.dst === "default").map((x) => x.gateway);
      expect(defaults, why()).toEqual(["169.254.2.2", "fe80::1"]);
      expect(r.out("tcp").trim(), why()).toBe("local-ok");
    } finally {
      await server.kill();
    }
  }, 60000);

  test("udhcpc gets 169.254.2.1/16 via 169.254.2.2; rdisc6 a router (fe80::1) with no prefix; no DHCPv6", async () => {
    const u = prepareUdhcpc({ iface: "tap0" });
    const d6 = prepareDhclient(6, { iface: "tap0", noConfig: true, timeoutSec: 3 });
    try {
      const script = [record("udhcpc", u.shell), rdisc6On("tap0", "ra"), record("dhcp6", d6.shell)].join("\n");
      const r = await runPasta(w, [], script);
      const why = () => `${r.dump()}\n--- udhcpc\n${JSON.stringify(u.records(), null, 1)}`;
      expect(u.lastBound(), why()).toMatchObject({ ip: "169.254.2.1", subnet: "255.255.0.0", router: "169.254.2.2" });
      expect(r.out("ra"), why()).toMatch(/Router lifetime\s*:\s*9000/);
      expect(r.out("ra"), why()).toMatch(/from fe80::1\b/);
      expect(r.out("ra"), why()).not.toContain("Prefix");
      expect(r.out("dhcp6.rc").trim(), why()).not.toBe("0");
    } finally {
      u.cleanup();
      d6.cleanup();
    }
  }, 60000);
});
