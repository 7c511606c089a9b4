/**
 * Dispatch: every frame from the guest goes through here once.
 *
 * Theory of operation
 * -------------------
 * A frame is checked layer by layer before any field is read (Ethernet, then
 * IPv4 or IPv6 with its extension headers, then the upper-layer header) and
 * handed to the one place that owns it:
 * - ARP → services/arp.ts;
 * - UDP to port 67 → DHCP, to port 547 → DHCPv6 (services/); other UDP → flows;
 * - ICMPv6 router and neighbour solicitations → NDP; echo requests (ICMP and
 *   ICMPv6) → flows/icmp.ts;
 * - IGMP, and MLD (ICMPv6 130, 131, 132, 143) → flows/mcast.ts (not with
 *   --no-udp, which drops the guest's UDP too);
 * - TCP → flows.
 * Answers of the local services are wrapped here in their Ethernet, IP and UDP
 * headers and queued on the sink. Anything malformed or unexpected is dropped
 * and counted in `stats` (shown with --debug): the guest is untrusted, and
 * nothing it sends may throw out of frame().
 *
 * TCP checksums from the guest are not verified: the tap is a lossless
 * link, and a guest that corrupts its own segments only hurts its own
 * connections (the host kernel checksums what leaves through the sockets).
 *
 * The guest's MAC address is learnt from the source of its frames; its IPv6
 * address from the source of its IPv6 packets.
 */
import type { Config } from "./conf/config.ts";
import { FlowTable } from "./flows/flow.ts";
import { IcmpFlows } from "./flows/icmp.ts";
import { fragStats, Reassembler } from "./flows/frag.ts";
import { TcpFlows, tcpStats } from "./flows/tcp.ts";
import { UdpFlows, udpStats } from "./flows/udp.ts";
import { hostIfOf, Mcast, mcastStats } from "./flows/mcast.ts";
import { IPPROTO_IGMP, MLD_QUERY, MLD_V1_DONE, MLD_V1_REPORT, MLD_V2_REPORT } from "./wire/igmp.ts";
import { acceptStats } from "./native/accept.ts";
import type { Loop } from "./loop/loop.ts";
import { arpHandle } from "./services/arp.ts";
import { dhcpReply, newDhcpDest } from "./services/dhcp.ts";
import { dhcpv6Reply } from "./services/dhcpv6.ts";
import { Guest } from "./services/guest.ts";
import { ndpBuildRA, ndpReply, newNdpDest } from "./services/ndp.ts";
import type { FrameSink } from "./tap/sink.ts";
import * as w from "./wire/index.ts";

const DHCP_SERVER_PORT = 67;
const DHCP_CLIENT_PORT = 68;
const DHCPV6_SERVER_PORT = 547;
const DHCPV6_CLIENT_PORT = 546;
/** Interval of unsolicited router advertisements (RFC 4861 allows 4 to 1800 s). */
const RA_INTERVAL_MS = 30_000;
/** Largest reply a local service writes (DHCP, DHCPv6, NDP all fit well within). */
const SERVICE_MAX = 1500;
const BROADCAST_MAC = new Uint8Array([255, 255, 255, 255, 255, 255]);
const ALL_NODES_MAC = new Uint8Array([0x33, 0x33, 0, 0, 0, 1]);

export interface DispatchStats {
  frames: number;
  malformed: number;
  unhandled: number;
  services: number;
}

export class Dispatcher {
  readonly stats: DispatchStats = { frames: 0, malformed: 0, unhandled: 0, services: 0 };
  /** Every flow of every protocol (src/flows/flow.ts); pasta's spliced paths use it too. */
  readonly flows: FlowTable;
  readonly icmp: IcmpFlows;
  readonly tcp: TcpFlows;
  readonly udp: UdpFlows;
  /** IGMP/MLD proxy and group traffic; null with --no-udp. */
  readonly mcast: Mcast | null;
  private readonly frags = new Reassembler();
  /** What we learnt of the guest from its frames (its MAC, its IPv6 address). */
  readonly guest = new Guest();
  /** What ipv6Upper found in the IPv6 packet being dispatched. */
  private readonly ext6 = w.newIp6Ext();
  /** The frame being dispatched left its L4 checksum to offload (see FrameHandler). */
  private csumPartial = false;
  /** Where the DHCP and NDP replies being written go (filled by dhcpReply, ndpReply, ndpBuildRA). */
  private readonly dhcpDest = newDhcpDest();
  private readonly ndpDest = newNdpDest();

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly sink: FrameSink,
  ) {
    this.flows = new FlowTable(loop);
    this.icmp = new IcmpFlows(cfg, loop, sink, this.guest, this.flows);
    this.tcp = new TcpFlows(cfg, loop, sink, this.guest, this.flows);
    this.udp = new UdpFlows(cfg, loop, sink, this.guest, this.flows);
    this.mcast = cfg.noUdp ? null : new Mcast(cfg, loop, sink, hostIfOf(cfg));
    this.udp.mcast = this.mcast;
    loop.every(1000, (t) => this.frags.expire(t));
    loop.onQuiet(() => this.frags.releaseIdle());
  }

  /** Every counter group, by name: ours, then the flows' (for --stats and the exit line of --debug). */
  counters(): Record<string, object> {
    return { dispatch: this.stats, tcp: tcpStats, udp: udpStats, mcast: mcastStats, frag: fragStats, accept: acceptStats };
  }

  /** End of a batch of frames from the guest: write the TCP payloads and send the datagrams queued from it (its frames are valid until then). */
  batchEnd(): void {
    this.tcp.batchEnd();
    this.udp.flush();
  }

  /** End of a batch: send what the flows deferred (data into opened windows, then ACKs), before the tap is flushed. */
  flush(): void {
    this.tcp.flushRun();
    this.tcp.flushSends();
    this.tcp.flushAcks();
  }

  /** The guest went away (passt: its client closed): drop every flow it had and forget what we learnt of it. */
  guestGone(): void {
    this.tcp.reset();
    this.udp.reset();
    this.mcast?.reset();
    this.icmp.reset();
    this.guest.forget();
  }

  /** Start periodic work (router advertisements) and probe ping sockets. */
  start(): void {
    if (!this.cfg.noIcmp) this.icmp.probe();
    this.mcast?.start();
    if (this.cfg.ip6 && !this.cfg.noNdp && !this.cfg.noRa) {
      this.sendRA();
      this.loop.every(RA_INTERVAL_MS, () => this.sendRA());
    }
  }

  /** One frame from the guest: b[off..off+len), Ethernet header first; csumPartial as FrameHandler says. */
  frame(b: Uint8Array, off: number, len: number, csumPartial = false): void {
    this.stats.frames++;
    this.csumPartial = csumPartial;
    if (w.ethCheck(b, off, len) < 0) {
      this.stats.malformed++;
      return;
    }
    if (w.macIsUnicast(b, off + w.ETH_SRC)) this.guest.learnMac(b, off + w.ETH_SRC);
    const l3 = off + w.ETH_HLEN;
    const l3len = len - w.ETH_HLEN;
    switch (w.ethType(b, off)) {
      case w.ETH_P_ARP:
        if (w.arpCheck(b, l3, l3len) < 0) this.stats.malformed++;
        else if (arpHandle(this.cfg, this.guest, b, off, len, this.sink)) this.stats.services++;
        return;
      case w.ETH_P_IP:
        if (this.cfg.ip4) this.ipv4(b, l3, l3len);
        return;
      case w.ETH_P_IPV6:
        if (this.cfg.ip6) this.ipv6(b, l3, l3len);
        return;
      default:
        this.stats.unhandled++;
    }
  }

  private ipv4(b: Uint8Array, ip: number, len: number): void {
    const hl = w.ipv4Check(b, ip, len);
    if (hl < 0) {
      this.stats.malformed++;
      return;
    }
    const l4 = ip + hl;
    const l4len = w.ipv4TotLen(b, ip) - hl;
    if (w.ipv4IsFragment(b, ip)) return this.fragment4(b, ip);
    switch (w.ipv4Proto(b, ip)) {
      case w.IPPROTO_UDP:
        if (w.udpCheck(b, l4, l4len) < 0) break;
        if (w.udpDstPort(b, l4) === DHCP_SERVER_PORT) return this.dhcp(b, l4, l4len);
        if (this.cfg.noUdp) return void this.stats.unhandled++;
        this.udp.fromGuest(b, ip, l4, l4len, false, this.loop.time());
        return;
      case w.IPPROTO_TCP:
        if (!this.tcp.fromGuest(b, ip, l4, l4len, false, this.loop.time())) break;
        return;
      case w.IPPROTO_ICMP:
        if (w.icmpCheck(b, l4, l4len) < 0) break;
        if (!this.cfg.noIcmp) this.icmp.fromGuest(b, ip, l4, l4len, false, this.loop.time());
        return;
      case IPPROTO_IGMP:
        if (this.mcast) this.mcast.igmp(b, l4, l4len, this.loop.time());
        else this.stats.unhandled++;
        return;
      default:
        this.stats.unhandled++;
        return;
    }
    this.stats.malformed++;
  }

  private ipv6(b: Uint8Array, ip: number, len: number): void {
    const x = this.ext6;
    const l4 = w.ipv6Upper(b, ip, len, x);
    if (l4 < 0) {
      this.stats.malformed++;
      return;
    }
    if (x.fragHdr >= 0) return this.fragment6(b, ip, l4);
    this.guest.learnAddr6(b, ip + w.IP6_SRC);
    const l4len = x.end - l4;
    switch (x.proto) {
      case w.IPPROTO_ICMPV6:
        return this.icmpv6(b, ip, l4, l4len);
      case w.IPPROTO_TCP:
        if (!this.tcp.fromGuest(b, ip, l4, l4len, true, this.loop.time())) break;
        return;
      case w.IPPROTO_UDP:
        if (w.udpCheck(b, l4, l4len) < 0) break;
        if (w.udpDstPort(b, l4) === DHCPV6_SERVER_PORT) return this.dhcpv6(b, ip, l4, l4len);
        if (this.cfg.noUdp) return void this.stats.unhandled++;
        this.udp.fromGuest(b, ip, l4, l4len, true, this.loop.time());
        return;
      default:
        this.stats.unhandled++;
        return;
    }
    this.stats.malformed++;
  }

  /** An IPv4 fragment: reassemble; a complete UDP datagram goes out whole. */
  private fragment4(b: Uint8Array, ip: number): void {
    const n = this.frags.add4(b, ip, this.loop.time());
    if (n > 0) this.reassembled(b, ip, n, false);
  }

  /** An IPv6 fragment (after ipv6Upper): as fragment4. */
  private fragment6(b: Uint8Array, ip: number, data: number): void {
    const x = this.ext6;
    const n = this.frags.add6(b, ip, x.proto, x.fragOffset, x.fragMore, x.fragId, data, x.end, this.loop.time());
    if (n > 0) this.reassembled(b, ip, n, true);
  }

  private reassembled(b: Uint8Array, ip: number, n: number, v6: boolean): void {
    const out = this.frags.out;
    if (this.frags.lastProto !== w.IPPROTO_UDP || w.udpCheck(out, 0, n) < 0 || this.cfg.noUdp) {
      this.stats.unhandled++;
      return;
    }
    this.udp.fromGuestReassembled(b, ip, out, 0, w.udpLen(out, 0), v6, this.loop.time());
  }

  private icmpv6(b: Uint8Array, ip: number, l4: number, l4len: number): void {
    if (w.icmp6Check(b, l4, l4len) < 0 || (!this.csumPartial && !w.icmp6ChecksumOk(b, ip, l4, l4len))) {
      this.stats.malformed++;
      return;
    }
    const type = w.icmp6Type(b, l4);
    if (type === w.ND_ROUTER_SOLICIT || type === w.ND_NEIGHBOR_SOLICIT) {
      if (w.ipv6HopLimit(b, ip) !== w.ND_HOP_LIMIT) {
        this.stats.malformed++;
        return;
      }
      return this.ndp(b, ip, l4, l4len);
    }
    if (this.mcast && (type === MLD_QUERY || type === MLD_V1_REPORT || type === MLD_V1_DONE || type === MLD_V2_REPORT)) {
      this.mcast.mld(b, l4, l4len, this.loop.time());
      return;
    }
    if (type === w.ICMP6_ECHO_REQUEST && !this.cfg.noIcmp) {
      this.icmp.fromGuest(b, ip, l4, l4len, true, this.loop.time());
      return;
    }
    this.stats.unhandled++;
  }

  private dhcp(b: Uint8Array, l4: number, l4len: number): void {
    if (this.cfg.noDhcp) return;
    const off = this.sink.alloc(SERVICE_MAX);
    if (off < 0) return;
    const out = this.sink.buf;
    const ip = off + w.ETH_HLEN;
    const udp = ip + w.IPV4_HLEN;
    const dest = this.dhcpDest;
    const n = dhcpReply(this.cfg, b, l4 + w.UDP_HLEN, l4len - w.UDP_HLEN, out, udp + w.UDP_HLEN, dest);
    if (n <= 0) return;
    w.writeEth(out, off, dest.broadcast ? BROADCAST_MAC : dest.clientMac, this.cfg.ourMac, w.ETH_P_IP);
    w.writeIpv4(out, ip, dest.srcAddr, dest.dstAddr, w.IPPROTO_UDP, w.UDP_HLEN + n, 64);
    w.writeUdp(out, udp, DHCP_SERVER_PORT, DHCP_CLIENT_PORT, n);
    w.udpSetChecksum4(out, ip, udp);
    this.sink.commit(off, w.ETH_HLEN + w.IPV4_HLEN + w.UDP_HLEN + n);
    this.stats.services++;
  }

  private dhcpv6(b: Uint8Array, ip: number, l4: number, l4len: number): void {
    if (this.cfg.noDhcpv6) return;
    const off = this.sink.alloc(SERVICE_MAX);
    if (off < 0) return;
    const out = this.sink.buf;
    const oip = off + w.ETH_HLEN;
    const udp = oip + w.IPV6_HLEN;
    const n = dhcpv6Reply(this.cfg, b, l4 + w.UDP_HLEN, l4len - w.UDP_HLEN, out, udp + w.UDP_HLEN);
    if (n <= 0) return;
    w.writeEth(out, off, this.guest.mac, this.cfg.ourMac, w.ETH_P_IPV6);
    w.writeIpv6At(out, oip, this.cfg.ip6!.ourLL, 0, b, ip + w.IP6_SRC, w.IPPROTO_UDP, w.UDP_HLEN + n, 255);
    w.writeUdp(out, udp, DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT, n);
    w.udpSetChecksum6(out, oip, udp);
    this.sink.commit(off, w.ETH_HLEN + w.IPV6_HLEN + w.UDP_HLEN + n);
    this.stats.services++;
  }

  private ndp(b: Uint8Array, ip: number, l4: number, l4len: number): void {
    const off = this.sink.alloc(SERVICE_MAX);
    if (off < 0) return;
    const icmp = off + w.ETH_HLEN + w.IPV6_HLEN;
    const n = ndpReply(this.cfg, b, ip + w.IP6_SRC, b, l4, l4len, this.sink.buf, icmp, this.ndpDest);
    if (n > 0) this.sendNdp(off, n);
  }

  /** An unsolicited router advertisement to all nodes. */
  private sendRA(): void {
    const off = this.sink.alloc(SERVICE_MAX);
    if (off < 0) return;
    const n = ndpBuildRA(this.cfg, this.sink.buf, off + w.ETH_HLEN + w.IPV6_HLEN, this.ndpDest);
    if (n > 0) this.sendNdp(off, n);
  }

  /** Wrap the NDP message of n bytes written after the headers at off, as ndpDest says. */
  private sendNdp(off: number, n: number): void {
    const out = this.sink.buf;
    const ip = off + w.ETH_HLEN;
    const dest = this.ndpDest;
    const dstMac = dest.multicast || !this.guest.known ? ALL_NODES_MAC : this.guest.mac;
    w.writeEth(out, off, dstMac, this.cfg.ourMac, w.ETH_P_IPV6);
    w.writeIpv6(out, ip, this.cfg.ip6!.ourLL, dest.dst, w.IPPROTO_ICMPV6, n, w.ND_HOP_LIMIT);
    w.icmp6SetChecksum(out, ip, ip + w.IPV6_HLEN, n);
    this.sink.commit(off, w.ETH_HLEN + w.IPV6_HLEN + n);
    this.stats.services++;
  }
}
