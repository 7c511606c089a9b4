/**
 * commitUdpFrame: the checksum of a datagram for a guest without checksum
 * offload is summed in the shim (shim_udp_csum_fill). Checked against the
 * TypeScript reference (wire/checksum.ts) for both IP versions, odd and even
 * lengths up to 64 KiB, and the datagram whose sum comes out as 0, which
 * must be sent as 0xffff (RFC 768).
 */
import { describe, expect, test } from "bun:test";
import { commitUdpFrame, type FrameSink } from "../../src/tap/sink.ts";
import * as w from "../../src/wire/index.ts";

/** A sink without offloads that records what was committed. */
function plainSink(buf: Uint8Array): FrameSink & { got: [number, number][] } {
  const got: [number, number][] = [];
  return {
    buf,
    maxAlloc: buf.length,
    frameRoom: 0,
    tsoMax: 0,
    csumOffload: false,
    got,
    alloc: () => 0,
    commit: (off: number, len: number) => {
      got.push([off, len]);
    },
  };
}

const SRC4 = new Uint8Array([10, 0, 2, 2]);
const DST4 = new Uint8Array([10, 0, 2, 15]);
const SRC6 = new Uint8Array(16).fill(0x20);
const DST6 = new Uint8Array(16).fill(0xfe);

/** A frame at off with len bytes of payload (byte k: seed * k), headers written, checksum not yet. */
function frame(b: Uint8Array, off: number, len: number, v6: boolean, seed: number): { ip: number; l4: number } {
  const ip = off + w.ETH_HLEN;
  const l4 = ip + (v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
  if (v6) w.writeIpv6At(b, ip, SRC6, 0, DST6, 0, w.IPPROTO_UDP, w.UDP_HLEN + len, 64);
  else w.writeIpv4(b, ip, w.rd32(SRC4, 0), w.rd32(DST4, 0), w.IPPROTO_UDP, w.UDP_HLEN + len, 64);
  w.writeUdp(b, l4, 5001, 40000, len);
  for (let k = 0; k < len; k++) b[l4 + w.UDP_HLEN + k] = (seed * k + 3) & 0xff;
  return { ip, l4 };
}

/** The checksum wire/checksum.ts computes for the datagram at l4 (0 stored as 0xffff). */
function reference(b: Uint8Array, ip: number, l4: number, v6: boolean): number {
  const c = b.slice();
  if (v6) w.udpSetChecksum6(c, ip, l4);
  else w.udpSetChecksum4(c, ip, l4);
  return w.rd16(c, l4 + w.UDP_CSUM);
}

describe("commitUdpFrame without checksum offload", () => {
  for (const v6 of [false, true]) {
    test(`IPv${v6 ? 6 : 4}: the shim's checksum is the reference's, every length`, () => {
      const b = new Uint8Array(70000);
      for (const len of [0, 1, 2, 3, 15, 16, 17, 1472, 1473, 8191, 65000, 65507]) {
        const off = 3; // odd: the shim must not assume alignment
        const { ip, l4 } = frame(b, off, len, v6, 7 + len);
        const want = reference(b, ip, l4, v6);
        const sink = plainSink(b);
        commitUdpFrame(sink, b, off, ip, l4, len, v6);
        expect(w.rd16(b, l4 + w.UDP_CSUM)).toBe(want);
        expect(v6 ? w.udpChecksumOk6(b, ip, l4) : w.udpChecksumOk4(b, ip, l4)).toBe(true);
        expect(sink.got).toEqual([[off, l4 - off + w.UDP_HLEN + len]]);
      }
    });
  }

  test("a sum of 0 goes out as 0xffff", () => {
    const b = new Uint8Array(256);
    const len = 2;
    const { ip, l4 } = frame(b, 0, len, false, 0);
    // choose the two payload bytes so that the whole checksum is 0: fill them
    // with the checksum the datagram gets with zero payload (ones' complement)
    b[l4 + w.UDP_HLEN] = 0;
    b[l4 + w.UDP_HLEN + 1] = 0;
    w.udpSetChecksum4(b, ip, l4);
    const c = w.rd16(b, l4 + w.UDP_CSUM);
    w.wr16(b, l4 + w.UDP_HLEN, c);
    commitUdpFrame(plainSink(b), b, 0, ip, l4, len, false);
    expect(w.rd16(b, l4 + w.UDP_CSUM)).toBe(0xffff);
    expect(w.udpChecksumOk4(b, ip, l4)).toBe(true);
  });
});
