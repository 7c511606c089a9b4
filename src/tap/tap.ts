/**
 * The tap backend (pasta): frames in and out of the namespace's tap device.
 *
 * Theory of operation
 * -------------------
 * The tap is opened with IFF_VNET_HDR, so every frame read or written is
 * preceded by a 12-byte virtio-net header. We keep that room in front of each
 * frame even while no offload is switched on (the header is then all zeros),
 * so offloads can be enabled later without touching the protocol code.
 *
 * Offloads: the namespace's kernel may send us TCP super-frames (up to 64
 * KiB whatever the MTU) and leave checksums to us (TUNSETOFFLOAD); we pass
 * the payload to sockets, which checksum for themselves, and tell the
 * dispatcher of a partial checksum (FrameHandler) so that nothing verifies
 * it. Towards the namespace we write super-frames of our own (markTso) and
 * partial checksums (markCsumPartial). PASTA_NO_OFFLOAD=1 turns both off.
 *
 * Receive: one shim call reads up to RX_BATCH frames into fixed slots of one
 * preallocated buffer; each frame is handed to the dispatcher as
 * (buffer, offset of the Ethernet header, length); after each batch,
 * onBatchEnd lets handlers send what they queued from it (the slots are
 * reused by the next read). At most RX_ROUNDS batches per wake-up: the tap
 * is level-triggered, so what is left comes at the next turn of the loop,
 * after the sockets' events and the flush. A guest that floods us would
 * otherwise keep the loop in here for as long as it floods, and no socket
 * event (a connect() completing, a reply, room to write) nor timer would
 * run until it stopped.
 *
 * Transmit: the backend is the FrameSink. Handlers alloc() room in one
 * preallocated arena and commit() frames; flush() (run by the loop after each
 * batch of events) writes them all with one shim call. When the arena or the
 * frame list is full, alloc() flushes first. Frames the tap refuses (queue
 * full) are dropped and counted: the guest's protocols recover as they would
 * on a real link.
 */
import { sys } from "../native/ffi.ts";
import type { PcapWriter } from "../pcap.ts";
import { traceFrame, type FrameHandler, type FrameSink } from "./sink.ts";
import { TCP_CSUM, tcpHlen } from "../wire/tcp.ts";
import { traceOn } from "../log.ts";
import { release, table } from "../loop/arena.ts";

/** Size of struct virtio_net_hdr_v1, set with TUNSETVNETHDRSZ. */
export const VNET_HDR_LEN = 12;
/** Frames read per shim call. */
const RX_BATCH = 64;
/** Batches read per wake-up, at most (see the theory of operation). */
const RX_ROUNDS = 4;
/** One receive slot: vnet header + the largest frame (an IPv6 header and 64 KiB payload, Ethernet header), 16-byte aligned. */
const RX_SLOT = 65616;
/**
 * Transmit arena: 31 frames of 64 KiB per flush, more of smaller ones. The
 * batches received or peeked straight into it are cut to fit (framesThatFit).
 * 4 MiB moved no faster (A/B at MTU 1500, 16384, 65520, TCP and UDP host to
 * namespace) and kept up to 2 MB more resident after a burst.
 */
const TX_ARENA = 2 << 20;
/** Frames queued per flush. */
const TX_MAX_FRAMES = 1024;
const IFF_VNET_HDR = 0x4000;
/** Largest TCP payload in one super-frame: the IPv4 total length field's limit, less headers with room for options. */
const TSO_MAX_PAYLOAD = 65535 - 60 - 60;
// struct virtio_net_hdr_v1, little-endian fields.
const VNET_F_NEEDS_CSUM = 1;
const VNET_GSO_TCPV4 = 1;
const VNET_GSO_TCPV6 = 4;
const VNET_FLAGS = 0;
const VNET_GSO_TYPE = 1;
const VNET_HDR_LEN_FIELD = 2;
const VNET_GSO_SIZE = 4;
const VNET_CSUM_START = 6;
const VNET_CSUM_OFFSET = 8;
// TUNSETOFFLOAD: what the namespace's kernel may leave to us (checksums, TCP segmentation).
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const TUN_F_TSO_ECN = 0x08;

export interface TapStats {
  rxFrames: number;
  txFrames: number;
  txDropped: number;
}

export class TapBackend implements FrameSink {
  readonly buf = table.u8(TX_ARENA);
  readonly maxAlloc = TX_ARENA - VNET_HDR_LEN;
  readonly frameRoom = VNET_HDR_LEN;
  /** Segmentation offload towards the namespace (off with PASTA_NO_OFFLOAD=1). */
  readonly tsoMax = process.env.PASTA_NO_OFFLOAD === "1" ? 0 : TSO_MAX_PAYLOAD;
  readonly csumOffload = this.tsoMax > 0;
  readonly stats: TapStats = { rxFrames: 0, txFrames: 0, txDropped: 0 };
  private readonly rx = table.u8(RX_SLOT * RX_BATCH);
  private readonly rxLens = table.u32(RX_BATCH);
  private readonly txPairs = table.u32(TX_MAX_FRAMES * 2);
  private txCount = 0;
  private txPos = 0;
  /** When the last frame came from the namespace (monotonic ms). */
  lastRx = 0;

  constructor(
    readonly fd: number,
    readonly ifname: string,
    private readonly onFrame: FrameHandler,
    private readonly pcap: PcapWriter | null,
    private readonly onBatchEnd: () => void,
  ) {}

  /** Create the tap inside the namespace nsfd (-1: here); throws with a clear message. */
  static open(nsfd: number, name: string, onFrame: FrameHandler, pcap: PcapWriter | null, onBatchEnd: () => void): TapBackend {
    const nameBuf = new Uint8Array(16);
    const nameIn = new TextEncoder().encode(name.slice(0, 15) + "\0");
    const fd = sys.shim_ns_tap_open(nsfd, nameIn, IFF_VNET_HDR, nameBuf);
    if (fd === -2 || fd === -19) throw new Error("cannot open /dev/net/tun: no tun device on this system");
    if (fd === -13 || fd === -1)
      throw new Error("cannot open /dev/net/tun: permission denied (make it readable and writable for this user)");
    if (fd < 0) throw new Error(`cannot create tap device ${name}: errno ${-fd}`);
    const rc = sys.shim_tap_set_vnet_hdr_sz(fd, VNET_HDR_LEN);
    if (rc < 0) throw new Error(`TUNSETVNETHDRSZ failed: errno ${-rc}`);
    if (process.env.PASTA_NO_OFFLOAD !== "1") sys.shim_tap_set_offload(fd, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN);
    const end = nameBuf.indexOf(0);
    return new TapBackend(fd, new TextDecoder().decode(nameBuf.subarray(0, end < 0 ? 16 : end)), onFrame, pcap, onBatchEnd);
  }

  /** Read pending frames (RX_ROUNDS batches at most) and dispatch each; false when the tap is gone. */
  readAll(): boolean {
    for (let round = 0; round < RX_ROUNDS; round++) {
      const n = sys.shim_read_batch(this.fd, this.rx, RX_SLOT, RX_BATCH, this.rxLens);
      if (n < 0) return n === -11;
      if (n > 0) this.lastRx = performance.now();
      for (let i = 0; i < n; i++) {
        const len = this.rxLens[i]! - VNET_HDR_LEN;
        if (len <= 0) continue;
        const off = i * RX_SLOT + VNET_HDR_LEN;
        this.stats.rxFrames++;
        if (this.pcap) this.pcap.write(this.rx, off, len);
        if (traceOn) traceFrame(false, this.rx, off, len);
        this.onFrame(this.rx, off, len, (this.rx[off - VNET_HDR_LEN + VNET_FLAGS]! & VNET_F_NEEDS_CSUM) !== 0);
      }
      this.onBatchEnd();
      if (n < RX_BATCH) return true;
    }
    return true;
  }

  alloc(maxLen: number, frames = 1): number {
    const need = VNET_HDR_LEN + maxLen;
    if (this.txCount + frames > TX_MAX_FRAMES || this.txPos + need > TX_ARENA) this.flush();
    if (maxLen > this.maxAlloc) return -1;
    return this.txPos + VNET_HDR_LEN;
  }

  commit(off: number, len: number): void {
    const start = off - VNET_HDR_LEN;
    this.buf.fill(0, start, off);
    this.txPairs[2 * this.txCount] = start;
    this.txPairs[2 * this.txCount + 1] = len + VNET_HDR_LEN;
    this.txCount++;
    this.txPos = (off + len + 15) & ~15;
    if (this.pcap) this.pcap.write(this.buf, off, len);
    if (traceOn) traceFrame(true, this.buf, off, len);
  }

  markCsumPartial(off: number, l4: number, csumField: number): void {
    const h = off - VNET_HDR_LEN;
    this.buf[h + VNET_FLAGS] = VNET_F_NEEDS_CSUM;
    wr16le(this.buf, h + VNET_CSUM_START, l4 - off);
    wr16le(this.buf, h + VNET_CSUM_OFFSET, csumField);
  }

  markTso(off: number, l4: number, mss: number, v6: boolean): void {
    this.markCsumPartial(off, l4, TCP_CSUM);
    if (mss === 0) return;
    const h = off - VNET_HDR_LEN;
    const b = this.buf;
    b[h + VNET_GSO_TYPE] = v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4;
    wr16le(b, h + VNET_HDR_LEN_FIELD, l4 - off + tcpHlen(b, l4));
    wr16le(b, h + VNET_GSO_SIZE, mss);
  }

  /** Give the receive slots and, with nothing queued, the transmit arena back to the kernel (Loop.onQuiet). */
  releaseIdle(): void {
    release(this.rx);
    if (this.txCount === 0) release(this.buf);
  }

  /** Write every queued frame in one shim call. */
  flush(): void {
    if (this.txCount === 0) return;
    const sent = sys.shim_write_batch(this.fd, this.buf, this.txPairs, this.txCount);
    const ok = Math.max(sent, 0);
    this.stats.txFrames += ok;
    this.stats.txDropped += this.txCount - ok;
    this.txCount = 0;
    this.txPos = 0;
  }
}

function wr16le(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 255;
  b[o + 1] = v >>> 8;
}
