/**
 * shim_tcp_segments (native/shim.c), the C half of TcpFlows.emitPlainSegments:
 * frame 0's headers are written here as TCP writes them (pseudo-header sum
 * in the checksum field), payloads are pseudo-random, and the shim must give
 * every frame the right sequence number, IP length, PSH flag and IPv4 header
 * checksum, and a TCP checksum that the TypeScript checksum code of
 * src/wire (an independent implementation) accepts. IPv4 and IPv6, a last
 * frame shorter than the others, odd lengths, a sequence number that wraps.
 */
import { expect, test } from "bun:test";
import { sys } from "../../src/native/ffi.ts";
import * as w from "../../src/wire/index.ts";

const MAC_A = Uint8Array.of(2, 0, 0, 0, 0, 1);
const MAC_B = Uint8Array.of(2, 0, 0, 0, 0, 2);
const SRC6 = Uint8Array.of(0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
const DST6 = Uint8Array.of(0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);

interface Case {
  v6: boolean;
  seg: number;
  got: number;
  seq: number;
}

/** Frames as TcpFlows leaves them before the shim call; returns buffer, base, stride, header length. */
function prepare(c: Case) {
  const l3 = w.ETH_HLEN;
  const l4 = l3 + (c.v6 ? w.IPV6_HLEN : w.IPV4_HLEN);
  const hdr = l4 + w.TCP_HLEN;
  const stride = hdr + c.seg + 7; // room between frames, as a sink's frameRoom gives
  const base = 5;
  const n = Math.ceil(c.got / c.seg);
  const b = new Uint8Array(base + n * stride + 64).fill(0xa5); // garbage where frames 1.. get headers
  let s = (c.got * 2654435761) >>> 0;
  for (let k = 0, left = c.got; left > 0; k++) {
    const len = Math.min(left, c.seg);
    for (let x = 0; x < len; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      b[base + k * stride + hdr + x] = s >>> 24;
    }
    left -= len;
  }
  const len0 = Math.min(c.got, c.seg);
  const ip = base + l3;
  w.writeEth(b, base, MAC_B, MAC_A, c.v6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
  if (c.v6) w.writeIpv6(b, ip, SRC6, DST6, w.IPPROTO_TCP, w.TCP_HLEN + len0, 64);
  else w.writeIpv4(b, ip, 0xc0000201, 0xc0000202, w.IPPROTO_TCP, w.TCP_HLEN + len0, 64);
  const flags = w.TCP_ACK_FLAG | (len0 === c.got ? w.TCP_PSH : 0);
  w.writeTcp(b, base + l4, 5201, 40000, c.seq, 0x01020304, flags, 512, 0);
  let ps = c.v6 ? w.pseudoSum6(b, ip, w.IPPROTO_TCP, w.TCP_HLEN + len0) : w.pseudoSum4(b, ip, w.IPPROTO_TCP, w.TCP_HLEN + len0);
  while (ps > 0xffff) ps = (ps & 0xffff) + (ps >>> 16);
  b[base + l4 + 16] = ps >>> 8;
  b[base + l4 + 17] = ps & 255;
  return { b, base, stride, l3, l4, hdr, n };
}

const CASES: Case[] = [
  { v6: false, seg: 1460, got: 32 * 1460, seq: 1000 },
  { v6: false, seg: 1460, got: 5 * 1460 + 333, seq: 0xfffff000 },
  { v6: true, seg: 1440, got: 3 * 1440 + 1, seq: 77 },
  { v6: true, seg: 3941, got: 3941, seq: 5 },
  { v6: false, seg: 536, got: 17, seq: 9 },
  { v6: false, seg: 1461, got: 4 * 1461 - 2, seq: 0x7fffffff },
];

for (const c of CASES) {
  test(`shim_tcp_segments: ${c.v6 ? "IPv6" : "IPv4"}, ${c.got} bytes in frames of ${c.seg}`, () => {
    const { b, base, stride, l3, l4, hdr, n } = prepare(c);
    expect(sys.shim_tcp_segments(b, base, stride, l3, l4, hdr, c.seg, c.got, c.v6 ? 1 : 0)).toBe(n);
    for (let k = 0; k < n; k++) {
      const f = base + k * stride;
      const len = k === n - 1 ? c.got - k * c.seg : c.seg;
      const ip = f + l3;
      const tcp = f + l4;
      const what = `frame ${k} of ${n}`;
      expect(w.tcpSeq(b, tcp), what).toBe((c.seq + k * c.seg) >>> 0);
      expect(w.tcpAck(b, tcp), what).toBe(0x01020304);
      expect(w.tcpFlags(b, tcp), what).toBe(w.TCP_ACK_FLAG | (k === n - 1 ? w.TCP_PSH : 0));
      expect(w.tcpSrcPort(b, tcp), what).toBe(5201);
      expect(w.tcpWindow(b, tcp), what).toBe(512);
      if (c.v6) {
        expect(w.ipv6PayloadLen(b, ip), what).toBe(w.TCP_HLEN + len);
        expect(w.tcpChecksumOk6(b, ip, tcp, w.TCP_HLEN + len), what).toBe(true);
      } else {
        expect(w.ipv4TotLen(b, ip), what).toBe(w.IPV4_HLEN + w.TCP_HLEN + len);
        expect(w.ipv4ChecksumOk(b, ip), what).toBe(true);
        expect(w.tcpChecksumOk4(b, ip, tcp, w.TCP_HLEN + len), what).toBe(true);
      }
      expect((b[f + 12]! << 8) | b[f + 13]!, what).toBe(c.v6 ? w.ETH_P_IPV6 : w.ETH_P_IP);
    }
  });
}
