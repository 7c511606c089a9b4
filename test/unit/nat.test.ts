import { describe, expect, test } from "bun:test";
import { formatIp4, formatIp6, parseIp4, parseIp6, type Ip4Config, type Ip6Config } from "../../src/conf/config.ts";
import { NAT_DNS, NAT_GUEST_ADDR, NAT_HOST_LOOPBACK, NAT_NONE, natIn4, natIn6, natOut4, natOut6 } from "../../src/flows/nat.ts";
import { SA6_ADDR, saAddr4, saFamily, saPort } from "../../src/native/sockaddr.ts";
import { AF_INET, AF_INET6 } from "../../src/native/consts.ts";

/** The guest at 192.0.2.2 behind 192.0.2.1; 192.0.2.99 stands for the host's loopback, 169.254.1.2 for its address; DNS to 192.0.2.53 goes to 198.51.100.53. */
const ip4: Ip4Config = {
  addr: parseIp4("192.0.2.2"),
  prefixLen: 24,
  gw: parseIp4("192.0.2.1"),
  dns: [],
  ifname: "eth0",
  copyAddrs: false,
  copyRoutes: false,
  dnsMatch: parseIp4("192.0.2.53"),
  dnsHost: parseIp4("198.51.100.53"),
  mapHostLoopback: parseIp4("192.0.2.99"),
  mapGuestAddr: parseIp4("169.254.1.2"),
};
const ip6: Ip6Config = {
  addr: parseIp6("2001:db8::2"),
  prefixLen: 64,
  gw: parseIp6("fe80::1"),
  ourLL: parseIp6("fe80::1"),
  dns: [],
  ifname: "eth0",
  copyAddrs: false,
  copyRoutes: false,
  dnsMatch: parseIp6("2001:db8::53"),
  dnsHost: parseIp6("2001:db8:1::53"),
  mapHostLoopback: parseIp6("fe80::99"),
  mapGuestAddr: parseIp6("fd00::2"),
};
const none4: Ip4Config = { ...ip4, dnsMatch: 0, dnsHost: 0, mapHostLoopback: 0, mapGuestAddr: 0 };
const none6: Ip6Config = { ...ip6, dnsMatch: null, dnsHost: null, mapHostLoopback: null, mapGuestAddr: null };

const sa = new Uint8Array(28);

/** natOut4 of dst:port as [rule, "address:port"]. */
function out4(c: Ip4Config, dst: string, port: number, dns = true): [number, string] {
  sa.fill(0xee);
  const rule = natOut4(c, sa, parseIp4(dst), port, dns);
  expect(saFamily(sa)).toBe(AF_INET);
  return [rule, `${formatIp4(saAddr4(sa))}:${saPort(sa)}`];
}

/** natOut6 of the address at an offset of a frame-like buffer, as [rule, "[address]:port"]. */
function out6(c: Ip6Config, dst: string, port: number, dns = true): [number, string] {
  const frame = new Uint8Array(40);
  frame.set(parseIp6(dst), 24);
  sa.fill(0xee);
  const rule = natOut6(c, sa, frame, 24, port, dns);
  expect(saFamily(sa)).toBe(AF_INET6);
  expect([...sa.subarray(24, 28)]).toEqual([0, 0, 0, 0]);
  return [rule, `[${formatIp6(sa, SA6_ADDR)}]:${saPort(sa)}`];
}

function in4(c: Ip4Config, src: string, port: number, dnsFlow = false): string {
  const a = natIn4(c, parseIp4(src), port, dnsFlow);
  return a === 0 ? "drop" : formatIp4(a);
}

function in6(c: Ip6Config, src: string, port: number, dnsFlow = false): string {
  const b = new Uint8Array(28);
  b.set(parseIp6(src), SA6_ADDR);
  const out = new Uint8Array(16).fill(0xee);
  natIn6(c, b, SA6_ADDR, port, dnsFlow, out);
  return formatIp6(out);
}

describe("outbound: guest destination to host socket address", () => {
  test("IPv4: DNS, host loopback, host's own address, the rest unchanged", () => {
    expect(out4(ip4, "192.0.2.53", 53)).toEqual([NAT_DNS, "198.51.100.53:53"]);
    expect(out4(ip4, "192.0.2.53", 853)).toEqual([NAT_DNS, "198.51.100.53:853"]);
    // not DNS: another port, or a protocol that isn't TCP or UDP
    expect(out4(ip4, "192.0.2.53", 80)).toEqual([NAT_NONE, "192.0.2.53:80"]);
    expect(out4(ip4, "192.0.2.53", 53, false)).toEqual([NAT_NONE, "192.0.2.53:53"]);
    expect(out4(ip4, "192.0.2.99", 8080)).toEqual([NAT_HOST_LOOPBACK, "127.0.0.1:8080"]);
    expect(out4(ip4, "169.254.1.2", 8080)).toEqual([NAT_GUEST_ADDR, "192.0.2.2:8080"]);
    // the gateway is only the gateway once another address stands for the loopback
    expect(out4(ip4, "192.0.2.1", 8080)).toEqual([NAT_NONE, "192.0.2.1:8080"]);
    expect(out4(ip4, "198.51.100.1", 22)).toEqual([NAT_NONE, "198.51.100.1:22"]);
  });

  test("IPv4: nothing mapped, nothing translated; DNS needs a host to go to", () => {
    for (const a of ["192.0.2.53", "192.0.2.99", "169.254.1.2", "0.0.0.0"]) expect(out4(none4, a, 53)).toEqual([NAT_NONE, `${a}:53`]);
    expect(out4({ ...ip4, dnsHost: 0 }, "192.0.2.53", 53)).toEqual([NAT_NONE, "192.0.2.53:53"]);
    expect(out4({ ...none4, dnsHost: ip4.dnsHost }, "0.0.0.0", 53)).toEqual([NAT_NONE, "0.0.0.0:53"]);
  });

  test("IPv6: the same rules, no scope id", () => {
    expect(out6(ip6, "2001:db8::53", 53)).toEqual([NAT_DNS, "[2001:db8:1::53]:53"]);
    expect(out6(ip6, "2001:db8::53", 53, false)).toEqual([NAT_NONE, "[2001:db8::53]:53"]);
    expect(out6(ip6, "fe80::99", 8080)).toEqual([NAT_HOST_LOOPBACK, "[::1]:8080"]);
    expect(out6(ip6, "fd00::2", 8080)).toEqual([NAT_GUEST_ADDR, "[2001:db8::2]:8080"]);
    expect(out6(ip6, "2001:db8:1::1", 22)).toEqual([NAT_NONE, "[2001:db8:1::1]:22"]);
    expect(out6(none6, "fe80::99", 8080)).toEqual([NAT_NONE, "[fe80::99]:8080"]);
    expect(out6(none6, "2001:db8::53", 53)).toEqual([NAT_NONE, "[2001:db8::53]:53"]);
  });
});

describe("inbound: host peer to the source the guest sees", () => {
  test("IPv4: loopback, the host's own address, DNS answers, the rest unchanged", () => {
    expect(in4(ip4, "127.0.0.1", 8080)).toBe("192.0.2.99");
    expect(in4(ip4, "192.0.2.2", 8080)).toBe("169.254.1.2");
    expect(in4(ip4, "198.51.100.53", 53, true)).toBe("192.0.2.53");
    expect(in4(ip4, "198.51.100.53", 853, true)).toBe("192.0.2.53");
    // the resolver queried directly, or from another port: itself
    expect(in4(ip4, "198.51.100.53", 53, false)).toBe("198.51.100.53");
    expect(in4(ip4, "198.51.100.53", 5353, true)).toBe("198.51.100.53");
    expect(in4(ip4, "198.51.100.1", 22)).toBe("198.51.100.1");
  });

  test("IPv4: what the guest can't take as a source comes from the gateway, or is dropped without one", () => {
    expect(in4(ip4, "127.0.0.2", 8080)).toBe("192.0.2.1");
    expect(in4(ip4, "0.0.0.0", 8080)).toBe("192.0.2.1");
    expect(in4(none4, "127.0.0.1", 8080)).toBe("192.0.2.1");
    expect(in4(none4, "192.0.2.2", 8080)).toBe("192.0.2.1");
    expect(in4({ ...none4, gw: 0 }, "127.0.0.1", 8080)).toBe("drop");
    expect(in4(none4, "198.51.100.53", 53, true)).toBe("198.51.100.53");
  });

  test("IPv6: the same rules; our link-local address stands in", () => {
    expect(in6(ip6, "::1", 8080)).toBe("fe80::99");
    expect(in6(ip6, "2001:db8::2", 8080)).toBe("fd00::2");
    expect(in6(ip6, "2001:db8:1::53", 53, true)).toBe("2001:db8::53");
    expect(in6(ip6, "2001:db8:1::53", 53, false)).toBe("2001:db8:1::53");
    expect(in6(ip6, "2001:db8:1::1", 22)).toBe("2001:db8:1::1");
    expect(in6(ip6, "::ffff:192.0.2.7", 22)).toBe("fe80::1");
    expect(in6(none6, "::1", 8080)).toBe("fe80::1");
    expect(in6(none6, "2001:db8::2", 8080)).toBe("fe80::1");
    expect(in6(none6, "::", 8080)).toBe("fe80::1");
  });
});
