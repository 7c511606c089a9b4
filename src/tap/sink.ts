/**
 * FrameSink: where protocol handlers write frames for the guest.
 *
 * A handler asks for room for one frame, writes it (Ethernet header first)
 * straight into the sink's buffer, then commits the length it used. The tap
 * backend flushes all committed frames of one wake-up in one batched write.
 * Nothing is allocated per frame: the buffer is preallocated and reused.
 */
import { log } from "../log.ts";
import { describeFrame } from "../wire/describe.ts";
import * as w from "../wire/index.ts";
import { sys } from "../native/ffi.ts";

export interface FrameSink {
  /** The buffer frames are written into. */
  readonly buf: Uint8Array;
  /**
   * Bytes the backend keeps in front of every frame (virtio-net header, length
   * prefix). To lay several frames out in one alloc(), space them at least
   * maxFrameLen + frameRoom apart and commit each.
   */
  readonly frameRoom: number;
  /**
   * Room for maxLen bytes holding up to `frames` frames (default 1): the offset
   * where the first Ethernet header goes, or -1 when it can't be had.
   */
  alloc(maxLen: number, frames?: number): number;
  /** The largest maxLen alloc() can ever give (more gets -1 however empty the sink is): see framesThatFit. */
  readonly maxAlloc: number;
  /** Queue the frame written at off (from alloc) with its real length. */
  commit(off: number, len: number): void;
  /**
   * Largest TCP payload per frame the backend takes as one segmentation
   * offload super-frame (0: none; every frame must fit the guest's MTU and
   * carry a full checksum).
   */
  readonly tsoMax: number;
  /**
   * True when the backend takes frames whose L4 checksum is left to the
   * receiver (markCsumPartial); false: every frame carries a full checksum.
   */
  readonly csumOffload: boolean;
  /**
   * After commit(): the frame at off carries a partial L4 checksum: the
   * field at l4 + csumField (w.TCP_CSUM, w.UDP_CSUM) holds the folded
   * pseudo-header sum, and the receiving kernel computes the rest. Called
   * only when csumOffload is true (sinks without offloads need not have it).
   */
  markCsumPartial?(off: number, l4: number, csumField: number): void;
  /**
   * After commit(): a TCP frame with a partial checksum (as markCsumPartial)
   * and, with mss > 0, a super-frame to be cut into segments of mss bytes.
   * Called only when tsoMax > 0.
   */
  markTso?(off: number, l4: number, mss: number, v6: boolean): void;
  /**
   * Optional (vhost-user): room for up to `frames` frames of hdr bytes of
   * headers (Ethernet first) and up to seg bytes of payload each, total
   * payload bytes at most, straight in the guest's own receive buffers, laid
   * out in inPlace (src/tap/vu-rx.ts): the payload bytes of room, 0 when
   * there is none now (as alloc()'s -1: the sink is congested), -1 when the
   * frames cannot be built in place now (use alloc()). Nothing is taken from
   * the guest until commitInPlace.
   */
  reserveInPlace?(hdr: number, seg: number, frames: number, total: number): number;
  /** The layout reserveInPlace made: payload pieces to receive into, then, after fit(), each frame's place. */
  readonly inPlace?: InPlaceFrames;
  /**
   * After reserveInPlace and inPlace.fit(): the first `frames` frames are
   * written, their L4 header at l4 bytes past the Ethernet header, its
   * checksum field at csumField: give them to the guest. With csumOffload,
   * their L4 checksum is partial (as markCsumPartial), else whole.
   */
  commitInPlace?(frames: number, l4: number, csumField: number): void;
}

/** What a flow sees of frames laid out in the guest's buffers (src/tap/vu-rx.ts RxFrames). */
export interface InPlaceFrames {
  /** Payload pieces, in order: our addresses, lengths, how many. */
  readonly pieceAddr: Float64Array;
  readonly pieceLen: Uint32Array;
  readonly pieces: number;
  /** Frame k's pieces are pieceFirst[k] .. pieceFirst[k + 1] - 1. */
  readonly pieceFirst: Uint32Array;
  /** Our address of frame k's Ethernet header. */
  readonly at: Float64Array;
  /** Frame 0's Ethernet header: the view of guest memory it is in, and its offset there. */
  readonly headView: Uint8Array;
  readonly headOff: number;
  /** After fit(): frame k's payload length. */
  readonly plen: Uint32Array;
  /** Spread got payload bytes over the frames in order: how many frames they fill. */
  fit(got: number): number;
}

/**
 * What a backend calls for each frame from the guest: b[off..off+len),
 * Ethernet header first. csumPartial is true when the sender left its L4
 * checksum to offload (the field holds only the pseudo-header sum), so it
 * must not be verified.
 */
/**
 * Commit a UDP frame for the guest whose headers are written (IP at ip,
 * UDP at l4, len bytes of payload): with the pseudo-header sum and a
 * partial-checksum mark where the sink offloads checksums (the guest's
 * kernel adds the rest), else with the whole checksum, summed by the shim
 * (up to 64 KiB of payload: several times faster than wire/checksum.ts).
 */
export function commitUdpFrame(sink: FrameSink, b: Uint8Array, off: number, ip: number, l4: number, len: number, v6: boolean): void {
  const l4len = w.UDP_HLEN + len;
  const ps = v6 ? w.pseudoSum6(b, ip, w.IPPROTO_UDP, l4len) : w.pseudoSum4(b, ip, w.IPPROTO_UDP, l4len);
  w.wr16(b, l4 + w.UDP_CSUM, ~w.csumFold(ps) & 0xffff);
  if (!sink.csumOffload) sys.shim_udp_csum_fill(b, l4, l4len);
  sink.commit(off, l4 - off + l4len);
  if (sink.csumOffload) sink.markCsumPartial!(off, l4, w.UDP_CSUM);
}

export type FrameHandler = (b: Uint8Array, off: number, len: number, csumPartial: boolean) => void;

/** --trace: one log line for a frame the backend read from (toGuest false) or queued for the guest. */
export function traceFrame(toGuest: boolean, b: Uint8Array, off: number, len: number): void {
  log.trace(`${toGuest ? "to guest" : "from guest"}: ${describeFrame(b, off, len)}`);
}

/** Room of a NullSink: a full batch of the largest datagrams flows/udp.ts receives at once. */
const NULL_SINK_BYTES = 4 << 20;

/**
 * The sink of pasta --splice-only, which has no tap: frames are written and
 * dropped. What would reach the guest through the tap (datagrams from
 * non-loopback senders on -u ports) is received and goes nowhere, as the
 * original drops it.
 */
export class NullSink implements FrameSink {
  readonly buf = new Uint8Array(NULL_SINK_BYTES);
  readonly maxAlloc = NULL_SINK_BYTES;
  readonly frameRoom = 0;
  readonly tsoMax = 0;
  readonly csumOffload = false;

  alloc(maxLen: number): number {
    return maxLen <= this.buf.length ? 0 : -1;
  }

  commit(): void {}
}

/**
 * How many frames laid out stride bytes apart one alloc() of sink can hold,
 * at most want: the batches of frames received or peeked straight into the
 * sink's buffer ask for no more than its arena has.
 */
export function framesThatFit(sink: FrameSink, stride: number, want: number): number {
  return Math.max(1, Math.min(want, Math.floor(sink.maxAlloc / stride)));
}
