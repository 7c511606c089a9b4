/**
 * ICMP and ICMPv6 echo, through the host's "ping sockets".
 *
 * Theory of operation
 * -------------------
 * An unprivileged process cannot send raw ICMP, but Linux offers datagram
 * sockets of protocol IPPROTO_ICMP / IPPROTO_ICMPV6 for echo only (allowed for
 * the groups in net.ipv4.ping_group_range). The kernel picks the echo
 * identifier itself (the socket's "port") and fills in the checksum.
 *
 * For each (guest echo id, destination) we keep one such socket: an echo
 * request from the guest is sent through it as is (type, code, sequence,
 * payload); a reply read from it goes back to the guest with the guest's
 * original identifier restored, from the remote address, to the guest's
 * address. Destinations are translated by src/flows/nat.ts (by default the
 * gateway address reaches the host's loopback); replies come from the
 * address the guest asked.
 *
 * Each echo flow is a flow of the flow table (src/flows/flow.ts, type
 * FT_PING): its tap side is keyed by (echo id, remote address), its host
 * side holds the destination as translated; this module keeps only the
 * socket and the time of last use, per flow number.
 *
 * Flows are bounded (ICMP_MAX_FLOWS, or a share of the descriptor limit,
 * flows/limits.ts); a flow without traffic for ICMP_TIMEOUT_MS is closed
 * by the table's timer walk. When the bound is reached, the least recently
 * used flow (flows/lru.ts) is closed to make room, so that a guest pinging
 * many destinations at once does not keep a new ping from going out.
 */
import { ptr, type Pointer } from "bun:ffi";
import { Kind } from "../loop/kinds.ts";
import type { Config } from "../conf/config.ts";
import { log } from "../log.ts";
import { sys } from "../native/ffi.ts";
import { natOut4, natOut6 } from "./nat.ts";
import { SA6_ADDR, SOCKADDR4_LEN, SOCKADDR6_LEN } from "../native/sockaddr.ts";
import { EPOLLIN, type Loop } from "../loop/loop.ts";
import type { FrameSink } from "../tap/sink.ts";
import type { Guest } from "../services/guest.ts";
import * as w from "../wire/index.ts";
import { AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, MSG_DONTWAIT, SOCK_DGRAM, SOCK_NONBLOCK } from "../native/consts.ts";
import { table } from "../loop/arena.ts";
import { fdBudget } from "./limits.ts";
import { FLOW_MAX, FT_PING, type FlowTable, flowOf, NO_ADDR, PIF_HOST, PIF_TAP } from "./flow.ts";
import { UseOrder } from "./lru.ts";

/** Echo flows kept at once (the original keeps one per id, per family). */
export const ICMP_MAX_FLOWS = 1024;
/** An echo flow without traffic for this long is closed (the original uses 60 s; PASTA_ICMP_TIMEOUT_MS overrides it, for tests). */
export const ICMP_TIMEOUT_MS = Number(process.env.PASTA_ICMP_TIMEOUT_MS) || 60_000;
/** Where a sockaddr_in holds its address. */
const SA4_ADDR = 4;
/** Largest echo message we relay (an IPv6 jumbo-less datagram). */
const MAX_ECHO = 65535;

export const icmpStats = { noSocket: 0, evicted: 0, sent: 0, received: 0, dropped: 0 };

export class IcmpFlows {
  // Per flow (src/flows/flow.ts), set when the flow is made:
  private readonly fd = table.i32(FLOW_MAX);
  private readonly lastUse = table.f64(FLOW_MAX);
  /** Flows by use, least recent first (the one closed to make room). */
  private readonly byUse = new UseOrder();
  private readonly sa = new Uint8Array(28);
  private readonly saLen = new Int32Array(1);
  /** The frame buffer last sent from, and its address (sendto takes the echo message in place). */
  private txBuf: Uint8Array | null = null;
  private txAddr = 0;
  /** The sink's buffer's address (replies are received straight into the frame). */
  private readonly sinkAddr: number;
  /** Flows at once, at most (see the theory of operation). */
  readonly maxFlows = fdBudget(ICMP_MAX_FLOWS);
  private warned4 = false;
  private warned6 = false;

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly sink: FrameSink,
    private readonly guest: Guest,
    private readonly flows: FlowTable,
  ) {
    this.sinkAddr = ptr(sink.buf);
    loop.on(Kind.ICMP, (i) => this.onReadable(i));
    flows.onTimer(FT_PING, 5000, (f, t) => this.expire(f, t));
  }

  /** Check once at start whether ping sockets are allowed, and warn once per family if not. */
  probe(): void {
    if (this.cfg.ip4) this.warned4 = !this.tryOpen(AF_INET, IPPROTO_ICMP);
    if (this.cfg.ip6) this.warned6 = !this.tryOpen(AF_INET6, IPPROTO_ICMPV6);
  }

  /** True when ping sockets of this family can be made; warns once when not. */
  private tryOpen(af: number, proto: number): boolean {
    const fd = sys.shim_socket(af, SOCK_DGRAM | SOCK_NONBLOCK, proto);
    if (fd >= 0) {
      sys.shim_close(fd);
      return true;
    }
    const fam = af === AF_INET ? "ICMP" : "ICMPv6";
    log.info(`${fam} echo disabled: ping sockets refused (see net.ipv4.ping_group_range)`);
    return false;
  }

  /**
   * An echo request from the guest (the entry point shared by TCP, UDP and
   * ICMP): IP header at b[ip], ICMP or ICMPv6 message at b[l4], len bytes,
   * at time t. Anything but an echo request is ignored; returns true (the
   * dispatcher checked the header).
   */
  fromGuest(b: Uint8Array, ip: number, l4: number, len: number, v6: boolean, t: number): boolean {
    if (v6) this.echo6(b, ip, l4, len, t);
    else this.echo4(b, ip, l4, len, t);
    return true;
  }

  private echo4(b: Uint8Array, ip: number, l4: number, len: number, now: number): void {
    if (len < 8 || b[l4] !== 8 || this.warned4) return;
    natOut4(this.cfg.ip4!, this.sa, w.ipv4Dst(b, ip), 0, false);
    const i = this.flowFor(false, (b[l4 + 4]! << 8) | b[l4 + 5]!, b, ip + w.IP4_DST, now);
    if (i >= 0) this.send(i, b, l4, len, SOCKADDR4_LEN);
  }

  private echo6(b: Uint8Array, ip: number, l4: number, len: number, now: number): void {
    if (len < 8 || b[l4] !== 128 || this.warned6) return;
    natOut6(this.cfg.ip6!, this.sa, b, ip + w.IP6_DST, 0, false);
    const i = this.flowFor(true, (b[l4 + 4]! << 8) | b[l4 + 5]!, b, ip + w.IP6_DST, now);
    if (i >= 0) this.send(i, b, l4, len, SOCKADDR6_LEN);
  }

  private send(i: number, b: Uint8Array, l4: number, len: number, saLen: number): void {
    if (b !== this.txBuf) {
      this.txBuf = b;
      this.txAddr = ptr(b);
    }
    const rc = sys.shim_sendto(this.fd[i]!, (this.txAddr + l4) as Pointer, len, MSG_DONTWAIT, this.sa, saLen);
    if (rc < 0) icmpStats.dropped++;
    else icmpStats.sent++;
  }

  /**
   * The flow of (family, guest echo id, remote address at b[off..]), made
   * when missing, with the host destination already in this.sa. Its tap side
   * is keyed by the id and the remote address only (replies go to the
   * guest's current address): endpoint address unspecified, both ports the
   * id. Its host side: the destination as translated, the kernel's id
   * unknown (0).
   */
  private flowFor(v6: boolean, id: number, b: Uint8Array, off: number, now: number): number {
    const ft = this.flows;
    const sidx = ft.lookup(FT_PING, PIF_TAP, v6, NO_ADDR, 0, id, b, off, id);
    if (sidx >= 0) {
      const i = flowOf(sidx);
      this.lastUse[i] = now;
      this.byUse.touch(i);
      return i;
    }
    if (ft.count(FT_PING) >= this.maxFlows) {
      icmpStats.evicted++;
      this.close(this.byUse.oldest());
    }
    const fd = sys.shim_socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
    if (fd < 0) {
      icmpStats.noSocket++;
      return -1;
    }
    const i = ft.alloc();
    if (i < 0) {
      sys.shim_close(fd);
      icmpStats.noSocket++;
      return -1;
    }
    ft.initiate(i, PIF_TAP, v6, null, 0, id, b, off, id);
    ft.target(i, PIF_HOST, this.sa, v6 ? SA6_ADDR : SA4_ADDR, 0, null, 0, 0);
    ft.setType(i, FT_PING);
    ft.hashInsert(2 * i);
    this.fd[i] = fd;
    this.lastUse[i] = now;
    this.byUse.append(i);
    this.loop.add(fd, EPOLLIN, Kind.ICMP, i);
    ft.activate(i);
    return i;
  }

  /**
   * Replies arrived on flow i's socket: relay each to the guest. Each is
   * received in place, into a frame of the sink with room for the largest
   * message, which is committed only for an echo reply.
   */
  private onReadable(i: number): void {
    if (!this.flows.is(i, FT_PING)) return;
    const fd = this.fd[i]!;
    const v6 = this.flows.v6[i] === 1;
    const hdrs = w.ETH_HLEN + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    for (;;) {
      const off = this.sink.alloc(hdrs + MAX_ECHO);
      if (off < 0) return;
      this.saLen[0] = 28;
      const n = sys.shim_recvfrom(fd, (this.sinkAddr + off + hdrs) as Pointer, MAX_ECHO, MSG_DONTWAIT, this.sa, this.saLen);
      if (n < 8) return;
      icmpStats.received++;
      this.lastUse[i] = performance.now();
      this.byUse.touch(i);
      if (v6) this.toGuest6(i, off, n);
      else this.toGuest4(i, off, n);
    }
  }

  /** The echo reply of n bytes at off + headers in the sink's buffer: headers, and out. */
  private toGuest4(i: number, off: number, n: number): void {
    const b = this.sink.buf;
    const l4 = off + w.ETH_HLEN + w.IPV4_HLEN;
    if (b[l4] !== 0) return;
    const ip4 = this.cfg.ip4!;
    this.restoreId(b, l4, i);
    w.icmpSetChecksum(b, l4, n);
    const src = w.rd32(this.flows.oaddr, 32 * i);
    w.writeEth(b, off, this.guest.mac, this.cfg.ourMac, w.ETH_P_IP);
    w.writeIpv4(b, off + w.ETH_HLEN, src, ip4.addr, w.IPPROTO_ICMP, n, 64);
    this.sink.commit(off, w.ETH_HLEN + w.IPV4_HLEN + n);
  }

  private toGuest6(i: number, off: number, n: number): void {
    const b = this.sink.buf;
    const ip = off + w.ETH_HLEN;
    const l4 = ip + w.IPV6_HLEN;
    if (b[l4] !== 129) return;
    const ip6 = this.cfg.ip6!;
    this.restoreId(b, l4, i);
    w.writeEth(b, off, this.guest.mac, this.cfg.ourMac, w.ETH_P_IPV6);
    w.writeIpv6At(b, ip, this.flows.oaddr, 32 * i, this.guest.addr6Known ? this.guest.addr6 : ip6.addr, 0, w.IPPROTO_ICMPV6, n, 64);
    w.icmp6SetChecksum(b, ip, l4, n);
    this.sink.commit(off, w.ETH_HLEN + w.IPV6_HLEN + n);
  }

  /** The guest's echo id back in the reply (the kernel wrote the socket's own). */
  private restoreId(b: Uint8Array, l4: number, i: number): void {
    const id = this.flows.eport[2 * i]!;
    b[l4 + 4] = id >>> 8;
    b[l4 + 5] = id & 255;
  }

  /** Close flow i's socket and free it. */
  private close(i: number): void {
    this.loop.del(this.fd[i]!);
    sys.shim_close(this.fd[i]!);
    this.byUse.unlink(i);
    this.flows.free(i);
  }

  /** The timer walk (src/flows/flow.ts): close flow i if idle for ICMP_TIMEOUT_MS. */
  private expire(i: number, now: number): void {
    if (now - this.lastUse[i]! >= ICMP_TIMEOUT_MS) this.close(i);
  }

  /** Open flows, for tests and --debug. */
  count(): number {
    return this.flows.count(FT_PING);
  }

  /** Close every echo socket at once (passt: the guest went away). */
  reset(): void {
    const ft = this.flows;
    for (let k = ft.inUse() - 1; k >= 0; k--) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_PING)) this.close(i);
    }
  }
}
