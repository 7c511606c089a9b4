/**
 * Internet checksum (RFC 1071) over byte ranges, and the IPv4/IPv6
 * pseudo-headers that UDP, TCP and ICMPv6 checksums cover.
 *
 * The running sum is a plain number: each step adds two 16-bit words (4
 * bytes), so even a 64 KiB range stays far below 2^53 and folding happens
 * once at the end. Large payloads belong to the C shim; this is for headers
 * and small frames.
 */

/** IPv4 header: source address offset (the destination follows it). */
const IP4_SRC = 12;
/** IPv6 header: source address offset (the destination follows it). */
const IP6_SRC = 8;
/** IPv4 source plus destination address bytes covered by the pseudo-header. */
const IP4_ADDRS_LEN = 8;
/** IPv6 source plus destination address bytes covered by the pseudo-header. */
const IP6_ADDRS_LEN = 32;
/** Divisor that moves the carries above bit 15 down (2^16). */
const WORD = 0x10000;

/**
 * Add the bytes b[o..o+len) to a running ones'-complement sum, as big-endian
 * 16-bit words (an odd last byte is padded with a zero). Returns the new,
 * unfolded sum; start with 0 or a pseudo-header sum.
 */
export function csum(b: Uint8Array, o: number, len: number, sum: number): number {
  const end4 = o + (len & ~3);
  let i = o;
  for (; i < end4; i += 4) sum += ((b[i]! << 8) | b[i + 1]!) + ((b[i + 2]! << 8) | b[i + 3]!);
  if (len & 2) {
    sum += (b[i]! << 8) | b[i + 1]!;
    i += 2;
  }
  if (len & 1) sum += b[i]! << 8;
  return sum;
}

/**
 * Fold a running sum into 16 bits and complement it: the value that goes
 * into a checksum field (or 0 when verifying a range that already holds a
 * correct checksum).
 */
export function csumFold(sum: number): number {
  while (sum > 0xffff) sum = (sum % WORD) + Math.floor(sum / WORD);
  return ~sum & 0xffff;
}

/** Checksum of b[o..o+len) alone (IPv4 header, ICMPv4 message). */
export function checksum(b: Uint8Array, o: number, len: number): number {
  return csumFold(csum(b, o, len, 0));
}

/**
 * Running sum of the IPv4 pseudo-header (source, destination, protocol,
 * upper-layer length) for the IPv4 header at ipOff.
 */
export function pseudoSum4(b: Uint8Array, ipOff: number, proto: number, l4Len: number): number {
  return csum(b, ipOff + IP4_SRC, IP4_ADDRS_LEN, 0) + proto + l4Len;
}

/**
 * Running sum of the IPv6 pseudo-header (RFC 8200 section 8.1: source,
 * destination, 32-bit upper-layer length, next header) for the IPv6 header at
 * ipOff.
 */
export function pseudoSum6(b: Uint8Array, ipOff: number, proto: number, l4Len: number): number {
  return csum(b, ipOff + IP6_SRC, IP6_ADDRS_LEN, 0) + proto + Math.floor(l4Len / WORD) + (l4Len & 0xffff);
}

/**
 * Checksum of the upper-layer message b[l4Off..l4Off+l4Len) of protocol
 * proto under the IPv4 header at ipOff. With the message's checksum field
 * zeroed this is the value to store; over a message with a correct checksum
 * it is 0.
 */
export function l4Checksum4(b: Uint8Array, ipOff: number, l4Off: number, l4Len: number, proto: number): number {
  return csumFold(csum(b, l4Off, l4Len, pseudoSum4(b, ipOff, proto, l4Len)));
}

/** As l4Checksum4, under the IPv6 header at ipOff (UDP, TCP, ICMPv6). */
export function l4Checksum6(b: Uint8Array, ipOff: number, l4Off: number, l4Len: number, proto: number): number {
  return csumFold(csum(b, l4Off, l4Len, pseudoSum6(b, ipOff, proto, l4Len)));
}
