/**
 * Segments from the guest out of order within one batch (src/flows/tcp.ts,
 * placeHeld): a segment past a hole is held until the end of the batch, and
 * once a later segment of the batch fills the hole, it follows in sequence
 * order. The server must receive every byte once, in order, and the guest
 * must see one ACK for all of it and no duplicate ACK. A hole that nothing in
 * the batch fills: what lies past it is dropped with a duplicate ACK each, and
 * the guest's retransmission completes the stream.
 *
 * A real Dispatcher and Loop, a sink that keeps the segments sent to the
 * guest, and a server on the host's loopback (the gateway address maps there).
 */
import { afterAll, expect, test } from "bun:test";
import { Dispatcher } from "../../src/dispatch.ts";
import { tcpStats } from "../../src/flows/tcp.ts";
import { Loop } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";
import * as w from "../../src/wire/index.ts";
import { turner } from "../tools/loop-turn.ts";
import { flowTestConfig, guestSegment, loopbackListener, SegmentSink } from "../tools/flow-config.ts";

const GUEST_PORT = 40003;
const MSS = 1460;
const MSG_DONTWAIT = 0x40;

const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) sys.shim_close(fd);
});

/** Byte k of the stream the guest sends. */
const streamByte = (k: number) => (k * 13 + (k >>> 9)) & 255;

/** A connection from the guest to a loopback server, and a batch sender; returns what the tests need. */
function connect() {
  const { lfd, port } = loopbackListener(fds);
  const loop = new Loop();
  const sink = new SegmentSink();
  const d = new Dispatcher(flowTestConfig, loop, sink);
  const turn = turner(loop);
  const rx = new Uint8Array(1 << 20);
  const isn = 5000;
  /** One batch of frames from the guest, in the order given: [flags, seq, payload]. */
  const batch = (frames: [number, number, Uint8Array | null][]) => {
    let at = 0;
    for (const [flags, seq, payload] of frames) {
      const n = guestSegment(rx, at, GUEST_PORT, port, flags, seq, ourSeq, payload, MSS);
      d.frame(rx, at, n);
      at += n;
    }
    d.batchEnd();
    d.flush();
  };
  let ourSeq = 0;
  batch([[w.TCP_SYN, isn, null]]);
  for (let k = 0; k < 50 && !sink.segs.some((s) => s.flags & w.TCP_SYN); k++) turn();
  const synAck = sink.segs.find((s) => s.flags & w.TCP_SYN)!;
  expect(synAck.ack).toBe(isn + 1);
  ourSeq = (synAck.seq + 1) >>> 0;
  batch([[w.TCP_ACK_FLAG, isn + 1, null]]);
  const cfd = sys.shim_accept(lfd, new Uint8Array(28), new Int32Array([28]));
  expect(cfd).toBeGreaterThanOrEqual(0);
  fds.push(cfd);
  const got: number[] = [];
  const buf = new Uint8Array(1 << 16);
  /** What the server has received so far (it reads all there is). */
  const received = () => {
    for (;;) {
      const n = sys.shim_recv(cfd, buf, buf.length, MSG_DONTWAIT);
      if (n <= 0) return got;
      for (let k = 0; k < n; k++) got.push(buf[k]!);
    }
  };
  /** Segment number k of the stream (MSS bytes each): [flags, seq, payload]. */
  const seg = (k: number, flags = w.TCP_ACK_FLAG): [number, number, Uint8Array] => {
    const p = new Uint8Array(MSS);
    for (let j = 0; j < MSS; j++) p[j] = streamByte(k * MSS + j);
    return [flags, isn + 1 + k * MSS, p];
  };
  /** The ACKs sent to the guest from now on. */
  const mark = sink.segs.length;
  const acks = () => sink.segs.slice(mark).filter((s) => s.flags & w.TCP_ACK_FLAG);
  return { batch, seg, received, acks, isn, sink, turn };
}

/** Wait (bounded) until the server has n bytes. */
function receivedN(c: ReturnType<typeof connect>, n: number): number[] {
  for (let k = 0; k < 100 && c.received().length < n; k++) c.turn();
  return c.received();
}

function expectStream(got: number[], n: number): void {
  expect(got.length).toBe(n);
  let bad = -1;
  for (let k = 0; k < n && bad < 0; k++) if (got[k] !== streamByte(k)) bad = k;
  expect(bad).toBe(-1);
}

test("one batch out of order: every byte reaches the server once, in order; one ACK for all of it, no duplicate ACK", () => {
  const c = connect();
  const dropsBefore = tcpStats.outOfOrder;
  // 0, then 2 and 3 past a hole, 1 filling it, 5 past another, 4 filling that one
  c.batch([c.seg(0), c.seg(2), c.seg(3), c.seg(1), c.seg(5), c.seg(4)]);
  expectStream(receivedN(c, 6 * MSS), 6 * MSS);
  const acks = c.acks();
  expect(acks.map((a) => a.ack)).toEqual([c.isn + 1 + 6 * MSS]);
  expect(tcpStats.outOfOrder).toBe(dropsBefore);
});

test("segments in reverse order, and a FIN past the hole: all of it placed, the FIN taken once its data is", () => {
  const c = connect();
  c.batch([c.seg(3, w.TCP_ACK_FLAG | w.TCP_FIN), c.seg(2), c.seg(1), c.seg(0)]);
  expectStream(receivedN(c, 4 * MSS), 4 * MSS);
  // the FIN's sequence number is acknowledged too
  expect(c.acks().at(-1)!.ack).toBe(c.isn + 1 + 4 * MSS + 1);
});

test("a hole nothing in the batch fills: a duplicate ACK for each segment past it, and the retransmission completes the stream", () => {
  const c = connect();
  const dropsBefore = tcpStats.outOfOrder;
  c.batch([c.seg(0), c.seg(2), c.seg(3)]);
  expect(receivedN(c, MSS).length).toBe(MSS);
  const afterFirst = c.isn + 1 + MSS;
  // one ACK per segment past the hole, all for what precedes it (the first also acknowledges segment 0)
  expect(c.acks().map((a) => a.ack)).toEqual([afterFirst, afterFirst]);
  expect(tcpStats.outOfOrder - dropsBefore).toBe(2);
  // the guest sends again from the ACK
  c.batch([c.seg(1), c.seg(2), c.seg(3)]);
  expectStream(receivedN(c, 4 * MSS), 4 * MSS);
  expect(c.acks().at(-1)!.ack).toBe(c.isn + 1 + 4 * MSS);
});
