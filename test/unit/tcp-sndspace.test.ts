/**
 * The window we advertise to the guest is the free space of the host
 * socket's send buffer, and src/flows/tcp.ts asks the socket for it (two
 * system calls) only when its lower bound (the last answer less what we
 * wrote since) runs low: windowToGuest, sndSpace.
 *
 * A guest that sends exactly what each window allows, to a server that
 * does not read, must never have data dropped (the bound is never above the
 * real space: everything sent is taken and acknowledged), the window's
 * right edge must not move back, the window must close once the socket is
 * full and open again once the server reads; and over a bulk transfer the
 * socket is asked far less often than once per ACK.
 *
 * A real Dispatcher and Loop, a sink that keeps the segments sent to the
 * guest, and a server on the host's loopback (the gateway address maps
 * there).
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { parseMac } from "../../src/conf/config.ts";
import { Dispatcher } from "../../src/dispatch.ts";
import { Loop } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";
import * as w from "../../src/wire/index.ts";
import { turner } from "../tools/loop-turn.ts";
import { GUEST4, GW4, OUR_MAC, flowTestConfig, loopbackListener, SegmentSink } from "../tools/flow-config.ts";

const GUEST_MAC = parseMac("02:00:00:00:00:02");
const GUEST_PORT = 40002;
const MSS = 16000;
/** The window scale we announce (tcp.ts OUR_WSCALE): the window's unit is 256 bytes. */
const OUR_WS = 8;

const fds: number[] = [];
/** The shim's function, wrapped to count the questions tcp.ts asks (its calls go through the object). */
const shim = sys as unknown as { shim_tcp_sndspace: (fd: number) => number };
const realSndspace = shim.shim_tcp_sndspace;
let asked = 0;
shim.shim_tcp_sndspace = (fd: number) => {
  asked++;
  return realSndspace(fd);
};
afterAll(() => {
  shim.shim_tcp_sndspace = realSndspace;
  for (const fd of fds) sys.shim_close(fd);
});

/** A frame from the guest to the gateway's port at b[at] (SYNs offer MSS and window scaling): its length. */
function segment(b: Uint8Array, at: number, port: number, flags: number, seq: number, ack: number, plen: number): number {
  const optLen = flags & w.TCP_SYN ? 8 : 0;
  const l4len = w.TCP_HLEN + optLen + plen;
  const ip = w.writeEth(b, at, OUR_MAC, GUEST_MAC, w.ETH_P_IP);
  const l4 = w.writeIpv4(b, ip, GUEST4, GW4, w.IPPROTO_TCP, l4len, 64);
  const o = w.writeTcp(b, l4, GUEST_PORT, port, seq, ack, flags, 65535, optLen);
  if (optLen) w.writeTcpOptWscale(b, w.writeTcpOptMss(b, o, MSS), 7);
  b.fill(0x5a, l4 + w.TCP_HLEN + optLen, l4 + l4len);
  w.tcpSetChecksum4(b, ip, l4, l4len);
  return l4 + l4len - at;
}

test("a guest filling every window we advertise loses nothing, the window closes when the socket is full and opens when it drains, and the socket is asked far less than once per ACK", () => {
  // the server: a small receive buffer, not read until the socket is full
  const { lfd, port } = loopbackListener(fds, 64 << 10);
  const loop = new Loop();
  const sink = new SegmentSink();
  const d = new Dispatcher(flowTestConfig, loop, sink);
  const turn = turner(loop);
  const rx = new Uint8Array(4 << 20);
  const batch = (frames: [number, number, number, number][]) => {
    let at = 0;
    for (const [flags, seq, ack, plen] of frames) {
      const n = segment(rx, at, port, flags, seq, ack, plen);
      d.frame(rx, at, n);
      at += n;
    }
    d.batchEnd();
    d.flush();
  };
  const last = () => sink.segs.at(-1)!;
  const rightEdge = () => (last().ack + (last().wnd << OUR_WS)) >>> 0;

  const isn = 1000;
  batch([[w.TCP_SYN, isn, 0, 0]]);
  for (let k = 0; k < 50 && !sink.segs.some((s) => s.flags & w.TCP_SYN); k++) turn();
  const ourSeq = (sink.segs.find((s) => s.flags & w.TCP_SYN)!.seq + 1) >>> 0;
  batch([[w.TCP_ACK_FLAG, isn + 1, ourSeq, 0]]);
  const cfd = sys.shim_accept(lfd, new Uint8Array(28), new Int32Array([28]));
  expect(cfd).toBeGreaterThanOrEqual(0);
  fds.push(cfd);

  // The guest sends what the window allows, in batches of up to 4 segments (64 KB),
  // until the window is closed; the server does not read.
  let next = isn + 1;
  // the SYN-ACK's window is not scaled: the first ACK of data sets the first edge
  let edge = -1;
  let acks = 0;
  asked = 0;
  let sent = 0;
  for (let round = 0; round < 5000; round++) {
    const allowed = edge < 0 ? 4 * MSS : w.seqDiff(rightEdge(), next);
    if (allowed < MSS) break;
    const frames: [number, number, number, number][] = [];
    for (let k = 0; k < 4 && (k + 1) * MSS <= allowed; k++) frames.push([w.TCP_ACK_FLAG, next + k * MSS, ourSeq, MSS]);
    const before = sink.segs.length;
    batch(frames);
    next = (next + frames.length * MSS) >>> 0;
    sent += frames.length * MSS;
    acks += sink.segs.length - before;
    // everything sent within the window was taken, and acknowledged
    expect(last().ack).toBe(next);
    // the right edge does not move back (by more than the rounding of one window unit)
    if (edge >= 0) expect(w.seqDiff(rightEdge(), edge)).toBeGreaterThan(-(1 << OUR_WS));
    if (edge < 0 || w.seqDiff(rightEdge(), edge) > 0) edge = rightEdge();
  }
  // the socket filled (a few MiB: its send buffer, the server's small receive buffer) and the window closed
  expect(sent).toBeGreaterThan(1 << 20);
  expect(w.seqDiff(rightEdge(), next)).toBeLessThan(MSS);
  // asked far less than once per ACK, where the send buffer is large (net.core.wmem_max; 4 MiB here)
  const wmemMax = Number(readFileSync("/proc/sys/net/core/wmem_max", "utf8"));
  if (wmemMax >= 2 << 20) expect(asked).toBeLessThan(acks / 4);
  else console.log(`net.core.wmem_max is ${wmemMax}: the count of questions is not checked`);

  // the server reads everything: a window update opens the window again
  const got = new Uint8Array(1 << 20);
  let have = 0;
  for (let k = 0; k < 100 && w.seqDiff(rightEdge(), next) < 1 << 20; k++) {
    for (;;) {
      const n = sys.shim_recv(cfd, got, got.length, 0x40 /* MSG_DONTWAIT */);
      if (n <= 0) break;
      have += n;
    }
    turn();
    d.flush();
    Bun.sleepSync(10);
  }
  expect(w.seqDiff(rightEdge(), next)).toBeGreaterThanOrEqual(1 << 20);
  expect(have).toBeGreaterThan(0);
});
