import { describe, expect, test } from "bun:test";
import { parseIp4, parseIp6, parseMac } from "../../src/conf/config.ts";
import { ETH_HLEN, ETH_P_IP, ETH_P_IPV6, writeEth } from "../../src/wire/eth.ts";
import { IPPROTO_TCP, IPV4_HLEN, ipv4SetChecksum, ipv4SetId, writeIpv4 } from "../../src/wire/ipv4.ts";
import { IPV6_HLEN, ipv6SetFlowLabel, writeIpv6 } from "../../src/wire/ipv6.ts";
import {
  TCP_ACK_FLAG,
  TCP_FIN,
  TCP_HLEN,
  TCP_PSH,
  TCP_SYN,
  TcpOptions,
  seqAdd,
  seqDiff,
  seqLe,
  seqLt,
  tcpAck,
  tcpCheck,
  tcpChecksumOk4,
  tcpChecksumOk6,
  tcpDstPort,
  tcpFlags,
  tcpHlen,
  tcpParseOptions,
  tcpSeq,
  tcpSetAck,
  tcpSetChecksum4,
  tcpSetChecksum6,
  tcpSetDstPort,
  tcpSetFlags,
  tcpSetSeq,
  tcpSetSrcPort,
  tcpSetWindow,
  tcpSrcPort,
  tcpUrgPtr,
  tcpWindow,
  writeTcp,
  writeTcpOptMss,
  writeTcpOptSackPerm,
  writeTcpOptSackPermTs,
  writeTcpOptTs,
  writeTcpOptWscale,
} from "../../src/wire/tcp.ts";
import { TCP4_ACK, TCP4_DATA, TCP4_SYN, TCP4_SYNACK, TCP6_SYN, toHex } from "./wire-fixtures.ts";

const MAC_A = parseMac("02:77:00:00:00:01");
const MAC_B = parseMac("02:77:00:00:00:02");
const IP = ETH_HLEN;
const L4_4 = ETH_HLEN + IPV4_HLEN;
const L4_6 = ETH_HLEN + IPV6_HLEN;
const opts = new TcpOptions();

describe("TCP header", () => {
  test("reads the captured SYN", () => {
    const len = TCP4_SYN.length - L4_4;
    expect(tcpCheck(TCP4_SYN, L4_4, len)).toBe(40);
    expect(tcpSrcPort(TCP4_SYN, L4_4)).toBe(37790);
    expect(tcpDstPort(TCP4_SYN, L4_4)).toBe(8080);
    expect(tcpSeq(TCP4_SYN, L4_4)).toBe(2213162613);
    expect(tcpAck(TCP4_SYN, L4_4)).toBe(0);
    expect(tcpHlen(TCP4_SYN, L4_4)).toBe(40);
    expect(tcpFlags(TCP4_SYN, L4_4)).toBe(TCP_SYN);
    expect(tcpWindow(TCP4_SYN, L4_4)).toBe(64240);
    expect(tcpUrgPtr(TCP4_SYN, L4_4)).toBe(0);
    expect(tcpChecksumOk4(TCP4_SYN, IP, L4_4, len)).toBe(true);
  });

  test("reads the SYN-ACK (sequence numbers above 2^31) and a data segment", () => {
    expect(tcpSeq(TCP4_SYNACK, L4_4)).toBe(1360508686);
    expect(tcpAck(TCP4_SYNACK, L4_4)).toBe(2213162614);
    expect(tcpFlags(TCP4_SYNACK, L4_4)).toBe(TCP_SYN | TCP_ACK_FLAG);
    const len = TCP4_DATA.length - L4_4;
    const h = tcpCheck(TCP4_DATA, L4_4, len);
    expect(h).toBe(32);
    expect(len - h).toBe(6);
    expect(tcpFlags(TCP4_DATA, L4_4)).toBe(TCP_PSH | TCP_ACK_FLAG);
    expect(tcpChecksumOk4(TCP4_DATA, IP, L4_4, len)).toBe(true);
    expect(tcpChecksumOk6(TCP6_SYN, IP, L4_6, 40)).toBe(true);
  });

  test("rejects data offsets below 5 or past the segment", () => {
    const b = TCP4_SYN.slice();
    b[L4_4 + 12] = 0x40;
    expect(tcpCheck(b, L4_4, 40)).toBe(-1);
    b[L4_4 + 12] = 0xb0;
    expect(tcpCheck(b, L4_4, 40)).toBe(-1);
    expect(tcpCheck(TCP4_SYN, L4_4, 39)).toBe(-1);
    expect(tcpCheck(TCP4_SYN, L4_4, 19)).toBe(-1);
  });

  test("setters", () => {
    const b = TCP4_ACK.slice();
    tcpSetSeq(b, L4_4, 0xfffffff0);
    tcpSetAck(b, L4_4, 5);
    tcpSetFlags(b, L4_4, TCP_FIN | TCP_ACK_FLAG);
    tcpSetWindow(b, L4_4, 1234);
    tcpSetSrcPort(b, L4_4, 1);
    tcpSetDstPort(b, L4_4, 2);
    expect([tcpSeq(b, L4_4), tcpAck(b, L4_4), tcpFlags(b, L4_4), tcpWindow(b, L4_4)]).toEqual([0xfffffff0, 5, 0x11, 1234]);
    expect([tcpSrcPort(b, L4_4), tcpDstPort(b, L4_4)]).toEqual([1, 2]);
    expect(tcpChecksumOk4(b, IP, L4_4, 32)).toBe(false);
    tcpSetChecksum4(b, IP, L4_4, 32);
    expect(tcpChecksumOk4(b, IP, L4_4, 32)).toBe(true);
  });
});

describe("TCP options", () => {
  test("SYN over IPv4: mss, sackOK, timestamps, nop, wscale", () => {
    expect(tcpParseOptions(TCP4_SYN, L4_4, 40, opts)).toBe(true);
    expect({ ...opts }).toEqual({ mss: 1460, wscale: 10, sackOk: true, hasTs: true, tsVal: 643475477, tsEcr: 0 });
  });

  test("SYN over IPv6 with a timestamp above 2^31", () => {
    expect(tcpParseOptions(TCP6_SYN, L4_6, 40, opts)).toBe(true);
    expect({ ...opts }).toEqual({ mss: 1440, wscale: 10, sackOk: true, hasTs: true, tsVal: 2381610469, tsEcr: 0 });
  });

  test("ACK: nop, nop, timestamps only", () => {
    expect(tcpParseOptions(TCP4_ACK, L4_4, 32, opts)).toBe(true);
    expect({ ...opts }).toEqual({ mss: -1, wscale: -1, sackOk: false, hasTs: true, tsVal: 643475477, tsEcr: 254691156 });
    expect(tcpParseOptions(TCP4_ACK, L4_4, TCP_HLEN, opts)).toBe(true);
    expect(opts.hasTs).toBe(false);
  });

  test("malformed: zero length, past the header; wrong sizes ignored; EOL stops; wscale clamped", () => {
    const b = new Uint8Array(40);
    b.set([2, 0], 20);
    expect(tcpParseOptions(b, 0, 40, opts)).toBe(false);
    b.set([1, 1, 1, 1, 1, 2, 4, 5], 20);
    expect(tcpParseOptions(b, 0, 28, opts)).toBe(false);
    b.set([2, 3, 5, 1, 3, 3, 20, 0, 2, 4, 1, 1], 20);
    expect(tcpParseOptions(b, 0, 32, opts)).toBe(true);
    expect([opts.mss, opts.wscale]).toEqual([-1, 14]);
    b.set([1, 1, 1, 2], 36);
    expect(tcpParseOptions(b, 0, 40, opts)).toBe(true);
    expect(tcpParseOptions(b, 0, 16, opts)).toBe(false);
  });

  test("builders reproduce the captured IPv4 SYN", () => {
    const b = new Uint8Array(TCP4_SYN.length);
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IP);
    writeIpv4(b, IP, parseIp4("10.77.0.1"), parseIp4("10.77.0.2"), IPPROTO_TCP, 40, 64);
    ipv4SetId(b, IP, 0xa94f);
    ipv4SetChecksum(b, IP);
    let p = writeTcp(b, L4_4, 37790, 8080, 2213162613, 0, TCP_SYN, 64240, 20);
    p = writeTcpOptMss(b, p, 1460);
    p = writeTcpOptSackPermTs(b, p, 643475477, 0);
    p = writeTcpOptWscale(b, p, 10);
    expect(p).toBe(b.length);
    tcpSetChecksum4(b, IP, L4_4, 40);
    expect(toHex(b)).toBe(toHex(TCP4_SYN));
  });

  test("builders reproduce the captured IPv4 data segment", () => {
    const b = new Uint8Array(TCP4_DATA.length);
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IP);
    writeIpv4(b, IP, parseIp4("10.77.0.1"), parseIp4("10.77.0.2"), IPPROTO_TCP, 38, 64);
    ipv4SetId(b, IP, 0xa951);
    ipv4SetChecksum(b, IP);
    let p = writeTcp(b, L4_4, 37790, 8080, 2213162614, 1360508688, TCP_PSH | TCP_ACK_FLAG, 63, 12);
    p = writeTcpOptTs(b, p, 643475477, 254691156);
    b.set(new TextEncoder().encode("hello\n"), p);
    tcpSetChecksum4(b, IP, L4_4, 38);
    expect(toHex(b)).toBe(toHex(TCP4_DATA));
  });

  test("builders reproduce the captured IPv6 SYN", () => {
    const b = new Uint8Array(TCP6_SYN.length);
    writeEth(b, 0, MAC_B, MAC_A, ETH_P_IPV6);
    writeIpv6(b, IP, parseIp6("fd77::77:ff:fe00:1"), parseIp6("fd77::2"), IPPROTO_TCP, 40, 64);
    ipv6SetFlowLabel(b, IP, 0x6b9ef);
    let p = writeTcp(b, L4_6, 49422, 8081, 1345206163, 0, TCP_SYN, 64800, 20);
    p = writeTcpOptMss(b, p, 1440);
    p = writeTcpOptSackPermTs(b, p, 2381610469, 0);
    writeTcpOptWscale(b, p, 10);
    tcpSetChecksum6(b, IP, L4_6, 40);
    expect(toHex(b)).toBe(toHex(TCP6_SYN));
  });

  test("separate SACK-permitted block parses back", () => {
    const b = new Uint8Array(TCP_HLEN + 8);
    let p = writeTcp(b, 0, 1, 2, 3, 4, TCP_SYN, 5, 8);
    p = writeTcpOptSackPerm(b, p);
    writeTcpOptMss(b, p, 536);
    expect(tcpParseOptions(b, 0, tcpCheck(b, 0, b.length), opts)).toBe(true);
    expect([opts.sackOk, opts.mss, opts.hasTs]).toEqual([true, 536, false]);
  });
});

describe("sequence arithmetic", () => {
  test("wraps modulo 2^32", () => {
    expect(seqAdd(0xffffffff, 2)).toBe(1);
    expect(seqDiff(1, 0xffffffff)).toBe(2);
    expect(seqLt(0xfffffff0, 0x10)).toBe(true);
    expect(seqLt(0x10, 0xfffffff0)).toBe(false);
    expect(seqLe(5, 5)).toBe(true);
    expect(seqLt(5, 5)).toBe(false);
  });
});
