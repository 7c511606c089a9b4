/**
 * The passt backend: frames in and out of a UNIX stream socket (qemu's
 * `-netdev stream` / `socket` framing).
 *
 * Theory of operation
 * -------------------
 * On the socket, every frame is preceded by its length as a 32-bit big-endian
 * integer, in both directions. There is no other structure: a read may end in
 * the middle of a length or a frame, and a write may take only part of what
 * we give it.
 *
 * Receive: one read() takes whatever the socket holds (up to RX_BUF bytes)
 * behind the bytes left over from the previous read; every complete frame is
 * handed to the dispatcher in place, as (buffer, offset of the Ethernet
 * header, length); then onBatchEnd lets handlers send what they queued from
 * those frames, and the incomplete tail is moved to the front of the buffer
 * for the next read. A length of zero, or one above MAX_FRAME_LEN, means the
 * stream cannot be trusted any more: the client is dropped (`gone` says why).
 *
 * Transmit: the backend is the FrameSink. Handlers alloc() room in one
 * preallocated arena and commit() frames; each commit writes the length
 * prefix into the PASST_FRAME_ROOM bytes in front of its frame. flush() (run
 * by the loop after each batch of events) hands the whole queue to one shim
 * call, which merges frames that touch into one iovec and writes with as few
 * sendmsg() calls as the socket takes.
 *
 * Checksums: no offloads (tsoMax 0): every frame carries full checksums,
 * as over any socket. TCP data segments get theirs in C, a whole peek per
 * call (shim_tcp_segments, see flows/tcp.ts).
 *
 * Backpressure: a frame is never dropped halfway, and a queued frame is never
 * dropped while the client is connected. When the socket is full, what is
 * left (possibly the rest of a frame) stays queued, EPOLLOUT is watched, and
 * no write is tried until it fires. Meanwhile alloc() keeps filling the arena
 * (tap/txqueue.ts), used as a ring: at its end, allocation goes on at the front if the frames
 * still queued start far enough in (queued bytes are never moved: with deep
 * queues, moving them to the front copied more bytes than the socket took).
 * When there is no room either way, or when a request for more than one
 * small frame finds TX_QUEUE_MAX bytes queued already, alloc() returns -1 and
 * the flows stop producing: TCP leaves the data in its sockets, UDP leaves
 * datagrams in the socket queues. From then until the queue is down to
 * TX_LOW_WATER, `congested` is set: the owner stops watching the UDP
 * sockets (level-triggered, they would wake the loop for nothing) and, when
 * it clears, restarts them and lets every TCP connection send what it has
 * waiting.
 *
 * Without a client (between two connections), alloc() returns -1: nothing is
 * produced for nobody.
 */
import { ptr, type Pointer } from "bun:ffi";
import { TX_LOW_WATER, TxQueue } from "./txqueue.ts";
import { Kind } from "../loop/kinds.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, type Loop } from "../loop/loop.ts";
import { errnoName, sys } from "../native/ffi.ts";
import type { PcapWriter } from "../pcap.ts";
import { traceFrame, type FrameHandler, type FrameSink } from "./sink.ts";
import { traceOn } from "../log.ts";
import { EAGAIN, SOL_SOCKET } from "../native/consts.ts";
import { release, table } from "../loop/arena.ts";

/** Bytes in front of each frame on the socket: its length, 32-bit big-endian. */
export const PASST_FRAME_ROOM = 4;
/** Longest frame a client may send: a 64 KiB IP packet and its Ethernet header. */
export const MAX_FRAME_LEN = 65535 + 14;
/** Receive buffer: many frames per read, plus a partial one left over. */
const RX_BUF = (1 << 20) + PASST_FRAME_ROOM + MAX_FRAME_LEN;
/** Reads per wake-up before other descriptors get their turn (level-triggered: we come back). */
const RX_ROUNDS = 32;
/**
 * Queued bytes that alloc() writes out before it hands out more room: about
 * one peek of TCP data at MTU 1500. The client (QEMU, the relay guest) then
 * gets a steady stream of small writes it can interleave with the guest's
 * ACKs, as the original writes after each peek, instead of one burst of
 * megabytes per batch of events.
 */
const TX_EAGER = 32 << 10;
/** Socket buffer sizes we ask for (the kernel caps them at rmem_max / wmem_max), as the original. */
const SOCK_BUF = 0x3fffffff;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const EINTR = 4;
const EPIPE = 32;
const ECONNRESET = 104;

export interface PasstStats {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames still queued when a client went away. */
  txDropped: number;
  /** Writes the socket took only in part (then we waited for EPOLLOUT). */
  partialWrites: number;
  /** alloc() calls refused because the arena was full while the socket was. */
  txBlocked: number;
}

export class StreamBackend implements FrameSink {
  /** The frames for the client, each behind its length prefix (tap/txqueue.ts). */
  private readonly tx = new TxQueue(PASST_FRAME_ROOM);
  readonly buf = this.tx.buf;
  readonly maxAlloc = this.tx.maxPlace;
  readonly frameRoom = PASST_FRAME_ROOM;
  /** No segmentation or checksum offload towards the guest (FrameSink.tsoMax). */
  readonly tsoMax = 0;
  /** Full checksums in every frame (FrameSink.csumOffload). */
  readonly csumOffload = false;
  readonly stats: PasstStats = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, txDropped: 0, partialWrites: 0, txBlocked: 0 };
  /** The connected client's socket, -1 without one. */
  fd = -1;
  /**
   * Why the client is lost, once it is (end of stream, a bad length, a socket
   * error); null while all is well. The owner then calls detach() at a point
   * where no handler is running.
   */
  gone: string | null = null;
  /** True when gone is an error in the stream (logged as such), not a plain end. */
  goneBadly = false;
  /**
   * alloc() refused a frame for lack of room (the socket is full), and the
   * queue has not drained below TX_LOW_WATER since: the owner pauses the
   * producers that would otherwise wake the loop in vain, and resumes them
   * when this clears.
   */
  congested = false;
  /** Ends of congestion so far (tap/congestion.ts). */
  congestionEnds = 0;

  private readonly rx = table.u8(RX_BUF);
  private readonly rxBase: number;
  private rxHave = 0;
  private readonly pairsBase: number;
  /** The socket was full: no write until EPOLLOUT. */
  private blocked = false;
  /** EPOLLOUT is in the watched events. */
  private outArmed = false;

  constructor(
    private readonly loop: Loop,
    private readonly onFrame: FrameHandler,
    private readonly onBatchEnd: () => void,
    private readonly pcap: PcapWriter | null,
  ) {
    this.rxBase = ptr(this.rx);
    this.pairsBase = ptr(this.tx.pairs);
    loop.on(Kind.PASST_CLIENT, (_i, ev) => this.onEvents(ev));
  }

  /** Serve the connected socket fd (made non-blocking here). */
  attach(fd: number): void {
    sys.shim_set_nonblock(fd);
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, SOCK_BUF);
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_SNDBUF, SOCK_BUF);
    this.fd = fd;
    this.gone = null;
    this.goneBadly = false;
    const rc = this.loop.add(fd, EPOLLIN | EPOLLRDHUP, Kind.PASST_CLIENT, 0);
    if (rc < 0) this.lose(`cannot watch the client socket: ${errnoName(-rc)}`, true);
  }

  /** Close the client's socket and forget everything about it (queued frames, partial input). */
  detach(): void {
    if (this.fd >= 0) {
      this.loop.del(this.fd);
      sys.shim_close(this.fd);
    }
    this.fd = -1;
    this.dropQueue();
    this.rxHave = 0;
    this.gone = null;
    this.goneBadly = false;
  }

  /** Events on the client socket. */
  private onEvents(ev: number): void {
    if (this.fd < 0 || this.gone !== null) return;
    if (ev & EPOLLOUT) {
      this.blocked = false;
      this.flush();
      if (!this.blocked && this.outArmed && this.gone === null) {
        this.outArmed = false;
        this.loop.mod(this.fd, EPOLLIN | EPOLLRDHUP, Kind.PASST_CLIENT, 0);
      }
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) this.readAll();
    else if (ev & EPOLLERR) this.lose(`socket error: ${errnoName(-sys.shim_sock_error(this.fd))}`, true);
  }

  // ------------------------------------------------------------ receive

  /** Read what the socket holds, in rounds, and dispatch every complete frame. */
  private readAll(): void {
    for (let round = 0; round < RX_ROUNDS && this.gone === null; round++) {
      const room = RX_BUF - this.rxHave;
      const n = sys.shim_read(this.fd, (this.rxBase + this.rxHave) as Pointer, room);
      if (n < 0) {
        if (n !== -EAGAIN && n !== -EINTR) this.lose(`read error: ${errnoName(-n)}`, n !== -ECONNRESET);
        return;
      }
      if (n === 0) {
        this.lose(this.rxHave > 0 ? "client closed the connection in the middle of a frame" : "client closed the connection", false);
        return;
      }
      this.stats.rxBytes += n;
      this.rxHave += n;
      this.parse();
      if (n < room) return;
    }
  }

  /** Hand every complete frame in rx to the dispatcher; keep the incomplete tail. */
  private parse(): void {
    const b = this.rx;
    let pos = 0;
    while (this.rxHave - pos >= PASST_FRAME_ROOM && this.gone === null) {
      const len = ((b[pos]! << 24) | (b[pos + 1]! << 16) | (b[pos + 2]! << 8) | b[pos + 3]!) >>> 0;
      if (len === 0 || len > MAX_FRAME_LEN) {
        this.lose(`bad frame length ${len} from the client (allowed: 1 to ${MAX_FRAME_LEN}), closing the connection`, true);
        break;
      }
      if (this.rxHave - pos - PASST_FRAME_ROOM < len) break;
      const off = pos + PASST_FRAME_ROOM;
      this.stats.rxFrames++;
      if (this.pcap) this.pcap.write(b, off, len);
      if (traceOn) traceFrame(false, b, off, len);
      this.onFrame(b, off, len, false);
      pos = off + len;
    }
    if (pos === 0) return;
    this.onBatchEnd();
    b.copyWithin(0, pos, this.rxHave);
    this.rxHave -= pos;
  }

  // ------------------------------------------------------------ transmit

  alloc(maxLen: number, frames = 1): number {
    if (this.fd < 0 || this.gone !== null) return -1;
    if (this.tx.neverFits(maxLen, frames)) return -1;
    if (this.tx.queued >= TX_EAGER) this.flush();
    let at = this.tx.place(maxLen, frames);
    if (at < 0) {
      this.flush();
      if (this.gone !== null) return -1;
      at = this.tx.place(maxLen, frames);
      if (at < 0) {
        this.stats.txBlocked++;
        this.congested = true;
        return -1;
      }
    }
    return at;
  }

  commit(off: number, len: number): void {
    const b = this.buf;
    const start = off - PASST_FRAME_ROOM;
    b[start] = len >>> 24;
    b[start + 1] = (len >>> 16) & 255;
    b[start + 2] = (len >>> 8) & 255;
    b[start + 3] = len & 255;
    this.tx.commit(off, len);
    if (this.pcap) this.pcap.write(b, off, len);
    if (traceOn) traceFrame(true, b, off, len);
  }

  /** Write the queued frames (all of them, or as much as the socket takes). */
  flush(): void {
    const tx = this.tx;
    if (tx.empty()) return;
    if (this.fd < 0 || this.gone !== null) {
      this.dropQueue();
      return;
    }
    if (this.blocked) return;
    const n = sys.shim_send_frames(this.fd, this.buf, (this.pairsBase + tx.head * 8) as Pointer, tx.count - tx.head, tx.headSent);
    if (n < 0) {
      this.lose(`write error: ${errnoName(-n)}`, n !== -EPIPE && n !== -ECONNRESET);
      return;
    }
    this.stats.txBytes += n;
    this.stats.txFrames += tx.advanceBytes(n);
    if (this.congested && this.pending() < TX_LOW_WATER) {
      this.congested = false;
      this.congestionEnds++;
    }
    if (tx.empty()) {
      tx.clear();
      return;
    }
    this.stats.partialWrites++;
    this.blocked = true;
    if (!this.outArmed) {
      this.outArmed = true;
      this.loop.mod(this.fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, Kind.PASST_CLIENT, 0);
    }
  }

  /** Give idle buffers back to the kernel (Loop.onQuiet): the receive buffer past a partial frame, the queue if empty. */
  releaseIdle(): void {
    release(this.rx.subarray(this.rxHave));
    this.tx.releaseIdle();
  }

  /** Bytes queued and not yet written (for tests and --debug). */
  pending(): number {
    return this.tx.queued;
  }

  private dropQueue(): void {
    this.stats.txDropped += this.tx.clear();
    this.blocked = false;
    this.outArmed = false;
    this.congested = false;
  }

  /** The client can't be served any more; detach() follows from the owner. */
  private lose(reason: string, bad: boolean): void {
    if (this.gone !== null) return;
    this.gone = reason;
    this.goneBadly = bad;
    this.dropQueue();
  }
}
