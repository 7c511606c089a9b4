import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { formatIp6, formatMac, parseIp6 } from "../../src/conf/config.ts";
import {
  AF_INET,
  AF_INET6,
  addrAdd,
  addrCopies,
  addRoutes,
  collectReplies,
  getAddrs,
  getLinks,
  getMainRoutes,
  getRoutes,
  ip4FromBytes,
  ip4ToBytes,
  IFA_F_NODAD,
  IFF_UP,
  linkIndex,
  linkSet,
  makeTalk,
  NetlinkError,
  openNetlink,
  routeAdd,
  routeCopies,
  RT_SCOPE_LINK,
  RT_TABLE_MAIN,
  type NlSys,
  type NlTalk,
} from "../../src/conf/netlink.ts";
import { ACK, ADDR, canned, ERR_EEXIST, ERR_ENODEV, ERR_UNREACH, libcSys, LINK, ROUTE4, ROUTE6 } from "./netlink-fixtures.ts";

/** A u16/u32 of a request, host order (little-endian on the hosts we run on). */
function u16(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint16(off, true);
}
function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off, true);
}

describe("queries on captured kernel answers", () => {
  test("IPv4 default route", () => {
    const sent: Uint8Array[] = [];
    const routes = getRoutes(canned(ROUTE4, sent), AF_INET);
    expect(routes).toEqual([{ ifindex: 3, gateway: Uint8Array.of(192, 0, 2, 1), table: RT_TABLE_MAIN, metric: 0 }]);
    expect(ip4FromBytes(routes[0]!.gateway!)).toBe(0xc0000201);
    const req = sent[0]!;
    expect(u32(req, 0)).toBe(req.length);
    expect(u16(req, 4)).toBe(26); // RTM_GETROUTE
    expect(u16(req, 6)).toBe(0x301); // NLM_F_REQUEST | NLM_F_DUMP
    expect(req[16]).toBe(AF_INET);
  });

  test("IPv6 default route via a link-local gateway", () => {
    const routes = getRoutes(canned(ROUTE6), AF_INET6);
    expect(routes.length).toBe(1);
    expect(routes[0]!.ifindex).toBe(3);
    expect(formatIp6(routes[0]!.gateway!)).toBe("fe80::1");
    expect(routes[0]!.metric).toBe(1024);
    expect(routes[0]!.table).toBe(RT_TABLE_MAIN);
  });

  test("routes of the other family are ignored", () => {
    expect(getRoutes(canned(ROUTE4), AF_INET6)).toEqual([]);
  });

  test("addresses of one interface and family", () => {
    const v4 = getAddrs(canned(ADDR), AF_INET, 3);
    expect(v4).toEqual([{ addr: Uint8Array.of(192, 0, 2, 2), prefixLen: 24, scope: 0, flags: 0x80 }]);
    const v6 = getAddrs(canned(ADDR), AF_INET6, 3);
    expect(v6.map((a) => [formatIp6(a.addr), a.prefixLen, a.scope])).toEqual([
      ["2001:db8::2", 64, 0],
      ["fe80::ff:fe00:1", 64, RT_SCOPE_LINK],
    ]);
    expect(v6[0]!.flags & IFA_F_NODAD).toBe(IFA_F_NODAD);
    expect(getAddrs(canned(ADDR), AF_INET, 2)).toEqual([]);
  });

  test("links", () => {
    const links = getLinks(canned(LINK));
    expect(links.map((l) => [l.ifindex, l.name, formatMac(l.mac), l.mtu, (l.flags & IFF_UP) !== 0])).toEqual([
      [1, "lo", "00:00:00:00:00:00", 65536, false],
      [2, "v1", "8a:72:fc:72:b6:e6", 1500, true],
      [3, "v0", "02:00:00:00:00:01", 1500, true],
    ]);
    expect(linkIndex(canned(LINK), "v0")).toBe(3);
    expect(() => linkIndex(canned(LINK), "eth9")).toThrow("interface eth9: ENODEV");
  });
});

/** The attributes of a request after its fixed header of fixedLen bytes, as [type, bytes] in order. */
function attrsOf(req: Uint8Array, fixedLen: number): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let off = 16 + fixedLen; off + 4 <= req.length; ) {
    const len = u16(req, off);
    out.push([u16(req, off + 2), req.subarray(off + 4, off + len)]);
    off += (len + 3) & ~3;
  }
  return out;
}

describe("copying a host interface's routes and addresses (captured dumps)", () => {
  const RTA_DST = 1,
    RTA_OIF = 4,
    RTA_GATEWAY = 5,
    RTA_PREFSRC = 7,
    RTA_CACHEINFO = 12,
    RTA_PREF = 20;
  const IFA_LOCAL = 2,
    IFA_LABEL = 3,
    IFA_CACHEINFO = 6,
    IFA_FLAGS = 8;

  test("getMainRoutes: every unicast route of the main table, with its interfaces", () => {
    const r4 = getMainRoutes(canned(ROUTE4), AF_INET);
    expect(r4.map((r) => [r.dstLen, r.dst && [...r.dst].join("."), r.ifindexes])).toEqual([
      [0, null, [3]],
      [24, "192.0.2.0", [3]],
    ]);
    const r6 = getMainRoutes(canned(ROUTE6), AF_INET6);
    expect(r6.map((r) => [r.dst ? formatIp6(r.dst) : null, r.dstLen, r.ifindexes])).toEqual([
      ["2001:db8::", 64, [3]],
      ["fe80::", 64, [2]],
      ["fe80::", 64, [3]],
      [null, 0, [3]],
    ]);
  });

  test("routeCopies: routes through the interface only, on the new one, without preferred source or cache info", () => {
    const reqs = routeCopies(getMainRoutes(canned(ROUTE4), AF_INET), 3, 7);
    expect(reqs.length).toBe(2);
    for (const req of reqs) {
      expect(u16(req, 4)).toBe(24); // RTM_NEWROUTE
      expect(u16(req, 6)).toBe(0x1 | 0x4 | 0x200 | 0x400); // REQUEST, ACK, EXCL, CREATE
      expect(u32(req, 0)).toBe(req.length);
      expect(req[16]).toBe(AF_INET);
    }
    const [def, prefix] = reqs.map((r) => new Map(attrsOf(r, 12)));
    expect(u32(def!.get(RTA_OIF)!, 0)).toBe(7);
    expect([...def!.get(RTA_GATEWAY)!]).toEqual([192, 0, 2, 1]);
    expect(reqs[1]![17]).toBe(24);
    expect([...prefix!.get(RTA_DST)!]).toEqual([192, 0, 2, 0]);
    expect(prefix!.has(RTA_PREFSRC)).toBe(false);
    expect(u32(prefix!.get(RTA_OIF)!, 0)).toBe(7);
    expect(routeCopies(getMainRoutes(canned(ROUTE4), AF_INET), 2, 7)).toEqual([]);

    const six = routeCopies(getMainRoutes(canned(ROUTE6), AF_INET6), 3, 9).map((r) => new Map(attrsOf(r, 12)));
    expect(six.length).toBe(3);
    for (const a of six) {
      expect(u32(a.get(RTA_OIF)!, 0)).toBe(9);
      expect(a.has(RTA_CACHEINFO)).toBe(false);
      expect(a.has(RTA_PREF)).toBe(true);
    }
    expect(formatIp6(six[2]!.get(RTA_GATEWAY)!)).toBe("fe80::1");
  });

  test("addrCopies: every address of the interface but link-local ones, with NODAD, without label and lifetimes", () => {
    const sent: Uint8Array[] = [];
    const v4 = addrCopies(canned(ADDR, sent), AF_INET, 3, 7);
    expect(u16(sent[0]!, 4)).toBe(22); // RTM_GETADDR
    expect(v4.length).toBe(1);
    const req = v4[0]!;
    expect(u16(req, 4)).toBe(20); // RTM_NEWADDR
    expect([req[16], req[17], req[18]! & IFA_F_NODAD, u32(req, 20)]).toEqual([AF_INET, 24, IFA_F_NODAD, 7]);
    const a = new Map(attrsOf(req, 8));
    expect([...a.get(IFA_LOCAL)!]).toEqual([192, 0, 2, 2]);
    expect(a.has(IFA_LABEL)).toBe(false);
    expect(a.has(IFA_CACHEINFO)).toBe(false);
    expect(u32(a.get(IFA_FLAGS)!, 0) & IFA_F_NODAD).toBe(IFA_F_NODAD);
    const v6 = addrCopies(canned(ADDR), AF_INET6, 3, 7);
    expect(v6.map((r) => [formatIp6(new Map(attrsOf(r, 8)).get(1)!), r[17], r[19]])).toEqual([["2001:db8::2", 64, 0]]);
  });

  test("addRoutes: again while some are unreachable, EEXIST passed over, other refusals thrown", () => {
    const A = Uint8Array.of(1),
      B = Uint8Array.of(2),
      C = Uint8Array.of(3);
    const tries: number[] = [];
    const added = new Set<number>();
    const talk: NlTalk = (req) => {
      const id = req[0]!;
      tries.push(id);
      if (id === 1 && !added.has(2)) throw new NetlinkError(101, "netlink");
      if (id === 3) throw new NetlinkError(17, "netlink");
      added.add(id);
      return [];
    };
    addRoutes(talk, [A, B, C]);
    expect([...added].sort()).toEqual([1, 2]);
    expect(tries).toEqual([1, 2, 3, 1]);
    const never: NlTalk = () => {
      throw new NetlinkError(113, "netlink");
    };
    expect(() => addRoutes(never, [A, B])).not.toThrow();
    const refused: NlTalk = () => {
      throw new NetlinkError(1, "netlink");
    };
    expect(() => addRoutes(refused, [A])).toThrow("EPERM");
  });
});

describe("errors and acknowledgements", () => {
  test("an acknowledgement ends the answer with no messages", () => {
    const out: Uint8Array[] = [];
    expect(collectReplies(ACK[0]!, null, out)).toBe(true);
    expect(out).toEqual([]);
  });

  test("negative answers carry the errno and the extended ack text", () => {
    const cases: [Uint8Array, number, string][] = [
      [ERR_EEXIST[0]!, 17, "netlink: EEXIST (ipv4: Address already assigned)"],
      [ERR_UNREACH[0]!, 101, "netlink: ENETUNREACH (Nexthop has invalid gateway)"],
      [ERR_ENODEV[0]!, 19, "netlink: ENODEV"],
    ];
    for (const [dg, errno, msg] of cases) {
      let err: unknown;
      try {
        collectReplies(dg, null, []);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NetlinkError);
      expect((err as NetlinkError).errno).toBe(errno);
      expect((err as NetlinkError).message).toBe(msg);
    }
  });

  test("stale sequence numbers are skipped", () => {
    const out: Uint8Array[] = [];
    expect(collectReplies(ROUTE4[0]!, 12345, out)).toBe(false);
    expect(out).toEqual([]);
  });

  test("truncated datagrams are rejected", () => {
    expect(() => collectReplies(ROUTE4[0]!.subarray(0, 40), null, [])).toThrow("malformed");
  });
});

describe("change requests", () => {
  test("linkSet sends MTU and MAC, then the up flag", () => {
    const sent: Uint8Array[] = [];
    linkSet(canned(ACK, sent), 7, { mtu: 65520, mac: Uint8Array.of(2, 0, 0, 0, 0, 9), up: true });
    expect(sent.length).toBe(2);
    const [attrs, up] = sent as [Uint8Array, Uint8Array];
    expect(u16(attrs, 4)).toBe(16); // RTM_NEWLINK
    expect(u16(attrs, 6)).toBe(0x5); // REQUEST | ACK
    expect(u32(attrs, 20)).toBe(7);
    expect([...attrs.subarray(32)]).toEqual([
      8,
      0,
      4,
      0,
      0xf0,
      0xff,
      0,
      0, // IFLA_MTU 65520
      10,
      0,
      1,
      0,
      2,
      0,
      0,
      0,
      0,
      9,
      0,
      0, // IFLA_ADDRESS, padded
    ]);
    expect(u32(up, 0)).toBe(32);
    expect(u32(up, 24)).toBe(IFF_UP);
    expect(u32(up, 28)).toBe(IFF_UP);
  });

  test("addrAdd", () => {
    const sent: Uint8Array[] = [];
    addrAdd(canned(ACK, sent), AF_INET6, 4, parseIp6("2001:db8::5"), 64, { nodad: true });
    const req = sent[0]!;
    expect(u16(req, 4)).toBe(20); // RTM_NEWADDR
    expect(u16(req, 6)).toBe(0x605); // REQUEST | ACK | EXCL | CREATE
    expect([...req.subarray(16, 24)]).toEqual([AF_INET6, 64, IFA_F_NODAD, 0, 4, 0, 0, 0]);
    expect(u32(req, 0)).toBe(16 + 8 + 20 + 20 + 8);
  });

  test("routeAdd", () => {
    const sent: Uint8Array[] = [];
    routeAdd(canned(ACK, sent), AF_INET, 4, ip4ToBytes(0xc0000201));
    routeAdd(canned(ACK, sent), AF_INET, 4, null, { addr: ip4ToBytes(0xc6336400), prefixLen: 24 });
    const [dflt, conn] = sent as [Uint8Array, Uint8Array];
    expect(u16(dflt, 4)).toBe(24); // RTM_NEWROUTE
    expect([...dflt.subarray(16, 24)]).toEqual([AF_INET, 0, 0, 0, RT_TABLE_MAIN, 3, 0, 1]);
    expect([...dflt.subarray(28)]).toEqual([8, 0, 4, 0, 4, 0, 0, 0, 8, 0, 5, 0, 192, 0, 2, 1]);
    expect([...conn.subarray(16, 24)]).toEqual([AF_INET, 24, 0, 0, RT_TABLE_MAIN, 3, RT_SCOPE_LINK, 1]);
    expect([...conn.subarray(28)]).toEqual([8, 0, 4, 0, 4, 0, 0, 0, 8, 0, 1, 0, 198, 51, 100, 0]);
  });

  test("a refused change throws", () => {
    expect(() => addrAdd(canned(ERR_EEXIST), AF_INET, 3, ip4ToBytes(0xc0000202), 24)).toThrow(NetlinkError);
  });
});

/** Run ip(8) with args, return stdout; throws on failure. */
function ip(...args: string[]): string {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const canNetns = process.getuid?.() === 0 && spawnSync("ip", ["-V"]).status === 0;

/** Socket calls to test the real transport with: plain libc, and the C shim (which enters the namespace on a thread). */
const transports: [string, () => NlSys][] = [
  ["libc", libcSys],
  ["shim", () => (require("../../src/native/ffi.ts") as { sys: NlSys }).sys],
];

describe.skipIf(!canNetns).each(transports)("real netlink socket (%s) in a scratch namespace", (name, makeIo) => {
  const ns = `nltest${name}${process.pid}`;
  let nsfd = -1;
  let fd = -1;
  let talk: NlTalk;
  let io: NlSys;

  beforeAll(() => {
    ip("netns", "add", ns);
    ip("-n", ns, "link", "add", "t0", "type", "veth", "peer", "name", "t1");
    io = makeIo();
    nsfd = openSync(`/run/netns/${ns}`, "r");
    fd = openNetlink(nsfd, io);
    talk = makeTalk(fd, io);
  });

  afterAll(() => {
    if (fd >= 0) io.shim_close(fd);
    if (nsfd >= 0) closeSync(nsfd);
    spawnSync("ip", ["netns", "del", ns]);
  });

  test("configure an interface and read it back", () => {
    const idx = linkIndex(talk, "t0");
    const peer = linkIndex(talk, "t1");
    const mac = Uint8Array.of(2, 0x42, 0, 0, 0, 7);
    linkSet(talk, idx, { mtu: 1400, mac, up: true });
    linkSet(talk, peer, { up: true });
    addrAdd(talk, AF_INET, idx, ip4ToBytes(0xc0000202), 24);
    addrAdd(talk, AF_INET6, idx, parseIp6("2001:db8::2"), 64, { nodad: true });
    routeAdd(talk, AF_INET, idx, ip4ToBytes(0xc0000201));
    routeAdd(talk, AF_INET6, idx, parseIp6("fe80::1"));

    const link = getLinks(talk).find((l) => l.ifindex === idx)!;
    expect([link.name, formatMac(link.mac), link.mtu, (link.flags & IFF_UP) !== 0]).toEqual(["t0", "02:42:00:00:00:07", 1400, true]);
    expect(getAddrs(talk, AF_INET, idx).map((a) => [ip4FromBytes(a.addr), a.prefixLen])).toEqual([[0xc0000202, 24]]);
    expect(getAddrs(talk, AF_INET6, idx).some((a) => formatIp6(a.addr) === "2001:db8::2" && a.prefixLen === 64)).toBe(true);
    const r4 = getRoutes(talk, AF_INET).filter((r) => r.table === RT_TABLE_MAIN);
    expect(r4).toEqual([{ ifindex: idx, gateway: Uint8Array.of(192, 0, 2, 1), table: RT_TABLE_MAIN, metric: 0 }]);
    const r6 = getRoutes(talk, AF_INET6).filter((r) => r.table === RT_TABLE_MAIN);
    expect(r6.map((r) => [r.ifindex, formatIp6(r.gateway!)])).toEqual([[idx, "fe80::1"]]);

    expect(ip("-n", ns, "-4", "route", "show", "default").trim()).toBe("default via 192.0.2.1 dev t0");
    expect(ip("-n", ns, "-4", "addr", "show", "dev", "t0")).toContain("inet 192.0.2.2/24");
  });

  test("errors come back as NetlinkError with errno", () => {
    const idx = linkIndex(talk, "t0");
    let err: unknown;
    try {
      addrAdd(talk, AF_INET, idx, ip4ToBytes(0xc0000202), 24);
    } catch (e) {
      err = e;
    }
    expect((err as NetlinkError).errno).toBe(17);
    expect((err as NetlinkError).message).toStartWith("netlink: EEXIST");
    expect(() => routeAdd(talk, AF_INET, idx, ip4ToBytes(0x0a090909), { addr: ip4ToBytes(0xcb007100), prefixLen: 24 })).toThrow(
      "ENETUNREACH",
    );
  });
});
