import { describe, expect, test } from "bun:test";
import { parseIp4, parseMac } from "../../src/conf/config.ts";
import { ARP_LEN, ARPOP_REPLY, ARPOP_REQUEST, arpCheck, arpOp, arpSpa, arpTpa, writeArp } from "../../src/wire/arp.ts";
import {
  ETH_HLEN,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  ETH_SRC,
  ethCheck,
  ethCopySrc,
  ethDstIs,
  ethDstIsGroup,
  ethSetDst,
  ethSetSrc,
  ethType,
  macIsUnicast,
  writeEth,
} from "../../src/wire/eth.ts";
import { ARP_GRATUITOUS, ARP_REPLY, ARP_REQ, ARP_REQ_PADDED, NS, TCP4_SYN, toHex } from "./wire-fixtures.ts";

const MAC_A = parseMac("02:77:00:00:00:01");
const MAC_B = parseMac("02:77:00:00:00:02");

describe("Ethernet", () => {
  test("reads captured headers", () => {
    expect(ethCheck(ARP_REQ, 0, ARP_REQ.length)).toBe(ETH_HLEN);
    expect(ethType(ARP_REQ, 0)).toBe(ETH_P_ARP);
    expect(ethType(TCP4_SYN, 0)).toBe(ETH_P_IP);
    expect(ethType(NS, 0)).toBe(ETH_P_IPV6);
    expect(ethDstIsGroup(ARP_REQ, 0)).toBe(true);
    expect(ethDstIsGroup(NS, 0)).toBe(true);
    expect(ethDstIsGroup(ARP_REPLY, 0)).toBe(false);
    expect(ethDstIs(ARP_REPLY, 0, MAC_A)).toBe(true);
    const m = new Uint8Array(6);
    ethCopySrc(ARP_REPLY, 0, m);
    expect(toHex(m)).toBe(toHex(MAC_B));
    expect(macIsUnicast(ARP_REPLY, ETH_SRC)).toBe(true);
    expect(macIsUnicast(ARP_REQ, 0)).toBe(false);
    expect(macIsUnicast(new Uint8Array(6), 0)).toBe(false);
  });

  test("address setters rewrite a captured header in place", () => {
    const b = ARP_REPLY.slice();
    ethSetDst(b, 0, MAC_B);
    ethSetSrc(b, 0, MAC_A);
    expect(ethDstIs(b, 0, MAC_B)).toBe(true);
    expect(toHex(b.subarray(6, 12))).toBe(toHex(MAC_A));
  });

  test("rejects short or out-of-buffer frames", () => {
    expect(ethCheck(ARP_REQ, 0, 13)).toBe(-1);
    expect(ethCheck(ARP_REQ, 30, 14)).toBe(-1);
    expect(ethCheck(ARP_REQ, -1, 20)).toBe(-1);
    expect(ethCheck(ARP_REQ, 0, ARP_REQ.length + 1)).toBe(-1);
  });
});

describe("ARP", () => {
  test("parses the kernel's request and reply", () => {
    expect(arpCheck(ARP_REQ, ETH_HLEN, ARP_REQ.length - ETH_HLEN)).toBe(ARP_LEN);
    expect(arpOp(ARP_REQ, ETH_HLEN)).toBe(ARPOP_REQUEST);
    expect(arpSpa(ARP_REQ, ETH_HLEN)).toBe(parseIp4("10.77.0.1"));
    expect(arpTpa(ARP_REQ, ETH_HLEN)).toBe(0x0a4d0002);
    expect(arpOp(ARP_REPLY, ETH_HLEN)).toBe(ARPOP_REPLY);
    expect(arpCheck(ARP_REQ_PADDED, ETH_HLEN, ARP_REQ_PADDED.length - ETH_HLEN)).toBe(ARP_LEN);
    expect(arpSpa(ARP_GRATUITOUS, ETH_HLEN)).toBe(arpTpa(ARP_GRATUITOUS, ETH_HLEN));
  });

  test("rejects truncated packets and foreign hardware or protocol types", () => {
    expect(arpCheck(ARP_REQ, ETH_HLEN, ARP_LEN - 1)).toBe(-1);
    for (const [at, v] of [
      [0, 6],
      [2, 0x86],
      [4, 8],
      [5, 16],
    ] as const) {
      const b = ARP_REQ.slice();
      b[ETH_HLEN + at] = v;
      expect(arpCheck(b, ETH_HLEN, ARP_LEN)).toBe(-1);
    }
  });

  test("builders reproduce the captured reply byte for byte", () => {
    const b = new Uint8Array(ARP_REPLY.length + 4);
    const p = writeEth(b, 2, MAC_A, MAC_B, ETH_P_ARP);
    expect(p).toBe(2 + ETH_HLEN);
    expect(writeArp(b, p, ARPOP_REPLY, MAC_B, parseIp4("10.77.0.2"), MAC_A, parseIp4("10.77.0.1"))).toBe(p + ARP_LEN);
    expect(toHex(b.subarray(2, 2 + ARP_REPLY.length))).toBe(toHex(ARP_REPLY));
  });
});
