/**
 * IP fragment reassembly for datagrams from the guest: IPv4 (RFC 791, with
 * the hole bookkeeping of RFC 815 done as a bitmap) and IPv6 (RFC 8200
 * section 4.5, overlaps handled as RFC 5722 asks).
 *
 * Theory of operation
 * -------------------
 * We hand the guest's traffic to host sockets, and a socket takes whole
 * datagrams: a UDP datagram larger than the guest's MTU arrives from the tap
 * as fragments and must be put back together before it can leave. The guest
 * is untrusted, so the reassembler is bounded in memory (a fixed table of
 * FRAG_MAX_DATAGRAMS datagrams), in time (FRAG_TIMEOUT_MS per datagram), in
 * size (FRAG_MAX_SIZE), and allocates nothing per packet.
 *
 * Datagrams. A datagram in reassembly is a slot of the table, found by its
 * key: (IPv4, source, destination, identification, protocol) as RFC 791
 * says, or (IPv6, source, destination, identification) as RFC 8200 says.
 * Lookup is a scan of the table: it has 64 entries, and a guest sends few
 * fragmented datagrams at a time.
 *
 * Memory. Each slot has a FRAG_MAX_SIZE buffer, allocated the first time
 * the slot is used and kept from then on: 4 MiB if all 64 are ever busy at
 * once, but new datagrams take the lowest free slot, so a guest with one or
 * two fragmented datagrams in flight at a time only ever costs one or two
 * buffers (the runtime zero-fills an allocation, so one arena made up front
 * would cost the full 4 MiB of memory for good); when traffic stops, the
 * pages of free slots' buffers are given back (releaseIdle). After that nothing is
 * allocated: copies are plain loops, no subarray views. Each slot also has a
 * bitmap of its 8-byte units received: fragment offsets count in
 * 8-byte units and every fragment but the last is a multiple of 8 long, so a
 * unit is either wholly received or not at all (1 KiB per slot). The slot
 * buffer holds the fragmentable part at its offsets; for IPv6 that is what
 * follows the fragment header, which may start with extension headers
 * (destination options) before the upper-layer header: the first fragment
 * tells how many bytes those are, and they are skipped when the datagram is
 * handed out.
 *
 * Rules, for each fragment:
 *  - A fragment with more to follow must be a multiple of 8 bytes long and
 *    not empty, else it is discarded (alone).
 *  - A fragment reaching past FRAG_MAX_SIZE abandons its datagram (the
 *    "ping of death": offset 65528 plus data).
 *  - The last fragment (MF or M clear) fixes the total length. A second last
 *    fragment with another end, a last fragment ending before data already
 *    received, or data past the fixed end abandons the datagram.
 *  - Overlaps abandon the datagram, IPv4 and IPv6 alike: the bytes of a
 *    datagram are then ambiguous, which is how firewalls are fooled
 *    (RFC 1858, RFC 5722). One exception, in the spirit of RFC 5722's
 *    erratum 3089 and of Linux (duplicates are skipped): a fragment whose
 *    every byte is already held, with the same values, is a harmless
 *    duplicate (a retransmission or a duplicated frame) and is ignored; it
 *    cannot change what the datagram says.
 *  - A fragment with offset 0 and no more to follow (an IPv6 "atomic
 *    fragment", RFC 6946) is a whole datagram: it is handed out at once and
 *    never touches the table.
 *  - The datagram is complete when the total length is known and every byte
 *    below it was received. Its upper-layer header and payload are copied to
 *    `out`, the slot is freed, and the length is returned.
 *
 * Limits. A datagram still incomplete FRAG_TIMEOUT_MS after its first
 * fragment is dropped (by expire(), or when its slot is looked at; times
 * are monotonic milliseconds, and one that goes backwards counts as
 * expired). When the table is full, a new datagram takes the slot of the
 * oldest one in reassembly, which is dropped (as Linux drops the oldest
 * when its fragment memory runs short): otherwise a flood of first
 * fragments that never complete would hold every slot for FRAG_TIMEOUT_MS
 * and keep each new fragmented datagram out. A datagram whose fragments
 * come together still completes unless FRAG_MAX_DATAGRAMS others begin
 * between its first fragment and its last.
 *
 * Statistics (fragStats) count events: fragments seen; datagrams completed,
 * timed out, abandoned for an overlap, abandoned for being too big,
 * evicted (dropped for a new one, the table being full); and `dropped`,
 * every other discard (malformed fragments, inconsistent lengths).
 */
import { release, table } from "../loop/arena.ts";
import { copyBytes, equalBytes, inBounds } from "../wire/bytes.ts";
import { ipv4Check, ipv4Dst, ipv4FragOffset, ipv4Hlen, ipv4Id, ipv4MoreFrags, ipv4Proto, ipv4Src, ipv4TotLen } from "../wire/ipv4.ts";
import {
  IP6_ALEN,
  IP6_FRAG_HLEN,
  IP6_MAX_EXT,
  IP6_NXT,
  IP6_SRC,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ROUTING,
  IPV6_HLEN,
} from "../wire/ipv6.ts";

/** Datagrams in reassembly at once: a guest rarely has more than a few in flight; 64 bounds memory at 4 MiB. */
export const FRAG_MAX_DATAGRAMS = 64;
/** Drop incomplete datagrams after this (RFC 8200 says 60 s; a lost fragment is not coming back, so free the slot sooner). */
export const FRAG_TIMEOUT_MS = 15_000;
/** Largest reassembled upper-layer length (and fragmentable part): what a 16-bit length field can describe. */
export const FRAG_MAX_SIZE = 65535;

/** Reassembly events, for debugging and tests (see the theory of operation). */
export const fragStats = { fragments: 0, completed: 0, timedOut: 0, dropped: 0, overlaps: 0, tooBig: 0, evicted: 0 };

/** Fragment offsets count 8-byte units. */
const UNIT = 8;
const UNIT_SHIFT = 3;
/** 32-bit words of a slot's bitmap: one bit per 8-byte unit up to FRAG_MAX_SIZE. */
const MAP_WORDS = Math.ceil(FRAG_MAX_SIZE / UNIT / 32);
/** Slot family: free, or the IP version of its datagram. */
const FREE = 0;
const FAM4 = 4;
const FAM6 = 6;
/** Source and destination addresses of an IPv6 header, contiguous from IP6_SRC. */
const IP6_ADDRS_LEN = 2 * IP6_ALEN;
/** Generic extension header: length byte, in 8-octet units not counting the first 8. */
const IP6_EXT_LEN = 1;
/** Largest fragment offset: 13 bits of 8-byte units, in bytes. */
const FRAG_OFFSET_MAX = 0x1fff * UNIT;
/** Returned when a datagram is not complete (yet) or was dropped. */
const NONE = 0;

/** True for the length of a fragment with more to follow: not empty, a multiple of 8. */
function fragLenOk(len: number): boolean {
  return len > 0 && (len & (UNIT - 1)) === 0;
}

/** True for a fragment offset in bytes that the 13-bit field can carry. */
function fragOffsetOk(off: number): boolean {
  return (off | 0) === off && off >= 0 && off <= FRAG_OFFSET_MAX && (off & (UNIT - 1)) === 0;
}

/**
 * Find the fragment header of the IPv6 packet at b[ip] whose payload ends at
 * end, stepping over at most IP6_MAX_EXT hop-by-hop, routing and
 * destination-options headers. Returns its offset, or -1.
 */
function ip6FragHeader(b: Uint8Array, ip: number, end: number): number {
  let nh = b[ip + IP6_NXT]!;
  let p = ip + IPV6_HLEN;
  for (let n = 0; n < IP6_MAX_EXT && p + IP6_FRAG_HLEN <= end; n++) {
    if (nh === IPPROTO_FRAGMENT) return p;
    if (nh !== IPPROTO_HOPOPTS && nh !== IPPROTO_ROUTING && nh !== IPPROTO_DSTOPTS) return -1;
    nh = b[p]!;
    p += (b[p + IP6_EXT_LEN]! + 1) * UNIT;
  }
  return -1;
}

export class Reassembler {
  /** The last completed upper-layer datagram (L4 header + payload) is in out[0..len). */
  readonly out: Uint8Array;
  /** Upper-layer protocol of the last completed datagram. */
  lastProto = -1;

  /** Per slot: the fragmentable part at its offsets, allocated on the slot's first use. */
  private readonly buf: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(FRAG_MAX_DATAGRAMS);
  /** Per slot: received 8-byte units. */
  private readonly map = table.u32(FRAG_MAX_DATAGRAMS * MAP_WORDS);
  /** Per slot: FREE, FAM4 or FAM6. */
  private readonly fam = table.u8(FRAG_MAX_DATAGRAMS);
  /** Per slot: time of the first fragment. */
  private readonly born = table.f64(FRAG_MAX_DATAGRAMS);
  /** Per slot: identification (16 bits for IPv4, 32 for IPv6). */
  private readonly id = table.u32(FRAG_MAX_DATAGRAMS);
  /** Per slot: IPv4 source and destination. */
  private readonly addr4 = table.u32(FRAG_MAX_DATAGRAMS * 2);
  /** Per slot: IPv6 source and destination, 32 bytes. */
  private readonly addr6 = table.u8(FRAG_MAX_DATAGRAMS * IP6_ADDRS_LEN);
  /** Per slot: upper-layer protocol (IPv4: part of the key; IPv6: from the first fragment, -1 before). */
  private readonly proto = table.i16(FRAG_MAX_DATAGRAMS);
  /** Per slot: bytes before the upper-layer header in the fragmentable part (IPv6 extension headers), -1 before the first fragment. */
  private readonly skip = table.i32(FRAG_MAX_DATAGRAMS);
  /** Per slot: total fragmentable length, -1 until the last fragment. */
  private readonly total = table.i32(FRAG_MAX_DATAGRAMS);
  /** Per slot: highest end of a received fragment. */
  private readonly maxEnd = table.i32(FRAG_MAX_DATAGRAMS);
  /** Per slot: bytes received (fragments never overlap, so this is the coverage). */
  private readonly have = table.i32(FRAG_MAX_DATAGRAMS);

  constructor() {
    this.out = table.u8(FRAG_MAX_SIZE);
  }

  /**
   * Take the IPv4 fragment whose header is at b[ip] (validated by the
   * caller; checked again here, cheaply, so that no input can make us read
   * out of bounds). now is a monotonic time in milliseconds. Returns the
   * upper-layer length of the datagram this fragment completes, now in
   * out[0..n), with lastProto set; or 0 if it is not complete yet or was
   * dropped.
   */
  add4(b: Uint8Array, ip: number, now: number): number {
    fragStats.fragments++;
    if (!inBounds(b, ip, 0) || ipv4Check(b, ip, b.length - ip) < 0) return this.discard();
    const data = ip + ipv4Hlen(b, ip);
    const end = ip + ipv4TotLen(b, ip);
    const off = ipv4FragOffset(b, ip);
    const more = ipv4MoreFrags(b, ip);
    const proto = ipv4Proto(b, ip);
    if (more && !fragLenOk(end - data)) return this.discard();
    if (off === 0 && !more) return this.whole(b, data, end, proto);

    const src = ipv4Src(b, ip);
    const dst = ipv4Dst(b, ip);
    const id = ipv4Id(b, ip);
    let s = this.find4(src, dst, id, proto, now);
    if (s < 0) {
      s = this.claim(FAM4, id, now);
      this.addr4[s * 2] = src;
      this.addr4[s * 2 + 1] = dst;
      this.proto[s] = proto;
      this.skip[s] = 0;
    }
    return this.insert(s, b, data, end, off, more);
  }

  /**
   * Take the IPv6 fragment whose header is at b[ip], with what ipv6Upper
   * found in it: proto (the upper-layer protocol; kept from the first
   * fragment only), fragOffset in bytes, the more-fragments flag, the
   * identification, dataOff (ipv6Upper's result: the upper-layer header in
   * a first fragment, the fragment data in others) and end (just past the
   * payload). now is a monotonic time in milliseconds. Returns the
   * upper-layer length of the datagram this fragment completes, now in
   * out[0..n), with lastProto set; or 0.
   */
  add6(
    b: Uint8Array,
    ip: number,
    proto: number,
    fragOffset: number,
    more: boolean,
    id: number,
    dataOff: number,
    end: number,
    now: number,
  ): number {
    fragStats.fragments++;
    if (!inBounds(b, ip, IPV6_HLEN) || !inBounds(b, dataOff, end - dataOff) || dataOff < ip + IPV6_HLEN) {
      return this.discard();
    }
    const fh = ip6FragHeader(b, ip, end);
    const data = fh + IP6_FRAG_HLEN;
    if (fh < 0 || data > dataOff || !fragOffsetOk(fragOffset) || (more && !fragLenOk(end - data))) {
      return this.discard();
    }
    if (fragOffset === 0 && !more) return this.whole(b, dataOff, end, proto);

    id >>>= 0;
    let s = this.find6(b, ip, id, now);
    if (s < 0) {
      s = this.claim(FAM6, id, now);
      for (let i = 0; i < IP6_ADDRS_LEN; i++) this.addr6[s * IP6_ADDRS_LEN + i] = b[ip + IP6_SRC + i]!;
      this.proto[s] = -1;
      this.skip[s] = -1;
    }
    if (fragOffset === 0 && this.skip[s]! < 0) {
      this.proto[s] = proto;
      this.skip[s] = dataOff - data;
    }
    return this.insert(s, b, data, end, fragOffset, more);
  }

  /** Give the pages of free slots' buffers and of the output buffer back to the kernel (when traffic stops). */
  releaseIdle(): void {
    release(this.out);
    for (let s = 0; s < FRAG_MAX_DATAGRAMS; s++) {
      const b = this.buf[s];
      if (b !== undefined && this.fam[s] === FREE) release(b);
    }
  }

  /** Drop datagrams whose first fragment is FRAG_TIMEOUT_MS old or more. */
  expire(now: number): void {
    for (let s = 0; s < FRAG_MAX_DATAGRAMS; s++) this.expireSlot(s, now);
  }

  /** Hand out b[from..end), a datagram that was never fragmented, as a completed one. Returns its length. */
  private whole(b: Uint8Array, from: number, end: number, proto: number): number {
    const n = end - from;
    copyBytes(this.out, 0, b, from, n);
    this.lastProto = proto;
    fragStats.completed++;
    return n;
  }

  /** Free slot s if its datagram timed out. Returns true if it did. */
  private expireSlot(s: number, now: number): boolean {
    if (this.fam[s] === FREE) return false;
    const age = now - this.born[s]!;
    if (age < FRAG_TIMEOUT_MS && age >= 0) return false;
    fragStats.timedOut++;
    this.free(s);
    return true;
  }

  /** Slot of the live IPv4 datagram with this key, or -1 (a timed-out one is freed on the way). */
  private find4(src: number, dst: number, id: number, proto: number, now: number): number {
    for (let s = 0; s < FRAG_MAX_DATAGRAMS; s++) {
      if (this.fam[s] !== FAM4 || this.id[s] !== id || this.proto[s] !== proto) continue;
      if (this.addr4[s * 2] !== src || this.addr4[s * 2 + 1] !== dst) continue;
      return this.expireSlot(s, now) ? -1 : s;
    }
    return -1;
  }

  /** Slot of the live IPv6 datagram with the addresses of b[ip] and this id, or -1. */
  private find6(b: Uint8Array, ip: number, id: number, now: number): number {
    for (let s = 0; s < FRAG_MAX_DATAGRAMS; s++) {
      if (this.fam[s] !== FAM6 || this.id[s] !== id) continue;
      if (!equalBytes(this.addr6, s * IP6_ADDRS_LEN, b, ip + IP6_SRC, IP6_ADDRS_LEN)) continue;
      return this.expireSlot(s, now) ? -1 : s;
    }
    return -1;
  }

  /**
   * Take a free (or timed-out) slot for a new datagram of family fam with
   * identification id, first seen at now; with none, the slot of the oldest
   * datagram, which is dropped (counted). Returns the slot.
   */
  private claim(fam: number, id: number, now: number): number {
    let oldest = -1;
    for (let s = 0; s < FRAG_MAX_DATAGRAMS; s++) {
      if (this.fam[s] === FREE || this.expireSlot(s, now)) return this.take(s, fam, id, now);
      if (oldest < 0 || this.born[s]! < this.born[oldest]!) oldest = s;
    }
    fragStats.evicted++;
    this.free(oldest);
    return this.take(oldest, fam, id, now);
  }

  /** Slot s (free) for a new datagram of family fam with identification id, first seen at now. */
  private take(s: number, fam: number, id: number, now: number): number {
    this.buf[s] ??= table.u8(FRAG_MAX_SIZE);
    this.fam[s] = fam;
    this.id[s] = id;
    this.born[s] = now;
    this.total[s] = -1;
    this.maxEnd[s] = 0;
    this.have[s] = 0;
    return s;
  }

  /** Free slot s, clearing the part of its bitmap that was used. */
  private free(s: number): void {
    const words = Math.ceil(this.maxEnd[s]! / UNIT / 32);
    this.map.fill(0, s * MAP_WORDS, s * MAP_WORDS + words);
    this.fam[s] = FREE;
  }

  /**
   * Put b[data..end), the fragment at offset off (bytes) of the datagram in
   * slot s, in place, following the rules of the theory of operation.
   * Returns the completed upper-layer length, or 0.
   */
  private insert(s: number, b: Uint8Array, data: number, end: number, off: number, more: boolean): number {
    const len = end - data;
    const last = off + len;
    if (last > FRAG_MAX_SIZE) {
      fragStats.tooBig++;
      return this.abandon(s);
    }
    const total = this.total[s]!;
    if (more ? total >= 0 && last > total : (total >= 0 && total !== last) || last < this.maxEnd[s]!) {
      fragStats.dropped++;
      return this.abandon(s);
    }

    const buf = this.buf[s]!;
    const u0 = off >> UNIT_SHIFT;
    const u1 = (last + UNIT - 1) >> UNIT_SHIFT;
    const held = this.countUnits(s, u0, u1);
    if (held > 0) {
      if (held === u1 - u0 && equalBytes(buf, off, b, data, len)) return NONE;
      fragStats.overlaps++;
      return this.abandon(s);
    }

    copyBytes(buf, off, b, data, len);
    this.markUnits(s, u0, u1);
    this.have[s] += len;
    if (last > this.maxEnd[s]!) this.maxEnd[s] = last;
    if (!more) this.total[s] = last;
    return this.complete(s);
  }

  /**
   * If the datagram in slot s has all its bytes, move its upper-layer part to
   * out and free the slot. Returns its length, or 0.
   */
  private complete(s: number): number {
    const total = this.total[s]!;
    const skip = this.skip[s]!;
    if (total < 0 || this.have[s] !== total) return NONE;
    copyBytes(this.out, 0, this.buf[s]!, skip, total - skip);
    this.lastProto = this.proto[s]!;
    this.free(s);
    fragStats.completed++;
    return total - skip;
  }

  /** Number of received units among [u0, u1) in slot s's bitmap. */
  private countUnits(s: number, u0: number, u1: number): number {
    const map = this.map;
    const w = s * MAP_WORDS;
    let n = 0;
    for (let u = u0; u < u1; u++) n += (map[w + (u >>> 5)]! >>> (u & 31)) & 1;
    return n;
  }

  /** Mark units [u0, u1) received in slot s's bitmap. */
  private markUnits(s: number, u0: number, u1: number): void {
    const map = this.map;
    const w = s * MAP_WORDS;
    for (let u = u0; u < u1; u++) map[w + (u >>> 5)] |= 1 << (u & 31);
  }

  /** Abandon the datagram in slot s (the caller counted why). Returns 0. */
  private abandon(s: number): number {
    this.free(s);
    return NONE;
  }

  /** Count a malformed fragment. Returns 0. */
  private discard(): number {
    fragStats.dropped++;
    return NONE;
  }
}
