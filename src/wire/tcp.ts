/**
 * TCP header (RFC 9293) and options (MSS, window scale, SACK-permitted,
 * timestamps). Functions take (b, o) with o the offset of the TCP header;
 * checksum helpers also take the IP header offset for the pseudo-header.
 *
 * Sequence and acknowledgement numbers are unsigned 32-bit numbers; compare
 * them with seqLt/seqLe and advance them with seqAdd, never with < or +.
 * Options are parsed into a caller-owned TcpOptions (allocate one at start-
 * up and reuse it) and written by small writers that produce the layouts
 * Linux uses, each a multiple of 4 bytes.
 */
import { inBounds, rd16, rd32, wr16, wr32 } from "./bytes.ts";
import { l4Checksum4, l4Checksum6 } from "./checksum.ts";
import { IPPROTO_TCP } from "./ipv4.ts";

export const TCP_SPORT = 0;
export const TCP_DPORT = 2;
export const TCP_SEQ = 4;
export const TCP_ACK = 8;
export const TCP_DOFF = 12;
export const TCP_FLAGS = 13;
export const TCP_WIN = 14;
export const TCP_CSUM = 16;
export const TCP_URP = 18;
export const TCP_HLEN = 20;
/** Largest header: data offset 15. */
export const TCP_HLEN_MAX = 60;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK_FLAG = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERM = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
export const TCPOLEN_MSS = 4;
export const TCPOLEN_WSCALE = 3;
export const TCPOLEN_SACK_PERM = 2;
export const TCPOLEN_TIMESTAMP = 10;
/** Largest window scale shift (RFC 7323): larger values are taken as 14. */
export const TCP_WSCALE_MAX = 14;
/** Inside an option: where its value starts, and where the timestamp echo reply starts. */
const OPT_VAL = 2;
const OPT_TS_ECR = 6;
/** Sizes of the NOP-padded option blocks the writers emit. */
const OPT_BLOCK = 4;
const OPT_TS_BLOCK = 12;

/** Options of one segment, filled by tcpParseOptions; -1 / false when absent. */
export class TcpOptions {
  mss = -1;
  wscale = -1;
  sackOk = false;
  hasTs = false;
  tsVal = 0;
  tsEcr = 0;

  /** Forget everything (done by tcpParseOptions before each parse). */
  reset(): void {
    this.mss = -1;
    this.wscale = -1;
    this.sackOk = false;
    this.hasTs = false;
    this.tsVal = 0;
    this.tsEcr = 0;
  }
}

/**
 * Validate a TCP header in len available bytes at b[o] (len: the IP payload
 * length): data offset at least 5 and the header within len. Returns the
 * header length in bytes (payload starts there) or -1.
 */
export function tcpCheck(b: Uint8Array, o: number, len: number): number {
  if (len < TCP_HLEN || !inBounds(b, o, len)) return -1;
  const hlen = (b[o + TCP_DOFF]! >> 4) * 4;
  return hlen >= TCP_HLEN && hlen <= len ? hlen : -1;
}

/** Source port. */
export function tcpSrcPort(b: Uint8Array, o: number): number {
  return rd16(b, o + TCP_SPORT);
}

/** Destination port. */
export function tcpDstPort(b: Uint8Array, o: number): number {
  return rd16(b, o + TCP_DPORT);
}

/** Sequence number (u32). */
export function tcpSeq(b: Uint8Array, o: number): number {
  return rd32(b, o + TCP_SEQ);
}

/** Acknowledgement number (u32). */
export function tcpAck(b: Uint8Array, o: number): number {
  return rd32(b, o + TCP_ACK);
}

/** Header length in bytes (data offset * 4). */
export function tcpHlen(b: Uint8Array, o: number): number {
  return (b[o + TCP_DOFF]! >> 4) * 4;
}

/** Flag byte (TCP_FIN | TCP_SYN | ...). */
export function tcpFlags(b: Uint8Array, o: number): number {
  return b[o + TCP_FLAGS]!;
}

/** Window field, unscaled. */
export function tcpWindow(b: Uint8Array, o: number): number {
  return rd16(b, o + TCP_WIN);
}

/** Urgent pointer. */
export function tcpUrgPtr(b: Uint8Array, o: number): number {
  return rd16(b, o + TCP_URP);
}

/** Set the source port (the checksum is left stale). */
export function tcpSetSrcPort(b: Uint8Array, o: number, port: number): void {
  wr16(b, o + TCP_SPORT, port);
}

/** Set the destination port (the checksum is left stale). */
export function tcpSetDstPort(b: Uint8Array, o: number, port: number): void {
  wr16(b, o + TCP_DPORT, port);
}

/** Set the sequence number (the checksum is left stale). */
export function tcpSetSeq(b: Uint8Array, o: number, seq: number): void {
  wr32(b, o + TCP_SEQ, seq);
}

/** Set the acknowledgement number (the checksum is left stale). */
export function tcpSetAck(b: Uint8Array, o: number, ack: number): void {
  wr32(b, o + TCP_ACK, ack);
}

/** Set the flag byte (the checksum is left stale). */
export function tcpSetFlags(b: Uint8Array, o: number, flags: number): void {
  b[o + TCP_FLAGS] = flags;
}

/** Set the window field (the checksum is left stale). */
export function tcpSetWindow(b: Uint8Array, o: number, win: number): void {
  wr16(b, o + TCP_WIN, win);
}

/** Signed distance a - b modulo 2^32: negative when a is before b. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** True when sequence number a comes before b (modulo 2^32). */
export function seqLt(a: number, b: number): boolean {
  return seqDiff(a, b) < 0;
}

/** True when sequence number a comes before or equals b (modulo 2^32). */
export function seqLe(a: number, b: number): boolean {
  return seqDiff(a, b) <= 0;
}

/** Sequence number a advanced by n, modulo 2^32. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** Record one option of the given kind and length at b[p] into out; wrong lengths are ignored, as Linux does. */
function takeOption(b: Uint8Array, p: number, kind: number, len: number, out: TcpOptions): void {
  if (kind === TCPOPT_MSS && len === TCPOLEN_MSS) out.mss = rd16(b, p + OPT_VAL);
  else if (kind === TCPOPT_WSCALE && len === TCPOLEN_WSCALE) out.wscale = Math.min(b[p + OPT_VAL]!, TCP_WSCALE_MAX);
  else if (kind === TCPOPT_SACK_PERM && len === TCPOLEN_SACK_PERM) out.sackOk = true;
  else if (kind === TCPOPT_TIMESTAMP && len === TCPOLEN_TIMESTAMP) {
    out.hasTs = true;
    out.tsVal = rd32(b, p + OPT_VAL);
    out.tsEcr = rd32(b, p + OPT_TS_ECR);
  }
}

/**
 * Parse the options of the TCP header at b[o] whose length is hlen (from
 * tcpCheck) into out. Returns false when an option runs past the header or
 * has a length below 2 (the options seen before stay in out); unknown kinds
 * are skipped.
 */
export function tcpParseOptions(b: Uint8Array, o: number, hlen: number, out: TcpOptions): boolean {
  out.reset();
  if (hlen < TCP_HLEN || !inBounds(b, o, hlen)) return false;
  const end = o + hlen;
  let p = o + TCP_HLEN;
  while (p < end) {
    const kind = b[p]!;
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      p++;
      continue;
    }
    if (p + 1 >= end) return false;
    const len = b[p + 1]!;
    if (len < 2 || p + len > end) return false;
    takeOption(b, p, kind, len, out);
    p += len;
  }
  return true;
}

/**
 * Write a TCP header at b[o] without checksum: ports, sequence and
 * acknowledgement numbers, flags, window, urgent pointer 0 and a data offset
 * for optLen bytes of options (a multiple of 4, written next by the
 * writeTcpOpt* functions). Returns the offset where the options go; call
 * tcpSetChecksum4/6 once options and payload are in.
 */
export function writeTcp(
  b: Uint8Array,
  o: number,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  window: number,
  optLen: number,
): number {
  wr16(b, o + TCP_SPORT, sport);
  wr16(b, o + TCP_DPORT, dport);
  wr32(b, o + TCP_SEQ, seq);
  wr32(b, o + TCP_ACK, ack);
  b[o + TCP_DOFF] = ((TCP_HLEN + optLen) / 4) << 4;
  b[o + TCP_FLAGS] = flags;
  wr16(b, o + TCP_WIN, window);
  wr16(b, o + TCP_CSUM, 0);
  wr16(b, o + TCP_URP, 0);
  return o + TCP_HLEN;
}

/** Write an MSS option (4 bytes). Returns the offset past it. */
export function writeTcpOptMss(b: Uint8Array, o: number, mss: number): number {
  b[o] = TCPOPT_MSS;
  b[o + 1] = TCPOLEN_MSS;
  wr16(b, o + OPT_VAL, mss);
  return o + TCPOLEN_MSS;
}

/** Write NOP + window scale (4 bytes). Returns the offset past it. */
export function writeTcpOptWscale(b: Uint8Array, o: number, shift: number): number {
  b[o] = TCPOPT_NOP;
  b[o + 1] = TCPOPT_WSCALE;
  b[o + 2] = TCPOLEN_WSCALE;
  b[o + 3] = shift;
  return o + OPT_BLOCK;
}

/** Write NOP, NOP, SACK-permitted (4 bytes). Returns the offset past it. */
export function writeTcpOptSackPerm(b: Uint8Array, o: number): number {
  b[o] = TCPOPT_NOP;
  b[o + 1] = TCPOPT_NOP;
  b[o + 2] = TCPOPT_SACK_PERM;
  b[o + 3] = TCPOLEN_SACK_PERM;
  return o + OPT_BLOCK;
}

/** Write timestamps (10 bytes) at b[o]. */
function putTimestamp(b: Uint8Array, o: number, tsVal: number, tsEcr: number): void {
  b[o] = TCPOPT_TIMESTAMP;
  b[o + 1] = TCPOLEN_TIMESTAMP;
  wr32(b, o + OPT_VAL, tsVal);
  wr32(b, o + OPT_TS_ECR, tsEcr);
}

/** Write NOP, NOP, timestamps (12 bytes). Returns the offset past it. */
export function writeTcpOptTs(b: Uint8Array, o: number, tsVal: number, tsEcr: number): number {
  b[o] = TCPOPT_NOP;
  b[o + 1] = TCPOPT_NOP;
  putTimestamp(b, o + OPT_VAL, tsVal, tsEcr);
  return o + OPT_TS_BLOCK;
}

/** Write SACK-permitted followed by timestamps (12 bytes, the SYN layout). Returns the offset past it. */
export function writeTcpOptSackPermTs(b: Uint8Array, o: number, tsVal: number, tsEcr: number): number {
  b[o] = TCPOPT_SACK_PERM;
  b[o + 1] = TCPOLEN_SACK_PERM;
  putTimestamp(b, o + OPT_VAL, tsVal, tsEcr);
  return o + OPT_TS_BLOCK;
}

/** Compute and store the checksum of the len-byte segment at b[o] under the IPv4 header at ipOff. */
export function tcpSetChecksum4(b: Uint8Array, ipOff: number, o: number, len: number): void {
  wr16(b, o + TCP_CSUM, 0);
  wr16(b, o + TCP_CSUM, l4Checksum4(b, ipOff, o, len, IPPROTO_TCP));
}

/** Compute and store the checksum of the len-byte segment at b[o] under the IPv6 header at ipOff. */
export function tcpSetChecksum6(b: Uint8Array, ipOff: number, o: number, len: number): void {
  wr16(b, o + TCP_CSUM, 0);
  wr16(b, o + TCP_CSUM, l4Checksum6(b, ipOff, o, len, IPPROTO_TCP));
}

/** True when the checksum of the len-byte segment at b[o] under the IPv4 header at ipOff is correct. */
export function tcpChecksumOk4(b: Uint8Array, ipOff: number, o: number, len: number): boolean {
  return l4Checksum4(b, ipOff, o, len, IPPROTO_TCP) === 0;
}

/** True when the checksum of the len-byte segment at b[o] under the IPv6 header at ipOff is correct. */
export function tcpChecksumOk6(b: Uint8Array, ipOff: number, o: number, len: number): boolean {
  return l4Checksum6(b, ipOff, o, len, IPPROTO_TCP) === 0;
}
