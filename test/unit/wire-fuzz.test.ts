/**
 * Hostile input: random and mutated frames go through every check and parse
 * function behind a guard that throws on any read outside the frame's own
 * bytes (or any write to them). Nothing may throw, and every length a check
 * accepts must lie inside the frame.
 */
import { describe, expect, test } from "bun:test";
import { type Config, parseIp4, parseMac } from "../../src/conf/config.ts";
import { arpHandle } from "../../src/services/arp.ts";
import { arpCheck, arpOp, arpSpa, arpTpa } from "../../src/wire/arp.ts";
import { ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ethCheck, ethType } from "../../src/wire/eth.ts";
import { icmpCheck, icmpChecksumOk, icmpId } from "../../src/wire/icmp.ts";
import { icmp6Check, icmp6ChecksumOk, icmp6Type, ndpOptFind, ndpOptStart, ndpOptsValid } from "../../src/wire/icmpv6.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ipv4Check, ipv4ChecksumOk, ipv4Proto, ipv4TotLen } from "../../src/wire/ipv4.ts";
import { IPPROTO_ICMPV6, newIp6Ext, ipv6Check, ipv6Upper } from "../../src/wire/ipv6.ts";
import { TcpOptions, tcpCheck, tcpChecksumOk4, tcpChecksumOk6, tcpParseOptions, tcpSeq } from "../../src/wire/tcp.ts";
import { udpCheck, udpChecksumOk4, udpChecksumOk6, udpLen } from "../../src/wire/udp.ts";
import * as fx from "./wire-fixtures.ts";
import { Guest } from "../../src/services/guest.ts";
import { rng } from "../tools/rng.ts";

/** What ipv6Upper found, as the dispatcher keeps it: one record, reused. */
const ip6Ext = newIp6Ext();

const opts = new TcpOptions();

/** frame placed at `pad` inside a larger buffer; reads outside it, or any write, throw. */
function guarded(frame: Uint8Array, pad: number): Uint8Array {
  const raw = new Uint8Array(pad + frame.length + pad).fill(0xee);
  raw.set(frame, pad);
  const lo = pad;
  const hi = pad + frame.length;
  return new Proxy(raw, {
    get(t, k) {
      if (typeof k === "string" && /^\d+$/.test(k)) {
        const i = Number(k);
        if (i < lo || i >= hi) throw new Error(`read at ${i} outside [${lo}, ${hi})`);
        return t[i];
      }
      const v = Reflect.get(t, k, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
    set() {
      throw new Error("write to the received frame");
    },
  });
}

/** Check and parse the L4 part (len bytes at o, IP header at ip) the way a dispatcher would. */
function walkL4(b: Uint8Array, ip: number, o: number, len: number, proto: number, v6: boolean): void {
  if (proto === IPPROTO_TCP) {
    const h = tcpCheck(b, o, len);
    if (h < 0) return;
    expect(h).toBeLessThanOrEqual(len);
    tcpSeq(b, o);
    tcpParseOptions(b, o, h, opts);
    if (v6) tcpChecksumOk6(b, ip, o, len);
    else tcpChecksumOk4(b, ip, o, len);
  } else if (proto === IPPROTO_UDP) {
    if (udpCheck(b, o, len) < 0) return;
    expect(udpLen(b, o)).toBeLessThanOrEqual(len);
    if (v6) udpChecksumOk6(b, ip, o);
    else udpChecksumOk4(b, ip, o);
  } else if (proto === IPPROTO_ICMP && !v6) {
    if (icmpCheck(b, o, len) < 0) return;
    icmpId(b, o);
    icmpChecksumOk(b, o, len);
  } else if (proto === IPPROTO_ICMPV6 && v6) {
    if (icmp6Check(b, o, len) < 0) return;
    icmp6ChecksumOk(b, ip, o, len);
    const s = ndpOptStart(icmp6Type(b, o));
    if (s < 0 || s > len) return;
    ndpOptsValid(b, o + s, o + len);
    ndpOptFind(b, o + s, o + len, 1);
  }
}

/** Walk one frame of len bytes at b[o] through every layer. */
function walk(b: Uint8Array, o: number, len: number): void {
  if (ethCheck(b, o, len) < 0) return;
  const p = o + ETH_HLEN;
  const l = len - ETH_HLEN;
  const type = ethType(b, o);
  if (type === ETH_P_ARP && arpCheck(b, p, l) >= 0) {
    arpOp(b, p) + arpSpa(b, p) + arpTpa(b, p);
  } else if (type === ETH_P_IP) {
    const h = ipv4Check(b, p, l);
    if (h < 0) return;
    const tot = ipv4TotLen(b, p);
    expect(tot).toBeLessThanOrEqual(l);
    ipv4ChecksumOk(b, p);
    walkL4(b, p, p + h, tot - h, ipv4Proto(b, p), false);
  } else if (type === ETH_P_IPV6) {
    ipv6Check(b, p, l);
    const u = ipv6Upper(b, p, l, ip6Ext);
    if (u < 0) return;
    expect(ip6Ext.end).toBeLessThanOrEqual(o + len);
    expect(u).toBeLessThanOrEqual(ip6Ext.end);
    if (ip6Ext.fragOffset === 0) walkL4(b, p, u, ip6Ext.end - u, ip6Ext.proto, true);
  }
}

const sink = {
  buf: new Uint8Array(128),
  maxAlloc: 128,
  frameRoom: 0,
  tsoMax: 0,
  csumOffload: false,
  alloc: () => 0,
  commit: () => {},
};
const cfg = {
  ourMac: parseMac("02:00:00:00:00:01"),
  ip4: { addr: parseIp4("10.0.0.2") },
} as unknown as Config;

/** Run a frame through everything, with its length, one short of it, and a tail. */
function hammer(frame: Uint8Array, pad: number): void {
  const b = guarded(frame, pad);
  walk(b, pad, frame.length);
  arpHandle(cfg, new Guest(), b, pad, frame.length, sink);
  if (frame.length > 0) walk(b, pad + 1, frame.length - 1);
}

const seeds = Object.values(fx).filter((v): v is Uint8Array => v instanceof Uint8Array);

describe("fuzz", () => {
  test("captured frames pass the walk untouched", () => {
    for (const f of seeds) hammer(f, 3);
  });

  test("mutated captured frames never throw or read out of bounds", () => {
    const r = rng(0x5eed);
    for (let i = 0; i < 4000; i++) {
      const src = seeds[r() % seeds.length]!;
      const f = src.slice(0, Math.min(src.length, 200 + (r() % 64)));
      const flips = 1 + (r() % 6);
      for (let k = 0; k < flips; k++) f[r() % f.length] = r() & 0xff;
      const cut = r() % 4 === 0 ? r() % (f.length + 1) : f.length;
      hammer(f.subarray(0, cut), r() % 5);
    }
  });

  test("truncation at every length", () => {
    for (const f of seeds) for (let n = 0; n <= Math.min(f.length, 120); n++) hammer(f.subarray(0, n), 1);
  });

  test("random bytes with plausible EtherTypes never throw", () => {
    const r = rng(42);
    const types = [ETH_P_IP, ETH_P_IPV6, ETH_P_ARP];
    for (let i = 0; i < 3000; i++) {
      const f = new Uint8Array(r() % 160);
      for (let k = 0; k < f.length; k++) f[k] = r() & 0xff;
      if (f.length >= 15) {
        const t = types[r() % 3]!;
        f[12] = t >> 8;
        f[13] = t & 0xff;
        f[14] = t === ETH_P_IP ? 0x45 : t === ETH_P_IPV6 ? 0x60 : f[14]!;
      }
      hammer(f, r() % 3);
    }
  });

  test("offsets and lengths outside the buffer are refused, not read", () => {
    const b = guarded(fx.TCP4_SYN, 0);
    for (const [o, len] of [
      [-1, 20],
      [0, 1e6],
      [70, 20],
      [1.5, 20],
      [0, -3],
      [NaN, 20],
    ] as const) {
      expect(ethCheck(b, o, len)).toBe(-1);
      expect(ipv4Check(b, o, len)).toBe(-1);
      expect(ipv6Check(b, o, len)).toBe(-1);
      expect(ipv6Upper(b, o, len, ip6Ext)).toBe(-1);
      expect(arpCheck(b, o, len)).toBe(-1);
      expect(tcpCheck(b, o, len)).toBe(-1);
      expect(udpCheck(b, o, len)).toBe(-1);
      expect(icmpCheck(b, o, len)).toBe(-1);
      expect(icmp6Check(b, o, len)).toBe(-1);
      if (o !== 0) expect(tcpParseOptions(b, o, 40, opts)).toBe(false);
    }
  });
});
