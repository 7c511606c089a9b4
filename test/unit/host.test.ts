import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { formatIp4, formatIp6, formatMac, parseIp4, parseIp6 } from "../../src/conf/config.ts";
import {
  buildConfig,
  classfulPrefix,
  DEFAULT_MTU,
  discoverHost,
  discoverHostNow,
  NS_IFNAME_DEFAULT,
  type HostNet,
} from "../../src/conf/host.ts";
import { isZero } from "../../src/conf/config.ts";
import type { NlSys } from "../../src/conf/netlink.ts";
import type { ResolvConf } from "../../src/conf/resolv.ts";
import { cannedHost, libcSys, routeDstLen } from "./netlink-fixtures.ts";

const NO_RESOLV: ResolvConf = { dns4: [], dns6: [], search: [] };

/** A dual-stack host like the one of the captures, as numbers. */
function dualHost(): HostNet {
  return {
    ip4: {
      ifname: "eth0",
      ifindex: 2,
      mac: Uint8Array.of(2, 0, 0, 0, 0, 1),
      mtu: 1500,
      addrs: [
        { addr: parseIp4("192.0.2.2"), prefixLen: 24 },
        { addr: parseIp4("198.51.100.7"), prefixLen: 25 },
      ],
      gw: parseIp4("192.0.2.1"),
    },
    ip6: {
      ifname: "eth0",
      ifindex: 2,
      mac: Uint8Array.of(2, 0, 0, 0, 0, 1),
      mtu: 1500,
      addrs: [{ addr: parseIp6("2001:db8::2"), prefixLen: 64 }],
      gw: parseIp6("fe80::1:2"),
    },
  };
}

describe("discoverHost on captured answers", () => {
  test("both families through the default routes", () => {
    const h = discoverHost(cannedHost());
    expect(h.ip4!.ifname).toBe("v0");
    expect(h.ip4!.ifindex).toBe(3);
    expect(formatMac(h.ip4!.mac)).toBe("02:00:00:00:00:01");
    expect(h.ip4!.addrs).toEqual([{ addr: parseIp4("192.0.2.2"), prefixLen: 24 }]);
    expect(formatIp4(h.ip4!.gw!)).toBe("192.0.2.1");
    expect(h.ip6!.ifname).toBe("v0");
    expect(h.ip6!.addrs.map((a) => [formatIp6(a.addr), a.prefixLen])).toEqual([["2001:db8::2", 64]]);
    expect(formatIp6(h.ip6!.gw!)).toBe("fe80::1");
  });

  test("an interface chosen by name", () => {
    const h = discoverHost(cannedHost(), { ifname4: "v1", ifname6: "v0" });
    expect(h.ip4!.ifname).toBe("v1");
    expect(h.ip4!.addrs).toEqual([]);
    expect(h.ip4!.gw).toBeNull();
    expect(h.ip6!.ifname).toBe("v0");
    expect(() => discoverHost(cannedHost(), { ifname4: "eth7" })).toThrow("interface eth7 not found");
  });

  test("no default route: the first interface with a route that is not link-local, as upstream; none: null", () => {
    const h = discoverHost(cannedHost((m) => routeDstLen(m) !== 0));
    expect([h.ip4!.ifname, h.ip4!.gw]).toEqual(["v0", null]);
    expect(h.ip4!.addrs).toEqual([{ addr: parseIp4("192.0.2.2"), prefixLen: 24 }]);
    expect([h.ip6!.ifname, h.ip6!.gw]).toEqual(["v0", null]);
    const onlyLinkLocal = discoverHost(cannedHost((m) => routeDstLen(m) === 64 && m[40] === 0xfe));
    expect(onlyLinkLocal.ip6).toBeNull();
    expect(onlyLinkLocal.ip4).toBeNull();
  });
});

describe("buildConfig", () => {
  test("defaults from the host", () => {
    const resolv: ResolvConf = { dns4: [parseIp4("192.0.2.53")], dns6: [parseIp6("2001:db8::53")], search: ["example.com"] };
    const c = buildConfig("pasta", dualHost(), resolv);
    expect(c.mode).toBe("pasta");
    expect(formatMac(c.ourMac)).toBe("9a:55:9a:55:9a:55");
    expect(formatMac(c.nsMac)).toBe("00:00:00:00:00:00");
    expect(c.nsIfname).toBe("eth0");
    expect(c.mtu).toBe(DEFAULT_MTU);
    expect(c.ip4).toEqual({
      addr: parseIp4("192.0.2.2"),
      prefixLen: 24,
      gw: parseIp4("192.0.2.1"),
      dns: [parseIp4("192.0.2.53")],
      dnsMatch: 0,
      dnsHost: parseIp4("192.0.2.53"),
      mapHostLoopback: parseIp4("192.0.2.1"),
      mapGuestAddr: 0,
      ifname: "eth0",
      copyAddrs: true,
      copyRoutes: true,
    });
    expect(formatIp6(c.ip6!.addr)).toBe("2001:db8::2");
    expect(c.ip6!.prefixLen).toBe(64);
    expect(formatIp6(c.ip6!.ourLL)).toBe("fe80::1:2");
    expect(c.ip6!.dnsMatch).toBeNull();
    expect(formatIp6(c.ip6!.dnsHost!)).toBe("2001:db8::53");
    expect(formatIp6(c.ip6!.mapHostLoopback!)).toBe("fe80::1:2");
    expect(c.ip6!.mapGuestAddr).toBeNull();
    expect(c.dnsSearch).toEqual(["example.com"]);
    expect([c.noDhcp, c.noNdp, c.noDhcpv6, c.noRa, c.noIcmp, c.configNet]).toEqual(Array(6).fill(false));
  });

  test("a global IPv6 gateway gives ourLL fe80::1", () => {
    const h = dualHost();
    h.ip6!.gw = parseIp6("2001:db8::1");
    expect(formatIp6(buildConfig("passt", h, NO_RESOLV).ip6!.ourLL)).toBe("fe80::1");
  });

  test("--config-net: no router advertisements (the namespace is configured already), as upstream", () => {
    expect(buildConfig("pasta", dualHost(), NO_RESOLV, { configNet: true }).noRa).toBe(true);
    expect(buildConfig("pasta", dualHost(), NO_RESOLV).noRa).toBe(false);
  });

  test("-4 / -6 turn a version off", () => {
    expect(buildConfig("passt", dualHost(), NO_RESOLV, { ipv4Only: true }).ip6).toBeNull();
    expect(buildConfig("passt", dualHost(), NO_RESOLV, { ipv6Only: true }).ip4).toBeNull();
  });

  test("local mode, per IP version: 169.254.2.1/16 via 169.254.2.2; no IPv6 address (no DHCPv6) via fe80::1; nothing copied", () => {
    const v4only = buildConfig("pasta", { ...dualHost(), ip6: null }, NO_RESOLV);
    expect(formatIp4(v4only.ip4!.addr)).toBe("192.0.2.2");
    expect(isZero(v4only.ip6!.addr)).toBe(true);
    expect([formatIp6(v4only.ip6!.gw), formatIp6(v4only.ip6!.ourLL), v4only.ip6!.ifname]).toEqual(["fe80::1", "fe80::1", ""]);
    expect([v4only.ip6!.copyAddrs, v4only.ip6!.copyRoutes, v4only.noDhcpv6]).toEqual([false, false, true]);
    const v6only = buildConfig("pasta", { ...dualHost(), ip4: null }, NO_RESOLV);
    expect([formatIp4(v6only.ip4!.addr), v6only.ip4!.prefixLen, formatIp4(v6only.ip4!.gw)]).toEqual(["169.254.2.1", 16, "169.254.2.2"]);
    expect([v6only.ip4!.ifname, v6only.ip4!.copyAddrs, v6only.ip4!.copyRoutes]).toEqual(["", false, false]);
    expect(formatIp4(v6only.ip4!.mapHostLoopback)).toBe("169.254.2.2");
    expect([v6only.nsIfname, v6only.noDhcpv6]).toEqual(["eth0", false]);
    const none = buildConfig("pasta", { ip4: null, ip6: null }, NO_RESOLV);
    expect([formatIp4(none.ip4!.addr), isZero(none.ip6!.addr), none.nsIfname]).toEqual(["169.254.2.1", true, NS_IFNAME_DEFAULT]);
    // -a, -n, -g still apply
    const given = buildConfig("pasta", { ip4: null, ip6: null }, NO_RESOLV, {
      addr4: parseIp4("10.0.0.5"),
      gw4: parseIp4("10.0.0.1"),
      addr6: parseIp6("2001:db8::5"),
      gw6: parseIp6("fe80::9"),
    });
    expect([formatIp4(given.ip4!.addr), given.ip4!.prefixLen, formatIp4(given.ip4!.gw)]).toEqual(["10.0.0.5", 8, "10.0.0.1"]);
    expect([formatIp6(given.ip6!.addr), formatIp6(given.ip6!.gw), given.noDhcpv6]).toEqual(["2001:db8::5", "fe80::9", false]);
    const masked = buildConfig("pasta", { ip4: null, ip6: null }, NO_RESOLV, { prefixLen4: 24, gw4: parseIp4("169.254.2.9") });
    expect([formatIp4(masked.ip4!.addr), masked.ip4!.prefixLen, formatIp4(masked.ip4!.gw)]).toEqual(["169.254.2.1", 24, "169.254.2.9"]);
  });

  test("--config-net copies the host's addresses and routes unless -a / -g (per version) or --no-copy-addrs / --no-copy-routes", () => {
    const copy = (ov: Parameters<typeof buildConfig>[3]) => {
      const c = buildConfig("pasta", dualHost(), NO_RESOLV, ov);
      return [c.ip4!.copyAddrs, c.ip4!.copyRoutes, c.ip6!.copyAddrs, c.ip6!.copyRoutes];
    };
    expect(copy({})).toEqual([true, true, true, true]);
    expect(copy({ addr4: parseIp4("192.0.2.9") })).toEqual([false, true, true, true]);
    expect(copy({ addr6: parseIp6("2001:db8::9") })).toEqual([true, true, false, true]);
    expect(copy({ gw4: parseIp4("192.0.2.9") })).toEqual([true, false, true, true]);
    expect(copy({ gw6: parseIp6("fe80::9") })).toEqual([true, true, true, false]);
    expect(copy({ noCopyAddrs: true })).toEqual([false, true, false, true]);
    expect(copy({ noCopyRoutes: true })).toEqual([true, false, true, false]);
  });

  test("address overrides: netmask from the matching host address, else classful", () => {
    const match = buildConfig("passt", dualHost(), NO_RESOLV, { addr4: parseIp4("198.51.100.7") });
    expect(match.ip4!.prefixLen).toBe(25);
    const other = buildConfig("passt", dualHost(), NO_RESOLV, { addr4: parseIp4("10.1.2.3") });
    expect(other.ip4!.prefixLen).toBe(8);
    const given = buildConfig("passt", dualHost(), NO_RESOLV, { addr4: parseIp4("10.1.2.3"), prefixLen4: 20 });
    expect(given.ip4!.prefixLen).toBe(20);
    expect([
      classfulPrefix(parseIp4("172.16.0.1")),
      classfulPrefix(parseIp4("203.0.113.9")),
      classfulPrefix(parseIp4("224.0.0.1")),
    ]).toEqual([16, 24, 32]);
  });

  test("DNS: -D and -S replace resolv.conf; a loopback resolver is reached through the address mapped to the loopback", () => {
    const resolv: ResolvConf = { dns4: [parseIp4("127.0.0.53")], dns6: [parseIp6("::1")], search: ["a.example"] };
    const c = buildConfig("passt", dualHost(), resolv);
    expect(c.ip4!.dns).toEqual([parseIp4("127.0.0.53")]);
    expect(formatIp4(c.ip4!.dnsMatch)).toBe("192.0.2.1");
    expect(formatIp4(c.ip4!.dnsHost)).toBe("127.0.0.53");
    expect(formatIp6(c.ip6!.dnsMatch!)).toBe("fe80::1:2");
    expect(formatIp6(c.ip6!.dnsHost!)).toBe("::1");
    const noMap = buildConfig("passt", dualHost(), resolv, { noMapGw: true });
    expect(noMap.ip4!.dnsMatch).toBe(0);
    expect(noMap.ip6!.dnsMatch).toBeNull();
    const moved = buildConfig("passt", dualHost(), resolv, { mapHostLoopback4: parseIp4("192.0.2.99") });
    expect(formatIp4(moved.ip4!.dnsMatch)).toBe("192.0.2.99");
    const forced = buildConfig("passt", dualHost(), resolv, {
      dns4: [parseIp4("192.0.2.53")],
      dns6: [],
      search: [],
      dnsForward4: parseIp4("192.0.2.99"),
    });
    expect(forced.ip4!.dns).toEqual([parseIp4("192.0.2.53")]);
    expect(formatIp4(forced.ip4!.dnsMatch)).toBe("192.0.2.99");
    expect(formatIp4(forced.ip4!.dnsHost)).toBe("127.0.0.53");
    expect(forced.ip6!.dns).toEqual([]);
    expect(forced.ip6!.dnsMatch).toBeNull();
    expect(forced.dnsSearch).toEqual([]);
  });

  test("DNS: a resolver at the gateway, which stands for the host's loopback, is still reached (as upstream)", () => {
    const resolv: ResolvConf = { dns4: [parseIp4("192.0.2.1")], dns6: [parseIp6("fe80::1:2")], search: [] };
    const c = buildConfig("passt", dualHost(), resolv);
    expect([formatIp4(c.ip4!.dnsMatch), formatIp4(c.ip4!.dnsHost)]).toEqual(["192.0.2.1", "192.0.2.1"]);
    expect([formatIp6(c.ip6!.dnsMatch!), formatIp6(c.ip6!.dnsHost!)]).toEqual(["fe80::1:2", "fe80::1:2"]);
    const other = buildConfig("passt", dualHost(), resolv, { mapHostLoopback4: parseIp4("192.0.2.99"), mapHostLoopback6: null });
    expect(other.ip4!.dnsMatch).toBe(0);
    expect(other.ip6!.dnsMatch).toBeNull();
  });
});

const canNetlink = process.getuid?.() === 0 && spawnSync("ip", ["-V"]).status === 0;

const transports: [string, () => NlSys | undefined][] = [
  ["libc", libcSys],
  ["shim", () => undefined],
];

describe.skipIf(!canNetlink).each(transports)("discoverHostNow on this machine (%s)", (_name, makeIo) => {
  test("agrees with ip route", () => {
    const h = discoverHostNow({}, makeIo());
    const r = spawnSync("ip", ["-j", "-4", "route", "show", "default"], { encoding: "utf8" });
    const routes = JSON.parse(r.stdout || "[]") as { dev: string; gateway?: string }[];
    if (routes.length === 0) return;
    expect(h.ip4?.ifname).toBe(routes[0]!.dev);
    if (routes[0]!.gateway) expect(formatIp4(h.ip4!.gw!)).toBe(routes[0]!.gateway);
  });
});
