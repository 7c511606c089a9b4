/**
 * pasta's local path: TCP between the loopbacks of the two namespaces,
 * socket to socket with splice(), never through Layer 2.
 *
 * Theory of operation
 * -------------------
 * A connection accepted on one side (on the host from a loopback source, for
 * a -t port; in the namespace, for a -T port) is paired with a socket that
 * connects to the loopback address of the same family on the other side, at
 * the target port. Bytes then move in each direction through a pipe of their
 * own: splice() from the source socket into the pipe, and from the pipe into
 * the destination socket, in the kernel, with no copy through us. The pump
 * (native/shim.c) moves as much as both ends allow and keeps count of what
 * waits in the pipe. The sockets are watched edge-triggered for input and
 * peer shutdown; output only while bytes wait in the pipe towards a socket
 * (or its connect is under way), so that the ACKs of an exchange do not wake
 * us. Input on a socket pumps the direction out of it, output the one into it.
 *
 * End of stream in one direction becomes shutdown(SHUT_WR) on the other socket
 * once the pipe has drained; when both directions are done the connection is
 * closed and its pipes go back to the pool (a pipe with leftover bytes is
 * closed instead). A reset or error on either socket resets (SO_LINGER 0) the
 * other one. A connect that fails resets the accepted socket.
 *
 * Set-up cost: sockets on the namespace side must be made by a thread that
 * enters the namespace; a pool of such sockets, and a pool of pipes, are
 * refilled off the fast path (on a timer, once a first connection was
 * spliced, and after a busy batch of events), so that a new connection costs
 * an accept, a connect and two epoll registrations.
 *
 * Each connection is a flow of the flow table (src/flows/flow.ts, type
 * FT_TCP_SPLICE): side 0 the accepted socket's (its peer, the listening
 * address and port), side 1 the connecting one's (the other side's
 * loopback at the target port). Nothing looks them up: events carry the
 * flow number. This module keeps its sockets, pipes and pump state per
 * flow number.
 *
 * Limits: SPLICE_MAX_CONNS at once; past that an accepted connection is closed
 * at once, without touching the existing ones.
 */
import { Kind } from "../loop/kinds.ts";
import { ptr, type Pointer } from "bun:ffi";
import { log } from "../log.ts";
import { EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, type Loop } from "../loop/loop.ts";
import { sys } from "../native/ffi.ts";
import { IP6_LOOPBACK } from "../wire/ipv6.ts";
import { SA6_ADDR, saPort, sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import { FLOW_MAX, FT_TCP_SPLICE, type FlowTable, PIF_HOST, PIF_SPLICE } from "./flow.ts";
import { AF_INET, AF_INET6, EINPROGRESS, IPPROTO_TCP, SHUT_WR, SOCK_NONBLOCK, SOCK_STREAM, TCP_QUICKACK } from "../native/consts.ts";
import { table } from "../loop/arena.ts";

/** Spliced connections at once (each holds 2 sockets and 4 pipe ends). */
export const SPLICE_MAX_CONNS = 1 << 14;
/**
 * Bytes we ask each pipe to hold, as the original: 8 MiB where allowed (with
 * CAP_SYS_RESOURCE), else the largest size the kernel takes (unprivileged:
 * /proc/sys/fs/pipe-max-size, 1 MiB by default). Larger pipes mean fewer,
 * larger splices per wake-up.
 */
const MAX_PIPE_SIZE = 8 << 20;
/** Ready pipes and namespace sockets kept per pool; below half, a pool is refilled after the current batch of events. */
const POOL_TARGET = 32;
const POOL_REFILL_MS = 200;

/** What every spliced socket is watched for (plus EPOLLOUT when needed). */
const WATCH = EPOLLIN | EPOLLRDHUP | EPOLLET;

const LOOPBACK6 = IP6_LOOPBACK;

// Connection state.
const FREE = 0;
const CONNECTING = 1;
const UP = 2;

export const spliceStats = { opened: 0, closed: 0, refused: 0, failed: 0, bytes: 0 };

/** Which side a fresh connecting socket must live in. */
export type Side = "host" | "ns";

/** What join needs of the listening socket a connection was accepted on (src/fwd/forward.ts's listener). */
export interface AcceptedOn {
  v6: boolean;
  /** The address it is bound to (4 or 16 bytes). */
  addr: Uint8Array;
  /** Its port. */
  port: number;
  /** The port to connect to on the other side. */
  target: number;
}

export class SpliceFlows {
  // Per flow c (src/flows/flow.ts), set when the flow is made:
  private readonly state = table.u8(FLOW_MAX);
  /** fd[2c] accepted socket, fd[2c+1] the socket we connected. */
  private readonly fd = table.i32(FLOW_MAX * 2);
  /** Pipes: pipe[4c..4c+1] carry accepted → connected (read, write); [4c+2..4c+3] the other way. */
  private readonly pipe = table.i32(FLOW_MAX * 4);
  /** Pump state per direction (see shim_splice_pump): [pending, eof, error, size]. */
  private readonly st = table.i32(FLOW_MAX * 8);
  private readonly stBase = ptr(this.st);
  /** 1 once shutdown(SHUT_WR) was passed on for the direction. */
  private readonly shut = table.u8(FLOW_MAX * 2);
  /** per socket (2 * c + side): 1 while its registration includes EPOLLOUT */
  private readonly outOn = table.u8(FLOW_MAX * 2);
  /** Ready pipes: (read end, write end, size) triplets. */
  private readonly pipePool: number[] = [];
  /** What we ask shim_pipe for: MAX_PIPE_SIZE until the kernel gave less once. */
  private pipeSize = MAX_PIPE_SIZE;
  private readonly nsPool4: number[] = [];
  private readonly nsPool6: number[] = [];
  private readonly sa = new Uint8Array(28);
  private readonly pipeFds = new Int32Array(2);
  private readonly batchFds = table.i32(POOL_TARGET);
  /** Pools are kept only once a first connection was spliced: an idle pasta holds no spare descriptors. */
  private used = false;

  constructor(
    private readonly loop: Loop,
    /** The namespace's netns fd: namespace-side sockets are made there. */
    private readonly nsfd: number,
    private readonly flows: FlowTable,
  ) {
    loop.on(Kind.SPLICE, (ref, ev) => {
      if (flows.is(ref >>> 1, FT_TCP_SPLICE)) this.onEvent(ref >>> 1, ref & 1, ev);
    });
    loop.every(POOL_REFILL_MS, () => {
      if (this.used) this.refill(true);
    });
    loop.onFlush(() => {
      if (this.count() > 0 && (this.nsPool4.length < POOL_TARGET / 2 || this.nsPool6.length < POOL_TARGET / 2)) this.refill(false);
    });
  }

  /** Open connections (for tests and --debug). */
  count(): number {
    return this.flows.count(FT_TCP_SPLICE);
  }

  /**
   * A loopback connection (fd accepted, from the peer in sockaddr peer) on
   * listening socket l, to be joined to l.target on the other side's
   * loopback: `to` says where the connecting socket must live.
   */
  join(accepted: number, peer: Uint8Array, l: AcceptedOn, to: Side): void {
    this.used = true;
    const v6 = l.v6;
    const len = v6 ? sockaddr6(this.sa, LOOPBACK6, 0, l.target, 0) : sockaddr4(this.sa, 0x7f000001, l.target);
    const c = this.take(peer, l, to);
    if (c < 0) {
      spliceStats.refused++;
      sys.shim_close(accepted);
      return;
    }
    this.fd[2 * c] = accepted;
    const out = to === "ns" ? this.nsSocket(v6) : sys.shim_socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (out < 0 || !this.takePipes(c)) {
      if (out >= 0) sys.shim_close(out);
      spliceStats.failed++;
      this.release(c, true);
      return;
    }
    this.fd[2 * c + 1] = out;
    // As the original: quick ACKs, and Nagle left on, so that the tail of a
    // splice does not leave as a small segment of its own.
    sys.shim_setsockopt_int(out, IPPROTO_TCP, TCP_QUICKACK, 1);
    sys.shim_setsockopt_int(accepted, IPPROTO_TCP, TCP_QUICKACK, 1);
    const rc = sys.shim_connect(out, this.sa, len);
    if (rc < 0 && rc !== -EINPROGRESS) {
      spliceStats.failed++;
      this.close(c, true);
      return;
    }
    this.state[c] = rc === 0 ? UP : CONNECTING;
    this.outOn[2 * c] = 0;
    this.outOn[2 * c + 1] = 1;
    this.loop.add(accepted, WATCH, Kind.SPLICE, 2 * c);
    this.loop.add(out, WATCH | EPOLLOUT, Kind.SPLICE, 2 * c + 1);
    spliceStats.opened++;
  }

  /**
   * A new flow, CONNECTING, for a connection from peer (a sockaddr) accepted
   * on l, to l.target on the other side (its sockaddr in this.sa); -1 when
   * at SPLICE_MAX_CONNS or the flow table is full.
   */
  private take(peer: Uint8Array, l: AcceptedOn, to: Side): number {
    if (this.count() >= SPLICE_MAX_CONNS) return -1;
    const ft = this.flows;
    const c = ft.alloc();
    if (c < 0) return -1;
    const aOff = l.v6 ? SA6_ADDR : 4;
    ft.initiate(c, to === "ns" ? PIF_HOST : PIF_SPLICE, l.v6, peer, aOff, saPort(peer), l.addr, 0, l.port);
    ft.target(c, to === "ns" ? PIF_SPLICE : PIF_HOST, this.sa, aOff, l.target, null, 0, 0);
    ft.setType(c, FT_TCP_SPLICE);
    this.state[c] = CONNECTING;
    this.st.fill(0, 8 * c, 8 * c + 8);
    this.shut[2 * c] = 0;
    this.shut[2 * c + 1] = 0;
    this.fd.fill(-1, 2 * c, 2 * c + 2);
    this.pipe.fill(-1, 4 * c, 4 * c + 4);
    ft.activate(c);
    return c;
  }

  private takePipes(c: number): boolean {
    for (let d = 0; d < 2; d++) {
      let r: number, w: number, size: number;
      if (this.pipePool.length >= 3) {
        size = this.pipePool.pop()!;
        w = this.pipePool.pop()!;
        r = this.pipePool.pop()!;
      } else {
        size = this.newPipe();
        if (size < 0) return false;
        r = this.pipeFds[0]!;
        w = this.pipeFds[1]!;
      }
      this.pipe[4 * c + 2 * d] = r;
      this.pipe[4 * c + 2 * d + 1] = w;
      this.st[8 * c + 4 * d + 3] = size;
    }
    return true;
  }

  /** A new pipe in pipeFds: its size, or -errno. */
  private newPipe(): number {
    const size = sys.shim_pipe(this.pipeFds, this.pipeSize);
    if (size > 0 && size < this.pipeSize) this.pipeSize = size;
    return size;
  }

  /** A socket in the namespace, from the pool or made now. */
  private nsSocket(v6: boolean): number {
    const pool = v6 ? this.nsPool6 : this.nsPool4;
    if (pool.length) return pool.pop()!;
    return sys.shim_ns_socket(this.nsfd, v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  }

  /** Top up the pools of pipes and namespace sockets (off the fast path). */
  /**
   * Top the pools up to POOL_TARGET (pipes: trim them back to it too, since
   * closing connections return theirs). Off the timer (full) always; after a
   * batch of events only when a pool fell below half, to batch the work.
   */
  private refill(full: boolean): void {
    while (this.pipePool.length > POOL_TARGET * 3) {
      this.pipePool.pop();
      sys.shim_close(this.pipePool.pop()!);
      sys.shim_close(this.pipePool.pop()!);
    }
    while (this.pipePool.length < POOL_TARGET * 3) {
      const size = this.newPipe();
      if (size < 0) break;
      this.pipePool.push(this.pipeFds[0]!, this.pipeFds[1]!, size);
    }
    for (const [pool, af] of [
      [this.nsPool4, AF_INET],
      [this.nsPool6, AF_INET6],
    ] as const) {
      const want = POOL_TARGET - pool.length;
      if (want === 0 || (!full && want <= POOL_TARGET / 2)) continue;
      const n = sys.shim_ns_socket_batch(this.nsfd, af, SOCK_STREAM | SOCK_NONBLOCK, 0, want, this.batchFds);
      for (let k = 0; k < n; k++) pool.push(this.batchFds[k]!);
    }
  }

  /** An event on connection c's accepted (side 0) or connecting (side 1) socket. */
  private onEvent(c: number, side: number, ev: number): void {
    if (this.state[c] === FREE) return;
    if (this.state[c] === CONNECTING) {
      // Only the connecting socket says when the connection is up; data that
      // arrived meanwhile on the accepted one is pumped from then on.
      if (side === 0) return;
      const err = sys.shim_sock_error(this.fd[2 * c + 1]!);
      if (err < 0 || ev & (EPOLLERR | EPOLLHUP)) {
        spliceStats.failed++;
        return this.close(c, true);
      }
      if (!(ev & EPOLLOUT)) return;
      this.state[c] = UP;
      this.pump(c, 0);
      if (this.state[c] !== FREE) this.pump(c, 1);
      return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.pump(c, side, !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)));
    if (this.state[c] !== FREE && ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) this.pump(c, 1 - side);
  }

  /** Watch socket k (2 * c + side) for output only while on is true. */
  private watchOut(c: number, side: number, on: boolean): void {
    const k = 2 * c + side;
    if (this.outOn[k] === +on) return;
    this.outOn[k] = +on;
    this.loop.mod(this.fd[k]!, on ? WATCH | EPOLLOUT : WATCH, Kind.SPLICE, k);
  }

  /**
   * Move data in direction d (0: accepted → connected, 1: back), then pass
   * on end of stream. shortOk: the event that woke us was input alone, no
   * end of stream, so a short read may stand for EAGAIN (see shim_splice_pump).
   */
  private pump(c: number, d: number, shortOk = false): void {
    const from = this.fd[2 * c + d]!;
    const to = this.fd[2 * c + 1 - d]!;
    const s = 8 * c + 4 * d;
    const st = (this.stBase + s * 4) as Pointer;
    spliceStats.bytes += sys.shim_splice_pump(from, to, this.pipe[4 * c + 2 * d]!, this.pipe[4 * c + 2 * d + 1]!, st, +shortOk);
    if (this.st[s + 2]! < 0) return this.close(c, true);
    this.watchOut(c, 1 - d, this.st[s]! > 0);
    if (this.st[s + 1] && this.st[s] === 0 && !this.shut[2 * c + d]) {
      this.shut[2 * c + d] = 1;
      sys.shim_shutdown(to, SHUT_WR);
      if (this.shut[2 * c + 1 - d]) this.close(c, false);
    }
  }

  /** Close both sockets (abort: with a reset), recycle the pipes, and count it. */
  private close(c: number, abort: boolean): void {
    this.release(c, abort);
    spliceStats.closed++;
    if (abort) log.debug(`splice: connection ${c} reset`);
  }

  /** Close both sockets (abort: with a reset), recycle the pipes, free the flow. */
  private release(c: number, abort: boolean): void {
    for (let k = 0; k < 2; k++) {
      const fd = this.fd[2 * c + k]!;
      if (fd < 0) continue;
      // no EPOLL_CTL_DEL: closing the only descriptor of a socket takes it out of the epoll set
      if (abort) sys.shim_abort_close(fd);
      else sys.shim_close(fd);
      this.fd[2 * c + k] = -1;
    }
    for (let d = 0; d < 2; d++) {
      const r = this.pipe[4 * c + 2 * d]!;
      const w = this.pipe[4 * c + 2 * d + 1]!;
      if (r < 0) continue;
      if (this.st[8 * c + 4 * d] === 0 && this.pipePool.length < POOL_TARGET * 6) this.pipePool.push(r, w, this.st[8 * c + 4 * d + 3]!);
      else {
        sys.shim_close(r);
        sys.shim_close(w);
      }
      this.pipe[4 * c + 2 * d] = -1;
      this.pipe[4 * c + 2 * d + 1] = -1;
    }
    this.state[c] = FREE;
    this.flows.free(c);
  }
}
