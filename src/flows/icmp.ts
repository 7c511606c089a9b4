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
 * The table is bounded (ICMP_MAX_FLOWS, or a share of the descriptor limit,
 * flows/limits.ts); a flow without traffic for ICMP_TIMEOUT_MS is closed.
 * When the table is full, the least recently used flow is closed to make
 * room (found by the same scan that looks for the flow), so that a guest
 * pinging many destinations at once does not keep a new ping from going out.
 */
import { ptr, type Pointer } from "bun:ffi";
import { Kind } from "../loop/kinds.ts";
import type { Config } from "../conf/config.ts";
import { log } from "../log.ts";
import { sys } from "../native/ffi.ts";
import { natOut4, natOut6 } from "./nat.ts";
import { SOCKADDR4_LEN, SOCKADDR6_LEN } from "../native/sockaddr.ts";
import { EPOLLIN, type Loop } from "../loop/loop.ts";
import type { FrameSink } from "../tap/sink.ts";
import type { Guest } from "../services/guest.ts";
import * as w from "../wire/index.ts";
import { AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, MSG_DONTWAIT, SOCK_DGRAM, SOCK_NONBLOCK } from "../native/consts.ts";
import { table } from "../loop/arena.ts";
import { fdBudget } from "./limits.ts";

/** Echo flows kept at once (the original keeps one per id, per family). */
export const ICMP_MAX_FLOWS = 1024;
/** An echo flow without traffic for this long is closed (the original uses 60 s; PASTA_ICMP_TIMEOUT_MS overrides it, for tests). */
export const ICMP_TIMEOUT_MS = Number(process.env.PASTA_ICMP_TIMEOUT_MS) || 60_000;
/** Largest echo message we relay (an IPv6 jumbo-less datagram). */
const MAX_ECHO = 65535;

export const icmpStats = { noSocket: 0, evicted: 0, sent: 0, received: 0, dropped: 0 };

export class IcmpFlows {
  private readonly fd = table.i32(ICMP_MAX_FLOWS).fill(-1);
  private readonly v6 = table.u8(ICMP_MAX_FLOWS);
  private readonly guestId = table.u16(ICMP_MAX_FLOWS);
  /** Remote address as the guest sees it: IPv4 in the first 4 bytes, or IPv6. */
  private readonly remote = table.u8(ICMP_MAX_FLOWS * 16);
  private readonly lastUse = table.f64(ICMP_MAX_FLOWS);
  private readonly sa = new Uint8Array(28);
  private readonly saLen = new Int32Array(1);
  /** The frame buffer last sent from, and its address (sendto takes the echo message in place). */
  private txBuf: Uint8Array | null = null;
  private txAddr = 0;
  /** The sink's buffer's address (replies are received straight into the frame). */
  private readonly sinkAddr: number;
  /** Flows at once, at most (see the theory of operation). */
  readonly maxFlows = fdBudget(ICMP_MAX_FLOWS);
  private nFlows = 0;
  private warned4 = false;
  private warned6 = false;

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly sink: FrameSink,
    private readonly guest: Guest,
  ) {
    this.sinkAddr = ptr(sink.buf);
    loop.on(Kind.ICMP, (i) => this.onReadable(i));
    loop.every(5000, (t) => this.expire(t));
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
    const id = (b[l4 + 4]! << 8) | b[l4 + 5]!;
    const i = this.lookup(0, id, b, ip + 16, 4, now);
    if (i < 0) return;
    natOut4(this.cfg.ip4!, this.sa, w.ipv4Dst(b, ip), 0, false);
    this.send(i, b, l4, len, SOCKADDR4_LEN);
  }

  private echo6(b: Uint8Array, ip: number, l4: number, len: number, now: number): void {
    if (len < 8 || b[l4] !== 128 || this.warned6) return;
    const id = (b[l4 + 4]! << 8) | b[l4 + 5]!;
    const i = this.lookup(1, id, b, ip + 24, 16, now);
    if (i < 0) return;
    natOut6(this.cfg.ip6!, this.sa, b, ip + 24, 0, false);
    this.send(i, b, l4, len, SOCKADDR6_LEN);
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

  /** Find or make the flow for (family, guest id, remote address at b[off..off+alen]). */
  private lookup(v6: number, id: number, b: Uint8Array, off: number, alen: number, now: number): number {
    let free = -1;
    let oldest = -1;
    for (let i = 0; i < ICMP_MAX_FLOWS; i++) {
      if (this.fd[i]! < 0) {
        if (free < 0) free = i;
        continue;
      }
      if (oldest < 0 || this.lastUse[i]! < this.lastUse[oldest]!) oldest = i;
      if (this.v6[i] !== v6 || this.guestId[i] !== id || !this.sameRemote(i, b, off, alen)) continue;
      this.lastUse[i] = now;
      return i;
    }
    if (this.nFlows >= this.maxFlows) {
      icmpStats.evicted++;
      this.close(oldest);
      free = oldest;
    }
    const fd = sys.shim_socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
    if (fd < 0) {
      icmpStats.noSocket++;
      return -1;
    }
    this.fd[free] = fd;
    this.v6[free] = v6;
    this.guestId[free] = id;
    this.remote.set(b.subarray(off, off + alen), free * 16);
    this.lastUse[free] = now;
    this.loop.add(fd, EPOLLIN, Kind.ICMP, free);
    this.nFlows++;
    return free;
  }

  private sameRemote(i: number, b: Uint8Array, off: number, alen: number): boolean {
    const base = i * 16;
    for (let k = 0; k < alen; k++) if (this.remote[base + k] !== b[off + k]) return false;
    return true;
  }

  /**
   * Replies arrived on flow i's socket: relay each to the guest. Each is
   * received in place, into a frame of the sink with room for the largest
   * message, which is committed only for an echo reply.
   */
  private onReadable(i: number): void {
    const fd = this.fd[i]!;
    if (fd < 0) return;
    const v6 = this.v6[i] === 1;
    const hdrs = w.ETH_HLEN + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    for (;;) {
      const off = this.sink.alloc(hdrs + MAX_ECHO);
      if (off < 0) return;
      this.saLen[0] = 28;
      const n = sys.shim_recvfrom(fd, (this.sinkAddr + off + hdrs) as Pointer, MAX_ECHO, MSG_DONTWAIT, this.sa, this.saLen);
      if (n < 8) return;
      icmpStats.received++;
      this.lastUse[i] = performance.now();
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
    const r = i * 16;
    const src = ((this.remote[r]! << 24) | (this.remote[r + 1]! << 16) | (this.remote[r + 2]! << 8) | this.remote[r + 3]!) >>> 0;
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
    w.writeIpv6At(b, ip, this.remote, i * 16, this.guest.addr6Known ? this.guest.addr6 : ip6.addr, 0, w.IPPROTO_ICMPV6, n, 64);
    w.icmp6SetChecksum(b, ip, l4, n);
    this.sink.commit(off, w.ETH_HLEN + w.IPV6_HLEN + n);
  }

  private restoreId(b: Uint8Array, l4: number, i: number): void {
    b[l4 + 4] = this.guestId[i]! >>> 8;
    b[l4 + 5] = this.guestId[i]! & 255;
  }

  /** Close flow i's socket and free its slot. */
  private close(i: number): void {
    this.loop.del(this.fd[i]!);
    sys.shim_close(this.fd[i]!);
    this.fd[i] = -1;
    this.nFlows--;
  }

  /** Close flows idle for longer than ICMP_TIMEOUT_MS. */
  private expire(now: number): void {
    for (let i = 0; i < ICMP_MAX_FLOWS; i++) {
      if (this.fd[i]! >= 0 && now - this.lastUse[i]! >= ICMP_TIMEOUT_MS) this.close(i);
    }
  }

  /** Open flows, for tests and --debug. */
  count(): number {
    return this.nFlows;
  }

  /** Close every echo socket at once (passt: the guest went away). */
  reset(): void {
    for (let i = 0; i < ICMP_MAX_FLOWS; i++) if (this.fd[i]! >= 0) this.close(i);
  }
}
