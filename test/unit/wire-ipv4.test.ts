import { describe, expect, test } from "bun:test";
import { parseIp4, parseMac } from "../../src/conf/config.ts";
import { ETH_HLEN, ETH_P_IP, writeEth } from "../../src/wire/eth.ts";
import {
  IP4_DF,
  IP4_MF,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_HLEN,
  ipv4Check,
  ipv4ChecksumOk,
  ipv4DontFrag,
  ipv4Dst,
  ipv4FragOffset,
  ipv4Hlen,
  ipv4Id,
  ipv4IsFragment,
  ipv4MoreFrags,
  ipv4Proto,
  ipv4SetChecksum,
  ipv4SetDst,
  ipv4SetFrag,
  ipv4SetId,
  ipv4SetSrc,
  ipv4SetTotLen,
  ipv4SetTtl,
  ipv4Src,
  ipv4Tos,
  ipv4TotLen,
  ipv4Ttl,
  writeIpv4,
} from "../../src/wire/ipv4.ts";
import { ARP_REQ_PADDED, ICMP4_ECHO_REPLY, IP4_FRAG_FIRST, IP4_FRAG_LAST, TCP4_SYNACK, UDP4, toHex } from "./wire-fixtures.ts";

const IP = ETH_HLEN;
const A = parseIp4("10.77.0.1");
const B = parseIp4("10.77.0.2");

describe("IPv4", () => {
  test("reads a captured UDP datagram's header", () => {
    expect(ipv4Check(UDP4, IP, UDP4.length - IP)).toBe(IPV4_HLEN);
    expect(ipv4Hlen(UDP4, IP)).toBe(20);
    expect(ipv4TotLen(UDP4, IP)).toBe(34);
    expect(ipv4Tos(UDP4, IP)).toBe(0);
    expect(ipv4Id(UDP4, IP)).toBe(27930);
    expect(ipv4Ttl(UDP4, IP)).toBe(64);
    expect(ipv4Proto(UDP4, IP)).toBe(IPPROTO_UDP);
    expect(ipv4Src(UDP4, IP)).toBe(A);
    expect(ipv4Dst(UDP4, IP)).toBe(0x0a4d0002);
    expect(ipv4DontFrag(UDP4, IP)).toBe(true);
    expect(ipv4IsFragment(UDP4, IP)).toBe(false);
    expect(ipv4ChecksumOk(UDP4, IP)).toBe(true);
  });

  test("reads fragment fields", () => {
    expect(ipv4Check(IP4_FRAG_FIRST, IP, IP4_FRAG_FIRST.length - IP)).toBe(20);
    expect(ipv4TotLen(IP4_FRAG_FIRST, IP)).toBe(1500);
    expect(ipv4MoreFrags(IP4_FRAG_FIRST, IP)).toBe(true);
    expect(ipv4FragOffset(IP4_FRAG_FIRST, IP)).toBe(0);
    expect(ipv4IsFragment(IP4_FRAG_FIRST, IP)).toBe(true);
    expect(ipv4Id(IP4_FRAG_LAST, IP)).toBe(26822);
    expect(ipv4MoreFrags(IP4_FRAG_LAST, IP)).toBe(false);
    expect(ipv4FragOffset(IP4_FRAG_LAST, IP)).toBe(1480);
    expect(ipv4IsFragment(IP4_FRAG_LAST, IP)).toBe(true);
    expect(ipv4DontFrag(IP4_FRAG_LAST, IP)).toBe(false);
  });

  test("rejects bad version, IHL and lengths", () => {
    const len = UDP4.length - IP;
    const mutations: Array<[string, (b: Uint8Array) => void]> = [
      [
        "version 6",
        (b) => {
          b[IP] = 0x65;
        },
      ],
      [
        "IHL 4",
        (b) => {
          b[IP] = 0x44;
        },
      ],
      [
        "IHL 15, past the total length",
        (b) => {
          b[IP] = 0x4f;
        },
      ],
      [
        "total length 0",
        (b) => {
          b[IP + 2] = 0;
          b[IP + 3] = 0;
        },
      ],
      [
        "total length 19",
        (b) => {
          b[IP + 3] = 19;
        },
      ],
      [
        "total length past the frame",
        (b) => {
          b[IP + 3] = 35;
        },
      ],
    ];
    for (const [what, mutate] of mutations) {
      const b = UDP4.slice();
      mutate(b);
      expect([what, ipv4Check(b, IP, len)]).toEqual([what, -1]);
    }
    expect(ipv4Check(UDP4, IP, 33)).toBe(-1);
    expect(ipv4Check(UDP4, IP, 19)).toBe(-1);
    expect(ipv4Check(UDP4, UDP4.length - 10, 20)).toBe(-1);
  });

  test("accepts Ethernet padding past the total length", () => {
    const b = new Uint8Array(60);
    b.set(UDP4);
    expect(ipv4Check(b, IP, 60 - IP)).toBe(20);
    expect(ipv4TotLen(b, IP)).toBe(34);
    expect(ipv4Check(ARP_REQ_PADDED, IP, 44)).toBe(-1);
  });

  test("writeIpv4 writes DF, id 0 and a correct checksum (the kernel's SYN-ACK)", () => {
    const b = new Uint8Array(IP + IPV4_HLEN);
    writeEth(b, 0, parseMac("02:77:00:00:00:01"), parseMac("02:77:00:00:00:02"), ETH_P_IP);
    expect(writeIpv4(b, IP, B, A, IPPROTO_TCP, 40, 64)).toBe(IP + IPV4_HLEN);
    expect(toHex(b)).toBe(toHex(TCP4_SYNACK.subarray(0, IP + IPV4_HLEN)));
  });

  test("setters reproduce a header with id and no DF (echo reply)", () => {
    const b = new Uint8Array(IP + IPV4_HLEN);
    b.set(ICMP4_ECHO_REPLY.subarray(0, IP));
    writeIpv4(b, IP, 1, 2, IPPROTO_ICMP, 0, 1);
    ipv4SetSrc(b, IP, B);
    ipv4SetDst(b, IP, A);
    ipv4SetTotLen(b, IP, 84);
    ipv4SetTtl(b, IP, 64);
    ipv4SetId(b, IP, 0x28bb);
    ipv4SetFrag(b, IP, 0);
    expect(ipv4ChecksumOk(b, IP)).toBe(false);
    ipv4SetChecksum(b, IP);
    expect(toHex(b)).toBe(toHex(ICMP4_ECHO_REPLY.subarray(0, IP + IPV4_HLEN)));
    ipv4SetFrag(b, IP, IP4_MF | IP4_DF | (1480 / 8));
    expect(ipv4FragOffset(b, IP)).toBe(1480);
  });
});
