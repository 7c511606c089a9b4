/**
 * The guest-to-host batching of src/flows/tcp.ts, driven frame by frame: a
 * real Dispatcher and Loop, a sink that keeps what it is given, and a
 * listening socket on the host's loopback (the gateway address maps there).
 *
 * A batch of in-order segments is written to the socket with one sendmsg()
 * at the batch's end. When the socket takes only part of it, the ACK to the
 * guest must cover exactly what the socket took; the guest then sends the
 * rest again from that number, and the server receives every byte once, in
 * order.
 */
import { afterAll, expect, test } from "bun:test";
import { Dispatcher } from "../../src/dispatch.ts";
import { Loop } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";
import * as w from "../../src/wire/index.ts";
import { turner } from "../tools/loop-turn.ts";
import { flowTestConfig, guestSegment, loopbackListener, SegmentSink } from "../tools/flow-config.ts";

const GUEST_PORT = 40000;
const MSS = 65000;
const cfg = flowTestConfig;

const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) sys.shim_close(fd);
});

/** Byte k of the stream the guest sends. */
const streamByte = (k: number) => (k * 7 + (k >>> 11)) & 255;

test("a batch the socket takes only in part: the ACK covers what it took, the rest comes again, the server gets every byte once", () => {
  // the server: a small receive buffer, not read until the end, so that the socket fills
  const { lfd, port } = loopbackListener(fds, 64 << 10);

  const loop = new Loop();
  const sink = new SegmentSink();
  const d = new Dispatcher(cfg, loop, sink);
  const turn = turner(loop);
  const rx = new Uint8Array(24 << 20);
  /** One batch of frames from the guest; afterFrame(k) runs once frame k is handled. */
  const batch = (frames: [number, number, number, Uint8Array | null][], afterFrame?: (k: number) => void) => {
    let at = 0;
    frames.forEach(([flags, seq, ack, payload], k) => {
      const n = guestSegment(rx, at, GUEST_PORT, port, flags, seq, ack, payload, MSS);
      d.frame(rx, at, n);
      afterFrame?.(k);
      at += n;
    });
    d.batchEnd();
    d.flush();
  };
  const lastAck = () => sink.segs.filter((s) => s.flags & w.TCP_ACK_FLAG).at(-1)!.ack;

  // handshake: SYN, our connect completes, SYN-ACK, the guest's ACK
  const isn = 1000;
  batch([[w.TCP_SYN, isn, 0, null]]);
  for (let k = 0; k < 50 && !sink.segs.some((s) => s.flags & w.TCP_SYN); k++) turn();
  const synAck = sink.segs.find((s) => s.flags & w.TCP_SYN)!;
  expect(synAck.flags & w.TCP_ACK_FLAG).toBeTruthy();
  expect(synAck.ack).toBe(isn + 1);
  const ourSeq = (synAck.seq + 1) >>> 0;
  batch([[w.TCP_ACK_FLAG, isn + 1, ourSeq, null]]);

  const total = 24 << 20;
  const cfd = sys.shim_accept(lfd, new Uint8Array(28), new Int32Array([28]));
  expect(cfd).toBeGreaterThanOrEqual(0);
  fds.push(cfd);
  const got = new Uint8Array(total);
  let have = 0;
  /** The server reads what it has. */
  const drain = () => {
    for (;;) {
      const n = sys.shim_recv(cfd, got.subarray(have), total - have, 0x40 /* MSG_DONTWAIT */);
      if (n <= 0) return;
      have += n;
    }
  };

  // One batch far larger than the socket can take (send buffer and the
  // server's receive buffer), of more segments than one run holds (256): the
  // 257th writes the first run out, in part, mid-batch. The server then reads,
  // so that the socket has room again before the batch ends.
  const seg = (from: number, n: number) => {
    const p = new Uint8Array(n);
    for (let k = 0; k < n; k++) p[k] = streamByte(from + k);
    return p;
  };
  let sent = 0;
  const frames: [number, number, number, Uint8Array | null][] = [];
  for (let off = 0; off < 300 * MSS && off < total; off += MSS) frames.push([w.TCP_ACK_FLAG, isn + 1 + off, ourSeq, seg(off, MSS)]);
  sent = frames.length * MSS;
  batch(frames, (k) => {
    if (k === 256) drain();
  });
  const took = lastAck() - (isn + 1);
  expect(took).toBeGreaterThan(0);
  expect(took).toBeLessThan(sent);

  // the server reads everything, the guest resends from the ACK each time
  for (let round = 0; round < 2000 && have < total; round++) {
    drain();
    turn();
    const acked = lastAck() - (isn + 1);
    if (acked < total) {
      const n = Math.min(MSS, total - acked);
      batch([[w.TCP_ACK_FLAG, isn + 1 + acked, ourSeq, seg(acked, n)]]);
    }
  }
  drain();
  expect(have).toBe(total);
  let bad = -1;
  for (let k = 0; k < total && bad < 0; k++) if (got[k] !== streamByte(k)) bad = k;
  expect(bad).toBe(-1);
  expect(lastAck()).toBe((isn + 1 + total) >>> 0);
});
