/**
 * Host discovery, and the Config built from it and the command line.
 *
 * By default the guest gets the host's own network identity: for each IP
 * version separately, the interface of the first default route (or the one
 * named by -i / --outbound-if4 / --outbound-if6; without a default route, the
 * first interface with any route but a link-local one, as upstream), its
 * first global address and prefix length, and the route's gateway; DNS
 * servers and the search list come from resolv.conf. -4 or -6 gives a Config
 * with the other version null.
 *
 * Local mode (upstream's, for disconnected hosts): an IP version for which no
 * interface with an address is found, and no -a given, still works. IPv4
 * hands out 169.254.2.1/16 with gateway 169.254.2.2; IPv6 hands out no
 * address (no DHCPv6, no prefix in RAs: the guest keeps its link-local one)
 * and fe80::1 as gateway. -g and -n still apply. Nothing is copied by
 * --config-net then.
 *
 * discoverHost() reads the host over netlink (any NlTalk, so it is tested with
 * canned answers); buildConfig() is pure: it merges what was found with the
 * overrides from the command line. hostConfig() does both for real.
 */
import { isLinkLocal6, isZero, parseIp6, type Config, type Ip4Config, type Ip6Config, type Mode } from "./config.ts";
import {
  AF_INET,
  AF_INET6,
  getAddrs,
  getLinks,
  getMainRoutes,
  getRoutes,
  ip4FromBytes,
  makeTalk,
  openNetlink,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  type Addr,
  type Family,
  type Link,
  type NlSys,
  type NlTalk,
  type Route,
} from "./netlink.ts";
import { readResolvConf, type ResolvConf } from "./resolv.ts";

/** passt's default MTU: the largest a tap takes (65535) minus the Ethernet header, rounded to 4 bytes. */
export const DEFAULT_MTU = 65520;
/** Smallest MTU accepted by -m: the IPv4 minimum (RFC 791). */
export const MIN_MTU = 68;
/** Below this, IPv6 can't run on the link (RFC 8200). */
export const IPV6_MIN_MTU = 1280;
/** Our MAC on the tap by default, as the original: locally administered, unicast. */
export const OUR_MAC_DEFAULT = Uint8Array.of(0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55);
/** Our link-local address when the IPv6 gateway is not link-local. */
export const OUR_LL_DEFAULT = parseIp6("fe80::1");
/** Namespace interface name when the host has no upstream interface to copy. */
export const NS_IFNAME_DEFAULT = "tap0";
/** Prefix length handed out with an IPv6 address that matches nothing on the host. */
const IPV6_DEFAULT_PREFIX = 64;
/** Local mode, IPv4: the guest's address, its gateway (libslirp's 10.0.2.15 and .2, link-local), the prefix. */
export const LOCAL_ADDR4 = 0xa9fe0201;
export const LOCAL_GW4 = 0xa9fe0202;
const LOCAL_PREFIX4 = 16;
/** Local mode, IPv6: the gateway (and our link-local address). */
export const LOCAL_GW6 = parseIp6("fe80::1");
/** IFF_LOOPBACK: routes through such a link never make it the upstream interface. */
const IFF_LOOPBACK = 0x8;
/** IFA_F_* flags that make an IPv6 address a poor choice to hand out. */
const IFA_F_TEMPORARY = 0x01;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_TENTATIVE = 0x40;
const IFA_F_DADFAILED = 0x08;
const AVOID6 = IFA_F_TEMPORARY | IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_DADFAILED;

/** What the host offers for one IP version: A is number (IPv4) or Uint8Array (IPv6). */
export interface HostFamily<A> {
  ifname: string;
  ifindex: number;
  mac: Uint8Array;
  mtu: number;
  /** Global addresses of the interface, best first. */
  addrs: { addr: A; prefixLen: number }[];
  /** Gateway of the default route through the interface, null when there is none. */
  gw: A | null;
}

export interface HostNet {
  ip4: HostFamily<number> | null;
  ip6: HostFamily<Uint8Array> | null;
}

/** Interfaces chosen on the command line: -i sets both, --outbound-if4/6 one each (-i wins). */
export interface IfSelect {
  ifname4?: string;
  ifname6?: string;
}

/** Command-line values that replace or shape what discovery found. */
export interface ConfigOverrides {
  ipv4Only?: boolean;
  ipv6Only?: boolean;
  addr4?: number;
  addr6?: Uint8Array;
  /** -n, or -a ADDR/PREFIX. */
  prefixLen4?: number;
  /** -a ADDR/PREFIX for IPv6. */
  prefixLen6?: number;
  gw4?: number;
  gw6?: Uint8Array;
  mac?: Uint8Array;
  nsMac?: Uint8Array;
  nsIfname?: string;
  mtu?: number;
  /** -D: replaces resolv.conf servers; an empty list is "-D none". */
  dns4?: number[];
  dns6?: Uint8Array[];
  /** -S: replaces the resolv.conf search list; empty is "-S none". */
  search?: string[];
  /** --dhcp-dns / --no-dhcp-dns, --dhcp-search / --no-dhcp-search (default: on for passt, off for pasta). */
  dhcpDns?: boolean;
  dhcpSearch?: boolean;
  hostname?: string;
  fqdn?: string;
  dnsForward4?: number;
  dnsForward6?: Uint8Array;
  /** --dns-host, per version. */
  dnsHost4?: number;
  dnsHost6?: Uint8Array;
  /** --map-host-loopback and --map-guest-addr, per version: 0 / null is "none", absent the default. */
  mapHostLoopback4?: number;
  mapHostLoopback6?: Uint8Array | null;
  mapGuestAddr4?: number;
  mapGuestAddr6?: Uint8Array | null;
  noDhcp?: boolean;
  noNdp?: boolean;
  noDhcpv6?: boolean;
  noRa?: boolean;
  noIcmp?: boolean;
  noUdp?: boolean;
  noMapGw?: boolean;
  configNet?: boolean;
  /** --no-copy-addrs, --no-copy-routes (both IP versions). */
  noCopyAddrs?: boolean;
  noCopyRoutes?: boolean;
}

// ---------------------------------------------------------------- discovery

/**
 * The default route to use among routes: main table only, lowest metric,
 * kernel order among equals; when ifindex is given, only routes through it.
 */
function pickRoute(routes: Route[], ifindex?: number): Route | null {
  let best: Route | null = null;
  for (const r of routes) {
    if (r.table !== RT_TABLE_MAIN || r.ifindex === 0) continue;
    if (ifindex !== undefined && r.ifindex !== ifindex) continue;
    if (!best || r.metric < best.metric) best = r;
  }
  return best;
}

/** Whether dst/dstLen lies within the link-local prefix of family (169.254/16, fe80::/10). */
function isLinkLocalPrefix(family: Family, dst: Uint8Array | null, dstLen: number): boolean {
  if (!dst) return false;
  if (family === AF_INET) return dstLen >= 16 && dst[0] === 169 && dst[1] === 254;
  return dstLen >= 10 && dst[0] === 0xfe && (dst[1]! & 0xc0) === 0x80;
}

/**
 * Without a default route: the interface of the first route of the main table
 * that is not through a loopback link nor to a link-local prefix (upstream's
 * choice), or undefined.
 */
function firstRouteLink(talk: NlTalk, links: Link[], family: Family): Link | undefined {
  for (const r of getMainRoutes(talk, family)) {
    const link = links.find((l) => l.ifindex === r.ifindexes[0]);
    if (link && (link.flags & IFF_LOOPBACK) === 0 && !isLinkLocalPrefix(family, r.dst, r.dstLen)) return link;
  }
  return undefined;
}

/** Global addresses of an interface, those fit to hand out first (IPv6: not temporary, deprecated or tentative). */
function globalAddrs(addrs: Addr[]): Addr[] {
  const global = addrs.filter((a) => a.scope === RT_SCOPE_UNIVERSE);
  return [...global.filter((a) => (a.flags & AVOID6) === 0), ...global.filter((a) => (a.flags & AVOID6) !== 0)];
}

/**
 * The interface, addresses and gateway of one family: through the named
 * interface if given (an error if it doesn't exist), else through the best
 * default route, else the first with any route. null when no interface is
 * found; addrs may be empty.
 */
function discoverFamily(talk: NlTalk, links: Link[], family: Family, ifname?: string): HostFamily<Uint8Array> | null {
  const routes = getRoutes(talk, family);
  let link: Link | undefined;
  if (ifname !== undefined) {
    link = links.find((l) => l.name === ifname);
    if (!link) throw new Error(`interface ${ifname} not found`);
  } else {
    const r = pickRoute(routes);
    link = r ? links.find((l) => l.ifindex === r.ifindex) : firstRouteLink(talk, links, family);
  }
  if (!link) return null;
  const addrs = globalAddrs(getAddrs(talk, family, link.ifindex));
  const route = pickRoute(routes, link.ifindex);
  return {
    ifname: link.name,
    ifindex: link.ifindex,
    mac: link.mac,
    mtu: link.mtu,
    addrs: addrs.map((a) => ({ addr: a.addr, prefixLen: a.prefixLen })),
    gw: route?.gateway ?? null,
  };
}

/** Convert the byte addresses of an IPv4 HostFamily to host-order numbers. */
function toIp4(f: HostFamily<Uint8Array>): HostFamily<number> {
  return {
    ...f,
    addrs: f.addrs.map((a) => ({ addr: ip4FromBytes(a.addr), prefixLen: a.prefixLen })),
    gw: f.gw ? ip4FromBytes(f.gw) : null,
  };
}

/** Read the host's upstream interfaces, addresses and gateways over talk. */
export function discoverHost(talk: NlTalk, sel: IfSelect = {}): HostNet {
  const links = getLinks(talk);
  const v4 = discoverFamily(talk, links, AF_INET, sel.ifname4);
  return { ip4: v4 ? toIp4(v4) : null, ip6: discoverFamily(talk, links, AF_INET6, sel.ifname6) };
}

// ---------------------------------------------------------------- merging

/** The classful prefix length of an IPv4 address (RFC 4632 section 3.1: A /8, B /16, C /24). */
export function classfulPrefix(addr: number): number {
  const top = addr >>> 24;
  if (top < 128) return 8;
  if (top < 192) return 16;
  if (top < 224) return 24;
  return 32;
}

/** Whether v is a loopback address (127/8). */
function isLoopback4(v: number): boolean {
  return v >>> 24 === 127;
}

/** Whether b is ::1. */
function isLoopback6(b: Uint8Array): boolean {
  return b[15] === 1 && b.subarray(0, 15).every((x) => x === 0);
}

/**
 * The address translations of IPv4 (src/flows/nat.ts), as upstream defaults
 * them: the gateway stands for the host's loopback unless --no-map-gw; DNS
 * goes to the first resolver of resolv.conf; when no --dns-forward is given
 * and that resolver is one the guest can't reach as it is (a host loopback
 * address, or the address that stands for the loopback), the guest is told
 * the mapped address, whose DNS traffic goes to the resolver.
 */
function nat4(
  gw: number,
  resolv: number[],
  ov: ConfigOverrides,
): Pick<Ip4Config, "dnsMatch" | "dnsHost" | "mapHostLoopback" | "mapGuestAddr"> {
  const mapHostLoopback = ov.mapHostLoopback4 ?? (ov.noMapGw ? 0 : gw);
  const first = resolv[0];
  let dnsMatch = ov.dnsForward4 ?? 0;
  const hidden = first !== undefined && (isLoopback4(first) || first === mapHostLoopback);
  if (dnsMatch === 0 && ov.dns4 === undefined && hidden) dnsMatch = mapHostLoopback;
  return { dnsMatch, dnsHost: ov.dnsHost4 ?? first ?? 0, mapHostLoopback, mapGuestAddr: ov.mapGuestAddr4 ?? 0 };
}

/** As nat4, for IPv6. */
function nat6(
  gw: Uint8Array,
  resolv: Uint8Array[],
  ov: ConfigOverrides,
): Pick<Ip6Config, "dnsMatch" | "dnsHost" | "mapHostLoopback" | "mapGuestAddr"> {
  const mapHostLoopback = ov.mapHostLoopback6 !== undefined ? ov.mapHostLoopback6 : ov.noMapGw || isZero(gw) ? null : gw;
  const first = resolv[0];
  let dnsMatch = ov.dnsForward6 ?? null;
  const hidden = first !== undefined && (isLoopback6(first) || (mapHostLoopback !== null && equal6(first, mapHostLoopback)));
  if (!dnsMatch && ov.dns6 === undefined && hidden) dnsMatch = mapHostLoopback;
  return { dnsMatch, dnsHost: ov.dnsHost6 ?? first ?? null, mapHostLoopback, mapGuestAddr: ov.mapGuestAddr6 ?? null };
}

/** Whether two IPv6 addresses are the same. */
function equal6(a: Uint8Array, b: Uint8Array): boolean {
  return a.every((x, i) => x === b[i]);
}

/**
 * IPv4 part of the Config: address, prefix and gateway from the overrides or
 * the host; local mode when neither gives an address.
 */
function buildIp4(host: HostFamily<number> | null, dns: number[], resolv: number[], ov: ConfigOverrides): Ip4Config {
  const found = ov.addr4 ?? host?.addrs[0]?.addr;
  if (found === undefined) return localIp4(dns, resolv, ov);
  const match = host?.addrs.find((a) => a.addr === found);
  const gw = ov.gw4 ?? host?.gw ?? 0;
  return {
    addr: found,
    gw,
    dns,
    ...nat4(gw, resolv, ov),
    prefixLen: ov.prefixLen4 ?? match?.prefixLen ?? classfulPrefix(found),
    ifname: host?.ifname ?? "",
    copyAddrs: host !== null && ov.addr4 === undefined && !ov.noCopyAddrs,
    copyRoutes: host !== null && ov.gw4 === undefined && !ov.noCopyRoutes,
  };
}

/** IPv4 in local mode: 169.254.2.1/16 via 169.254.2.2, unless -n or -g say otherwise. */
function localIp4(dns: number[], resolv: number[], ov: ConfigOverrides): Ip4Config {
  const gw = ov.gw4 ?? LOCAL_GW4;
  return {
    addr: LOCAL_ADDR4,
    gw,
    dns,
    ...nat4(gw, resolv, ov),
    prefixLen: ov.prefixLen4 ?? LOCAL_PREFIX4,
    ifname: "",
    copyAddrs: false,
    copyRoutes: false,
  };
}

/**
 * IPv6 part of the Config, as buildIp4; ourLL is the gateway if link-local,
 * else fe80::1. Local mode: no address, gateway fe80::1 (unless -g).
 */
function buildIp6(host: HostFamily<Uint8Array> | null, dns: Uint8Array[], resolv: Uint8Array[], ov: ConfigOverrides): Ip6Config {
  const found = ov.addr6 ?? host?.addrs[0]?.addr;
  const addr = found ?? new Uint8Array(16);
  const local = found === undefined;
  const match = host?.addrs.find((a) => a.addr.every((x, i) => x === addr[i]));
  const gw = ov.gw6 ?? (local ? LOCAL_GW6 : host?.gw) ?? new Uint8Array(16);
  return {
    addr,
    gw,
    dns,
    ...nat6(gw, resolv, ov),
    prefixLen: ov.prefixLen6 ?? match?.prefixLen ?? IPV6_DEFAULT_PREFIX,
    ourLL: isLinkLocal6(gw) ? gw : OUR_LL_DEFAULT,
    ifname: local ? "" : (host?.ifname ?? ""),
    copyAddrs: !local && host !== null && ov.addr6 === undefined && !ov.noCopyAddrs,
    copyRoutes: !local && host !== null && ov.gw6 === undefined && !ov.noCopyRoutes,
  };
}

/**
 * The Config for mode from what the host offers, its resolv.conf and the
 * command-line overrides.
 */
export function buildConfig(mode: Mode, host: HostNet, resolv: ResolvConf, ov: ConfigOverrides = {}): Config {
  const ip4 = ov.ipv6Only ? null : buildIp4(host.ip4, ov.dns4 ?? resolv.dns4, resolv.dns4, ov);
  const ip6 = ov.ipv4Only ? null : buildIp6(host.ip6, ov.dns6 ?? resolv.dns6, resolv.dns6, ov);
  return {
    mode,
    ourMac: ov.mac ?? OUR_MAC_DEFAULT,
    nsMac: ov.nsMac ?? new Uint8Array(6),
    nsIfname: ov.nsIfname ?? host.ip4?.ifname ?? host.ip6?.ifname ?? NS_IFNAME_DEFAULT,
    mtu: ov.mtu ?? DEFAULT_MTU,
    ip4,
    ip6,
    dnsSearch: ov.search ?? resolv.search,
    dhcpDns: ov.dhcpDns ?? mode === "passt",
    dhcpSearch: ov.dhcpSearch ?? mode === "passt",
    hostname: ov.hostname ?? "",
    fqdn: ov.fqdn ?? "",
    noDhcp: ov.noDhcp ?? false,
    noNdp: ov.noNdp ?? false,
    noDhcpv6: (ov.noDhcpv6 ?? false) || (ip6 !== null && isZero(ip6.addr)),
    noRa: (ov.noRa ?? false) || (ov.configNet ?? false),
    noIcmp: ov.noIcmp ?? false,
    noUdp: ov.noUdp ?? false,
    outbound4: 0,
    outbound6: null,
    outboundIf4: null,
    outboundIf6: null,
    configNet: ov.configNet ?? false,
  };
}

// ---------------------------------------------------------------- for real

/** Discover the host through a netlink socket of our own namespace. */
export function discoverHostNow(sel: IfSelect = {}, io?: NlSys): HostNet {
  const fd = openNetlink(-1, io);
  try {
    return discoverHost(makeTalk(fd, io), sel);
  } finally {
    closeNetlink(fd, io);
  }
}

/** Close a socket from openNetlink, through io or the shim. */
function closeNetlink(fd: number, io?: NlSys): void {
  const sys = io ?? (require("../native/ffi.ts") as { sys: NlSys }).sys;
  sys.shim_close(fd);
}

/** The whole Config from the live host and resolv.conf at resolvPath. */
export function hostConfig(mode: Mode, sel: IfSelect, ov: ConfigOverrides, resolvPath?: string): Config {
  return buildConfig(mode, discoverHostNow(sel), readResolvConf(resolvPath), ov);
}
