import { describe, expect, test } from "bun:test";
import { parseIp6 } from "../../src/conf/config.ts";
import { l4Checksum6 } from "../../src/wire/checksum.ts";
import { ETH_HLEN } from "../../src/wire/eth.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../src/wire/ipv4.ts";
import {
  IP6_DST,
  IP6_MAX_EXT,
  IP6_SRC,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMPV6,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPV6_HLEN,
  ip6Copy,
  ip6Equal,
  newIp6Ext,
  ip6IsLinkLocal,
  ip6IsMulticast,
  ip6IsUnspecified,
  ipv6Check,
  ipv6FlowLabel,
  ipv6HopLimit,
  ipv6NextHeader,
  ipv6PayloadLen,
  ipv6SetFlowLabel,
  ipv6SetHopLimit,
  ipv6SetPayloadLen,
  ipv6TrafficClass,
  ipv6Upper,
  writeIpv6,
  writeIpv6At,
} from "../../src/wire/ipv6.ts";
import { IP6_FRAG_FIRST, IP6_FRAG_LAST, MLD2_REPORT_HBH, NS, NS_DAD, RS, TCP6_SYN, UDP6, toHex } from "./wire-fixtures.ts";

/** What ipv6Upper found, as the dispatcher keeps it: one record, reused. */
const ip6Ext = newIp6Ext();

const IP = ETH_HLEN;
const GUEST = parseIp6("fd77::77:ff:fe00:1");
const PEER = parseIp6("fd77::2");

/** An IPv6 packet whose extension headers are given as [type, length in bytes] pairs, then 8 bytes of UDP. */
function withExt(chain: Array<[number, number]>, last = IPPROTO_UDP): Uint8Array {
  const extLen = chain.reduce((n, [, l]) => n + l, 0);
  const b = new Uint8Array(IPV6_HLEN + extLen + 8);
  writeIpv6(b, 0, GUEST, PEER, chain.length ? chain[0]![0] : last, extLen + 8, 64);
  let p = IPV6_HLEN;
  chain.forEach(([type, len], i) => {
    b[p] = i + 1 < chain.length ? chain[i + 1]![0] : last;
    if (type !== IPPROTO_FRAGMENT) b[p + 1] = len / 8 - 1;
    p += len;
  });
  return b;
}

describe("IPv6 fixed header", () => {
  test("reads a captured TCP SYN", () => {
    expect(ipv6Check(TCP6_SYN, IP, TCP6_SYN.length - IP)).toBe(IPV6_HLEN);
    expect(ipv6PayloadLen(TCP6_SYN, IP)).toBe(40);
    expect(ipv6NextHeader(TCP6_SYN, IP)).toBe(IPPROTO_TCP);
    expect(ipv6HopLimit(TCP6_SYN, IP)).toBe(64);
    expect(ipv6TrafficClass(TCP6_SYN, IP)).toBe(0);
    expect(ipv6FlowLabel(TCP6_SYN, IP)).toBe(0x6b9ef);
    expect(ip6Equal(TCP6_SYN, IP + IP6_SRC, GUEST)).toBe(true);
    expect(ip6Equal(TCP6_SYN, IP + IP6_DST, PEER)).toBe(true);
    expect(ip6Equal(TCP6_SYN, IP + IP6_DST, GUEST)).toBe(false);
  });

  test("address classes", () => {
    expect(ip6IsUnspecified(NS_DAD, IP + IP6_SRC)).toBe(true);
    expect(ip6IsMulticast(NS_DAD, IP + IP6_DST)).toBe(true);
    expect(ip6IsLinkLocal(RS, IP + IP6_SRC)).toBe(true);
    expect(ip6IsLinkLocal(NS, IP + IP6_SRC)).toBe(false);
    expect(ip6IsUnspecified(NS, IP + IP6_SRC)).toBe(false);
    const a = new Uint8Array(20);
    ip6Copy(a, 4, TCP6_SYN, IP + IP6_SRC);
    expect(ip6Equal(a, 4, GUEST)).toBe(true);
    expect(ip6Equal(GUEST, 0, a, 4)).toBe(true);
  });

  test("rejects bad version, short headers and payload past the frame", () => {
    const len = UDP6.length - IP;
    const b = UDP6.slice();
    b[IP] = 0x40;
    expect(ipv6Check(b, IP, len)).toBe(-1);
    expect(ipv6Check(UDP6, IP, len - 1)).toBe(-1);
    expect(ipv6Check(UDP6, IP, 39)).toBe(-1);
    expect(ipv6Check(UDP6, IP + 1, len)).toBe(-1);
  });

  test("writeIpv6 and writeIpv6At reproduce captured headers", () => {
    const b = new Uint8Array(IPV6_HLEN + 3);
    expect(writeIpv6At(b, 3, NS, IP + IP6_SRC, NS, IP + IP6_DST, IPPROTO_ICMPV6, 32, 255)).toBe(3 + IPV6_HLEN);
    expect(toHex(b.subarray(3))).toBe(toHex(NS.subarray(IP, IP + IPV6_HLEN)));
    writeIpv6(b, 0, GUEST, PEER, IPPROTO_UDP, 0, 1);
    ipv6SetPayloadLen(b, 0, 40);
    ipv6SetHopLimit(b, 0, 64);
    b[6] = IPPROTO_TCP;
    ipv6SetFlowLabel(b, 0, 0x6b9ef);
    expect(toHex(b.subarray(0, IPV6_HLEN))).toBe(toHex(TCP6_SYN.subarray(IP, IP + IPV6_HLEN)));
  });
});

describe("IPv6 extension headers", () => {
  test("plain upper-layer header", () => {
    expect(ipv6Upper(UDP6, IP, UDP6.length - IP, ip6Ext)).toBe(IP + IPV6_HLEN);
    expect(ip6Ext.proto).toBe(IPPROTO_UDP);
    expect(ip6Ext.end).toBe(UDP6.length);
    expect(ip6Ext.fragHdr).toBe(-1);
  });

  test("hop-by-hop router alert of a captured MLDv2 report", () => {
    const u = ipv6Upper(MLD2_REPORT_HBH, IP, MLD2_REPORT_HBH.length - IP, ip6Ext);
    expect(u).toBe(IP + IPV6_HLEN + 8);
    expect(ip6Ext.proto).toBe(IPPROTO_ICMPV6);
    expect(l4Checksum6(MLD2_REPORT_HBH, IP, u, ip6Ext.end - u, IPPROTO_ICMPV6)).toBe(0);
  });

  test("captured fragments", () => {
    expect(ipv6Upper(IP6_FRAG_FIRST, IP, IP6_FRAG_FIRST.length - IP, ip6Ext)).toBe(IP + IPV6_HLEN + 8);
    expect(ip6Ext).toEqual({
      proto: IPPROTO_ICMPV6,
      end: 1510,
      fragHdr: IP + IPV6_HLEN,
      fragOffset: 0,
      fragMore: true,
      fragId: 0x85ddee6a,
    });
    expect(ipv6Upper(IP6_FRAG_LAST, IP, IP6_FRAG_LAST.length - IP, ip6Ext)).toBe(IP + IPV6_HLEN + 8);
    expect(ip6Ext).toEqual({
      proto: IPPROTO_ICMPV6,
      end: 622,
      fragHdr: IP + IPV6_HLEN,
      fragOffset: 1448,
      fragMore: false,
      fragId: 0x85ddee6a,
    });
  });

  test("a chain of every kind", () => {
    const b = withExt([
      [IPPROTO_HOPOPTS, 8],
      [IPPROTO_DSTOPTS, 16],
      [IPPROTO_ROUTING, 24],
      [IPPROTO_FRAGMENT, 8],
      [IPPROTO_DSTOPTS, 8],
    ]);
    expect(ipv6Upper(b, 0, b.length, ip6Ext)).toBe(IPV6_HLEN + 64);
    expect(ip6Ext.proto).toBe(IPPROTO_UDP);
    expect(ip6Ext.fragHdr).toBe(IPV6_HLEN + 48);
  });

  test("a non-first fragment stops at the fragment header", () => {
    const b = withExt([
      [IPPROTO_FRAGMENT, 8],
      [IPPROTO_DSTOPTS, 8],
    ]);
    b[IPV6_HLEN + 3] = 0x09;
    expect(ipv6Upper(b, 0, b.length, ip6Ext)).toBe(IPV6_HLEN + 8);
    expect(ip6Ext.proto).toBe(IPPROTO_DSTOPTS);
    expect([ip6Ext.fragOffset, ip6Ext.fragMore]).toEqual([8, true]);
  });

  test("bounded chain length", () => {
    const ok = withExt(Array.from({ length: IP6_MAX_EXT }, () => [IPPROTO_DSTOPTS, 8] as [number, number]));
    expect(ipv6Upper(ok, 0, ok.length, ip6Ext)).toBe(IPV6_HLEN + 8 * IP6_MAX_EXT);
    const long = withExt(Array.from({ length: IP6_MAX_EXT + 1 }, () => [IPPROTO_DSTOPTS, 8] as [number, number]));
    expect(ipv6Upper(long, 0, long.length, ip6Ext)).toBe(-1);
  });

  test("malformed chains", () => {
    const twoFrags = withExt([
      [IPPROTO_FRAGMENT, 8],
      [IPPROTO_FRAGMENT, 8],
    ]);
    expect(ipv6Upper(twoFrags, 0, twoFrags.length, ip6Ext)).toBe(-1);
    const past = withExt([[IPPROTO_DSTOPTS, 8]]);
    past[IPV6_HLEN + 1] = 2;
    expect(ipv6Upper(past, 0, past.length, ip6Ext)).toBe(-1);
    const cut = withExt([[IPPROTO_HOPOPTS, 8]]);
    cut[5] = 4;
    expect(ipv6Upper(cut, 0, cut.length, ip6Ext)).toBe(-1);
    expect(ip6Ext.proto).toBe(-1);
  });

  test("no next header ends the walk", () => {
    const b = withExt([[IPPROTO_DSTOPTS, 8]], IPPROTO_NONE);
    expect(ipv6Upper(b, 0, b.length, ip6Ext)).toBe(IPV6_HLEN + 8);
    expect(ip6Ext.proto).toBe(IPPROTO_NONE);
  });
});
