/**
 * FrameSink: where protocol handlers write frames for the guest.
 *
 * A handler asks for room for one frame, writes it (Ethernet header first)
 * straight into the sink's buffer, then commits the length it used. The tap
 * backend flushes all committed frames of one wake-up in one batched write.
 * Nothing is allocated per frame: the buffer is preallocated and reused.
 */
export interface FrameSink {
  /** The buffer frames are written into. */
  readonly buf: Uint8Array;
  /**
   * Bytes the backend keeps in front of every frame (virtio-net header, length
   * prefix). To lay several frames out in one alloc(), space them at least
   * maxFrameLen + frameRoom apart and commit each.
   */
  readonly frameRoom: number;
  /** Room for a frame of up to maxLen bytes: the offset of its Ethernet header, or -1 when the batch is full. */
  alloc(maxLen: number): number;
  /** Queue the frame written at off (from alloc) with its real length. */
  commit(off: number, len: number): void;
}
