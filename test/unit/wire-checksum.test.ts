import { describe, expect, test } from "bun:test";
import { checksum, csum, csumFold, l4Checksum4, l4Checksum6 } from "../../src/wire/checksum.ts";
import { IPPROTO_ICMPV6 } from "../../src/wire/ipv6.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../src/wire/ipv4.ts";
import { ICMP6_ECHO_REQ, NS_DAD, RA, TCP4_DATA, TCP4_SYN, TCP6_SYN, UDP4, UDP6 } from "./wire-fixtures.ts";

/** Textbook RFC 1071 checksum, one 16-bit word at a time, for comparison. */
function reference(b: Uint8Array, o: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[o + i]! << 8) | (i + 1 < len ? b[o + i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

describe("checksum", () => {
  test("matches the word-by-word reference for every length and offset", () => {
    const b = new Uint8Array(300);
    for (let i = 0; i < b.length; i++) b[i] = (i * 151 + 7) & 0xff;
    for (let o = 0; o < 5; o++) for (let len = 0; len <= 260; len++) expect(checksum(b, o, len)).toBe(reference(b, o, len));
  });

  test("all-ones bytes over 64 KiB fold without overflow", () => {
    const b = new Uint8Array(65536).fill(0xff);
    expect(checksum(b, 0, b.length)).toBe(0);
    expect(csumFold(csum(b, 0, b.length, 0) * 4096)).toBe(0);
  });

  test("IPv4 header of a captured frame sums to zero", () => {
    expect(checksum(TCP4_SYN, 14, 20)).toBe(0);
    expect(checksum(UDP4, 14, 20)).toBe(0);
  });

  test("captured UDP, TCP and ICMPv6 messages verify with their pseudo-headers", () => {
    expect(l4Checksum4(UDP4, 14, 34, UDP4.length - 34, IPPROTO_UDP)).toBe(0);
    expect(l4Checksum4(TCP4_SYN, 14, 34, 40, IPPROTO_TCP)).toBe(0);
    expect(l4Checksum4(TCP4_DATA, 14, 34, 38, IPPROTO_TCP)).toBe(0);
    expect(l4Checksum6(UDP6, 14, 54, 15, IPPROTO_UDP)).toBe(0);
    expect(l4Checksum6(TCP6_SYN, 14, 54, 40, IPPROTO_TCP)).toBe(0);
    expect(l4Checksum6(ICMP6_ECHO_REQ, 14, 54, 64, IPPROTO_ICMPV6)).toBe(0);
    expect(l4Checksum6(NS_DAD, 14, 54, 32, IPPROTO_ICMPV6)).toBe(0);
    expect(l4Checksum6(RA, 14, 54, 88, IPPROTO_ICMPV6)).toBe(0);
  });

  test("one flipped bit is detected", () => {
    const b = UDP6.slice();
    b[60] = b[60]! ^ 0x10;
    expect(l4Checksum6(b, 14, 54, 15, IPPROTO_UDP)).not.toBe(0);
  });
});
