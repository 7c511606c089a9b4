/**
 * The vhost-user backend of passt (--vhost-user): the guest's virtio-net
 * rings, in memory the front-end (QEMU) shares with us.
 *
 * Theory of operation
 * -------------------
 * Control: the front-end connects to passt's UNIX socket and speaks the
 * vhost-user protocol on it (src/tap/vhost-msg.ts decodes and checks each
 * message): it reads our features and acknowledges some, sends the guest's
 * memory table (one descriptor per region, each mapped here once, until the
 * next table or the end of the connection), then for each of the two queues
 * (0: receive, frames to the guest; 1: transmit, frames from it) its size,
 * the addresses of its three rings, the index to start from, and two
 * eventfds: *kick* (the guest made buffers available) and *call* (we signal
 * it that we used some). A queue runs once it has its kick descriptor and is
 * enabled (rings start disabled when VHOST_USER_F_PROTOCOL_FEATURES is
 * negotiated, until SET_VRING_ENABLE); GET_VRING_BASE stops it (the guest
 * resets its device, or QEMU stops the VM) and answers where we were.
 *
 * From the guest: a kick on queue 1 (or a ring that starts) makes us walk
 * its available chains (src/tap/virtq.ts): each is a 12-byte virtio-net
 * header and a frame. A frame that lies in one piece of guest memory is
 * handed to the dispatcher in place, as (the region's view, offset, length);
 * one in several pieces is gathered into a buffer of ours first. The chains
 * go back to the guest (used ring, call eventfd) only after onBatchEnd, since
 * handlers may keep offsets into the frames until then (FrameHandler).
 *
 * To the guest: the backend is the FrameSink, two ways.
 *
 * TCP data (flows/tcp.ts) is built in place: reserveInPlace() lays frames
 * out over the guest's available receive buffers (src/tap/vu-rx.ts: the
 * headers in a frame's first buffer, the payload after them and over
 * further buffers, merged with VIRTIO_NET_F_MRG_RXBUF), the flow peeks
 * socket data straight into the payload pieces (one recvmsg) and writes the
 * headers there, and commitInPlace() writes each frame's virtio-net header
 * (num_buffers, NEEDS_CSUM with the guest's checksum offload, where no
 * payload byte is read) and gives the buffers it used back. So that
 * data is copied once, by the kernel, as upstream does (tcp_vu.c). Frames
 * queued in the arena (below) go first, so that the guest sees frames in
 * the order they were made; a reservation finds no buffers while any wait
 * there, and marks the backend congested like a refused alloc(). With
 * --pcap or --trace, or when a frame's headers would not fit its first
 * buffer, the flow builds its frames in the arena instead.
 *
 * Everything else (control segments, UDP, ICMP, ARP, DHCP...) goes through
 * alloc() into one preallocated arena (the frame behind a 12-byte
 * virtio-net header, as on the tap) and commit(); flush() copies each
 * queued frame into as many of the guest's receive buffers as it takes
 * (num_buffers; without MRG_RXBUF one buffer must hold the frame), one copy
 * per piece in C (shim_copy), then publishes them. The guest is signalled
 * (call) once per flush(), for every frame given since the last one. A
 * frame waits in the arena while the guest has no buffers: a kick on queue
 * 0 (new buffers) flushes again. As in the stream backend
 * (src/tap/stream.ts), the arena is a ring, alloc() refuses a large request
 * when TX_QUEUE_MAX bytes wait, and `congested` is set from a refusal until
 * the queue is down to TX_LOW_WATER with the receive queue running (an
 * empty queue: until the guest has buffers again): the owner pauses UDP
 * sockets meanwhile and lets every TCP flow send again when it clears.
 *
 * Memory: each region is mapped once (shim_map_shared, which refuses a
 * file shorter than the region: touching past its end would raise SIGBUS)
 * and seen through views of at most 2 GiB and a little
 * (GuestMemory.addRegion), since a JavaScript view spans at most 4 GiB.
 *
 * Offloads: with VIRTIO_NET_F_GUEST_CSUM acknowledged, csumOffload is true
 * and markCsumPartial() sets NEEDS_CSUM in the frame's header; no
 * segmentation offload in either direction (see FEATURES).
 *
 * Bad input (the front-end is as untrusted as the guest): a message
 * vhost-msg.ts refuses, a ring or descriptor virtq.ts refuses, a ring that
 * is not inside the memory table, a region that cannot be mapped: each is
 * counted (stats.badMessages, stats.badRings), `gone` says why, and the owner
 * detaches us: every descriptor closed, every region unmapped, and passt
 * waits for the next connection. A frame from the guest shorter than an
 * Ethernet header or longer than MAX_FRAME_LEN is dropped and counted
 * (rxDropped); the connection stays.
 */
import { ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import { Kind } from "../loop/kinds.ts";
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLRDHUP, type Loop } from "../loop/loop.ts";
import { errnoName, sys } from "../native/ffi.ts";
import type { PcapWriter } from "../pcap.ts";
import { traceFrame, type FrameHandler, type FrameSink } from "./sink.ts";
import { debugOn, log, traceOn } from "../log.ts";
import { EAGAIN } from "../native/consts.ts";
import { release, table } from "../loop/arena.ts";
import {
  F,
  FEATURES,
  FLAG_NEED_REPLY,
  HDR_LEN,
  hasBit,
  MAX_FDS,
  MAX_PAYLOAD,
  newMsg,
  NUM_QUEUES,
  parseHeader,
  parseMessage,
  PF_REPLY_ACK,
  PROTOCOL_FEATURES,
  replyHeader,
  Req,
  reqName,
  w32,
  w64,
  type VhostMsg,
} from "./vhost-msg.ts";
import { GuestMemory, MAX_VIEWS, Segs, Virtq, whyBad } from "./virtq.ts";
import { RxFrames, VNET_HDR_LEN } from "./vu-rx.ts";
import { TX_LOW_WATER, TxQueue } from "./txqueue.ts";

const VNET_FLAGS = 0;
const VNET_CSUM_START = 6;
const VNET_CSUM_OFFSET = 8;
const VNET_NUM_BUFFERS = 10;
const VNET_F_NEEDS_CSUM = 1;
/** Longest frame either way: a 64 KiB IP packet and its Ethernet header. */
export const MAX_FRAME_LEN = 65535 + 14;
const ETH_HLEN = 14;
/** Queue 0: frames to the guest (its receive queue); queue 1: frames from it. */
const TO_GUEST = 0;
const FROM_GUEST = 1;
/** Guest buffers one frame may take (a 64 KiB frame in 1.5 KiB merged buffers takes 44). */
const MAX_CHAINS_PER_FRAME = 128;
/** Chains from the guest handled per wake-up; past this, we kick ourselves and come back after other events. */
const FROM_GUEST_BUDGET = 1024;
/** Frames from several pieces are gathered here; when full, the batch ends early. */
const GATHER_BUF = (1 << 20) + MAX_FRAME_LEN + VNET_HDR_LEN;
/** Control messages read per wake-up. */
const CTL_ROUNDS = 64;
const EINTR = 4;

export interface VhostUserStats {
  /** Frames from the guest handed to the dispatcher, and their bytes. */
  rxFrames: number;
  rxBytes: number;
  /** Frames from the guest too short or too long. */
  rxDropped: number;
  /** Frames given to the guest, and their bytes. */
  txFrames: number;
  txBytes: number;
  /** Of those, frames built in place in the guest's buffers (reserveInPlace), not copied. */
  txInPlace: number;
  /** Frames dropped: still queued when the queue stopped or the front-end left, or larger than the guest's buffers. */
  txDropped: number;
  /** alloc() refused (queue full, or no receive queue running). */
  txBlocked: number;
  /** Control messages handled. */
  messages: number;
  /** Connections closed for a message we refused. */
  badMessages: number;
  /** Connections closed for a ring or descriptor we refused. */
  badRings: number;
}

export class VhostUserBackend implements FrameSink {
  /** The frames for the guest, each behind its virtio-net header (tap/txqueue.ts), until its receive queue takes them. */
  private readonly tx = new TxQueue(VNET_HDR_LEN);
  readonly buf = this.tx.buf;
  readonly maxAlloc = this.tx.maxPlace;
  readonly frameRoom = VNET_HDR_LEN;
  readonly tsoMax = 0;
  readonly stats: VhostUserStats = {
    rxFrames: 0,
    rxBytes: 0,
    rxDropped: 0,
    txFrames: 0,
    txBytes: 0,
    txInPlace: 0,
    txDropped: 0,
    txBlocked: 0,
    messages: 0,
    badMessages: 0,
    badRings: 0,
  };
  /** The front-end's control socket, -1 without one. */
  fd = -1;
  /** Why the front-end is lost, null while all is well (as StreamBackend.gone). */
  gone: string | null = null;
  goneBadly = false;
  /** As StreamBackend.congested, congestionEnds. */
  congested = false;
  congestionEnds = 0;

  // ---- negotiated state
  private features = 0;
  private protocolFeatures = 0;
  private readonly mem = new GuestMemory();
  /** Our mappings (address, length) to undo. */
  private readonly maps = new Float64Array(16);
  private nmaps = 0;
  private readonly q = [new Virtq(), new Virtq()];
  private readonly kickFd = new Int32Array([-1, -1]);
  private readonly callFd = new Int32Array([-1, -1]);
  private readonly enabled = [false, false];

  // ---- control socket
  private readonly ctl = new Uint8Array(HDR_LEN + MAX_PAYLOAD);
  private readonly ctlBase = ptr(this.ctl);
  private ctlHave = 0;
  /** Payload size of the message being read, once its header is in; -1 before. */
  private ctlSize = -1;
  private readonly fdsIn = new Int32Array(MAX_FDS + 1);
  private readonly fds = new Int32Array(MAX_FDS);
  private nfds = 0;
  private readonly msg: VhostMsg = newMsg();
  private readonly reply = new Uint8Array(HDR_LEN + 16);

  // ---- rings
  private readonly segs = new Segs();
  private readonly chainId = new Uint16Array(MAX_CHAINS_PER_FRAME);
  private readonly chainEnd = new Uint16Array(MAX_CHAINS_PER_FRAME);
  private readonly gather = table.u8(GATHER_BUF);
  private readonly gatherBase = ptr(this.gather);
  private readonly eventBuf = new BigUint64Array([1n]);
  /** Frames laid out in the guest's receive buffers (reserveInPlace), until commitInPlace. */
  readonly inPlace = new RxFrames();
  /** Used entries published on the receive queue that the guest has not been signalled for yet (flush signals). */
  private callPending = false;

  private readonly bufBase = ptr(this.buf);

  constructor(
    private readonly loop: Loop,
    private readonly onFrame: FrameHandler,
    private readonly onBatchEnd: () => void,
    private readonly pcap: PcapWriter | null,
  ) {
    loop.on(Kind.PASST_CLIENT, (_i, ev) => this.onControl(ev));
    loop.on(Kind.VHOST_KICK, (i) => this.onKick(i));
  }

  /** Partial checksums towards the guest, once it acknowledged VIRTIO_NET_F_GUEST_CSUM. */
  get csumOffload(): boolean {
    return hasBit(this.features, F.GUEST_CSUM);
  }

  /** Serve the connected control socket fd. */
  attach(fd: number): void {
    sys.shim_set_nonblock(fd);
    this.fd = fd;
    this.gone = null;
    this.goneBadly = false;
    const rc = this.loop.add(fd, EPOLLIN | EPOLLRDHUP, Kind.PASST_CLIENT, 0);
    if (rc < 0) this.lose(`cannot watch the vhost-user socket: ${errnoName(-rc)}`, true);
  }

  /** Close the control socket and every descriptor and mapping of the connection; forget its state. */
  detach(): void {
    if (this.fd >= 0) {
      this.loop.del(this.fd);
      sys.shim_close(this.fd);
    }
    this.fd = -1;
    for (let i = 0; i < NUM_QUEUES; i++) this.stopQueue(i);
    for (let i = 0; i < NUM_QUEUES; i++) this.q[i] = new Virtq();
    this.enabled[0] = this.enabled[1] = false;
    this.unmapAll();
    this.closeFds();
    this.features = this.protocolFeatures = 0;
    this.ctlHave = 0;
    this.ctlSize = -1;
    this.dropQueue();
    this.callPending = false;
    this.gone = null;
    this.goneBadly = false;
  }

  // ------------------------------------------------------------ control

  private onControl(ev: number): void {
    if (this.fd < 0 || this.gone !== null) return;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) this.readControl();
    else if (ev & EPOLLERR) this.lose(`socket error: ${errnoName(-sys.shim_sock_error(this.fd))}`, true);
  }

  /** Read messages: the header, then exactly its payload; handle each when whole. */
  private readControl(): void {
    for (let round = 0; round < CTL_ROUNDS && this.gone === null && this.fd >= 0; round++) {
      const want = this.ctlSize < 0 ? HDR_LEN : HDR_LEN + this.ctlSize;
      const n = sys.shim_recv_fds(this.fd, (this.ctlBase + this.ctlHave) as Pointer, want - this.ctlHave, this.fdsIn, MAX_FDS);
      if (n < 0) {
        if (n !== -EAGAIN && n !== -EINTR) this.lose(`read error: ${errnoName(-n)}`, true);
        return;
      }
      if (!this.takeFds()) return;
      if (n === 0) {
        this.lose(
          this.ctlHave > 0 ? "front-end closed the connection in the middle of a message" : "front-end closed the connection",
          false,
        );
        return;
      }
      this.ctlHave += n;
      if (this.ctlSize < 0 && this.ctlHave === HDR_LEN) {
        this.ctlSize = parseHeader(this.ctl, 0, this.msg);
        if (this.ctlSize < 0) {
          this.refuse(`message with a payload beyond ${MAX_PAYLOAD} bytes`);
          return;
        }
      }
      if (this.ctlSize >= 0 && this.ctlHave === HDR_LEN + this.ctlSize) {
        this.handle();
        this.closeFds();
        this.ctlHave = 0;
        this.ctlSize = -1;
      }
    }
  }

  /** Keep the descriptors the last read brought: only with the first bytes of a message, at most MAX_FDS. */
  private takeFds(): boolean {
    const got = this.fdsIn[MAX_FDS]!;
    if (got === 0) return true;
    const keep = Math.min(got, MAX_FDS);
    for (let i = 0; i < keep; i++) {
      if (this.nfds < MAX_FDS) this.fds[this.nfds++] = this.fdsIn[i]!;
      else sys.shim_close(this.fdsIn[i]!);
    }
    if (got > MAX_FDS) return this.refuse(`more than ${MAX_FDS} descriptors with one message`);
    if (this.ctlHave !== 0) return this.refuse("descriptors in the middle of a message");
    return true;
  }

  private closeFds(): void {
    for (let i = 0; i < this.nfds; i++) if (this.fds[i]! >= 0) sys.shim_close(this.fds[i]!);
    this.nfds = 0;
  }

  /** The whole message is in ctl: check it, act on it, reply. */
  private handle(): void {
    const m = this.msg;
    const why = parseMessage(this.ctl, HDR_LEN, this.nfds, m);
    if (why !== null) {
      this.refuse(why);
      return;
    }
    this.stats.messages++;
    if (debugOn) log.debug(`vhost-user: ${reqName(m.req)}`);
    const replied = this.execute(m);
    if (replied === null) return;
    if (!replied && m.flags & FLAG_NEED_REPLY && hasBit(this.protocolFeatures, PF_REPLY_ACK)) this.sendU64(m.req, 0);
  }

  /** Act on a checked message; true when it was answered, false when not, null when the connection is lost. */
  private execute(m: VhostMsg): boolean | null {
    switch (m.req) {
      case Req.GET_FEATURES:
        return this.sendU64(m.req, FEATURES);
      case Req.GET_PROTOCOL_FEATURES:
        return this.sendU64(m.req, PROTOCOL_FEATURES);
      case Req.GET_QUEUE_NUM:
        return this.sendU64(m.req, 1);
      case Req.SET_FEATURES:
        this.features = m.u64;
        if (!hasBit(m.u64, F.PROTOCOL_FEATURES)) this.enabled[0] = this.enabled[1] = true;
        return false;
      case Req.SET_PROTOCOL_FEATURES:
        this.protocolFeatures = m.u64;
        return false;
      case Req.SET_OWNER:
        return false;
      case Req.RESET_OWNER:
        for (let i = 0; i < NUM_QUEUES; i++) this.stopQueue(i);
        this.features = 0;
        return false;
      case Req.SET_MEM_TABLE:
        return this.setMemTable(m) ? false : null;
      case Req.SET_VRING_NUM:
        this.q[m.index]!.num = m.num;
        return false;
      case Req.SET_VRING_ADDR:
        return this.setVringAddr(m) ? false : null;
      case Req.SET_VRING_BASE:
        this.q[m.index]!.lastAvail = m.num;
        return false;
      case Req.GET_VRING_BASE:
        return this.getVringBase(m);
      case Req.SET_VRING_KICK:
        return this.setKick(m.index, m.nofd ? -1 : this.takeFd()) ? false : null;
      case Req.SET_VRING_CALL:
        if (this.callFd[m.index]! >= 0) sys.shim_close(this.callFd[m.index]!);
        this.callFd[m.index] = m.nofd ? -1 : this.takeFd();
        return false;
      case Req.SET_VRING_ERR:
        return false;
      case Req.SET_VRING_ENABLE:
        this.enabled[m.index] = m.num !== 0;
        this.queueChanged(m.index);
        return false;
    }
    return false;
  }

  /** The first descriptor of the message, now ours (not closed with the rest). */
  private takeFd(): number {
    const fd = this.fds[0]!;
    this.fds[0] = -1;
    return fd;
  }

  private setMemTable(m: VhostMsg): boolean {
    this.unmapAll();
    for (let i = 0; i < m.nregions; i++) {
      const len = m.regionSize[i]! + m.mmapOffset[i]!;
      const p = sys.shim_map_shared(this.fds[i]!, len) as number | null;
      if (p === null) {
        this.refuse(`SET_MEM_TABLE: cannot map region ${i} (${len} bytes)`);
        return false;
      }
      this.maps[2 * this.nmaps] = p;
      this.maps[2 * this.nmaps + 1] = len;
      this.nmaps++;
      const base = p + m.mmapOffset[i]!;
      const viewAt = (at: number, len: number) => new Uint8Array(toArrayBuffer((base + at) as Pointer, 0, len));
      if (!this.mem.addRegion(m.gpa[i]!, m.uaddr[i]!, m.regionSize[i]!, base, viewAt))
        return this.refuse(`SET_MEM_TABLE: more guest memory than ${MAX_VIEWS} views of 2 GiB`);
    }
    for (let i = 0; i < NUM_QUEUES; i++) {
      const q = this.q[i]!;
      if (q.addrSet && !q.place(this.mem)) return this.refuse(`queue ${i}: rings outside the new memory table, or misaligned in it`);
    }
    if (debugOn) log.debug(`vhost-user: memory table of ${m.nregions} regions mapped`);
    for (let i = 0; i < NUM_QUEUES; i++) this.queueChanged(i);
    return true;
  }

  private setVringAddr(m: VhostMsg): boolean {
    const q = this.q[m.index]!;
    q.descAddr = m.descAddr;
    q.availAddr = m.availAddr;
    q.usedAddr = m.usedAddr;
    q.addrSet = true;
    if (!q.place(this.mem))
      return this.refuse(`SET_VRING_ADDR: queue ${m.index}'s rings are not inside the memory table, or misaligned in it`);
    q.readUsedIdx(this.mem);
    this.queueChanged(m.index);
    return true;
  }

  /** Stop the queue, answer where it stopped. */
  private getVringBase(m: VhostMsg): boolean | null {
    const q = this.q[m.index]!;
    const last = q.lastAvail;
    this.stopQueue(m.index);
    const b = this.reply;
    replyHeader(b, 0, m.req, 8);
    w32(b, HDR_LEN, m.index);
    w32(b, HDR_LEN + 4, last);
    return this.send(HDR_LEN + 8);
  }

  private setKick(i: number, fd: number): boolean {
    if (fd < 0) return this.refuse("SET_VRING_KICK without a descriptor (polling mode) is not supported");
    if (this.kickFd[i]! >= 0) {
      this.loop.del(this.kickFd[i]!);
      sys.shim_close(this.kickFd[i]!);
    }
    this.kickFd[i] = fd;
    sys.shim_set_nonblock(fd);
    const rc = this.loop.add(fd, EPOLLIN, Kind.VHOST_KICK, i);
    if (rc < 0) {
      this.lose(`cannot watch the kick descriptor of queue ${i}: ${errnoName(-rc)}`, true);
      return false;
    }
    if (debugOn) log.debug(`vhost-user: queue ${i} started`);
    this.queueChanged(i);
    return true;
  }

  /** Close the queue's eventfds; frames waiting for the guest are dropped with its receive queue. */
  private stopQueue(i: number): void {
    if (this.kickFd[i]! >= 0) {
      this.loop.del(this.kickFd[i]!);
      sys.shim_close(this.kickFd[i]!);
      this.kickFd[i] = -1;
    }
    if (this.callFd[i]! >= 0) {
      sys.shim_close(this.callFd[i]!);
      this.callFd[i] = -1;
    }
    if (i === TO_GUEST) this.dropQueue();
  }

  /** A queue may have become ready: serve what waits on it. */
  private queueChanged(i: number): void {
    if (!this.running(i)) return;
    if (i === FROM_GUEST) this.fromGuest();
    else this.flush();
  }

  /** The queue has its rings, memory, kick descriptor, and is enabled. */
  private running(i: number): boolean {
    return this.gone === null && this.kickFd[i]! >= 0 && this.enabled[i]! && this.q[i]!.placed;
  }

  private sendU64(req: number, v: number): boolean | null {
    replyHeader(this.reply, 0, req, 8);
    w64(this.reply, HDR_LEN, v);
    return this.send(HDR_LEN + 8);
  }

  private send(len: number): boolean | null {
    const n = sys.shim_send(this.fd, this.reply, len, 0);
    if (n === len) return true;
    this.lose(n < 0 ? `write error: ${errnoName(-n)}` : "front-end does not read its replies", true);
    return null;
  }

  private unmapAll(): void {
    this.mem.clear();
    for (let i = 0; i < this.nmaps; i++) sys.shim_unmap(this.maps[2 * i]! as Pointer, this.maps[2 * i + 1]!);
    this.nmaps = 0;
    for (const q of this.q) q.descR = q.availR = q.usedR = -1;
  }

  // ------------------------------------------------------------ kicks

  private onKick(i: number): void {
    if (this.gone !== null || this.kickFd[i]! < 0) return;
    sys.shim_read(this.kickFd[i]!, this.eventBuf, 8);
    if (!this.running(i)) return;
    if (i === FROM_GUEST) this.fromGuest();
    else this.flush();
  }

  private notify(i: number): void {
    const q = this.q[i]!;
    if (this.callFd[i]! >= 0 && q.wantsInterrupt(this.mem)) sys.shim_write(this.callFd[i]!, this.eventBuf, 8);
  }

  // ------------------------------------------------------------ from the guest

  /** Take the frames the guest made available on its transmit queue. */
  private fromGuest(): void {
    const q = this.q[FROM_GUEST]!;
    const mem = this.mem;
    const avail = q.available(mem);
    if (avail < 0) {
      this.badRing(FROM_GUEST, avail);
      return;
    }
    const n = Math.min(avail, FROM_GUEST_BUDGET);
    let gathered = 0;
    let pending = 0;
    for (let k = 0; k < n; k++) {
      const segs = this.segs;
      segs.n = 0;
      const id = q.chain(mem, 0, false, segs);
      if (id < 0) {
        this.badRing(FROM_GUEST, id);
        return;
      }
      let total = 0;
      for (let s = 0; s < segs.n; s++) total += segs.len[s]!;
      const len = total - VNET_HDR_LEN;
      if (len < ETH_HLEN || len > MAX_FRAME_LEN) {
        this.stats.rxDropped++;
      } else {
        if (segs.len[0]! < VNET_HDR_LEN + len && gathered + VNET_HDR_LEN + len > GATHER_BUF) {
          this.endBatch(q, pending);
          pending = 0;
          gathered = 0;
        }
        gathered += this.frameOfChain(len, gathered);
      }
      q.pushUsed(mem, id, 0);
      q.lastAvail = (q.lastAvail + 1) & 0xffff;
      pending++;
    }
    this.endBatch(q, pending);
    if (avail > n && this.kickFd[FROM_GUEST]! >= 0) sys.shim_write(this.kickFd[FROM_GUEST]!, this.eventBuf, 8);
  }

  /** The batch's frames were handled: let handlers send what they queued, then give the chains back. */
  private endBatch(q: Virtq, used: number): void {
    if (used === 0) return;
    this.onBatchEnd();
    if (this.gone !== null || !q.placed) return;
    q.publish(this.mem);
    this.notify(FROM_GUEST);
  }

  /**
   * Hand the frame of the chain in segs (len bytes behind the header) to the
   * dispatcher: in place when it lies in one piece, else gathered at
   * gather[at..]. Returns the gather bytes used.
   */
  private frameOfChain(len: number, at: number): number {
    const segs = this.segs;
    const mem = this.mem;
    let b: Uint8Array;
    let off: number;
    let used = 0;
    let flags: number;
    if (segs.len[0]! >= VNET_HDR_LEN + len) {
      b = mem.u8[segs.region[0]!]!;
      flags = b[segs.off[0]! + VNET_FLAGS]!;
      off = segs.off[0]! + VNET_HDR_LEN;
    } else if (segs.len[0]! === VNET_HDR_LEN && segs.len[1]! >= len) {
      flags = mem.u8[segs.region[0]!]![segs.off[0]! + VNET_FLAGS]!;
      b = mem.u8[segs.region[1]!]!;
      off = segs.off[1]!;
    } else {
      let dst = this.gatherBase + at;
      let left = VNET_HDR_LEN + len;
      for (let s = 0; s < segs.n && left > 0; s++) {
        const n = Math.min(segs.len[s]!, left);
        sys.shim_copy(dst as Pointer, (mem.host[segs.region[s]!]! + segs.off[s]!) as Pointer, n);
        dst += n;
        left -= n;
      }
      b = this.gather;
      flags = b[at + VNET_FLAGS]!;
      off = at + VNET_HDR_LEN;
      used = (VNET_HDR_LEN + len + 15) & ~15;
    }
    this.stats.rxFrames++;
    this.stats.rxBytes += len;
    if (this.pcap) this.pcap.write(b, off, len);
    if (traceOn) traceFrame(false, b, off, len);
    this.onFrame(b, off, len, (flags & VNET_F_NEEDS_CSUM) !== 0);
    return used;
  }

  // ------------------------------------------------------------ to the guest

  alloc(maxLen: number, frames = 1): number {
    if (this.fd < 0 || this.gone !== null) return -1;
    if (this.tx.neverFits(maxLen, frames)) return -1;
    let at = this.running(TO_GUEST) ? this.tx.place(maxLen, frames) : -1;
    if (at < 0 && this.running(TO_GUEST)) {
      this.flush();
      at = this.tx.place(maxLen, frames);
    }
    if (at < 0) {
      this.stats.txBlocked++;
      this.congested = true;
      return -1;
    }
    return at;
  }

  commit(off: number, len: number): void {
    const start = off - VNET_HDR_LEN;
    this.buf.fill(0, start, off);
    this.tx.commit(off, len);
    if (this.pcap) this.pcap.write(this.buf, off, len);
    if (traceOn) traceFrame(true, this.buf, off, len);
  }

  markCsumPartial(off: number, l4: number, csumField: number): void {
    const h = off - VNET_HDR_LEN;
    this.buf[h + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
    wr16le(this.buf, h + VNET_CSUM_START, l4 - off);
    wr16le(this.buf, h + VNET_CSUM_OFFSET, csumField);
  }

  /** Give idle buffers back to the kernel (Loop.onQuiet): the gather buffer, the queue if empty. */
  releaseIdle(): void {
    release(this.gather);
    this.tx.releaseIdle();
  }

  /**
   * Copy the queued frames into the guest's receive buffers, as far as it
   * has some, and signal it for every frame given since the last flush.
   * Congestion ends once the queue is low, or, when it is empty (frames built
   * in place found no buffers), once the guest has made buffers available.
   */
  flush(): void {
    if (!this.tx.empty()) {
      if (this.fd < 0 || this.gone !== null) this.dropQueue();
      else if (this.running(TO_GUEST)) this.toGuest();
    }
    if (!this.running(TO_GUEST)) return;
    if (this.callPending) {
      this.callPending = false;
      this.notify(TO_GUEST);
    }
    if (this.congested && this.tx.queued < TX_LOW_WATER && (!this.tx.empty() || this.q[TO_GUEST]!.available(this.mem) > 0)) {
      this.congested = false;
      this.congestionEnds++;
    }
  }

  /**
   * FrameSink.reserveInPlace: lay frames out in the guest's receive buffers
   * (src/tap/vu-rx.ts), after the frames queued in the arena, which go
   * first. Not with --pcap or --trace (they take frames whole, from the
   * arena), nor when frame 0's headers would not fit its buffer's first
   * descriptor: -1, build them with alloc().
   */
  reserveInPlace(hdr: number, seg: number, frames: number, total: number): number {
    if (this.pcap || traceOn || !this.running(TO_GUEST)) return -1;
    if (!this.tx.empty()) this.toGuest();
    if (this.gone !== null) return -1;
    const q = this.q[TO_GUEST]!;
    const avail = this.tx.empty() ? q.available(this.mem) : 0;
    if (avail < 0) {
      this.badRing(TO_GUEST, avail);
      return -1;
    }
    const merge = hasBit(this.features, F.MRG_RXBUF);
    const room = this.inPlace.reserve(this.mem, q, avail, merge, hdr, seg, frames, total, this.segs);
    if (room < 0) {
      this.badRing(TO_GUEST, room);
      return -1;
    }
    if (room > 0) return room;
    if (this.inPlace.unfit) return -1;
    this.stats.txBlocked++;
    this.congested = true;
    return 0;
  }

  /**
   * FrameSink.commitInPlace: each frame's virtio-net header (num_buffers:
   * the chains its bytes reach; NEEDS_CSUM with the checksum offload), its
   * chains to the used ring, published; the guest is signalled at flush().
   */
  commitInPlace(frames: number, l4: number, csumField: number): void {
    const f = this.inPlace;
    const q = this.q[TO_GUEST]!;
    const mem = this.mem;
    const partial = this.csumOffload;
    let taken = 0;
    for (let k = 0; k < frames; k++) {
      const chains = f.used(k);
      const b = mem.u8[f.region[k]!]!;
      const h = f.off[k]!;
      b.fill(0, h, h + VNET_HDR_LEN);
      if (partial) {
        b[h + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
        wr16le(b, h + VNET_CSUM_START, l4);
        wr16le(b, h + VNET_CSUM_OFFSET, csumField);
      }
      wr16le(b, h + VNET_NUM_BUFFERS, chains);
      const first = f.chainFirst[k]!;
      for (let c = first; c < first + chains; c++) q.pushUsed(mem, f.chainId[c]!, f.chainLen[c]!);
      taken = first + chains;
      this.stats.txFrames++;
      this.stats.txInPlace++;
      this.stats.txBytes += f.headRoom - VNET_HDR_LEN + f.plen[k]!;
    }
    q.lastAvail = (q.lastAvail + taken) & 0xffff;
    q.publish(mem);
    this.callPending = true;
  }

  /** Bytes queued for the guest (tests, --debug). */
  pending(): number {
    return this.tx.queued;
  }

  /** Copy queued frames into the guest's receive buffers and publish them (flush() signals the guest). */
  private toGuest(): void {
    const q = this.q[TO_GUEST]!;
    const mem = this.mem;
    const avail = q.available(mem);
    if (avail < 0) {
      this.badRing(TO_GUEST, avail);
      return;
    }
    const merge = hasBit(this.features, F.MRG_RXBUF);
    const segs = this.segs;
    let used = 0;
    const tx = this.tx;
    while (!tx.empty()) {
      const start = tx.headStart();
      const total = tx.headTotal();
      segs.n = 0;
      let chains = 0;
      let room = 0;
      while (room < total && used + chains < avail && chains < MAX_CHAINS_PER_FRAME && (merge || chains === 0)) {
        const first = segs.n;
        const id = q.chain(mem, used + chains, true, segs);
        if (id < 0) {
          this.badRing(TO_GUEST, id);
          return;
        }
        for (let s = first; s < segs.n; s++) room += segs.len[s]!;
        this.chainId[chains] = id;
        this.chainEnd[chains] = segs.n;
        chains++;
      }
      if (room < total) {
        if (used + chains < avail) this.dropHead();
        else break;
        continue;
      }
      wr16le(this.buf, start + VNET_NUM_BUFFERS, merge ? chains : 1);
      this.scatter(q, start, total, chains);
      used += chains;
      this.stats.txFrames++;
      this.stats.txBytes += total - VNET_HDR_LEN;
      tx.advanceHead();
    }
    if (used === 0) return;
    q.lastAvail = (q.lastAvail + used) & 0xffff;
    q.publish(mem);
    this.callPending = true;
    if (tx.empty()) tx.clear();
  }

  /** Copy total bytes at buf[start..] into the chains found (segs), and give each back with what it got. */
  private scatter(q: Virtq, start: number, total: number, chains: number): void {
    const segs = this.segs;
    const mem = this.mem;
    let src = this.bufBase + start;
    let left = total;
    let s = 0;
    for (let c = 0; c < chains; c++) {
      let wrote = 0;
      for (; s < this.chainEnd[c]! && left > 0; s++) {
        const n = Math.min(segs.len[s]!, left);
        sys.shim_copy((mem.host[segs.region[s]!]! + segs.off[s]!) as Pointer, src as Pointer, n);
        src += n;
        left -= n;
        wrote += n;
      }
      s = this.chainEnd[c]!;
      q.pushUsed(mem, this.chainId[c]!, wrote);
    }
  }

  /** The head frame can't fit the guest's buffers: drop it. */
  private dropHead(): void {
    this.stats.txDropped++;
    this.tx.advanceHead();
  }

  private dropQueue(): void {
    this.stats.txDropped += this.tx.clear();
  }

  // ------------------------------------------------------------ losing the front-end

  private badRing(i: number, code: number): void {
    this.stats.badRings++;
    this.lose(`queue ${i}: ${whyBad(code)}, closing the connection`, true);
  }

  /** A message we refuse: count it, lose the connection; returns false for the caller's convenience. */
  private refuse(why: string): false {
    this.stats.badMessages++;
    this.lose(`${why}, closing the connection`, true);
    return false;
  }

  private lose(reason: string, bad: boolean): void {
    if (this.gone !== null) return;
    this.gone = reason;
    this.goneBadly = bad;
    this.dropQueue();
  }
}

function wr16le(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 255;
  b[o + 1] = v >>> 8;
}
