/**
 * UDP through the tap: one host socket per guest (address, port).
 *
 * Theory of operation
 * -------------------
 * Outbound: the first datagram from a guest (address, port) opens a host
 * socket bound, where the port is free, to the same port (else the kernel
 * picks one). Every datagram the guest sends from that (address, port), to
 * any destination, leaves through that socket. Whatever arrives on the socket
 * goes back to the guest's (address, port), with the sender's address and
 * port as its source: replies from other ports or hosts (STUN, games, DNS
 * over several servers) reach the program as on the host.
 *
 * Inbound (-u): a bound socket per forwarded host port (src/fwd/forward.ts
 * makes and watches them, and calls fromListener). A datagram arriving there is delivered to the guest at the
 * target port (and the rule's target address, if any), from its real source,
 * and the guest's (address, target port) is tied to that socket, so that the
 * guest's replies leave from the forwarded port to the original sender.
 *
 * Datagrams to a multicast group or a broadcast address leave through the
 * same flow socket, but at once and with the options flows/mcast.ts sets
 * (TTL, interface); group traffic from the host comes through mcast.ts's own
 * sockets, so ours have IP_MULTICAST_ALL off.
 *
 * Addresses are translated by src/flows/nat.ts both ways, per datagram since
 * the sockets are not connected: by default the gateway address reaches the
 * host's loopback and loopback senders appear as the gateway; with
 * --dns-forward ADDR, DNS to ADDR goes to the --dns-host resolver, whose
 * answers appear to come from ADDR on the flows that asked ADDR (a query sent
 * to the resolver itself is answered from the resolver).
 *
 * Batching: datagrams from the guest are queued during one batch of frames
 * and leave with one sendmmsg() per run of the same socket; datagrams from the
 * host are received with recvmmsg() straight into frame slots of the tap's
 * transmit buffer (headers in front, payload in place), never copied in
 * TypeScript. IP fragments from the guest are reassembled (flows/frag.ts)
 * and the whole datagram is sent.
 *
 * Flows are flows of the flow table (src/flows/flow.ts, type FT_UDP): the
 * side on the tap, the one in the index, holds the guest's address and port
 * and nothing of the other end (any destination); the host side our port.
 * The side that started the flow is side 0: the tap for a datagram from the
 * guest, the host for one that arrived on a -u socket.
 *
 * Limits: maxFlows sockets at once (UDP_MAX_FLOWS, or a share of the
 * descriptor limit, flows/limits.ts); a flow idle for UDP_TIMEOUT_MS is
 * closed by the table's timer walk (PASTA_UDP_TIMEOUT_MS overrides it, for
 * tests). Flows are kept in least-recently-used order (flows/lru.ts: a flow
 * moves to the end whenever a datagram passes either way): when the bound
 * is reached, or socket() runs out of descriptors, the least recently used
 * flow is closed to make room. A
 * guest flooding from a new port every datagram so churns through its own
 * flood's flows, and a flow in use, or a new one, still gets through.
 */
import { Kind } from "../loop/kinds.ts";
import type { Config } from "../conf/config.ts";
import { EPOLLIN, now, type Loop } from "../loop/loop.ts";
import { sys } from "../native/ffi.ts";
import { NAT_DNS, NAT_HOST_LOOPBACK, NAT_NONE, natIn4, natIn6, natOut4, natOut6 } from "./nat.ts";
import { bindOutbound, SA6_ADDR, saIsLoopback, sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import type { Guest } from "../services/guest.ts";
import { commitUdpFrame, type FrameSink, framesThatFit } from "../tap/sink.ts";
import type { UdpSplice } from "./udpsplice.ts";
import { noForeignGroups, type Mcast } from "./mcast.ts";
import * as w from "../wire/index.ts";
import { AF_INET, AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET, SO_REUSEADDR } from "../native/consts.ts";
import { table } from "../loop/arena.ts";
import { EMFILE, ENFILE } from "../native/consts.ts";
import { FLOW_MAX, FT_UDP, type FlowTable, flowOf, NO_ADDR, PIF_HOST, PIF_TAP } from "./flow.ts";
import { UseOrder } from "./lru.ts";
import { fdBudget } from "./limits.ts";

/** Guest (address, port) pairs with a socket at once. */
export const UDP_MAX_FLOWS = 8192;
/** A flow without traffic for this long is closed (the original uses 180 s). */
export const UDP_TIMEOUT_MS = Number(process.env.PASTA_UDP_TIMEOUT_MS) || 180_000;
/** Datagrams received per recvmmsg (bounded by the shim). */
const RECV_BATCH = 32;
/** Largest datagram payload we move (IPv4 total length limit). */
const MAX_PAYLOAD = 65535 - w.IPV4_HLEN - w.UDP_HLEN;
/** Runs of same-sized datagrams to one address leave as one UDP_SEGMENT send (PASTA_UDP_GSO=0: never). */
const UDP_GSO = process.env.PASTA_UDP_GSO !== "0";
/**
 * A bound UDP socket of -u (host) or -U (namespace), made and watched by
 * src/fwd/forward.ts, read by this module (-u) or flows/udpsplice.ts (-U).
 */
export interface UdpListener {
  fd: number;
  v6: boolean;
  /** The port it is bound to. */
  port: number;
  /** The port its datagrams go to on the other side. */
  target: number;
  /** The rule's target address (4 or 16 bytes), null: the guest's own (-u) or loopback (-U). */
  taddr: Uint8Array | null;
  /** The address it is bound to (4 or 16 bytes; all zero: any). */
  addr: Uint8Array;
}

/** SO_RCVBUF of -u sockets (and of the spliced path's, flows/udpsplice.ts). */
export const LISTEN_RCVBUF = 4 << 20;
/** Datagrams from the guest queued for one sendmmsg flush. */
const SEND_QUEUE = 64;

export const udpStats = { fromGuest: 0, toGuest: 0, evicted: 0, sendErrors: 0, noSocket: 0, noSource: 0 };

export class UdpFlows {
  // Per flow (src/flows/flow.ts), set when the flow is made:
  /** The flow's socket. */
  private readonly fd = table.i32(FLOW_MAX);
  /** 1 when the socket belongs to this flow (0: a shared -u listener). */
  private readonly owned = table.u8(FLOW_MAX);
  private readonly lastUse = table.f64(FLOW_MAX);
  /** 1 once the flow sent to the --dns-forward address: replies from the resolver then appear from it. */
  private readonly dnsFwd = table.u8(FLOW_MAX);
  /**
   * Port of the last sender whose own address is the one that stands for the
   * host's loopback (a host out there, not our loopback: e.g. the gateway
   * talking to a -u port), 0 for none. The guest's datagrams to that address
   * and port go to it, not to the host's loopback.
   */
  private readonly mappedPeerPort = table.u16(FLOW_MAX);
  /** Flows by use, least recent first (the one closed to make room). */
  private readonly byUse = new UseOrder();
  /** Flows at once, at most (see the theory of operation). */
  readonly maxFlows = fdBudget(UDP_MAX_FLOWS);
  /** The port openSocket's socket is bound to (0: one the kernel picked). */
  private boundPort = 0;
  // Send queue: (flow, offset, length) into the frame buffer of the current batch, and destinations.
  private readonly qFlow = table.i32(SEND_QUEUE);
  private readonly qOffLen = table.u32(SEND_QUEUE * 2);
  private readonly qAddr = table.u8(SEND_QUEUE * 28);
  private readonly qAddr32 = new Uint32Array(this.qAddr.buffer, this.qAddr.byteOffset, this.qAddr.length / 4);
  private readonly qDone = table.u8(SEND_QUEUE);
  /** One socket's datagrams, gathered from the queue for one sendmmsg. */
  private readonly sOffLen = table.u32(SEND_QUEUE * 2);
  private readonly sAddr = table.u8(SEND_QUEUE * 28);
  private readonly sAddr32 = new Uint32Array(this.sAddr.buffer, this.sAddr.byteOffset, this.sAddr.length / 4);
  private qBuf: Uint8Array | null = null;
  private nq = 0;
  // Receive side.
  private readonly rxAddrs = table.u8(RECV_BATCH * 28);
  private readonly rxLens = table.u32(RECV_BATCH);
  private readonly sa = new Uint8Array(28);
  private readonly tmpAddr = new Uint8Array(16);

  /** pasta: where datagrams from loopback senders on -u ports go instead of the tap. */
  splice: UdpSplice | null = null;

  /** Datagrams to groups and broadcast addresses go there (flows/mcast.ts). */
  mcast: Mcast | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly sink: FrameSink,
    private readonly guest: Guest,
    private readonly flows: FlowTable,
  ) {
    loop.on(Kind.UDP, (i) => {
      if (flows.is(i, FT_UDP)) this.onSocket(i, this.fd[i]!, null);
    });
    flows.onTimer(FT_UDP, Math.min(5000, UDP_TIMEOUT_MS / 2), (i, t) => this.expire(i, t));
  }

  /** Open flows, for tests and --debug. */
  count(): number {
    return this.flows.count(FT_UDP);
  }

  /** Flow i's side on the tap (its sidx): the guest's address and port. */
  private tapSide(i: number): number {
    return this.flows.sideOn(i, PIF_TAP);
  }

  // ------------------------------------------------------- from the guest

  /**
   * A datagram from the guest (the entry point shared by TCP, UDP and ICMP):
   * IP header at b[ip], UDP header at b[l4], l4len bytes, at time t. Queued
   * for the end of the batch (sendmmsg). Returns true (the dispatcher
   * checked the header).
   */
  fromGuest(b: Uint8Array, ip: number, l4: number, l4len: number, v6: boolean, t: number): boolean {
    this.datagram(b, ip, b, l4, l4len, v6, t, false);
    return true;
  }

  /**
   * A datagram the guest sent in fragments, put back together in p (the
   * reassembler's buffer, UDP header at p[l4]) under the IP header of its
   * last fragment at b[ip]: sent at once, as p does not outlast the call.
   */
  fromGuestReassembled(b: Uint8Array, ip: number, p: Uint8Array, l4: number, l4len: number, v6: boolean, t: number): void {
    this.datagram(b, ip, p, l4, l4len, v6, t, true);
  }

  /** The UDP header at p[l4] (p: the frame, or the reassembly buffer) under the IP header at b[ip]; transient: send at once. */
  private datagram(
    b: Uint8Array,
    ip: number,
    p: Uint8Array,
    l4: number,
    l4len: number,
    isV6: boolean,
    now: number,
    transient: boolean,
  ): void {
    udpStats.fromGuest++;
    const gOff = isV6 ? ip + w.IP6_SRC : ip + w.IP4_SRC;
    const group = this.mcast?.outbound(b, ip, w.udpDstPort(p, l4), isV6) === true;
    const i = this.flowFor(isV6, b, gOff, w.udpSrcPort(p, l4), now, group);
    if (i < 0) return;
    if (group) {
      this.flush();
      this.mcast!.send(this.fd[i]!, b, ip, p, l4 + w.UDP_HLEN, l4len - w.UDP_HLEN, w.udpDstPort(p, l4), isV6);
      return;
    }
    if (this.nq === SEND_QUEUE || (this.qBuf !== null && this.qBuf !== p)) this.flush();
    const k = this.nq;
    if (!this.destination(k, i, b, ip, w.udpDstPort(p, l4), isV6)) return;
    this.qFlow[k] = i;
    this.qOffLen[2 * k] = l4 + w.UDP_HLEN;
    this.qOffLen[2 * k + 1] = l4len - w.UDP_HLEN;
    this.qBuf = p;
    this.nq++;
    if (transient) this.flush();
  }

  /** Destination sockaddr for queue slot k, with gateway and DNS mapping. */
  private destination(k: number, i: number, b: Uint8Array, ip: number, port: number, isV6: boolean): boolean {
    const ok = this.destSockaddr(i, b, ip, port, isV6);
    if (ok) this.qAddr.set(this.sa, k * 28);
    return ok;
  }

  /** Write the host destination of flow i's datagram in the packet at b[ip] into this.sa (src/flows/nat.ts); false to drop it. */
  private destSockaddr(i: number, b: Uint8Array, ip: number, port: number, isV6: boolean): boolean {
    const sa = this.sa;
    // a host out there with the mapped address talked to this flow from port: that one is answered
    const peer = this.mappedPeerPort[i] === port;
    if (!isV6) {
      const dst = w.ipv4Dst(b, ip);
      const nat = natOut4(this.cfg.ip4!, sa, dst, port, true);
      if (nat === NAT_DNS) this.dnsFwd[i] = 1;
      else if (nat === NAT_HOST_LOOPBACK && peer) sockaddr4(sa, dst, port);
      return true;
    }
    const d = ip + w.IP6_DST;
    const nat = natOut6(this.cfg.ip6!, sa, b, d, port, true);
    if (nat === NAT_DNS) this.dnsFwd[i] = 1;
    const asIs = nat === NAT_NONE || (nat === NAT_HOST_LOOPBACK && peer);
    // no scope to send a link-local or multicast destination with
    if (asIs && (w.ip6IsLinkLocal(b, d) || w.ip6IsMulticast(b, d))) return false;
    if (asIs) sockaddr6(sa, b, d, port, 0);
    return true;
  }

  /**
   * Send the queued datagrams: one sendmmsg per socket. Datagrams of several
   * flows interleave in a batch (iperf3 -P, several programs): each socket's
   * are gathered, in order, into the scratch arrays and leave together.
   */
  flush(): void {
    const b = this.qBuf;
    const n = this.nq;
    this.nq = 0;
    this.qBuf = null;
    if (b === null || n === 0) return;
    const done = this.qDone;
    done.fill(0, 0, n);
    const qa = this.qAddr32;
    const sa = this.sAddr32;
    for (let k = 0; k < n; k++) {
      if (done[k]) continue;
      const fd = this.fd[this.qFlow[k]!]!;
      let m = 0;
      for (let j = k; j < n; j++) {
        if (done[j] || this.fd[this.qFlow[j]!] !== fd) continue;
        done[j] = 1;
        this.sOffLen[2 * m] = this.qOffLen[2 * j]!;
        this.sOffLen[2 * m + 1] = this.qOffLen[2 * j + 1]!;
        for (let x = 0; x < 7; x++) sa[7 * m + x] = qa[7 * j + x]!;
        m++;
      }
      const sent =
        m > 1 && UDP_GSO
          ? sys.shim_udp_send_gso(fd, b, this.sOffLen, m, this.sAddr)
          : sys.shim_udp_send_batch(fd, b, this.sOffLen, m, this.sAddr);
      if (sent < m) udpStats.sendErrors += m - Math.max(sent, 0);
    }
  }

  /** The flow of the guest's (address at b[gOff], port), made when missing (group: for a datagram to a group, flows/mcast.ts). */
  private flowFor(isV6: boolean, b: Uint8Array, gOff: number, gport: number, t: number, group = false): number {
    let i = this.lookup(isV6, b, gOff, gport);
    if (i >= 0) {
      this.touch(i, t);
      return i;
    }
    if (this.count() >= this.maxFlows) this.evictLeastUsed();
    const fd = this.openSocket(isV6, gport, group);
    if (fd < 0) return -1;
    i = this.insert(isV6, PIF_TAP, b, gOff, gport, fd, this.boundPort, null, t);
    if (i < 0) sys.shim_close(fd);
    return i;
  }

  /**
   * A socket for outbound datagrams, bound to port where free; shared with
   * group sockets (SO_REUSEADDR) when its first datagram goes to a group or
   * a group uses the port.
   */
  private openSocket(isV6: boolean, port: number, group: boolean): number {
    let fd = sys.shim_socket(isV6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if ((fd === -EMFILE || fd === -ENFILE) && this.evictLeastUsed())
      fd = sys.shim_socket(isV6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      udpStats.noSocket++;
      return -1;
    }
    if (isV6) sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    noForeignGroups(fd, isV6);
    if (group || this.mcast?.sharedPort(port)) sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    this.boundPort = port;
    if (bindOutbound(fd, isV6, port, this.cfg) < 0) {
      bindOutbound(fd, isV6, 0, this.cfg);
      this.boundPort = 0;
    }
    return fd;
  }

  // ------------------------------------------------------- to the guest

  /**
   * Datagrams arrived on socket fd (flow i, or -u socket l with i = -1):
   * receive them into frames and send them to the guest.
   */
  private onSocket(i: number, fd: number, l: UdpListener | null): void {
    if (fd < 0) return;
    const isV6 = l !== null ? l.v6 : this.flows.v6[i] === 1;
    const hdr = w.ETH_HLEN + (isV6 ? w.IPV6_HLEN : w.IPV4_HLEN) + w.UDP_HLEN;
    const maxLen = Math.min(MAX_PAYLOAD, 65535 - hdr + w.ETH_HLEN);
    const stride = hdr + maxLen + this.sink.frameRoom;
    const batch = framesThatFit(this.sink, stride, RECV_BATCH);
    const t = now();
    // The guest's flow: for a listener, tied on the first datagram that is not spliced.
    let gi = l !== null ? -2 : i;
    for (let round = 0; round < 8; round++) {
      const base = this.sink.alloc(batch * stride, batch);
      if (base < 0) return;
      const n = sys.shim_udp_recv_batch(fd, this.sink.buf, base + hdr, stride, maxLen, batch, this.rxAddrs, this.rxLens);
      if (n <= 0) return;
      // only traffic keeps a flow alive: an event that moved nothing (an error, a sink with no room) does not
      if (gi >= 0) this.touch(gi, t);
      for (let k = 0; k < n; k++) {
        const off = base + k * stride;
        const len = this.rxLens[k]!;
        if (l !== null) {
          if (this.splice && l.taddr === null && saIsLoopback(this.rxAddrs, k * 28)) {
            this.splice.fromHost(l, this.rxAddrs, k * 28, this.sink.buf, off + hdr, len);
            continue;
          }
          if (gi === -2) {
            gi = this.bindListener(l, isV6, l.target);
            if (gi >= 0) this.touch(gi, t);
          }
          if (gi < 0) continue;
        }
        this.toGuest(gi, off, k, len, isV6);
      }
      if (n < batch) return;
    }
  }

  /**
   * Headers for datagram k of the batch (payload already at off + headers),
   * to the guest's (address, port) of flow gi. Through the tap with offloads
   * the UDP checksum is left to the namespace's kernel (a partial checksum in
   * the virtio-net header: the payload comes from a host socket, nothing to
   * verify); otherwise it is computed here.
   */
  private toGuest(gi: number, off: number, k: number, len: number, isV6: boolean): void {
    const b = this.sink.buf;
    const sa = k * 28;
    const sport = (this.rxAddrs[sa + 2]! << 8) | this.rxAddrs[sa + 3]!;
    const gs = this.tapSide(gi);
    const gport = this.flows.eport[gs]!;
    const ip = off + w.ETH_HLEN;
    const l4 = ip + (isV6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    w.writeEth(b, off, this.guest.mac, this.cfg.ourMac, isV6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
    if (isV6) {
      this.sourceAddr6(this.rxAddrs, sa, sport, this.dnsFwd[gi] === 1, gi);
      w.writeIpv6At(b, ip, this.tmpAddr, 0, this.flows.eaddr, 16 * gs, w.IPPROTO_UDP, w.UDP_HLEN + len, 64);
    } else {
      const src = this.sourceAddr4(this.rxAddrs, sa, sport, this.dnsFwd[gi] === 1, gi);
      if (src === 0) {
        udpStats.noSource++;
        return;
      }
      w.writeIpv4(b, ip, src, w.rd32(this.flows.eaddr, 16 * gs), w.IPPROTO_UDP, w.UDP_HLEN + len, 64);
    }
    w.writeUdp(b, l4, sport, gport, len);
    commitUdpFrame(this.sink, b, off, ip, l4, len, isV6);
    udpStats.toGuest++;
  }

  /** IPv4 source the guest sees for the sender at sa[o] (src/flows/nat.ts); 0: drop the datagram. */
  private sourceAddr4(sa: Uint8Array, o: number, sport: number, dnsFwd: boolean, gi: number): number {
    const a = w.rd32(sa, o + 4);
    const ip4 = this.cfg.ip4!;
    if (a === ip4.mapHostLoopback) this.mappedPeerPort[gi] = sport;
    return natIn4(ip4, a, sport, dnsFwd);
  }

  /** As sourceAddr4, for IPv6: the result goes to tmpAddr. */
  private sourceAddr6(sa: Uint8Array, o: number, sport: number, dnsFwd: boolean, gi: number): void {
    const ip6 = this.cfg.ip6!;
    const a = o + SA6_ADDR;
    if (ip6.mapHostLoopback && w.ip6Equal(sa, a, ip6.mapHostLoopback)) this.mappedPeerPort[gi] = sport;
    natIn6(ip6, sa, a, sport, dnsFwd, this.tmpAddr);
  }

  // ------------------------------------------------------------ -u ports

  /**
   * Datagrams are waiting on -u socket l (src/fwd/forward.ts owns it and
   * watches it): each goes to the guest's port l.target, at l.taddr when the
   * rule names an address, else at the guest's own; from a loopback sender
   * in pasta, to the spliced path instead.
   */
  fromListener(l: UdpListener): void {
    this.onSocket(-1, l.fd, l);
  }

  /** -u socket fd is being closed (auto mode: nobody binds its port over there any more): the flows tied to it go. */
  listenerClosed(fd: number): void {
    const ft = this.flows;
    for (let k = ft.inUse() - 1; k >= 0; k--) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_UDP) && this.fd[i] === fd && !this.owned[i]) this.remove(i);
    }
  }

  /** Host UDP ports bound by the flows' own sockets, as a bitmap (the -u sockets are src/fwd/forward.ts's). */
  ownPorts(out: Uint8Array): void {
    const ft = this.flows;
    for (let k = 0; k < ft.inUse(); k++) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_UDP) && this.owned[i]) setBit(out, ft.eport[this.tapSide(i)]!);
    }
  }

  /** Tie the guest's (address, port) to -u socket l so that its replies leave from there. */
  private bindListener(l: UdpListener, isV6: boolean, gport: number): number {
    const ga = l.taddr ?? (isV6 ? this.guest.addr6For(this.cfg.ip6!.addr) : this.guest4Bytes());
    const fd = l.fd;
    const i = this.lookup(isV6, ga, 0, gport);
    if (i >= 0) {
      if (this.fd[i] !== fd) this.replaceSocket(i, l);
      return i;
    }
    return this.insert(isV6, PIF_HOST, ga, 0, gport, fd, l.port, l.addr, now());
  }

  private readonly guest4 = new Uint8Array(4);

  private guest4Bytes(): Uint8Array {
    w.wr32(this.guest4, 0, this.cfg.ip4!.addr);
    return this.guest4;
  }

  /** Flow i's replies leave from -u socket l from now on. */
  private replaceSocket(i: number, l: UdpListener): void {
    this.closeSocket(i);
    this.fd[i] = l.fd;
    this.owned[i] = 0;
    this.flows.setOurPort(this.tapSide(i) ^ 1, l.port);
  }

  // ------------------------------------------------------------ flow table

  /** The flow of the guest's (address at a[aOff], port), or -1: its tap side is keyed by these alone. */
  private lookup(isV6: boolean, a: Uint8Array, aOff: number, port: number): number {
    const sidx = this.flows.lookup(FT_UDP, PIF_TAP, isV6, a, aOff, port, NO_ADDR, 0, 0);
    return sidx < 0 ? -1 : flowOf(sidx);
  }

  /** A datagram of flow i passed at t: last in the use order. */
  private touch(i: number, t: number): void {
    this.lastUse[i] = t;
    this.byUse.touch(i);
  }

  /**
   * Close the least recently used flow to make room (false: there is none).
   * Queued datagrams leave first: they name their flow by its number, which
   * the new flow may take.
   */
  private evictLeastUsed(): boolean {
    const i = this.byUse.oldest();
    if (i < 0) return false;
    this.flush();
    udpStats.evicted++;
    this.remove(i);
    return true;
  }

  /**
   * A new flow for the guest's (address at a[aOff], port) with socket fd
   * (owned: made for it, bound to our port hostPort, 0: unknown; else the
   * -u socket bound to hostAddr and hostPort). `from` is the side that
   * started it: the tap (a datagram from the guest) or the host (one that
   * arrived on a -u socket). Its tap side is the one in the index.
   */
  private insert(
    isV6: boolean,
    from: number,
    a: Uint8Array,
    aOff: number,
    port: number,
    fd: number,
    hostPort: number,
    hostAddr: Uint8Array | null,
    t: number,
  ): number {
    if (this.count() >= this.maxFlows && !this.evictLeastUsed()) return -1;
    const ft = this.flows;
    const i = ft.alloc();
    if (i < 0) return -1;
    if (from === PIF_TAP) {
      ft.initiate(i, PIF_TAP, isV6, a, aOff, port, null, 0, 0);
      ft.target(i, PIF_HOST, null, 0, 0, null, 0, hostPort);
    } else {
      ft.initiate(i, PIF_HOST, isV6, null, 0, 0, hostAddr, 0, hostPort);
      ft.target(i, PIF_TAP, a, aOff, port, null, 0, 0);
    }
    ft.setType(i, FT_UDP);
    ft.hashInsert(from === PIF_TAP ? 2 * i : 2 * i + 1);
    const owned = from === PIF_TAP ? 1 : 0;
    this.fd[i] = fd;
    this.owned[i] = owned;
    this.dnsFwd[i] = 0;
    this.mappedPeerPort[i] = 0;
    this.lastUse[i] = t;
    this.byUse.append(i);
    if (owned) this.loop.add(fd, EPOLLIN, Kind.UDP, i);
    ft.activate(i);
    return i;
  }

  private closeSocket(i: number): void {
    if (!this.owned[i]) return;
    this.loop.del(this.fd[i]!);
    sys.shim_close(this.fd[i]!);
  }

  private remove(i: number): void {
    this.closeSocket(i);
    this.byUse.unlink(i);
    this.fd[i] = -1;
    this.flows.free(i);
  }

  /** The timer walk (src/flows/flow.ts): close flow i if idle for UDP_TIMEOUT_MS. */
  private expire(i: number, t: number): void {
    if (t - this.lastUse[i]! <= UDP_TIMEOUT_MS) return;
    this.flush();
    this.remove(i);
  }

  /**
   * Drop every flow at once (passt: the guest went away): queued datagrams
   * are forgotten, flow sockets closed. The -u sockets stay.
   */
  reset(): void {
    this.nq = 0;
    this.qBuf = null;
    const ft = this.flows;
    for (let k = ft.inUse() - 1; k >= 0; k--) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_UDP)) this.remove(i);
    }
  }

  /**
   * Stop (true) or restart watching the flows' sockets for datagrams (the -u
   * sockets: Forwarder.pauseUdp). passt stops
   * while the guest's socket is full: nothing received could be sent, and
   * these level-triggered sockets would wake the loop again and again.
   */
  pauseReceive(paused: boolean): void {
    const ev = paused ? 0 : EPOLLIN;
    const ft = this.flows;
    for (let k = 0; k < ft.inUse(); k++) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_UDP) && this.owned[i]) this.loop.mod(this.fd[i]!, ev, Kind.UDP, i);
    }
  }
}

function setBit(map: Uint8Array, p: number): void {
  map[p >> 3]! |= 1 << (p & 7);
}
