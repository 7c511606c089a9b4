/**
 * Frames built in place in a vhost-user guest's receive buffers
 * (src/tap/vu-rx.ts), without a front-end: a receive queue in memory of
 * ours, chains of several shapes. The layout (headers in the first
 * descriptor of a frame's first chain, payload over the rest and, with
 * merged buffers, over the next chains; a chain too short; a ring that runs
 * out; a descriptor outside the memory table), then the C half with a real
 * socket: socket data peeked straight into the pieces (shim_tcp_peek_iov),
 * headers and checksums finished there (shim_tcp_frames_at), each frame read
 * back as the guest would and checked by src/wire's own checksum code.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { sys } from "../../src/native/ffi.ts";
import { BAD_ADDR, GuestMemory, Segs, Virtq } from "../../src/tap/virtq.ts";
import { RxFrames, VNET_HDR_LEN } from "../../src/tap/vu-rx.ts";
import * as w from "../../src/wire/index.ts";

const NUM = 64;
const GPA = 0x100000;
const SIZE = 1 << 20;
const DESC = 0;
const AVAIL = 0x1000;
const USED = 0x2000;
const BUFS = 0x10000;
const WRITE = 2;
const NEXT = 1;
/** Ethernet, IPv4, TCP headers. */
const HDR4 = w.ETH_HLEN + w.IPV4_HLEN + w.TCP_HLEN;
const HEAD = VNET_HDR_LEN + HDR4;

/** A receive queue of NUM entries in SIZE bytes of our memory at guest physical GPA. */
function world() {
  const b = new Uint8Array(SIZE);
  const mem = new GuestMemory();
  mem.add(GPA, 0x7f0000000000, b, ptr(b));
  const q = new Virtq();
  q.num = NUM;
  q.descAddr = 0x7f0000000000 + DESC;
  q.availAddr = 0x7f0000000000 + AVAIL;
  q.usedAddr = 0x7f0000000000 + USED;
  q.addrSet = true;
  expect(q.place(mem)).toBe(true);
  const dv = new DataView(b.buffer);
  let nextDesc = 0;
  let nextBuf = BUFS;
  let idx = 0;
  /** Offer a chain of device-writable buffers of these lengths (one descriptor each); returns their offsets. */
  const offer = (...lens: number[]): number[] => {
    const head = nextDesc;
    const offs: number[] = [];
    lens.forEach((len, k) => {
      const d = DESC + 16 * nextDesc;
      offs.push(nextBuf);
      dv.setUint32(d, GPA + nextBuf, true);
      dv.setUint32(d + 4, 0, true);
      dv.setUint32(d + 8, len, true);
      dv.setUint16(d + 12, WRITE | (k < lens.length - 1 ? NEXT : 0), true);
      dv.setUint16(d + 14, nextDesc + 1, true);
      nextDesc++;
      nextBuf += (len + 15) & ~15;
    });
    dv.setUint16(AVAIL + 4 + 2 * (idx % NUM), head, true);
    idx++;
    dv.setUint16(AVAIL + 2, idx, true);
    return offs;
  };
  return { b, mem, q, dv, offer, base: ptr(b), avail: () => q.available(mem) };
}

const lens = (f: RxFrames) => Array.from(f.pieceLen.subarray(0, f.pieces));

describe("layout", () => {
  test("merged 512-byte buffers: headers in the first, payload over three buffers a frame, the last piece cut to seg", () => {
    const { mem, q, offer, avail, base } = world();
    const offs: number[][] = [];
    for (let k = 0; k < 10; k++) offs.push(offer(512));
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 4000, new Segs())).toBe(4000);
    expect(f.n).toBe(3);
    expect(Array.from(f.cap.subarray(0, 3))).toEqual([1460, 1460, 1080]);
    expect(lens(f)).toEqual([446, 512, 502, 446, 512, 502, 446, 512, 122]);
    expect(Array.from(f.chainFirst.subarray(0, 4))).toEqual([0, 3, 6, 9]);
    expect(Array.from(f.pieceFirst.subarray(0, 4))).toEqual([0, 3, 6, 9]);
    expect(f.at[1]).toBe(base + offs[3]![0]! + VNET_HDR_LEN);
    expect(f.pieceAddr[0]).toBe(base + offs[0]![0]! + HEAD);
    expect(f.pieceAddr[1]).toBe(base + offs[1]![0]!);
    expect(f.headView).toBe(mem.u8[0]!);
    expect(f.headOff).toBe(offs[0]![0]! + VNET_HDR_LEN);
    // nothing was taken from the ring
    expect(q.lastAvail).toBe(0);
    expect(avail()).toBe(10);

    // 1500 bytes came: frame 0 whole (three buffers), frame 1 with 40 (one buffer)
    expect(f.fit(1500)).toBe(2);
    expect(Array.from(f.plen.subarray(0, 2))).toEqual([1460, 40]);
    expect(f.used(0)).toBe(3);
    expect(Array.from(f.chainLen.subarray(0, 3))).toEqual([512, 512, HEAD + 1460 - 1024]);
    expect(f.used(1)).toBe(1);
    expect(f.chainLen[3]).toBe(HEAD + 40);
  });

  test("without merged buffers a frame is one chain, its payload what fits", () => {
    const { mem, q, offer, avail } = world();
    offer(2048);
    offer(1000);
    offer(2048);
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), false, HDR4, 1460, 32, 100000, new Segs())).toBe(1460 + 1000 - HEAD + 1460);
    expect(f.n).toBe(3);
    expect(Array.from(f.cap.subarray(0, 3))).toEqual([1460, 1000 - HEAD, 1460]);
    expect(Array.from(f.chainFirst.subarray(0, 4))).toEqual([0, 1, 2, 3]);
  });

  test("a chain of several descriptors: the payload continues in the chain's next ones", () => {
    const { mem, q, offer, avail } = world();
    offer(HEAD + 10, 7, 3000);
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 100000, new Segs())).toBe(1460);
    expect(lens(f)).toEqual([10, 7, 1443]);
    expect(f.chains).toBe(1);
    expect(f.fit(1460)).toBe(1);
    expect(f.used(0)).toBe(1);
    expect(f.chainLen[0]).toBe(HEAD + 1460);
  });

  test("a first descriptor too short for the headers: nothing laid out, unfit (the backend copies instead)", () => {
    const { mem, q, offer, avail } = world();
    offer(VNET_HDR_LEN, 2048);
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 100000, new Segs())).toBe(0);
    expect(f.n).toBe(0);
    expect(f.unfit).toBe(true);
  });

  test("a later frame's short first descriptor ends the layout there, frame 0 stays", () => {
    const { mem, q, offer, avail } = world();
    offer(2048);
    offer(HEAD - 1, 2048);
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 100000, new Segs())).toBe(1460);
    expect(f.n).toBe(1);
    expect(f.unfit).toBe(false);
  });

  test("the ring runs out in the middle of a frame: that frame gets what there is", () => {
    const { mem, q, offer, avail } = world();
    offer(512);
    offer(512);
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 100000, new Segs())).toBe(446 + 512);
    expect(f.n).toBe(1);
    expect(f.chains).toBe(2);
  });

  test("no buffers: nothing, and not unfit", () => {
    const { mem, q, avail } = world();
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 100000, new Segs())).toBe(0);
    expect(f.unfit).toBe(false);
  });

  test("a descriptor outside the memory table is refused (BAD_ADDR), nothing written", () => {
    const { b, mem, q, dv, offer, avail } = world();
    offer(2048);
    offer(2048);
    dv.setUint32(DESC + 16 + 0, GPA + SIZE - 100, true); // chain 1's buffer runs past the region
    const before = b.slice();
    const f = new RxFrames();
    expect(f.reserve(mem, q, avail(), true, HDR4, 1460, 32, 100000, new Segs())).toBe(BAD_ADDR);
    expect(b).toEqual(before);
  });
});

// ------------------------------------------------------------ with a socket

const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) sys.shim_close(fd);
});

/** Byte k of the stream. */
const streamByte = (k: number) => (k * 13 + (k >>> 8)) & 255;

interface Case {
  name: string;
  bufs: number[][];
  merge: boolean;
  seg: number;
  sent: number;
  full: boolean;
  v6: boolean;
}

const CASES: Case[] = [
  {
    name: "IPv4, merged odd-sized buffers, whole checksums",
    bufs: Array(40).fill([333]),
    merge: true,
    seg: 1460,
    sent: 5000,
    full: true,
    v6: false,
  },
  {
    name: "IPv6, chains of three descriptors, whole checksums",
    bufs: Array(8).fill([HEAD + 20 + 1, 101, 4000]),
    merge: true,
    seg: 1440,
    sent: 9999,
    full: true,
    v6: true,
  },
  {
    name: "IPv4, one 64 KiB frame over 2 KiB buffers, partial checksums",
    bufs: Array(40).fill([2048]),
    merge: true,
    seg: 65000,
    sent: 65000,
    full: false,
    v6: false,
  },
  { name: "IPv4, no merging, big buffers", bufs: Array(4).fill([70000]), merge: false, seg: 65000, sent: 70000, full: true, v6: false },
];

for (const c of CASES) {
  test(`socket data peeked into the guest's buffers, headers and checksums finished in place: ${c.name}`, () => {
    const { b, mem, q, offer, avail, base } = world();
    for (const chain of c.bufs) offer(...chain);
    const sv = new Int32Array(2);
    expect(sys.shim_socketpair(sv)).toBe(0);
    fds.push(sv[0]!, sv[1]!);
    const data = new Uint8Array(c.sent);
    for (let k = 0; k < c.sent; k++) data[k] = streamByte(k);
    let put = 0;
    while (put < c.sent) {
      const n = sys.shim_send(sv[1]!, data.subarray(put), c.sent - put, 0);
      expect(n).toBeGreaterThan(0);
      put += n;
    }

    const hdr = w.ETH_HLEN + (c.v6 ? w.IPV6_HLEN : w.IPV4_HLEN) + w.TCP_HLEN;
    const f = new RxFrames();
    const room = f.reserve(mem, q, avail(), c.merge, hdr, c.seg, 32, 1 << 20, new Segs());
    expect(room).toBeGreaterThan(0);
    const got = sys.shim_tcp_peek_iov(sv[0]!, f.pieceAddr, f.pieceLen, f.pieces, 0);
    expect(got).toBe(Math.min(room, c.sent));
    const n = f.fit(got);

    // frame 0's headers as flows/tcp.ts writes them: pseudo-header sum in the checksum field
    const v = f.headView;
    const e = f.headOff;
    const ip = e + w.ETH_HLEN;
    const l4 = ip + (c.v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
    const l4len = w.TCP_HLEN + f.plen[0]!;
    w.writeEth(v, e, Uint8Array.of(2, 0, 0, 0, 0, 2), Uint8Array.of(2, 0, 0, 0, 0, 1), c.v6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
    const a6 = new Uint8Array(16).fill(0x20);
    const b6 = new Uint8Array(16).fill(0x21);
    if (c.v6) w.writeIpv6(v, ip, a6, b6, w.IPPROTO_TCP, l4len, 64);
    else w.writeIpv4(v, ip, 0xc0000201, 0xc0000202, w.IPPROTO_TCP, l4len, 64);
    const seq0 = 0xfffffe00;
    w.writeTcp(v, l4, 5201, 40000, seq0, 77, w.TCP_ACK_FLAG, 1000, 0);
    let ps = c.v6 ? w.pseudoSum6(v, ip, w.IPPROTO_TCP, l4len) : w.pseudoSum4(v, ip, w.IPPROTO_TCP, l4len);
    while (ps > 0xffff) ps = (ps & 0xffff) + (ps >>> 16);
    w.wr16(v, l4 + w.TCP_CSUM, ps);
    expect(
      sys.shim_tcp_frames_at(
        f.at,
        f.plen,
        f.pieceFirst,
        f.pieceAddr,
        f.pieceLen,
        n,
        w.ETH_HLEN,
        hdr - w.TCP_HLEN,
        hdr,
        c.full ? 1 : 0,
        c.v6 ? 1 : 0,
      ),
    ).toBe(n);

    // each frame read back whole: its headers from its first buffer, its payload from the pieces
    let seq = seq0;
    let at = 0;
    for (let k = 0; k < n; k++) {
      const frame = new Uint8Array(hdr + f.plen[k]!);
      const start = f.at[k]! - base;
      frame.set(b.subarray(start, start + hdr));
      let o = hdr;
      let left = f.plen[k]!;
      for (let p = f.pieceFirst[k]!; left > 0; p++) {
        const len = Math.min(left, f.pieceLen[p]!);
        const from = f.pieceAddr[p]! - base;
        frame.set(b.subarray(from, from + len), o);
        o += len;
        left -= len;
      }
      const what = `frame ${k} of ${n}`;
      const fip = w.ETH_HLEN;
      const ftcp = fip + (c.v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
      const flen = w.TCP_HLEN + f.plen[k]!;
      expect(w.tcpSeq(frame, ftcp), what).toBe(seq);
      expect(w.tcpFlags(frame, ftcp), what).toBe(w.TCP_ACK_FLAG | (k === n - 1 ? w.TCP_PSH : 0));
      if (c.v6) expect(w.ipv6PayloadLen(frame, fip), what).toBe(flen);
      else {
        expect(w.ipv4TotLen(frame, fip), what).toBe(w.IPV4_HLEN + flen);
        expect(w.ipv4ChecksumOk(frame, fip), what).toBe(true);
      }
      if (c.full) {
        const ok = c.v6 ? w.tcpChecksumOk6(frame, fip, ftcp, flen) : w.tcpChecksumOk4(frame, fip, ftcp, flen);
        expect(ok, what).toBe(true);
      } else {
        let want = c.v6 ? w.pseudoSum6(frame, fip, w.IPPROTO_TCP, flen) : w.pseudoSum4(frame, fip, w.IPPROTO_TCP, flen);
        while (want > 0xffff) want = (want & 0xffff) + (want >>> 16);
        expect(w.rd16(frame, ftcp + w.TCP_CSUM), what).toBe(want);
      }
      for (let x = 0; x < f.plen[k]!; x++) {
        if (frame[hdr + x] !== streamByte(at + x)) throw new Error(`${what}: payload byte ${x} differs`);
      }
      at += f.plen[k]!;
      seq = (seq + f.plen[k]!) >>> 0;
    }
    expect(at).toBe(got);
  });
}
