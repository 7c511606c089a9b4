/**
 * DHCP server tests on real bytes.
 *
 * The requests were captured with tcpdump from ISC dhclient 4.4.3-P1 in a
 * private network namespace pair (veth). The "accepted" replies are what
 * dhcpReply(, dhcpLast) wrote for them in that run, as seen on the wire: dhclient
 * accepted them (BOUND with address, mask, router, DNS, search list and MTU),
 * so they double as regression vectors. Replies are also decoded with the
 * independent parser below, field by field.
 */
import { describe, expect, test } from "bun:test";
import { parseIp4, parseMac, type Config } from "../../src/conf/config.ts";
import { dhcpCounters, newDhcpDest, dhcpReply, dhcpServerId, dnsNamesWire } from "../../src/services/dhcp.ts";

/** Where the reply goes, as the dispatcher keeps it: one record, reused. */
const dhcpLast = newDhcpDest();

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const zeros = (n: number) => "00".repeat(n);

/** BOOTP header of the captured client (xid 5299ed2d, chaddr 02:00:00:00:00:0b, no flags). */
const HDR = "010106005299ed2d" + "0000" + "0000" + zeros(16) + "02000000000b" + zeros(10) + zeros(192) + "63825363";

/** DHCPDISCOVER: 53=1, 12="guest1", 55 = 1 28 2 3 15 6 119 12 44 47 26 42, END, padding to 300. */
const DISCOVER = hex(HDR + "350101" + "0c06677565737431" + "370c011c02030f06770c2c2f1a2a" + "ff" + zeros(34));
/** DHCPREQUEST (SELECTING): 53=3, 54=10.0.2.2, 50=10.0.2.15, 12, 55, END, padding. */
const REQUEST = hex(
  HDR + "350103" + "36040a000202" + "32040a00020f" + "0c06677565737431" + "370c011c02030f06770c2c2f1a2a" + "ff" + zeros(22),
);
/** An older capture, from dhclient with a shorter request list (1 28 2 3 15 6 12). */
const DISCOVER_SHORT = hex(
  "010106005171213a" +
    "0000" +
    "0000" +
    zeros(16) +
    "02000000000b" +
    zeros(10) +
    zeros(192) +
    "63825363" +
    "350101" +
    "0c06677565737431" +
    "3707011c02030f060c" +
    "ff" +
    zeros(39),
);

/** The OFFER and ACK dhclient accepted. */
const OFFER_ACCEPTED = hex(
  "020106005299ed2d00000000000000000a00020f000000000000000002000000000b" +
    zeros(10) +
    zeros(192) +
    "6382536335010236040a0002023304ffffffff0104ffffff0003040a0002020f0b6578616d706c652e6f726706080a00020309090909" +
    "771b076578616d706c65036f7267000474657374076578616d706c65001a0205dcff",
);
const ACK_ACCEPTED = OFFER_ACCEPTED.slice();
ACK_ACCEPTED[242] = 5;

const cfg: Config = {
  mode: "pasta",
  ourMac: parseMac("02:00:00:00:00:0a"),
  nsMac: new Uint8Array(6),
  nsIfname: "eth0",
  mtu: 1500,
  ip4: {
    addr: parseIp4("10.0.2.15"),
    prefixLen: 24,
    gw: parseIp4("10.0.2.2"),
    dns: [parseIp4("10.0.2.3"), parseIp4("9.9.9.9")],
    dnsMatch: 0,
    dnsHost: 0,
    mapHostLoopback: 0,
    mapGuestAddr: 0,
    ifname: "eth0",
    copyAddrs: false,
    copyRoutes: false,
  },
  ip6: null,
  dnsSearch: ["example.org", "test.example"],
  noDhcp: false,
  noNdp: false,
  noDhcpv6: false,
  noRa: false,
  noIcmp: false,
  noUdp: false,
  configNet: false,
  outbound4: 0,
  outbound6: null,
  outboundIf4: null,
  outboundIf6: null,
  dhcpDns: true,
  dhcpSearch: true,
  hostname: "",
  fqdn: "",
};

const withIp4 = (patch: Partial<NonNullable<Config["ip4"]>>, rest: Partial<Config> = {}): Config => ({
  ...cfg,
  ...rest,
  ip4: { ...cfg.ip4!, ...patch },
});

/* ---- independent decoder ---- */

interface Decoded {
  op: number;
  xid: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  chaddr: string;
  cookie: number;
  /** Options in order of appearance (pads skipped). */
  order: number[];
  /** Option data, instances of one code concatenated (RFC 3396). */
  opts: Map<number, Uint8Array>;
  endAt: number;
}

const ip = (b: Uint8Array, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

function decode(b: Uint8Array): Decoded {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const order: number[] = [];
  const opts = new Map<number, Uint8Array>();
  let i = 240;
  for (;;) {
    if (i >= b.length) throw new Error("no END option");
    const code = b[i]!;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255) break;
    const l = b[i + 1]!;
    if (i + 2 + l > b.length) throw new Error("option overruns");
    order.push(code);
    const prev = opts.get(code) ?? new Uint8Array(0);
    const cat = new Uint8Array(prev.length + l);
    cat.set(prev);
    cat.set(b.subarray(i + 2, i + 2 + l), prev.length);
    opts.set(code, cat);
    i += 2 + l;
  }
  return {
    op: b[0]!,
    xid: dv.getUint32(4),
    flags: dv.getUint16(10),
    ciaddr: ip(b, 12),
    yiaddr: ip(b, 16),
    siaddr: ip(b, 20),
    giaddr: ip(b, 24),
    chaddr: Buffer.from(b.subarray(28, 34)).toString("hex"),
    cookie: dv.getUint32(236),
    order,
    opts,
    endAt: i,
  };
}

/** Decode DNS names (RFC 1035, with compression pointers) from a whole buffer. */
function names(b: Uint8Array): string[] {
  const res: string[] = [];
  let i = 0;
  while (i < b.length) {
    const labels: string[] = [];
    let p = i,
      jumped = false;
    for (let guard = 0; guard < 128; guard++) {
      const l = b[p]!;
      if (l === 0) {
        if (!jumped) i = p + 1;
        break;
      }
      if ((l & 0xc0) === 0xc0) {
        if (!jumped) i = p + 2;
        jumped = true;
        p = ((l & 0x3f) << 8) | b[p + 1]!;
        continue;
      }
      labels.push(Buffer.from(b.subarray(p + 1, p + 1 + l)).toString());
      p += 1 + l;
    }
    res.push(labels.join("."));
  }
  return res;
}

const u32 = (b: Uint8Array | undefined) => new DataView(b!.buffer, b!.byteOffset).getUint32(0);
const ips = (b: Uint8Array | undefined) => Array.from({ length: b!.length / 4 }, (_, k) => ip(b!, 4 * k));

function reply(c: Config, req: Uint8Array, outOff = 0, outSize = 1500): Uint8Array | null {
  const out = new Uint8Array(outSize);
  const n = dhcpReply(c, req, 0, req.length, out, outOff, dhcpLast);
  return n === 0 ? null : out.subarray(outOff, outOff + n);
}

/** Copy a captured message and overwrite bytes at an offset. */
function patched(src: Uint8Array, at: number, bytes: string): Uint8Array {
  const b = src.slice();
  b.set(hex(bytes), at);
  return b;
}

/** Offsets of the options in REQUEST: 53 at 240, 54 at 243, 50 at 249. */
const REQ_TYPE = 242,
  REQ_SERVER = 243,
  REQ_ADDR = 249;

describe("dhcpReply on captured dhclient messages", () => {
  test("DISCOVER -> OFFER, byte for byte what dhclient accepted", () => {
    expect(reply(cfg, DISCOVER)).toEqual(OFFER_ACCEPTED);
  });

  test("OFFER fields", () => {
    const r = decode(reply(cfg, DISCOVER)!);
    expect(r.op).toBe(2);
    expect(r.xid).toBe(0x5299ed2d);
    expect(r.flags).toBe(0);
    expect(r.ciaddr).toBe("0.0.0.0");
    expect(r.yiaddr).toBe("10.0.2.15");
    expect(r.siaddr).toBe("0.0.0.0");
    expect(r.giaddr).toBe("0.0.0.0");
    expect(r.chaddr).toBe("02000000000b");
    expect(r.cookie).toBe(0x63825363);
    expect(r.opts.get(53)).toEqual(Uint8Array.of(2));
    expect(ips(r.opts.get(54))).toEqual(["10.0.2.2"]);
    expect(u32(r.opts.get(51))).toBe(0xffffffff);
    expect(ips(r.opts.get(1))).toEqual(["255.255.255.0"]);
    expect(ips(r.opts.get(3))).toEqual(["10.0.2.2"]);
    expect(ips(r.opts.get(6))).toEqual(["10.0.2.3", "9.9.9.9"]);
    expect(Buffer.from(r.opts.get(15)!).toString()).toBe("example.org");
    expect(names(r.opts.get(119)!)).toEqual(["example.org", "test.example"]);
    expect(new DataView(r.opts.get(26)!.buffer, r.opts.get(26)!.byteOffset).getUint16(0)).toBe(1500);
    // Mandatory first, then the request list's order: 1 28 2 3 15 6 119 12 44 47 26 42.
    expect(r.order).toEqual([53, 54, 51, 1, 3, 15, 6, 119, 26]);
  });

  test("OFFER is unicast to yiaddr at chaddr (no BROADCAST flag), from the server id", () => {
    reply(cfg, DISCOVER);
    expect(dhcpLast.broadcast).toBe(false);
    expect(dhcpLast.dstAddr).toBe(parseIp4("10.0.2.15"));
    expect(dhcpLast.srcAddr).toBe(parseIp4("10.0.2.2"));
    expect(Buffer.from(dhcpLast.clientMac).toString("hex")).toBe("02000000000b");
    expect(dhcpLast.msgType).toBe(2);
  });

  test("BROADCAST flag -> broadcast reply, flag echoed", () => {
    const r = reply(cfg, patched(DISCOVER, 10, "8000"))!;
    expect(decode(r).flags).toBe(0x8000);
    expect(dhcpLast.broadcast).toBe(true);
    expect(dhcpLast.dstAddr).toBe(0xffffffff);
  });

  test("REQUEST (SELECTING) -> ACK, byte for byte what dhclient accepted", () => {
    expect(reply(cfg, REQUEST)).toEqual(ACK_ACCEPTED);
    expect(dhcpLast.msgType).toBe(5);
  });

  test("a request list without MTU or search list (as udhcpc's): requested ones first, then the rest by code", () => {
    const r = decode(reply(cfg, DISCOVER_SHORT)!);
    expect(r.xid).toBe(0x5171213a);
    expect(r.order).toEqual([53, 54, 51, 1, 3, 15, 6, 26, 119]);
    expect(new DataView(r.opts.get(26)!.buffer, r.opts.get(26)!.byteOffset).getUint16(0)).toBe(1500);
  });

  test("REQUEST for another address -> broadcast NAK without lease or address", () => {
    const r = decode(reply(cfg, patched(REQUEST, REQ_ADDR, "32040a000263"))!);
    expect(r.opts.get(53)).toEqual(Uint8Array.of(6));
    expect(r.order).toEqual([53, 54]);
    expect(r.yiaddr).toBe("0.0.0.0");
    expect(r.ciaddr).toBe("0.0.0.0");
    expect(dhcpLast.broadcast).toBe(true);
    expect(dhcpLast.dstAddr).toBe(0xffffffff);
  });

  test("REQUEST naming another server -> no reply", () => {
    const before = dhcpCounters.ignored;
    expect(reply(cfg, patched(REQUEST, REQ_SERVER, "36040a000263"))).toBeNull();
    expect(dhcpCounters.ignored).toBe(before + 1);
  });

  test("INIT-REBOOT (no server id) -> ACK", () => {
    const r = decode(reply(cfg, patched(REQUEST, REQ_SERVER, zeros(6)))!);
    expect(r.opts.get(53)).toEqual(Uint8Array.of(5));
    expect(r.yiaddr).toBe("10.0.2.15");
  });

  test("RENEWING (ciaddr, no 50/54) -> ACK unicast to ciaddr; other ciaddr -> NAK", () => {
    const renew = patched(patched(REQUEST, REQ_SERVER, zeros(12)), 12, "0a00020f");
    const r = decode(reply(cfg, renew)!);
    expect(r.opts.get(53)).toEqual(Uint8Array.of(5));
    expect(r.ciaddr).toBe("10.0.2.15");
    expect(r.yiaddr).toBe("10.0.2.15");
    expect(dhcpLast.broadcast).toBe(false);
    expect(dhcpLast.dstAddr).toBe(parseIp4("10.0.2.15"));
    const bad = decode(reply(cfg, patched(renew, 12, "0a000263"))!);
    expect(bad.opts.get(53)).toEqual(Uint8Array.of(6));
  });

  test("INFORM -> ACK without lease time or yiaddr, unicast to ciaddr", () => {
    const inform = patched(patched(patched(REQUEST, REQ_SERVER, zeros(12)), 12, "0a00020f"), REQ_TYPE, "08");
    const r = decode(reply(cfg, inform)!);
    expect(r.opts.get(53)).toEqual(Uint8Array.of(5));
    expect(r.opts.has(51)).toBe(false);
    expect(r.opts.has(54)).toBe(true);
    expect(r.yiaddr).toBe("0.0.0.0");
    expect(r.ciaddr).toBe("10.0.2.15");
    expect(ips(r.opts.get(6))).toEqual(["10.0.2.3", "9.9.9.9"]);
    expect(dhcpLast.dstAddr).toBe(parseIp4("10.0.2.15"));
  });

  test("RELEASE and DECLINE -> no reply", () => {
    expect(reply(cfg, patched(REQUEST, REQ_TYPE, "07"))).toBeNull();
    expect(reply(cfg, patched(REQUEST, REQ_TYPE, "04"))).toBeNull();
  });

  test("client identifier (61) is echoed", () => {
    const req = patched(DISCOVER, 243, "3d07" + "0102000000000b" + "ff");
    const r = decode(reply(cfg, req)!);
    expect(Buffer.from(r.opts.get(61)!).toString("hex")).toBe("0102000000000b");
  });

  test("no parameter request list: every parameter we have", () => {
    const req = patched(DISCOVER, 243, "ff" + zeros(22));
    expect(decode(reply(cfg, req)!).order).toEqual([53, 54, 51, 1, 3, 6, 15, 26, 119]);
  });

  test("option overload: message type in the file field", () => {
    const req = patched(patched(DISCOVER, 240, "340101"), 108, "350101ff");
    const r = decode(reply(cfg, req)!);
    expect(r.opts.get(53)).toEqual(Uint8Array.of(2));
  });

  test("long search list: left out at 576 bytes, split over instances when the client allows more", () => {
    const many = Array.from({ length: 24 }, (_, k) => `domain${k}.some-long-subdomain.example.com`);
    const c = { ...cfg, dnsSearch: many };
    const small = reply(c, DISCOVER)!;
    expect(small.length).toBeLessThanOrEqual(548);
    expect(decode(small).opts.has(119)).toBe(false);
    const big = patched(DISCOVER, 243, "3902" + "05dc" + "370c011c02030f06770c2c2f1a2aff");
    const r = decode(reply(c, big)!);
    expect(names(r.opts.get(119)!)).toEqual(many);
    expect(r.order.filter((x) => x === 119).length).toBeGreaterThan(1);
  });

  test("no gateway: no router option, server id another subnet address", () => {
    const c = withIp4({ gw: 0 });
    const r = decode(reply(c, DISCOVER)!);
    expect(r.opts.has(3)).toBe(false);
    expect(ips(r.opts.get(54))).toEqual(["10.0.2.1"]);
    expect(dhcpServerId(withIp4({ gw: 0, addr: parseIp4("10.0.2.1") }))).toBe(parseIp4("10.0.2.2"));
    expect(dhcpServerId(withIp4({ gw: 0, addr: parseIp4("10.0.2.7"), prefixLen: 32 }))).toBe(parseIp4("10.0.2.6"));
  });

  test("--dns-forward address replaces the host's servers; no servers, no option", () => {
    expect(ips(decode(reply(withIp4({ dnsMatch: parseIp4("10.0.2.53") }), DISCOVER)!).opts.get(6))).toEqual(["10.0.2.53"]);
    expect(decode(reply(withIp4({ dns: [] }), DISCOVER)!).opts.has(6)).toBe(false);
  });

  test("DNS servers (6) only with dhcpDns, domain (15) and search list (119) only with dhcpSearch", () => {
    expect(decode(reply({ ...cfg, dhcpDns: false }, DISCOVER)!).order).toEqual([53, 54, 51, 1, 3, 15, 119, 26]);
    expect(decode(reply({ ...cfg, dhcpSearch: false }, DISCOVER)!).order).toEqual([53, 54, 51, 1, 3, 6, 26]);
  });

  test("-H: host name (12); --fqdn: client FQDN (81) with E set, RCODEs 255, wire-form name; sent unasked too", () => {
    const c = { ...cfg, hostname: "guest1", fqdn: "guest1.example.org" };
    const r = decode(reply(c, DISCOVER)!);
    expect(Buffer.from(r.opts.get(12)!).toString()).toBe("guest1");
    const f = r.opts.get(81)!;
    expect(Array.from(f.subarray(0, 3))).toEqual([0x04, 255, 255]);
    expect(names(f.subarray(3))).toEqual(["guest1.example.org"]);
    // requested: 1 28 2 3 15 6 119 12 44 47 26 42; then 81, not requested
    expect(r.order).toEqual([53, 54, 51, 1, 3, 15, 6, 119, 12, 26, 81]);
    const short = decode(reply(c, DISCOVER_SHORT)!);
    expect(short.order).toEqual([53, 54, 51, 1, 3, 15, 6, 12, 26, 81, 119]);
    expect(decode(reply(cfg, DISCOVER)!).order).toEqual([53, 54, 51, 1, 3, 15, 6, 119, 26]);
  });

  test("prefix lengths map to masks", () => {
    expect(ips(decode(reply(withIp4({ prefixLen: 17 }), DISCOVER)!).opts.get(1))).toEqual(["255.255.128.0"]);
    expect(ips(decode(reply(withIp4({ prefixLen: 32 }), DISCOVER)!).opts.get(1))).toEqual(["255.255.255.255"]);
  });

  test("reply written at an offset, padded to 300 bytes", () => {
    const c = { ...cfg, dnsSearch: [] };
    const out = new Uint8Array(1000).fill(0xaa);
    const n = dhcpReply(c, DISCOVER, 0, DISCOVER.length, out, 100, dhcpLast);
    expect(n).toBe(300);
    expect(out[99]).toBe(0xaa);
    expect(out[400]).toBe(0xaa);
    const r = decode(out.subarray(100, 400));
    expect(r.xid).toBe(0x5299ed2d);
    expect(Array.from(out.subarray(100 + r.endAt + 1, 400)).every((x) => x === 0)).toBe(true);
  });

  test("request at an offset inside a bigger buffer", () => {
    const buf = new Uint8Array(DISCOVER.length + 50);
    buf.set(DISCOVER, 42);
    const out = new Uint8Array(600);
    expect(out.subarray(0, dhcpReply(cfg, buf, 42, DISCOVER.length, out, 0, dhcpLast))).toEqual(OFFER_ACCEPTED);
  });
});

describe("dhcpReply refuses what it must", () => {
  const count = (k: keyof typeof dhcpCounters, f: () => Uint8Array | null) => {
    const before = dhcpCounters[k];
    expect(f()).toBeNull();
    expect(dhcpCounters[k]).toBe(before + 1);
  };

  test("service off or no IPv4", () => {
    count("ignored", () => reply({ ...cfg, noDhcp: true }, DISCOVER));
    count("ignored", () => reply({ ...cfg, ip4: null }, DISCOVER));
  });
  test("truncated header", () => count("truncated", () => reply(cfg, DISCOVER.subarray(0, 239))));
  test("BOOTREPLY, bad cookie, non-Ethernet hardware", () => {
    count("malformed", () => reply(cfg, patched(DISCOVER, 0, "02")));
    count("malformed", () => reply(cfg, patched(DISCOVER, 236, "63825364")));
    count("malformed", () => reply(cfg, patched(DISCOVER, 2, "10")));
  });
  test("plain BOOTP (no message type) and unknown types", () => {
    count("malformed", () => reply(cfg, patched(DISCOVER, 240, "000000")));
    count("malformed", () => reply(cfg, patched(DISCOVER, 242, "02")));
    count("malformed", () => reply(cfg, patched(DISCOVER, 242, "63")));
  });
  test("bad option lengths and overruns", () => {
    count("badOption", () => reply(cfg, patched(DISCOVER, 240, "35020101")));
    count("badOption", () => reply(cfg, DISCOVER.subarray(0, 252)));
    count("badOption", () => reply(cfg, patched(DISCOVER, 240, "340104")));
    count("badOption", () => reply(cfg, patched(patched(DISCOVER, 240, "340101"), 108, "35ff")));
  });
  test("range outside the buffer", () => {
    const out = new Uint8Array(600);
    expect(dhcpReply(cfg, DISCOVER, 10, DISCOVER.length, out, 0, dhcpLast)).toBe(0);
    expect(dhcpReply(cfg, DISCOVER, -1, 10, out, 0, dhcpLast)).toBe(0);
  });
  test("no room for a reply", () => {
    const out = new Uint8Array(299);
    count("noRoom", () => (dhcpReply(cfg, DISCOVER, 0, DISCOVER.length, out, 0, dhcpLast) ? out : null));
    const big = new Uint8Array(600);
    count("noRoom", () => (dhcpReply(cfg, DISCOVER, 0, DISCOVER.length, big, 400, dhcpLast) ? big : null));
  });
});

describe("hostile input never throws", () => {
  const out = new Uint8Array(1500);
  const check = (b: Uint8Array) => {
    const n = dhcpReply(cfg, b, 0, b.length, out, 0, dhcpLast);
    expect(n === 0 || (n >= 300 && n <= 1472)).toBe(true);
  };

  test("every truncation of real messages", () => {
    for (const m of [DISCOVER, REQUEST, DISCOVER_SHORT]) for (let l = 0; l <= m.length; l++) check(m.subarray(0, l));
  });

  test("every single-byte corruption of the options", () => {
    for (const m of [DISCOVER, REQUEST]) {
      for (let i = 236; i < m.length; i++) {
        for (const v of [0, 1, 0x34, 0x35, 0x37, 0x7f, 0xfe, 0xff]) check(patched(m, i, v.toString(16).padStart(2, "0")));
      }
    }
  });

  test("random bytes behind a valid header", () => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
    for (let k = 0; k < 3000; k++) {
      const m = DISCOVER.slice(0, 240 + (rnd() % 80));
      for (let i = 240; i < m.length; i++) m[i] = rnd() % 3 === 0 ? [53, 52, 55, 61, 57][rnd() % 5]! : rnd();
      check(m);
    }
  });
});

describe("dnsNamesWire", () => {
  test("encodes, drops trailing dots and bad names, caches per array", () => {
    const list = ["example.org.", "", "a..b", "x".repeat(64) + ".com", "ok"];
    const w = dnsNamesWire(list);
    expect(names(w)).toEqual(["example.org", "ok"]);
    expect(dnsNamesWire(list)).toBe(w);
  });
});
