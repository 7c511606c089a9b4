/**
 * TCP port forwarding for pasta and passt: the listening sockets on both
 * sides, and the "auto" mode that keeps them in step with what is bound.
 *
 * Theory of operation
 * -------------------
 * -t (host → guest): we listen on the host at each forwarded port. An accepted
 * connection from a loopback address (pasta only) is spliced to the
 * namespace's loopback at the target port (flows/splice.ts); any other goes
 * to the guest through the tap (flows/tcp.ts), from its real source.
 *
 * -T (pasta, namespace → host): we listen on the namespace's loopback (sockets
 * made inside it), and splice each accepted connection to the host's loopback
 * at the target port.
 *
 * auto (pasta's default for both): every AUTO_SCAN_MS, read which TCP ports
 * are listening on the other side (/proc/PID/net/tcp{,6} of a process in the
 * namespace; /proc/net/tcp{,6} on the host, where pasta lives), and listen on
 * this side for exactly those, minus excluded ports and minus the ports pasta
 * itself listens on over there: otherwise each side would mirror the other's
 * mirror forever. A port that stops listening over there stops being
 * forwarded here.
 */
import { closeSync, openSync, readSync } from "node:fs";
import type { Config } from "../conf/config.ts";
import type { SpliceFlows } from "../flows/splice.ts";
import type { TcpFlows } from "../flows/tcp.ts";
import { log } from "../log.ts";
import { EPOLLIN, type Loop } from "../loop/loop.ts";
import { sys } from "../native/ffi.ts";
import { IP6_LOOPBACK } from "../wire/ipv6.ts";
import { saIsLoopback, sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import type { UdpFlows } from "../flows/udp.ts";
import type { UdpSplice } from "../flows/udpsplice.ts";
import { bitGet, isEphemeral, probeEphemeral, type PortFwd } from "./ports.ts";
import { AF_INET, AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR } from "../native/consts.ts";

/** How often auto mode rescans the listening sockets (the original: 1 s). */
export const AUTO_SCAN_MS = 1000;

export const KIND_LISTEN = 6;

const LISTEN_BACKLOG = 128;
/** /proc/net/tcp state of a listening socket. */
const TCP_LISTEN_STATE = 0x0a;
/** /proc/net/udp state of a bound, unconnected socket. */
const UDP_BOUND_STATE = 0x07;
const ANY6 = new Uint8Array(16);
const LOOPBACK6 = IP6_LOOPBACK;

interface Listener {
  fd: number;
  port: number;
  target: number;
  /** Where it listens: "host" (-t) or "ns" (-T). */
  side: "host" | "ns";
  v6: boolean;
}

export class TcpForwarder {
  private readonly listeners: (Listener | null)[] = [];
  /** Ports we listen on, per side (bitmaps), to keep auto mode from mirroring them back. */
  private readonly ours = { host: new Uint8Array(8192), ns: new Uint8Array(8192) };
  /** the last scan's ports */
  private readonly found = new Uint8Array(8192);
  private readonly sa = new Uint8Array(28);
  private readonly saLen = new Int32Array(1);

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly tcp: TcpFlows,
    private readonly splice: SpliceFlows | null,
    private readonly nsfd: number,
    /** A process in the namespace, whose /proc/PID/net we read for auto mode; 0 when none. */
    private readonly nsPid: number,
  ) {
    loop.on(KIND_LISTEN, (i) => this.onAccept(i));
  }

  /** Listen for fwdHost (-t) on the host and fwdNs (-T) in the namespace; start auto scans. */
  start(fwdHost: PortFwd | null, fwdNs: PortFwd | null): void {
    if (fwdHost && fwdHost.mode !== "auto") this.listenSpec(fwdHost, "host");
    if (fwdNs && fwdNs.mode !== "auto" && this.splice) this.listenSpec(fwdNs, "ns");
    const autoHost = fwdHost?.mode === "auto" && this.nsPid > 0 ? fwdHost : null;
    const autoNs = fwdNs?.mode === "auto" && this.splice ? fwdNs : null;
    if (!autoHost && !autoNs) return;
    const scan = () => {
      if (autoHost) this.sync(autoHost, "host", this.scan(`/proc/${this.nsPid}/net`, "ns"));
      if (autoNs) this.sync(autoNs, "ns", this.scan("/proc/net", "host"));
    };
    scan();
    this.loop.every(AUTO_SCAN_MS, scan);
  }

  private listenSpec(fwd: PortFwd, side: "host" | "ns"): void {
    for (let p = 1; p < 65536; p++) {
      if (!bitGet(fwd.map, p)) continue;
      const rule = fwd.rules.find((r) => p >= r.first && p <= r.last);
      const addr = rule?.addr ?? null;
      if (this.cfg.ip4 && (addr === null || typeof addr === "number")) this.listenOne(side, false, p, fwd.to[p]!, addr);
      if (this.cfg.ip6 && (addr === null || addr instanceof Uint8Array)) this.listenOne(side, true, p, fwd.to[p]!, addr);
    }
  }

  /** Ports listening on `over` ("host" or "ns") per /proc net files under dir, minus ours there. */
  private scan(dir: string, over: "host" | "ns"): Uint8Array {
    return listeningPorts(dir, "tcp", this.ours[over], this.found);
  }

  /** Listen on side for every port in found (not excluded), stop for the others. */
  private sync(fwd: PortFwd, side: "host" | "ns", found: Uint8Array): void {
    for (let i = 0; i < this.listeners.length; i++) {
      const l = this.listeners[i];
      if (l && l.side === side && !bitGet(found, l.port)) this.unlisten(i);
    }
    for (let p = 1; p < 65536; p++) {
      if (!bitGet(found, p) || bitGet(fwd.excl, p) || bitGet(this.ours[side], p)) continue;
      if (this.cfg.ip4) this.listenOne(side, false, p, p, null);
      if (this.cfg.ip6) this.listenOne(side, true, p, p, null);
    }
  }

  private listenOne(side: "host" | "ns", v6: boolean, port: number, target: number, addr: number | Uint8Array | null): void {
    const type = SOCK_STREAM | SOCK_NONBLOCK;
    const af = v6 ? AF_INET6 : AF_INET;
    const fd = side === "host" ? sys.shim_socket(af, type, 0) : sys.shim_ns_socket(this.nsfd, af, type, 0);
    if (fd < 0) return;
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (v6) sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    const len = this.bindAddr(side, v6, port, addr);
    if (sys.shim_bind(fd, this.sa, len) < 0 || sys.shim_listen(fd, LISTEN_BACKLOG) < 0) {
      log.debug(`cannot listen on TCP port ${port} (${side}, ${v6 ? "IPv6" : "IPv4"})`);
      sys.shim_close(fd);
      return;
    }
    this.ours[side][port >> 3]! |= 1 << (port & 7);
    let i = this.listeners.indexOf(null);
    if (i < 0) i = this.listeners.push(null) - 1;
    this.listeners[i] = { fd, port, target, side, v6 };
    this.loop.add(fd, EPOLLIN, KIND_LISTEN, i);
  }

  /** The address to bind: given, or any on the host, or loopback in the namespace. */
  private bindAddr(side: "host" | "ns", v6: boolean, port: number, addr: number | Uint8Array | null): number {
    if (v6) {
      const a = addr instanceof Uint8Array ? addr : side === "ns" ? LOOPBACK6 : ANY6;
      return sockaddr6(this.sa, a, 0, port, 0);
    }
    const a = typeof addr === "number" ? addr : side === "ns" ? 0x7f000001 : 0;
    return sockaddr4(this.sa, a, port);
  }

  private unlisten(i: number): void {
    const l = this.listeners[i]!;
    this.loop.del(l.fd);
    sys.shim_close(l.fd);
    this.listeners[i] = null;
    if (!this.listeners.some((o) => o && o.side === l.side && o.port === l.port)) {
      this.ours[l.side][l.port >> 3]! &= ~(1 << (l.port & 7));
    }
  }

  private onAccept(i: number): void {
    const l = this.listeners[i];
    if (!l) return;
    for (;;) {
      this.saLen[0] = 28;
      const fd = sys.shim_accept(l.fd, this.sa, this.saLen);
      if (fd < 0) return;
      if (l.side === "ns") this.splice!.join(fd, l.v6, l.target, "host");
      else if (this.splice && saIsLoopback(this.sa)) this.splice.join(fd, l.v6, l.target, "ns");
      else this.tcp.acceptFromHost(fd, this.sa, l.target);
    }
  }

}

/**
 * Ports with a listening TCP socket (or a bound, unconnected UDP socket) in
 * the /proc net files under dir (dir/tcp and dir/tcp6, or udp and udp6), as a
 * bitmap in found, leaving out the ports set in `ours`.
 *
 * This runs every second, and under load the files hold a line for each of
 * thousands of connections (TIME_WAIT included): they are read in chunks
 * into one buffer and parsed as bytes, without a string per line.
 */
export function listeningPorts(dir: string, proto: "tcp" | "udp", ours: Uint8Array, found: Uint8Array): Uint8Array {
  found.fill(0);
  const state = proto === "tcp" ? TCP_LISTEN_STATE : UDP_BOUND_STATE;
  scanProcNet(`${dir}/${proto}`, state, ours, found);
  scanProcNet(`${dir}/${proto}6`, state, ours, found);
  return found;
}

const SCAN_CHUNK = 1 << 16;
/** Longer lines are not /proc/net lines: dropped. */
const SCAN_LINE_MAX = 512;
const scanBuf = new Uint8Array(SCAN_CHUNK + SCAN_LINE_MAX);

function scanProcNet(path: string, state: number, ours: Uint8Array, found: Uint8Array): void {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return;
  }
  try {
    let have = 0;
    for (;;) {
      const n = readSync(fd, scanBuf, have, SCAN_CHUNK, null);
      const end = have + n;
      let start = 0;
      for (let k = 0; k < end; k++) {
        if (scanBuf[k] !== 10) continue;
        scanLine(scanBuf, start, k, state, ours, found);
        start = k + 1;
      }
      if (n === 0) break;
      have = end - start <= SCAN_LINE_MAX ? end - start : 0;
      scanBuf.copyWithin(0, start, start + have);
    }
  } catch {
    // a namespace that went away mid-read: what was read counts
  } finally {
    closeSync(fd);
  }
}

/** One line "  sl: LOCAL:PORT REMOTE:PORT ST ...": set PORT in found when ST is state. */
function scanLine(b: Uint8Array, s: number, e: number, state: number, ours: Uint8Array, found: Uint8Array): void {
  let port = -1;
  let k = s;
  for (let tok = 0; tok < 4; tok++) {
    while (k < e && b[k] === 32) k++;
    const ts = k;
    while (k < e && b[k] !== 32) k++;
    if (k === ts) return;
    if (tok === 1) {
      let c = k - 1;
      while (c > ts && b[c] !== 58) c--;
      port = hexValue(b, c + 1, k);
    } else if (tok === 3 && hexValue(b, ts, k) !== state) return;
  }
  if (port > 0 && port < 65536 && !bitGet(ours, port)) found[port >> 3]! |= 1 << (port & 7);
}

/** The hex number in b[s..e), -1 if there is none. */
function hexValue(b: Uint8Array, s: number, e: number): number {
  if (s >= e) return -1;
  let v = 0;
  for (let k = s; k < e; k++) {
    const c = b[k]! | 0x20;
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/**
 * UDP "auto" (pasta): bind on the host (-u) the ports bound in the namespace,
 * and in the namespace (-U) the ports bound on the host, as for TCP. Ports in
 * the ephemeral range are left out: those are clients' sockets, and our own
 * outbound flows bind guest ports there too.
 */
export class UdpAutoForwarder {
  private readonly hostOn = new Uint8Array(8192);
  private readonly nsOn = new Uint8Array(8192);
  /** scratch: our own ports on the scanned side, and the ports found there */
  private readonly ours = new Uint8Array(8192);
  private readonly found = new Uint8Array(8192);
  private readonly eph = probeEphemeral();

  constructor(
    private readonly cfg: Config,
    private readonly loop: Loop,
    private readonly udp: UdpFlows,
    private readonly splice: UdpSplice,
    private readonly nsPid: number,
  ) {}

  start(fwdHost: PortFwd | null, fwdNs: PortFwd | null): void {
    const autoHost = fwdHost?.mode === "auto" && this.nsPid > 0 ? fwdHost : null;
    const autoNs = fwdNs?.mode === "auto" ? fwdNs : null;
    if (!autoHost && !autoNs) return;
    const scan = () => {
      if (autoHost) this.syncHost(autoHost);
      if (autoNs) this.syncNs(autoNs);
    };
    scan();
    this.loop.every(AUTO_SCAN_MS, scan);
  }

  /** -u auto: mirror the namespace's bound ports on the host. */
  private syncHost(fwd: PortFwd): void {
    const ours = this.ours.fill(0);
    this.splice.ownNsPorts(ours);
    const found = listeningPorts(`/proc/${this.nsPid}/net`, "udp", ours, this.found);
    for (let p = 1; p < 65536; p++) {
      const want = bitGet(found, p) && !bitGet(fwd.excl, p) && !isEphemeral(p, this.eph);
      if (want === bitGet(this.hostOn, p)) continue;
      if (!want) this.udp.unlisten(p);
      else {
        if (this.cfg.ip4) this.udp.listenOne(AF_INET, p, p);
        if (this.cfg.ip6) this.udp.listenOne(AF_INET6, p, p);
      }
      this.hostOn[p >> 3]! ^= 1 << (p & 7);
    }
  }

  /** -U auto: mirror the host's bound ports in the namespace. */
  private syncNs(fwd: PortFwd): void {
    const ours = this.ours.fill(0);
    this.udp.ownPorts(ours);
    const found = listeningPorts("/proc/net", "udp", ours, this.found);
    for (let p = 1; p < 65536; p++) {
      const want = bitGet(found, p) && !bitGet(fwd.excl, p) && !isEphemeral(p, this.eph);
      if (want === bitGet(this.nsOn, p)) continue;
      if (!want) this.splice.unlistenNs(p);
      else {
        if (this.cfg.ip4) this.splice.listenNsOne(false, p, p);
        if (this.cfg.ip6) this.splice.listenNsOne(true, p, p);
      }
      this.nsOn[p >> 3]! ^= 1 << (p & 7);
    }
  }
}
