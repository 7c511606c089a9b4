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
import { readFileSync } from "node:fs";
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
const TCP_LISTEN_STATE = "0A";
/** /proc/net/udp state of a bound, unconnected socket. */
const UDP_BOUND_STATE = "07";
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
    return listeningPorts(dir, "tcp", this.ours[over]);
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
 * bitmap, leaving out the ports set in `ours`.
 */
export function listeningPorts(dir: string, proto: "tcp" | "udp", ours: Uint8Array): Uint8Array {
  const found = new Uint8Array(8192);
  const state = proto === "tcp" ? TCP_LISTEN_STATE : UDP_BOUND_STATE;
  for (const f of [proto, `${proto}6`]) {
    let text: string;
    try {
      text = readFileSync(`${dir}/${f}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] !== state) continue;
      const port = parseInt(cols[1]!.slice(cols[1]!.lastIndexOf(":") + 1), 16);
      if (port > 0 && !bitGet(ours, port)) found[port >> 3]! |= 1 << (port & 7);
    }
  }
  return found;
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
    const ours = new Uint8Array(8192);
    this.splice.ownNsPorts(ours);
    const found = listeningPorts(`/proc/${this.nsPid}/net`, "udp", ours);
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
    const ours = new Uint8Array(8192);
    this.udp.ownPorts(ours);
    const found = listeningPorts("/proc/net", "udp", ours);
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
