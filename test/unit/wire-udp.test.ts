import { describe, expect, test } from "bun:test";
import { parseIp4, parseIp6, parseMac } from "../../src/conf/config.ts";
import { copyBytes } from "../../src/wire/bytes.ts";
import { ETH_HLEN, ETH_P_IP, ETH_P_IPV6, writeEth } from "../../src/wire/eth.ts";
import { IPPROTO_UDP, IPV4_HLEN, ipv4SetChecksum, ipv4SetId, writeIpv4 } from "../../src/wire/ipv4.ts";
import { IPV6_HLEN, ipv6SetFlowLabel, writeIpv6 } from "../../src/wire/ipv6.ts";
import {
  UDP_HLEN,
  udpCheck,
  udpChecksumOk4,
  udpChecksumOk6,
  udpCsum,
  udpDstPort,
  udpLen,
  udpSetChecksum4,
  udpSetChecksum6,
  udpSetDstPort,
  udpSetSrcPort,
  udpSrcPort,
  writeUdp,
} from "../../src/wire/udp.ts";
import { UDP4, UDP6, toHex } from "./wire-fixtures.ts";

const MAC_A = parseMac("02:77:00:00:00:01");
const MAC_B = parseMac("02:77:00:00:00:02");
const IP = ETH_HLEN;
const L4_4 = ETH_HLEN + IPV4_HLEN;
const L4_6 = ETH_HLEN + IPV6_HLEN;

describe("UDP", () => {
  test("reads captured datagrams over IPv4 and IPv6", () => {
    expect(udpCheck(UDP4, L4_4, UDP4.length - L4_4)).toBe(UDP_HLEN);
    expect(udpSrcPort(UDP4, L4_4)).toBe(43552);
    expect(udpDstPort(UDP4, L4_4)).toBe(5353);
    expect(udpLen(UDP4, L4_4)).toBe(14);
    expect(udpChecksumOk4(UDP4, IP, L4_4)).toBe(true);
    expect(udpCheck(UDP6, L4_6, UDP6.length - L4_6)).toBe(UDP_HLEN);
    expect(udpSrcPort(UDP6, L4_6)).toBe(37085);
    expect(udpDstPort(UDP6, L4_6)).toBe(5354);
    expect(udpLen(UDP6, L4_6)).toBe(15);
    expect(udpChecksumOk6(UDP6, IP, L4_6)).toBe(true);
  });

  test("length field must fit the IP payload and cover the header", () => {
    expect(udpCheck(UDP4, L4_4, 13)).toBe(-1);
    expect(udpCheck(UDP4, L4_4, 7)).toBe(-1);
    const b = UDP4.slice();
    b[L4_4 + 5] = 7;
    expect(udpCheck(b, L4_4, 14)).toBe(-1);
  });

  test("zero checksum: absent over IPv4, invalid over IPv6", () => {
    const b4 = UDP4.slice();
    b4[L4_4 + 6] = 0;
    b4[L4_4 + 7] = 0;
    expect(udpChecksumOk4(b4, IP, L4_4)).toBe(true);
    const b6 = UDP6.slice();
    b6[L4_6 + 6] = 0;
    b6[L4_6 + 7] = 0;
    expect(udpChecksumOk6(b6, IP, L4_6)).toBe(false);
  });

  test("builders reproduce the captured IPv4 datagram", () => {
    const b = new Uint8Array(UDP4.length);
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IP);
    writeIpv4(b, IP, parseIp4("10.77.0.1"), parseIp4("10.77.0.2"), IPPROTO_UDP, UDP_HLEN + 6, 64);
    ipv4SetId(b, IP, 27930);
    ipv4SetChecksum(b, IP);
    const p = writeUdp(b, L4_4, 43552, 5353, 6);
    b.set(new TextEncoder().encode("hello\n"), p);
    udpSetChecksum4(b, IP, L4_4);
    expect(toHex(b)).toBe(toHex(UDP4));
  });

  test("builders reproduce the captured IPv6 datagram (odd length)", () => {
    const b = new Uint8Array(UDP6.length);
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IPV6);
    writeIpv6(b, IP, parseIp6("fd77::77:ff:fe00:1"), parseIp6("fd77::2"), IPPROTO_UDP, 15, 64);
    ipv6SetFlowLabel(b, IP, 0x36452);
    const p = writeUdp(b, L4_6, 1, 2, 7);
    udpSetSrcPort(b, L4_6, 37085);
    udpSetDstPort(b, L4_6, 5354);
    copyBytes(b, p, UDP6, p, 7);
    udpSetChecksum6(b, IP, L4_6);
    expect(toHex(b)).toBe(toHex(UDP6));
  });

  test("a computed checksum of zero goes out as 0xffff", () => {
    const b = new Uint8Array(IPV4_HLEN + UDP_HLEN + 2);
    writeIpv4(b, 0, 0, 0, IPPROTO_UDP, UDP_HLEN + 2, 0);
    writeUdp(b, IPV4_HLEN, 0, 0, 2);
    udpSetChecksum4(b, 0, IPV4_HLEN);
    const c = udpCsum(b, IPV4_HLEN);
    b[IPV4_HLEN + 8] = c >> 8;
    b[IPV4_HLEN + 9] = c & 0xff;
    udpSetChecksum4(b, 0, IPV4_HLEN);
    expect(udpCsum(b, IPV4_HLEN)).toBe(0xffff);
    expect(udpChecksumOk4(b, 0, IPV4_HLEN)).toBe(true);
  });
});
