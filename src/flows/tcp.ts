/**
 * TCP through the tap: an adaptation layer, not a TCP stack.
 *
 * Theory of operation
 * -------------------
 * Each guest connection is mirrored by one host socket; the host kernel does
 * the real TCP with the peer. We keep no data buffers of our own: the host
 * socket's buffers are the only ones, and what each side acknowledges drives
 * what the other side sees.
 *
 * Opening
 * - Guest opens: a SYN from the tap makes a non-blocking socket that connect()s
 *   to the destination, translated by src/flows/nat.ts (by default the gateway
 *   address reaches the host's loopback). On success the guest gets a SYN-ACK
 *   (our MSS and window scale); on failure a RST. While connecting, repeated
 *   SYNs are ignored.
 * - Host opens: accept() on a forwarded port (-t) sends a SYN to the guest from
 *   the peer's address as src/flows/nat.ts translates it (peers on the host
 *   itself appear, by default, from the gateway; in pasta, loopback peers take
 *   the spliced path instead, flows/splice.ts); the guest's SYN-ACK
 *   establishes the connection and we ACK it.
 *
 * Guest to host: the payload of a segment whose sequence number is the next
 * one expected joins the run of queued payloads (consecutive segments of one
 * flow; a segment of another flow writes the run out first), written with one
 * sendmsg() at the end of the batch of frames, or before anything else
 * touches that flow; we acknowledge what the socket took and advertise a
 * window of the send buffer's free space. A segment beyond the expected number
 * (a hole) is held until the end of the batch (its frame stays valid until
 * then): a later segment of the same batch may fill the hole (a guest's
 * queue, or the rings between us, reorder), and the held segments that then
 * follow join the run in sequence order (placeHeld). Those still beyond a
 * hole at the end of the batch are dropped, each answered with a duplicate
 * ACK so that the guest retransmits (RFC 5681 3.2). When the socket is full we
 * ask for EPOLLOUT and send a window update once it drains.
 *
 * Host to guest: data is peeked (MSG_PEEK, continuing at SO_PEEK_OFF) straight
 * into frames in the tap's transmit buffer, or, where the sink can
 * (vhost-user: FrameSink.reserveInPlace), into the guest's own receive
 * buffers, up to the guest's window, in segments of the guest's MSS. Bytes leave the socket (a discarding read) only
 * when the guest acknowledges them: the ACKs of one batch are counted, and
 * one read discards them all at its end (flushSends), then we send into the
 * window they opened. Three duplicate ACKs, or no progress within the
 * retransmission timeout, rewind to the last acknowledged byte and send
 * again; after TCP_MAX_RETRIES timeouts the connection is reset.
 *
 * Closing: a FIN from the guest becomes shutdown(SHUT_WR) once its data is
 * written; end of stream on the socket becomes a FIN to the guest once all
 * data is sent. A RST from the guest closes the socket with SO_LINGER 0 (the
 * peer sees a reset); a reset or error on the socket becomes a RST to the
 * guest. The flow is freed when both directions are closed and our FIN is
 * acknowledged.
 *
 * Limits and timeouts: at most TCP_MAX_CONNS flows; handshakes time out
 * after TCP_HANDSHAKE_TIMEOUT_MS, half-closed flows after TCP_FIN_TIMEOUT_MS,
 * idle established flows after TCP_IDLE_TIMEOUT_MS. Sequence numbers are
 * compared modulo 2^32.
 *
 * Half-open flows (our connect() in progress, or our SYN or SYN-ACK not yet
 * answered by the guest) cost a socket each, and a guest can make any number
 * of them (a SYN flood, from random sources that never answer). They are
 * kept in a list, oldest first, and bounded (halfOpenMax: TCP_MAX_HALF_OPEN,
 * or a share of the descriptor limit, flows/limits.ts): a new connection
 * beyond the bound drops the oldest half-open one, silently on the guest's
 * side (a real guest sends its SYN again), with a reset on the host's. Flows
 * whose guest address has not proven itself (flows/proven.ts: no handshake
 * ever completed from it, not the address we assigned) are in a list of
 * their own and go first: a flood from forged sources then costs a real
 * application's connection nothing, however fast it cycles the bound. The
 * same happens when the table is full or socket() runs out of descriptors;
 * only when there is no half-open flow to drop is a new SYN refused (RST).
 * So a flood cannot starve connections that complete their handshake, nor
 * take every descriptor.
 *
 * We negotiate neither SACK nor timestamps (we do not send those options, so
 * neither peer uses them with us); window scaling and MSS we do.
 */
import { Kind } from "../loop/kinds.ts";
import { ptr, type Pointer } from "bun:ffi";
import type { Config } from "../conf/config.ts";
import { debugOn, log } from "../log.ts";
import { EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, now, type Loop } from "../loop/loop.ts";
import { sys } from "../native/ffi.ts";
import { natIn4, natIn6, natOut4, natOut6 } from "./nat.ts";
import { bindOutbound, saAddr4, saFamily, saPort, SA6_ADDR, SOCKADDR4_LEN, SOCKADDR6_LEN } from "../native/sockaddr.ts";
import type { Guest } from "../services/guest.ts";
import { type FrameSink, framesThatFit } from "../tap/sink.ts";
import * as w from "../wire/index.ts";
import {
  AF_INET,
  AF_INET6,
  EAGAIN,
  EINPROGRESS,
  EMFILE,
  ENFILE,
  IPPROTO_TCP,
  SHUT_WR,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_SOCKET,
  SO_PEEK_OFF,
  SO_RCVBUF,
  SO_SNDBUF,
  TCP_MAXSEG,
  TCP_NODELAY,
} from "../native/consts.ts";
import { table } from "../loop/arena.ts";
import { flowKeyHash } from "./flowhash.ts";
import { FLOW_MAX, FT_TCP, type FlowTable, flowOf, PIF_HOST, PIF_TAP } from "./flow.ts";
import {
  CONNECTING,
  ESTABLISHED,
  F_ACK_PENDING,
  F_FIN_ACKED,
  F_FIN_SENT,
  F_GUEST_FIN,
  F_HALF_OPEN,
  F_HO_PROVEN,
  F_HOST_EOF,
  F_HOST_ERR,
  F_OUT_WAIT,
  F_SEND_QUEUED,
  F_SHUT_WR,
  F_V6,
  FREE,
  SYN_TO_GUEST,
  TcpConns,
} from "./tcp-conn.ts";
import { fdBudget } from "./limits.ts";
import { ProvenAddrs } from "./proven.ts";

/** Connections at once; each costs a socket, so the fd limit may bind first. */
export const TCP_MAX_CONNS = 1 << 17;
/**
 * Half-open connections at once, at most (fewer under a low descriptor
 * limit): of the order of Linux's own SYN backlog (tcp_max_syn_backlog).
 */
export const TCP_MAX_HALF_OPEN = 4096;
/** A handshake (either side) must complete within this time. */
export const TCP_HANDSHAKE_TIMEOUT_MS = 10_000;
/** After a FIN in either direction, the rest must complete within this time. */
export const TCP_FIN_TIMEOUT_MS = 60_000;
/** An established connection without any traffic for this long is reset (as the original: 2 h). */
export const TCP_IDLE_TIMEOUT_MS = 7_200_000;
/**
 * First retransmission timeout for data to the guest; doubles on each retry.
 * The guest is on this machine: a quarter second is long against its round
 * trip, and as short as Linux's own minimum.
 */
export const TCP_RTO_MS = 250;
/** Retransmissions without progress before we give up and reset. */
export const TCP_MAX_RETRIES = 8;
/** EPOLLOUT events in a row that may find the window closed and re-arm, before the tick takes over (updateWindowIfOpen). */
const OUT_SPINS_MAX = 64;
/** Free send space below which we send a window update once the socket drains (two full 64 KiB segments). */
const WINDOW_UPDATE_BELOW = 2 * 65536;
/**
 * Below this lower bound of the socket's free send space, windowToGuest asks
 * the socket again rather than trust the bound: small windows are where an
 * understated one would slow the guest, and WINDOW_UPDATE_BELOW's decision
 * needs the exact value.
 */
const SPACE_ASK_BELOW = 2 * WINDOW_UPDATE_BELOW;
/** SYNs resent to a guest that does not answer, before the connection is refused. */
const SYN_RETRIES = 5;
/** Duplicate ACKs that trigger a fast retransmission. */
const DUP_ACK_THRESHOLD = 3;
/** Window scale we announce to the guest (2^8 * 64 KiB = 16 MiB windows). */
const OUR_WSCALE = 8;
/** Segments built per peek call (bounded by the shim's iovec array). */
const PEEK_SEGMENTS = 32;
/** Super-frames (up to 64 KiB each) built per peek call with offloads. */
const TSO_SEGMENTS = 16;
/** Guest payloads queued for one sendmsg() at most. */
const RUN_MAX = 256;
/** Segments past a hole held per batch at most (beyond: dropped at once, with a duplicate ACK). */
const HELD_MAX = 256;
/** Fields of a held segment (held): flow (NO_FLOW once placed or dropped), offset, length, sequence number, FIN. */
const HELD_FIELDS = 5;
const NO_FLOW = 0xffffffff;
/** Timer granularity for retransmissions and timeouts. */
const TICK_MS = 50;
/** Secret of our ISNs, drawn once per run (RFC 6528). */
const ISN_SECRET = crypto.getRandomValues(new Uint32Array(1))[0];
/** ISN clock: 250 ticks per millisecond (4 µs, as RFC 9293 suggests). */
const ISN_TICKS_PER_MS = 250;

/** The half-open lists: flows from guest addresses not proven (dropped first), and from proven ones. */
const HO_UNPROVEN = 0;
const HO_PROVEN = 1;

/** Where a sockaddr_in holds its address. */
const SA4_ADDR = 4;

const ETH_IP4_TCP = w.ETH_HLEN + w.IPV4_HLEN + w.TCP_HLEN;
const ETH_IP6_TCP = w.ETH_HLEN + w.IPV6_HLEN + w.TCP_HLEN;
/** SYN options we send: MSS (4) + NOP + window scale (3). */
const SYN_OPT_LEN = 8;

/**
 * Socket buffers as large as the system allows (the kernel clamps the request
 * to net.core.wmem_max / rmem_max), as the original does: the window we
 * advertise to the guest is the free space of the socket's send buffer, and
 * autotuning grows that buffer only slowly, so the guest would otherwise be
 * held to small windows and frames (at MTU 1500, a third of the throughput).
 */
function largeBuffers(fd: number): void {
  sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_SNDBUF, 0x7fffffff);
  sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, 0x7fffffff);
}

export const tcpStats = {
  opened: 0,
  closed: 0,
  refusedFull: 0,
  rstSent: 0,
  dupAckRetrans: 0,
  timeoutRetrans: 0,
  outOfOrder: 0,
  badSegments: 0,
  connectFailed: 0,
  evicted: 0,
};

export class TcpFlows {
  /** Every connection's own fields (flows/tcp-conn.ts), by flow number (src/flows/flow.ts). */
  private readonly conn = new TcpConns(FLOW_MAX);
  /** The half-open lists (HO_UNPROVEN, HO_PROVEN), oldest first: each list's ends (links: conn.hoPrev, conn.hoNext; -1: none). */
  private readonly hoHead = new Int32Array([-1, -1]);
  private readonly hoTail = new Int32Array([-1, -1]);
  private nHalfOpen = 0;
  /** Guest addresses that completed a handshake (or that we assigned). */
  private readonly proven = new ProvenAddrs();
  /** Half-open flows at most (see the theory of operation). */
  readonly halfOpenMax = fdBudget(TCP_MAX_HALF_OPEN);
  private readonly ackList = table.i32(TCP_MAX_CONNS);
  private nAck = 0;
  /** Flows with acknowledged bytes to discard and maybe data to send (flushSends). */
  private readonly sendList = table.i32(TCP_MAX_CONNS);
  private nSend = 0;
  /** The run of guest payloads queued for one flow's socket (queueWrite, flushRun); -1: none. */
  private runFlow = -1;
  private runBuf: Uint8Array | null = null;
  /** (offset in runBuf, length) per payload. */
  private readonly runPairs = table.u32(RUN_MAX * 2);
  private runN = 0;
  private runLen = 0;
  /** Sequence number after the run's last byte. */
  private runEnd = 0;
  /** Segments past a hole in this batch, all in heldBuf (HELD_FIELDS each; placeHeld). */
  private readonly held = table.u32(HELD_MAX * HELD_FIELDS);
  private nHeld = 0;
  private heldBuf: Uint8Array | null = null;
  private readonly opts = new w.TcpOptions();
  private readonly sa = new Uint8Array(28);
  /** Scratch: an address being translated or proven. */
  private readonly tmpAddr = new Uint8Array(16);
  /** Scratch: the guest's IPv4 address as bytes. */
  private readonly guest4 = new Uint8Array(4);
  private readonly bufBase: number;
  private peekOff = true;

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly sink: FrameSink,
    private readonly guest: Guest,
    private readonly flows: FlowTable,
  ) {
    this.bufBase = ptr(sink.buf);
    if (cfg.ip4) {
      w.wr32(this.tmpAddr, 0, cfg.ip4.addr);
      this.proven.add(this.tmpAddr, 0, 4);
    }
    if (cfg.ip6) this.proven.add(cfg.ip6.addr, 0, 16);
    loop.on(Kind.TCP, (i, ev) => this.onSocket(i, ev));
    flows.onTimer(FT_TCP, TICK_MS, (i, t) => this.onTimer(i, t));
  }

  /** Flows in use (for tests and --debug). */
  count(): number {
    return this.flows.count(FT_TCP);
  }

  /** Flow i's side on the tap (its sidx): the guest's address and port, the remote's as the guest sees them. */
  private tapSide(i: number): number {
    return this.flows.sideOn(i, PIF_TAP);
  }

  /** Half-open flows (for tests and --debug). */
  halfOpen(): number {
    return this.nHalfOpen;
  }

  /** Flows whose guest side may still send data (no FIN from it yet). */
  guestOpen(): number {
    const ft = this.flows;
    let n = 0;
    for (let k = 0; k < ft.inUse(); k++) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_TCP) && !(this.conn.flags[i] & F_GUEST_FIN)) n++;
    }
    return n;
  }

  // ------------------------------------------------------------ host opens

  /**
   * A connection accepted on a forwarded host port (fd, its peer in sockaddr
   * sa), for the guest's port, at taddr (4 or 16 bytes: the rule's target
   * address) or, when null, the guest's own: offer it to the guest with a SYN.
   */
  acceptFromHost(fd: number, sa: Uint8Array, port: number, taddr: Uint8Array | null, listenPort: number): void {
    const v6 = saFamily(sa) === AF_INET6;
    if ((v6 && !this.cfg.ip6) || (!v6 && !this.cfg.ip4)) {
      sys.shim_close(fd);
      return;
    }
    this.sa.set(sa.subarray(0, 28));
    const remote = this.tmpAddr;
    remote.fill(0);
    const rport = saPort(this.sa);
    // the peer as the guest sees it (src/flows/nat.ts); an IPv4 peer may have no such address
    if (v6) natIn6(this.cfg.ip6!, this.sa, SA6_ADDR, rport, false, remote);
    else {
      const a = natIn4(this.cfg.ip4!, saAddr4(this.sa), rport, false);
      if (a === 0) {
        sys.shim_abort_close(fd);
        return;
      }
      w.wr32(remote, 0, a);
    }
    const guestA = taddr ?? (v6 ? this.guest.addr6For(this.cfg.ip6!.addr) : null);
    this.makeRoom();
    const i = this.alloc(v6, guestA, port, remote, rport, listenPort, now());
    if (i < 0) {
      sys.shim_abort_close(fd);
      return;
    }
    this.halfOpenAdd(i);
    this.conn.fd[i] = fd;
    this.conn.state[i] = SYN_TO_GUEST;
    this.conn.mss[i] = this.maxMss(v6);
    this.setIsn(i);
    this.conn.deadline[i] = now() + TCP_RTO_MS;
    sys.shim_setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    largeBuffers(fd);
    this.loop.add(fd, EPOLLRDHUP | EPOLLET, Kind.TCP, i);
    this.sendSyn(i, false, this.conn.seqAcked[i]);
    this.conn.seqToGuest[i] = (this.conn.seqToGuest[i] + 1) >>> 0;
    tcpStats.opened++;
  }

  // ------------------------------------------------------- from the guest

  /**
   * A TCP segment from the guest (the entry point shared by TCP, UDP and
   * ICMP): IP header at b[ip], TCP header at b[l4], l4len bytes (header and
   * payload), at time t. Returns false, having done nothing, for a malformed
   * one (a header that does not fit, SYN with FIN or RST).
   */
  fromGuest(b: Uint8Array, ip: number, l4: number, l4len: number, v6: boolean, t: number): boolean {
    const hl = w.tcpCheck(b, l4, l4len);
    if (hl < 0) {
      tcpStats.badSegments++;
      return false;
    }
    const fl = w.tcpFlags(b, l4);
    if ((fl & w.TCP_SYN && fl & w.TCP_FIN) || (fl & w.TCP_SYN && fl & w.TCP_RST)) {
      tcpStats.badSegments++;
      return false;
    }
    this.segmentOk(b, ip, l4, hl, l4len, fl, v6, t);
    return true;
  }

  private segmentOk(b: Uint8Array, ip: number, l4: number, hl: number, l4len: number, fl: number, v6: boolean, t: number): void {
    const srcOff = v6 ? ip + w.IP6_SRC : ip + w.IP4_SRC;
    const dstOff = v6 ? ip + w.IP6_DST : ip + w.IP4_DST;
    const i = this.lookup(v6, b, srcOff, w.tcpSrcPort(b, l4), b, dstOff, w.tcpDstPort(b, l4));
    if (i < 0) {
      if ((fl & (w.TCP_SYN | w.TCP_ACK_FLAG | w.TCP_RST)) === w.TCP_SYN) this.guestOpens(b, ip, l4, hl, v6, t);
      else if (!(fl & w.TCP_RST)) this.rstUnknown(b, ip, l4, l4len - hl, v6);
      return;
    }
    this.conn.lastActive[i] = t;
    if (fl & w.TCP_RST) return this.guestReset(i);
    switch (this.conn.state[i]) {
      case CONNECTING:
        return;
      case SYN_TO_GUEST:
        return this.guestSynAck(i, b, l4, hl, fl);
      default:
        return this.established(i, b, l4, hl, l4len - hl, fl);
    }
  }

  /** A SYN for a new connection: make the host socket and connect. */
  private guestOpens(b: Uint8Array, ip: number, l4: number, hl: number, v6: boolean, t: number): void {
    const srcOff = v6 ? ip + w.IP6_SRC : ip + w.IP4_SRC;
    const dstOff = v6 ? ip + w.IP6_DST : ip + w.IP4_DST;
    this.makeRoom();
    const fd = this.newSocket(v6 ? AF_INET6 : AF_INET);
    const i = fd < 0 ? -1 : this.allocFrom(v6, b, srcOff, w.tcpSrcPort(b, l4), b, dstOff, w.tcpDstPort(b, l4), t);
    if (i < 0) {
      if (fd >= 0) sys.shim_close(fd);
      tcpStats.refusedFull++;
      this.rstUnknown(b, ip, l4, 0, v6);
      return;
    }
    this.halfOpenAdd(i);
    w.tcpParseOptions(b, l4, hl, this.opts);
    this.conn.seqFromGuest[i] = (w.tcpSeq(b, l4) + 1) >>> 0;
    this.conn.guestWs[i] = this.opts.wscale >= 0 ? Math.min(this.opts.wscale, w.TCP_WSCALE_MAX) : 0;
    this.conn.ourWs[i] = this.opts.wscale >= 0 ? OUR_WSCALE : 0;
    this.conn.guestWnd[i] = w.tcpWindow(b, l4);
    this.conn.mss[i] = Math.min(this.opts.mss > 0 ? this.opts.mss : 536, this.maxMss(v6));
    this.setIsn(i);
    this.conn.fd[i] = fd;
    this.conn.state[i] = CONNECTING;
    this.conn.deadline[i] = t + TCP_HANDSHAKE_TIMEOUT_MS;
    bindOutbound(fd, v6, 0, this.cfg);
    sys.shim_setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    largeBuffers(fd);
    if (this.opts.mss > 0) sys.shim_setsockopt_int(fd, IPPROTO_TCP, TCP_MAXSEG, this.opts.mss);
    const len = this.destSockaddr(2 * i, v6);
    const rc = sys.shim_connect(fd, this.sa, len);
    this.loop.add(fd, EPOLLOUT | EPOLLRDHUP | EPOLLET, Kind.TCP, i);
    tcpStats.opened++;
    if (rc < 0 && rc !== -EINPROGRESS) this.connectFailed(i);
    else if (rc === 0) this.connected(i);
  }

  /**
   * A socket for a new connection; when the descriptors ran out, the oldest
   * half-open flow gives its own up first. Returns the fd or -errno.
   */
  private newSocket(af: number): number {
    const fd = sys.shim_socket(af, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if ((fd !== -EMFILE && fd !== -ENFILE) || !this.evictHalfOpen()) return fd;
    return sys.shim_socket(af, SOCK_STREAM | SOCK_NONBLOCK, 0);
  }

  /** Before a new flow: drop the oldest half-open one if half-open flows are at their bound or the table is full. */
  private makeRoom(): void {
    if (this.nHalfOpen >= this.halfOpenMax || this.count() >= TCP_MAX_CONNS || this.flows.inUse() >= FLOW_MAX) this.evictHalfOpen();
  }

  /**
   * Drop the oldest half-open flow, from an unproven guest address if there
   * is one: its socket is closed with a reset, the guest is told nothing (a
   * guest that is really there sends its SYN again). False when there is none.
   */
  private evictHalfOpen(): boolean {
    const i = this.hoHead[HO_UNPROVEN] >= 0 ? this.hoHead[HO_UNPROVEN] : this.hoHead[HO_PROVEN];
    if (i < 0) return false;
    tcpStats.evicted++;
    if (this.conn.fd[i] >= 0) {
      this.loop.del(this.conn.fd[i]);
      sys.shim_abort_close(this.conn.fd[i]);
      this.conn.fd[i] = -1;
    }
    this.free(i);
    return true;
  }

  /** Flow i begins its handshake: last in its half-open list (by whether its guest address is proven). */
  private halfOpenAdd(i: number): void {
    const l = this.proven.has(this.flows.eaddr, 16 * this.tapSide(i), this.conn.flags[i] & F_V6 ? 16 : 4) ? HO_PROVEN : HO_UNPROVEN;
    this.conn.flags[i] |= F_HALF_OPEN | (l === HO_PROVEN ? F_HO_PROVEN : 0);
    this.conn.openedAt[i] = now();
    const tail = this.hoTail[l];
    this.conn.hoPrev[i] = tail;
    this.conn.hoNext[i] = -1;
    if (tail >= 0) this.conn.hoNext[tail] = i;
    else this.hoHead[l] = i;
    this.hoTail[l] = i;
    this.nHalfOpen++;
  }

  /** Flow i's handshake is complete (or the flow is gone): out of its half-open list. */
  private halfOpenDone(i: number): void {
    if (!(this.conn.flags[i] & F_HALF_OPEN)) return;
    const l = this.conn.flags[i] & F_HO_PROVEN ? HO_PROVEN : HO_UNPROVEN;
    this.conn.flags[i] &= ~(F_HALF_OPEN | F_HO_PROVEN);
    const p = this.conn.hoPrev[i];
    const n = this.conn.hoNext[i];
    if (p >= 0) this.conn.hoNext[p] = n;
    else this.hoHead[l] = n;
    if (n >= 0) this.conn.hoPrev[n] = p;
    else this.hoTail[l] = p;
    this.nHalfOpen--;
  }

  /** Flow i's handshake completed: its guest address is real. */
  private handshakeDone(i: number): void {
    this.proven.add(this.flows.eaddr, 16 * this.tapSide(i), this.conn.flags[i] & F_V6 ? 16 : 4);
    this.halfOpenDone(i);
  }

  /** sockaddr (in this.sa) where the remote of tap side s is on the host (src/flows/nat.ts); returns its length. */
  private destSockaddr(s: number, v6: boolean): number {
    const ft = this.flows;
    const port = ft.oport[s]!;
    if (v6) {
      natOut6(this.cfg.ip6!, this.sa, ft.oaddr, 16 * s, port, true);
      return SOCKADDR6_LEN;
    }
    natOut4(this.cfg.ip4!, this.sa, w.rd32(ft.oaddr, 16 * s), port, true);
    return SOCKADDR4_LEN;
  }

  /** The guest answered our SYN. */
  private guestSynAck(i: number, b: Uint8Array, l4: number, hl: number, fl: number): void {
    if ((fl & (w.TCP_SYN | w.TCP_ACK_FLAG)) !== (w.TCP_SYN | w.TCP_ACK_FLAG)) return;
    if (w.tcpAck(b, l4) !== this.conn.seqToGuest[i]) return;
    w.tcpParseOptions(b, l4, hl, this.opts);
    this.conn.seqFromGuest[i] = (w.tcpSeq(b, l4) + 1) >>> 0;
    this.conn.seqAcked[i] = this.conn.seqToGuest[i];
    const scaled = this.opts.wscale >= 0;
    this.conn.guestWs[i] = scaled ? Math.min(this.opts.wscale, w.TCP_WSCALE_MAX) : 0;
    this.conn.ourWs[i] = scaled ? OUR_WSCALE : 0;
    this.conn.guestWnd[i] = w.tcpWindow(b, l4);
    if (this.opts.mss > 0) this.conn.mss[i] = Math.min(this.opts.mss, this.maxMss(!!(this.conn.flags[i] & F_V6)));
    this.conn.state[i] = ESTABLISHED;
    this.handshakeDone(i);
    this.conn.retries[i] = 0;
    this.conn.deadline[i] = 0;
    this.enablePeekOff(i);
    this.loop.mod(this.conn.fd[i], EPOLLIN | EPOLLRDHUP | EPOLLET, Kind.TCP, i);
    this.ackNow(i);
    this.sendData(i);
  }

  /** A segment on a synchronised connection. */
  private established(i: number, b: Uint8Array, l4: number, hl: number, dlen: number, fl: number): void {
    if (fl & w.TCP_SYN) {
      this.queueAck(i);
      return;
    }
    if (fl & w.TCP_ACK_FLAG) {
      // Any ACK from the guest means it has our SYN-ACK: no more of those.
      if (this.conn.synAckPending[i]) {
        this.conn.synAckPending[i] = 0;
        this.handshakeDone(i);
      }
      this.guestAck(i, w.tcpAck(b, l4), w.tcpWindow(b, l4), dlen > 0 || (fl & w.TCP_FIN) !== 0);
    }
    if (this.conn.state[i] === FREE) return;
    const seq = w.tcpSeq(b, l4);
    if (dlen > 0) this.guestData(i, b, l4 + hl, dlen, seq, fl);
    // An empty segment from before the next expected byte is a window probe: answer it.
    else if (!(fl & w.TCP_FIN) && w.seqLt(seq, this.nextFromGuest(i))) this.queueAck(i);
    if (fl & w.TCP_FIN && !(this.conn.flags[i] & F_GUEST_FIN)) this.finFromGuest(i, (seq + dlen) >>> 0);
    this.maybeClose(i);
  }

  /**
   * The guest acknowledged up to ack and advertises wnd. The window is taken
   * only from an acceptable ACK (RFC 9293 3.10.7.4: between what it already
   * acknowledged and the furthest we sent): a segment with any other ACK, a
   * stale or forged one, must not close or blow up the window of a
   * connection (a closed one stalls it; one past what the guest can take
   * makes us send what it drops, until the retries run out).
   */
  private guestAck(i: number, ack: number, wnd: number, carriesData: boolean): void {
    const inFlight = w.seqDiff(this.conn.seqToGuest[i], this.conn.seqAcked[i]);
    const acked = w.seqDiff(ack, this.conn.seqAcked[i]);
    const newWnd = (wnd << this.conn.guestWs[i]) >>> 0;
    if (acked < 0 || w.seqLt(this.sentMax(i), ack)) return;
    if (acked > 0 && acked <= inFlight) {
      let bytes = acked;
      if (this.conn.flags[i] & F_FIN_SENT && ack === this.conn.seqToGuest[i]) {
        this.conn.flags[i] |= F_FIN_ACKED;
        bytes--;
      }
      if (bytes > 0) this.conn.unDiscarded[i] += bytes;
      this.conn.seqAcked[i] = ack;
      if (w.seqLt(this.conn.seqMax[i], ack)) this.conn.seqMax[i] = ack;
      this.conn.dupAcks[i] = 0;
      this.conn.recovering[i] = 0;
      this.conn.retries[i] = 0;
      this.conn.deadline[i] = this.conn.seqAcked[i] === this.conn.seqToGuest[i] ? 0 : this.loop.time() + TCP_RTO_MS;
    } else if (acked === 0 && inFlight > 0 && !carriesData && newWnd === this.conn.guestWnd[i] && !this.conn.recovering[i]) {
      // a duplicate ACK as RFC 5681 counts them: no data, nothing new acknowledged, the
      // same window (a window update is not a sign of loss)
      if (++this.conn.dupAcks[i] === DUP_ACK_THRESHOLD) {
        this.conn.recovering[i] = 1;
        tcpStats.dupAckRetrans++;
        this.rewind(i);
      }
    }
    this.conn.guestWnd[i] = newWnd;
    if (this.conn.hostPending[i] || this.conn.unDiscarded[i] > 0) this.queueSend(i);
  }

  /** The furthest sequence number we sent on flow i: seqToGuest, or where it was before a rewind. */
  private sentMax(i: number): number {
    return w.seqLt(this.conn.seqToGuest[i], this.conn.seqMax[i]) ? this.conn.seqMax[i] : this.conn.seqToGuest[i];
  }

  private queueSend(i: number): void {
    if (this.conn.flags[i] & F_SEND_QUEUED) return;
    this.conn.flags[i] |= F_SEND_QUEUED;
    this.sendList[this.nSend++] = i;
  }

  /** Drop from the socket what the guest has acknowledged; before any peek from its start. */
  private discardAcked(i: number): void {
    const n = this.conn.unDiscarded[i];
    if (n === 0) return;
    this.conn.unDiscarded[i] = 0;
    sys.shim_tcp_discard(this.conn.fd[i], n);
  }

  /**
   * End of a batch of frames from the guest: for each flow that got ACKs,
   * one discarding read for all of them, then one round of sending into the
   * window they opened. Run before flushAcks (data segments carry the ACK).
   */
  flushSends(): void {
    for (let k = 0; k < this.nSend; k++) {
      const i = this.sendList[k];
      if (!(this.conn.flags[i] & F_SEND_QUEUED)) continue;
      this.conn.flags[i] &= ~F_SEND_QUEUED;
      if (this.conn.flags[i] & F_HOST_ERR) {
        this.hostReset(i);
        continue;
      }
      this.discardAcked(i);
      if (this.conn.hostPending[i]) this.sendData(i);
    }
    this.nSend = 0;
  }

  /** Payload from the guest at seq (its segment's flags fl): queue the part we expect next for the socket, or hold it past a hole. */
  private guestData(i: number, b: Uint8Array, off: number, len: number, seq: number, fl: number): void {
    if (this.conn.flags[i] & F_SHUT_WR) return;
    const skip = w.seqDiff(this.nextFromGuest(i), seq);
    if (skip < 0) {
      if (!this.hold(i, b, off, len, seq, fl)) this.dupAck(i);
      return;
    }
    if (skip < len) this.queueWrite(i, b, off + skip, len - skip);
    this.queueAck(i);
  }

  /** Keep a segment past a hole until the end of the batch (placeHeld); false when it can't be kept. */
  private hold(i: number, b: Uint8Array, off: number, len: number, seq: number, fl: number): boolean {
    if (this.nHeld === HELD_MAX || (this.heldBuf !== null && this.heldBuf !== b)) return false;
    this.heldBuf = b;
    const h = this.nHeld++ * HELD_FIELDS;
    this.held[h] = i;
    this.held[h + 1] = off;
    this.held[h + 2] = len;
    this.held[h + 3] = seq;
    this.held[h + 4] = fl & w.TCP_FIN;
    return true;
  }

  /**
   * End of a batch of frames from the guest, while they are still valid:
   * place the held segments that now follow what their flow has (walking
   * them again while any was placed: a segment can fill the hole before the
   * next one), then drop the rest with a duplicate ACK each (see the theory
   * of operation), and write the run out.
   */
  batchEnd(): void {
    this.placeHeld();
    this.flushRun();
  }

  private placeHeld(): void {
    if (this.nHeld === 0) return;
    const hd = this.held;
    for (let placed = true; placed; ) {
      placed = false;
      for (let h = 0; h < this.nHeld * HELD_FIELDS; h += HELD_FIELDS) {
        const i = hd[h]!;
        if (i === NO_FLOW) continue;
        if (this.conn.state[i] === FREE || this.conn.flags[i] & F_SHUT_WR) {
          hd[h] = NO_FLOW;
          continue;
        }
        const len = hd[h + 2]!;
        const seq = hd[h + 3]!;
        const skip = w.seqDiff(this.nextFromGuest(i), seq);
        if (skip < 0) continue;
        hd[h] = NO_FLOW;
        placed = true;
        if (skip < len) this.queueWrite(i, this.heldBuf!, hd[h + 1]! + skip, len - skip);
        this.queueAck(i);
        if (hd[h + 4] && !(this.conn.flags[i] & F_GUEST_FIN)) {
          this.finFromGuest(i, (seq + len) >>> 0);
          this.maybeClose(i);
        }
      }
    }
    for (let h = 0; h < this.nHeld * HELD_FIELDS; h += HELD_FIELDS) if (hd[h] !== NO_FLOW) this.dupAck(hd[h]!);
    this.nHeld = 0;
    this.heldBuf = null;
  }

  /** A segment past a hole, dropped: a duplicate ACK for it, at once (RFC 5681), so that the guest counts them and retransmits quickly. */
  private dupAck(i: number): void {
    tcpStats.outOfOrder++;
    this.ackNow(i);
  }

  /** The sequence number the next new byte from the guest has: after the queued run, if any. */
  private nextFromGuest(i: number): number {
    return i === this.runFlow ? this.runEnd : this.conn.seqFromGuest[i];
  }

  /**
   * Add b[off, off+len) to the run of guest data for flow i: consecutive
   * in-order payloads of one flow, written with one sendmsg() by flushRun.
   * With TCP_NODELAY every send() was a segment through the host's stack;
   * a run of 40 frames at MTU 1500 is one call and a few large segments.
   */
  private queueWrite(i: number, b: Uint8Array, off: number, len: number): void {
    if (i !== this.runFlow || b !== this.runBuf || this.runN === RUN_MAX) {
      const start = this.nextFromGuest(i);
      this.flushRun();
      // the socket took only part of this flow's run: this payload no longer
      // follows what it took; drop it, the guest sends it again after our ACK
      if (this.conn.seqFromGuest[i] !== start) return;
    }
    if (this.runFlow < 0) {
      this.runFlow = i;
      this.runBuf = b;
      this.runEnd = this.conn.seqFromGuest[i];
      this.runLen = 0;
    }
    this.runPairs[2 * this.runN] = off;
    this.runPairs[2 * this.runN + 1] = len;
    this.runN++;
    this.runLen += len;
    this.runEnd = (this.runEnd + len) >>> 0;
  }

  /**
   * Write the queued run to its flow's socket. What the socket does not take
   * is dropped: seqFromGuest (what we acknowledge) advances by what it took,
   * and the guest sends the rest again. Run before anything that reads the
   * socket's state or tells the guest an ACK for this flow, and at the end of
   * each batch of frames (the frames live in the backend's receive buffer
   * until then).
   */
  flushRun(): void {
    const i = this.runFlow;
    if (i < 0) return;
    const n = sys.shim_send_frames(this.conn.fd[i], this.runBuf!, this.runPairs, this.runN, 0);
    const took = Math.max(n, 0);
    this.conn.seqFromGuest[i] = (this.conn.seqFromGuest[i] + took) >>> 0;
    this.conn.sndSpace[i] = Math.max(this.conn.sndSpace[i] - took, 0);
    if (n < 0 && n !== -EAGAIN) {
      this.conn.flags[i] |= F_HOST_ERR;
      this.queueSend(i);
    } else if (took < this.runLen) this.waitWritable(i);
    this.dropRun();
  }

  /** Forget the queued run (its flow is gone, or flushRun wrote it). */
  private dropRun(): void {
    this.runFlow = -1;
    this.runBuf = null;
    this.runN = 0;
  }

  private flushRunOf(i: number): void {
    if (i === this.runFlow) this.flushRun();
  }

  /** A FIN from the guest after its data up to end: taken if nothing before it is missing, else an ACK for what we have. */
  private finFromGuest(i: number, end: number): void {
    this.flushRunOf(i);
    if (end === this.conn.seqFromGuest[i]) this.guestFin(i);
    else this.queueAck(i);
  }

  /** The guest closed its sending side: pass it on once its data is written. */
  private guestFin(i: number): void {
    this.conn.flags[i] |= F_GUEST_FIN | F_SHUT_WR;
    this.conn.seqFromGuest[i] = (this.conn.seqFromGuest[i] + 1) >>> 0;
    sys.shim_shutdown(this.conn.fd[i], SHUT_WR);
    this.conn.deadline[i] = now() + TCP_FIN_TIMEOUT_MS;
    this.queueAck(i);
  }

  /** RST from the guest: reset the host side too. */
  private guestReset(i: number): void {
    sys.shim_abort_close(this.conn.fd[i]);
    this.conn.fd[i] = -1;
    this.free(i);
  }

  // ------------------------------------------------------- from the host

  private onSocket(i: number, ev: number): void {
    if (this.conn.state[i] === FREE) return;
    this.conn.lastActive[i] = this.loop.time();
    if (this.conn.state[i] === CONNECTING) {
      if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        if (sys.shim_sock_error(this.conn.fd[i]) === 0 && !(ev & EPOLLERR)) this.connected(i);
        else this.connectFailed(i);
      }
      return;
    }
    if (ev & EPOLLERR) {
      const err = sys.shim_sock_error(this.conn.fd[i]);
      if (err < 0) return this.hostReset(i);
    }
    if (this.conn.state[i] === SYN_TO_GUEST) {
      if (ev & EPOLLHUP) this.hostReset(i);
      return;
    }
    if (ev & EPOLLOUT && this.conn.flags[i] & F_OUT_WAIT) this.updateWindowIfOpen(i, true);
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
      this.conn.hostPending[i] = 1;
      this.sendData(i);
    }
    this.maybeClose(i);
  }

  /** Our connect() completed: answer the guest's SYN. */
  private connected(i: number): void {
    this.conn.state[i] = ESTABLISHED;
    this.conn.deadline[i] = now() + TCP_RTO_MS;
    this.conn.retries[i] = 0;
    this.enablePeekOff(i);
    this.loop.mod(this.conn.fd[i], EPOLLIN | EPOLLRDHUP | EPOLLET, Kind.TCP, i);
    this.sendSyn(i, true, this.conn.seqAcked[i]);
    this.conn.seqToGuest[i] = (this.conn.seqToGuest[i] + 1) >>> 0;
    this.conn.seqAcked[i] = this.conn.seqToGuest[i];
    this.conn.synAckPending[i] = 1;
  }

  private connectFailed(i: number): void {
    tcpStats.connectFailed++;
    this.sendRst(i);
    this.closeFlow(i);
  }

  /** Reset or error on the host socket: reset the guest side. */
  private hostReset(i: number): void {
    this.sendRst(i);
    this.closeFlow(i);
  }

  /** Send host data to the guest, up to its window, in MSS-sized segments. */
  private sendData(i: number): void {
    if (this.conn.state[i] !== ESTABLISHED || this.conn.flags[i] & F_FIN_SENT) return;
    this.discardAcked(i);
    const v6 = (this.conn.flags[i] & F_V6) !== 0;
    const hdr = v6 ? ETH_IP6_TCP : ETH_IP4_TCP;
    const mss = this.conn.mss[i];
    const tso = this.sink.tsoMax;
    const seg = tso > mss ? tso - (tso % mss) : mss;
    const stride = hdr + seg + this.sink.frameRoom;
    const maxSeg = framesThatFit(this.sink, stride, tso > mss ? TSO_SEGMENTS : PEEK_SEGMENTS);
    for (;;) {
      const inFlight = w.seqDiff(this.conn.seqToGuest[i], this.conn.seqAcked[i]);
      const wnd = this.conn.guestWnd[i] - inFlight;
      if (wnd <= 0) {
        // A closed window: probe it on a timer, in case the update that opens it is lost.
        if (this.conn.deadline[i] === 0) this.conn.deadline[i] = this.loop.time() + TCP_RTO_MS;
        return;
      }
      const nseg = Math.min(maxSeg, Math.ceil(wnd / seg));
      let total = Math.min(wnd, nseg * seg);
      const skip = this.peekOff ? 0 : inFlight;
      // straight into the guest's buffers where the sink can (vhost-user), else into frames of the sink's buffer
      const inPlace = this.sink.reserveInPlace ? this.sink.reserveInPlace(hdr, seg, nseg, total) : -1;
      if (inPlace === 0) return;
      let base = -1;
      let got: number;
      if (inPlace > 0) {
        const f = this.sink.inPlace!;
        total = inPlace;
        got = sys.shim_tcp_peek_iov(this.conn.fd[i], f.pieceAddr, f.pieceLen, f.pieces, skip);
      } else {
        base = this.sink.alloc(nseg * stride, nseg);
        if (base < 0) return;
        got = sys.shim_tcp_peek(this.conn.fd[i], this.sink.buf, base + hdr, stride, seg, nseg, total, skip);
      }
      if (got === 0) return this.hostEof(i);
      if (got < 0) {
        if (got === -EAGAIN) this.conn.hostPending[i] = 0;
        else this.hostReset(i);
        return;
      }
      if (inPlace > 0) this.emitInPlace(i, hdr, got);
      else this.emitSegments(i, base, stride, hdr, seg, got);
      if (this.conn.deadline[i] === 0) this.conn.deadline[i] = this.loop.time() + TCP_RTO_MS;
      if (got < total) return;
    }
  }

  /**
   * Headers for the got bytes peeked into frames laid out in the guest's own
   * receive buffers (sink.inPlace, src/tap/vu-rx.ts): frame 0's written here,
   * the others' and the checksums (whole, or partial for the guest's
   * offload) by the shim (shim_tcp_frames_at), as emitPlainSegments does in
   * the sink's buffer; then the sink gives them to the guest.
   */
  private emitInPlace(i: number, hdr: number, got: number): void {
    this.flushRunOf(i);
    const f = this.sink.inPlace!;
    const v6 = (this.conn.flags[i] & F_V6) !== 0;
    const n = f.fit(got);
    const seq = this.conn.seqToGuest[i];
    const flags = w.TCP_ACK_FLAG | (n === 1 ? w.TCP_PSH : 0);
    const wnd = this.windowToGuest(i);
    this.writeSegment(i, f.headOff, flags, seq, this.conn.seqFromGuest[i], wnd, 0, f.plen[0]!, true, f.headView);
    const l4 = hdr - w.TCP_HLEN;
    sys.shim_tcp_frames_at(
      f.at,
      f.plen,
      f.pieceFirst,
      f.pieceAddr,
      f.pieceLen,
      n,
      w.ETH_HLEN,
      l4,
      hdr,
      this.sink.csumOffload ? 0 : 1,
      v6 ? 1 : 0,
    );
    this.sink.commitInPlace!(n, l4, w.TCP_CSUM);
    this.conn.seqToGuest[i] = (seq + got) >>> 0;
    this.clearAck(i);
  }

  /**
   * Headers for the got bytes peeked into frames of seg bytes at base,
   * base+stride... With offloads (the tap), a frame longer than the MSS is a
   * super-frame that the namespace's kernel cuts into MSS-sized segments, and
   * no frame needs its checksum computed here; without, emitPlainSegments.
   */
  private emitSegments(i: number, base: number, stride: number, hdr: number, seg: number, got: number): void {
    this.flushRunOf(i);
    const ack = this.conn.seqFromGuest[i];
    const wnd = this.windowToGuest(i);
    const v6 = (this.conn.flags[i] & F_V6) !== 0;
    const mss = this.conn.mss[i];
    if (this.sink.tsoMax <= mss) return this.emitPlainSegments(i, base, stride, hdr, seg, got, ack, wnd, v6);
    for (let k = 0, left = got; left > 0; k++) {
      const len = Math.min(left, seg);
      const off = base + k * stride;
      const flags = w.TCP_ACK_FLAG | (left === len ? w.TCP_PSH : 0);
      this.writeSegment(i, off, flags, this.conn.seqToGuest[i], ack, wnd, 0, len, true);
      this.sink.commit(off, hdr + len);
      this.sink.markTso!(off, off + hdr - w.TCP_HLEN, len > mss ? mss : 0, v6);
      this.conn.seqToGuest[i] = (this.conn.seqToGuest[i] + len) >>> 0;
      left -= len;
    }
    this.clearAck(i);
  }

  /**
   * emitSegments for a sink without segmentation offload (the passt socket,
   * a tap with offloads off): every frame is one segment with full
   * checksums. Frame 0's headers are written here; the shim copies them to
   * the other frames, adjusts sequence numbers and lengths, and computes the
   * checksums (shim_tcp_segments), one FFI call for the whole peek.
   */
  private emitPlainSegments(
    i: number,
    base: number,
    stride: number,
    hdr: number,
    seg: number,
    got: number,
    ack: number,
    wnd: number,
    v6: boolean,
  ): void {
    const b = this.sink.buf;
    const seq = this.conn.seqToGuest[i];
    const len0 = Math.min(got, seg);
    this.writeSegment(i, base, w.TCP_ACK_FLAG | (got === len0 ? w.TCP_PSH : 0), seq, ack, wnd, 0, len0, true);
    sys.shim_tcp_segments(b, base, stride, w.ETH_HLEN, hdr - w.TCP_HLEN, hdr, seg, got, v6 ? 1 : 0);
    for (let k = 0, left = got; left > 0; k++) {
      const len = Math.min(left, seg);
      this.sink.commit(base + k * stride, hdr + len);
      left -= len;
    }
    this.conn.seqToGuest[i] = (seq + got) >>> 0;
    this.clearAck(i);
  }

  /** End of stream from the host: FIN to the guest (all data is sent by now). */
  private hostEof(i: number): void {
    this.conn.flags[i] |= F_HOST_EOF | F_FIN_SENT;
    this.flushRunOf(i);
    const off = this.sink.alloc(ETH_IP6_TCP);
    if (off < 0) return;
    const len = this.writeSegment(
      i,
      off,
      w.TCP_FIN | w.TCP_ACK_FLAG,
      this.conn.seqToGuest[i],
      this.conn.seqFromGuest[i],
      this.windowToGuest(i),
      0,
      0,
    );
    this.sink.commit(off, len);
    this.conn.seqToGuest[i] = (this.conn.seqToGuest[i] + 1) >>> 0;
    this.conn.deadline[i] = now() + TCP_RTO_MS;
    this.clearAck(i);
    this.maybeClose(i);
  }

  // ---------------------------------------------------------- segments out

  /**
   * Write one segment for flow i at b[off] (Ethernet header first; b: the
   * sink's buffer unless given): flags, seq, ack, window, optLen bytes of SYN
   * options, payload of len bytes already in place after the headers, with a
   * partial (pseudo-header) checksum or a whole one (only in the sink's
   * buffer). Returns the frame length.
   */
  private writeSegment(
    i: number,
    off: number,
    flags: number,
    seq: number,
    ack: number,
    wnd: number,
    optLen: number,
    len: number,
    partial = false,
    b: Uint8Array = this.sink.buf,
  ): number {
    const v6 = (this.conn.flags[i] & F_V6) !== 0;
    const ip = off + w.ETH_HLEN;
    const l4 = ip + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    const l4len = w.TCP_HLEN + optLen + len;
    const ft = this.flows;
    const s = this.tapSide(i);
    const r = 16 * s;
    w.writeEth(b, off, this.guest.mac, this.cfg.ourMac, v6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
    if (v6) w.writeIpv6At(b, ip, ft.oaddr, r, ft.eaddr, r, w.IPPROTO_TCP, l4len, 64);
    else w.writeIpv4(b, ip, w.rd32(ft.oaddr, r), w.rd32(ft.eaddr, r), w.IPPROTO_TCP, l4len, 64);
    w.writeTcp(b, l4, ft.oport[s]!, ft.eport[s]!, seq, ack, flags, wnd, optLen);
    if (optLen) {
      const o = w.writeTcpOptMss(b, l4 + w.TCP_HLEN, this.maxMss(v6));
      w.writeTcpOptWscale(b, o, OUR_WSCALE);
    }
    if (partial) this.setPseudoChecksum(b, ip, l4, l4len, v6);
    else this.setChecksum(b, ip, l4, l4len, v6);
    return l4 - off + l4len;
  }

  /** TCP checksum: pseudo-header and header in TypeScript, the payload in C. */
  private setChecksum(b: Uint8Array, ip: number, l4: number, l4len: number, v6: boolean): void {
    b[l4 + w.TCP_CSUM] = 0;
    b[l4 + w.TCP_CSUM + 1] = 0;
    let sum = v6 ? w.pseudoSum6(b, ip, w.IPPROTO_TCP, l4len) : w.pseudoSum4(b, ip, w.IPPROTO_TCP, l4len);
    sum = sys.shim_csum((this.bufBase + l4) as Pointer, l4len, sum % 0xffff);
    const cs = w.csumFold(sum);
    b[l4 + w.TCP_CSUM] = cs >>> 8;
    b[l4 + w.TCP_CSUM + 1] = cs & 255;
  }

  /** Partial checksum for offload: the folded pseudo-header sum, not complemented. */
  private setPseudoChecksum(b: Uint8Array, ip: number, l4: number, l4len: number, v6: boolean): void {
    let sum = v6 ? w.pseudoSum6(b, ip, w.IPPROTO_TCP, l4len) : w.pseudoSum4(b, ip, w.IPPROTO_TCP, l4len);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    b[l4 + w.TCP_CSUM] = sum >>> 8;
    b[l4 + w.TCP_CSUM + 1] = sum & 255;
  }

  /** SYN (host opened) or SYN-ACK (guest opened) to the guest, with options, from our initial sequence number isn. */
  private sendSyn(i: number, withAck: boolean, isn: number): void {
    const off = this.sink.alloc(ETH_IP6_TCP + SYN_OPT_LEN);
    if (off < 0) return;
    const flags = w.TCP_SYN | (withAck ? w.TCP_ACK_FLAG : 0);
    const ack = withAck ? this.conn.seqFromGuest[i] : 0;
    const len = this.writeSegment(i, off, flags, isn, ack, 65535, SYN_OPT_LEN, 0);
    this.sink.commit(off, len);
  }

  /**
   * Window we advertise: free space of the socket's send buffer, scaled.
   * The socket is asked (two system calls) only when our lower bound of that
   * space (sndSpace: its last answer less what we wrote since) is small or
   * has fallen below half of that answer: a bulk transfer from the guest
   * asks about once per half buffer written, not on every ACK. The bound
   * falls by what each write took while the ACK number rises by as much, so
   * the right edge of the window stays where the last answer put it.
   */
  private windowToGuest(i: number): number {
    let space = this.conn.sndSpace[i];
    if (space < SPACE_ASK_BELOW || space < this.conn.sndSpaceAsked[i] / 2) space = this.askSndSpace(i);
    const wnd = Math.min(space >>> this.conn.ourWs[i], 65535);
    this.conn.lastWndSent[i] = wnd;
    // A window smaller than a full segment stalls a sender that avoids silly
    // windows: ask to hear when the socket drains, and update the window then.
    if (space < WINDOW_UPDATE_BELOW) this.waitWritable(i);
    return wnd;
  }

  /**
   * After EPOLLOUT: true when the window we would advertise now is wider
   * than the last one the guest heard, or no longer small. The kernel calls
   * a socket writable well before our estimate of its free space grows
   * (it counts a third of the buffer free as writable), and re-arming
   * EPOLLOUT on a writable socket reports it at once: without this check,
   * a peer that does not read kept us in a loop of EPOLLOUT, window
   * updates of the same size and re-arming, at 100% CPU.
   */
  private windowOpens(i: number): boolean {
    const space = this.askSndSpace(i);
    return space >= WINDOW_UPDATE_BELOW || space >>> this.conn.ourWs[i] > this.conn.lastWndSent[i];
  }

  /**
   * Waiting for the socket to drain (F_OUT_WAIT): once the window opens,
   * stop watching for output and tell the guest. Asked on EPOLLOUT, and on
   * every tick.
   *
   * The kernel's EPOLLOUT is an edge, and the one that comes at once when
   * we start watching a socket it already calls writable (a third of its
   * buffer free, where our window counts half of it) may be all we get: it
   * wakes writers again only after a write found the buffer full, which our
   * window keeps the guest from causing. So an EPOLLOUT that finds the
   * window closed re-arms the socket (the next turn of the loop asks
   * again), up to OUT_SPINS_MAX times in a row, which covers a peer that
   * reads as fast as we write; past that (a peer that stopped reading:
   * re-arming for ever kept us at 100% CPU) the tick asks every TICK_MS.
   */
  private updateWindowIfOpen(i: number, onEvent: boolean): void {
    if (!this.windowOpens(i)) {
      if (onEvent && this.conn.outSpins[i] < OUT_SPINS_MAX) {
        this.conn.outSpins[i]++;
        this.loop.mod(this.conn.fd[i], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, Kind.TCP, i);
      }
      return;
    }
    this.conn.outSpins[i] = 0;
    this.conn.flags[i] &= ~F_OUT_WAIT;
    this.loop.mod(this.conn.fd[i], EPOLLIN | EPOLLRDHUP | EPOLLET, Kind.TCP, i);
    this.queueAck(i);
  }

  /** The socket's free send space now (sndSpace, sndSpaceAsked updated). */
  private askSndSpace(i: number): number {
    const space = Math.max(sys.shim_tcp_sndspace(this.conn.fd[i]), 0);
    this.conn.sndSpace[i] = space;
    this.conn.sndSpaceAsked[i] = space;
    return space;
  }

  private waitWritable(i: number): void {
    if (this.conn.flags[i] & F_OUT_WAIT) return;
    this.conn.flags[i] |= F_OUT_WAIT;
    this.loop.mod(this.conn.fd[i], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, Kind.TCP, i);
  }

  /** A pure ACK to the guest, now. */
  private ackNow(i: number): void {
    this.flushRunOf(i);
    const off = this.sink.alloc(ETH_IP6_TCP);
    if (off < 0) return;
    const len = this.writeSegment(i, off, w.TCP_ACK_FLAG, this.conn.seqToGuest[i], this.conn.seqFromGuest[i], this.windowToGuest(i), 0, 0);
    this.sink.commit(off, len);
    this.clearAck(i);
  }

  private queueAck(i: number): void {
    if (this.conn.flags[i] & F_ACK_PENDING) return;
    this.conn.flags[i] |= F_ACK_PENDING;
    this.ackList[this.nAck++] = i;
  }

  private clearAck(i: number): void {
    this.conn.flags[i] &= ~F_ACK_PENDING;
  }

  /** Send the ACKs queued during this batch (one per flow); run before the tap flush. */
  flushAcks(): void {
    for (let k = 0; k < this.nAck; k++) {
      const i = this.ackList[k];
      if (this.conn.state[i] !== FREE && this.conn.flags[i] & F_ACK_PENDING) this.ackNow(i);
    }
    this.nAck = 0;
  }

  /** RST to the guest for flow i. */
  private sendRst(i: number): void {
    const off = this.sink.alloc(ETH_IP6_TCP);
    if (off < 0) return;
    const len = this.writeSegment(i, off, w.TCP_RST | w.TCP_ACK_FLAG, this.conn.seqToGuest[i], this.conn.seqFromGuest[i], 0, 0, 0);
    this.sink.commit(off, len);
    tcpStats.rstSent++;
  }

  /** RST for a segment that matches no flow (RFC 9293 3.10.7.1). */
  private rstUnknown(b: Uint8Array, ip: number, l4: number, dlen: number, v6: boolean): void {
    const off = this.sink.alloc(ETH_IP6_TCP);
    if (off < 0) return;
    const o = this.sink.buf;
    const fl = w.tcpFlags(b, l4);
    const hasAck = (fl & w.TCP_ACK_FLAG) !== 0;
    const seq = hasAck ? w.tcpAck(b, l4) : 0;
    const segLen = dlen + (fl & w.TCP_SYN ? 1 : 0) + (fl & w.TCP_FIN ? 1 : 0);
    const ack = (w.tcpSeq(b, l4) + segLen) >>> 0;
    const oip = off + w.ETH_HLEN;
    const l4o = oip + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    w.writeEth(o, off, this.guest.mac, this.cfg.ourMac, v6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
    if (v6) w.writeIpv6At(o, oip, b, ip + w.IP6_DST, b, ip + w.IP6_SRC, w.IPPROTO_TCP, w.TCP_HLEN, 64);
    else w.writeIpv4(o, oip, w.ipv4Dst(b, ip), w.ipv4Src(b, ip), w.IPPROTO_TCP, w.TCP_HLEN, 64);
    const flags = hasAck ? w.TCP_RST : w.TCP_RST | w.TCP_ACK_FLAG;
    w.writeTcp(o, l4o, w.tcpDstPort(b, l4), w.tcpSrcPort(b, l4), seq, hasAck ? 0 : ack, flags, 0, 0);
    this.setChecksum(o, oip, l4o, w.TCP_HLEN, v6);
    this.sink.commit(off, l4o - off + w.TCP_HLEN);
    tcpStats.rstSent++;
  }

  // ---------------------------------------------------------- retransmission

  /** Go back to the last acknowledged byte and send again. */
  private rewind(i: number): void {
    if (this.conn.flags[i] & F_FIN_SENT && !(this.conn.flags[i] & F_FIN_ACKED)) {
      this.conn.flags[i] &= ~(F_FIN_SENT | F_HOST_EOF);
    }
    this.conn.seqMax[i] = this.sentMax(i);
    this.conn.seqToGuest[i] = this.conn.seqAcked[i];
    this.conn.dupAcks[i] = 0;
    this.conn.hostPending[i] = 1;
    this.discardAcked(i);
    if (this.peekOff) sys.shim_setsockopt_int(this.conn.fd[i], SOL_SOCKET, SO_PEEK_OFF, 0);
    this.sendData(i);
  }

  /** Ask the kernel to keep a peek offset for this socket; fall back to skipping once if it can't. */
  private enablePeekOff(i: number): void {
    if (!this.peekOff) return;
    if (sys.shim_setsockopt_int(this.conn.fd[i], SOL_SOCKET, SO_PEEK_OFF, 0) < 0) {
      this.peekOff = false;
      log.debug("tcp: SO_PEEK_OFF not available, peeking past sent data instead");
    }
  }

  /** The timer walk (src/flows/flow.ts), every TICK_MS: flow i's deadline, or its idle timeout. */
  private onTimer(i: number, t: number): void {
    if (this.conn.flags[i] & F_OUT_WAIT) this.updateWindowIfOpen(i, false);
    const d = this.conn.deadline[i];
    if (d !== 0 && t >= d) this.timeout(i, t);
    else if (t - this.conn.lastActive[i] > TCP_IDLE_TIMEOUT_MS) this.hostReset(i);
  }

  private timeout(i: number, t: number): void {
    const st = this.conn.state[i];
    if (st === CONNECTING || st === SYN_TO_GUEST) {
      if (st === SYN_TO_GUEST && this.conn.retries[i] < SYN_RETRIES && t < this.conn.lastActive[i] + TCP_HANDSHAKE_TIMEOUT_MS) {
        this.conn.retries[i]++;
        this.conn.seqToGuest[i] = this.conn.seqAcked[i];
        this.sendSyn(i, false, this.conn.seqAcked[i]);
        this.conn.seqToGuest[i] = (this.conn.seqToGuest[i] + 1) >>> 0;
        this.conn.deadline[i] = t + TCP_RTO_MS * 2 ** this.conn.retries[i];
        return;
      }
      return this.connectFailed(i);
    }
    if (this.conn.flags[i] & (F_GUEST_FIN | F_FIN_SENT) && t - this.conn.lastActive[i] > TCP_FIN_TIMEOUT_MS) return this.hostReset(i);
    if (this.conn.synAckPending[i] && t - this.conn.openedAt[i] > TCP_HANDSHAKE_TIMEOUT_MS) return this.hostReset(i);
    if (this.conn.synAckPending[i] && this.conn.retries[i] < TCP_MAX_RETRIES) {
      this.conn.retries[i]++;
      this.sendSyn(i, true, (this.conn.seqAcked[i] - 1) >>> 0);
      this.conn.deadline[i] = t + TCP_RTO_MS * 2 ** Math.min(this.conn.retries[i], 4);
      return;
    }
    if (this.conn.seqToGuest[i] === this.conn.seqAcked[i]) {
      if (this.conn.hostPending[i] && this.conn.guestWnd[i] === 0 && !(this.conn.flags[i] & F_FIN_SENT)) return this.probeWindow(i, t);
      this.conn.deadline[i] = this.conn.flags[i] & (F_GUEST_FIN | F_FIN_SENT) ? t + TCP_FIN_TIMEOUT_MS : 0;
      return;
    }
    if (++this.conn.retries[i] > TCP_MAX_RETRIES) return this.hostReset(i);
    tcpStats.timeoutRetrans++;
    this.conn.deadline[i] = t + TCP_RTO_MS * 2 ** Math.min(this.conn.retries[i], 4);
    this.rewind(i);
  }

  /**
   * Zero-window probe (RFC 9293 3.8.6.1): an ACK for the byte before our
   * next one makes the guest answer with its current window. Repeated with
   * backoff for as long as the window stays closed.
   */
  private probeWindow(i: number, t: number): void {
    this.flushRunOf(i);
    const off = this.sink.alloc(ETH_IP6_TCP);
    if (off >= 0) {
      const seq = (this.conn.seqToGuest[i] - 1) >>> 0;
      const len = this.writeSegment(i, off, w.TCP_ACK_FLAG, seq, this.conn.seqFromGuest[i], this.windowToGuest(i), 0, 0);
      this.sink.commit(off, len);
    }
    if (this.conn.retries[i] < 4) this.conn.retries[i]++;
    this.conn.deadline[i] = t + TCP_RTO_MS * 2 ** this.conn.retries[i];
  }

  // ---------------------------------------------------------- flow table

  /** Free the flow when both directions are closed and our FIN is acknowledged. */
  private maybeClose(i: number): void {
    const f = this.conn.flags[i];
    if (this.conn.state[i] === FREE) return;
    if (!(f & F_GUEST_FIN && f & F_FIN_ACKED)) return;
    // The ACK of the guest's FIN may still be queued for the end of the batch,
    // which skips freed flows: send it now, or the guest stays in LAST-ACK.
    if (f & F_ACK_PENDING) this.ackNow(i);
    this.closeFlow(i);
  }

  private closeFlow(i: number): void {
    if (this.conn.fd[i] >= 0) {
      this.loop.del(this.conn.fd[i]);
      sys.shim_close(this.conn.fd[i]);
      this.conn.fd[i] = -1;
    }
    this.free(i);
  }

  /** Look a flow up by its 4-tuple as the guest sees it (its tap side); -1 if none. */
  private lookup(v6: boolean, ga: Uint8Array, gOff: number, gport: number, ra: Uint8Array, rOff: number, rport: number): number {
    const sidx = this.flows.lookup(FT_TCP, PIF_TAP, v6, ga, gOff, gport, ra, rOff, rport);
    return sidx < 0 ? -1 : flowOf(sidx);
  }

  /** A NEW flow from the table, -1 when TCP is at TCP_MAX_CONNS or the table is full. */
  private newFlow(): number {
    return this.count() >= TCP_MAX_CONNS ? -1 : this.flows.alloc();
  }

  /**
   * New flow for a guest-initiated connection (addresses in a frame): its
   * tap side (side 0) the guest and the remote as the guest sent them, its
   * host side the destination as translated (left in this.sa). -1 when TCP
   * or the flow table is full.
   */
  private allocFrom(
    v6: boolean,
    ga: Uint8Array,
    gOff: number,
    gport: number,
    ra: Uint8Array,
    rOff: number,
    rport: number,
    t: number,
  ): number {
    const ft = this.flows;
    const i = this.newFlow();
    if (i < 0) return -1;
    ft.initiate(i, PIF_TAP, v6, ga, gOff, gport, ra, rOff, rport);
    this.destSockaddr(2 * i, v6);
    ft.target(i, PIF_HOST, this.sa, v6 ? SA6_ADDR : SA4_ADDR, saPort(this.sa), null, 0, 0);
    this.initFlow(i, v6, 2 * i, t);
    return i;
  }

  /**
   * New flow for a host-initiated connection, its peer in this.sa, accepted
   * on our listenPort: that is side 0; side 1, on the tap, the guest's
   * address (guestA, null: its IPv4 one) and port gport, and the peer as the
   * guest sees it (remote, rport).
   */
  private alloc(
    v6: boolean,
    guestA: Uint8Array | null,
    gport: number,
    remote: Uint8Array,
    rport: number,
    listenPort: number,
    t: number,
  ): number {
    const ft = this.flows;
    const i = this.newFlow();
    if (i < 0) return -1;
    ft.initiate(i, PIF_HOST, v6, this.sa, v6 ? SA6_ADDR : SA4_ADDR, saPort(this.sa), null, 0, listenPort);
    if (guestA === null) w.wr32(this.guest4, 0, this.cfg.ip4!.addr);
    ft.target(i, PIF_TAP, guestA ?? this.guest4, 0, gport, remote, 0, rport);
    this.initFlow(i, v6, 2 * i + 1, t);
    return i;
  }

  /** Flow i (TGT, tap side tap) becomes a TCP connection: in the index by its tap side, its own fields reset, ACTIVE. */
  private initFlow(i: number, v6: boolean, tap: number, t: number): void {
    const ft = this.flows;
    ft.setType(i, FT_TCP);
    ft.hashInsert(tap);
    this.conn.fd[i] = -1;
    this.conn.flags[i] = v6 ? F_V6 : 0;
    this.conn.state[i] = CONNECTING;
    this.conn.dupAcks[i] = 0;
    this.conn.recovering[i] = 0;
    this.conn.outSpins[i] = 0;
    this.conn.sndSpace[i] = 0;
    this.conn.sndSpaceAsked[i] = 0;
    this.conn.hostPending[i] = 1;
    this.conn.retries[i] = 0;
    this.conn.deadline[i] = 0;
    this.conn.synAckPending[i] = 0;
    this.conn.unDiscarded[i] = 0;
    this.conn.lastActive[i] = t;
    ft.activate(i);
  }

  private free(i: number): void {
    this.flows.free(i);
    this.halfOpenDone(i);
    this.conn.state[i] = FREE;
    this.conn.flags[i] = 0;
    this.conn.unDiscarded[i] = 0;
    if (i === this.runFlow) this.dropRun();
    for (let h = 0; h < this.nHeld * HELD_FIELDS; h += HELD_FIELDS) if (this.held[h] === i) this.held[h] = NO_FLOW;
    tcpStats.closed++;
    if (debugOn) log.debug(`tcp: flow ${i} closed, ${this.count()} open`);
  }

  /** Largest payload per segment to the guest, from the tap MTU. */
  private maxMss(v6: boolean): number {
    return Math.min(this.cfg.mtu, 65535) - (v6 ? w.IPV6_HLEN : w.IPV4_HLEN) - w.TCP_HLEN;
  }

  /**
   * Initial sequence number (RFC 6528's idea): an unkeyed hash of the
   * 4-tuple, XORed with a secret drawn at start, plus a 4 µs clock. Unguessable, and growing for a given tuple, so that a guest
   * still holding an earlier connection of the same tuple in TIME_WAIT takes
   * the new SYN (a random ISN below the old sequence would be refused).
   */
  private setIsn(i: number): void {
    const alen = this.conn.flags[i] & F_V6 ? 16 : 4;
    const ft = this.flows;
    const s = this.tapSide(i);
    const h = flowKeyHash(ft.eaddr, 16 * s, ft.eport[s]!, ft.oaddr, 16 * s, ft.oport[s]!, alen);
    const isn = (h ^ ISN_SECRET) + Math.floor(now() * ISN_TICKS_PER_MS);
    this.conn.seqAcked[i] = isn >>> 0;
    this.conn.seqToGuest[i] = isn >>> 0;
    this.conn.seqMax[i] = isn >>> 0;
  }

  /**
   * Drop every connection at once (passt: the guest went away). Host sockets
   * are closed with SO_LINGER 0, so their peers see a reset; listeners are
   * not ours and stay.
   */
  reset(): void {
    const ft = this.flows;
    for (let k = ft.inUse() - 1; k >= 0; k--) {
      const i = ft.usedAt(k);
      if (!ft.is(i, FT_TCP)) continue;
      if (this.conn.fd[i] >= 0) {
        this.loop.del(this.conn.fd[i]);
        sys.shim_abort_close(this.conn.fd[i]);
        this.conn.fd[i] = -1;
      }
      this.free(i);
    }
    this.nAck = 0;
    this.nSend = 0;
    this.dropRun();
    this.nHeld = 0;
    this.heldBuf = null;
  }

  /**
   * The sink has room again after refusing frames (passt: the guest's socket
   * was full). A flow whose frames were refused left its data in the socket,
   * and its edge-triggered wake-up is spent: give every connection its turn.
   */
  resume(): void {
    const ft = this.flows;
    for (let k = ft.inUse() - 1; k >= 0; k--) {
      const i = ft.usedAt(k);
      if (ft.is(i, FT_TCP) && this.conn.state[i] === ESTABLISHED) this.sendData(i);
    }
  }
}
