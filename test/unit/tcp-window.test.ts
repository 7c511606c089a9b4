/**
 * The guest's window is taken only from segments whose ACK is acceptable
 * (src/flows/tcp.ts, guestAck): a segment of a connection with an
 * acknowledgment number far from anything we sent (a stale or forged one,
 * as a hostile guest's raw socket writes them) must not close the window,
 * nor open it past what the guest advertised.
 *
 * A real Dispatcher and Loop, a sink that keeps the segments sent to the
 * guest, and a server on the host's loopback (the gateway address maps
 * there) that writes to the guest.
 */
import { afterAll, expect, test } from "bun:test";
import { parseMac } from "../../src/conf/config.ts";
import { Dispatcher } from "../../src/dispatch.ts";
import { Loop } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";
import * as w from "../../src/wire/index.ts";
import { turner } from "../tools/loop-turn.ts";
import { GUEST4, GW4, OUR_MAC, flowTestConfig, loopbackListener, SegmentSink } from "../tools/flow-config.ts";

const GUEST_MAC = parseMac("02:00:00:00:00:02");
const GUEST_PORT = 40001;
const ISN = 5000;
/** A quarter of the sequence space: far from anything a connection sends. */
const FAR = 2 ** 30;

const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) sys.shim_close(fd);
});

/** A frame from the guest to the gateway's port at b[0], window wnd (no scaling): its length. */
function segment(b: Uint8Array, port: number, flags: number, seq: number, ack: number, wnd: number): number {
  const optLen = flags & w.TCP_SYN ? 4 : 0;
  const l4len = w.TCP_HLEN + optLen;
  const ip = w.writeEth(b, 0, OUR_MAC, GUEST_MAC, w.ETH_P_IP);
  const l4 = w.writeIpv4(b, ip, GUEST4, GW4, w.IPPROTO_TCP, l4len, 64);
  const o = w.writeTcp(b, l4, GUEST_PORT, port, seq, ack >>> 0, flags, wnd, optLen);
  if (optLen) w.writeTcpOptMss(b, o, 1460);
  w.tcpSetChecksum4(b, ip, l4, l4len);
  return l4 + l4len;
}

test("segments with an ACK far out of range (zero or huge windows) leave the window as the guest's real ACKs set it", () => {
  const { lfd, port } = loopbackListener(fds);

  const loop = new Loop();
  const sink = new SegmentSink();
  const d = new Dispatcher(flowTestConfig, loop, sink);
  const turn = turner(loop);
  const rx = new Uint8Array(2048);
  const send = (flags: number, seq: number, ack: number, wnd: number) => {
    d.frame(rx, 0, segment(rx, port, flags, seq, ack, wnd));
    d.batchEnd();
    d.flush();
  };

  // handshake; the guest offers no window scaling: windows are what it says
  send(w.TCP_SYN, ISN, 0, 65535);
  for (let k = 0; k < 50 && !sink.segs.some((s) => s.flags & w.TCP_SYN); k++) turn();
  const ourIsn = sink.segs.find((s) => s.flags & w.TCP_SYN)!.seq;
  const next = (ourIsn + 1) >>> 0;
  send(w.TCP_ACK_FLAG, ISN + 1, next, 1000);
  const cfd = sys.shim_accept(lfd, new Uint8Array(28), new Int32Array([28]));
  expect(cfd).toBeGreaterThanOrEqual(0);
  fds.push(cfd);

  // forged segments: ACKs far ahead of and far behind what we sent, windows zero and huge
  send(w.TCP_ACK_FLAG, ISN + 1, next + FAR, 0);
  send(w.TCP_ACK_FLAG, ISN + 1, next - FAR, 0);
  send(w.TCP_ACK_FLAG | w.TCP_PSH, ISN + 1, next + 3 * FAR, 0);

  // the server writes: we send what the real window (1000 bytes) allows, no less, no more
  const data = new Uint8Array(5000).fill(7);
  expect(sys.shim_send(cfd, data, data.length, 0)).toBe(data.length);
  const before = sink.segs.length;
  for (let k = 0; k < 50 && !sink.segs.slice(before).some((s) => s.len > 0); k++) turn();
  const sentBytes = () => sink.segs.slice(before).reduce((n, s) => n + s.len, 0);
  expect(sentBytes()).toBe(1000);

  // a forged huge window does not open it further
  send(w.TCP_ACK_FLAG, ISN + 1, next + FAR, 65535);
  for (let k = 0; k < 5; k++) turn();
  expect(sentBytes()).toBe(1000);

  // the guest's real ACK of those bytes, with a window of 4000, lets the rest go
  send(w.TCP_ACK_FLAG, ISN + 1, next + 1000, 4000);
  for (let k = 0; k < 50 && sentBytes() < 5000; k++) turn();
  expect(sentBytes()).toBe(5000);
});
