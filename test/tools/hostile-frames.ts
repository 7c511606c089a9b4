#!/usr/bin/env bun
/**
 * A hostile guest's frames, written through a raw socket (AF_PACKET) on an
 * interface of the namespace we run in: pasta's tap, or the tap a relay
 * hands to passt (test/tools/relay.ts). Seeded and reproducible: the same
 * seed gives the same frames.
 *
 *   nsenter -n -t GUESTPID -- bun test/tools/hostile-frames.ts --frames 100000 --seed 1 \
 *     --src4 192.0.2.2 --dst4 192.0.2.1,198.51.100.1 --src6 2001:db8::2 --dst6 2001:db8:1::1 \
 *     [--flow4 SPORT:DPORT] [--if eth0]
 *
 * Every frame belongs to one class (CLASSES below), and each class says what
 * a correct receiver must make of it: "malformed" (dropped and counted as
 * malformed: truncated or inconsistent headers, bad lengths, bad IHL or data
 * offset, extension header chains that run past the packet, SYN with FIN or
 * RST, ICMPv6 with a wrong checksum), "unhandled" (well formed, but of an
 * EtherType or protocol nobody serves), or "handled" (well formed frames a
 * receiver acts on: segments of no connection, answered with a reset; SYNs,
 * datagrams and echo requests to closed ports, with TCP options of every
 * length and zero windows; IPv4 and IPv6 fragments that overlap, never
 * finish or grow too big; segments of the live connection given by --flow4
 * with sequence and acknowledgment numbers far out of its window, zero
 * windows and flag soup, never RST). Destinations are the addresses given
 * (the test world's), ports below 1024 where nothing listens.
 *
 * --flow4 SPORT:DPORT names a connection from src4:SPORT to the first
 * dst4:DPORT, to be opened once the tool prints "sniffing": it reads
 * (bounded, 10 s) a frame of it each way to learn both sides' sequence
 * numbers, then aims the "live" class a quarter of the sequence space away
 * from anything the connection can reach (2^30 bytes off; transfers here
 * are at most 2^28).
 *
 * The sender paces itself on the interface's tx_dropped counter (the tap
 * drops what its reader has no room for): after each burst in which it
 * moved, the pause before the next burst doubles (up to PAUSE_MAX_MS), and
 * it halves after each burst without. Frames the interface dropped anyway
 * are reported, so that a test can account for every frame.
 *
 * Prints one JSON line: frames sent, per class and per expected fate, send
 * errors, the interface's tx_packets and tx_dropped moves, and what it learnt
 * of the live connection.
 */
import { readFileSync } from "node:fs";
import { sys } from "../../src/native/ffi.ts";
import { rd16, rd32, wr16, wr32 } from "../../src/wire/bytes.ts";
import { checksum, csum, csumFold } from "../../src/wire/checksum.ts";
import { rng } from "./rng.ts";

export type Fate = "malformed" | "unhandled" | "handled";

/** The classes of frames, with their share (per mille) and fate. */
export const CLASSES = {
  /** random bytes after an Ethernet header of an EtherType nobody serves */
  ethUnknown: { share: 40, fate: "unhandled" },
  /** ARP with a wrong hardware or protocol type, address lengths, or truncated */
  arpBad: { share: 20, fate: "malformed" },
  /** IPv4 headers: version, IHL below 5, IHL past the total length, total length past the frame or below the header */
  ip4Bad: { share: 90, fate: "malformed" },
  /** IPv4 of a protocol nobody serves */
  ip4Proto: { share: 20, fate: "unhandled" },
  /** UDP, TCP, ICMP headers truncated or with lengths past the packet, in sound IPv4 */
  l4Bad4: { share: 80, fate: "malformed" },
  /** TCP with SYN and FIN, or SYN and RST, both IP versions */
  tcpSoupBad: { share: 30, fate: "malformed" },
  /** IPv6: version, payload length past the frame, extension chains past the end or too long */
  ip6Bad: { share: 80, fate: "malformed" },
  /** IPv6 of a next header nobody serves (no next header, SCTP) */
  ip6Proto: { share: 20, fate: "unhandled" },
  /** UDP, TCP, ICMPv6 headers truncated or with lengths past the packet, ICMPv6 checksums wrong, in sound IPv6 */
  l6Bad: { share: 60, fate: "malformed" },
  /** sound TCP segments of no connection (any flags but SYN), options of every length, zero windows */
  tcpStray: { share: 170, fate: "handled" },
  /** SYNs to closed ports, options of every length (lengths too), zero windows */
  syn: { share: 20, fate: "handled" },
  /** UDP datagrams to closed ports */
  udp: { share: 20, fate: "handled" },
  /** ICMP and ICMPv6 echo requests */
  echo: { share: 10, fate: "handled" },
  /** IPv4 fragments: overlapping, never finished, past 64 KiB, tiny */
  frag4: { share: 70, fate: "handled" },
  /** IPv6 fragments, likewise */
  frag6: { share: 50, fate: "handled" },
  /** segments of the live connection (--flow4), far out of window; tcpStray without --flow4 */
  live: { share: 200, fate: "handled" },
} as const satisfies Record<string, { share: number; fate: Fate }>;

export type ClassName = keyof typeof CLASSES;

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const ETH_P_ARP = 0x0806;
const ETH_P_IPV6 = 0x86dd;
const IP4_HLEN = 20;
const IP6_HLEN = 40;
const TCP_HLEN = 20;
const UDP_HLEN = 8;
const FIN = 1;
const SYN = 2;
const RST = 4;
const PSH = 8;
const ACK = 16;
const URG = 32;
/** Largest frame we write: an Ethernet frame at MTU 1500 (the relay's tap may have no more). */
const MAX_FRAME = 1514;
/** Ports nothing listens on in the test world. */
const CLOSED_PORT_MAX = 1023;
/** Where live segments go: this far from the connection's sequence numbers, and a window of 2^31 wide. */
const FAR = 1 << 30;

export interface Targets {
  srcMac: Uint8Array;
  src4: number;
  dst4: number[];
  src6: Uint8Array | null;
  dst6: Uint8Array[];
  /** the live connection (IPv4, src4:sport → dst4[0]:dport) and its sequence numbers seen once */
  live: { sport: number; dport: number; seq: number; ack: number } | null;
}

/** IPv4 text to a host-order number. */
export function ip4(s: string): number {
  const p = s.split(".").map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** IPv6 text to 16 bytes. */
export function ip6(s: string): Uint8Array {
  const out = new Uint8Array(16);
  const [head, tail] = s.includes("::") ? s.split("::") : [s, ""];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  groups.forEach((g, i) => {
    wr16(out, 2 * i, parseInt(g || "0", 16));
  });
  return out;
}

/**
 * The frame maker: next() writes one frame into buf and returns its class
 * and length. No I/O: the same seed and targets give the same frames.
 */
export class HostileFrames {
  readonly buf = new Uint8Array(2048);
  private readonly rnd: () => number;
  private readonly wheel: ClassName[] = [];

  constructor(
    seed: number,
    private readonly t: Targets,
  ) {
    this.rnd = rng(seed);
    for (const [name, c] of Object.entries(CLASSES) as [ClassName, { share: number }][]) {
      for (let i = 0; i < c.share; i++) this.wheel.push(name === "live" && !t.live ? "tcpStray" : name);
    }
  }

  /** One frame: its class and length (bytes in this.buf). */
  next(): { cls: ClassName; len: number } {
    const cls = this.wheel[this.r(this.wheel.length)]!;
    return { cls, len: this.make(cls) };
  }

  private r(n: number): number {
    return this.rnd() % n;
  }

  private pick<T>(a: readonly T[]): T {
    return a[this.r(a.length)]!;
  }

  private make(cls: ClassName): number {
    switch (cls) {
      case "ethUnknown":
        return this.ethUnknown();
      case "arpBad":
        return this.arpBad();
      case "ip4Bad":
        return this.ip4Bad();
      case "ip4Proto":
        return this.ip4Payload(this.pick([0, 4, 41, 47, 50, 89, 132, 255]), this.r(200));
      case "l4Bad4":
        return this.l4Bad4();
      case "tcpSoupBad":
        return this.tcpSoupBad();
      case "ip6Bad":
        return this.ip6Bad();
      case "ip6Proto":
        return this.ip6Payload(this.pick([59, 132, 50, 253]), this.r(200));
      case "l6Bad":
        return this.l6Bad();
      case "tcpStray":
        return this.tcpStray();
      case "syn":
        return this.syn();
      case "udp":
        return this.udpClosed();
      case "echo":
        return this.echo();
      case "frag4":
        return this.frag4();
      case "frag6":
        return this.frag6();
      case "live":
        return this.live();
    }
  }

  // ------------------------------------------------------------ layer 2

  private eth(type: number): number {
    const b = this.buf;
    // destination: the peer's MAC is not needed (nobody filters on it); broadcast or random unicast
    if (this.r(2)) b.fill(0xff, 0, 6);
    else for (let i = 0; i < 6; i++) b[i] = this.rnd() & (i === 0 ? 0xfe : 0xff);
    b.set(this.t.srcMac, 6);
    wr16(b, 12, type);
    return ETH_HLEN;
  }

  private random(o: number, n: number): void {
    for (let i = 0; i < n; i++) this.buf[o + i] = this.rnd() & 255;
  }

  private ethUnknown(): number {
    let type: number;
    do type = this.pick([0x88cc, 0x8100, 0x88a8, 0x8863, 0x8864, 0x9000, 0x0600 + this.r(0xfa00)]);
    while (type === ETH_P_IP || type === ETH_P_IPV6 || type === ETH_P_ARP);
    const o = this.eth(type);
    const n = this.r(MAX_FRAME - o + 1);
    this.random(o, n);
    return o + n;
  }

  private arpBad(): number {
    const b = this.buf;
    const o = this.eth(ETH_P_ARP);
    wr16(b, o, 1);
    wr16(b, o + 2, ETH_P_IP);
    b[o + 4] = 6;
    b[o + 5] = 4;
    wr16(b, o + 6, 1);
    b.set(this.t.srcMac, o + 8);
    wr32(b, o + 14, this.t.src4);
    b.fill(0, o + 18, o + 24);
    wr32(b, o + 24, this.t.dst4[0]!);
    switch (this.r(5)) {
      case 0:
        wr16(b, o, 6 + this.r(100));
        break; // hardware type
      case 1:
        wr16(b, o + 2, ETH_P_IPV6);
        break; // protocol type
      case 2:
        b[o + 4] = this.pick([0, 4, 8, 16, 255]);
        break;
      case 3:
        b[o + 5] = this.pick([0, 6, 16, 255]);
        break;
      default:
        return o + this.r(28); // truncated
    }
    return o + 28;
  }

  // ------------------------------------------------------------ IPv4

  /** A sound IPv4 header at 14 (20 bytes, no options) for proto and payload length; returns the payload's offset. */
  private ip4(proto: number, payload: number, src = this.t.src4, dst = this.pick(this.t.dst4), frag = 0x4000): number {
    const b = this.buf;
    const o = this.eth(ETH_P_IP);
    b[o] = 0x45;
    b[o + 1] = 0;
    wr16(b, o + 2, IP4_HLEN + payload);
    wr16(b, o + 4, this.rnd() & 0xffff);
    wr16(b, o + 6, frag);
    b[o + 8] = 64;
    b[o + 9] = proto;
    wr16(b, o + 10, 0);
    wr32(b, o + 12, src);
    wr32(b, o + 16, dst);
    wr16(b, o + 10, checksum(b, o, IP4_HLEN));
    return o + IP4_HLEN;
  }

  private ip4Payload(proto: number, n: number): number {
    const p = this.ip4(proto, n);
    this.random(p, n);
    return p + n;
  }

  private ip4Bad(): number {
    const b = this.buf;
    const n = this.r(100);
    const end = this.ip4Payload(this.pick([6, 17, 1]), n);
    const o = ETH_HLEN;
    switch (this.r(6)) {
      case 0:
        b[o] = (this.pick([0, 5, 6, 15]) << 4) | 5;
        return end; // version
      case 1:
        b[o] = 0x40 | this.r(5);
        return end; // IHL below 5
      case 2: {
        // IHL past the total length
        const ihl = 6 + this.r(10);
        b[o] = 0x40 | ihl;
        wr16(b, o + 2, ihl * 4 - 4);
        return end;
      }
      case 3:
        wr16(b, o + 2, end - o + 1 + this.r(2000));
        return end; // total length past the frame
      case 4:
        wr16(b, o + 2, this.r(IP4_HLEN));
        return end; // total length below the header
      default:
        return o + this.r(IP4_HLEN); // truncated header
    }
  }

  private l4Bad4(): number {
    const proto = this.pick([6, 17, 1]);
    const hl = proto === 6 ? TCP_HLEN : UDP_HLEN;
    if (proto === 1 || this.r(2)) {
      // a header cut short: the IP total length says so too
      const n = this.r(hl);
      const p = this.ip4(proto, n);
      this.random(p, n);
      return p + n;
    }
    const n = hl + this.r(64);
    const p = this.ip4(proto, n);
    this.random(p, n);
    this.badL4Length(p, n, proto);
    return p + n;
  }

  /** A UDP length or TCP data offset that does not fit the n-byte segment at p. */
  private badL4Length(p: number, n: number, proto: number): void {
    const b = this.buf;
    if (proto === 17) {
      wr16(b, p + 4, this.r(2) ? this.r(UDP_HLEN) : n + 1 + this.r(1000));
      return;
    }
    const past = Math.floor(n / 4) + 1;
    const doff = past <= 15 && this.r(2) ? past + this.r(16 - past) : this.r(5);
    b[p + 12] = doff << 4;
    b[p + 13] = this.rnd() & ~SYN & 0xff;
  }

  private tcpSoupBad(): number {
    const v6 = this.t.src6 !== null && this.r(2) === 1;
    const p = v6 ? this.ip6(6, TCP_HLEN) : this.ip4(6, TCP_HLEN);
    this.tcp(
      p,
      this.r(CLOSED_PORT_MAX) + 1024,
      1 + this.r(CLOSED_PORT_MAX),
      this.rnd(),
      this.rnd(),
      SYN | this.pick([FIN, RST, FIN | RST, FIN | ACK, RST | ACK | PSH]),
      this.rnd() & 0xffff,
      0,
    );
    return p + TCP_HLEN;
  }

  // ------------------------------------------------------------ IPv6

  /** A sound IPv6 header at 14 for next header nh and payload length; returns the payload's offset. */
  private ip6(nh: number, payload: number, src = this.t.src6, dst = this.pick(this.t.dst6)): number {
    const b = this.buf;
    const o = this.eth(ETH_P_IPV6);
    wr32(b, o, 0x60000000);
    wr16(b, o + 4, payload);
    b[o + 6] = nh;
    b[o + 7] = 64;
    b.set(src!, o + 8);
    b.set(dst, o + 24);
    return o + IP6_HLEN;
  }

  private ip6Payload(nh: number, n: number): number {
    const p = this.ip6(nh, n);
    this.random(p, n);
    return p + n;
  }

  private ip6Bad(): number {
    const b = this.buf;
    const o = ETH_HLEN;
    switch (this.r(5)) {
      case 0: {
        const end = this.ip6Payload(17, this.r(100));
        b[o] = (this.pick([0, 4, 5, 7, 15]) << 4) | (b[o]! & 15); // version
        return end;
      }
      case 1: {
        const end = this.ip6Payload(6, this.r(100));
        wr16(b, o + 4, end - o - IP6_HLEN + 1 + this.r(3000)); // payload length past the frame
        return end;
      }
      case 2: {
        // an extension header whose length runs past the packet
        const n = 8 + this.r(40);
        const p = this.ip6(this.pick([0, 43, 60]), n);
        this.random(p, n);
        b[p] = 17;
        b[p + 1] = Math.ceil(n / 8) + this.r(200); // (len + 1) * 8 > n
        return p + n;
      }
      case 3: {
        // a chain of empty extension headers, longer than anyone walks (or cut short)
        const count = 9 + this.r(40);
        const n = count * 8;
        const p = this.ip6(60, n);
        b.fill(0, p, p + n);
        for (let k = 0; k < count; k++) b[p + 8 * k] = k + 1 < count ? this.pick([60, 43]) : 17;
        return p + n;
      }
      default:
        this.ip6Payload(17, 8);
        return o + this.r(IP6_HLEN); // truncated header
    }
  }

  private l6Bad(): number {
    const b = this.buf;
    const proto = this.pick([6, 17, 58, 58]);
    const hl = proto === 6 ? TCP_HLEN : UDP_HLEN;
    if (this.r(3) === 0) {
      const n = this.r(hl);
      const p = this.ip6(proto, n);
      this.random(p, n);
      return p + n;
    }
    const n = hl + this.r(64);
    const p = this.ip6(proto, n);
    this.random(p, n);
    if (proto !== 58) this.badL4Length(p, n, proto);
    else {
      // echo request, neighbour or router solicitation with a wrong checksum
      b[p] = this.pick([128, 133, 135]);
      b[p + 1] = 0;
      wr16(b, p + 2, 0);
      wr16(b, p + 2, this.l4Sum6(p, n, 58) ^ (1 + this.r(0xfffe)));
    }
    return p + n;
  }

  // ------------------------------------------------------------ sound TCP, UDP, ICMP

  /** TCP header at p with options of len optLen (0..40) written by tcpOptions. */
  private tcp(p: number, sport: number, dport: number, seq: number, ack: number, flags: number, wnd: number, optLen: number): void {
    const b = this.buf;
    wr16(b, p, sport);
    wr16(b, p + 2, dport);
    wr32(b, p + 4, seq >>> 0);
    wr32(b, p + 8, ack >>> 0);
    b[p + 12] = ((TCP_HLEN + optLen) / 4) << 4;
    b[p + 13] = flags;
    wr16(b, p + 14, wnd);
    wr16(b, p + 16, this.rnd() & 0xffff);
    wr16(b, p + 18, flags & URG ? this.rnd() & 0xffff : 0);
  }

  /**
   * TCP options of every kind and length in n bytes at p (n a multiple of 4):
   * MSS (of any value, 0 too), window scale (up to 255), SACK, timestamps,
   * unknown kinds, lengths of 0, 1 or past the end, NOPs, an early EOL.
   */
  private tcpOptions(p: number, n: number): void {
    const b = this.buf;
    let k = 0;
    while (k < n) {
      const left = n - k;
      switch (this.r(9)) {
        case 0:
          b[p + k++] = 1;
          break; // NOP
        case 1:
          b[p + k++] = 0;
          break; // EOL
        case 2:
          if (left >= 4) {
            b[p + k] = 2;
            b[p + k + 1] = 4;
            wr16(b, p + k + 2, this.pick([0, 1, 88, 536, 1460, 65535]));
            k += 4;
          } else b[p + k++] = 1;
          break;
        case 3:
          if (left >= 3) {
            b[p + k] = 3;
            b[p + k + 1] = 3;
            b[p + k + 2] = this.pick([0, 7, 14, 15, 200, 255]);
            k += 3;
          } else b[p + k++] = 1;
          break;
        case 4:
          if (left >= 10) {
            b[p + k] = 8;
            b[p + k + 1] = 10;
            this.random(p + k + 2, 8);
            k += 10;
          } else b[p + k++] = 1;
          break;
        case 5:
          if (left >= 2) {
            b[p + k] = 4;
            b[p + k + 1] = 2;
            k += 2;
          } else b[p + k++] = 1;
          break;
        case 6:
          b[p + k] = this.pick([2, 3, 5, 8, 30, 34, 254, 99]);
          if (left >= 2) {
            b[p + k + 1] = this.pick([0, 1, left, left + 1, 255]);
            k = n;
          } else k++;
          break; // length 0, 1, exact, or past the end
        case 7: {
          const l = 2 + this.r(Math.max(1, left - 1));
          if (l <= left) {
            b[p + k] = 100 + this.r(150);
            b[p + k + 1] = l;
            this.random(p + k + 2, l - 2);
            k += l;
          } else b[p + k++] = 1;
          break;
        }
        default:
          if (left >= 2) {
            b[p + k] = this.pick([2, 3, 8]);
            b[p + k + 1] = this.pick([2, 5, 9, 11, 40]);
            k += 2;
          } else b[p + k++] = 1; // wrong length for the kind
      }
    }
  }

  private l4Sum6(p: number, n: number, proto: number): number {
    const b = this.buf;
    let s = csum(b, ETH_HLEN + 8, 32, 0);
    s += n + proto;
    return csumFold(csum(b, p, n, s));
  }

  private l4Sum4(p: number, n: number, proto: number): number {
    const b = this.buf;
    let s = csum(b, ETH_HLEN + 12, 8, 0);
    s += n + proto;
    return csumFold(csum(b, p, n, s));
  }

  /** Fill the TCP or UDP checksum of the n-byte segment at p (the IP header at 14). */
  private l4Checksum(p: number, n: number, proto: number, v6: boolean): void {
    const at = p + (proto === 6 ? 16 : 6);
    wr16(this.buf, at, 0);
    const s = v6 ? this.l4Sum6(p, n, proto) : this.l4Sum4(p, n, proto);
    wr16(this.buf, at, proto === 17 && s === 0 ? 0xffff : s);
  }

  /** A sound TCP segment (flags given), to a closed port, options and payload of random sizes. */
  private tcpSegment(flags: number, wnd: number): number {
    const v6 = this.t.src6 !== null && this.r(3) === 0;
    const optLen = 4 * this.r(11);
    const data = flags & SYN ? 0 : this.pick([0, 0, 1, 100, 1000]);
    const n = TCP_HLEN + optLen + data;
    const p = v6 ? this.ip6(6, n) : this.ip4(6, n);
    this.tcp(p, 1024 + this.r(60000), 1 + this.r(CLOSED_PORT_MAX), this.rnd(), this.rnd(), flags, wnd, optLen);
    this.tcpOptions(p + TCP_HLEN, optLen);
    this.random(p + TCP_HLEN + optLen, data);
    this.l4Checksum(p, n, 6, v6);
    return p + n;
  }

  private tcpStray(): number {
    const flags = (this.rnd() & (FIN | RST | PSH | ACK | URG | 0xc0)) | (this.r(2) ? ACK : 0);
    return this.tcpSegment(flags, this.r(4) ? this.rnd() & 0xffff : 0);
  }

  private syn(): number {
    return this.tcpSegment(SYN | (this.r(4) ? 0 : this.pick([URG, PSH, 0xc0])), this.r(4) ? this.rnd() & 0xffff : 0);
  }

  private udpClosed(): number {
    const v6 = this.t.src6 !== null && this.r(3) === 0;
    const data = this.r(300);
    const n = UDP_HLEN + data;
    const p = v6 ? this.ip6(17, n) : this.ip4(17, n);
    const b = this.buf;
    wr16(b, p, 1024 + this.r(60000));
    // not 53 (a DNS responder may listen), 67 and 547 (our DHCP servers)
    let port: number;
    do port = 1 + this.r(CLOSED_PORT_MAX);
    while (port === 53 || port === 67 || port === 547);
    wr16(b, p + 2, port);
    wr16(b, p + 4, n);
    this.random(p + UDP_HLEN, data);
    this.l4Checksum(p, n, 17, v6);
    return p + n;
  }

  private echo(): number {
    const v6 = this.t.src6 !== null && this.r(2) === 1;
    const data = this.r(100);
    const n = 8 + data;
    const p = v6 ? this.ip6(58, n) : this.ip4(1, n);
    const b = this.buf;
    b[p] = v6 ? 128 : 8;
    b[p + 1] = 0;
    wr16(b, p + 2, 0);
    wr32(b, p + 4, this.rnd());
    this.random(p + 8, data);
    wr16(b, p + 2, v6 ? this.l4Sum6(p, n, 58) : checksum(b, p, n));
    return p + n;
  }

  // ------------------------------------------------------------ fragments

  /** A fragment id from a small set, so that fragments of one datagram meet (and overlap). */
  private fragId(): number {
    return 0x4000 + this.r(48);
  }

  private frag4(): number {
    const b = this.buf;
    const kind = this.r(4);
    // offsets in 8-byte units: overlapping ones near the start, some far out (past 64 KiB with the length)
    // a last fragment (kind 0) is never at offset 0: that would be a whole datagram
    const off = kind === 3 ? 8000 + this.r(192) : kind === 0 ? 1 + this.r(23) : this.r(24);
    const more = kind === 0 ? 0 : 0x2000;
    const n = 8 * (1 + this.r(kind === 1 ? 2 : 60));
    const p = this.ip4(this.pick([17, 17, 6, 1]), n, this.t.src4, this.pick(this.t.dst4), more | off);
    wr16(b, ETH_HLEN + 4, this.fragId());
    if (off === 0) {
      // a first fragment starts with a UDP header whose length is the datagram's
      wr16(b, p, 1024 + this.r(100));
      wr16(b, p + 2, 1 + this.r(CLOSED_PORT_MAX));
      wr16(b, p + 4, 8 * (1 + this.r(400)));
      wr16(b, p + 6, 0);
      this.random(p + 8, n - 8);
    } else this.random(p, n);
    wr16(b, ETH_HLEN + 10, 0);
    wr16(b, ETH_HLEN + 10, checksum(b, ETH_HLEN, IP4_HLEN));
    return p + n;
  }

  private frag6(): number {
    if (!this.t.src6) return this.frag4();
    const b = this.buf;
    const kind = this.r(4);
    const off = kind === 3 ? 8000 + this.r(192) : kind === 0 ? 1 + this.r(23) : this.r(24);
    const more = kind === 0 ? 0 : 1;
    const n = 8 * (1 + this.r(kind === 1 ? 2 : 60));
    const p = this.ip6(44, 8 + n);
    b[p] = this.pick([17, 17, 6, 58]);
    b[p + 1] = 0;
    wr16(b, p + 2, (off << 3) | more);
    wr32(b, p + 4, this.fragId());
    this.random(p + 8, n);
    if (off === 0) wr16(b, p + 8 + 4, 8 * (1 + this.r(400)));
    return p + 8 + n;
  }

  // ------------------------------------------------------------ the live connection

  /**
   * A segment of the live connection: its ports and addresses, a sequence
   * number and an acknowledgment number each at least FAR from the
   * connection's, flags that are never RST and rarely SYN, windows often
   * zero, options of every length, a payload sometimes.
   */
  private live(): number {
    const l = this.t.live!;
    const optLen = 4 * this.r(11);
    let flags = (this.rnd() & (FIN | PSH | ACK | URG | 0xc0)) | ACK;
    if (this.r(20) === 0) flags = (flags & ~FIN) | SYN;
    const data = this.pick([0, 0, 0, 1, 100, 1000]);
    const n = TCP_HLEN + optLen + data;
    const p = this.ip4(6, n, this.t.src4, this.t.dst4[0]!);
    const seq = l.seq + FAR + this.r(2 * FAR);
    const ack = l.ack + FAR + this.r(2 * FAR);
    this.tcp(p, l.sport, l.dport, seq, ack, flags, this.r(2) ? 0 : this.rnd() & 0xffff, optLen);
    this.tcpOptions(p + TCP_HLEN, optLen);
    this.random(p + TCP_HLEN + optLen, data);
    this.l4Checksum(p, n, 6, false);
    return p + n;
  }
}

// ---------------------------------------------------------------- the sender

const AF_PACKET = 17;
const SOCK_RAW = 3;
/** Only sockets of every protocol see what leaves through the interface, not those of one. */
const ETH_P_ALL = 0x0003;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const ENOBUFS = 105;
/** Frames between looks at the interface's drop counter. */
const BURST = 128;
/** Longest pause between bursts while the interface drops. */
const PAUSE_MAX_MS = 64;
/** How long to wait for a frame of the live connection. */
const SNIFF_MS = 10_000;

function htons(v: number): number {
  return ((v & 255) << 8) | (v >> 8);
}

/** struct sockaddr_ll for ifindex and protocol (host order). */
function sockaddrLl(ifindex: number, proto: number): Uint8Array {
  const sa = new Uint8Array(20);
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_PACKET, true);
  v.setUint16(2, proto, false);
  v.setInt32(4, ifindex, true);
  return sa;
}

function packetSocket(ifindex: number, proto: number): number {
  const fd = sys.shim_socket(AF_PACKET, SOCK_RAW, htons(proto));
  if (fd < 0) throw new Error(`AF_PACKET socket: errno ${-fd}`);
  const sa = sockaddrLl(ifindex, proto);
  const rc = sys.shim_bind(fd, sa, sa.length);
  if (rc < 0) throw new Error(`bind to interface ${ifindex}: errno ${-rc}`);
  return fd;
}

/**
 * Transmit counters of ifname in this network namespace, from /proc/net/dev
 * (/sys shows the namespace that mounted it, which nsenter -n does not change).
 */
function txStats(ifname: string): { packets: number; dropped: number } {
  for (const line of readFileSync("/proc/self/net/dev", "utf8").split("\n")) {
    const m = line.match(/^\s*([^:\s]+):\s*(.*)$/);
    if (!m || m[1] !== ifname) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    return { packets: f[9]!, dropped: f[11]! };
  }
  throw new Error(`no interface ${ifname} in /proc/net/dev`);
}

/** Index and MAC address of ifname in this network namespace (ip -j link). */
function linkInfo(ifname: string): { index: number; mac: Uint8Array } {
  const r = Bun.spawnSync(["ip", "-j", "link", "show", "dev", ifname], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip link show ${ifname}: ${r.stderr.toString()}`);
  const l = JSON.parse(r.stdout.toString())[0];
  return {
    index: l.ifindex,
    mac: new Uint8Array(
      String(l.address)
        .split(":")
        .map((x) => parseInt(x, 16)),
    ),
  };
}

/**
 * Read frames through ifname, both ways, until one of the live connection
 * (IPv4, TCP, src:sport ⇄ dst:dport) went each way: the guest's and the
 * peer's sequence numbers. Prints "sniffing" once it listens, so that the
 * connection can be opened then. Null when none shows within SNIFF_MS.
 */
function sniffLive(ifindex: number, src: number, dst: number, sport: number, dport: number): { seq: number; ack: number } | null {
  const fd = packetSocket(ifindex, ETH_P_ALL);
  const b = new Uint8Array(65536 + 64);
  const end = performance.now() + SNIFF_MS;
  let seq: number | null = null;
  let ack: number | null = null;
  console.log("sniffing");
  try {
    while (performance.now() < end && (seq === null || ack === null)) {
      const n = sys.shim_recv(fd, b, b.length, MSG_DONTWAIT);
      if (n === -EAGAIN) {
        Bun.sleepSync(1);
        continue;
      }
      if (n < ETH_HLEN + IP4_HLEN + TCP_HLEN || rd16(b, 12) !== ETH_P_IP || b[ETH_HLEN + 9] !== 6) continue;
      const p = ETH_HLEN + (b[ETH_HLEN]! & 15) * 4;
      const s = rd32(b, ETH_HLEN + 12);
      const d = rd32(b, ETH_HLEN + 16);
      if (s === src && d === dst && rd16(b, p) === sport && rd16(b, p + 2) === dport) seq = rd32(b, p + 4);
      else if (s === dst && d === src && rd16(b, p) === dport && rd16(b, p + 2) === sport) ack = rd32(b, p + 4);
    }
    return seq === null || ack === null ? null : { seq, ack };
  } finally {
    sys.shim_close(fd);
  }
}

function parseArgs(argv: string[]): Record<string, string> {
  const a: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    if (!k.startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${k}`);
    a[k.slice(2)] = argv[++i]!;
  }
  return a;
}

function main(argv: string[]): void {
  const a = parseArgs(argv);
  const ifname = a.if ?? "eth0";
  const frames = Number(a.frames ?? 100000);
  const seed = Number(a.seed ?? 1);
  const link = linkInfo(ifname);
  const ifindex = link.index;
  const t: Targets = {
    srcMac: link.mac,
    src4: ip4(a.src4!),
    dst4: a.dst4!.split(",").map(ip4),
    src6: a.src6 ? ip6(a.src6) : null,
    dst6: a.dst6 ? a.dst6.split(",").map(ip6) : [],
    live: null,
  };
  if (t.src6 && !t.dst6.length) throw new Error("--src6 needs --dst6");
  let liveSeen: { seq: number; ack: number } | null = null;
  if (a.flow4) {
    const [sport, dport] = a.flow4.split(":").map(Number) as [number, number];
    liveSeen = sniffLive(ifindex, t.src4, t.dst4[0]!, sport, dport);
    if (!liveSeen)
      throw new Error(`no frame of the connection ${a.src4}:${sport} → ${a.dst4!.split(",")[0]}:${dport} within ${SNIFF_MS} ms`);
    t.live = { sport, dport, ...liveSeen };
  }

  const gen = new HostileFrames(seed, t);
  const fd = packetSocket(ifindex, 0);
  const byClass: Record<string, number> = {};
  const byFate: Record<Fate, number> = { malformed: 0, unhandled: 0, handled: 0 };
  let sendErrors = 0;
  let pauses = 0;
  let pause = 0;
  const tx0 = txStats(ifname);
  let dropSeen = tx0.dropped;
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    const { cls, len } = gen.next();
    let rc = sys.shim_send(fd, gen.buf, len, 0);
    for (let k = 0; rc === -ENOBUFS && k < 100; k++) {
      Bun.sleepSync(1);
      rc = sys.shim_send(fd, gen.buf, len, 0);
    }
    if (rc < 0) {
      sendErrors++;
      continue;
    }
    byClass[cls] = (byClass[cls] ?? 0) + 1;
    byFate[CLASSES[cls].fate]++;
    if ((i + 1) % BURST === 0) {
      const d = txStats(ifname).dropped;
      pause = d !== dropSeen ? Math.min(PAUSE_MAX_MS, Math.max(1, 2 * pause)) : pause / 2;
      dropSeen = d;
      if (pause >= 1) {
        pauses++;
        Bun.sleepSync(pause);
      }
    }
  }
  sys.shim_close(fd);
  console.log(
    JSON.stringify({
      frames,
      seed,
      sent: frames - sendErrors,
      sendErrors,
      byFate,
      byClass,
      txPackets: txStats(ifname).packets - tx0.packets,
      txDropped: txStats(ifname).dropped - tx0.dropped,
      pauses,
      live: t.live,
      ms: Math.round(performance.now() - t0),
    }),
  );
}

if (import.meta.main) main(process.argv.slice(2));
