/**
 * NDP tests on real bytes.
 *
 * The solicitations were captured with tcpdump from a Linux 6.18 kernel in a
 * private network namespace pair: the Router Solicitation and the DAD probes
 * (with their RFC 7527 nonce option) of an interface being brought up, and
 * the Neighbour Solicitations of ping -6 (multicast address resolution and
 * unicast reachability probes). The "accepted" answers are what ndpReply(, ndpLast)
 * wrote in that run (checksum field zero, as we leave it): the kernel took
 * the RA (SLAAC address in fd00::/64, default route via fe80::1, expiring in
 * 9000 s) and the NAs (neighbours REACHABLE at our MAC, flagged router).
 */
import { describe, expect, test } from "bun:test";
import { formatIp6, parseIp6, parseMac, type Config } from "../../src/conf/config.ts";
import { ndpBuildRA, ndpCounters, newNdpDest, ndpReply } from "../../src/services/ndp.ts";

/** Where the reply goes, as the dispatcher keeps it: one record, reused. */
const ndpLast = newNdpDest();

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));

const GUEST_LL = parseIp6("fe80::ff:fe00:b");
const GUEST_SLAAC = parseIp6("fd00::ff:fe00:b");
const UNSPEC = new Uint8Array(16);

const RS = hex("85007b1800000000" + "010102000000000b");
const NS_DAD_LL = hex("8700b5ff00000000" + "fe80000000000000000000fffe00000b" + "0e01f69c9fb222b9");
const NS_DAD_GLOBAL = hex("8700256a00000000" + "fd00000000000000000000fffe00000b" + "0e015e57ed8cff39");
const NS_PROBE_GW = hex("87007b0900000000" + "fe800000000000000000000000000001" + "010102000000000b");
const NS_RESOLVE = hex("87007d5500000000" + "fd000000000000000000000000000099" + "010102000000000b");
/** From an earlier run: 2001:db8::2 resolving 2001:db8::1. */
const NS_RESOLVE_DOC = hex("87001c1e00000000" + "20010db8000000000000000000000001" + "010102000000000b");

const RA_ACCEPTED = hex(
  "8600000040c023280000000000000000" +
    "010102000000000a" +
    "05010000000005dc" +
    "030440c0ffffffffffffffff00000000fd000000000000000000000000000000" +
    "19030000fffffffffd000000000000000000000000000003" +
    "1f050000ffffffff076578616d706c65036f7267000474657374076578616d706c65000000000000",
);
const NA_GW_ACCEPTED = hex("88000000e0000000fe800000000000000000000000000001020102000000000a");
const NA_RESOLVE_ACCEPTED = hex("88000000e0000000fd000000000000000000000000000099020102000000000a");

const cfg: Config = {
  mode: "pasta",
  ourMac: parseMac("02:00:00:00:00:0a"),
  nsMac: new Uint8Array(6),
  nsIfname: "eth0",
  mtu: 1500,
  ip4: null,
  ip6: {
    addr: parseIp6("fd00::15"),
    prefixLen: 64,
    gw: parseIp6("fe80::1"),
    ourLL: parseIp6("fe80::1"),
    dns: [parseIp6("fd00::3")],
    dnsMatch: null,
    dnsHost: null,
    mapHostLoopback: null,
    mapGuestAddr: null,
    ifname: "eth0",
    copyAddrs: false,
    copyRoutes: false,
  },
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
const withIp6 = (patch: Partial<NonNullable<Config["ip6"]>>, rest: Partial<Config> = {}): Config => ({
  ...cfg,
  ...rest,
  ip6: { ...cfg.ip6!, ...patch },
});

/* ---- independent decoder ---- */

interface NdOpt {
  type: number;
  body: Uint8Array;
}

/** Options after `fixed` bytes; checks RFC 4861 section 4.6 framing. */
function ndOptions(b: Uint8Array, fixed: number): NdOpt[] {
  const res: NdOpt[] = [];
  for (let i = fixed; i < b.length; ) {
    const units = b[i + 1]!;
    if (units === 0 || i + units * 8 > b.length) throw new Error("bad option framing");
    res.push({ type: b[i]!, body: b.subarray(i, i + units * 8) });
    i += units * 8;
  }
  return res;
}

const be16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const be32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint32(o);
const mac = (b: Uint8Array, o: number) => Array.from(b.subarray(o, o + 6), (x) => x.toString(16).padStart(2, "0")).join(":");

function dnsNames(b: Uint8Array): string[] {
  const res: string[] = [];
  const labels: string[] = [];
  for (let i = 0; i < b.length; ) {
    const l = b[i]!;
    if (l === 0) {
      if (labels.length) res.push(labels.join("."));
      labels.length = 0;
      i++;
      continue;
    }
    labels.push(Buffer.from(b.subarray(i + 1, i + 1 + l)).toString());
    i += 1 + l;
  }
  return res;
}

interface Ra {
  hopLimit: number;
  managed: boolean;
  other: boolean;
  lifetime: number;
  reachable: number;
  retrans: number;
  slla?: string;
  mtu?: number;
  prefix?: { len: number; onLink: boolean; auto: boolean; valid: number; preferred: number; prefix: string };
  rdnss?: { lifetime: number; servers: string[] };
  dnssl?: { lifetime: number; names: string[] };
  types: number[];
}

function decodeRa(b: Uint8Array): Ra {
  expect(b[0]).toBe(134);
  expect(b[1]).toBe(0);
  expect(be16(b, 2)).toBe(0);
  const ra: Ra = {
    hopLimit: b[4]!,
    managed: (b[5]! & 0x80) !== 0,
    other: (b[5]! & 0x40) !== 0,
    lifetime: be16(b, 6),
    reachable: be32(b, 8),
    retrans: be32(b, 12),
    types: [],
  };
  for (const { type, body } of ndOptions(b, 16)) {
    ra.types.push(type);
    if (type === 1) ra.slla = mac(body, 2);
    if (type === 5) ra.mtu = be32(body, 4);
    if (type === 3) {
      ra.prefix = {
        len: body[2]!,
        onLink: (body[3]! & 0x80) !== 0,
        auto: (body[3]! & 0x40) !== 0,
        valid: be32(body, 4),
        preferred: be32(body, 8),
        prefix: formatIp6(body, 16),
      };
    }
    if (type === 25) {
      const n = (body.length - 8) / 16;
      ra.rdnss = { lifetime: be32(body, 4), servers: Array.from({ length: n }, (_, k) => formatIp6(body, 8 + 16 * k)) };
    }
    if (type === 31) ra.dnssl = { lifetime: be32(body, 4), names: dnsNames(body.subarray(8)) };
  }
  return ra;
}

function answer(c: Config, src: Uint8Array, msg: Uint8Array, outSize = 1500): Uint8Array | null {
  const out = new Uint8Array(outSize);
  const n = ndpReply(c, src, 0, msg, 0, msg.length, out, 0, ndpLast);
  return n === 0 ? null : out.subarray(0, n);
}

function ra(c: Config): Uint8Array | null {
  const out = new Uint8Array(1500);
  const n = ndpBuildRA(c, out, 0, ndpLast);
  return n === 0 ? null : out.subarray(0, n);
}

describe("ndpReply on captured kernel messages", () => {
  test("RS -> RA, byte for byte what the kernel accepted, unicast to the solicitor", () => {
    expect(answer(cfg, GUEST_LL, RS)).toEqual(RA_ACCEPTED);
    expect(ndpLast.multicast).toBe(false);
    expect(formatIp6(ndpLast.dst)).toBe("fe80::ff:fe00:b");
    expect(ndpLast.type).toBe(134);
  });

  test("RA fields", () => {
    const r = decodeRa(answer(cfg, GUEST_LL, RS)!);
    expect(r).toEqual({
      hopLimit: 64,
      managed: true,
      other: true,
      lifetime: 9000,
      reachable: 0,
      retrans: 0,
      slla: "02:00:00:00:00:0a",
      mtu: 1500,
      prefix: { len: 64, onLink: true, auto: true, valid: 0xffffffff, preferred: 0xffffffff, prefix: "fd00::" },
      rdnss: { lifetime: 0xffffffff, servers: ["fd00::3"] },
      dnssl: { lifetime: 0xffffffff, names: ["example.org", "test.example"] },
      types: [1, 5, 3, 25, 31],
    });
  });

  test("NS probing the gateway (unicast) -> NA, byte for byte what the kernel accepted", () => {
    expect(answer(cfg, GUEST_LL, NS_PROBE_GW)).toEqual(NA_GW_ACCEPTED);
    expect(ndpLast.multicast).toBe(false);
    expect(formatIp6(ndpLast.dst)).toBe("fe80::ff:fe00:b");
    expect(ndpLast.type).toBe(136);
  });

  test("NS resolving an on-link address -> NA with R, S, O and our MAC", () => {
    const na = answer(cfg, GUEST_SLAAC, NS_RESOLVE)!;
    expect(na).toEqual(NA_RESOLVE_ACCEPTED);
    expect(na[0]).toBe(136);
    expect(na[1]).toBe(0);
    expect(na[4]).toBe(0xe0);
    expect(formatIp6(na, 8)).toBe("fd00::99");
    const opts = ndOptions(na, 24);
    expect(opts.map((o) => o.type)).toEqual([2]);
    expect(mac(opts[0]!.body, 2)).toBe("02:00:00:00:00:0a");
    expect(formatIp6(ndpLast.dst)).toBe("fd00::ff:fe00:b");
  });

  test("NS for an address outside our prefix is answered too: every other host is us", () => {
    const na = answer(cfg, parseIp6("2001:db8::2"), NS_RESOLVE_DOC)!;
    expect(formatIp6(na, 8)).toBe("2001:db8::1");
    expect(formatIp6(ndpLast.dst)).toBe("2001:db8::2");
  });

  test("DAD probes are never answered", () => {
    const before = ndpCounters.dad;
    expect(answer(cfg, UNSPEC, NS_DAD_LL)).toBeNull();
    expect(answer(cfg, UNSPEC, NS_DAD_GLOBAL)).toBeNull();
    const dadForUs = NS_DAD_LL.slice();
    dadForUs.set(parseIp6("fe80::1"), 8);
    expect(answer(cfg, UNSPEC, dadForUs)).toBeNull();
    expect(ndpCounters.dad).toBe(before + 3);
  });

  test("NS for the guest's own addresses: no answer", () => {
    const before = ndpCounters.guestTarget;
    const self = NS_RESOLVE.slice();
    self.set(GUEST_SLAAC, 8);
    expect(answer(cfg, GUEST_SLAAC, self)).toBeNull();
    const assigned = NS_RESOLVE.slice();
    assigned.set(parseIp6("fd00::15"), 8);
    expect(answer(cfg, GUEST_SLAAC, assigned)).toBeNull();
    expect(ndpCounters.guestTarget).toBe(before + 2);
  });

  test("RS from the unspecified address -> RA to all nodes", () => {
    const rs = hex("85000000" + "00000000");
    expect(answer(cfg, UNSPEC, rs)).toEqual(RA_ACCEPTED);
    expect(ndpLast.multicast).toBe(true);
    expect(formatIp6(ndpLast.dst)).toBe("ff02::1");
  });

  test("input and output at offsets", () => {
    const buf = new Uint8Array(200);
    buf.set(NS_PROBE_GW, 50);
    const src = new Uint8Array(40);
    src.set(GUEST_LL, 8);
    const out = new Uint8Array(100).fill(0x77);
    const n = ndpReply(cfg, src, 8, buf, 50, NS_PROBE_GW.length, out, 10, ndpLast);
    expect(out.subarray(10, 10 + n)).toEqual(NA_GW_ACCEPTED);
    expect(out[9]).toBe(0x77);
    expect(out[10 + n]).toBe(0x77);
  });
});

describe("ndpBuildRA", () => {
  test("unsolicited RA to all nodes, same content", () => {
    expect(ra(cfg)).toEqual(RA_ACCEPTED);
    expect(ndpLast.multicast).toBe(true);
    expect(formatIp6(ndpLast.dst)).toBe("ff02::1");
  });

  test("DHCPv6 off: no M and O", () => {
    const r = decodeRa(ra({ ...cfg, noDhcpv6: true })!);
    expect(r.managed).toBe(false);
    expect(r.other).toBe(false);
  });

  test("no IPv6 gateway on the host: router lifetime 0", () => {
    expect(decodeRa(ra(withIp6({ gw: new Uint8Array(16) }))!).lifetime).toBe(0);
  });

  test("prefix other than /64: masked, on-link, no autoconfiguration", () => {
    const r = decodeRa(ra(withIp6({ addr: parseIp6("2001:db8:aa:bbff::15"), prefixLen: 56 }))!);
    expect(r.prefix).toMatchObject({ len: 56, onLink: true, auto: false, prefix: "2001:db8:aa:bb00::" });
  });

  test("link-local or no address: no prefix option", () => {
    expect(decodeRa(ra(withIp6({ addr: parseIp6("fe80::15") }))!).prefix).toBeUndefined();
    expect(decodeRa(ra(withIp6({ addr: new Uint8Array(16) }))!).prefix).toBeUndefined();
  });

  test("DNS: the forwarder alone, several servers, none", () => {
    expect(decodeRa(ra(withIp6({ dnsMatch: parseIp6("fd00::53") }))!).rdnss!.servers).toEqual(["fd00::53"]);
    const two = decodeRa(ra(withIp6({ dns: [parseIp6("fd00::3"), parseIp6("2001:db8::53")] }))!);
    expect(two.rdnss!.servers).toEqual(["fd00::3", "2001:db8::53"]);
    const none = decodeRa(ra(withIp6({ dns: [] }, { dnsSearch: [] }))!);
    expect(none.types).toEqual([1, 5, 3]);
  });

  test("RDNSS only with dhcpDns, DNSSL only with dhcpSearch (pasta's default: neither)", () => {
    expect(decodeRa(ra({ ...cfg, dhcpDns: false })!).types).toEqual([1, 5, 3, 31]);
    expect(decodeRa(ra({ ...cfg, dhcpSearch: false })!).types).toEqual([1, 5, 3, 25]);
    expect(decodeRa(ra({ ...cfg, dhcpDns: false, dhcpSearch: false })!).types).toEqual([1, 5, 3]);
  });

  test("DNSSL padding for every name length", () => {
    for (let l = 1; l <= 20; l++) {
      const name = "a".repeat(l) + ".example";
      const r = decodeRa(ra({ ...cfg, dnsSearch: [name] })!);
      expect(r.dnssl!.names).toEqual([name]);
    }
  });

  test("MTU below the IPv6 minimum is not advertised", () => {
    expect(decodeRa(ra({ ...cfg, mtu: 1000 })!).mtu).toBeUndefined();
    expect(decodeRa(ra({ ...cfg, mtu: 65520 })!).mtu).toBe(65520);
  });

  test("off, or no room", () => {
    expect(ra({ ...cfg, noRa: true })).toBeNull();
    expect(ra({ ...cfg, noNdp: true })).toBeNull();
    expect(ra({ ...cfg, ip6: null })).toBeNull();
    expect(ndpBuildRA(cfg, new Uint8Array(100), 0, ndpLast)).toBe(0);
    expect(ndpBuildRA(cfg, new Uint8Array(200), 100, ndpLast)).toBe(0);
  });
});

describe("ndpReply refuses what it must", () => {
  const count = (k: keyof typeof ndpCounters, src: Uint8Array, m: Uint8Array, c: Config = cfg) => {
    const before = ndpCounters[k];
    expect(answer(c, src, m)).toBeNull();
    expect(ndpCounters[k]).toBe(before + 1);
  };
  const with_ = (m: Uint8Array, at: number, bytes: string) => {
    const b = m.slice();
    b.set(hex(bytes), at);
    return b;
  };

  test("switched off", () => {
    count("ignored", GUEST_LL, RS, { ...cfg, noRa: true });
    count("ignored", GUEST_LL, NS_PROBE_GW, { ...cfg, noNdp: true });
    count("ignored", GUEST_LL, NS_PROBE_GW, { ...cfg, ip6: null });
  });
  test("other ICMPv6 types", () => {
    for (const t of ["80", "81", "86", "88", "89", "01", "8f"]) count("ignored", GUEST_LL, with_(NS_PROBE_GW, 0, t));
  });
  test("non-zero code", () => {
    count("invalid", GUEST_LL, with_(NS_PROBE_GW, 1, "01"));
    count("invalid", GUEST_LL, with_(RS, 1, "05"));
  });
  test("option framing", () => {
    count("invalid", GUEST_LL, with_(NS_PROBE_GW, 25, "00"));
    count("invalid", GUEST_LL, with_(NS_PROBE_GW, 25, "02"));
    count("invalid", GUEST_LL, with_(RS, 9, "00"));
    count("invalid", GUEST_LL, NS_PROBE_GW.subarray(0, 25));
    count("invalid", GUEST_LL, RS.subarray(0, 12));
  });
  test("multicast target or source, SLLA from the unspecified address", () => {
    count("invalid", GUEST_LL, with_(NS_PROBE_GW, 8, "ff02"));
    count("invalid", parseIp6("ff02::1"), NS_PROBE_GW);
    count("invalid", parseIp6("ff02::1"), RS);
    count("invalid", UNSPEC, RS);
    count("invalid", UNSPEC, with_(NS_DAD_LL, 24, "0101"));
  });
  test("truncated", () => {
    count("truncated", GUEST_LL, NS_PROBE_GW.subarray(0, 23));
    count("truncated", GUEST_LL, RS.subarray(0, 7));
    count("truncated", GUEST_LL, RS.subarray(0, 3));
    const out = new Uint8Array(100);
    expect(ndpReply(cfg, GUEST_LL, 1, RS, 0, RS.length, out, 0, ndpLast)).toBe(0);
    expect(ndpReply(cfg, GUEST_LL, 0, RS, 1, RS.length, out, 0, ndpLast)).toBe(0);
    expect(ndpReply(cfg, GUEST_LL, 0, RS, -1, 4, out, 0, ndpLast)).toBe(0);
  });
  test("no room", () => {
    expect(ndpReply(cfg, GUEST_LL, 0, NS_PROBE_GW, 0, 32, new Uint8Array(31), 0, ndpLast)).toBe(0);
    expect(ndpReply(cfg, GUEST_LL, 0, NS_PROBE_GW, 0, 32, new Uint8Array(64), -1, ndpLast)).toBe(0);
    expect(ndpReply(cfg, GUEST_LL, 0, RS, 0, 16, new Uint8Array(64), 0, ndpLast)).toBe(0);
  });
});

describe("hostile input never throws", () => {
  const out = new Uint8Array(1500);
  const check = (src: Uint8Array, b: Uint8Array) => {
    const n = ndpReply(cfg, src, 0, b, 0, b.length, out, 0, ndpLast);
    expect(n === 0 || n === 32 || n === RA_ACCEPTED.length).toBe(true);
    if (n > 0) ndOptions(out.subarray(0, n), n === 32 ? 24 : 16);
  };
  const all = [RS, NS_DAD_LL, NS_DAD_GLOBAL, NS_PROBE_GW, NS_RESOLVE, NS_RESOLVE_DOC];

  test("every truncation and single-byte corruption of real messages", () => {
    for (const m of all) {
      for (let l = 0; l <= m.length; l++) check(GUEST_LL, m.subarray(0, l));
      for (let i = 0; i < m.length; i++) {
        for (const v of [0, 1, 2, 0x85, 0x87, 0xff]) {
          const b = m.slice();
          b[i] = v;
          check(GUEST_LL, b);
          check(UNSPEC, b);
        }
      }
    }
  });

  test("random messages", () => {
    let seed = 3;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
    for (let k = 0; k < 5000; k++) {
      const m = new Uint8Array(rnd() % 64);
      for (let i = 0; i < m.length; i++) m[i] = rnd() % 2 ? rnd() % 4 : rnd();
      if (m.length > 0) m[0] = rnd() % 2 ? 133 : 135;
      if (m.length > 1) m[1] = 0;
      check(rnd() % 2 ? GUEST_LL : UNSPEC, m);
    }
  });
});
