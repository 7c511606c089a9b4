import { beforeEach, describe, expect, test } from "bun:test";
import { type Config, parseIp4, parseIp6, parseMac } from "../../src/conf/config.ts";
import { arpHandle } from "../../src/services/arp.ts";
import { Guest } from "../../src/services/guest.ts";
import type { FrameSink } from "../../src/tap/sink.ts";
import { ETH_HLEN } from "../../src/wire/eth.ts";
import { ARP_GRATUITOUS, ARP_REPLY, ARP_REQ, ARP_REQ_PADDED, UDP4, toHex } from "./wire-fixtures.ts";

/** What the dispatcher learns of the guest, as it keeps it: one, reset before each test. */
const guest = new Guest();

/** A sink over a small buffer that records committed frames; room for `slots` frames. */
class TestSink implements FrameSink {
  readonly buf = new Uint8Array(256);
  readonly maxAlloc = this.buf.length;
  readonly frameRoom = 0;
  readonly tsoMax = 0;
  readonly csumOffload = false;
  frames: Uint8Array[] = [];
  private pos = 8;
  constructor(private slots = 4) {}
  alloc(maxLen: number): number {
    if (this.slots === 0 || this.pos + maxLen > this.buf.length) return -1;
    return this.pos;
  }
  commit(off: number, len: number): void {
    this.frames.push(this.buf.slice(off, off + len));
    this.pos = off + len;
    this.slots--;
  }
}

/**
 * The guest is the namespace that sent the captured request (10.77.0.1,
 * 02:77:00:00:00:01); we play its peer 10.77.0.2 with the peer's MAC, so our
 * reply must equal the one the kernel sent.
 */
function config(): Config {
  return {
    mode: "pasta",
    ourMac: parseMac("02:77:00:00:00:02"),
    nsMac: new Uint8Array(6),
    nsIfname: "eth0",
    mtu: 65520,
    ip4: {
      addr: parseIp4("10.77.0.1"),
      prefixLen: 24,
      gw: parseIp4("10.77.0.254"),
      dns: [],
      dnsMatch: 0,
      dnsHost: 0,
      mapHostLoopback: 0,
      mapGuestAddr: 0,
      ifname: "eth0",
      copyAddrs: false,
      copyRoutes: false,
    },
    ip6: {
      addr: parseIp6("fd77::1"),
      prefixLen: 64,
      gw: parseIp6("fe80::1"),
      ourLL: parseIp6("fe80::1"),
      dns: [],
      dnsMatch: null,
      dnsHost: null,
      mapHostLoopback: null,
      mapGuestAddr: null,
      ifname: "eth0",
      copyAddrs: false,
      copyRoutes: false,
    },
    dnsSearch: [],
    noDhcp: false,
    noNdp: false,
    noDhcpv6: false,
    noRa: false,
    noIcmp: false,
    noUdp: false,
    configNet: true,
    outbound4: 0,
    outbound6: null,
    outboundIf4: null,
    outboundIf6: null,
    dhcpDns: true,
    dhcpSearch: true,
    hostname: "",
    fqdn: "",
  };
}

/** A copy of the captured request with the ARP bytes at `at` (relative to the ARP header) replaced. */
function patched(at: number, bytes: number[]): Uint8Array {
  const b = ARP_REQ.slice();
  b.set(bytes, ETH_HLEN + at);
  return b;
}

beforeEach(() => {
  guest.mac.fill(0);
  guest.known = false;
});

describe("arpHandle", () => {
  test("answers the kernel's request with the kernel's own reply, byte for byte", () => {
    const sink = new TestSink();
    expect(arpHandle(config(), guest, ARP_REQ, 0, ARP_REQ.length, sink)).toBe(true);
    expect(sink.frames.map(toHex)).toEqual([toHex(ARP_REPLY)]);
    expect(guest.known).toBe(true);
    expect(toHex(guest.mac)).toBe(toHex(parseMac("02:77:00:00:00:01")));
  });

  test("padded request at an offset inside a larger buffer", () => {
    const b = new Uint8Array(ARP_REQ_PADDED.length + 100);
    b.set(ARP_REQ_PADDED, 37);
    const sink = new TestSink();
    expect(arpHandle(config(), guest, b, 37, ARP_REQ_PADDED.length, sink)).toBe(true);
    expect(sink.frames.map(toHex)).toEqual([toHex(ARP_REPLY)]);
  });

  test("answers for any other address, e.g. the gateway", () => {
    const sink = new TestSink();
    expect(arpHandle(config(), guest, patched(24, [10, 77, 0, 254]), 0, 42, sink)).toBe(true);
    expect(Array.from(sink.frames[0]!.subarray(ETH_HLEN + 14, ETH_HLEN + 18))).toEqual([10, 77, 0, 254]);
  });

  test("stays quiet for the guest's own address, gratuitous ARP and probes", () => {
    const sink = new TestSink();
    const cfg = config();
    expect(arpHandle(cfg, guest, patched(24, [10, 77, 0, 1]), 0, 42, sink)).toBe(false);
    expect(arpHandle(cfg, guest, ARP_GRATUITOUS, 0, ARP_GRATUITOUS.length, sink)).toBe(false);
    expect(arpHandle(cfg, guest, patched(14, [10, 77, 0, 9, 0, 0, 0, 0, 0, 0, 10, 77, 0, 9]), 0, 42, sink)).toBe(false);
    expect(arpHandle(cfg, guest, patched(14, [0, 0, 0, 0]), 0, 42, sink)).toBe(false);
    expect(arpHandle(cfg, guest, patched(14, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 77, 0, 1]), 0, 42, sink)).toBe(false);
    expect(sink.frames).toEqual([]);
    expect(guest.known).toBe(true);
  });

  test("drops replies, malformed and non-ARP frames without learning anything", () => {
    const sink = new TestSink();
    const cfg = config();
    const bad = [
      [ARP_REPLY, ARP_REPLY.length],
      [ARP_REQ, 41],
      [ARP_REQ, 13],
      [patched(0, [0, 6]), 42],
      [patched(4, [6, 5]), 42],
      [patched(8, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 42],
      [patched(8, [0, 0, 0, 0, 0, 0]), 42],
      [UDP4, UDP4.length],
    ] as const;
    for (const [b, len] of bad) expect(arpHandle(cfg, guest, b, 0, len, sink)).toBe(false);
    expect(arpHandle(cfg, guest, ARP_REQ, 10, 42, sink)).toBe(false);
    expect(sink.frames).toEqual([]);
    expect(guest.known).toBe(false);
  });

  test("no IPv4, or no room in the sink: nothing queued", () => {
    const cfg = config();
    cfg.ip4 = null;
    expect(arpHandle(cfg, guest, ARP_REQ, 0, 42, new TestSink())).toBe(false);
    const full = new TestSink(0);
    expect(arpHandle(config(), guest, ARP_REQ, 0, 42, full)).toBe(false);
    expect(full.frames).toEqual([]);
  });
});
