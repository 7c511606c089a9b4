/**
 * DHCPv6 server tests on real bytes.
 *
 * The client messages were captured with tcpdump from ISC dhclient 4.4.3-P1
 * (-6, -6 with "send dhcp6.rapid-commit", -6 -S, -6 -r) in a private network
 * namespace pair; the "accepted" replies are what dhcpv6Reply() wrote for
 * them in that run, which dhclient bound (address fd00::15, DNS fd00::3,
 * search example.org and test.example). Other message types are built from
 * the same pieces. Replies are decoded with the independent parser below.
 */
import { describe, expect, test } from "bun:test";
import { parseIp6, parseMac, formatIp6, type Config } from "../../src/conf/config.ts";
import { dhcpv6Counters, dhcpv6Reply } from "../../src/services/dhcpv6.ts";

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const tohex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const CLIENT_ID = "0001000e00010001329f3eba02000000000b";
const SERVER_ID = "0002000a0003000102000000000a";
const ORO = "000600040017" + "0018";
const ELAPSED = "000800020000";
/** IA_NA, IAID 0000000b, T1 3600, T2 5400, as dhclient asks. */
const IA_NA = "0003000c0000000b00000e1000001518";

const SOLICIT = hex("018a7c37" + CLIENT_ID + ORO + ELAPSED + IA_NA);
const REQUEST = hex(
  "03ba9f22" +
    CLIENT_ID +
    SERVER_ID +
    ORO +
    ELAPSED +
    "000300280000000b00000e1000001518" +
    "00050018fd000000000000000000000000000015" +
    "00001c2000001d4c",
);
const RELEASE = hex(
  "085ac930" +
    CLIENT_ID +
    SERVER_ID +
    ORO +
    ELAPSED +
    "000300280000000b0000000000000000" +
    "00050018fd000000000000000000000000000015" +
    "0000000000000000",
);
const SOLICIT_RAPID = hex("0103c20d" + "0001000e00010001329f3ebe02000000000b" + ORO + ELAPSED + "000e0000" + IA_NA);
const INFO_REQ = hex("0b7b23c6" + "0001000a0003000102000000000b" + ORO + ELAPSED);

const DNS_AND_DOMAINS = "00170010fd000000000000000000000000000003" + "0018001b076578616d706c65036f7267000474657374076578616d706c6500";
const IA_ANSWER = "000300280000000bffffffffffffffff" + "00050018fd000000000000000000000000000015ffffffffffffffff";
const ADVERTISE_ACCEPTED = hex("028a7c37" + SERVER_ID + CLIENT_ID + "00070001ff" + IA_ANSWER + DNS_AND_DOMAINS);
const REPLY_ACCEPTED = hex("07ba9f22" + SERVER_ID + CLIENT_ID + IA_ANSWER + DNS_AND_DOMAINS);
const RELEASE_REPLY_ACCEPTED = hex("075ac930" + SERVER_ID + CLIENT_ID + "000d00020000" + DNS_AND_DOMAINS);
const RAPID_REPLY_ACCEPTED = hex(
  "0703c20d" + SERVER_ID + "0001000e00010001329f3ebe02000000000b" + "000e0000" + IA_ANSWER + DNS_AND_DOMAINS,
);
const INFO_REPLY_ACCEPTED = hex("077b23c6" + SERVER_ID + "0001000a0003000102000000000b" + DNS_AND_DOMAINS);

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

/* ---- builders and an independent decoder ---- */

const u16 = (v: number) => v.toString(16).padStart(4, "0");
const opt = (code: number, data: string) => u16(code) + u16(data.length / 2) + data;
const msg = (type: number, ...opts: string[]) => hex(type.toString(16).padStart(2, "0") + "abcdef" + opts.join(""));
const iaNa = (iaid: string, ...sub: string[]) => opt(3, iaid + "0000000000000000" + sub.join(""));
const iaAddr = (a: string, life = "0000000000000000") => opt(5, tohex(parseIp6(a)) + life);

interface Opt {
  code: number;
  data: Uint8Array;
  sub?: Opt[];
}
interface Msg {
  type: number;
  xid: string;
  opts: Opt[];
}

function parseOpts(b: Uint8Array, nested: boolean): Opt[] {
  const res: Opt[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < b.length; ) {
    if (i + 4 > b.length) throw new Error("option header overruns");
    const code = dv.getUint16(i),
      len = dv.getUint16(i + 2);
    if (i + 4 + len > b.length) throw new Error("option overruns");
    const data = b.subarray(i + 4, i + 4 + len);
    const o: Opt = { code, data };
    if (nested && code === 3) o.sub = parseOpts(data.subarray(12), false);
    if (code === 5) o.sub = parseOpts(data.subarray(24), false);
    res.push(o);
    i += 4 + len;
  }
  return res;
}

function decode(b: Uint8Array): Msg {
  return { type: b[0]!, xid: tohex(b.subarray(1, 4)), opts: parseOpts(b.subarray(4), true) };
}

const find = (os: Opt[] | undefined, code: number) => (os ?? []).filter((o) => o.code === code);
const one = (m: Msg, code: number) => {
  const f = find(m.opts, code);
  expect(f.length).toBe(1);
  return f[0]!;
};
const be32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint32(o);
const be16 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint16(o);

function dnsNames(b: Uint8Array): string[] {
  const res: string[] = [];
  const labels: string[] = [];
  for (let i = 0; i < b.length; ) {
    const l = b[i]!;
    if (l === 0) {
      res.push(labels.join("."));
      labels.length = 0;
      i++;
      continue;
    }
    labels.push(Buffer.from(b.subarray(i + 1, i + 1 + l)).toString());
    i += 1 + l;
  }
  return res;
}

function reply(c: Config, req: Uint8Array, outSize = 1500): Uint8Array | null {
  const out = new Uint8Array(outSize);
  const n = dhcpv6Reply(c, req, 0, req.length, out, 0);
  return n === 0 ? null : out.subarray(0, n);
}

/** Check an IA_NA answer: IAID, T1/T2, and the addresses with their lifetimes. */
function expectIa(o: Opt, iaid: string, addrs: [string, number][]) {
  expect(tohex(o.data.subarray(0, 4))).toBe(iaid);
  expect(be32(o.data, 4)).toBe(0xffffffff);
  expect(be32(o.data, 8)).toBe(0xffffffff);
  const got = find(o.sub, 5).map((a) => [formatIp6(a.data), be32(a.data, 16), be32(a.data, 20)]);
  expect(got).toEqual(addrs.map(([a, l]) => [a, l, l]));
}

describe("dhcpv6Reply on captured dhclient messages", () => {
  test("SOLICIT -> ADVERTISE, byte for byte what dhclient accepted", () => {
    expect(reply(cfg, SOLICIT)).toEqual(ADVERTISE_ACCEPTED);
  });

  test("ADVERTISE fields", () => {
    const m = decode(reply(cfg, SOLICIT)!);
    expect(m.type).toBe(2);
    expect(m.xid).toBe("8a7c37");
    expect(tohex(one(m, 2).data)).toBe("0003000102000000000a");
    expect(tohex(one(m, 1).data)).toBe(CLIENT_ID.slice(8));
    expect(one(m, 7).data).toEqual(Uint8Array.of(255));
    expect(find(m.opts, 14)).toEqual([]);
    expectIa(one(m, 3), "0000000b", [["fd00::15", 0xffffffff]]);
    expect([...Array(one(m, 23).data.length / 16).keys()].map((k) => formatIp6(one(m, 23).data, 16 * k))).toEqual(["fd00::3"]);
    expect(dnsNames(one(m, 24).data)).toEqual(["example.org", "test.example"]);
  });

  test("REQUEST -> REPLY, byte for byte what dhclient accepted", () => {
    expect(reply(cfg, REQUEST)).toEqual(REPLY_ACCEPTED);
    const m = decode(REPLY_ACCEPTED);
    expect(m.type).toBe(7);
    expect(find(m.opts, 7)).toEqual([]);
  });

  test("SOLICIT with Rapid Commit -> REPLY with Rapid Commit", () => {
    expect(reply(cfg, SOLICIT_RAPID)).toEqual(RAPID_REPLY_ACCEPTED);
    const m = decode(RAPID_REPLY_ACCEPTED);
    expect(m.type).toBe(7);
    expect(one(m, 14).data.length).toBe(0);
    expectIa(one(m, 3), "0000000b", [["fd00::15", 0xffffffff]]);
  });

  test("RELEASE -> REPLY with status Success", () => {
    expect(reply(cfg, RELEASE)).toEqual(RELEASE_REPLY_ACCEPTED);
    const st = one(decode(RELEASE_REPLY_ACCEPTED), 13);
    expect(be16(st.data, 0)).toBe(0);
  });

  test("INFORMATION-REQUEST -> REPLY with configuration only", () => {
    expect(reply(cfg, INFO_REQ)).toEqual(INFO_REPLY_ACCEPTED);
    const m = decode(INFO_REPLY_ACCEPTED);
    expect(find(m.opts, 3)).toEqual([]);
    expect(m.opts.map((o) => o.code)).toEqual([2, 1, 23, 24]);
  });

  test("request at an offset, reply at an offset", () => {
    const buf = new Uint8Array(SOLICIT.length + 30);
    buf.set(SOLICIT, 17);
    const out = new Uint8Array(800).fill(0xee);
    const n = dhcpv6Reply(cfg, buf, 17, SOLICIT.length, out, 33);
    expect(out.subarray(33, 33 + n)).toEqual(ADVERTISE_ACCEPTED);
    expect(out[32]).toBe(0xee);
    expect(out[33 + n]).toBe(0xee);
  });
});

describe("dhcpv6Reply on built messages", () => {
  const CID = opt(1, CLIENT_ID.slice(8));

  test("RENEW: our address, and the client's other address with zero lifetimes", () => {
    const m = decode(reply(cfg, msg(5, CID, SERVER_ID, iaNa("00000001", iaAddr("fd00::99"), iaAddr("fd00::15"))))!);
    expect(m.type).toBe(7);
    expect(m.xid).toBe("abcdef");
    expectIa(one(m, 3), "00000001", [
      ["fd00::15", 0xffffffff],
      ["fd00::99", 0],
    ]);
  });

  test("REBIND without Server ID -> REPLY; with one -> dropped", () => {
    expectIa(one(decode(reply(cfg, msg(6, CID, IA_NA))!), 3), "0000000b", [["fd00::15", 0xffffffff]]);
    const before = dhcpv6Counters.invalid;
    expect(reply(cfg, msg(6, CID, SERVER_ID, IA_NA))).toBeNull();
    expect(dhcpv6Counters.invalid).toBe(before + 1);
  });

  test("CONFIRM: Success on our prefix, NotOnLink off it, nothing without addresses", () => {
    const ok = decode(reply(cfg, msg(4, CID, iaNa("00000001", iaAddr("fd00::1234"))))!);
    expect(ok.type).toBe(7);
    expect(be16(one(ok, 13).data, 0)).toBe(0);
    expect(find(ok.opts, 3)).toEqual([]);
    const off = decode(reply(cfg, msg(4, CID, iaNa("00000001", iaAddr("fd00::15"), iaAddr("fd01::15"))))!);
    expect(be16(one(off, 13).data, 0)).toBe(4);
    expect(reply(cfg, msg(4, CID, iaNa("00000001")))).toBeNull();
    const odd = withIp6({ prefixLen: 60 });
    expect(be16(one(decode(reply(odd, msg(4, CID, iaNa("00000001", iaAddr("fd00:0:0:f::1"))))!), 13).data, 0)).toBe(0);
    expect(be16(one(decode(reply(odd, msg(4, CID, iaNa("00000001", iaAddr("fd00:0:0:10::1"))))!), 13).data, 0)).toBe(4);
  });

  test("DECLINE -> REPLY with Success", () => {
    const m = decode(reply(cfg, msg(9, CID, SERVER_ID, iaNa("00000001", iaAddr("fd00::15"))))!);
    expect(be16(one(m, 13).data, 0)).toBe(0);
  });

  test("several IA_NAs: the first gets the address, the others NoAddrsAvail", () => {
    const m = decode(reply(cfg, msg(1, CID, iaNa("00000001"), iaNa("00000002")))!);
    const ias = find(m.opts, 3);
    expect(ias.length).toBe(2);
    expectIa(ias[0]!, "00000001", [["fd00::15", 0xffffffff]]);
    expect(tohex(ias[1]!.data.subarray(0, 4))).toBe("00000002");
    expect(find(ias[1]!.sub, 5)).toEqual([]);
    expect(be16(find(ias[1]!.sub, 13)[0]!.data, 0)).toBe(2);
  });

  test("ORO decides DNS options; without ORO both are sent", () => {
    const none = decode(reply(cfg, msg(1, CID, opt(6, "0052"), IA_NA))!);
    expect(find(none.opts, 23)).toEqual([]);
    expect(find(none.opts, 24)).toEqual([]);
    const dnsOnly = decode(reply(cfg, msg(1, CID, opt(6, "0017"), IA_NA))!);
    expect(find(dnsOnly.opts, 23).length).toBe(1);
    expect(find(dnsOnly.opts, 24)).toEqual([]);
    const noOro = decode(reply(cfg, msg(1, CID, IA_NA))!);
    expect(find(noOro.opts, 23).length).toBe(1);
    expect(find(noOro.opts, 24).length).toBe(1);
  });

  test("--dns-forward address, no servers, no search list", () => {
    const fwd = decode(reply(withIp6({ dnsMatch: parseIp6("fd00::53") }), SOLICIT)!);
    expect(formatIp6(one(fwd, 23).data)).toBe("fd00::53");
    const bare = decode(reply(withIp6({ dns: [] }, { dnsSearch: [] }), SOLICIT)!);
    expect(find(bare.opts, 23)).toEqual([]);
    expect(find(bare.opts, 24)).toEqual([]);
  });

  test("DNS servers only with dhcpDns, the search list only with dhcpSearch (pasta's default: neither)", () => {
    const noDns = decode(reply({ ...cfg, dhcpDns: false }, SOLICIT)!);
    expect(find(noDns.opts, 23)).toEqual([]);
    expect(find(noDns.opts, 24).length).toBe(1);
    const noSearch = decode(reply({ ...cfg, dhcpSearch: false }, SOLICIT)!);
    expect(find(noSearch.opts, 23).length).toBe(1);
    expect(find(noSearch.opts, 24)).toEqual([]);
  });

  test("--fqdn: Client FQDN (39) in every reply, flags 0, or O when the client set S", () => {
    const c = { ...cfg, fqdn: "guest1.example.org" };
    for (const req of [SOLICIT, REQUEST, INFO_REQ]) {
      const f = one(decode(reply(c, req)!), 39);
      expect(f.data[0]).toBe(0);
      expect(dnsNames(f.data.subarray(1))).toEqual(["guest1.example.org"]);
    }
    const withS = decode(reply(c, msg(1, CID, opt(39, "01" + "00"), IA_NA))!);
    expect(one(withS, 39).data[0]).toBe(0x02);
    expect(find(decode(reply(cfg, SOLICIT)!).opts, 39)).toEqual([]);
  });

  test("too many DNS servers for one datagram: the option is left out, not truncated", () => {
    const many = Array.from({ length: 100 }, (_, k) => parseIp6(`fd00::${k + 1}`));
    const r = reply(withIp6({ dns: many }), SOLICIT)!;
    expect(r.length).toBeLessThanOrEqual(1500 - 48);
    expect(find(decode(r).opts, 23)).toEqual([]);
    expect(find(decode(r).opts, 24).length).toBe(1);
  });
});

describe("dhcpv6Reply refuses what it must", () => {
  const CID = opt(1, CLIENT_ID.slice(8));
  const count = (k: keyof typeof dhcpv6Counters, req: Uint8Array, c: Config = cfg) => {
    const before = dhcpv6Counters[k];
    expect(reply(c, req)).toBeNull();
    expect(dhcpv6Counters[k]).toBe(before + 1);
  };

  test("service off or no IPv6", () => {
    count("ignored", SOLICIT, { ...cfg, noDhcpv6: true });
    count("ignored", SOLICIT, { ...cfg, ip6: null });
  });
  test("Server ID that is not ours", () => {
    count("otherServer", msg(3, CID, opt(2, "0003000102000000000c"), IA_NA));
    count("otherServer", msg(3, CID, opt(2, "00010001329f3eba02000000000a"), IA_NA));
    count("otherServer", msg(11, opt(2, "0003000102000000000c")));
  });
  test("RFC 8415 section 16 rules", () => {
    count("invalid", msg(1, IA_NA));
    count("invalid", msg(1, CID, SERVER_ID, IA_NA));
    count("invalid", msg(3, CID, IA_NA));
    count("invalid", msg(5, SERVER_ID, IA_NA));
    count("invalid", msg(8, CID));
    count("invalid", msg(4, CID, SERVER_ID, IA_NA));
    count("invalid", msg(11, CID, IA_NA));
    count("invalid", msg(11, CID, opt(25, "000000010000000000000000")));
  });
  test("server and relay messages, unknown types", () => {
    for (const t of [2, 7, 10, 12, 13, 0, 255]) count("ignored", msg(t, CID, IA_NA));
  });
  test("CONFIRM without addresses", () => count("ignored", msg(4, CID, IA_NA)));
  test("bad options", () => {
    count("truncated", SOLICIT.subarray(0, 3));
    count("badOption", SOLICIT.subarray(0, SOLICIT.length - 1));
    count("badOption", msg(1, CID, "0003"));
    count("badOption", msg(1, opt(1, "0001"), IA_NA));
    count("badOption", msg(1, CID, opt(3, "0000000b0000")));
    count("badOption", msg(1, CID, opt(3, "0000000b0000000000000000" + "00050018")));
    count("badOption", msg(1, CID, opt(6, "001700"), IA_NA));
    count("badOption", msg(1, CID, opt(14, "00"), IA_NA));
    count("badOption", msg(1, CID, opt(1, "00".repeat(131)), IA_NA));
  });
  test("no room", () => {
    const out = new Uint8Array(40);
    expect(dhcpv6Reply(cfg, SOLICIT, 0, SOLICIT.length, out, 0)).toBe(0);
    expect(dhcpv6Reply(cfg, SOLICIT, 0, SOLICIT.length, new Uint8Array(600), 590)).toBe(0);
    expect(dhcpv6Reply(cfg, SOLICIT, 0, SOLICIT.length, new Uint8Array(600), -1)).toBe(0);
  });
  test("range outside the buffer", () => {
    const out = new Uint8Array(600);
    expect(dhcpv6Reply(cfg, SOLICIT, 1, SOLICIT.length, out, 0)).toBe(0);
    expect(dhcpv6Reply(cfg, SOLICIT, -4, 8, out, 0)).toBe(0);
  });
});

describe("hostile input never throws", () => {
  const out = new Uint8Array(1500);
  const check = (b: Uint8Array) => {
    const n = dhcpv6Reply(cfg, b, 0, b.length, out, 0);
    expect(n >= 0 && n <= 1452).toBe(true);
    if (n > 0) decode(out.subarray(0, n));
  };
  const all = [SOLICIT, REQUEST, RELEASE, SOLICIT_RAPID, INFO_REQ];

  test("every truncation of real messages", () => {
    for (const m of all) for (let l = 0; l <= m.length; l++) check(m.subarray(0, l));
  });

  test("every single-byte corruption", () => {
    for (const m of all) {
      for (let i = 0; i < m.length; i++) {
        for (const v of [0, 1, 3, 5, 0x0c, 0x18, 0x7f, 0xff]) {
          const b = m.slice();
          b[i] = v;
          check(b);
        }
      }
    }
  });

  test("random option soup", () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
    for (let k = 0; k < 3000; k++) {
      const m = new Uint8Array(4 + (rnd() % 120));
      for (let i = 0; i < m.length; i++) m[i] = rnd() % 2 ? rnd() % 16 : rnd();
      m[0] = 1 + (rnd() % 11);
      check(m);
    }
  });
});
