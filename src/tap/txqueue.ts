/**
 * The queue of frames for the guest, shared by the backends that cannot
 * write a frame the moment it is made: passt's stream socket (tap/stream.ts)
 * and the vhost-user rings (tap/vhost-user.ts).
 *
 * Theory of operation
 * -------------------
 * Frames are built in place in one arena (`buf`, the FrameSink's buffer),
 * each behind `room` bytes the backend fills in (a length prefix, a
 * virtio-net header), and listed in `pairs` as (start, room + length) in
 * the order they were committed. The arena is used as a ring: a new frame
 * goes after the last one, or, once that end is reached, at the front,
 * before the oldest frame still queued (the head). Frames leave from the
 * head; a frame may leave in parts (`headSent`, the stream socket's partial
 * writes). When the queue empties, everything starts again at 0.
 *
 * place() refuses room (-1) when the arena or the list is full, and, for
 * any request larger than TX_SMALL, when more than TX_QUEUE_MAX bytes wait
 * already: TCP then leaves the rest in its sockets, and control segments
 * still get through. The owner marks itself congested on a refusal and
 * clears that once `queued` is back under TX_LOW_WATER.
 */
import { release, table } from "../loop/arena.ts";

/** The arena: room for TX_QUEUE_MAX queued bytes plus the largest batch a flow asks for at once (32 frames of 64 KiB), twice over. */
export const TX_ARENA = 8 << 20;
/** Frames queued at once (pure ACKs are small: many fit). */
export const TX_MAX_FRAMES = 16384;
/**
 * Past this many bytes queued, place() refuses more: a deep queue of our
 * own only made every byte colder in the cache by the time it left, and
 * made each (go-back-N) retransmission send again megabytes that were
 * still waiting here: with 16 MiB queued, passt spent 1.2-1.8 CPU-s per GB
 * towards a 65520-byte MTU guest, 0.8-0.9 with 1-2 MiB.
 */
export const TX_QUEUE_MAX = 2 << 20;
/** Requests up to this size (ACKs, control segments) are not held to TX_QUEUE_MAX, only to the arena's room. */
export const TX_SMALL = 1024;
/**
 * Congestion ends when the queue is back under this many bytes. Far below
 * TX_QUEUE_MAX: each end of congestion costs the owner a pass over every UDP
 * socket (epoll_ctl each) and every TCP flow, so it must not come every few
 * frames in a bulk transfer.
 */
export const TX_LOW_WATER = TX_QUEUE_MAX / 4;

export class TxQueue {
  readonly buf = table.u8(TX_ARENA);
  /** Queued frames: (start of the room before the frame, room + frame length) pairs. */
  readonly pairs = table.u32(TX_MAX_FRAMES * 2);
  /** Frames listed in pairs; the first not completely gone, and how much of it went. */
  count = 0;
  head = 0;
  headSent = 0;
  /**
   * Where the next frame goes: the end of the last committed one, or the
   * front of the arena once allocation has wrapped there. Queued frames live
   * in [start of the head frame, pos) when pos is past that start, else
   * (wrapped) from that start to where the old run ended, then [0, pos).
   */
  pos = 0;
  /** Bytes queued and not yet gone, the room in front of each frame included. */
  queued = 0;

  /** The largest frame (or run of frames) that fits the arena behind its room. */
  readonly maxPlace: number;

  /** Bytes in front of each frame, written by the backend. */
  constructor(readonly room: number) {
    this.maxPlace = TX_ARENA - room;
  }

  empty(): boolean {
    return this.head === this.count;
  }

  /** With nothing queued, give the arena's pages back to the kernel (Loop.onQuiet). */
  releaseIdle(): void {
    if (this.empty()) release(this.buf);
  }

  /** Forget every frame; returns how many had not gone. */
  clear(): number {
    const dropped = this.count - this.head;
    this.head = this.count = this.headSent = this.pos = this.queued = 0;
    return dropped;
  }

  /** A request no emptying of the queue could ever make room for. */
  neverFits(maxLen: number, frames: number): boolean {
    return maxLen > this.maxPlace || frames > TX_MAX_FRAMES;
  }

  /**
   * Offset in buf where a frame of up to maxLen bytes goes (after its room),
   * one of up to `frames` the caller is about to commit, or -1 when there is
   * no room now: after the last frame, or else (wrapping) at the front,
   * before the head. The caller has refused what neverFits first.
   */
  place(maxLen: number, frames: number): number {
    const need = this.room + maxLen;
    if (this.empty()) {
      this.clear();
      return this.room;
    }
    if (this.count + frames > TX_MAX_FRAMES) {
      this.compact();
      if (this.count + frames > TX_MAX_FRAMES) return -1;
    }
    if (this.queued > TX_QUEUE_MAX && need > TX_SMALL) return -1;
    const head = this.pairs[2 * this.head]!;
    if (this.pos > head) {
      if (this.pos + need <= TX_ARENA) return this.pos + this.room;
      if (need > head) return -1;
      this.pos = 0;
      return this.room;
    }
    return this.pos + need <= head ? this.pos + this.room : -1;
  }

  /** The frame at off (from place), len bytes long, is queued. */
  commit(off: number, len: number): void {
    this.pairs[2 * this.count] = off - this.room;
    this.pairs[2 * this.count + 1] = len + this.room;
    this.count++;
    this.pos = off + len;
    this.queued += len + this.room;
  }

  /** Start (of the room) and total length of the head frame. */
  headStart(): number {
    return this.pairs[2 * this.head]!;
  }

  headTotal(): number {
    return this.pairs[2 * this.head + 1]!;
  }

  /** The head frame is gone (whole). */
  advanceHead(): void {
    this.queued -= this.pairs[2 * this.head + 1]! - this.headSent;
    this.head++;
    this.headSent = 0;
  }

  /** n more bytes went out from the head on: returns how many frames they completed. */
  advanceBytes(n: number): number {
    let done = 0;
    let left = n;
    while (left > 0) {
      const rest = this.pairs[2 * this.head + 1]! - this.headSent;
      if (left < rest) {
        this.headSent += left;
        this.queued -= left;
        return done;
      }
      left -= rest;
      this.advanceHead();
      done++;
    }
    return done;
  }

  /** Move the entries of the frames still queued to the front of pairs (their bytes stay where they are). */
  private compact(): void {
    if (this.head === 0) return;
    this.pairs.copyWithin(0, 2 * this.head, 2 * this.count);
    this.count -= this.head;
    this.head = 0;
  }
}
