/**
 * IPv4 header (RFC 791). Functions take (b, o) with o the offset of the IPv4
 * header. Addresses are host-order u32 (192.0.2.1 is 0xc0000201).
 *
 * ipv4Check is the gate for hostile input: nothing else here reads before
 * it has accepted the header. Builders write a 20-byte header with no
 * options, DF set and identification 0 (we never fragment: path MTU
 * discovery does the job), and fill in the header checksum.
 */
import { inBounds, rd16, rd32, wr16, wr32 } from "./bytes.ts";
import { checksum } from "./checksum.ts";

export const IP4_VER_IHL = 0;
export const IP4_TOS = 1;
export const IP4_TOT_LEN = 2;
export const IP4_ID = 4;
export const IP4_FRAG = 6;
export const IP4_TTL = 8;
export const IP4_PROTO = 9;
export const IP4_CSUM = 10;
export const IP4_SRC = 12;
export const IP4_DST = 16;
/** Header length without options. */
export const IPV4_HLEN = 20;
/** Largest header: IHL 15. */
export const IPV4_HLEN_MAX = 60;

/** Flags and fragment offset field: don't fragment, more fragments, offset (8-byte units). */
export const IP4_DF = 0x4000;
export const IP4_MF = 0x2000;
export const IP4_OFFMASK = 0x1fff;
/** Fragment offsets count 8-byte units. */
const IP4_FRAG_UNIT = 8;
const IP4_VERSION = 4;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/**
 * Validate an IPv4 header in len available bytes at b[o]: version 4, IHL of
 * at least 5, header within the total length, total length within len.
 * Returns the header length in bytes, or -1. Bytes past the total length
 * (Ethernet padding) are allowed; the caller takes ipv4TotLen as the end.
 */
export function ipv4Check(b: Uint8Array, o: number, len: number): number {
  if (len < IPV4_HLEN || !inBounds(b, o, len)) return -1;
  const vihl = b[o + IP4_VER_IHL]!;
  const hlen = (vihl & 0x0f) * 4;
  const tot = rd16(b, o + IP4_TOT_LEN);
  if (vihl >> 4 !== IP4_VERSION || hlen < IPV4_HLEN || tot < hlen || tot > len) return -1;
  return hlen;
}

/** Header length in bytes (IHL * 4). */
export function ipv4Hlen(b: Uint8Array, o: number): number {
  return (b[o + IP4_VER_IHL]! & 0x0f) * 4;
}

/** Total length: header plus payload. */
export function ipv4TotLen(b: Uint8Array, o: number): number {
  return rd16(b, o + IP4_TOT_LEN);
}

/** Type of service / DSCP+ECN byte. */
export function ipv4Tos(b: Uint8Array, o: number): number {
  return b[o + IP4_TOS]!;
}

/** Identification. */
export function ipv4Id(b: Uint8Array, o: number): number {
  return rd16(b, o + IP4_ID);
}

/** Time to live. */
export function ipv4Ttl(b: Uint8Array, o: number): number {
  return b[o + IP4_TTL]!;
}

/** Upper-layer protocol number (IPPROTO_*). */
export function ipv4Proto(b: Uint8Array, o: number): number {
  return b[o + IP4_PROTO]!;
}

/** Source address, host-order u32. */
export function ipv4Src(b: Uint8Array, o: number): number {
  return rd32(b, o + IP4_SRC);
}

/** Destination address, host-order u32. */
export function ipv4Dst(b: Uint8Array, o: number): number {
  return rd32(b, o + IP4_DST);
}

/** True when the don't-fragment flag is set. */
export function ipv4DontFrag(b: Uint8Array, o: number): boolean {
  return (rd16(b, o + IP4_FRAG) & IP4_DF) !== 0;
}

/** True when the more-fragments flag is set. */
export function ipv4MoreFrags(b: Uint8Array, o: number): boolean {
  return (rd16(b, o + IP4_FRAG) & IP4_MF) !== 0;
}

/** Fragment offset in bytes. */
export function ipv4FragOffset(b: Uint8Array, o: number): number {
  return (rd16(b, o + IP4_FRAG) & IP4_OFFMASK) * IP4_FRAG_UNIT;
}

/** True when the packet is a fragment (more fragments follow, or it is not the first). */
export function ipv4IsFragment(b: Uint8Array, o: number): boolean {
  return (rd16(b, o + IP4_FRAG) & (IP4_MF | IP4_OFFMASK)) !== 0;
}

/** Set the source address (host-order u32); the header checksum is left stale. */
export function ipv4SetSrc(b: Uint8Array, o: number, addr: number): void {
  wr32(b, o + IP4_SRC, addr);
}

/** Set the destination address (host-order u32); the header checksum is left stale. */
export function ipv4SetDst(b: Uint8Array, o: number, addr: number): void {
  wr32(b, o + IP4_DST, addr);
}

/** Set the identification; the header checksum is left stale. */
export function ipv4SetId(b: Uint8Array, o: number, id: number): void {
  wr16(b, o + IP4_ID, id);
}

/** Set the raw flags and fragment offset field (IP4_DF, IP4_MF, offset in 8-byte units); the header checksum is left stale. */
export function ipv4SetFrag(b: Uint8Array, o: number, field: number): void {
  wr16(b, o + IP4_FRAG, field);
}

/** Set the time to live; the header checksum is left stale. */
export function ipv4SetTtl(b: Uint8Array, o: number, ttl: number): void {
  b[o + IP4_TTL] = ttl;
}

/** Set the total length; the header checksum is left stale. */
export function ipv4SetTotLen(b: Uint8Array, o: number, totLen: number): void {
  wr16(b, o + IP4_TOT_LEN, totLen);
}

/** Recompute and store the header checksum over ipv4Hlen bytes. */
export function ipv4SetChecksum(b: Uint8Array, o: number): void {
  wr16(b, o + IP4_CSUM, 0);
  wr16(b, o + IP4_CSUM, checksum(b, o, ipv4Hlen(b, o)));
}

/** True when the header checksum is correct. */
export function ipv4ChecksumOk(b: Uint8Array, o: number): boolean {
  return checksum(b, o, ipv4Hlen(b, o)) === 0;
}

/**
 * Write a complete 20-byte IPv4 header at b[o]: TOS 0, identification 0, DF,
 * the given addresses (host-order u32), protocol, TTL and total length
 * IPV4_HLEN + payloadLen, with its checksum. Returns the offset past it.
 */
export function writeIpv4(b: Uint8Array, o: number, src: number, dst: number, proto: number, payloadLen: number, ttl: number): number {
  b[o + IP4_VER_IHL] = (IP4_VERSION << 4) | (IPV4_HLEN / 4);
  b[o + IP4_TOS] = 0;
  wr16(b, o + IP4_TOT_LEN, IPV4_HLEN + payloadLen);
  wr16(b, o + IP4_ID, 0);
  wr16(b, o + IP4_FRAG, IP4_DF);
  b[o + IP4_TTL] = ttl;
  b[o + IP4_PROTO] = proto;
  wr32(b, o + IP4_SRC, src);
  wr32(b, o + IP4_DST, dst);
  wr16(b, o + IP4_CSUM, 0);
  wr16(b, o + IP4_CSUM, checksum(b, o, IPV4_HLEN));
  return o + IPV4_HLEN;
}
