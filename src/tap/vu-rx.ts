/**
 * Frames built in place in a vhost-user guest's receive buffers: where their
 * headers and payload go, before anything is taken from the ring.
 *
 * Theory of operation
 * -------------------
 * A flow that sends socket data to the guest (flows/tcp.ts) asks the backend
 * (src/tap/vhost-user.ts, FrameSink.reserveInPlace) for up to `max` frames of
 * hdr bytes of headers (Ethernet, IP, TCP) and up to seg bytes of payload,
 * total payload bytes at most. reserve() walks the receive queue's available
 * chains from lastAvail on (src/tap/virtq.ts checks each) without taking
 * them, and lays the frames out over them, one after the other:
 *
 * - a frame starts at the start of a chain, with the 12-byte virtio-net
 *   header, and its headers after it: both must lie in the chain's first
 *   descriptor (a first descriptor too short for them ends the layout; when
 *   that is frame 0, `unfit` tells the backend to build the frames in its
 *   own buffer and copy them, which takes any layout);
 * - its payload follows the headers in that descriptor, then fills the
 *   chain's other descriptors and, with merged receive buffers (MRG_RXBUF),
 *   the following chains, until it has seg bytes of room (or what is left of
 *   total); without them, a frame is one chain and its payload what fits
 *   (a small chain makes a small frame, and the next frame follows);
 * - each stretch of payload room is a piece (pieceAddr, pieceLen: our
 *   address of guest memory, and length), in order, so that one recvmsg()
 *   with the pieces as its iovec list peeks socket data into every frame;
 * - the layout ends at `max` frames, when total is reached, when the
 *   available chains run out (the last frame may then have less than seg
 *   bytes of room), or at RX_MAX_PIECES pieces or RX_MAX_CHAINS chains.
 *
 * Once the peek placed got bytes, fit(got) spreads them over the frames in
 * order: how many frames they fill, and each one's payload length (plen).
 * used(k) then says how many of frame k's chains its bytes reach (its
 * num_buffers) and how many bytes each got (chainLen), for the used ring.
 * The chains used are always the first ones of the layout, so the backend
 * takes exactly those (lastAvail moves past them) and the rest stay
 * available for the next frames.
 *
 * Nothing here writes guest memory; every address is one that virtq.ts
 * found wholly inside a region of the memory table, and no piece reaches
 * past its descriptor.
 */
import type { GuestMemory, Segs, Virtq } from "./virtq.ts";

/** struct virtio_net_hdr_v1 (virtio 1.x: always with num_buffers). */
export const VNET_HDR_LEN = 12;
/** Frames laid out at once, at most (flows ask for 32). */
export const RX_MAX_FRAMES = 64;
/** Chains one layout takes at most (more than a ring of 1024 holds at once). */
export const RX_MAX_CHAINS = 1024;
/** Payload pieces at most: the iovec list of one recvmsg (UIO_MAXIOV is 1024, one goes to skipping). */
export const RX_MAX_PIECES = 1023;

export class RxFrames {
  /** Frames laid out. */
  n = 0;
  /** True when frame 0's headers do not fit its first descriptor: nothing is laid out, build the frame elsewhere. */
  unfit = false;
  /** Payload pieces: our addresses and lengths, in order; frame k's are pieceFirst[k] .. pieceFirst[k + 1] - 1. */
  readonly pieceAddr = new Float64Array(RX_MAX_PIECES);
  readonly pieceLen = new Uint32Array(RX_MAX_PIECES);
  pieces = 0;
  readonly pieceFirst = new Uint32Array(RX_MAX_FRAMES + 1);
  /** Frame k: region and offset of its virtio-net header; our address of its Ethernet header (for the shim). */
  readonly region = new Uint8Array(RX_MAX_FRAMES);
  readonly off = new Float64Array(RX_MAX_FRAMES);
  readonly at = new Float64Array(RX_MAX_FRAMES);
  /** Frame k: payload room, and (after fit) payload length. */
  readonly cap = new Uint32Array(RX_MAX_FRAMES);
  readonly plen = new Uint32Array(RX_MAX_FRAMES);
  /** Frame k's chains are chainFirst[k] .. chainFirst[k + 1] - 1. */
  readonly chainFirst = new Uint32Array(RX_MAX_FRAMES + 1);
  /** Per chain: its head (the id for the used ring), its bytes, and (after used()) the bytes written into it. */
  readonly chainId = new Uint16Array(RX_MAX_CHAINS);
  readonly chainRoom = new Uint32Array(RX_MAX_CHAINS);
  readonly chainLen = new Uint32Array(RX_MAX_CHAINS);
  chains = 0;
  /** Headers before the payload: the virtio-net header and the hdr bytes asked for. */
  headRoom = 0;
  /** Frame 0's Ethernet header: the view of guest memory it is in, and its offset there. */
  headView: Uint8Array = new Uint8Array(0);
  headOff = 0;

  /**
   * Lay out up to max frames (headers of hdr bytes after the virtio-net
   * header, payload up to seg bytes each, total at most) over the avail
   * chains from q.lastAvail, merging chains when merge is set. segs is
   * scratch for the walk. Returns the payload room laid out (0: none, see
   * unfit), or a virtq.ts BAD_ code for a chain that cannot be trusted.
   */
  reserve(
    mem: GuestMemory,
    q: Virtq,
    avail: number,
    merge: boolean,
    hdr: number,
    seg: number,
    max: number,
    total: number,
    segs: Segs,
  ): number {
    const head = VNET_HDR_LEN + hdr;
    this.n = this.pieces = this.chains = 0;
    this.unfit = false;
    this.headRoom = head;
    this.chainFirst[0] = this.pieceFirst[0] = 0;
    let ahead = 0;
    let left = total;
    let laid = 0;
    while (
      this.n < Math.min(max, RX_MAX_FRAMES) &&
      left > 0 &&
      ahead < avail &&
      this.chains < RX_MAX_CHAINS &&
      this.pieces < RX_MAX_PIECES
    ) {
      const want = Math.min(seg, left);
      const k = this.n;
      let room = 0;
      let firstChain = true;
      for (; room < want && ahead < avail && this.chains < RX_MAX_CHAINS && this.pieces < RX_MAX_PIECES; ahead++) {
        segs.n = 0;
        const id = q.chain(mem, ahead, true, segs);
        if (id < 0) return id;
        let s = 0;
        if (firstChain) {
          if (segs.n === 0 || segs.len[0]! < head) break;
          this.region[k] = segs.region[0]!;
          this.off[k] = segs.off[0]!;
          this.at[k] = mem.host[segs.region[0]!]! + segs.off[0]! + VNET_HDR_LEN;
          if (k === 0) {
            this.headView = mem.u8[segs.region[0]!]!;
            this.headOff = segs.off[0]! + VNET_HDR_LEN;
          }
          room += this.addPiece(mem, segs.region[0]!, segs.off[0]! + head, segs.len[0]! - head, want - room);
          s = 1;
          firstChain = false;
        }
        let bytes = 0;
        for (let t = 0; t < segs.n; t++) bytes += segs.len[t]!;
        for (; s < segs.n && room < want && this.pieces < RX_MAX_PIECES; s++) {
          room += this.addPiece(mem, segs.region[s]!, segs.off[s]!, segs.len[s]!, want - room);
        }
        this.chainId[this.chains] = id;
        this.chainRoom[this.chains] = bytes;
        this.chains++;
        if (!merge) {
          ahead++;
          break;
        }
      }
      if (firstChain) {
        // the first chain's first descriptor cannot hold the headers
        if (k === 0) this.unfit = true;
        break;
      }
      if (room === 0) {
        this.chains = this.chainFirst[k]!;
        this.pieces = this.pieceFirst[k]!;
        break;
      }
      this.cap[k] = room;
      this.n++;
      this.chainFirst[this.n] = this.chains;
      this.pieceFirst[this.n] = this.pieces;
      left -= room;
      laid += room;
      // merged: the chains ran out, or a limit was reached
      if (merge && room < want) break;
    }
    return laid;
  }

  /** A piece of up to max bytes of [off, off + len) in region r, if any room: its length. */
  private addPiece(mem: GuestMemory, r: number, off: number, len: number, max: number): number {
    const n = Math.min(len, max);
    if (n <= 0) return 0;
    this.pieceAddr[this.pieces] = mem.host[r]! + off;
    this.pieceLen[this.pieces] = n;
    this.pieces++;
    return n;
  }

  /** got payload bytes were placed (got at most the room laid out): spread them over the frames; returns how many they fill. */
  fit(got: number): number {
    let left = got;
    let k = 0;
    for (; k < this.n && left > 0; k++) {
      const len = Math.min(this.cap[k]!, left);
      this.plen[k] = len;
      left -= len;
    }
    return k;
  }

  /**
   * After fit: the chains frame k's bytes (virtio-net header, headers,
   * plen[k] of payload) reach, each one's share in chainLen; returns how
   * many (its num_buffers), at least one.
   */
  used(k: number): number {
    let left = this.headRoom + this.plen[k]!;
    const first = this.chainFirst[k]!;
    let c = first;
    const end = this.chainFirst[k + 1]!;
    for (; c < end && (left > 0 || c === first); c++) {
      const n = Math.min(this.chainRoom[c]!, left);
      this.chainLen[c] = n;
      left -= n;
    }
    return c - first;
  }
}
