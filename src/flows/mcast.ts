/**
 * Multicast and broadcast UDP, both ways, with an IGMP/MLD proxy.
 *
 * Theory of operation
 * -------------------
 * The guest's kernel says which groups it wants with IGMP (IPv4) and MLD
 * (IPv6) reports (wire/igmp.ts reads them). We are the only other node on
 * its link, so we act as a proxy (in the spirit of RFC 4605): for each group
 * the guest joined, we join the same group on the host, on the interface the
 * guest's addresses come from (-i / --outbound-if... pick it, as for the
 * addresses), and what the host receives for it reaches the guest as a
 * multicast frame (destination MAC 01:00:5e:... or 33:33:..., from the
 * group address).
 *
 * Ports: an unprivileged process can only receive a group's datagrams on
 * UDP sockets bound to a port, so each group has up to MCAST_PORTS_PER_GROUP
 * host sockets, one per port, bound to (group, port) with SO_REUSEADDR and
 * joined to the group on the host interface. The ports come from:
 *   - the guest's own traffic: a datagram it sends to a group it joined
 *     (mDNS and SSDP send to the port they listen on);
 *   - the group itself, for the well-known ones (mDNS 5353, LLMNR 5355,
 *     SSDP 1900, WS-Discovery 3702);
 *   - the port source, read when a report arrives and at every query:
 *     pasta, the UDP ports bound in the namespace outside the ephemeral
 *     range (its /proc net files); passt, which can't see a VM's sockets,
 *     the guest ports -u forwards to. Both cover a receiver that never
 *     sends.
 *
 * Source filters: each record of an IGMPv3 / MLDv2 report changes the
 * group's filter as RFC 3376 6.4 / RFC 3810 7.4 give it (the guest is the
 * only host on its link, so its interface state is the group's state; no
 * per-source timers are needed): INCLUDE or EXCLUDE a list of sources
 * (SourceFilters; the older versions' reports are EXCLUDE {}). The host
 * sockets join any-source; a datagram whose source (as the guest sees it)
 * the filter refuses is dropped before it becomes a frame (counted as
 * filtered).
 *
 * Every other UDP socket of ours (flows, -u listeners) has
 * IP_MULTICAST_ALL / IPV6_MULTICAST_ALL off, so that our memberships don't
 * make them receive group traffic too (a datagram would reach the guest
 * twice). A flow socket bound to a port a group uses gets SO_REUSEADDR, so
 * that the guest's socket and the group's can share the port (mDNS: 5353
 * both ways); a flow socket opened before the group, without it, keeps the
 * group's socket from binding (counted as bindFailed, retried at the next
 * query).
 *
 * Querier: we send general queries (IGMPv3 from the gateway address to
 * 224.0.0.1, MLDv2 from our link-local address to ff02::1, TTL / hop limit 1,
 * Router Alert) every QUERY_INTERVAL_MS, so that the guest reports its
 * groups again; a group not reported for the group membership interval
 * (robustness 2 x query interval + response time: 260 s, RFC 3376 8.4 /
 * RFC 3810 9.4) is left. A leave (IGMPv2 leave, a report of INCLUDE {},
 * MLD done) is acted on at once: the guest is the only host on its link,
 * so there is no other member to ask about (the "fast leave" of snooping
 * switches on single-host ports). Queries from the guest are ignored:
 * we stay the querier.
 *
 * Sending: a datagram from the guest to a multicast group, to
 * 255.255.255.255 or to the broadcast address of its subnet leaves through
 * the guest's flow socket (bound to the guest's port where free, as any UDP
 * flow, flows/udp.ts) at once, with the guest's TTL / hop limit
 * (IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, IP_TTL for broadcasts), out of the
 * host interface (IP_MULTICAST_IF, IPV6_MULTICAST_IF; SO_BROADCAST). With
 * IP_MULTICAST_LOOP on (the default), host processes that joined the group
 * get it too; our own group sockets would as well, so a datagram arriving
 * on them from one of the host interface's addresses and from a port we
 * sent multicast from is dropped (counted as looped).
 *
 * Broadcasts from the host: for each port the guest sent a broadcast to
 * (LAN discovery: a program broadcasts to the port it listens on, and its
 * peers broadcast back to it) in the last BCAST_TIMEOUT_MS (the UDP flows'
 * timeout), up to MCAST_BCAST_PORTS, two host sockets
 * bound to 255.255.255.255 and to the subnet's broadcast address on that
 * port (SO_REUSEADDR); what they receive reaches the guest as broadcast
 * frames (ff:ff:ff:ff:ff:ff, to the same address). The flow socket the
 * guest broadcast from, and the -u sockets on such a port (pasta's
 * `-u auto` makes one as soon as the guest binds it), get a socket filter
 * that drops datagrams to a broadcast address (noBroadcasts), so that none
 * arrives a second time as a unicast datagram.
 *
 * Limits: MCAST_MAX_GROUPS groups per guest (further joins are refused and
 * counted, with one log line each time the limit is reached),
 * MCAST_PORTS_PER_GROUP ports per group, MCAST_MAX_SOCKETS group sockets in
 * all. Malformed reports (lengths, checksums, source lists past the end,
 * group addresses that are not multicast) change nothing and are counted.
 * Not done: host broadcasts to ports the guest never
 * broadcast to reach it as before, as unicast datagrams on its flow sockets
 * and -u listeners.
 */
import { ptr } from "bun:ffi";
import type { Config } from "../conf/config.ts";
import { getAddrs, linkIndex, makeTalk, openNetlink, type NlTalk } from "../conf/netlink.ts";
import { isEphemeral, probeEphemeral, type PortRange } from "../fwd/ports.ts";
import { natIn4, natIn6 } from "./nat.ts";
import { log } from "../log.ts";
import { Kind } from "../loop/kinds.ts";
import { EPOLLIN, now, type Loop } from "../loop/loop.ts";
import { table } from "../loop/arena.ts";
import {
  AF_INET,
  AF_INET6,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
  SO_RCVBUF,
  SO_REUSEADDR,
} from "../native/consts.ts";
import { sys } from "../native/ffi.ts";
import { SA6_ADDR, sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import { commitUdpFrame, type FrameSink, framesThatFit } from "../tap/sink.ts";
import * as w from "../wire/index.ts";
import {
  IGMP_IP_HLEN,
  IGMP_V3_QUERY_LEN,
  ip4IsMulticast,
  MCAST_BAD_CSUM,
  MCAST_IGNORED,
  ALLOW_NEW_SOURCES,
  BLOCK_OLD_SOURCES,
  CHANGE_TO_EXCLUDE,
  CHANGE_TO_INCLUDE,
  MCAST_MALFORMED,
  MCAST_NOT_GROUP,
  newMcastChanges,
  mcastParseIgmp,
  mcastParseMld,
  MLD_HBH_LEN,
  MLD_V2_QUERY_LEN,
  MODE_IS_EXCLUDE,
  MODE_IS_INCLUDE,
  QUERY_ROBUSTNESS,
  writeIgmpQuery,
  writeMldQuery,
} from "../wire/igmp.ts";
import { FlowHash } from "./flowhash.ts";

/** Groups the guest may join at once (IPv4 and IPv6 together). */
export const MCAST_MAX_GROUPS = 256;
/** Host sockets (ports) per group. */
export const MCAST_PORTS_PER_GROUP = 16;
/** Group sockets in all. */
export const MCAST_MAX_SOCKETS = 512;
/** Ports the guest's broadcasts went to, each with host sockets bound to the limited and the subnet broadcast address. */
export const MCAST_BCAST_PORTS = 16;
/** A broadcast port the guest has not broadcast to for this long is closed (as a UDP flow, flows/udp.ts: PASTA_UDP_TIMEOUT_MS). */
const BCAST_TIMEOUT_MS = Number(process.env.PASTA_UDP_TIMEOUT_MS) || 180_000;
/** Epoll references of the broadcast sockets start after the group sockets'. */
const BCAST_REF = MCAST_MAX_GROUPS * MCAST_PORTS_PER_GROUP;
/** SO_RCVBUF of a group socket: room for a burst of large datagrams (the default holds three of 64 KiB), as -u sockets have. */
const MCAST_RCVBUF = 4 << 20;
/** Query interval (RFC 3376 8.2: 125 s); PASTA_MCAST_QUERY_MS overrides it, for tests. */
export const QUERY_INTERVAL_MS = Number(process.env.PASTA_MCAST_QUERY_MS) || 125_000;
/** Max response time we ask for (10 s, or half a shorter query interval). */
const RESPONSE_MS = Math.min(10_000, Math.floor(QUERY_INTERVAL_MS / 2));
/** Group membership interval (RFC 3376 8.4, RFC 3810 9.4). */
export const MEMBERSHIP_MS = QUERY_ROBUSTNESS * QUERY_INTERVAL_MS + RESPONSE_MS;

const IPPROTO_IP = 0;
const IP_TTL = 2;
const IP_MULTICAST_IF = 32;
const IP_MULTICAST_TTL = 33;
const IP_ADD_MEMBERSHIP = 35;
const IP_MULTICAST_ALL = 49;
const IPV6_MULTICAST_IF = 17;
const IPV6_MULTICAST_HOPS = 18;
const IPV6_JOIN_GROUP = 20;
const IPV6_MULTICAST_ALL = 29;
const SO_BROADCAST = 6;
const SO_ATTACH_FILTER = 26;
const MCAST_MSFILTER = 48;
const MCAST_EXCLUDE = 0;
const MCAST_INCLUDE = 1;
/** struct group_filter (RFC 3678, x86-64 and aarch64 layout): interface, group, mode, count, then the sources. */
const SOCKADDR_STORAGE = 128;
const GF_GROUP = 8;
const GF_FMODE = GF_GROUP + SOCKADDR_STORAGE;
const GF_NUMSRC = GF_FMODE + 4;
const GF_SLIST = GF_NUMSRC + 4;
/** Classic BPF: the network header, from a socket filter that starts at the transport header (linux/filter.h). */
const SKF_NET_OFF = -0x100000;
const EADDRINUSE = 98;

const RECV_BATCH = 32;
const MAX_PAYLOAD = 65535 - w.IPV4_HLEN - w.UDP_HLEN;
const LIMITED_BROADCAST = 0xffffffff;
const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;

export const mcastStats = {
  reports: 0,
  joins: 0,
  leaves: 0,
  expired: 0,
  malformed: 0,
  badChecksum: 0,
  notGroup: 0,
  ignored: 0,
  groupLimit: 0,
  socketLimit: 0,
  sockets: 0,
  bindFailed: 0,
  queries: 0,
  toGuest: 0,
  /** Source filters the host would not take whole (too many sources): any source there instead. */
  hostFilterFull: 0,
  /** Broadcasts from the host delivered to the guest. */
  broadcastToGuest: 0,
  /** Datagrams for a group from a source the guest's filter refuses. */
  filtered: 0,
  fromGuest: 0,
  sendErrors: 0,
  looped: 0,
};

/** The host interface we join groups on, and its addresses (to tell our own looped datagrams). */
export interface HostIf {
  ifindex4: number;
  ifindex6: number;
  addrs4: number[];
  addrs6: Uint8Array[];
}

/**
 * The interfaces of cfg (ip4.ifname, ip6.ifname) over netlink: index and
 * addresses. Nothing (index 0: the kernel picks by route) in local mode or
 * when netlink fails.
 */
export function hostIfOf(cfg: Config): HostIf {
  const out: HostIf = { ifindex4: 0, ifindex6: 0, addrs4: [], addrs6: [] };
  let fd = -1;
  try {
    fd = openNetlink();
    const talk = makeTalk(fd);
    if (cfg.ip4?.ifname) {
      out.ifindex4 = linkIndex(talk, cfg.ip4.ifname);
      out.addrs4 = addrsOf(talk, 2, out.ifindex4).map((a) => w.rd32(a, 0));
    }
    if (cfg.ip6?.ifname) {
      out.ifindex6 = linkIndex(talk, cfg.ip6.ifname);
      out.addrs6 = addrsOf(talk, 10, out.ifindex6);
    }
  } catch (e) {
    log.debug(`multicast: host interface: ${(e as Error).message}`);
  } finally {
    if (fd >= 0) sys.shim_close(fd);
  }
  if (cfg.ip4 && cfg.ip4.addr !== 0 && !out.addrs4.includes(cfg.ip4.addr)) out.addrs4.push(cfg.ip4.addr);
  return out;
}

function addrsOf(talk: NlTalk, family: 2 | 10, ifindex: number): Uint8Array[] {
  return getAddrs(talk, family, ifindex).map((a) => a.addr);
}

/** Our sockets other than the group sockets: receive no group traffic our memberships would bring. */
export function noForeignGroups(fd: number, v6: boolean): void {
  if (v6) sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0);
  else sys.shim_setsockopt_int(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0);
}

/** Filter modes of a group (RFC 3376 3.1, RFC 3810 4.2). */
export const FILTER_INCLUDE = 1;
export const FILTER_EXCLUDE = 2;
/** Sources kept per group; a longer list is kept as a wider filter (see SourceFilters). */
export const MCAST_MAX_SOURCES = 16;

/**
 * The guest's source filter for each group: INCLUDE or EXCLUDE a list of
 * sources (4 or 16 bytes each, in 16-byte slots), changed by the records of
 * its reports. A list that doesn't fit is widened, never narrowed:
 * INCLUDE falls back to EXCLUDE {} (any source), EXCLUDE keeps the sources
 * that fit. What passes is then a superset of what the guest asked for,
 * and its kernel filters the rest again per socket.
 */
export class SourceFilters {
  readonly mode = table.u8(MCAST_MAX_GROUPS);
  readonly n = table.u8(MCAST_MAX_GROUPS);
  /** Group g's sources, in 16-byte slots from (g * MCAST_MAX_SOURCES) * 16. */
  readonly addr = table.u8(MCAST_MAX_GROUPS * MCAST_MAX_SOURCES * 16);

  /** Group g's filter becomes mode with the nsrc sources at b[src]. */
  set(g: number, mode: number, b: Uint8Array, src: number, nsrc: number, v6: boolean): void {
    this.mode[g] = mode;
    this.n[g] = 0;
    this.add(g, b, src, nsrc, v6);
  }

  /** ALLOW_NEW_SOURCES: the sources at b[src] now pass. */
  allow(g: number, b: Uint8Array, src: number, nsrc: number, v6: boolean): void {
    if (this.mode[g] === FILTER_INCLUDE) this.add(g, b, src, nsrc, v6);
    else this.drop(g, b, src, nsrc, v6);
  }

  /** BLOCK_OLD_SOURCES: the sources at b[src] no longer pass. */
  block(g: number, b: Uint8Array, src: number, nsrc: number, v6: boolean): void {
    if (this.mode[g] === FILTER_INCLUDE) this.drop(g, b, src, nsrc, v6);
    else this.add(g, b, src, nsrc, v6);
  }

  /** INCLUDE {}: nothing passes (the group is left). */
  none(g: number): boolean {
    return this.mode[g] === FILTER_INCLUDE && this.n[g] === 0;
  }

  /** Whether a datagram from the source at a[o] passes group g's filter. */
  passes(g: number, a: Uint8Array, o: number, v6: boolean): boolean {
    return this.find(g, a, o, v6 ? 16 : 4) >= 0 === (this.mode[g] === FILTER_INCLUDE);
  }

  private add(g: number, b: Uint8Array, src: number, nsrc: number, v6: boolean): void {
    const alen = v6 ? 16 : 4;
    for (let k = 0; k < nsrc; k++) {
      const a = src + k * alen;
      if (this.find(g, b, a, alen) >= 0) continue;
      const n = this.n[g]!;
      if (n === MCAST_MAX_SOURCES) {
        if (this.mode[g] === FILTER_INCLUDE) this.set(g, FILTER_EXCLUDE, b, 0, 0, v6);
        return;
      }
      const slot = (g * MCAST_MAX_SOURCES + n) * 16;
      this.addr.fill(0, slot, slot + 16);
      w.copyBytes(this.addr, slot, b, a, alen);
      this.n[g] = n + 1;
    }
  }

  private drop(g: number, b: Uint8Array, src: number, nsrc: number, v6: boolean): void {
    const alen = v6 ? 16 : 4;
    for (let k = 0; k < nsrc; k++) {
      const i = this.find(g, b, src + k * alen, alen);
      if (i < 0) continue;
      const last = this.n[g]! - 1;
      const base = g * MCAST_MAX_SOURCES * 16;
      this.addr.copyWithin(base + i * 16, base + last * 16, base + last * 16 + 16);
      this.n[g] = last;
    }
  }

  private find(g: number, a: Uint8Array, o: number, alen: number): number {
    const base = g * MCAST_MAX_SOURCES * 16;
    for (let i = 0; i < this.n[g]!; i++) if (w.equalBytes(this.addr, base + i * 16, a, o, alen)) return i;
    return -1;
  }
}

export class Mcast {
  private readonly gV6 = table.u8(MCAST_MAX_GROUPS);
  private readonly gUsed = table.u8(MCAST_MAX_GROUPS);
  private readonly gAddr = table.u8(MCAST_MAX_GROUPS * 16);
  private readonly gExpire = table.f64(MCAST_MAX_GROUPS);
  private readonly gNPorts = table.u8(MCAST_MAX_GROUPS);
  private readonly gPort = table.u16(MCAST_MAX_GROUPS * MCAST_PORTS_PER_GROUP);
  private readonly gFd = table.i32(MCAST_MAX_GROUPS * MCAST_PORTS_PER_GROUP).fill(-1);
  private readonly index = new FlowHash(MCAST_MAX_GROUPS);
  private readonly filters = new SourceFilters();
  private readonly bPort = table.u16(MCAST_BCAST_PORTS);
  /** Per broadcast port j: the socket on 255.255.255.255 (2j) and on the subnet's broadcast address (2j + 1), -1: none. */
  private readonly bFd = table.i32(MCAST_BCAST_PORTS * 2).fill(-1);
  /** When the guest last broadcast to each port. */
  private readonly bLast = table.f64(MCAST_BCAST_PORTS);
  /** The socket filter that keeps broadcasts off a flow socket (noBroadcasts), and the sock_fprog pointing at it. */
  private readonly bpf = new Uint8Array(5 * 8);
  private readonly fprog = new Uint8Array(16);
  private nGroups = 0;
  private nSockets = 0;
  private limitLogged = false;
  /** Local ports our flow sockets sent multicast or broadcast from (a bitmap). */
  private readonly ownPorts = new Uint8Array(65536 / 8);
  /** The guest's ports, as portSource last found them. */
  private readonly guestPorts = new Uint8Array(65536 / 8);
  private readonly eph: PortRange = probeEphemeral();
  /** The host's -u sockets (IPv4) bound to a port: they keep broadcasts to a port the guest broadcast to off (noBroadcasts). */
  listenersOn: ((port: number) => number[]) | null = null;
  /** Fills a bitmap with the guest's UDP ports: pasta, those bound in the namespace; passt, those -u forwards to. */
  portSource: ((found: Uint8Array) => void) | null = null;
  /** What the report being read asks for. */
  private readonly changes = newMcastChanges();
  private readonly sa = new Uint8Array(28);
  private readonly mreq = new Uint8Array(20);
  /** A struct group_filter for hostFilter, with room for MCAST_MAX_SOURCES sources. */
  private readonly gf = new Uint8Array(GF_SLIST + MCAST_MAX_SOURCES * SOCKADDR_STORAGE);
  private readonly mac = new Uint8Array(6);
  private readonly tmpAddr = new Uint8Array(16);
  private readonly rxAddrs = table.u8(RECV_BATCH * 28);
  private readonly rxLens = table.u32(RECV_BATCH);
  private readonly sendOffLen = new Uint32Array(2);
  private readonly saLen = new Int32Array(1);

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly sink: FrameSink,
    private readonly hostIf: HostIf,
  ) {
    loop.on(Kind.MCAST, (ref) => (ref < BCAST_REF ? this.onSocket(ref) : this.onBroadcast(ref - BCAST_REF)));
    this.buildBroadcastFilter();
    loop.every(Math.min(1000, QUERY_INTERVAL_MS), (t) => this.expire(t));
  }

  /** Groups joined, for tests and --debug. */
  count(): number {
    return this.nGroups;
  }

  /** Start querying the guest: now, then every QUERY_INTERVAL_MS. */
  start(): void {
    this.query();
    this.loop.every(QUERY_INTERVAL_MS, () => this.query());
  }

  // ------------------------------------------------------- reports

  /** An IGMP message from the guest at b[l4], l4len bytes. */
  igmp(b: Uint8Array, l4: number, l4len: number, t: number): void {
    this.apply(mcastParseIgmp(b, l4, l4len, this.changes), b, false, t);
  }

  /** An MLD message from the guest (ICMPv6 checksum already verified). */
  mld(b: Uint8Array, l4: number, l4len: number, t: number): void {
    this.apply(mcastParseMld(b, l4, l4len, this.changes), b, true, t);
  }

  private apply(n: number, b: Uint8Array, v6: boolean, t: number): void {
    if (n < 0) return this.countDrop(n);
    mcastStats.reports++;
    if (n > 0 && this.portSource) this.portSource(this.guestPorts);
    const c = this.changes;
    for (let k = 0; k < n; k++) if (isProxied(c.addr, k * 16, v6)) this.record(v6, k, b, t);
  }

  /**
   * Record k of the report in b: the guest's interface state for its group
   * (RFC 3376 6.4 / RFC 3810 7.4, read from the one host on the link): a
   * join, a leave, or a new source filter.
   */
  private record(v6: boolean, k: number, b: Uint8Array, t: number): void {
    const c = this.changes;
    const type = c.type[k]!;
    const nsrc = c.nsrc[k]!;
    const src = c.src[k]!;
    let g = this.lookup(v6, c.addr, k * 16);
    const f = this.filters;
    if (type === MODE_IS_INCLUDE || type === CHANGE_TO_INCLUDE) {
      if (nsrc === 0) return this.leave(g, v6, c.addr, k * 16);
      g = this.join(g, v6, c.addr, k * 16, t);
      if (g >= 0) f.set(g, FILTER_INCLUDE, b, src, nsrc, v6);
    } else if (type === MODE_IS_EXCLUDE || type === CHANGE_TO_EXCLUDE) {
      g = this.join(g, v6, c.addr, k * 16, t);
      if (g >= 0) f.set(g, FILTER_EXCLUDE, b, src, nsrc, v6);
    } else if (type === ALLOW_NEW_SOURCES) {
      if (g < 0 && nsrc === 0) return;
      const fresh = g < 0;
      g = this.join(g, v6, c.addr, k * 16, t);
      if (g < 0) return;
      if (fresh) f.set(g, FILTER_INCLUDE, b, src, nsrc, v6);
      else f.allow(g, b, src, nsrc, v6);
    } else if (type === BLOCK_OLD_SOURCES && g >= 0) {
      f.block(g, b, src, nsrc, v6);
      if (f.none(g)) return this.leave(g, v6, c.addr, k * 16);
    }
    if (g >= 0) this.hostFilters(g);
  }

  private countDrop(n: number): void {
    if (n === MCAST_MALFORMED) mcastStats.malformed++;
    else if (n === MCAST_BAD_CSUM) mcastStats.badChecksum++;
    else if (n === MCAST_NOT_GROUP) mcastStats.notGroup++;
    else if (n === MCAST_IGNORED) mcastStats.ignored++;
  }

  /** Group g (-1: not joined yet, the group at a[o]) joined or refreshed; its number, -1 at the limit. */
  private join(g: number, v6: boolean, a: Uint8Array, o: number, t: number): number {
    if (g < 0) {
      g = this.insert(v6, a, o);
      if (g < 0) return -1;
      this.filters.set(g, FILTER_EXCLUDE, a, 0, 0, v6);
      mcastStats.joins++;
      log.debug(`multicast: guest joined ${groupName(v6, a, o)}`);
    }
    this.gExpire[g] = t + MEMBERSHIP_MS;
    this.addGuestPorts(g);
    this.addWellKnownPorts(g);
    this.openMissing(g);
    return g;
  }

  private leave(g: number, v6: boolean, a: Uint8Array, o: number): void {
    if (g < 0) return;
    mcastStats.leaves++;
    log.debug(`multicast: guest left ${groupName(v6, a, o)}`);
    this.remove(g);
  }

  /** Groups whose membership interval ran out. */
  private expire(t: number): void {
    this.expireBroadcast(t);
    if (this.nGroups === 0) return;
    for (let g = 0; g < MCAST_MAX_GROUPS; g++) {
      if (!this.gUsed[g] || this.gExpire[g]! > t) continue;
      mcastStats.expired++;
      this.remove(g);
    }
  }

  // ------------------------------------------------------- ports and sockets

  /** The port source's ports (outside the ephemeral range) as ports of group g. */
  private addGuestPorts(g: number): void {
    if (!this.portSource) return;
    const m = this.guestPorts;
    for (let byte = 0; byte < m.length; byte++) {
      if (m[byte] === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const p = byte * 8 + bit;
        if (m[byte]! & (1 << bit) && p > 0 && !isEphemeral(p, this.eph)) this.addPort(g, p);
      }
    }
  }

  /** The service ports of a well-known group (wellKnownPorts) as ports of group g. */
  private addWellKnownPorts(g: number): void {
    for (const p of wellKnownPorts(this.gAddr, g * 16, this.gV6[g] === 1)) this.addPort(g, p);
  }

  /** Port p for group g (no socket yet: openMissing); false when the group has no room. */
  private addPort(g: number, p: number): boolean {
    const base = g * MCAST_PORTS_PER_GROUP;
    const n = this.gNPorts[g]!;
    for (let k = 0; k < n; k++) if (this.gPort[base + k] === p) return true;
    if (n === MCAST_PORTS_PER_GROUP) {
      mcastStats.socketLimit++;
      return false;
    }
    this.gPort[base + n] = p;
    this.gFd[base + n] = -1;
    this.gNPorts[g] = n + 1;
    return true;
  }

  /** Open the sockets group g lacks. */
  private openMissing(g: number): void {
    const base = g * MCAST_PORTS_PER_GROUP;
    for (let k = 0; k < this.gNPorts[g]!; k++) if (this.gFd[base + k]! < 0) this.openGroupSocket(g, base + k);
  }

  /** A socket bound to (group g, port of slot s), joined to the group on the host interface. */
  private openGroupSocket(g: number, s: number): void {
    if (this.nSockets >= MCAST_MAX_SOCKETS) {
      mcastStats.socketLimit++;
      return;
    }
    const v6 = this.gV6[g] === 1;
    const fd = sys.shim_socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      mcastStats.bindFailed++;
      return;
    }
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, MCAST_RCVBUF);
    if (v6) sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    const sa = this.sa;
    const len = v6
      ? sockaddr6(sa, this.gAddr, g * 16, this.gPort[s]!, this.hostIf.ifindex6)
      : sockaddr4(sa, w.rd32(this.gAddr, g * 16), this.gPort[s]!);
    let rc = sys.shim_bind(fd, sa, len);
    if (rc >= 0) rc = this.joinOn(fd, g, v6);
    if (rc >= 0 && !(this.filters.mode[g] === FILTER_EXCLUDE && this.filters.n[g] === 0)) this.hostFilter(fd, g);
    if (rc < 0) {
      if (rc === -EADDRINUSE) log.debug(`multicast: port ${this.gPort[s]} of ${groupName(v6, this.gAddr, g * 16)} is taken`);
      mcastStats.bindFailed++;
      sys.shim_close(fd);
      return;
    }
    this.gFd[s] = fd;
    this.nSockets++;
    mcastStats.sockets++;
    this.loop.add(fd, EPOLLIN, Kind.MCAST, s);
  }

  /** Group g's source filter on each of its sockets (hostFilter). */
  private hostFilters(g: number): void {
    const base = g * MCAST_PORTS_PER_GROUP;
    for (let k = 0; k < this.gNPorts[g]!; k++) if (this.gFd[base + k]! >= 0) this.hostFilter(this.gFd[base + k]!, g);
  }

  /**
   * The guest's source filter for group g on socket fd (MCAST_MSFILTER,
   * RFC 3678 5.2), so that the host joins source-specific too and its
   * routers send what the guest asked for (a source-specific group, 232/8,
   * gets nothing from them otherwise). The host may keep fewer sources per
   * socket than we do (IPv4: net.ipv4.igmp_max_msf, 10): then any source
   * (counted as hostFilterFull), and the guest's filter still applies on
   * delivery.
   */
  private hostFilter(fd: number, g: number): void {
    const v6 = this.gV6[g] === 1;
    const f = this.filters;
    const n = f.n[g]!;
    const gf = this.gf.fill(0);
    const d = new DataView(gf.buffer);
    d.setUint32(0, v6 ? this.hostIf.ifindex6 : this.hostIf.ifindex4, true);
    const put = (at: number, a: Uint8Array, o: number) => {
      const len = v6 ? sockaddr6(this.sa, a, o, 0, 0) : sockaddr4(this.sa, w.rd32(a, o), 0);
      w.copyBytes(gf, at, this.sa, 0, len);
    };
    put(GF_GROUP, this.gAddr, g * 16);
    d.setUint32(GF_FMODE, f.mode[g] === FILTER_INCLUDE ? MCAST_INCLUDE : MCAST_EXCLUDE, true);
    d.setUint32(GF_NUMSRC, n, true);
    for (let i = 0; i < n; i++) put(GF_SLIST + i * SOCKADDR_STORAGE, f.addr, (g * MCAST_MAX_SOURCES + i) * 16);
    const level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
    if (sys.shim_setsockopt(fd, level, MCAST_MSFILTER, gf, GF_SLIST + n * SOCKADDR_STORAGE) >= 0) return;
    mcastStats.hostFilterFull++;
    d.setUint32(GF_FMODE, MCAST_EXCLUDE, true);
    d.setUint32(GF_NUMSRC, 0, true);
    sys.shim_setsockopt(fd, level, MCAST_MSFILTER, gf, GF_SLIST);
  }

  /** IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP for group g on the host interface. */
  private joinOn(fd: number, g: number, v6: boolean): number {
    const m = this.mreq.fill(0);
    if (v6) {
      w.copyBytes(m, 0, this.gAddr, g * 16, 16);
      new DataView(m.buffer).setUint32(16, this.hostIf.ifindex6, true);
      return sys.shim_setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, m, 20);
    }
    w.copyBytes(m, 0, this.gAddr, g * 16, 4);
    new DataView(m.buffer).setInt32(8, this.hostIf.ifindex4, true);
    return sys.shim_setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, m, 12);
  }

  private closeSockets(g: number): void {
    const base = g * MCAST_PORTS_PER_GROUP;
    for (let k = 0; k < this.gNPorts[g]!; k++) {
      const fd = this.gFd[base + k]!;
      if (fd < 0) continue;
      this.loop.del(fd);
      sys.shim_close(fd);
      this.gFd[base + k] = -1;
      this.nSockets--;
    }
    this.gNPorts[g] = 0;
  }

  // ------------------------------------------------------- to the guest

  /** Datagrams on group socket slot s: to the guest as multicast frames. */
  private onSocket(s: number): void {
    const g = Math.floor(s / MCAST_PORTS_PER_GROUP);
    this.receive(this.gFd[s]!, g, this.gPort[s]!, this.gV6[g] === 1, 0);
  }

  /** Datagrams on broadcast socket s: to the guest as broadcast frames, to the address the socket is bound to. */
  private onBroadcast(s: number): void {
    this.receive(this.bFd[s]!, -1, this.bPort[s >> 1]!, false, s & 1 ? this.subnetBroadcast() : LIMITED_BROADCAST);
  }

  /**
   * What socket fd holds, received straight into frames: for group g, or
   * (g = -1) for the broadcast address bcast; to the guest's port.
   */
  private receive(fd: number, g: number, port: number, v6: boolean, bcast: number): void {
    if (fd < 0) return;
    const hdr = w.ETH_HLEN + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN) + w.UDP_HLEN;
    const maxLen = Math.min(MAX_PAYLOAD, 65535 - hdr + w.ETH_HLEN);
    const stride = hdr + maxLen + this.sink.frameRoom;
    const batch = framesThatFit(this.sink, stride, RECV_BATCH);
    for (let round = 0; round < 8; round++) {
      const base = this.sink.alloc(batch * stride, batch);
      if (base < 0) return;
      const n = sys.shim_udp_recv_batch(fd, this.sink.buf, base + hdr, stride, maxLen, batch, this.rxAddrs, this.rxLens);
      if (n <= 0) return;
      for (let k = 0; k < n; k++) this.toGuest(g, bcast, port, base + k * stride, k, this.rxLens[k]!, v6);
      if (n < batch) return;
    }
  }

  /** Headers for datagram k (payload in place after them at off), from its sender to group g (or broadcast address bcast), port. */
  private toGuest(g: number, bcast: number, port: number, off: number, k: number, len: number, v6: boolean): void {
    const b = this.sink.buf;
    const sa = k * 28;
    const sport = (this.rxAddrs[sa + 2]! << 8) | this.rxAddrs[sa + 3]!;
    if (this.isOwn(sa, sport, v6)) {
      mcastStats.looped++;
      return;
    }
    const ip = off + w.ETH_HLEN;
    const l4 = ip + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    if (g >= 0) groupMac(this.mac, this.gAddr, g * 16, v6);
    else this.mac.fill(0xff);
    w.writeEth(b, off, this.mac, this.cfg.ourMac, v6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
    if (v6) natIn6(this.cfg.ip6!, this.rxAddrs, sa + SA6_ADDR, sport, false, this.tmpAddr);
    else {
      const src = natIn4(this.cfg.ip4!, w.rd32(this.rxAddrs, sa + 4), sport, false);
      if (src === 0) return;
      w.wr32(this.tmpAddr, 0, src);
    }
    if (g >= 0 && !this.filters.passes(g, this.tmpAddr, 0, v6)) {
      mcastStats.filtered++;
      return;
    }
    if (v6) w.writeIpv6At(b, ip, this.tmpAddr, 0, this.gAddr, g * 16, w.IPPROTO_UDP, w.UDP_HLEN + len, 1);
    else w.writeIpv4(b, ip, w.rd32(this.tmpAddr, 0), g >= 0 ? w.rd32(this.gAddr, g * 16) : bcast, w.IPPROTO_UDP, w.UDP_HLEN + len, 1);
    w.writeUdp(b, l4, sport, port, len);
    commitUdpFrame(this.sink, b, off, ip, l4, len, v6);
    if (g >= 0) mcastStats.toGuest++;
    else mcastStats.broadcastToGuest++;
  }

  /** The sender at rxAddrs[sa] is one of our flow sockets (a host address, a port we sent multicast from). */
  private isOwn(sa: number, sport: number, v6: boolean): boolean {
    if ((this.ownPorts[sport >> 3]! & (1 << (sport & 7))) === 0) return false;
    if (!v6) return this.hostIf.addrs4.includes(w.rd32(this.rxAddrs, sa + 4));
    for (const a of this.hostIf.addrs6) if (w.ip6Equal(this.rxAddrs, sa + SA6_ADDR, a)) return true;
    return false;
  }

  // ------------------------------------------------------- from the guest

  /**
   * Whether the guest's datagram (IP header at b[ip], destination port) goes
   * to a group or a broadcast address: then it is for send(). A group the
   * guest joined learns the port.
   */
  outbound(b: Uint8Array, ip: number, port: number, v6: boolean): boolean {
    if (v6) {
      if (!w.ip6IsMulticast(b, ip + w.IP6_DST)) return false;
    } else if (!this.isBroadcastOrGroup(w.ipv4Dst(b, ip))) return false;
    const a = v6 ? ip + w.IP6_DST : ip + w.IP4_DST;
    const group = v6 || ip4IsMulticast(w.ipv4Dst(b, ip));
    const g = group ? this.lookup(v6, b, a) : -1;
    if (g >= 0 && port !== 0 && this.addPort(g, port)) this.openMissing(g);
    if (!group && port !== 0) this.addBroadcastPort(port, now());
    return true;
  }

  /** The broadcast address of the guest's subnet, 0 for none (a /31 or /32). */
  private subnetBroadcast(): number {
    const ip4 = this.cfg.ip4;
    if (!ip4 || ip4.prefixLen >= 31) return 0;
    return (ip4.addr | (0xffffffff >>> ip4.prefixLen)) >>> 0;
  }

  /**
   * Broadcasts from the host to port p (one the guest broadcast to at time
   * t) reach the guest from now on, until it has not broadcast to p for
   * BCAST_TIMEOUT_MS. Slots are free where bPort is 0.
   */
  private addBroadcastPort(p: number, t: number): void {
    let free = -1;
    for (let j = 0; j < MCAST_BCAST_PORTS; j++) {
      if (this.bPort[j] === p) {
        this.bLast[j] = t;
        return;
      }
      if (this.bPort[j] === 0 && free < 0) free = j;
    }
    if (free < 0) {
      mcastStats.socketLimit++;
      return;
    }
    this.bPort[free] = p;
    this.bLast[free] = t;
    this.openMissingBroadcast();
    for (const fd of this.listenersOn?.(p) ?? []) this.noBroadcasts(fd);
  }

  /** Whether broadcasts from the host to port p reach the guest through our broadcast sockets. */
  isBroadcastPort(p: number): boolean {
    if (p === 0) return false;
    for (let j = 0; j < MCAST_BCAST_PORTS; j++) if (this.bPort[j] === p) return true;
    return false;
  }

  /** The broadcast sockets not open yet (a bind that failed is retried at each query). */
  private openMissingBroadcast(): void {
    const sub = this.subnetBroadcast();
    for (let s = 0; s < 2 * MCAST_BCAST_PORTS; s++) {
      const addr = s & 1 ? sub : LIMITED_BROADCAST;
      const p = this.bPort[s >> 1]!;
      if (p !== 0 && this.bFd[s]! < 0 && addr !== 0) this.bFd[s] = this.openBroadcastSocket(addr, p, s);
    }
  }

  /** Broadcast ports the guest stopped broadcasting to (all with t = Infinity). */
  private expireBroadcast(t: number): void {
    for (let j = 0; j < MCAST_BCAST_PORTS; j++) {
      if (this.bPort[j] === 0 || t - this.bLast[j]! < BCAST_TIMEOUT_MS) continue;
      for (const s of [2 * j, 2 * j + 1]) {
        const fd = this.bFd[s]!;
        if (fd < 0) continue;
        this.loop.del(fd);
        sys.shim_close(fd);
        this.bFd[s] = -1;
        this.nSockets--;
      }
      this.bPort[j] = 0;
    }
  }

  /** A socket bound to (broadcast address addr, port p), watched as broadcast socket s; -1 when it can't be had. */
  private openBroadcastSocket(addr: number, p: number, s: number): number {
    if (this.nSockets >= MCAST_MAX_SOCKETS) {
      mcastStats.socketLimit++;
      return -1;
    }
    const fd = sys.shim_socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (sys.shim_bind(fd, this.sa, sockaddr4(this.sa, addr, p)) < 0) {
      mcastStats.bindFailed++;
      sys.shim_close(fd);
      return -1;
    }
    this.nSockets++;
    mcastStats.sockets++;
    this.loop.add(fd, EPOLLIN, Kind.MCAST, BCAST_REF + s);
    return fd;
  }

  /**
   * The filter noBroadcasts attaches: a datagram to 255.255.255.255 or to
   * the subnet's broadcast address is dropped (return 0), any other kept
   * whole. Classic BPF, read at the IP header's destination.
   */
  private buildBroadcastFilter(): void {
    const sub = this.subnetBroadcast() || LIMITED_BROADCAST;
    const insn = (k: number, code: number, jt: number, jf: number, v: number) => {
      const d = new DataView(this.bpf.buffer);
      d.setUint16(k * 8, code, true);
      this.bpf[k * 8 + 2] = jt;
      this.bpf[k * 8 + 3] = jf;
      d.setUint32(k * 8 + 4, v >>> 0, true);
    };
    insn(0, BPF_LD_W_ABS, 0, 0, SKF_NET_OFF + w.IP4_DST);
    insn(1, BPF_JEQ_K, 2, 0, LIMITED_BROADCAST);
    insn(2, BPF_JEQ_K, 1, 0, sub);
    insn(3, BPF_RET_K, 0, 0, 0xffffffff);
    insn(4, BPF_RET_K, 0, 0, 0);
    const d = new DataView(this.fprog.buffer);
    d.setUint16(0, 5, true);
    d.setBigUint64(8, BigInt(ptr(this.bpf)), true);
  }

  /**
   * Socket fd receives no broadcasts: a flow socket which just sent one
   * from the guest's port, a -u socket on a port the guest broadcast to.
   * Those reach the guest through the broadcast sockets, as broadcasts, and
   * would otherwise come a second time, as unicast datagrams (the guest's
   * own included, looped back by the host).
   */
  noBroadcasts(fd: number): void {
    sys.shim_setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, this.fprog, this.fprog.length);
  }

  private isBroadcastOrGroup(dst: number): boolean {
    if (ip4IsMulticast(dst) || dst === LIMITED_BROADCAST) return true;
    const ip4 = this.cfg.ip4!;
    if (ip4.prefixLen >= 31) return false;
    const host = (0xffffffff >>> ip4.prefixLen) >>> 0;
    return (dst & host) >>> 0 === host && ((dst ^ ip4.addr) & ~host) === 0;
  }

  /** Whether a flow socket for the guest's port should share it with group sockets (SO_REUSEADDR). */
  sharedPort(port: number): boolean {
    for (let g = 0; g < MCAST_MAX_GROUPS; g++) {
      if (!this.gUsed[g]) continue;
      const base = g * MCAST_PORTS_PER_GROUP;
      for (let k = 0; k < this.gNPorts[g]!; k++) if (this.gPort[base + k] === port) return true;
    }
    return false;
  }

  /**
   * Send the guest's datagram (payload p[off..off+len)) to the group or
   * broadcast destination of the IP header at b[ip], port, through flow
   * socket fd, with the guest's TTL or hop limit, out of the host interface.
   */
  send(fd: number, b: Uint8Array, ip: number, p: Uint8Array, off: number, len: number, port: number, v6: boolean): void {
    mcastStats.fromGuest++;
    if (v6) {
      sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, w.ipv6HopLimit(b, ip));
      if (this.hostIf.ifindex6) sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, this.hostIf.ifindex6);
      sockaddr6(this.sa, b, ip + w.IP6_DST, port, this.hostIf.ifindex6);
    } else {
      const dst = w.ipv4Dst(b, ip);
      const group = ip4IsMulticast(dst);
      if (group) {
        sys.shim_setsockopt_int(fd, IPPROTO_IP, IP_MULTICAST_TTL, w.ipv4Ttl(b, ip));
        const m = this.mreq.fill(0);
        new DataView(m.buffer).setInt32(8, this.hostIf.ifindex4, true);
        sys.shim_setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, m, 12);
      } else {
        sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_BROADCAST, 1);
        sys.shim_setsockopt_int(fd, IPPROTO_IP, IP_TTL, w.ipv4Ttl(b, ip) || 1);
        this.noBroadcasts(fd);
      }
      sockaddr4(this.sa, dst, port);
    }
    this.sendOffLen[0] = off;
    this.sendOffLen[1] = len;
    if (sys.shim_udp_send_batch(fd, p, this.sendOffLen, 1, this.sa) < 1) mcastStats.sendErrors++;
    if (!v6 && !ip4IsMulticast(w.ipv4Dst(b, ip))) sys.shim_setsockopt_int(fd, IPPROTO_IP, IP_TTL, -1);
    this.markOwnPort(fd);
  }

  /** Remember the local port of flow socket fd: what it sends loops back to our group sockets. */
  private markOwnPort(fd: number): void {
    this.saLen[0] = 28;
    if (sys.shim_getsockname(fd, this.sa, this.saLen) < 0) return;
    const p = (this.sa[2]! << 8) | this.sa[3]!;
    this.ownPorts[p >> 3]! |= 1 << (p & 7);
  }

  // ------------------------------------------------------- querier

  /** General queries to the guest (IGMPv3, MLDv2); ports bound since in the namespace are added to the groups. */
  private query(): void {
    if (this.portSource && this.nGroups > 0) {
      this.portSource(this.guestPorts);
      for (let g = 0; g < MCAST_MAX_GROUPS; g++) if (this.gUsed[g]) this.addGuestPorts(g);
    }
    for (let g = 0; g < MCAST_MAX_GROUPS; g++) if (this.gUsed[g]) this.openMissing(g);
    this.openMissingBroadcast();
    if (this.cfg.ip4) this.queryIgmp();
    if (this.cfg.ip6) this.queryMld();
  }

  private queryIgmp(): void {
    const len = w.ETH_HLEN + IGMP_IP_HLEN + IGMP_V3_QUERY_LEN;
    const off = this.sink.alloc(len);
    if (off < 0) return;
    const b = this.sink.buf;
    w.writeEth(b, off, ALL_SYSTEMS_MAC, this.cfg.ourMac, w.ETH_P_IP);
    writeIgmpQuery(b, off + w.ETH_HLEN, this.cfg.ip4!.gw, RESPONSE_MS, Math.round(QUERY_INTERVAL_MS / 1000));
    this.sink.commit(off, len);
    mcastStats.queries++;
  }

  private queryMld(): void {
    const plen = MLD_HBH_LEN + MLD_V2_QUERY_LEN;
    const len = w.ETH_HLEN + w.IPV6_HLEN + plen;
    const off = this.sink.alloc(len);
    if (off < 0) return;
    const b = this.sink.buf;
    const ip = off + w.ETH_HLEN;
    w.writeEth(b, off, ALL_NODES_MAC, this.cfg.ourMac, w.ETH_P_IPV6);
    w.writeIpv6(b, ip, this.cfg.ip6!.ourLL, ALL_NODES6, 0, plen, 1);
    const q = writeMldQuery(b, ip + w.IPV6_HLEN, RESPONSE_MS, Math.round(QUERY_INTERVAL_MS / 1000));
    w.icmp6SetChecksum(b, ip, q, MLD_V2_QUERY_LEN);
    this.sink.commit(off, len);
    mcastStats.queries++;
  }

  // ------------------------------------------------------- group table

  private lookup(v6: boolean, a: Uint8Array, o: number): number {
    const alen = v6 ? 16 : 4;
    const h = hashGroup(a, o, alen);
    const idx = this.index;
    for (let s = idx.start(h); ; s = idx.next(s)) {
      const g = idx.at(s);
      if (g < 0) return -1;
      if (idx.hashOf[g] === h && (this.gV6[g] === 1) === v6 && w.equalBytes(this.gAddr, g * 16, a, o, alen)) return g;
    }
  }

  private insert(v6: boolean, a: Uint8Array, o: number): number {
    if (this.nGroups >= MCAST_MAX_GROUPS) {
      mcastStats.groupLimit++;
      if (!this.limitLogged)
        log.warn(
          `multicast: the guest's group limit (${MCAST_MAX_GROUPS}) is reached: ${groupName(v6, a, o)} and further groups are not joined`,
        );
      this.limitLogged = true;
      return -1;
    }
    let g = 0;
    while (this.gUsed[g]) g++;
    const alen = v6 ? 16 : 4;
    this.gAddr.fill(0, g * 16, g * 16 + 16);
    w.copyBytes(this.gAddr, g * 16, a, o, alen);
    this.gV6[g] = v6 ? 1 : 0;
    this.gUsed[g] = 1;
    this.gNPorts[g] = 0;
    this.index.insert(g, hashGroup(a, o, alen));
    this.nGroups++;
    return g;
  }

  private remove(g: number): void {
    this.closeSockets(g);
    this.index.remove(g);
    this.gUsed[g] = 0;
    this.nGroups--;
    if (this.nGroups < MCAST_MAX_GROUPS) this.limitLogged = false;
  }

  /** Leave every group (passt: the guest went away). */
  reset(): void {
    for (let g = 0; g < MCAST_MAX_GROUPS; g++) if (this.gUsed[g]) this.remove(g);
    this.expireBroadcast(Number.POSITIVE_INFINITY);
  }

  /** Stop (true) or restart watching the group sockets (passt, while the guest's socket is full). */
  pauseReceive(paused: boolean): void {
    for (let s = 0; s < this.gFd.length; s++) if (this.gFd[s]! >= 0) this.loop.mod(this.gFd[s]!, paused ? 0 : EPOLLIN, Kind.MCAST, s);
    for (let s = 0; s < 2 * MCAST_BCAST_PORTS; s++)
      if (this.bFd[s]! >= 0) this.loop.mod(this.bFd[s]!, paused ? 0 : EPOLLIN, Kind.MCAST, BCAST_REF + s);
  }
}

const ALL_SYSTEMS_MAC = Uint8Array.of(0x01, 0x00, 0x5e, 0, 0, 1);
const ALL_NODES_MAC = Uint8Array.of(0x33, 0x33, 0, 0, 0, 1);
const ALL_NODES6 = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
/** ff02::1:ff00:0/104 (RFC 4291 2.7.1). */
const SOLICITED_NODE_PREFIX = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff);

/**
 * Groups we join for the guest: not the all-systems / all-nodes groups
 * (every node is in them, nothing to join), nor IPv6 solicited-node groups
 * (neighbour discovery on the guest's link, which we answer ourselves).
 */
export function isProxied(a: Uint8Array, o: number, v6: boolean): boolean {
  if (!v6) return w.rd32(a, o) !== 0xe0000001;
  if (w.equalBytes(a, o, ALL_NODES6, 0, 16)) return false;
  return !w.equalBytes(a, o, SOLICITED_NODE_PREFIX, 0, 13);
}

/** mDNS, LLMNR, SSDP and WS-Discovery: groups and the ports their services listen on (RFC 6762, RFC 4795, UPnP, WS-Discovery). */
const WELL_KNOWN: { group: Uint8Array; ports: readonly number[] }[] = [
  { group: Uint8Array.of(224, 0, 0, 251), ports: [5353] },
  { group: Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb), ports: [5353] },
  { group: Uint8Array.of(224, 0, 0, 252), ports: [5355] },
  { group: Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3), ports: [5355] },
  { group: Uint8Array.of(239, 255, 255, 250), ports: [1900, 3702] },
  { group: Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc), ports: [1900, 3702] },
  { group: Uint8Array.of(0xff, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc), ports: [1900] },
];
const NO_PORTS: readonly number[] = [];

/**
 * The ports a guest joined to the well-known group at a[o] listens on: a
 * receiver that has not sent anything yet (passt, which can't see the
 * VM's sockets) still gets the group's traffic.
 */
export function wellKnownPorts(a: Uint8Array, o: number, v6: boolean): readonly number[] {
  const alen = v6 ? 16 : 4;
  for (const k of WELL_KNOWN) if (k.group.length === alen && w.equalBytes(a, o, k.group, 0, alen)) return k.ports;
  return NO_PORTS;
}

/** The Ethernet address of group a[o] (RFC 1112 6.4, RFC 2464 7) into mac. */
export function groupMac(mac: Uint8Array, a: Uint8Array, o: number, v6: boolean): void {
  if (v6) {
    mac[0] = 0x33;
    mac[1] = 0x33;
    for (let k = 0; k < 4; k++) mac[2 + k] = a[o + 12 + k]!;
    return;
  }
  mac[0] = 0x01;
  mac[1] = 0x00;
  mac[2] = 0x5e;
  mac[3] = a[o + 1]! & 0x7f;
  mac[4] = a[o + 2]!;
  mac[5] = a[o + 3]!;
}

function groupName(v6: boolean, a: Uint8Array, o: number): string {
  if (!v6) return `${a[o]}.${a[o + 1]}.${a[o + 2]}.${a[o + 3]}`;
  const words: string[] = [];
  for (let k = 0; k < 16; k += 2) words.push(((a[o + k]! << 8) | a[o + k + 1]!).toString(16));
  return words.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

function hashGroup(a: Uint8Array, o: number, alen: number): number {
  let h = 0x811c9dc5 ^ alen;
  for (let k = 0; k < alen; k++) h = Math.imul(h ^ a[o + k]!, 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}
