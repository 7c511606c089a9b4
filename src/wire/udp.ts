/**
 * UDP header (RFC 768). Functions take (b, o) with o the offset of the UDP
 * header; checksum helpers also take the offset of the IPv4 or IPv6 header
 * in front of it, for the pseudo-header.
 *
 * A computed checksum of 0 is sent as 0xffff (0 means "none", allowed over
 * IPv4 only).
 */
import { inBounds, rd16, wr16 } from "./bytes.ts";
import { l4Checksum4, l4Checksum6 } from "./checksum.ts";
import { IPPROTO_UDP } from "./ipv4.ts";

export const UDP_SPORT = 0;
export const UDP_DPORT = 2;
export const UDP_LEN = 4;
export const UDP_CSUM = 6;
export const UDP_HLEN = 8;

/**
 * Validate a UDP header in len available bytes at b[o] (len: the IP payload
 * length): the length field covers at least the header and no more than
 * len. Returns UDP_HLEN or -1. The datagram ends at o + udpLen(b, o).
 */
export function udpCheck(b: Uint8Array, o: number, len: number): number {
  if (len < UDP_HLEN || !inBounds(b, o, len)) return -1;
  const ul = rd16(b, o + UDP_LEN);
  return ul >= UDP_HLEN && ul <= len ? UDP_HLEN : -1;
}

/** Source port. */
export function udpSrcPort(b: Uint8Array, o: number): number {
  return rd16(b, o + UDP_SPORT);
}

/** Destination port. */
export function udpDstPort(b: Uint8Array, o: number): number {
  return rd16(b, o + UDP_DPORT);
}

/** Length field: header plus payload. */
export function udpLen(b: Uint8Array, o: number): number {
  return rd16(b, o + UDP_LEN);
}

/** Checksum field as stored. */
export function udpCsum(b: Uint8Array, o: number): number {
  return rd16(b, o + UDP_CSUM);
}

/** Set the source port (the checksum is left stale). */
export function udpSetSrcPort(b: Uint8Array, o: number, port: number): void {
  wr16(b, o + UDP_SPORT, port);
}

/** Set the destination port (the checksum is left stale). */
export function udpSetDstPort(b: Uint8Array, o: number, port: number): void {
  wr16(b, o + UDP_DPORT, port);
}

/**
 * Write a UDP header at b[o]: ports, length UDP_HLEN + payloadLen, checksum 0.
 * Returns the payload offset; call udpSetChecksum4/6 once the payload is in.
 */
export function writeUdp(b: Uint8Array, o: number, sport: number, dport: number, payloadLen: number): number {
  wr16(b, o + UDP_SPORT, sport);
  wr16(b, o + UDP_DPORT, dport);
  wr16(b, o + UDP_LEN, UDP_HLEN + payloadLen);
  wr16(b, o + UDP_CSUM, 0);
  return o + UDP_HLEN;
}

/** Compute and store the checksum of the datagram at b[o] under the IPv4 header at ipOff. */
export function udpSetChecksum4(b: Uint8Array, ipOff: number, o: number): void {
  wr16(b, o + UDP_CSUM, 0);
  wr16(b, o + UDP_CSUM, l4Checksum4(b, ipOff, o, udpLen(b, o), IPPROTO_UDP) || 0xffff);
}

/** Compute and store the checksum of the datagram at b[o] under the IPv6 header at ipOff. */
export function udpSetChecksum6(b: Uint8Array, ipOff: number, o: number): void {
  wr16(b, o + UDP_CSUM, 0);
  wr16(b, o + UDP_CSUM, l4Checksum6(b, ipOff, o, udpLen(b, o), IPPROTO_UDP) || 0xffff);
}

/** True when the checksum under IPv4 is correct or absent (0). */
export function udpChecksumOk4(b: Uint8Array, ipOff: number, o: number): boolean {
  return udpCsum(b, o) === 0 || l4Checksum4(b, ipOff, o, udpLen(b, o), IPPROTO_UDP) === 0;
}

/** True when the checksum under IPv6 is correct (it is mandatory there). */
export function udpChecksumOk6(b: Uint8Array, ipOff: number, o: number): boolean {
  return udpCsum(b, o) !== 0 && l4Checksum6(b, ipOff, o, udpLen(b, o), IPPROTO_UDP) === 0;
}
