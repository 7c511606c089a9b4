/**
 * ICMPv6 (RFC 4443) and the Neighbor Discovery messages and options
 * (RFC 4861, RDNSS from RFC 8106) that our NDP service reads and writes.
 *
 * Functions take (b, o) with o the offset of the ICMPv6 header. Every message
 * we handle is at least 8 bytes (type, code, checksum, one 32-bit word). The
 * checksum covers the IPv6 pseudo-header, so it needs the IPv6 header offset
 * too and is set after the whole message is written (icmp6SetChecksum).
 * NDP options are walked without allocation: ndpOptFind returns an offset.
 */
import { copyBytes, inBounds, rd16, wr16, wr32 } from "./bytes.ts";
import { l4Checksum6 } from "./checksum.ts";
import { ETH_ALEN } from "./eth.ts";
import { IP6_ALEN, IPPROTO_ICMPV6 } from "./ipv6.ts";

export const ICMP6_TYPE = 0;
export const ICMP6_CODE = 1;
export const ICMP6_CSUM = 2;
export const ICMP6_REST = 4;
export const ICMP6_ID = 4;
export const ICMP6_SEQ = 6;
export const ICMP6_HLEN = 8;

export const ICMP6_DST_UNREACH = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_PARAM_PROB = 4;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;
export const ND_ROUTER_SOLICIT = 133;
export const ND_ROUTER_ADVERT = 134;
export const ND_NEIGHBOR_SOLICIT = 135;
export const ND_NEIGHBOR_ADVERT = 136;
export const ND_REDIRECT = 137;

/** NDP messages must arrive with this hop limit (proof they were not routed). */
export const ND_HOP_LIMIT = 255;

/** NS/NA: target address offset; options follow at ND_NS_LEN. */
export const ND_TARGET = 8;
export const ND_NS_LEN = 24;
export const ND_NA_LEN = 24;
/** NA flags byte and bits. */
export const ND_NA_FLAGS = 4;
export const ND_NA_ROUTER = 0x80;
export const ND_NA_SOLICITED = 0x40;
export const ND_NA_OVERRIDE = 0x20;
/** RS: options follow the reserved word. */
export const ND_RS_LEN = 8;
/** RA fields and bits. */
export const ND_RA_CUR_HLIM = 4;
export const ND_RA_FLAGS = 5;
export const ND_RA_MANAGED = 0x80;
export const ND_RA_OTHER = 0x40;
export const ND_RA_LIFETIME = 6;
export const ND_RA_REACHABLE = 8;
export const ND_RA_RETRANS = 12;
export const ND_RA_LEN = 16;
/** Redirect: target and destination addresses, options after. */
export const ND_REDIRECT_LEN = 40;

/** Options: type, length in 8-byte units (0 is invalid). */
export const ND_OPT_TYPE = 0;
export const ND_OPT_LEN = 1;
export const ND_OPT_UNIT = 8;
export const ND_OPT_SOURCE_LLADDR = 1;
export const ND_OPT_TARGET_LLADDR = 2;
export const ND_OPT_PREFIX_INFO = 3;
export const ND_OPT_MTU = 5;
export const ND_OPT_RDNSS = 25;
export const ND_OPT_DNSSL = 31;
/** MTU and RDNSS options: 16 reserved bits after type and length. */
export const ND_OPT_RESERVED = 2;
/** Link-layer address option: the MAC starts here. */
export const ND_OPT_LLADDR = 2;
/** Prefix information option fields, length and flag bits. */
export const ND_OPT_PI_PREFIX_LEN = 2;
export const ND_OPT_PI_FLAGS = 3;
export const ND_OPT_PI_VALID = 4;
export const ND_OPT_PI_PREFERRED = 8;
export const ND_OPT_PI_RESERVED = 12;
export const ND_OPT_PI_PREFIX = 16;
export const ND_OPT_PI_LEN = 32;
export const ND_OPT_PI_ONLINK = 0x80;
export const ND_OPT_PI_AUTO = 0x40;
/** MTU option: the MTU as a 32-bit value at offset 4. */
export const ND_OPT_MTU_VALUE = 4;
/** RDNSS option: lifetime, then the addresses from offset 8. */
export const ND_OPT_RDNSS_LIFETIME = 4;
export const ND_OPT_RDNSS_ADDRS = 8;

/** Validate an ICMPv6 message of len bytes at b[o]: ICMP6_HLEN, or -1 when shorter. */
export function icmp6Check(b: Uint8Array, o: number, len: number): number {
  return len >= ICMP6_HLEN && inBounds(b, o, len) ? ICMP6_HLEN : -1;
}

/** Message type. */
export function icmp6Type(b: Uint8Array, o: number): number {
  return b[o + ICMP6_TYPE]!;
}

/** Message code. */
export function icmp6Code(b: Uint8Array, o: number): number {
  return b[o + ICMP6_CODE]!;
}

/** Echo identifier. */
export function icmp6Id(b: Uint8Array, o: number): number {
  return rd16(b, o + ICMP6_ID);
}

/** Echo sequence number. */
export function icmp6Seq(b: Uint8Array, o: number): number {
  return rd16(b, o + ICMP6_SEQ);
}

/** Set the echo identifier (the checksum is left stale). */
export function icmp6SetId(b: Uint8Array, o: number, id: number): void {
  wr16(b, o + ICMP6_ID, id);
}

/** Compute and store the checksum of the len-byte message at b[o] under the IPv6 header at ipOff. */
export function icmp6SetChecksum(b: Uint8Array, ipOff: number, o: number, len: number): void {
  wr16(b, o + ICMP6_CSUM, 0);
  wr16(b, o + ICMP6_CSUM, l4Checksum6(b, ipOff, o, len, IPPROTO_ICMPV6));
}

/** True when the checksum of the len-byte message at b[o] under the IPv6 header at ipOff is correct. */
export function icmp6ChecksumOk(b: Uint8Array, ipOff: number, o: number, len: number): boolean {
  return l4Checksum6(b, ipOff, o, len, IPPROTO_ICMPV6) === 0;
}

/**
 * Write an ICMPv6 header at b[o]: type, code, checksum 0 and the 32-bit
 * second word (NA flags sit in its top byte, echo id and sequence in its
 * halves). Returns the offset past it; call icmp6SetChecksum at the end.
 */
export function writeIcmp6(b: Uint8Array, o: number, type: number, code: number, rest: number): number {
  b[o + ICMP6_TYPE] = type;
  b[o + ICMP6_CODE] = code;
  wr16(b, o + ICMP6_CSUM, 0);
  wr32(b, o + ICMP6_REST, rest);
  return o + ICMP6_HLEN;
}

/** Write an echo request or reply header; as writeIcmp6. */
export function writeIcmp6Echo(b: Uint8Array, o: number, type: number, id: number, seq: number): number {
  return writeIcmp6(b, o, type, 0, ((id << 16) | (seq & 0xffff)) >>> 0);
}

/**
 * Offset, relative to the ICMPv6 header, where the options of NDP message
 * type start (also the message's minimum length), or -1 when type is not an
 * NDP message.
 */
export function ndpOptStart(type: number): number {
  switch (type) {
    case ND_ROUTER_SOLICIT:
      return ND_RS_LEN;
    case ND_ROUTER_ADVERT:
      return ND_RA_LEN;
    case ND_NEIGHBOR_SOLICIT:
      return ND_NS_LEN;
    case ND_NEIGHBOR_ADVERT:
      return ND_NA_LEN;
    case ND_REDIRECT:
      return ND_REDIRECT_LEN;
    default:
      return -1;
  }
}

/**
 * True when the options in b[start..end) are well formed: each has a
 * non-zero length and fits (RFC 4861 says drop the message otherwise).
 */
export function ndpOptsValid(b: Uint8Array, start: number, end: number): boolean {
  if (!inBounds(b, start, end - start)) return false;
  let p = start;
  while (p < end) {
    if (p + ND_OPT_UNIT > end) return false;
    const l = b[p + ND_OPT_LEN]! * ND_OPT_UNIT;
    if (l === 0 || p + l > end) return false;
    p += l;
  }
  return true;
}

/**
 * Offset of the first option of the given type in b[start..end), or -1 when
 * there is none or a malformed option comes first. The option's length in
 * bytes is b[off + ND_OPT_LEN] * ND_OPT_UNIT.
 */
export function ndpOptFind(b: Uint8Array, start: number, end: number, type: number): number {
  if (!inBounds(b, start, end - start)) return -1;
  let p = start;
  while (p + ND_OPT_UNIT <= end) {
    const l = b[p + ND_OPT_LEN]! * ND_OPT_UNIT;
    if (l === 0 || p + l > end) return -1;
    if (b[p + ND_OPT_TYPE] === type) return p;
    p += l;
  }
  return -1;
}

/** Write a source or target link-layer address option (type ND_OPT_*_LLADDR) with mac. Returns the offset past it. */
export function writeNdpLla(b: Uint8Array, o: number, type: number, mac: Uint8Array): number {
  b[o + ND_OPT_TYPE] = type;
  b[o + ND_OPT_LEN] = 1;
  copyBytes(b, o + ND_OPT_LLADDR, mac, 0, ETH_ALEN);
  return o + ND_OPT_UNIT;
}

/** Write an MTU option. Returns the offset past it. */
export function writeNdpMtu(b: Uint8Array, o: number, mtu: number): number {
  b[o + ND_OPT_TYPE] = ND_OPT_MTU;
  b[o + ND_OPT_LEN] = 1;
  wr16(b, o + ND_OPT_RESERVED, 0);
  wr32(b, o + ND_OPT_MTU_VALUE, mtu);
  return o + ND_OPT_UNIT;
}

/**
 * Write a prefix information option: prefix[pOff..+16) of prefixLen bits,
 * flags (ND_OPT_PI_ONLINK | ND_OPT_PI_AUTO), valid and preferred lifetimes
 * in seconds. Returns the offset past it.
 */
export function writeNdpPrefix(
  b: Uint8Array,
  o: number,
  prefix: Uint8Array,
  pOff: number,
  prefixLen: number,
  flags: number,
  valid: number,
  preferred: number,
): number {
  b[o + ND_OPT_TYPE] = ND_OPT_PREFIX_INFO;
  b[o + ND_OPT_LEN] = ND_OPT_PI_LEN / ND_OPT_UNIT;
  b[o + ND_OPT_PI_PREFIX_LEN] = prefixLen;
  b[o + ND_OPT_PI_FLAGS] = flags;
  wr32(b, o + ND_OPT_PI_VALID, valid);
  wr32(b, o + ND_OPT_PI_PREFERRED, preferred);
  wr32(b, o + ND_OPT_PI_RESERVED, 0);
  copyBytes(b, o + ND_OPT_PI_PREFIX, prefix, pOff, IP6_ALEN);
  return o + ND_OPT_PI_LEN;
}

/**
 * Write the header of an RDNSS option announcing count addresses with the
 * given lifetime (seconds). Returns the offset where the caller copies the
 * count 16-byte addresses (ip6Copy).
 */
export function writeNdpRdnssHdr(b: Uint8Array, o: number, count: number, lifetime: number): number {
  b[o + ND_OPT_TYPE] = ND_OPT_RDNSS;
  b[o + ND_OPT_LEN] = 1 + (count * IP6_ALEN) / ND_OPT_UNIT;
  wr16(b, o + ND_OPT_RESERVED, 0);
  wr32(b, o + ND_OPT_RDNSS_LIFETIME, lifetime);
  return o + ND_OPT_RDNSS_ADDRS;
}
