/**
 * ICMPv4 (RFC 792): the 8-byte header common to every message, with the
 * echo identifier and sequence number in its second half.
 *
 * Functions take (b, o) with o the offset of the ICMP header. The checksum
 * covers the whole message and no pseudo-header, so it is set after the
 * payload is in place (icmpSetChecksum).
 */
import { inBounds, rd16, rd32, wr16, wr32 } from "./bytes.ts";
import { checksum } from "./checksum.ts";

export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CSUM = 2;
/** Second word: echo identifier and sequence, or type-specific data. */
export const ICMP_REST = 4;
export const ICMP_ID = 4;
export const ICMP_SEQ = 6;
export const ICMP_HLEN = 8;

export const ICMP_ECHOREPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO = 8;
export const ICMP_TIME_EXCEEDED = 11;

/** Validate an ICMP message of len bytes at b[o]: ICMP_HLEN or -1 when shorter than the header. */
export function icmpCheck(b: Uint8Array, o: number, len: number): number {
  return len >= ICMP_HLEN && inBounds(b, o, len) ? ICMP_HLEN : -1;
}

/** Message type. */
export function icmpType(b: Uint8Array, o: number): number {
  return b[o + ICMP_TYPE]!;
}

/** Message code. */
export function icmpCode(b: Uint8Array, o: number): number {
  return b[o + ICMP_CODE]!;
}

/** Echo identifier. */
export function icmpId(b: Uint8Array, o: number): number {
  return rd16(b, o + ICMP_ID);
}

/** Echo sequence number. */
export function icmpSeq(b: Uint8Array, o: number): number {
  return rd16(b, o + ICMP_SEQ);
}

/** Set the echo identifier (the checksum is left stale). */
export function icmpSetId(b: Uint8Array, o: number, id: number): void {
  wr16(b, o + ICMP_ID, id);
}

/** Compute and store the checksum over the len-byte message at b[o]. */
export function icmpSetChecksum(b: Uint8Array, o: number, len: number): void {
  wr16(b, o + ICMP_CSUM, 0);
  wr16(b, o + ICMP_CSUM, checksum(b, o, len));
}

/** True when the checksum of the len-byte message at b[o] is correct. */
export function icmpChecksumOk(b: Uint8Array, o: number, len: number): boolean {
  return checksum(b, o, len) === 0;
}

/**
 * Write an ICMP header at b[o]: type, code, checksum 0 and the second word
 * rest (for echo: id << 16 | seq, see writeIcmpEcho). Returns the offset of
 * the payload; call icmpSetChecksum once the payload is written.
 */
export function writeIcmp(b: Uint8Array, o: number, type: number, code: number, rest: number): number {
  b[o + ICMP_TYPE] = type;
  b[o + ICMP_CODE] = code;
  wr16(b, o + ICMP_CSUM, 0);
  wr32(b, o + ICMP_REST, rest);
  return o + ICMP_HLEN;
}

/** Write an echo request or reply header (type ICMP_ECHO or ICMP_ECHOREPLY); as writeIcmp. */
export function writeIcmpEcho(b: Uint8Array, o: number, type: number, id: number, seq: number): number {
  b[o + ICMP_TYPE] = type;
  b[o + ICMP_CODE] = 0;
  wr16(b, o + ICMP_CSUM, 0);
  wr16(b, o + ICMP_ID, id);
  wr16(b, o + ICMP_SEQ, seq);
  return o + ICMP_HLEN;
}

/** Second word of the header (unused, pointer or next-hop MTU in error messages). */
export function icmpRest(b: Uint8Array, o: number): number {
  return rd32(b, o + ICMP_REST);
}
