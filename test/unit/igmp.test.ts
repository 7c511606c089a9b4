/**
 * IGMP and MLD reading and query building (src/wire/igmp.ts), and the
 * group address helpers of src/flows/mcast.ts: real reports, then every kind
 * of bad input a guest can send (bad lengths, checksums, source lists past
 * the end, group addresses that are not multicast), which must change
 * nothing.
 */
import { describe, expect, test } from "bun:test";
import {
  FILTER_EXCLUDE,
  FILTER_INCLUDE,
  groupMac,
  isProxied,
  MCAST_MAX_SOURCES,
  SourceFilters,
  wellKnownPorts,
} from "../../src/flows/mcast.ts";
import { checksum, l4Checksum6 } from "../../src/wire/checksum.ts";
import {
  IGMP_IP_HLEN,
  IGMP_V3_QUERY_LEN,
  CHANGE_TO_EXCLUDE as TO_EX,
  CHANGE_TO_INCLUDE as TO_IN,
  MCAST_BAD_CSUM,
  MCAST_IGNORED,
  MCAST_MALFORMED,
  MCAST_NOT_GROUP,
  newMcastChanges,
  mcastParseIgmp,
  mcastParseMld,
  MLD_HBH_LEN,
  MLD_V2_QUERY_LEN,
  writeIgmpQuery,
  writeMldQuery,
} from "../../src/wire/igmp.ts";
import { IPPROTO_ICMPV6 } from "../../src/wire/ipv6.ts";
import { GUEST_FRAMES } from "../tools/guest-frames.ts";

const out = newMcastChanges();
const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));

/** An IGMP message from its bytes with a correct checksum. */
function igmp(body: number[]): Uint8Array {
  const b = Uint8Array.from(body);
  b[2] = 0;
  b[3] = 0;
  const c = checksum(b, 0, b.length);
  b[2] = c >> 8;
  b[3] = c & 255;
  return b;
}

/** An IGMPv3 report of records [type, group (4 bytes), sources (4 bytes each)]. */
function v3report(records: { type: number; group: number[]; sources?: number[][]; aux?: number }[]): Uint8Array {
  const body = [0x22, 0, 0, 0, 0, 0, records.length >> 8, records.length & 255];
  for (const r of records) {
    const src = r.sources ?? [];
    body.push(r.type, r.aux ?? 0, src.length >> 8, src.length & 255, ...r.group);
    for (const s of src) body.push(...s);
    for (let k = 0; k < (r.aux ?? 0) * 4; k++) body.push(0);
  }
  return igmp(body);
}

function changes(): [number, string][] {
  const list: [number, string][] = [];
  for (let k = 0; k < out.n; k++) list.push([out.type[k]!, Buffer.from(out.addr.subarray(k * 16, k * 16 + 16)).toString("hex")]);
  return list;
}

const G1 = [239, 1, 2, 3];
const G1HEX = "ef010203" + "00".repeat(12);

describe("IGMP reports", () => {
  test("v1 and v2 reports read as TO_EX {} (any source), v2 leaves as TO_IN {}", () => {
    expect(mcastParseIgmp(igmp([0x16, 0, 0, 0, ...G1]), 0, 8, out)).toBe(1);
    expect(changes()).toEqual([[TO_EX, G1HEX]]);
    expect(out.nsrc[0]).toBe(0);
    expect(mcastParseIgmp(igmp([0x12, 0, 0, 0, ...G1]), 0, 8, out)).toBe(1);
    expect(changes()).toEqual([[TO_EX, G1HEX]]);
    expect(mcastParseIgmp(igmp([0x17, 0, 0, 0, ...G1]), 0, 8, out)).toBe(1);
    expect(changes()).toEqual([[TO_IN, G1HEX]]);
  });

  test("v3 records: every known type with its group and where its sources are; unknown types skipped", () => {
    const m = v3report([
      { type: 4, group: G1 },
      { type: 2, group: [224, 0, 0, 251] },
      { type: 3, group: [239, 9, 9, 9] },
      { type: 1, group: [239, 8, 8, 8], sources: [[192, 0, 2, 1]] },
      {
        type: 5,
        group: [239, 7, 7, 7],
        sources: [
          [192, 0, 2, 1],
          [192, 0, 2, 9],
        ],
        aux: 1,
      },
      { type: 6, group: [239, 6, 6, 6], sources: [[192, 0, 2, 1]] },
      { type: 99, group: [239, 5, 5, 5] },
    ]);
    expect(mcastParseIgmp(m, 0, m.length, out)).toBe(6);
    expect(changes().map(([a, g]) => [a, g.slice(0, 8)])).toEqual([
      [4, "ef010203"],
      [2, "e00000fb"],
      [3, "ef090909"],
      [1, "ef080808"],
      [5, "ef070707"],
      [6, "ef060606"],
    ]);
    const sources = (k: number) =>
      Array.from({ length: out.nsrc[k]! }, (_, i) => Array.from(m.subarray(out.src[k]! + 4 * i, out.src[k]! + 4 * i + 4)));
    expect(sources(0)).toEqual([]);
    expect(sources(3)).toEqual([[192, 0, 2, 1]]);
    expect(sources(4)).toEqual([
      [192, 0, 2, 1],
      [192, 0, 2, 9],
    ]);
    expect(sources(5)).toEqual([[192, 0, 2, 1]]);
  });

  test("a report inside a frame: offsets are honoured", () => {
    const m = v3report([{ type: 4, group: G1 }]);
    const b = new Uint8Array(100);
    b.set(m, 37);
    expect(mcastParseIgmp(b, 37, m.length, out)).toBe(1);
  });

  test("queries from the guest and unknown types are ignored", () => {
    expect(mcastParseIgmp(igmp([0x11, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0, 12, out)).toBe(MCAST_IGNORED);
    expect(mcastParseIgmp(igmp([0x33, 0, 0, 0, ...G1]), 0, 8, out)).toBe(MCAST_IGNORED);
  });

  test("bad input changes nothing: short, bad checksum, records and source lists past the end, groups that are not multicast", () => {
    const good = v3report([
      { type: 4, group: G1 },
      { type: 5, group: G1, sources: [[1, 2, 3, 4]] },
    ]);
    expect(mcastParseIgmp(good, 0, 4, out)).toBe(MCAST_MALFORMED);
    expect(out.n).toBe(0);
    expect(mcastParseIgmp(good, 0, good.length + 10, out)).toBe(MCAST_MALFORMED);
    const badSum = good.slice();
    badSum[3]! ^= 1;
    expect(mcastParseIgmp(badSum, 0, badSum.length, out)).toBe(MCAST_BAD_CSUM);
    // one record more than the message holds
    const tooMany = good.slice();
    tooMany[7] = 3;
    expect(mcastParseIgmp(igmp([...tooMany]), 0, tooMany.length, out)).toBe(MCAST_MALFORMED);
    // a source count past the end (the first record's changes must not be kept)
    const longSrc = good.slice();
    longSrc[8 + 8 + 3] = 200;
    expect(mcastParseIgmp(igmp([...longSrc]), 0, longSrc.length, out)).toBe(MCAST_MALFORMED);
    expect(out.n).toBe(0);
    // aux data past the end
    const longAux = good.slice();
    longAux[8 + 1] = 50;
    expect(mcastParseIgmp(igmp([...longAux]), 0, longAux.length, out)).toBe(MCAST_MALFORMED);
    // not multicast: unicast, broadcast, 0.0.0.0, in v2 and in a v3 record
    for (const g of [
      [192, 0, 2, 1],
      [255, 255, 255, 255],
      [0, 0, 0, 0],
      [240, 0, 0, 1],
    ]) {
      expect(mcastParseIgmp(igmp([0x16, 0, 0, 0, ...g]), 0, 8, out)).toBe(MCAST_NOT_GROUP);
      const r = v3report([
        { type: 4, group: G1 },
        { type: 4, group: g },
      ]);
      expect(mcastParseIgmp(r, 0, r.length, out)).toBe(MCAST_NOT_GROUP);
      expect(out.n).toBe(0);
    }
  });

  test("a report for thousands of groups: every one read, within the fixed table", () => {
    const recs = Array.from({ length: 8000 }, (_, i) => ({ type: 4, group: [239, 100 + (i >> 16), (i >> 8) & 255, i & 255] }));
    const m = v3report(recs);
    expect(mcastParseIgmp(m, 0, m.length, out)).toBe(8000);
    // the largest count a 16-bit field can claim, over a short message
    const lie = igmp([0x22, 0, 0, 0, 0, 0, 0xff, 0xff, 4, 0, 0, 0, ...G1]);
    expect(mcastParseIgmp(lie, 0, lie.length, out)).toBe(MCAST_MALFORMED);
  });
});

describe("MLD reports", () => {
  test("a real MLDv2 report (the kernel joining its solicited-node group) joins it; we don't proxy that one", () => {
    const f = GUEST_FRAMES.ICMP6_TYPE143!;
    // Ethernet 14, IPv6 40, hop-by-hop 8
    const l4 = 14 + 40 + 8;
    expect(l4Checksum6(f, 14, l4, f.length - l4, IPPROTO_ICMPV6)).toBe(0);
    expect(mcastParseMld(f, l4, f.length - l4, out)).toBe(1);
    expect(changes()).toEqual([[TO_EX, "ff0200000000000000000001ffcd1588"]]);
    expect(isProxied(out.addr, 0, true)).toBe(false);
  });

  test("MLDv1 report and done; v2 records as IGMPv3's", () => {
    const grp = hex("ff150000000000000000000000001234");
    const v1 = new Uint8Array(24);
    v1[0] = 131;
    v1.set(grp, 8);
    expect(mcastParseMld(v1, 0, 24, out)).toBe(1);
    expect(changes()).toEqual([[TO_EX, "ff150000000000000000000000001234"]]);
    v1[0] = 132;
    expect(mcastParseMld(v1, 0, 24, out)).toBe(1);
    expect(changes()[0]![0]).toBe(TO_IN);
    expect(mcastParseMld(v1, 0, 20, out)).toBe(MCAST_MALFORMED);
    const v2 = new Uint8Array(8 + 2 * 20);
    v2[0] = 143;
    v2[7] = 2;
    v2[8] = 4;
    v2.set(grp, 12);
    v2[28] = 3;
    v2.set(grp, 32);
    expect(mcastParseMld(v2, 0, v2.length, out)).toBe(2);
    expect(changes().map((c) => c[0])).toEqual([TO_EX, TO_IN]);
    // a source list past the end, and a group that is not multicast
    const bad = v2.slice();
    bad[28 + 3] = 1;
    expect(mcastParseMld(bad, 0, bad.length, out)).toBe(MCAST_MALFORMED);
    const uni = v2.slice();
    uni[32] = 0x20;
    expect(mcastParseMld(uni, 0, uni.length, out)).toBe(MCAST_NOT_GROUP);
    expect(out.n).toBe(0);
    v1[0] = 131;
    v1[8] = 0xfe;
    expect(mcastParseMld(v1, 0, 24, out)).toBe(MCAST_NOT_GROUP);
    v1[0] = 130;
    expect(mcastParseMld(v1, 0, 24, out)).toBe(MCAST_IGNORED);
  });
});

describe("queries and group addresses", () => {
  test("IGMPv3 general query: Router Alert, TTL 1, to 224.0.0.1, both checksums right, codes for 10 s and 125 s", () => {
    const b = new Uint8Array(IGMP_IP_HLEN + IGMP_V3_QUERY_LEN);
    expect(writeIgmpQuery(b, 0, 0xc0000201, 10_000, 125)).toBe(36);
    expect(Buffer.from(b).toString("hex")).toBe(
      "46c00024000040000102" +
        Buffer.from(b.subarray(10, 12)).toString("hex") +
        "c0000201e000000194040000" +
        "1164" +
        Buffer.from(b.subarray(26, 28)).toString("hex") +
        "00000000027d0000",
    );
    expect(checksum(b, 0, IGMP_IP_HLEN)).toBe(0);
    expect(checksum(b, IGMP_IP_HLEN, IGMP_V3_QUERY_LEN)).toBe(0);
    // 260 s would not fit in 7 bits: the exponent form (RFC 3376 4.1.7)
    writeIgmpQuery(b, 0, 0xc0000201, 10_000, 260);
    const code = b[IGMP_IP_HLEN + 9]!;
    expect(((code & 0x0f) | 0x10) << (((code >> 4) & 7) + 3)).toBe(256);
  });

  test("MLDv2 general query: hop-by-hop Router Alert, 28 bytes", () => {
    const b = new Uint8Array(MLD_HBH_LEN + MLD_V2_QUERY_LEN);
    const q = writeMldQuery(b, 0, 10_000, 125);
    expect(q).toBe(8);
    expect(Buffer.from(b.subarray(0, 8)).toString("hex")).toBe("3a00050200000100");
    expect(b[q]).toBe(130);
    expect((b[q + 4]! << 8) | b[q + 5]!).toBe(10_000);
    expect([b[q + 24], b[q + 25], b[q + 26], b[q + 27]]).toEqual([2, 125, 0, 0]);
  });

  test("group MACs, and the groups we don't proxy", () => {
    const mac = new Uint8Array(6);
    groupMac(mac, Uint8Array.of(239, 129, 2, 3), 0, false);
    expect(Buffer.from(mac).toString("hex")).toBe("01005e010203");
    groupMac(mac, hex("ff0200000000000000000000000000fb"), 0, true);
    expect(Buffer.from(mac).toString("hex")).toBe("3333000000fb");
    expect(isProxied(Uint8Array.of(224, 0, 0, 1), 0, false)).toBe(false);
    expect(isProxied(Uint8Array.of(224, 0, 0, 251), 0, false)).toBe(true);
    expect(isProxied(hex("ff020000000000000000000000000001"), 0, true)).toBe(false);
    expect(isProxied(hex("ff0200000000000000000000000000fb"), 0, true)).toBe(true);
  });
});

describe("source filters (the guest's INCLUDE / EXCLUDE lists)", () => {
  const A = Uint8Array.of(192, 0, 2, 1);
  const B = Uint8Array.of(198, 51, 100, 1);
  const C = Uint8Array.of(203, 0, 113, 7);
  const AB = Uint8Array.of(...A, ...B);
  const passing = (f: SourceFilters, g: number) => [A, B, C].map((s) => f.passes(g, s, 0, false));

  test("INCLUDE passes its sources only, EXCLUDE all but its own; ALLOW and BLOCK change each as RFC 3376 6.4 says", () => {
    const f = new SourceFilters();
    f.set(3, FILTER_EXCLUDE, AB, 0, 0, false);
    expect(passing(f, 3)).toEqual([true, true, true]);
    f.set(3, FILTER_INCLUDE, AB, 0, 1, false);
    expect(passing(f, 3)).toEqual([true, false, false]);
    f.allow(3, AB, 4, 1, false);
    expect(passing(f, 3)).toEqual([true, true, false]);
    f.block(3, AB, 0, 1, false);
    expect(passing(f, 3)).toEqual([false, true, false]);
    expect(f.none(3)).toBe(false);
    f.block(3, AB, 4, 1, false);
    expect(f.none(3)).toBe(true);
    f.set(3, FILTER_EXCLUDE, AB, 0, 2, false);
    expect(passing(f, 3)).toEqual([false, false, true]);
    f.allow(3, AB, 0, 1, false);
    expect(passing(f, 3)).toEqual([true, false, true]);
    f.block(3, C, 0, 1, false);
    expect(passing(f, 3)).toEqual([true, false, false]);
    // another group is untouched
    f.set(4, FILTER_INCLUDE, B, 0, 1, false);
    expect(passing(f, 4)).toEqual([false, true, false]);
    expect(passing(f, 3)).toEqual([true, false, false]);
  });

  test("IPv6 sources, 16 bytes each", () => {
    const f = new SourceFilters();
    const s6 = hex("20010db8000100000000000000000001" + "20010db8000000000000000000000001");
    f.set(0, FILTER_INCLUDE, s6, 0, 1, true);
    expect(f.passes(0, s6, 0, true)).toBe(true);
    expect(f.passes(0, s6, 16, true)).toBe(false);
  });

  test("a list longer than the table widens the filter, never narrows it", () => {
    const f = new SourceFilters();
    const many = new Uint8Array(4 * (MCAST_MAX_SOURCES + 1));
    for (let i = 0; i <= MCAST_MAX_SOURCES; i++) many.set([10, 0, 0, i + 1], 4 * i);
    f.set(1, FILTER_INCLUDE, many, 0, MCAST_MAX_SOURCES + 1, false);
    expect(f.mode[1]).toBe(FILTER_EXCLUDE);
    expect(passing(f, 1)).toEqual([true, true, true]);
    f.set(2, FILTER_EXCLUDE, many, 0, MCAST_MAX_SOURCES + 1, false);
    expect(f.passes(2, many, 0, false)).toBe(false);
    expect(f.passes(2, many, 4 * MCAST_MAX_SOURCES, false)).toBe(true);
  });

  test("well-known groups carry their service's port", () => {
    expect(wellKnownPorts(Uint8Array.of(224, 0, 0, 251), 0, false)).toEqual([5353]);
    expect(wellKnownPorts(hex("ff0200000000000000000000000000fb"), 0, true)).toEqual([5353]);
    expect(wellKnownPorts(Uint8Array.of(239, 255, 255, 250), 0, false)).toEqual([1900, 3702]);
    expect(wellKnownPorts(Uint8Array.of(239, 1, 2, 3), 0, false)).toEqual([]);
  });
});
