/**
 * Neighbour Discovery (RFC 4861) towards the guest: we answer its Neighbour
 * Solicitations with our MAC and its Router Solicitations with Router
 * Advertisements carrying the prefix (SLAAC, RFC 4862), MTU, and DNS servers
 * and search list (RDNSS and DNSSL, RFC 8106; with cfg.dhcpDns and
 * cfg.dhcpSearch).
 *
 * Theory of operation
 *
 * We work on ICMPv6 message bodies: the integrator checks the IPv6 header
 * (hop limit 255) and checksum, passes us the ICMPv6 message and its source
 * address, and wraps what we write (type, code, a zero checksum for it to
 * fill, body) in IPv6 and Ethernet headers, to the address in `dest`, from
 * our link-local address cfg.ip6.ourLL.
 *
 * Every host on the link but the guest is us: all traffic leaves through the
 * host's sockets. So a Neighbour Solicitation for any target gets a solicited
 * Neighbour Advertisement with our MAC, except when the target is one of the
 * guest's own addresses: cfg.ip6.addr or the solicitation's source address.
 * Duplicate Address Detection probes (unspecified source) are never answered:
 * the guest is claiming that address and we must not take it away.
 *
 * A Router Solicitation gets a Router Advertisement, unicast to the
 * solicitor, or to all nodes when it came from the unspecified address;
 * ndpBuildRA() makes the same RA for periodic unsolicited sending to all
 * nodes. The RA sets M and O unless DHCPv6 is off, so that DHCPv6 clients run
 * and get cfg.ip6.addr itself; the router lifetime is 9000 s (the RFC 4861
 * maximum), or 0 when the host has no IPv6 gateway, as we are then no
 * default router. Prefix, RDNSS and DNSSL lifetimes are infinite: the
 * configuration does not change while we run.
 */
import { isLinkLocal6, type Config } from "../conf/config.ts";
import { copyBytes, equalBytes, inBounds, wr16, wr32 } from "../wire/bytes.ts";
import { dnsNamesWire } from "./dhcp.ts";

export const ND_ROUTER_SOLICIT = 133,
  ND_ROUTER_ADVERT = 134;
export const ND_NEIGHBOR_SOLICIT = 135,
  ND_NEIGHBOR_ADVERT = 136;

const OPT_SLLA = 1,
  OPT_TLLA = 2,
  OPT_PREFIX = 3,
  OPT_MTU = 5,
  OPT_RDNSS = 25,
  OPT_DNSSL = 31;

/** RA fields: hop limit for the guest, router lifetime (RFC 4861 section 6.2.1 maximum). */
const RA_HOP_LIMIT = 64;
export const RA_ROUTER_LIFETIME = 9000;
/** Lifetimes of the prefix, RDNSS and DNSSL options: infinite. */
export const RA_OPTION_LIFETIME = 0xffffffff;
const RA_FLAG_MANAGED = 0x80,
  RA_FLAG_OTHER = 0x40;
const PREFIX_FLAG_ONLINK = 0x80,
  PREFIX_FLAG_AUTO = 0x40;
const NA_FLAG_ROUTER = 0x80,
  NA_FLAG_SOLICITED = 0x40,
  NA_FLAG_OVERRIDE = 0x20;
/** Lengths: RS and NS/NA fixed parts, RA header, our NA (with TLLA). */
const RS_LEN = 8,
  NS_LEN = 24,
  RA_HDR = 16,
  NA_LEN = 32;
const IPV6_HDR = 40,
  IPV6_MIN_MTU = 1280;
/** Most RDNSS addresses one option can hold (8-byte length field of 255). */
const RDNSS_MAX = 127;

export const ndpCounters = {
  rx: 0,
  /** Shorter than its message type needs, or a range outside the buffer. */
  truncated: 0,
  /** Non-zero code, zero-length or overrunning option, multicast target or source. */
  invalid: 0,
  /** Duplicate Address Detection probes, never answered. */
  dad: 0,
  /** Solicitations for the guest's own addresses. */
  guestTarget: 0,
  /** Other types, or the service is switched off. */
  ignored: 0,
  noRoom: 0,
  na: 0,
  ra: 0,
};

/** Where to send a message ndpReply or ndpBuildRA wrote (valid after it returned > 0). */
export interface NdpDest {
  /** IPv6 destination: the solicitor, or ff02::1 when multicast. */
  dst: Uint8Array;
  /** Send to all nodes (ff02::1, MAC 33:33:00:00:00:01). */
  multicast: boolean;
  /** ND_NEIGHBOR_ADVERT or ND_ROUTER_ADVERT. */
  type: number;
}

/** An NdpDest to fill, made once by its caller and reused. */
export function newNdpDest(): NdpDest {
  return { dst: new Uint8Array(16), multicast: false, type: 0 };
}

/** The search list's wire form when it is not handed out. */
const NO_NAMES = new Uint8Array(0);
const ALL_NODES = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

function isUnspecified(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 16; i++) if (b[o + i] !== 0) return false;
  return true;
}

/**
 * Check the options in b[start..end) (RFC 4861 section 4.6: lengths in units
 * of 8 bytes, never zero, within the message). Returns -1 when invalid, else
 * the number of Source Link-Layer Address options seen.
 */
function checkOptions(b: Uint8Array, start: number, end: number): number {
  let slla = 0;
  for (let i = start; i < end; ) {
    if (i + 2 > end || b[i + 1] === 0) return -1;
    if (b[i] === OPT_SLLA) slla++;
    i += b[i + 1]! * 8;
    if (i > end) return -1;
  }
  return slla;
}

/** Write an all-nodes or unicast destination into dest. */
function setDest(dest: NdpDest, type: number, src: Uint8Array, so: number, multicast: boolean): void {
  dest.type = type;
  dest.multicast = multicast;
  if (multicast) copyBytes(dest.dst, 0, ALL_NODES, 0, 16);
  else copyBytes(dest.dst, 0, src, so, 16);
}

/**
 * Neighbour Solicitation at icmp[off..off+len) from src[so]: write the
 * Neighbour Advertisement for its target at out[o] (router, solicited and
 * override flags, our MAC as target link-layer address). Returns its length,
 * or 0 (counted) for invalid messages, DAD probes and the guest's own
 * addresses.
 */
function answerNs(
  cfg: Config,
  src: Uint8Array,
  so: number,
  icmp: Uint8Array,
  off: number,
  len: number,
  out: Uint8Array,
  o: number,
  dest: NdpDest,
): number {
  if (len < NS_LEN) {
    ndpCounters.truncated++;
    return 0;
  }
  const slla = checkOptions(icmp, off + NS_LEN, off + len);
  const dad = isUnspecified(src, so);
  if (slla < 0 || icmp[off + 8] === 0xff || src[so] === 0xff || (dad && slla > 0)) {
    ndpCounters.invalid++;
    return 0;
  }
  if (dad) {
    ndpCounters.dad++;
    return 0;
  }
  if (equalBytes(icmp, off + 8, src, so, 16) || equalBytes(icmp, off + 8, cfg.ip6!.addr, 0, 16)) {
    ndpCounters.guestTarget++;
    return 0;
  }
  if (!inBounds(out, o, NA_LEN)) {
    ndpCounters.noRoom++;
    return 0;
  }
  out.fill(0, o, o + NA_LEN);
  out[o] = ND_NEIGHBOR_ADVERT;
  out[o + 4] = NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
  copyBytes(out, o + 8, icmp, off + 8, 16);
  out[o + 24] = OPT_TLLA;
  out[o + 25] = 1;
  copyBytes(out, o + 26, cfg.ourMac, 0, 6);
  setDest(dest, ND_NEIGHBOR_ADVERT, src, so, false);
  ndpCounters.na++;
  return NA_LEN;
}

/**
 * Router Solicitation at icmp[off..off+len) from src[so]: write a Router
 * Advertisement at out[o], addressed to the solicitor (all nodes if it has
 * no address yet). Returns its length or 0 (counted).
 */
function answerRs(
  cfg: Config,
  src: Uint8Array,
  so: number,
  icmp: Uint8Array,
  off: number,
  len: number,
  out: Uint8Array,
  o: number,
  dest: NdpDest,
): number {
  if (len < RS_LEN) {
    ndpCounters.truncated++;
    return 0;
  }
  const slla = checkOptions(icmp, off + RS_LEN, off + len);
  const unspecified = isUnspecified(src, so);
  if (slla < 0 || src[so] === 0xff || (unspecified && slla > 0)) {
    ndpCounters.invalid++;
    return 0;
  }
  if (cfg.noRa) {
    ndpCounters.ignored++;
    return 0;
  }
  const n = buildRa(cfg, out, o);
  if (n > 0) setDest(dest, ND_ROUTER_ADVERT, src, so, unspecified);
  return n;
}

/**
 * Answer the NDP message icmp[off..off+len) (an ICMPv6 message from its type
 * byte, checksum already verified, hop limit 255 already checked), sent from
 * the IPv6 address src[srcOff..srcOff+16). Writes an ICMPv6 message (zero
 * checksum for the caller to fill) at out[outOff..] and returns its length,
 * or 0 for no reply (counted in ndpCounters); dest says where it goes.
 * Never throws on any input.
 */
export function ndpReply(
  cfg: Config,
  srcIp: Uint8Array,
  srcOff: number,
  icmp: Uint8Array,
  off: number,
  len: number,
  out: Uint8Array,
  outOff: number,
  dest: NdpDest,
): number {
  ndpCounters.rx++;
  if (!cfg.ip6 || cfg.noNdp) {
    ndpCounters.ignored++;
    return 0;
  }
  if (!inBounds(icmp, off, len) || len < 4 || !inBounds(srcIp, srcOff, 16)) {
    ndpCounters.truncated++;
    return 0;
  }
  const type = icmp[off]!;
  if (type !== ND_NEIGHBOR_SOLICIT && type !== ND_ROUTER_SOLICIT) {
    ndpCounters.ignored++;
    return 0;
  }
  if (icmp[off + 1] !== 0) {
    ndpCounters.invalid++;
    return 0;
  }
  if (type === ND_NEIGHBOR_SOLICIT) return answerNs(cfg, srcIp, srcOff, icmp, off, len, out, outOff, dest);
  return answerRs(cfg, srcIp, srcOff, icmp, off, len, out, outOff, dest);
}

/** Size of the RA for this configuration (must match buildRa). */
function raSize(cfg: Config, nDns: number, wireLen: number): number {
  let n = RA_HDR + 8;
  if (cfg.mtu >= IPV6_MIN_MTU) n += 8;
  if (hasPrefix(cfg)) n += 32;
  if (nDns > 0) n += 8 + 16 * nDns;
  if (wireLen > 0) n += dnsslSize(wireLen);
  return n;
}

/** DNSSL option size: header and names, padded to 8 bytes; 0 if too long for its length field. */
function dnsslSize(wireLen: number): number {
  const n = (8 + wireLen + 7) & ~7;
  return n > 255 * 8 ? 0 : n;
}

/** Is there a prefix to advertise (a global, non-zero address)? */
function hasPrefix(cfg: Config): boolean {
  const a = cfg.ip6!.addr;
  return !isUnspecified(a, 0) && !isLinkLocal6(a) && a[0] !== 0xff;
}

/** Write the Prefix Information option at out[p]: cfg.ip6.addr masked to its prefix, L (and A for /64). */
function putPrefix(cfg: Config, out: Uint8Array, p: number): number {
  const ip6 = cfg.ip6!;
  const bits = Math.max(0, Math.min(128, ip6.prefixLen));
  out.fill(0, p, p + 32);
  out[p] = OPT_PREFIX;
  out[p + 1] = 4;
  out[p + 2] = bits;
  out[p + 3] = PREFIX_FLAG_ONLINK | (bits === 64 ? PREFIX_FLAG_AUTO : 0);
  wr32(out, p + 4, RA_OPTION_LIFETIME);
  wr32(out, p + 8, RA_OPTION_LIFETIME);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[p + 16 + i] = ip6.addr[i]! & ((0xff00 >>> keep) & 0xff);
  }
  return p + 32;
}

/** Write the RDNSS option for the n DNS servers at out[p]. */
function putRdnss(cfg: Config, n: number, out: Uint8Array, p: number): number {
  const ip6 = cfg.ip6!;
  out[p] = OPT_RDNSS;
  out[p + 1] = 1 + 2 * n;
  wr16(out, p + 2, 0);
  wr32(out, p + 4, RA_OPTION_LIFETIME);
  if (ip6.dnsMatch) copyBytes(out, p + 8, ip6.dnsMatch, 0, 16);
  else for (let i = 0; i < n; i++) copyBytes(out, p + 8 + 16 * i, ip6.dns[i]!, 0, 16);
  return p + 8 + 16 * n;
}

/** Write the DNSSL option (names padded with zeros to 8 bytes) at out[p]. */
function putDnssl(wire: Uint8Array, out: Uint8Array, p: number): number {
  const size = dnsslSize(wire.length);
  out.fill(0, p, p + size);
  out[p] = OPT_DNSSL;
  out[p + 1] = size / 8;
  wr32(out, p + 4, RA_OPTION_LIFETIME);
  out.set(wire, p + 8);
  return p + size;
}

/** Write the RA at out[o]: see ndpBuildRA. Counts and returns 0 when it does not fit. */
function buildRa(cfg: Config, out: Uint8Array, o: number): number {
  const ip6 = cfg.ip6!;
  const nDns = !cfg.dhcpDns ? 0 : ip6.dnsMatch ? 1 : Math.min(ip6.dns.length, RDNSS_MAX);
  const wire = cfg.dhcpSearch ? dnsNamesWire(cfg.dnsSearch) : NO_NAMES;
  const wireLen = dnsslSize(wire.length) === 0 ? 0 : wire.length;
  const size = raSize(cfg, nDns, wireLen);
  if (!inBounds(out, o, size) || size > Math.max(IPV6_MIN_MTU, cfg.mtu) - IPV6_HDR) {
    ndpCounters.noRoom++;
    return 0;
  }
  out.fill(0, o, o + RA_HDR);
  out[o] = ND_ROUTER_ADVERT;
  out[o + 4] = RA_HOP_LIMIT;
  out[o + 5] = cfg.noDhcpv6 ? 0 : RA_FLAG_MANAGED | RA_FLAG_OTHER;
  wr16(out, o + 6, isUnspecified(ip6.gw, 0) ? 0 : RA_ROUTER_LIFETIME);
  out[o + 16] = OPT_SLLA;
  out[o + 17] = 1;
  copyBytes(out, o + 18, cfg.ourMac, 0, 6);
  let p = o + RA_HDR + 8;
  if (cfg.mtu >= IPV6_MIN_MTU) {
    out[p] = OPT_MTU;
    out[p + 1] = 1;
    wr16(out, p + 2, 0);
    wr32(out, p + 4, cfg.mtu);
    p += 8;
  }
  if (hasPrefix(cfg)) p = putPrefix(cfg, out, p);
  if (nDns > 0) p = putRdnss(cfg, nDns, out, p);
  if (wireLen > 0) p = putDnssl(wire, out, p);
  ndpCounters.ra++;
  return p - o;
}

/**
 * Write an unsolicited Router Advertisement at out[outOff..] for periodic
 * sending to all nodes (ff02::1, from cfg.ip6.ourLL): hop limit 64, M and O
 * unless DHCPv6 is off, router lifetime 9000 s (0 without an IPv6 gateway),
 * our MAC, the MTU (if at least 1280), the prefix of cfg.ip6.addr with L and
 * A (A for /64 only), RDNSS and DNSSL. Checksum left zero. Returns the length,
 * or 0 when IPv6 or RAs are off or it does not fit. Sets dest.
 */
export function ndpBuildRA(cfg: Config, out: Uint8Array, outOff: number, dest: NdpDest): number {
  if (!cfg.ip6 || cfg.noNdp || cfg.noRa) return 0;
  const n = buildRa(cfg, out, outOff);
  if (n > 0) setDest(dest, ND_ROUTER_ADVERT, ALL_NODES, 0, true);
  return n;
}
