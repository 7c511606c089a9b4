/**
 * IPv6 fixed header (RFC 8200) and the walk over extension headers.
 *
 * Functions take (b, o) with o the offset of the IPv6 header. Addresses are
 * 16 bytes compared and copied in place (ip6Equal, ip6Copy): no strings, no
 * views. ipv6Check is the gate for hostile input; ipv6Upper finds the
 * upper-layer header behind hop-by-hop, routing, destination-options and
 * fragment headers, at most IP6_MAX_EXT of them, and writes what it found
 * into a record the caller owns and reuses (newIp6Ext; no allocation per
 * packet).
 */
import { copyBytes, equalBytes, inBounds, rd16, rd32, wr16, wr32 } from "./bytes.ts";

export const IP6_VTF = 0;
export const IP6_PLEN = 4;
export const IP6_NXT = 6;
export const IP6_HLIM = 7;
export const IP6_SRC = 8;
export const IP6_DST = 24;
export const IPV6_HLEN = 40;
export const IP6_ALEN = 16;

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;

/** Most extension headers we walk before giving up: real traffic has one or two; a guest could chain hundreds. */
export const IP6_MAX_EXT = 8;
/** Fragment header: fixed size (as long as the shortest generic one), offset/flags field and identification offsets. */
export const IP6_FRAG_HLEN = 8;
const IP6_FRAG_OFFLG = 2;
const IP6_FRAG_ID = 4;
/** Fragment offset mask (already in bytes, low 3 bits are flags) and the M flag. */
const IP6_FRAG_OFFMASK = 0xfff8;
const IP6_FRAG_MORE = 1;
/** Generic extension header: length byte, in 8-octet units not counting the first 8. */
const IP6_EXT_LEN = 1;
const IP6_EXT_UNIT = 8;
const IP6_VERSION = 6;
const IP6_FLOW_MASK = 0xfffff;

/** What ipv6Upper found: upper-layer protocol and the fragment header, if any. */
export interface Ip6ExtInfo {
  /** Upper-layer protocol number (the last next-header value). */
  proto: number;
  /** Offset in the buffer just past the payload: the upper-layer length is end minus ipv6Upper's result. */
  end: number;
  /** Offset in the buffer of the fragment header, or -1 when there is none. */
  fragHdr: number;
  /** Fragment offset in bytes (0 when not a fragment). */
  fragOffset: number;
  /** More-fragments flag. */
  fragMore: boolean;
  /** Fragment identification (u32). */
  fragId: number;
}

/** A record for ipv6Upper's results, made once by its caller and reused for every packet. */
export function newIp6Ext(): Ip6ExtInfo {
  return { proto: -1, end: 0, fragHdr: -1, fragOffset: 0, fragMore: false, fragId: 0 };
}

/**
 * Validate an IPv6 header in len available bytes at b[o]: version 6 and the
 * payload length within len. Returns IPV6_HLEN or -1. Bytes past the payload
 * (Ethernet padding) are allowed. Jumbograms (payload length 0 with a
 * jumbo option) are not supported: the payload is then taken as empty.
 */
export function ipv6Check(b: Uint8Array, o: number, len: number): number {
  if (len < IPV6_HLEN || !inBounds(b, o, len)) return -1;
  if (b[o + IP6_VTF]! >> 4 !== IP6_VERSION) return -1;
  return IPV6_HLEN + rd16(b, o + IP6_PLEN) <= len ? IPV6_HLEN : -1;
}

/** Payload length (everything after the fixed header, extension headers included). */
export function ipv6PayloadLen(b: Uint8Array, o: number): number {
  return rd16(b, o + IP6_PLEN);
}

/** Next header of the fixed header (first extension header or upper-layer protocol). */
export function ipv6NextHeader(b: Uint8Array, o: number): number {
  return b[o + IP6_NXT]!;
}

/** Hop limit. */
export function ipv6HopLimit(b: Uint8Array, o: number): number {
  return b[o + IP6_HLIM]!;
}

/** Traffic class. */
export function ipv6TrafficClass(b: Uint8Array, o: number): number {
  return (rd16(b, o + IP6_VTF) >> 4) & 0xff;
}

/** Flow label (20 bits). */
export function ipv6FlowLabel(b: Uint8Array, o: number): number {
  return rd32(b, o + IP6_VTF) & IP6_FLOW_MASK;
}

/** Set the payload length. */
export function ipv6SetPayloadLen(b: Uint8Array, o: number, len: number): void {
  wr16(b, o + IP6_PLEN, len);
}

/** Set the flow label, keeping version and traffic class. */
export function ipv6SetFlowLabel(b: Uint8Array, o: number, label: number): void {
  wr32(b, o + IP6_VTF, ((rd32(b, o + IP6_VTF) & ~IP6_FLOW_MASK) | (label & IP6_FLOW_MASK)) >>> 0);
}

/** Set the hop limit. */
export function ipv6SetHopLimit(b: Uint8Array, o: number, hopLimit: number): void {
  b[o + IP6_HLIM] = hopLimit;
}

/** True when the 16 bytes at b[o] equal addr[aOff..aOff+16). */
export function ip6Equal(b: Uint8Array, o: number, addr: Uint8Array, aOff = 0): boolean {
  return equalBytes(b, o, addr, aOff, IP6_ALEN);
}

/** Copy the 16-byte address src[sOff] to dst[dOff]. */
export function ip6Copy(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number): void {
  copyBytes(dst, dOff, src, sOff, IP6_ALEN);
}

/** True when the address at b[o] is :: (unspecified). */
export function ip6IsUnspecified(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < IP6_ALEN; i++) if (b[o + i] !== 0) return false;
  return true;
}

/** True when the address at b[o] is multicast (ff00::/8). */
/** ::1, the loopback address. */
export const IP6_LOOPBACK = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

/** True when the 16 bytes at b[o] are ::1. */
export function ip6IsLoopback(b: Uint8Array, o: number): boolean {
  return ip6Equal(b, o, IP6_LOOPBACK);
}

export function ip6IsMulticast(b: Uint8Array, o: number): boolean {
  return b[o] === 0xff;
}

/** True when the address at b[o] is link-local unicast (fe80::/10). */
export function ip6IsLinkLocal(b: Uint8Array, o: number): boolean {
  return b[o] === 0xfe && (b[o + 1]! & 0xc0) === 0x80;
}

/**
 * Write a complete IPv6 header at b[o]: traffic class and flow label 0,
 * source src[srcOff..+16), destination dst[dstOff..+16), next header,
 * payload length and hop limit. Addresses may come from any buffer (an
 * incoming frame, a table, a config value) without a subarray view. Returns
 * the offset past the header.
 */
export function writeIpv6At(
  b: Uint8Array,
  o: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  nextHeader: number,
  payloadLen: number,
  hopLimit: number,
): number {
  wr32(b, o + IP6_VTF, IP6_VERSION << 28);
  wr16(b, o + IP6_PLEN, payloadLen);
  b[o + IP6_NXT] = nextHeader;
  b[o + IP6_HLIM] = hopLimit;
  copyBytes(b, o + IP6_SRC, src, srcOff, IP6_ALEN);
  copyBytes(b, o + IP6_DST, dst, dstOff, IP6_ALEN);
  return o + IPV6_HLEN;
}

/** As writeIpv6At with src and dst each a 16-byte array of their own. */
export function writeIpv6(
  b: Uint8Array,
  o: number,
  src: Uint8Array,
  dst: Uint8Array,
  nextHeader: number,
  payloadLen: number,
  hopLimit: number,
): number {
  return writeIpv6At(b, o, src, 0, dst, 0, nextHeader, payloadLen, hopLimit);
}

/** True for the extension headers ipv6Upper steps over with the generic length rule. */
function isGenericExt(nh: number): boolean {
  return nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_DSTOPTS;
}

/** Clear x before a walk. */
function resetExt(x: Ip6ExtInfo): void {
  x.proto = -1;
  x.end = 0;
  x.fragHdr = -1;
  x.fragOffset = 0;
  x.fragMore = false;
  x.fragId = 0;
}

/**
 * Record the fragment header at b[p] in x. Returns false when one was
 * already seen (two fragment headers: malformed).
 */
function takeFragHdr(x: Ip6ExtInfo, b: Uint8Array, p: number): boolean {
  if (x.fragHdr >= 0) return false;
  const offlg = rd16(b, p + IP6_FRAG_OFFLG);
  x.fragHdr = p;
  x.fragOffset = offlg & IP6_FRAG_OFFMASK;
  x.fragMore = (offlg & IP6_FRAG_MORE) !== 0;
  x.fragId = rd32(b, p + IP6_FRAG_ID);
  return true;
}

/**
 * Find the upper-layer header of the IPv6 packet at b[o] (len available
 * bytes), stepping over at most IP6_MAX_EXT hop-by-hop, routing,
 * destination-options and fragment headers. Returns its offset in b, or -1
 * when the header is invalid, an extension header runs past the payload or
 * the chain is too long. What it finds goes into x (overwritten): x.proto
 * is the upper-layer protocol (any other next-header value ends the walk,
 * including IPPROTO_NONE), x.end the end of the payload, x.frag* the
 * fragment header if any. For a fragment other than the first, the walk
 * stops at the fragment header: the returned offset is the start of the
 * fragment data, not an L4 header.
 */
export function ipv6Upper(b: Uint8Array, o: number, len: number, x: Ip6ExtInfo): number {
  resetExt(x);
  if (ipv6Check(b, o, len) < 0) return -1;
  const end = o + IPV6_HLEN + ipv6PayloadLen(b, o);
  x.end = end;
  let nh = b[o + IP6_NXT]!;
  let p = o + IPV6_HLEN;
  for (let n = 0; nh === IPPROTO_FRAGMENT || isGenericExt(nh); n++) {
    if (n === IP6_MAX_EXT || p + IP6_EXT_UNIT > end) return -1;
    const hl = nh === IPPROTO_FRAGMENT ? IP6_FRAG_HLEN : (b[p + IP6_EXT_LEN]! + 1) * IP6_EXT_UNIT;
    if (p + hl > end) return -1;
    if (nh === IPPROTO_FRAGMENT && !takeFragHdr(x, b, p)) return -1;
    nh = b[p]!;
    p += hl;
    if (x.fragOffset !== 0) break;
  }
  x.proto = nh;
  return p;
}
