/**
 * TCP data from a host socket to a vhost-user guest, built in place in the
 * guest's receive buffers (src/tap/vu-rx.ts, FrameSink.reserveInPlace): the
 * real backend (src/tap/vhost-user.ts) and Dispatcher on a Loop turned by
 * hand, a front-end of this process on the other end of a socketpair
 * (test/tools/vu-frontend.ts: guest memory in a memfd, both queues), and a
 * listening socket on the host's loopback (the gateway address maps there).
 *
 * The guest opens a connection, the server sends a stream, and the guest
 * reads each frame as its driver would (num_buffers used entries, one after
 * the other), completes a partial checksum as its offload would
 * (NEEDS_CSUM), checks it, and acknowledges. Every byte must arrive once, in
 * order, and every data frame must have been built in place (none copied
 * from the backend's own buffer): with merged buffers smaller than a segment
 * (a frame over several buffers), without merging, and with and without the
 * checksum offload.
 */
import { afterAll, expect, test } from "bun:test";
import { parseMac } from "../../src/conf/config.ts";
import { Dispatcher } from "../../src/dispatch.ts";
import { Loop } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";
import { F, FEATURES } from "../../src/tap/vhost-msg.ts";
import { VhostUserBackend } from "../../src/tap/vhost-user.ts";
import { CongestionWatch } from "../../src/tap/congestion.ts";
import * as w from "../../src/wire/index.ts";
import { turner } from "../tools/loop-turn.ts";
import { GUEST4, GW4, OUR_MAC, flowTestConfig, loopbackListener } from "../tools/flow-config.ts";
import { MEM_SIZE, QUEUE_SIZE, VuFrontend } from "../tools/vu-frontend.ts";

const GUEST_MAC = parseMac("02:00:00:00:00:02");
const GUEST_PORT = 40000;
const VNET_F_NEEDS_CSUM = 1;
const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) sys.shim_close(fd);
});

/** A TCP segment from the guest to the gateway's port, in a new frame. */
function guestSegment(port: number, flags: number, seq: number, ack: number, mss: number): Uint8Array {
  const b = new Uint8Array(128);
  const optLen = flags & w.TCP_SYN ? 4 : 0;
  const l4len = w.TCP_HLEN + optLen;
  const ip = w.writeEth(b, 0, OUR_MAC, GUEST_MAC, w.ETH_P_IP);
  const l4 = w.writeIpv4(b, ip, GUEST4, GW4, w.IPPROTO_TCP, l4len, 64);
  const o = w.writeTcp(b, l4, GUEST_PORT, port, seq, ack, flags, 65535, optLen);
  if (optLen) w.writeTcpOptMss(b, o, mss);
  w.tcpSetChecksum4(b, ip, l4, l4len);
  return b.slice(0, l4 + l4len);
}

/** Byte k of the stream the server sends. */
const streamByte = (k: number) => (k * 31 + (k >>> 10)) & 255;

interface Case {
  name: string;
  features: number;
  bufSize: number;
  mss: number;
  /** Receive buffers the guest keeps offered. */
  buffers: number;
}

const bit = (n: number) => 2 ** n;
const CASES: Case[] = [
  { name: "merged 512-byte buffers, checksum offload", features: FEATURES, bufSize: 512, mss: 4000, buffers: 128 },
  { name: "merged 700-byte buffers, whole checksums", features: FEATURES - bit(F.GUEST_CSUM), bufSize: 700, mss: 1460, buffers: 128 },
  {
    name: "one 2 KiB buffer a frame, no merging, whole checksums",
    features: FEATURES - bit(F.GUEST_CSUM) - bit(F.MRG_RXBUF),
    bufSize: 2048,
    mss: 1460,
    buffers: 128,
  },
  // fewer buffers than one segment takes: frames as long as the buffers allow, then
  // blocked until the guest offers more, then on again
  { name: "six merged 512-byte buffers at a time", features: FEATURES, bufSize: 512, mss: 4000, buffers: 6 },
];

/**
 * A connected session: the backend and Dispatcher on a Loop turned by hand
 * (flushed as passt.ts does, resuming TCP when congestion ends), a front-end
 * set up with c's features and buffers, and a TCP connection from the guest
 * to a loopback server, established: the server's socket (cfd), and the
 * guest's next sequence numbers.
 */
function session(c: Case) {
  const { lfd, port } = loopbackListener(fds);

  const loop = new Loop();
  let d: Dispatcher | null = null;
  const backend = new VhostUserBackend(
    loop,
    (b, off, len, partial) => d!.frame(b, off, len, partial),
    () => d!.batchEnd(),
    null,
  );
  d = new Dispatcher(flowTestConfig, loop, backend);
  const congestion = new CongestionWatch(
    backend,
    () => {},
    () => d!.tcp.resume(),
  );
  // the guest runs beside us: it may refill its ring at any moment, e.g. after the
  // flows' last try of a turn and before the backend's flush (guestAt)
  let guestAt: (() => void) | null = null;
  loop.onFlush(() => {
    d!.flush();
    const fn = guestAt;
    guestAt = null;
    fn?.();
    backend.flush();
    congestion.check();
  });
  const turn = turner(loop);
  const sv = new Int32Array(2);
  expect(sys.shim_socketpair(sv)).toBe(0);
  backend.attach(sv[0]!);
  const f = VuFrontend.onFd(sv[1]!);
  f.sendSetup(c.features);
  turn();
  f.skipReplies();
  expect(backend.gone).toBe(null);
  f.offerRx(c.buffers, c.bufSize);

  // handshake
  const isn = 5000;
  f.sendFrame(guestSegment(port, w.TCP_SYN, isn, 0, c.mss));
  let synAck: Uint8Array | null = null;
  for (let k = 0; k < 100 && !synAck; k++) {
    turn();
    synAck = f.takeFrames().find((t) => w.tcpFlags(t.frame, w.ETH_HLEN + w.IPV4_HLEN) & w.TCP_SYN)?.frame ?? null;
  }
  expect(synAck).not.toBe(null);
  const rcvNext = (w.tcpSeq(synAck!, w.ETH_HLEN + w.IPV4_HLEN) + 1) >>> 0;
  f.sendFrame(guestSegment(port, w.TCP_ACK_FLAG, isn + 1, rcvNext, c.mss));
  turn();
  const cfd = sys.shim_accept(lfd, new Uint8Array(28), new Int32Array([28]));
  expect(cfd).toBeGreaterThanOrEqual(0);
  fds.push(cfd);
  const close = () => {
    backend.detach();
    f.close();
  };
  /** Run fn in the next turn, after the flows' last try to send, before the backend's flush. */
  const duringNextTurn = (fn: () => void) => {
    guestAt = fn;
  };
  return { backend, f, turn, port, isn, rcvNext, cfd, close, duringNextTurn };
}

for (const c of CASES) {
  test(`host to guest through vhost-user, built in place: ${c.name}`, () => {
    const s = session(c);
    const { backend, f, turn, port, isn, cfd, close } = s;
    const l4 = w.ETH_HLEN + w.IPV4_HLEN;
    let rcvNext = s.rcvNext;
    try {
      const seq0 = rcvNext;
      // the stream: the server writes what its socket takes, the guest reads and acknowledges
      const total = 300_000;
      const data = new Uint8Array(total);
      for (let k = 0; k < total; k++) data[k] = streamByte(k);
      const got = new Uint8Array(total);
      let sent = 0;
      let have = 0;
      let multi = 0;
      let dataFrames = 0;
      for (let round = 0; round < 5000 && have < total; round++) {
        if (sent < total) {
          const n = sys.shim_send(cfd, data.subarray(sent), total - sent, 0x40 /* MSG_DONTWAIT */);
          if (n > 0) sent += n;
        }
        turn();
        let buffers = 0;
        for (const t of f.takeFrames()) {
          buffers += t.nbuf;
          const b = t.frame;
          const ip = w.ETH_HLEN;
          const l4len = w.ipv4TotLen(b, ip) - w.IPV4_HLEN;
          const plen = l4len - w.tcpHlen(b, l4);
          expect(b.length).toBe(l4 + l4len);
          if (t.flags & VNET_F_NEEDS_CSUM) {
            expect(c.features & bit(F.GUEST_CSUM)).toBeTruthy();
            // the guest's offload: sum from csum_start, into the field at csum_offset
            w.wr16(b, l4 + w.TCP_CSUM, w.csumFold(w.csum(b, l4, l4len, 0)));
          }
          expect(w.ipv4ChecksumOk(b, ip)).toBe(true);
          expect(w.tcpChecksumOk4(b, ip, l4, l4len)).toBe(true);
          if (plen === 0) continue;
          dataFrames++;
          if (t.nbuf > 1) multi++;
          // merged: as many buffers as the frame and its virtio-net header need, and no more
          expect(t.nbuf).toBe(c.features & bit(F.MRG_RXBUF) ? Math.ceil((12 + b.length) / c.bufSize) : 1);
          expect(plen).toBeLessThanOrEqual(c.mss);
          if (c.buffers * c.bufSize < c.mss) expect(plen).toBeLessThanOrEqual(c.buffers * c.bufSize - 66);
          const off = w.seqDiff(w.tcpSeq(b, l4), seq0);
          if (w.tcpSeq(b, l4) !== rcvNext) continue;
          got.set(b.subarray(l4 + w.tcpHlen(b, l4), l4 + l4len), off);
          have = off + plen;
          rcvNext = (rcvNext + plen) >>> 0;
        }
        if (buffers > 0) {
          // as Linux does: acknowledge first (its ACK finds no buffers), then refill
          // (a kick: passt must send again without another ACK)
          f.sendFrame(guestSegment(port, w.TCP_ACK_FLAG, isn + 1, rcvNext, c.mss));
          turn();
          f.offerRx(buffers, c.bufSize);
        }
      }
      expect(have).toBe(total);
      let bad = -1;
      for (let k = 0; k < total && bad < 0; k++) if (got[k] !== data[k]) bad = k;
      expect(bad).toBe(-1);
      // every data frame was built in place, none copied from the arena
      expect(backend.stats.txInPlace).toBe(dataFrames);
      if (c.features & bit(F.MRG_RXBUF)) expect(multi).toBeGreaterThan(dataFrames / 2);
      expect(backend.stats.badRings).toBe(0);
      if (c.buffers * c.bufSize < c.mss) expect(backend.stats.txBlocked).toBeGreaterThan(0);
    } finally {
      close();
    }
  });
}

test("a receive buffer outside the memory table, met while building frames in place: refused and counted, the connection closed", () => {
  // four buffers: one for the SYN-ACK, three good ones for data, then one past the guest's memory
  const s = session({ ...CASES[0]!, buffers: 4 });
  try {
    const lastDesc = QUEUE_SIZE - 1;
    s.f.desc(0, lastDesc, MEM_SIZE - 100, 512, 2, 0);
    s.f.offer(0, lastDesc);
    const data = new Uint8Array(200_000).fill(7);
    expect(sys.shim_send(s.cfd, data, data.length, 0x40)).toBeGreaterThan(0);
    for (let k = 0; k < 20 && s.backend.gone === null; k++) s.turn();
    expect(s.backend.gone).toContain("outside the memory table");
    expect(s.backend.stats.badRings).toBe(1);
    expect(s.backend.stats.txInPlace).toBe(0);
  } finally {
    s.close();
  }
});

test("the guest's buffers run out and come back within one turn of the loop: the flow sends again (no lost wake-up)", () => {
  // four 512-byte buffers: the SYN-ACK takes one, the other three hold one frame of data
  const s = session({ ...CASES[0]!, buffers: 4 });
  try {
    const l4 = w.ETH_HLEN + w.IPV4_HLEN;
    const total = 20_000;
    const data = new Uint8Array(total).fill(5);
    // all at once: the socket reports it once (edge-triggered), and the guest does not
    // acknowledge meanwhile (within the window): nothing else wakes the flow
    expect(sys.shim_send(s.cfd, data, total, 0)).toBe(total);
    expect(s.backend.congested).toBe(false);
    // the turn that sends the first frame finds no more buffers; the guest refills
    // after that, before the backend's flush, and kicks only after the turn:
    // congestion begins and ends between two looks of the owner
    s.duringNextTurn(() => s.f.offerRx(64, 512, false));
    s.turn();
    expect(s.backend.stats.txBlocked).toBeGreaterThan(0);
    s.f.kickQueue(0);
    let have = 0;
    for (let round = 0; round < 20 && have < total; round++) {
      s.turn();
      for (const t of s.f.takeFrames()) have += w.ipv4TotLen(t.frame, w.ETH_HLEN) - w.IPV4_HLEN - w.tcpHlen(t.frame, l4);
    }
    expect(have).toBe(total);
  } finally {
    s.close();
  }
});
