/**
 * A vhost-user front-end for tests, in this process: what QEMU does on
 * passt's --vhost-user socket, with guest memory of our own (a memfd mapped
 * here and sent to passt), and nothing but the protocol and the split rings
 * of virtio 1.x. It can behave (set up both queues, send a frame on the
 * transmit queue, offer receive buffers and read what passt wrote into them)
 * or not (any message, any descriptor count, any descriptor).
 *
 * A backend in this same process (a unit test that turns its loop by hand)
 * is driven over a socketpair instead: VuFrontend.onFd(fd), sendSetup()
 * (no waiting for replies), a turn of the loop, skipReplies(), then
 * takeFrames() reads what passt put in the receive buffers, merged buffers
 * (num_buffers) included.
 *
 *   const f = VuFrontend.connect(path);
 *   f.setup();                        // features, memory table, both queues running
 *   f.offerRx(8);                     // eight 2 KiB receive buffers
 *   f.sendFrame(arpRequest);          // on the transmit queue, kicked
 *   const frames = await f.receive(); // frames passt put in the receive buffers
 *
 * Layout of the guest memory (MEM_SIZE bytes at guest physical 0, at
 * front-end address UADDR): queue q's descriptor table at q × 0x10000, its
 * available ring 0x1000 after, its used ring 0x2000 after; buffers from
 * BUF_BASE, BUF_SIZE each.
 */
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { cstr, sys } from "../../src/native/ffi.ts";
import { AF_UNIX, SOCK_STREAM, SOL_SOCKET } from "../../src/native/consts.ts";
import { FEATURES, HDR_LEN, PROTOCOL_FEATURES, Req, u32, w32, w64 } from "../../src/tap/vhost-msg.ts";

export const MEM_SIZE = 4 << 20;
export const UADDR = 0x7f1200000000;
export const QUEUE_SIZE = 256;
const BUF_BASE = 0x40000;
export const BUF_SIZE = 2048;
const VNET_HDR_LEN = 12;
const SO_RCVTIMEO = 20;
const ECONNRESET = 104;
const RX = 0;
const TX = 1;

export class VuFrontend {
  readonly mem: Uint8Array;
  readonly dv: DataView;
  readonly memFd: number;
  readonly kick = [-1, -1];
  readonly call = [-1, -1];
  /** Next free descriptor and buffer, per queue; our avail index; the used index we read up to. */
  private nextDesc = [0, 0];
  private availIdx = [0, 0];
  private usedSeen = [0, 0];
  private nextBuf = 0;

  private constructor(readonly fd: number) {
    this.memFd = sys.shim_memfd(MEM_SIZE);
    if (this.memFd < 0) throw new Error(`memfd: ${this.memFd}`);
    const p = sys.shim_map_shared(this.memFd, MEM_SIZE) as number | null;
    if (p === null) throw new Error("mmap of the guest memory failed");
    this.mem = new Uint8Array(toArrayBuffer(p as Pointer, 0, MEM_SIZE));
    this.dv = new DataView(this.mem.buffer, this.mem.byteOffset, MEM_SIZE);
  }

  /** Connect to passt's socket at path (replies wait at most 5 s). */
  static connect(path: string): VuFrontend {
    const fd = sys.shim_socket(AF_UNIX, SOCK_STREAM, 0);
    const sa = new Uint8Array(110);
    sa[0] = AF_UNIX;
    sa.set(cstr(path), 2);
    const rc = sys.shim_connect(fd, sa, 110);
    if (rc < 0) throw new Error(`connect ${path}: ${rc}`);
    const tv = new BigInt64Array([5n, 0n]);
    sys.shim_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
    return new VuFrontend(fd);
  }

  /** Drive a backend of this process through fd (one end of a socketpair; the other is the backend's). */
  static onFd(fd: number): VuFrontend {
    return new VuFrontend(fd);
  }

  /** Send a message: request, payload, descriptors, flags (version 1 unless given). */
  send(req: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], flags = 1): number {
    const b = new Uint8Array(HDR_LEN + payload.length);
    w32(b, 0, req);
    w32(b, 4, flags);
    w32(b, 8, payload.length);
    b.set(payload, HDR_LEN);
    return sys.shim_send_fds(this.fd, b, b.length, new Int32Array(fds.length ? fds : [0]), fds.length);
  }

  /** A reply's payload (its u64 as a number, if 8 bytes), or null when passt closed the connection (or said nothing in 5 s). */
  reply(): Uint8Array | null {
    const h = new Uint8Array(HDR_LEN);
    if (sys.shim_recv(this.fd, h, HDR_LEN, 0x100 /* MSG_WAITALL */) !== HDR_LEN) return null;
    const size = u32(h, 8);
    const p = new Uint8Array(size);
    if (size > 0 && sys.shim_recv(this.fd, p, size, 0x100) !== size) return null;
    return p;
  }

  /** True once passt has closed the connection (end of stream, or a reset when it left our last bytes unread, within 5 s). */
  closedByPeer(): boolean {
    const b = new Uint8Array(64);
    for (;;) {
      const n = sys.shim_recv(this.fd, b, 64, 0);
      if (n === 0 || n === -ECONNRESET) return true;
      if (n < 0) return false;
    }
  }

  /** Features, memory table, both queues with kick and call eventfds, enabled. */
  setup(): void {
    this.send(Req.GET_FEATURES);
    if (!this.reply()) throw new Error("no reply to GET_FEATURES");
    this.send(Req.SET_FEATURES, u64(FEATURES));
    this.send(Req.GET_PROTOCOL_FEATURES);
    this.reply();
    this.setupRest();
    // a message with a reply: every one before it has been handled
    this.send(Req.GET_FEATURES);
    if (!this.reply()) throw new Error("passt closed the connection during set-up");
  }

  /** setup() for a backend of this process, without waiting: acknowledge features (FEATURES unless given); the replies wait for skipReplies(). */
  sendSetup(features = FEATURES): void {
    this.send(Req.GET_FEATURES);
    this.send(Req.SET_FEATURES, u64(features));
    this.send(Req.GET_PROTOCOL_FEATURES);
    this.setupRest();
  }

  /** Read and forget the replies waiting (after sendSetup and a turn of the backend's loop). */
  skipReplies(): void {
    const b = new Uint8Array(4096);
    while (sys.shim_recv(this.fd, b, b.length, 0x40 /* MSG_DONTWAIT */) > 0);
  }

  private setupRest(): void {
    this.send(Req.SET_PROTOCOL_FEATURES, u64(PROTOCOL_FEATURES));
    this.send(Req.SET_OWNER);
    this.send(Req.SET_MEM_TABLE, memTable(), [this.memFd]);
    for (const q of [RX, TX]) {
      this.send(Req.SET_VRING_NUM, state(q, QUEUE_SIZE));
      this.send(Req.SET_VRING_BASE, state(q, 0));
      this.send(Req.SET_VRING_ADDR, vringAddr(q));
      this.kick[q] = sys.shim_eventfd();
      this.call[q] = sys.shim_eventfd();
      this.send(Req.SET_VRING_KICK, u64(q), [this.kick[q]!]);
      this.send(Req.SET_VRING_CALL, u64(q), [this.call[q]!]);
      this.send(Req.SET_VRING_ENABLE, state(q, 1));
    }
  }

  /** Write descriptor i of queue q. */
  desc(q: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const d = q * 0x10000 + 16 * i;
    this.dv.setUint32(d, addr % 2 ** 32, true);
    this.dv.setUint32(d + 4, Math.floor(addr / 2 ** 32), true);
    this.dv.setUint32(d + 8, len, true);
    this.dv.setUint16(d + 12, flags, true);
    this.dv.setUint16(d + 14, next, true);
  }

  /** Make the chain at head available on queue q, and kick (unless told not to). */
  offer(q: number, head: number, kick = true): void {
    const a = q * 0x10000 + 0x1000;
    this.dv.setUint16(a + 4 + 2 * (this.availIdx[q]! % QUEUE_SIZE), head, true);
    this.availIdx[q] = (this.availIdx[q]! + 1) & 0xffff;
    this.dv.setUint16(a + 2, this.availIdx[q]!, true);
    if (kick) this.kickQueue(q);
  }

  /** Signal queue q's kick eventfd. */
  kickQueue(q: number): void {
    sys.shim_write(this.kick[q]!, new BigUint64Array([1n]), 8);
  }

  /** n receive buffers of size bytes (at most BUF_SIZE), device-writable, one descriptor each; each kicked unless told not to. */
  offerRx(n: number, size = BUF_SIZE, kick = true): void {
    for (let k = 0; k < n; k++) {
      const i = this.nextDesc[RX]!++ % QUEUE_SIZE;
      this.desc(RX, i, this.buffer(), size, 2, 0);
      this.offer(RX, i, kick);
    }
  }

  /**
   * The frames passt has put into receive buffers since the last call, now:
   * each with the flags of its virtio-net header and the number of buffers
   * it took (num_buffers: the used entries it spans, whose bytes follow one
   * another), as a guest's driver reads them.
   */
  takeFrames(): { frame: Uint8Array; flags: number; nbuf: number }[] {
    const used = RX * 0x10000 + 0x2000;
    const idx = this.dv.getUint16(used + 2, true);
    const out: { frame: Uint8Array; flags: number; nbuf: number }[] = [];
    const entry = () => {
      const e = used + 4 + 8 * (this.usedSeen[RX]! % QUEUE_SIZE);
      const id = this.dv.getUint32(e, true);
      const len = this.dv.getUint32(e + 4, true);
      this.usedSeen[RX] = (this.usedSeen[RX]! + 1) & 0xffff;
      return { addr: this.dv.getUint32(RX * 0x10000 + 16 * id, true), len };
    };
    while (this.usedSeen[RX] !== idx) {
      const first = entry();
      const nbuf = this.dv.getUint16(first.addr + 10, true);
      const parts = [this.mem.slice(first.addr + VNET_HDR_LEN, first.addr + first.len)];
      for (let k = 1; k < nbuf; k++) {
        if (this.usedSeen[RX] === idx) throw new Error(`a frame of ${nbuf} buffers with only ${k} used`);
        const next = entry();
        parts.push(this.mem.slice(next.addr, next.addr + next.len));
      }
      const frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        frame.set(p, at);
        at += p.length;
      }
      out.push({ frame, flags: this.mem[first.addr]!, nbuf });
    }
    return out;
  }

  /** A frame on the transmit queue: header and frame in one buffer. */
  sendFrame(frame: Uint8Array): void {
    const i = this.nextDesc[TX]!++ % QUEUE_SIZE;
    const at = this.buffer();
    this.mem.fill(0, at, at + VNET_HDR_LEN);
    this.mem.set(frame, at + VNET_HDR_LEN);
    this.desc(TX, i, at, VNET_HDR_LEN + frame.length, 0, 0);
    this.offer(TX, i);
  }

  /** Frames passt has put into receive buffers since the last call (waits up to timeoutMs for the first). */
  async receive(timeoutMs = 5000): Promise<Uint8Array[]> {
    const used = RX * 0x10000 + 0x2000;
    const end = Date.now() + timeoutMs;
    while (this.dv.getUint16(used + 2, true) === this.usedSeen[RX] && Date.now() < end) await Bun.sleep(10);
    const frames: Uint8Array[] = [];
    const idx = this.dv.getUint16(used + 2, true);
    while (this.usedSeen[RX] !== idx) {
      const e = used + 4 + 8 * (this.usedSeen[RX]! % QUEUE_SIZE);
      const id = this.dv.getUint32(e, true);
      const len = this.dv.getUint32(e + 4, true);
      const d = RX * 0x10000 + 16 * id;
      const addr = this.dv.getUint32(d, true);
      const nbuf = this.dv.getUint16(addr + 10, true);
      if (nbuf !== 1) throw new Error(`a frame in ${nbuf} buffers: these test buffers hold 2 KiB frames only`);
      frames.push(this.mem.slice(addr + VNET_HDR_LEN, addr + len));
      this.usedSeen[RX] = (this.usedSeen[RX]! + 1) & 0xffff;
    }
    return frames;
  }

  /** The next free buffer's guest address. */
  buffer(): number {
    const at = BUF_BASE + (this.nextBuf++ % ((MEM_SIZE - BUF_BASE) / BUF_SIZE)) * BUF_SIZE;
    return at;
  }

  close(): void {
    for (const fd of [this.fd, this.memFd, ...this.kick, ...this.call]) if (fd >= 0) sys.shim_close(fd);
  }
}

export function u64(v: number): Uint8Array {
  const p = new Uint8Array(8);
  w64(p, 0, v);
  return p;
}

export function state(index: number, num: number): Uint8Array {
  const p = new Uint8Array(8);
  w32(p, 0, index);
  w32(p, 4, num);
  return p;
}

/** One region: all of MEM_SIZE at guest physical 0, front-end address UADDR. */
export function memTable(size = MEM_SIZE): Uint8Array {
  const p = new Uint8Array(8 + 32);
  w32(p, 0, 1);
  w64(p, 8, 0);
  w64(p, 16, size);
  w64(p, 24, UADDR);
  w64(p, 32, 0);
  return p;
}

/** SET_VRING_ADDR for queue q's rings in the layout above. */
export function vringAddr(q: number): Uint8Array {
  const p = new Uint8Array(40);
  w32(p, 0, q);
  w64(p, 8, UADDR + q * 0x10000);
  w64(p, 16, UADDR + q * 0x10000 + 0x2000);
  w64(p, 24, UADDR + q * 0x10000 + 0x1000);
  return p;
}

/** For tests that poke at the used ring: the used index passt published on queue q. */
export function usedIdx(f: VuFrontend, q: number): number {
  return f.dv.getUint16(q * 0x10000 + 0x2000 + 2, true);
}
