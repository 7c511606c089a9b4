/**
 * The Config of unit tests that drive the flow tables directly (no
 * namespace, no services): a guest at 192.0.2.2 / 2001:db8::2 behind the
 * gateway 192.0.2.1 / fe80::1 (which stand for the host's loopback), DHCP,
 * NDP and ICMP off.
 */
import { parseIp4, parseIp6, parseMac, type Config } from "../../src/conf/config.ts";

export const GUEST4 = parseIp4("192.0.2.2");
export const GW4 = parseIp4("192.0.2.1");
export const OUR_MAC = parseMac("9a:55:9a:55:9a:55");

export const flowTestConfig: Config = {
  mode: "pasta",
  ourMac: OUR_MAC,
  nsMac: new Uint8Array(6),
  nsIfname: "eth0",
  mtu: 65520,
  ip4: {
    addr: GUEST4,
    prefixLen: 24,
    gw: GW4,
    dns: [],
    dnsMatch: 0,
    dnsHost: 0,
    mapHostLoopback: GW4,
    mapGuestAddr: 0,
    ifname: "eth0",
    copyAddrs: false,
    copyRoutes: false,
  },
  ip6: {
    addr: parseIp6("2001:db8::2"),
    prefixLen: 64,
    gw: parseIp6("fe80::1"),
    ourLL: parseIp6("fe80::1"),
    dns: [],
    dnsMatch: null,
    dnsHost: null,
    mapHostLoopback: parseIp6("fe80::1"),
    mapGuestAddr: null,
    ifname: "eth0",
    copyAddrs: false,
    copyRoutes: false,
  },
  dnsSearch: [],
  noDhcp: true,
  noNdp: true,
  noDhcpv6: true,
  noRa: true,
  noIcmp: true,
  noUdp: false,
  configNet: false,
  outbound4: 0,
  outbound6: null,
  outboundIf4: null,
  outboundIf6: null,
  dhcpDns: true,
  dhcpSearch: true,
  hostname: "",
  fqdn: "",
};
