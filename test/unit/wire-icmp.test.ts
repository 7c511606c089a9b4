import { describe, expect, test } from "bun:test";
import { parseIp4, parseIp6, parseMac } from "../../src/conf/config.ts";
import { copyBytes } from "../../src/wire/bytes.ts";
import { ETH_HLEN, ETH_P_IP, ETH_P_IPV6, writeEth } from "../../src/wire/eth.ts";
import {
  ICMP_ECHO,
  ICMP_ECHOREPLY,
  ICMP_HLEN,
  icmpCheck,
  icmpChecksumOk,
  icmpCode,
  icmpId,
  icmpRest,
  icmpSeq,
  icmpSetChecksum,
  icmpSetId,
  icmpType,
  writeIcmp,
  writeIcmpEcho,
} from "../../src/wire/icmp.ts";
import {
  ICMP6_DST_UNREACH,
  ICMP6_ECHO_REQUEST,
  ICMP6_HLEN,
  ND_NA_OVERRIDE,
  ND_NA_SOLICITED,
  ND_NEIGHBOR_ADVERT,
  ND_NEIGHBOR_SOLICIT,
  ND_OPT_LEN,
  ND_OPT_LLADDR,
  ND_OPT_MTU,
  ND_OPT_MTU_VALUE,
  ND_OPT_PI_AUTO,
  ND_OPT_PI_ONLINK,
  ND_OPT_PI_PREFIX_LEN,
  ND_OPT_PREFIX_INFO,
  ND_OPT_RDNSS,
  ND_OPT_SOURCE_LLADDR,
  ND_OPT_TARGET_LLADDR,
  ND_RA_LEN,
  ND_RA_LIFETIME,
  ND_REDIRECT,
  ND_ROUTER_ADVERT,
  ND_ROUTER_SOLICIT,
  ND_TARGET,
  icmp6Check,
  icmp6ChecksumOk,
  icmp6Code,
  icmp6Id,
  icmp6Seq,
  icmp6SetChecksum,
  icmp6SetId,
  icmp6Type,
  ndpOptFind,
  ndpOptStart,
  ndpOptsValid,
  writeIcmp6,
  writeIcmp6Echo,
  writeNdpLla,
  writeNdpMtu,
  writeNdpPrefix,
  writeNdpRdnssHdr,
} from "../../src/wire/icmpv6.ts";
import { IPPROTO_ICMP, IPV4_HLEN, ipv4SetChecksum, ipv4SetId, writeIpv4 } from "../../src/wire/ipv4.ts";
import {
  IP6_DST,
  IP6_SRC,
  IPPROTO_ICMPV6,
  IPV6_HLEN,
  ip6Copy,
  ip6Equal,
  ipv6SetFlowLabel,
  writeIpv6,
  writeIpv6At,
} from "../../src/wire/ipv6.ts";
import { rd16, rd32 } from "../../src/wire/bytes.ts";
import { ICMP4_ECHO_REQ, ICMP6_ECHO_REQ, ICMP6_PORT_UNREACH, NA, NS, NS_DAD, RA, RS, UDP6, toHex } from "./wire-fixtures.ts";

const MAC_A = parseMac("02:77:00:00:00:01");
const MAC_B = parseMac("02:77:00:00:00:02");
const IP = ETH_HLEN;
const L4_4 = ETH_HLEN + IPV4_HLEN;
const L4_6 = ETH_HLEN + IPV6_HLEN;

describe("ICMPv4", () => {
  test("reads a captured echo request", () => {
    const len = ICMP4_ECHO_REQ.length - L4_4;
    expect(icmpCheck(ICMP4_ECHO_REQ, L4_4, len)).toBe(ICMP_HLEN);
    expect(icmpType(ICMP4_ECHO_REQ, L4_4)).toBe(ICMP_ECHO);
    expect(icmpCode(ICMP4_ECHO_REQ, L4_4)).toBe(0);
    expect(icmpId(ICMP4_ECHO_REQ, L4_4)).toBe(0x123a);
    expect(icmpSeq(ICMP4_ECHO_REQ, L4_4)).toBe(1);
    expect(icmpRest(ICMP4_ECHO_REQ, L4_4)).toBe(0x123a0001);
    expect(icmpChecksumOk(ICMP4_ECHO_REQ, L4_4, len)).toBe(true);
    expect(icmpCheck(ICMP4_ECHO_REQ, L4_4, 7)).toBe(-1);
  });

  test("builders reproduce the captured echo request", () => {
    const b = new Uint8Array(ICMP4_ECHO_REQ.length);
    const len = b.length - L4_4;
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IP);
    writeIpv4(b, IP, parseIp4("10.77.0.1"), parseIp4("10.77.0.2"), IPPROTO_ICMP, len, 64);
    ipv4SetId(b, IP, 0x6840);
    ipv4SetChecksum(b, IP);
    const p = writeIcmpEcho(b, L4_4, ICMP_ECHO, 0x123a, 1);
    copyBytes(b, p, ICMP4_ECHO_REQ, p, b.length - p);
    icmpSetChecksum(b, L4_4, len);
    expect(toHex(b)).toBe(toHex(ICMP4_ECHO_REQ));
    writeIcmp(b, L4_4, ICMP_ECHO, 0, 0x123a0001);
    icmpSetChecksum(b, L4_4, len);
    expect(toHex(b)).toBe(toHex(ICMP4_ECHO_REQ));
  });

  test("rewriting the id keeps a valid checksum once reset", () => {
    const b = ICMP4_ECHO_REQ.slice();
    const len = b.length - L4_4;
    icmpSetId(b, L4_4, 0x4242);
    b[L4_4] = ICMP_ECHOREPLY;
    expect(icmpChecksumOk(b, L4_4, len)).toBe(false);
    icmpSetChecksum(b, L4_4, len);
    expect(icmpChecksumOk(b, L4_4, len)).toBe(true);
  });
});

describe("ICMPv6", () => {
  test("reads a captured echo request and rebuilds it", () => {
    const len = ICMP6_ECHO_REQ.length - L4_6;
    expect(icmp6Check(ICMP6_ECHO_REQ, L4_6, len)).toBe(ICMP6_HLEN);
    expect(icmp6Type(ICMP6_ECHO_REQ, L4_6)).toBe(ICMP6_ECHO_REQUEST);
    expect(icmp6Code(ICMP6_ECHO_REQ, L4_6)).toBe(0);
    expect(icmp6Id(ICMP6_ECHO_REQ, L4_6)).toBe(0x1243);
    expect(icmp6Seq(ICMP6_ECHO_REQ, L4_6)).toBe(1);
    expect(icmp6ChecksumOk(ICMP6_ECHO_REQ, IP, L4_6, len)).toBe(true);
    const b = new Uint8Array(ICMP6_ECHO_REQ.length);
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IPV6);
    writeIpv6(b, IP, parseIp6("fd77::77:ff:fe00:1"), parseIp6("fd77::2"), IPPROTO_ICMPV6, len, 64);
    ipv6SetFlowLabel(b, IP, 0xa53b1);
    const p = writeIcmp6Echo(b, L4_6, ICMP6_ECHO_REQUEST, 0x1243, 1);
    copyBytes(b, p, ICMP6_ECHO_REQ, p, b.length - p);
    icmp6SetChecksum(b, IP, L4_6, len);
    expect(toHex(b)).toBe(toHex(ICMP6_ECHO_REQ));
    icmp6SetId(b, L4_6, 7);
    expect(icmp6ChecksumOk(b, IP, L4_6, len)).toBe(false);
  });

  test("rebuilds a captured port unreachable quoting the offending datagram", () => {
    const quoted = UDP6.length - IP;
    const b = new Uint8Array(L4_6 + ICMP6_HLEN + quoted);
    writeEth(b, 0, MAC_A, MAC_B, ETH_P_IPV6);
    writeIpv6At(b, IP, UDP6, IP + IP6_DST, UDP6, IP + IP6_SRC, IPPROTO_ICMPV6, ICMP6_HLEN + quoted, 64);
    ipv6SetFlowLabel(b, IP, 0x61bf9);
    const p = writeIcmp6(b, L4_6, ICMP6_DST_UNREACH, 4, 0);
    copyBytes(b, p, UDP6, IP, quoted);
    icmp6SetChecksum(b, IP, L4_6, ICMP6_HLEN + quoted);
    expect(toHex(b)).toBe(toHex(ICMP6_PORT_UNREACH));
  });
});

describe("NDP", () => {
  test("option starts per message type", () => {
    expect(ndpOptStart(ND_ROUTER_SOLICIT)).toBe(8);
    expect(ndpOptStart(ND_ROUTER_ADVERT)).toBe(16);
    expect(ndpOptStart(ND_NEIGHBOR_SOLICIT)).toBe(24);
    expect(ndpOptStart(ND_NEIGHBOR_ADVERT)).toBe(24);
    expect(ndpOptStart(ND_REDIRECT)).toBe(40);
    expect(ndpOptStart(ICMP6_ECHO_REQUEST)).toBe(-1);
  });

  test("finds options in captured RS, NS and DAD NS", () => {
    const rsOpt = ndpOptFind(RS, L4_6 + 8, RS.length, ND_OPT_SOURCE_LLADDR);
    expect(rsOpt).toBe(L4_6 + 8);
    expect(RS.subarray(rsOpt + ND_OPT_LLADDR, rsOpt + ND_OPT_LLADDR + 6)).toEqual(MAC_A);
    expect(ip6Equal(NS, L4_6 + ND_TARGET, parseIp6("fd77::2"))).toBe(true);
    expect(ndpOptFind(NS, L4_6 + 24, NS.length, ND_OPT_SOURCE_LLADDR)).toBe(L4_6 + 24);
    expect(ndpOptFind(NS, L4_6 + 24, NS.length, ND_OPT_TARGET_LLADDR)).toBe(-1);
    expect(ndpOptsValid(NS_DAD, L4_6 + 24, NS_DAD.length)).toBe(true);
    expect(ndpOptFind(NS_DAD, L4_6 + 24, NS_DAD.length, ND_OPT_SOURCE_LLADDR)).toBe(-1);
    expect(ndpOptFind(NS_DAD, L4_6 + 24, NS_DAD.length, 14)).toBe(L4_6 + 24);
  });

  test("reads the captured router advertisement", () => {
    const o = L4_6;
    expect(icmp6ChecksumOk(RA, IP, o, RA.length - o)).toBe(true);
    expect(rd16(RA, o + ND_RA_LIFETIME)).toBe(12);
    const end = RA.length;
    expect(ndpOptsValid(RA, o + ND_RA_LEN, end)).toBe(true);
    const pi = ndpOptFind(RA, o + ND_RA_LEN, end, ND_OPT_PREFIX_INFO);
    expect(RA[pi + ND_OPT_PI_PREFIX_LEN]).toBe(64);
    const mtu = ndpOptFind(RA, o + ND_RA_LEN, end, ND_OPT_MTU);
    expect(rd32(RA, mtu + ND_OPT_MTU_VALUE)).toBe(1500);
    const rdnss = ndpOptFind(RA, o + ND_RA_LEN, end, ND_OPT_RDNSS);
    expect(RA[rdnss + ND_OPT_LEN]).toBe(3);
  });

  test("malformed options: zero length, past the end", () => {
    const b = RS.slice();
    b[L4_6 + 8 + ND_OPT_LEN] = 0;
    expect(ndpOptsValid(b, L4_6 + 8, b.length)).toBe(false);
    expect(ndpOptFind(b, L4_6 + 8, b.length, ND_OPT_SOURCE_LLADDR)).toBe(-1);
    b[L4_6 + 8 + ND_OPT_LEN] = 2;
    expect(ndpOptsValid(b, L4_6 + 8, b.length)).toBe(false);
    expect(ndpOptsValid(b, L4_6 + 8, b.length + 8)).toBe(false);
    expect(ndpOptsValid(RS, L4_6 + 8, RS.length - 1)).toBe(false);
  });

  test("builders reproduce the captured neighbour advertisement", () => {
    const b = new Uint8Array(NA.length);
    writeEth(b, 0, MAC_A, MAC_B, ETH_P_IPV6);
    writeIpv6At(b, IP, NS, L4_6 + ND_TARGET, NS, IP + IP6_SRC, IPPROTO_ICMPV6, 32, 255);
    writeIcmp6(b, L4_6, ND_NEIGHBOR_ADVERT, 0, ((ND_NA_SOLICITED | ND_NA_OVERRIDE) << 24) >>> 0);
    ip6Copy(b, L4_6 + ND_TARGET, NS, L4_6 + ND_TARGET);
    writeNdpLla(b, L4_6 + 24, ND_OPT_TARGET_LLADDR, MAC_B);
    icmp6SetChecksum(b, IP, L4_6, 32);
    expect(toHex(b)).toBe(toHex(NA));
  });

  test("builders reproduce the captured router advertisement", () => {
    const b = new Uint8Array(RA.length);
    const len = RA.length - L4_6;
    writeEth(b, 0, parseMac("33:33:00:00:00:01"), MAC_B, ETH_P_IPV6);
    writeIpv6(b, IP, parseIp6("fe80::77:ff:fe00:2"), parseIp6("ff02::1"), IPPROTO_ICMPV6, len, 255);
    ipv6SetFlowLabel(b, IP, 0x9037e);
    writeIcmp6(b, L4_6, ND_ROUTER_ADVERT, 0, (64 << 24) | 12);
    b.fill(0, L4_6 + 8, L4_6 + ND_RA_LEN);
    let p = writeNdpPrefix(b, L4_6 + ND_RA_LEN, parseIp6("fd77::"), 0, 64, ND_OPT_PI_ONLINK | ND_OPT_PI_AUTO, 86400, 14400);
    p = writeNdpRdnssHdr(b, p, 1, 4);
    ip6Copy(b, p, parseIp6("fd77::2"), 0);
    p = writeNdpMtu(b, p + 16, 1500);
    p = writeNdpLla(b, p, ND_OPT_SOURCE_LLADDR, MAC_B);
    expect(p).toBe(RA.length);
    icmp6SetChecksum(b, IP, L4_6, len);
    expect(toHex(b)).toBe(toHex(RA));
  });
});
