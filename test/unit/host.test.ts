import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { formatIp4, formatIp6, formatMac, parseIp4, parseIp6 } from "../../src/conf/config.ts";
import {
  buildConfig, classfulPrefix, DEFAULT_MTU, discoverHost, discoverHostNow, NS_IFNAME_DEFAULT, type HostNet,
} from "../../src/conf/host.ts";
import type { NlSys } from "../../src/conf/netlink.ts";
import type { ResolvConf } from "../../src/conf/resolv.ts";
import { cannedHost, libcSys } from "./netlink-fixtures.ts";

const NO_RESOLV: ResolvConf = { dns4: [], dns6: [], search: [] };

/** A dual-stack host like the one of the captures, as numbers. */
function dualHost(): HostNet {
  return {
    ip4: {
      ifname: "eth0", ifindex: 2, mac: Uint8Array.of(2, 0, 0, 0, 0, 1), mtu: 1500,
      addrs: [{ addr: parseIp4("192.0.2.2"), prefixLen: 24 }, { addr: parseIp4("198.51.100.7"), prefixLen: 25 }],
      gw: parseIp4("192.0.2.1"),
    },
    ip6: {
      ifname: "eth0", ifindex: 2, mac: Uint8Array.of(2, 0, 0, 0, 0, 1), mtu: 1500,
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
      addr: parseIp4("192.0.2.2"), prefixLen: 24, gw: parseIp4("192.0.2.1"),
      dns: [parseIp4("192.0.2.53")], dnsMatch: 0, dnsHost: parseIp4("192.0.2.53"),
      mapHostLoopback: parseIp4("192.0.2.1"), mapGuestAddr: 0, ifname: "eth0",
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

  test("a host with one IP version, and -4 / -6", () => {
    const v4only = { ...dualHost(), ip6: null };
    expect(buildConfig("passt", v4only, NO_RESOLV).ip6).toBeNull();
    const v6only = { ...dualHost(), ip4: null };
    const c = buildConfig("pasta", v6only, NO_RESOLV);
    expect(c.ip4).toBeNull();
    expect(c.nsIfname).toBe("eth0");
    expect(buildConfig("passt", dualHost(), NO_RESOLV, { ipv4Only: true }).ip6).toBeNull();
    expect(buildConfig("passt", dualHost(), NO_RESOLV, { ipv6Only: true }).ip4).toBeNull();
    expect(() => buildConfig("passt", { ip4: null, ip6: null }, NO_RESOLV)).toThrow("no usable IPv4 or IPv6");
    expect(buildConfig("pasta", { ip4: null, ip6: null }, NO_RESOLV, { addr4: 1 }).nsIfname).toBe(NS_IFNAME_DEFAULT);
  });

  test("address overrides: netmask from the matching host address, else classful", () => {
    const match = buildConfig("passt", dualHost(), NO_RESOLV, { addr4: parseIp4("198.51.100.7") });
    expect(match.ip4!.prefixLen).toBe(25);
    const other = buildConfig("passt", dualHost(), NO_RESOLV, { addr4: parseIp4("10.1.2.3") });
    expect(other.ip4!.prefixLen).toBe(8);
    const given = buildConfig("passt", dualHost(), NO_RESOLV, { addr4: parseIp4("10.1.2.3"), prefixLen4: 20 });
    expect(given.ip4!.prefixLen).toBe(20);
    expect([classfulPrefix(parseIp4("172.16.0.1")), classfulPrefix(parseIp4("203.0.113.9")), classfulPrefix(parseIp4("224.0.0.1"))])
      .toEqual([16, 24, 32]);
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
      dns4: [parseIp4("192.0.2.53")], dns6: [], search: [], dnsForward4: parseIp4("192.0.2.99"),
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

const transports: [string, () => NlSys | undefined][] = [["libc", libcSys], ["shim", () => undefined]];

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
