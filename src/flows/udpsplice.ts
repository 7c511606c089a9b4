/**
 * pasta's local path for UDP: datagrams between the loopbacks of the two
 * namespaces, socket to socket, never through Layer 2.
 *
 * Theory of operation
 * -------------------
 * A datagram that arrives on a forwarded port from a loopback sender (on the
 * host for -u, where the socket is shared with the tap path; in the namespace
 * for -U, where we bind the namespace's loopback) belongs to a spliced flow,
 * a flow of the flow table (src/flows/flow.ts, type FT_UDP_SPLICE) whose
 * initiating side, the one in the index, is (the receiving socket's side,
 * the sender's address and port, the receiving socket's address and port),
 * and whose target side is the other side's loopback at the target port.
 * The flow owns one socket on the
 * other side, connected to that side's loopback at the target port: the
 * datagram leaves through it, and whatever comes back on it is sent to the
 * original sender from the forwarded port, through the receiving socket. So a
 * client on either loopback talks to a server on the other as if both were
 * local, replies included.
 *
 * Datagrams move in batches: recvmmsg() reads up to SPLICE_BATCH at once, and
 * the datagrams of a batch that go through the same socket leave with one
 * sendmmsg() (in their order; interleaved senders do not split them). The
 * receiving sockets get LISTEN_RCVBUF, so that bursts wait while we are busy.
 *
 * Large datagrams are read one at a time: the batch buffer has a slot of
 * MAX_DGRAM bytes per datagram, so a batch of large ones writes 2 MiB (more
 * than a core's L2 cache, and resident until the quiet hook gives it back)
 * where one at a time the kernel copies into and out of the same 64 KiB, as
 * upstream's pasta reads its spliced datagrams. Reads take one datagram
 * until the last SPLICE_BATCH datagrams were all shorter than LARGE_DGRAM,
 * then SPLICE_BATCH, until a large one comes again. A stream of large
 * datagrams that starts with a few small ones (iperf3's first datagram) is
 * thus read one at a time from its start.
 *
 * Limits: UDP_SPLICE_MAX flows (beyond that, datagrams of new flows are
 * dropped and counted); a flow idle for UDP_TIMEOUT_MS is closed (by the
 * table's timer walk).
 */
import { Kind } from "../loop/kinds.ts";
import { ptr } from "bun:ffi";
import { EPOLLIN, type Loop } from "../loop/loop.ts";
import { sys } from "../native/ffi.ts";
import { IP6_LOOPBACK } from "../wire/ipv6.ts";
import { SA6_ADDR, sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import { FLOW_MAX, FT_UDP_SPLICE, type FlowTable, flowOf, PIF_HOST, PIF_SPLICE } from "./flow.ts";
import { LISTEN_RCVBUF, UDP_TIMEOUT_MS, type UdpListener } from "./udp.ts";
import { AF_INET, AF_INET6, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET, SO_RCVBUF } from "../native/consts.ts";
import { release, table } from "../loop/arena.ts";

/** Spliced UDP flows at once. */
export const UDP_SPLICE_MAX = 4096;
/** Datagrams per recvmmsg while they are small. */
const SPLICE_BATCH = 32;
const MAX_DGRAM = 65535;
/** A datagram this long makes the next read one of a single datagram (see the theory of operation). */
const LARGE_DGRAM = 16 << 10;
/** Datagrams read from one socket per event at most (the rest wait for the next turn of the loop). */
const READ_BUDGET = 8 * SPLICE_BATCH;

/** flowOf mark of a datagram already sent. */
const DONE = -2;

const LOOPBACK4 = 0x7f000001;
const LOOPBACK6 = IP6_LOOPBACK;

/** Counters, read by the tests (reads: recvmmsg calls that returned datagrams). */
export const udpSpliceStats = { forwarded: 0, replies: 0, full: 0, dropped: 0, reads: 0 };

export class UdpSplice {
  // Per flow (src/flows/flow.ts), set when the flow is made:
  /** The socket the sender used (shared), the socket on the other side (owned). */
  private readonly inFd = table.i32(FLOW_MAX);
  private readonly outFd = table.i32(FLOW_MAX);
  /** The original sender, to send replies back to. */
  private readonly peer = table.u8(FLOW_MAX * 28);
  private readonly lastUse = table.f64(FLOW_MAX);
  private readonly buf = table.u8(SPLICE_BATCH * MAX_DGRAM);
  private readonly addrs = table.u8(SPLICE_BATCH * 28);
  private readonly lens = table.u32(SPLICE_BATCH);
  private readonly offLen = table.u32(SPLICE_BATCH * 2);
  /** per datagram of a batch: its flow (negative: none; DONE: sent) */
  private readonly flowOf = table.i32(SPLICE_BATCH);
  /** Datagrams the next read takes, and small datagrams read since the last large one (see the theory of operation). */
  private batch = 1;
  private smallInRow = 0;

  constructor(
    private readonly loop: Loop,
    private readonly nsfd: number,
    private readonly flows: FlowTable,
  ) {
    loop.on(Kind.UDP_SPLICE, (e) => {
      if (flows.is(e, FT_UDP_SPLICE)) this.onReply(e);
    });
    loop.onQuiet(() => release(this.buf));
    flows.onTimer(FT_UDP_SPLICE, Math.min(5000, UDP_TIMEOUT_MS / 2), (e, t) => this.expire(e, t));
  }

  /** Open flows (for tests and --debug). */
  count(): number {
    return this.flows.count(FT_UDP_SPLICE);
  }

  /**
   * One datagram received on -u socket l from a loopback sender (its
   * sockaddr at addrs[aOff..]), payload p[off..off+len): into the namespace.
   */
  fromHost(l: UdpListener, addrs: Uint8Array, aOff: number, p: Uint8Array, off: number, len: number): void {
    const e = this.flow(l, addrs, aOff, PIF_HOST);
    if (e < 0) return;
    // ptr(p, off): a plain number, where a subarray would be an object per datagram
    if (sys.shim_send(this.outFd[e]!, ptr(p, off), len, 0) < 0) udpSpliceStats.dropped++;
    else udpSpliceStats.forwarded++;
  }

  /**
   * Datagrams are waiting on -U socket l, bound on the namespace's loopback
   * (src/fwd/forward.ts owns it and watches it): to the host's loopback at
   * l.target.
   */
  fromNsListener(l: UdpListener): void {
    for (let budget = READ_BUDGET; budget > 0; ) {
      const want = this.batch;
      const cnt = this.read(l.fd);
      if (cnt <= 0) return;
      this.forwardRuns(l, cnt);
      if (cnt < want) return;
      budget -= cnt;
    }
  }

  /** Read up to this.batch datagrams from fd into buf, addrs and lens; the size of the next read follows them. */
  private read(fd: number): number {
    const cnt = sys.shim_udp_recv_batch(fd, this.buf, 0, MAX_DGRAM, MAX_DGRAM, this.batch, this.addrs, this.lens);
    if (cnt <= 0) return cnt;
    udpSpliceStats.reads++;
    let largest = 0;
    for (let k = 0; k < cnt; k++) largest = Math.max(largest, this.lens[k]!);
    this.smallInRow = largest >= LARGE_DGRAM ? 0 : this.smallInRow + cnt;
    this.batch = this.smallInRow >= SPLICE_BATCH ? SPLICE_BATCH : 1;
    return cnt;
  }

  /** Send datagrams 0..cnt of buf (from senders in addrs) to their flows' sockets, one sendmmsg per socket. */
  private forwardRuns(l: UdpListener, cnt: number): void {
    for (let k = 0; k < cnt; k++) this.flowOf[k] = this.flow(l, this.addrs, k * 28, PIF_SPLICE);
    const sa = this.outAddr(l.v6, l.target);
    for (let k = 0; k < cnt; k++) {
      const e = this.flowOf[k]!;
      if (e === DONE) continue;
      if (e < 0) {
        udpSpliceStats.dropped++;
        continue;
      }
      let n = 0;
      for (let j = k; j < cnt; j++) {
        if (this.flowOf[j] !== e) continue;
        this.offLen[2 * n] = j * MAX_DGRAM;
        this.offLen[2 * n + 1] = this.lens[j]!;
        this.flowOf[j] = DONE;
        n++;
      }
      this.sendGathered(this.outFd[e]!, n, sa, 0);
    }
  }

  /** sendmmsg the n datagrams listed in offLen through fd, each to the sockaddr in sa. */
  private sendGathered(fd: number, n: number, sa: Uint8Array, saOff: number): void {
    for (let j = 0; j < n; j++) for (let b = 0; b < 28; b++) this.addrs[j * 28 + b] = sa[saOff + b]!;
    const sent = sys.shim_udp_send_batch(fd, this.buf, this.offLen, n, this.addrs);
    udpSpliceStats.forwarded += Math.max(sent, 0);
    if (sent < n) udpSpliceStats.dropped += n - Math.max(sent, 0);
  }

  private readonly target4 = new Uint8Array(28);
  private readonly target6 = new Uint8Array(28);

  /** The loopback sockaddr of the other side at port (host side: where -U goes). */
  private outAddr(v6: boolean, port: number): Uint8Array {
    if (v6) {
      sockaddr6(this.target6, LOOPBACK6, 0, port, 0);
      return this.target6;
    }
    sockaddr4(this.target4, LOOPBACK4, port);
    return this.target4;
  }

  /** Replies on flow e's socket: back to the original sender through the receiving socket. */
  private onReply(e: number): void {
    const fd = this.outFd[e]!;
    this.lastUse[e] = this.loop.time();
    for (let budget = READ_BUDGET; budget > 0; ) {
      const want = this.batch;
      const cnt = this.read(fd);
      if (cnt <= 0) return;
      for (let j = 0; j < cnt; j++) {
        this.offLen[2 * j] = j * MAX_DGRAM;
        this.offLen[2 * j + 1] = this.lens[j]!;
      }
      this.sendGathered(this.inFd[e]!, cnt, this.peer, e * 28);
      udpSpliceStats.replies += cnt;
      if (cnt < want) return;
      budget -= cnt;
    }
  }

  /**
   * The flow of the datagram from the sender at addrs[aOff..] to socket l
   * (on side `from`: PIF_HOST for -u, PIF_SPLICE for -U), made when missing
   * with a socket on the other side connected to its loopback at l.target.
   */
  private flow(l: UdpListener, addrs: Uint8Array, aOff: number, from: number): number {
    const v6 = l.v6;
    const ft = this.flows;
    const aAt = aOff + (v6 ? SA6_ADDR : 4);
    const sport = (addrs[aOff + 2]! << 8) | addrs[aOff + 3]!;
    const sidx = ft.lookup(FT_UDP_SPLICE, from, v6, addrs, aAt, sport, l.addr, 0, l.port);
    if (sidx >= 0) {
      const found = flowOf(sidx);
      this.lastUse[found] = this.loop.time();
      return found;
    }
    if (this.count() >= UDP_SPLICE_MAX) {
      udpSpliceStats.full++;
      return -1;
    }
    const af = v6 ? AF_INET6 : AF_INET;
    const fd =
      from === PIF_HOST
        ? sys.shim_ns_socket(this.nsfd, af, SOCK_DGRAM | SOCK_NONBLOCK, 0)
        : sys.shim_socket(af, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, LISTEN_RCVBUF);
    const sa = this.outAddr(v6, l.target);
    if (sys.shim_connect(fd, sa, v6 ? 28 : 16) < 0) {
      sys.shim_close(fd);
      return -1;
    }
    const e = ft.alloc();
    if (e < 0) {
      sys.shim_close(fd);
      return -1;
    }
    ft.initiate(e, from, v6, addrs, aAt, sport, l.addr, 0, l.port);
    ft.target(e, from === PIF_HOST ? PIF_SPLICE : PIF_HOST, sa, v6 ? SA6_ADDR : 4, l.target, null, 0, 0);
    ft.setType(e, FT_UDP_SPLICE);
    ft.hashInsert(2 * e);
    this.inFd[e] = l.fd;
    this.outFd[e] = fd;
    for (let b = 0; b < 28; b++) this.peer[e * 28 + b] = addrs[aOff + b]!;
    this.lastUse[e] = this.loop.time();
    this.loop.add(fd, EPOLLIN, Kind.UDP_SPLICE, e);
    ft.activate(e);
    return e;
  }

  /** The timer walk (src/flows/flow.ts): close flow e if idle for UDP_TIMEOUT_MS. */
  private expire(e: number, t: number): void {
    if (t - this.lastUse[e]! > UDP_TIMEOUT_MS) this.closeFlow(e);
  }

  /** Close the flows that receive on socket inFd (about to be closed). */
  dropFlowsOf(inFd: number): void {
    const ft = this.flows;
    for (let k = ft.inUse() - 1; k >= 0; k--) {
      const e = ft.usedAt(k);
      if (ft.is(e, FT_UDP_SPLICE) && this.inFd[e] === inFd) this.closeFlow(e);
    }
  }

  private closeFlow(e: number): void {
    this.loop.del(this.outFd[e]!);
    sys.shim_close(this.outFd[e]!);
    this.outFd[e] = -1;
    this.flows.free(e);
  }
}
