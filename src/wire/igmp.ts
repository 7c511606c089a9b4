/**
 * IGMP (RFC 1112, 2236, 3376) and MLD (RFC 2710, 3810): the group
 * membership messages a guest's kernel sends, read into a list of joins and
 * leaves, and the general queries we send it as its link's querier.
 *
 * Reading: mcastParseIgmp / mcastParseMld check the whole message first
 * (length, checksum for IGMP, every record and its source list inside the
 * message, every group address multicast) and only then fill the caller's
 * McastChanges (newMcastChanges, made once: no allocation per message); a
 * message that fails any check yields no change at all.
 *
 * Each change is a group record as RFC 3376 4.2.12 / RFC 3810 5.2.12 give
 * it: its type, its group, and where its source list lies in the message
 * (what the records mean for the guest's filter is flows/mcast.ts's
 * business). The older messages are read as the records they stand for
 * (RFC 3376 7.3.2, RFC 3810 8.3.2): an IGMPv1/v2 report or MLDv1 report is
 * CHANGE_TO_EXCLUDE {} (any source), an IGMPv2 leave or MLD done
 * CHANGE_TO_INCLUDE {}. Records of unknown types are skipped.
 */
import { rd16, rd32, wr16, wr32 } from "./bytes.ts";
import { checksum } from "./checksum.ts";

export const IPPROTO_IGMP = 2;

export const IGMP_QUERY = 0x11;
export const IGMP_V1_REPORT = 0x12;
export const IGMP_V2_REPORT = 0x16;
export const IGMP_V2_LEAVE = 0x17;
export const IGMP_V3_REPORT = 0x22;

export const MLD_QUERY = 130;
export const MLD_V1_REPORT = 131;
export const MLD_V1_DONE = 132;
export const MLD_V2_REPORT = 143;

/** IGMPv1/v2 messages and the fixed part of a v3 report. */
const IGMP_MIN_LEN = 8;
/** MLDv1 messages (ICMPv6 header, delay, reserved, address). */
const MLD_V1_LEN = 24;
const MLD_V2_HDR = 8;
/** Group record header: type, aux length, source count, then the group (4 or 16 bytes). */
const REC_HDR = 4;

/** Group record types (RFC 3376 4.2.12, the same numbers in RFC 3810 5.2.12). */
export const MODE_IS_INCLUDE = 1;
export const MODE_IS_EXCLUDE = 2;
export const CHANGE_TO_INCLUDE = 3;
export const CHANGE_TO_EXCLUDE = 4;
export const ALLOW_NEW_SOURCES = 5;
export const BLOCK_OLD_SOURCES = 6;

/** Largest number of changes one message can carry: 8-byte records in a 64 KiB packet. */
export const MCAST_MAX_CHANGES = 8192;

/** What a parse returns besides a count: why the message was dropped. */
export const MCAST_MALFORMED = -1;
export const MCAST_BAD_CSUM = -2;
export const MCAST_NOT_GROUP = -3;
/** A query, or a type this proxy does not act on: not an error. */
export const MCAST_IGNORED = -4;

/**
 * The records a message carries: n entries of (record type, group in
 * addr[16k..], nsrc[k] sources of 4 or 16 bytes from offset src[k] of the
 * message's buffer).
 */
export interface McastChanges {
  n: number;
  type: Uint8Array;
  addr: Uint8Array;
  src: Uint32Array;
  nsrc: Uint16Array;
}

/** A table for the largest message's changes, for the parsers to fill. */
export function newMcastChanges(): McastChanges {
  return {
    n: 0,
    type: new Uint8Array(MCAST_MAX_CHANGES),
    addr: new Uint8Array(MCAST_MAX_CHANGES * 16),
    src: new Uint32Array(MCAST_MAX_CHANGES),
    nsrc: new Uint16Array(MCAST_MAX_CHANGES),
  };
}

/** IPv4 224.0.0.0/4. */
export function ip4IsMulticast(a: number): boolean {
  return a >>> 28 === 0xe;
}

/**
 * The IGMP message b[o..o+len) (len from the IP total length): its joins and
 * leaves into out. Returns the number of changes, or MCAST_*.
 */
export function mcastParseIgmp(b: Uint8Array, o: number, len: number, out: McastChanges): number {
  out.n = 0;
  if (len < IGMP_MIN_LEN || o + len > b.length) return MCAST_MALFORMED;
  if (checksum(b, o, len) !== 0) return MCAST_BAD_CSUM;
  const type = b[o]!;
  if (type === IGMP_V1_REPORT || type === IGMP_V2_REPORT || type === IGMP_V2_LEAVE) {
    if (!ip4IsMulticast(rd32(b, o + 4))) return MCAST_NOT_GROUP;
    addChange(out, type === IGMP_V2_LEAVE ? CHANGE_TO_INCLUDE : CHANGE_TO_EXCLUDE, b, o + 4, 4, 0, 0);
    return 1;
  }
  if (type !== IGMP_V3_REPORT) return MCAST_IGNORED;
  return parseRecords(b, o + IGMP_MIN_LEN, o + len, rd16(b, o + 6), 4, out);
}

/**
 * The MLD message b[o..o+len) (the ICMPv6 message, its checksum already
 * verified by the caller): as mcastParseIgmp.
 */
export function mcastParseMld(b: Uint8Array, o: number, len: number, out: McastChanges): number {
  out.n = 0;
  if (len < MLD_V2_HDR || o + len > b.length) return MCAST_MALFORMED;
  const type = b[o]!;
  if (type === MLD_V1_REPORT || type === MLD_V1_DONE) {
    if (len < MLD_V1_LEN) return MCAST_MALFORMED;
    if (b[o + 8] !== 0xff) return MCAST_NOT_GROUP;
    addChange(out, type === MLD_V1_DONE ? CHANGE_TO_INCLUDE : CHANGE_TO_EXCLUDE, b, o + 8, 16, 0, 0);
    return 1;
  }
  if (type !== MLD_V2_REPORT) return MCAST_IGNORED;
  return parseRecords(b, o + MLD_V2_HDR, o + len, rd16(b, o + 6), 16, out);
}

/**
 * nrec group records of alen-byte groups from b[p] to end: checked whole
 * first, then read into out.
 */
function parseRecords(b: Uint8Array, p: number, end: number, nrec: number, alen: number, out: McastChanges): number {
  let q = p;
  for (let k = 0; k < nrec; k++) {
    if (q + REC_HDR + alen > end) return MCAST_MALFORMED;
    const next = q + REC_HDR + alen + rd16(b, q + 2) * alen + b[q + 1]! * 4;
    if (next > end) return MCAST_MALFORMED;
    if (alen === 4 ? !ip4IsMulticast(rd32(b, q + REC_HDR)) : b[q + REC_HDR] !== 0xff) return MCAST_NOT_GROUP;
    q = next;
  }
  for (let k = 0; k < nrec; k++) {
    const type = b[p]!;
    const nsrc = rd16(b, p + 2);
    if (type >= MODE_IS_INCLUDE && type <= BLOCK_OLD_SOURCES) addChange(out, type, b, p + REC_HDR, alen, p + REC_HDR + alen, nsrc);
    p += REC_HDR + alen + nsrc * alen + b[p + 1]! * 4;
  }
  return out.n;
}

/** Record k: type, the group at b[a] (alen bytes), nsrc sources from b[src]. */
function addChange(out: McastChanges, type: number, b: Uint8Array, a: number, alen: number, src: number, nsrc: number): void {
  const k = out.n++;
  out.type[k] = type;
  out.addr.fill(0, k * 16, k * 16 + 16);
  for (let i = 0; i < alen; i++) out.addr[k * 16 + i] = b[a + i]!;
  out.src[k] = src;
  out.nsrc[k] = nsrc;
}

// ------------------------------------------------------------- queries

/** IPv4 header with the Router Alert option (RFC 2113), as IGMP messages carry it. */
export const IGMP_IP_HLEN = 24;
/** IGMPv3 general query with no source. */
export const IGMP_V3_QUERY_LEN = 12;
/** Hop-by-hop header with Router Alert (RFC 2711) and padding, as MLD messages carry it. */
export const MLD_HBH_LEN = 8;
/** MLDv2 general query with no source. */
export const MLD_V2_QUERY_LEN = 28;
/** Querier's robustness variable (RFC 3376 8.1, RFC 3810 9.1). */
export const QUERY_ROBUSTNESS = 2;
const IPTOS_PREC_INTERNETCONTROL = 0xc0;
const IP_OPT_ROUTER_ALERT = 0x94040000;
const IP6_OPT_ROUTER_ALERT = 5;
const IP6_OPT_PADN = 1;

/**
 * An IGMPv3 general query at b[o] (IP header included): from src to
 * 224.0.0.1, TTL 1, max response time respMs, querier's query interval
 * intervalS. Returns the length written.
 */
export function writeIgmpQuery(b: Uint8Array, o: number, src: number, respMs: number, intervalS: number): number {
  const tot = IGMP_IP_HLEN + IGMP_V3_QUERY_LEN;
  b.fill(0, o, o + tot);
  b[o] = 0x46;
  b[o + 1] = IPTOS_PREC_INTERNETCONTROL;
  wr16(b, o + 2, tot);
  wr16(b, o + 6, 0x4000);
  b[o + 8] = 1;
  b[o + 9] = IPPROTO_IGMP;
  wr32(b, o + 12, src);
  wr32(b, o + 16, 0xe0000001);
  wr32(b, o + 20, IP_OPT_ROUTER_ALERT);
  wr16(b, o + 10, checksum(b, o, IGMP_IP_HLEN));
  const q = o + IGMP_IP_HLEN;
  b[q] = IGMP_QUERY;
  b[q + 1] = floatCode8(Math.round(respMs / 100));
  b[q + 8] = QUERY_ROBUSTNESS;
  b[q + 9] = floatCode8(intervalS);
  wr16(b, q + 2, checksum(b, q, IGMP_V3_QUERY_LEN));
  return tot;
}

/**
 * The hop-by-hop header and MLDv2 general query that follow an IPv6 header
 * (next header 0, hop limit 1, to ff02::1) at b[o]: max response delay
 * respMs, query interval intervalS. The ICMPv6 checksum is left to the
 * caller (it needs the IPv6 header). Returns the offset of the query.
 */
export function writeMldQuery(b: Uint8Array, o: number, respMs: number, intervalS: number): number {
  b.fill(0, o, o + MLD_HBH_LEN + MLD_V2_QUERY_LEN);
  b[o] = 58;
  b[o + 2] = IP6_OPT_ROUTER_ALERT;
  b[o + 3] = 2;
  b[o + 6] = IP6_OPT_PADN;
  const q = o + MLD_HBH_LEN;
  b[q] = MLD_QUERY;
  wr16(b, q + 4, Math.min(respMs, 32767));
  b[q + 24] = QUERY_ROBUSTNESS;
  b[q + 25] = floatCode8(intervalS);
  return q;
}

/** An 8-bit code of RFC 3376 4.1.1 / RFC 3810 5.1.9 for v (values under 128 as they are). */
function floatCode8(v: number): number {
  if (v < 128) return v;
  let exp = 0;
  let mant = v >> 3;
  while (mant > 0x1f && exp < 7) {
    mant >>= 1;
    exp++;
  }
  return 0x80 | (exp << 4) | (Math.min(mant, 0x1f) & 0x0f);
}
