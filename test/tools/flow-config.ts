/**
 * The Config of unit tests that drive the flow tables directly (no
 * namespace, no services): a guest at 192.0.2.2 / 2001:db8::2 behind the
 * gateway 192.0.2.1 / fe80::1 (which stand for the host's loopback), DHCP,
 * NDP and ICMP off.
 */
import { parseIp4, parseIp6, parseMac, type Config } from "../../src/conf/config.ts";
import { AF_INET, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET, SO_RCVBUF } from "../../src/native/consts.ts";
import { sys } from "../../src/native/ffi.ts";
import { saPort, sockaddr4 } from "../../src/native/sockaddr.ts";
import type { FrameSink } from "../../src/tap/sink.ts";
import * as w from "../../src/wire/index.ts";

export const GUEST4 = parseIp4("192.0.2.2");
export const GW4 = parseIp4("192.0.2.1");
export const OUR_MAC = parseMac("9a:55:9a:55:9a:55");

export const flowTestConfig: Config = {
  mode: "pasta",
  ourMac: OUR_MAC,
  nsMac: new Uint8Array(6),
  nsIfname: "eth0",
  mtu: 65520,
  ip4: {
    addr: GUEST4,
    prefixLen: 24,
    gw: GW4,
    dns: [],
    dnsMatch: 0,
    dnsHost: 0,
    mapHostLoopback: GW4,
    mapGuestAddr: 0,
    ifname: "eth0",
    copyAddrs: false,
    copyRoutes: false,
  },
  ip6: {
    addr: parseIp6("2001:db8::2"),
    prefixLen: 64,
    gw: parseIp6("fe80::1"),
    ourLL: parseIp6("fe80::1"),
    dns: [],
    dnsMatch: null,
    dnsHost: null,
    mapHostLoopback: parseIp6("fe80::1"),
    mapGuestAddr: null,
    ifname: "eth0",
    copyAddrs: false,
    copyRoutes: false,
  },
  dnsSearch: [],
  noDhcp: true,
  noNdp: true,
  noDhcpv6: true,
  noRa: true,
  noIcmp: true,
  noUdp: false,
  configNet: false,
  outbound4: 0,
  outbound6: null,
  outboundIf4: null,
  outboundIf6: null,
  dhcpDns: true,
  dhcpSearch: true,
  hostname: "",
  fqdn: "",
};

/**
 * A non-blocking TCP socket listening on 127.0.0.1 at an ephemeral port, the
 * server of the unit tests that drive TCP flows; its descriptor is pushed on
 * fds for closing. rcvbuf > 0: SO_RCVBUF set before listen (accepted sockets
 * inherit it). Throws when a call fails.
 */
export function loopbackListener(fds: number[], rcvbuf = 0): { lfd: number; port: number } {
  const lfd = sys.shim_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lfd < 0) throw new Error(`socket: ${-lfd}`);
  fds.push(lfd);
  if (rcvbuf > 0) sys.shim_setsockopt_int(lfd, SOL_SOCKET, SO_RCVBUF, rcvbuf);
  const sa = new Uint8Array(28);
  const rc = [
    sys.shim_bind(lfd, sa, sockaddr4(sa, 0x7f000001, 0)),
    sys.shim_listen(lfd, 4),
    sys.shim_getsockname(lfd, sa, new Int32Array([28])),
  ];
  if (rc.some((r) => r !== 0)) throw new Error(`bind, listen, getsockname: ${rc.join(", ")}`);
  return { lfd, port: saPort(sa) };
}

/** A TCP segment the flows sent to the guest, as SegmentSink read it back. */
export interface SentSegment {
  seq: number;
  ack: number;
  flags: number;
  /** the window field as on the wire (unscaled) */
  wnd: number;
  /** payload bytes */
  len: number;
}

/** A FrameSink that never has room (alloc() is -1): for tests of flows whose frames do not matter. */
export const refusingSink: FrameSink = {
  buf: new Uint8Array(4096),
  maxAlloc: 4096,
  frameRoom: 0,
  tsoMax: 0,
  csumOffload: false,
  alloc: () => -1,
  commit: () => {},
};

/**
 * A FrameSink without offloads (every frame one segment, full checksums)
 * that keeps what it is given: the TCP segments (IPv4) sent to the guest,
 * for the unit tests that drive TCP flows (tcp-batch, tcp-window,
 * tcp-sndspace).
 */
export class SegmentSink implements FrameSink {
  readonly buf = new Uint8Array(8 << 20);
  readonly maxAlloc = this.buf.length;
  readonly frameRoom = 0;
  readonly tsoMax = 0;
  readonly csumOffload = false;
  readonly segs: SentSegment[] = [];
  alloc(maxLen: number): number {
    return maxLen <= this.buf.length ? 0 : -1;
  }
  commit(off: number, len: number): void {
    const l4 = off + w.ETH_HLEN + w.IPV4_HLEN;
    const b = this.buf;
    this.segs.push({
      seq: w.tcpSeq(b, l4),
      ack: w.tcpAck(b, l4),
      flags: w.tcpFlags(b, l4),
      wnd: w.tcpWindow(b, l4),
      len: len - (l4 - off) - w.tcpHlen(b, l4),
    });
  }
}

/** The guest's MAC in the frames guestSegment builds. */
export const GUEST_MAC = parseMac("02:00:00:00:00:02");

/**
 * A TCP frame from the guest (GUEST4:sport) to the gateway (GW4:dport) at
 * b[at], with payload (if any); a SYN offers mss. Returns its length.
 */
export function guestSegment(
  b: Uint8Array,
  at: number,
  sport: number,
  dport: number,
  flags: number,
  seq: number,
  ack: number,
  payload: Uint8Array | null,
  mss: number,
): number {
  const optLen = flags & w.TCP_SYN ? 4 : 0;
  const plen = payload ? payload.length : 0;
  const l4len = w.TCP_HLEN + optLen + plen;
  const ip = w.writeEth(b, at, OUR_MAC, GUEST_MAC, w.ETH_P_IP);
  const l4 = w.writeIpv4(b, ip, GUEST4, GW4, w.IPPROTO_TCP, l4len, 64);
  const o = w.writeTcp(b, l4, sport, dport, seq, ack, flags, 65535, optLen);
  if (optLen) w.writeTcpOptMss(b, o, mss);
  if (payload) b.set(payload, l4 + w.TCP_HLEN + optLen);
  w.tcpSetChecksum4(b, ip, l4, l4len);
  return l4 + l4len - at;
}
