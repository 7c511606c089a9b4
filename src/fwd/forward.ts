/**
 * Port forwarding for pasta and passt: the listening sockets of -t/-u (on
 * the host) and -T/-U (in the namespace), made from the rules of
 * src/fwd/ports.ts, and the "auto" rules that follow what is bound.
 *
 * Theory of operation
 * -------------------
 * Every rule gets a socket per port and IP version: on its address (or every
 * address) on the host, or on the loopback addresses in the namespace (made
 * there by a shim thread), bound to its interface when it names one, with
 * IP_FREEBIND/IPV6_FREEBIND under --freebind so that the address may not
 * exist yet. TCP listeners are ours: an accepted connection goes
 * - (-T) to the host's loopback at the target port, spliced (flows/splice.ts);
 * - (-t) from a loopback source, in pasta, to the namespace's loopback,
 *   spliced, unless --no-splice or the rule names a target address;
 * - otherwise to the guest through the tap (flows/tcp.ts), from its real
 *   source, to the rule's target address or the guest's own; with
 *   --splice-only there is no tap, and such connections are closed.
 * UDP sockets are watched here too (every listening socket is in this one
 * table); their datagrams are read by flows/udp.ts (-u) and
 * flows/udpsplice.ts (-U), which make the same choices per datagram.
 *
 * Failures, as the original: a port that can't be bound (in use, an address
 * the host doesn't have, a privileged port) ends start-up with one line
 * naming the option, the port and the reason; nothing is left behind (the
 * callers tear down what was set up). Rules made by `all`, `auto` or
 * exclusions only are "weak": their ports that can't be bound are skipped,
 * with one warning per rule, and only a rule with no port bound at all fails.
 *
 * auto (pasta's default): every AUTO_SCAN_MS, read which ports are bound on
 * the other side (listening TCP ports through sock_diag, sockdiag.ts, or
 * /proc/net/tcp{,6} where the kernel has no sock_diag for TCP; bound UDP
 * ports from /proc/net/udp{,6}: the host's, where pasta lives, and the
 * namespace's, opened once from inside it), and listen, within the
 * rule's ports, on exactly those, minus the ones our own sockets hold over
 * there: otherwise each side would mirror the other's mirror forever. UDP
 * rules follow bound TCP ports too (for protocols such as iperf3's, whose
 * UDP transfers use the port of a TCP control connection). A port that
 * stops being bound over there stops being forwarded here.
 */
import { Kind } from "../loop/kinds.ts";
import { closeSync, openSync, readSync } from "node:fs";
import { openSockDiag, tcpListening } from "./sockdiag.ts";
import type { Config } from "../conf/config.ts";
import type { SpliceMode } from "../conf/options.ts";
import type { SpliceFlows } from "../flows/splice.ts";
import type { TcpFlows } from "../flows/tcp.ts";
import { noForeignGroups } from "../flows/mcast.ts";
import { LISTEN_RCVBUF, type UdpFlows, type UdpListener } from "../flows/udp.ts";
import type { UdpSplice } from "../flows/udpsplice.ts";
import { log } from "../log.ts";
import { EPOLLIN, type Loop } from "../loop/loop.ts";
import { acceptOrRefuse } from "../native/accept.ts";
import { cstr, errnoName, sys } from "../native/ffi.ts";
import { SA6_ADDR, saIsLoopback, sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import { IP6_LOOPBACK } from "../wire/ipv6.ts";
import { bitGet, bitSet, formatAddr, type BindAddr, type FwdRule, type PortFwd } from "./ports.ts";
import {
  AF_INET,
  AF_INET6,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_SOCKET,
  SO_RCVBUF,
  SO_REUSEADDR,
} from "../native/consts.ts";

/** How often auto mode rescans the bound ports (the original: 1 s). */
export const AUTO_SCAN_MS = 1000;

const LISTEN_BACKLOG = 128;
const IPPROTO_IP = 0;
const IP_FREEBIND = 15;
const IPV6_FREEBIND = 78;
const SO_BINDTODEVICE = 25;
/** /proc/net/tcp state of a listening socket. */
const TCP_LISTEN_STATE = 0x0a;
/** /proc/net/udp state of a bound, unconnected socket. */
const UDP_BOUND_STATE = 0x07;
const LOOPBACK4 = 0x7f000001;
const O_RDONLY = 0;
const ANY6 = new Uint8Array(16);
const PORT_BITMAP = 8192;

type Proto = "tcp" | "udp";
/** Where a listener lives: "host" (-t, -u) or "ns" (-T, -U). */
type Side = "host" | "ns";

/** What the forwarder works with. */
export interface ForwardContext {
  cfg: Config;
  loop: Loop;
  tcp: TcpFlows;
  udp: UdpFlows;
  /** pasta's spliced paths; null for passt. */
  splice: SpliceFlows | null;
  udpSplice: UdpSplice | null;
  /** The namespace (pasta), where -T/-U sockets are made; -1 for passt. */
  nsfd: number;
  /** --freebind */
  freebind: boolean;
  /** --no-splice ("off"), --splice-only ("only"), or neither ("on"). */
  spliceMode: SpliceMode;
}

/** The four tables of the command line; null for a protocol that is off (or, in passt, -T/-U). */
export interface PortTables {
  tcp: PortFwd | null;
  udp: PortFwd | null;
  tcpNs: PortFwd | null;
  udpNs: PortFwd | null;
}

/** One rule with the sockets open for it, by port * 2 + (IPv6 ? 1 : 0). */
interface RuleSockets {
  rule: FwdRule;
  proto: Proto;
  side: Side;
  /** The IP versions it listens on (true: IPv6). */
  families: boolean[];
  open: Map<number, number>;
}

/** Descriptors of a side's /proc net files: tcp and tcp6, udp and udp6. */
interface ProcFiles {
  tcp: number[];
  udp: number[];
}

/** A listening socket: TCP (accepted here), or UDP (read by flows/udp.ts on the host, flows/udpsplice.ts in the namespace). */
interface Listener extends UdpListener {
  proto: Proto;
  side: Side;
}

export class Forwarder {
  private readonly rules: RuleSockets[] = [];
  private readonly listeners: (Listener | null)[] = [];
  /** Free slots of listeners (a stack: `-t all` makes tens of thousands). */
  private readonly freeSlots: number[] = [];
  private readonly sa = new Uint8Array(28);
  private readonly saLen = new Int32Array(1);
  /** Scratch bitmaps for scans: ports found over there, ours over there. */
  private readonly found = new Uint8Array(PORT_BITMAP);
  private readonly foundTcp = new Uint8Array(PORT_BITMAP);
  private readonly oursTcp = new Uint8Array(PORT_BITMAP);
  private readonly oursUdp = new Uint8Array(PORT_BITMAP);
  /** The /proc net files auto rules read, per side, once opened. */
  private readonly proc: Record<Side, ProcFiles | null> = { host: null, ns: null };
  /** sock_diag sockets of each side (sockdiag.ts), made at the first scan; -1: none, read /proc. */
  private readonly diag: Record<Side, number | null> = { host: null, ns: null };

  constructor(private readonly x: ForwardContext) {
    x.loop.on(Kind.TCP_LISTEN, (i) => this.onAccept(i));
    x.loop.on(Kind.UDP_LISTEN, (i) => {
      const l = this.listeners[i];
      if (l) x.udp.fromListener(l);
    });
    const udpSplice = x.udpSplice;
    if (udpSplice)
      x.loop.on(Kind.UDP_NS_LISTEN, (i) => {
        const l = this.listeners[i];
        if (l) udpSplice.fromNsListener(l);
      });
  }

  /**
   * Stop (true) or restart watching the -u sockets (passt, while the guest's
   * socket is full: see UdpFlows.pauseReceive, which does the same for the
   * flows' sockets).
   */
  pauseUdp(paused: boolean): void {
    for (let i = 0; i < this.listeners.length; i++) {
      const l = this.listeners[i];
      if (l && l.proto === "udp" && l.side === "host") this.x.loop.mod(l.fd, paused ? 0 : EPOLLIN, Kind.UDP_LISTEN, i);
    }
  }

  /**
   * Listen as the tables say, and start the auto scans. Throws a one-line
   * Error when a port can't be bound (see the top of this file); the
   * sockets opened so far are closed then.
   */
  start(t: PortTables): void {
    this.addRules(t.tcp, "tcp", "host");
    this.addRules(t.udp, "udp", "host");
    if (this.x.splice) {
      this.addRules(t.tcpNs, "tcp", "ns");
      this.addRules(t.udpNs, "udp", "ns");
    }
    try {
      for (const rs of this.rules) if (!rs.rule.scan) this.listenRule(rs);
      if (!this.rules.some((rs) => rs.rule.scan)) return;
      this.scan(true);
    } catch (e) {
      this.closeAll();
      throw e;
    }
    this.x.loop.every(AUTO_SCAN_MS, () => this.scan(false));
  }

  private addRules(fwd: PortFwd | null, proto: Proto, side: Side): void {
    if (!fwd) return;
    for (const rule of fwd.rules) this.rules.push({ rule, proto, side, families: this.families(rule), open: new Map() });
  }

  /** The IP versions a rule listens on (true: IPv6), among those in use. */
  private families(rule: FwdRule): boolean[] {
    const out: boolean[] = [];
    if (this.x.cfg.ip4 && (rule.addr === null || typeof rule.addr === "number")) out.push(false);
    if (this.x.cfg.ip6 && (rule.addr === null || rule.addr instanceof Uint8Array)) out.push(true);
    if (out.length === 0) throw new Error(`${rule.origin}: ${typeof rule.addr === "number" ? "IPv4" : "IPv6"} is not in use`);
    return out;
  }

  /** Listen on every port of a rule that isn't auto; throw if a port (or, weak, every port) fails. */
  private listenRule(rs: RuleSockets): void {
    const { rule } = rs;
    let failed = 0;
    let lastErr = 0;
    for (let p = rule.first; p <= rule.last; p++) {
      for (const v6 of rs.families) {
        const rc = this.listenOne(rs, v6, p);
        if (rc >= 0) continue;
        if (!rule.weak) throw this.bindError(rs, v6, p, rc);
        failed++;
        lastErr = rc;
      }
    }
    if (failed === 0) return;
    const total = (rule.last - rule.first + 1) * rs.families.length;
    if (failed === total)
      throw new Error(`${rule.origin}: can't listen on any ${protoName(rs)} port of ${rangeText(rule)}: ${errnoName(-lastErr)}`);
    log.warn(
      `${rule.origin}: ${failed} of ${total} ${protoName(rs)} sockets of ${rangeText(rule)} not bound (the last: ${errnoName(-lastErr)})`,
    );
  }

  private bindError(rs: RuleSockets, v6: boolean, port: number, rc: number): Error {
    const where = rs.rule.addr !== null ? formatAddr(rs.rule.addr) : rs.side === "ns" ? (v6 ? "::1" : "127.0.0.1") : v6 ? "::" : "0.0.0.0";
    const iface = rs.rule.ifname ? `%${rs.rule.ifname}` : "";
    return new Error(`${rs.rule.origin}: can't listen on ${protoName(rs)} port ${port} of ${where}${iface}: ${errnoName(-rc)}`);
  }

  /** Open the socket of rule rs for port p and IP version v6; its listener index, or -errno. */
  private listenOne(rs: RuleSockets, v6: boolean, port: number): number {
    const key = port * 2 + (v6 ? 1 : 0);
    const have = rs.open.get(key);
    if (have !== undefined) return have;
    const fd = this.boundSocket(rs, v6, port);
    if (fd < 0) return fd;
    const { rule } = rs;
    const target = rule.to + (port - rule.first);
    const taddr = taddrBytes(rule.taddr);
    const i = this.freeSlots.pop() ?? this.listeners.push(null) - 1;
    const kind = rs.proto === "tcp" ? Kind.TCP_LISTEN : rs.side === "host" ? Kind.UDP_LISTEN : Kind.UDP_NS_LISTEN;
    // this.sa still holds the address boundSocket bound it to
    const addr = this.sa.slice(v6 ? SA6_ADDR : 4, v6 ? SA6_ADDR + 16 : 8);
    this.listeners[i] = { fd, proto: rs.proto, side: rs.side, v6, port, target, taddr, addr };
    this.x.loop.add(fd, EPOLLIN, kind, i);
    rs.open.set(key, i);
    return i;
  }

  /** A socket of the rule's protocol, bound (and listening, TCP) at port; -errno on failure. */
  private boundSocket(rs: RuleSockets, v6: boolean, port: number): number {
    const af = v6 ? AF_INET6 : AF_INET;
    const type = (rs.proto === "tcp" ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK;
    const fd = rs.side === "host" ? sys.shim_socket(af, type, 0) : sys.shim_ns_socket(this.x.nsfd, af, type, 0);
    if (fd < 0) return fd;
    const rc = this.setUp(fd, rs, v6, port);
    if (rc < 0) sys.shim_close(fd);
    return rc < 0 ? rc : fd;
  }

  private setUp(fd: number, rs: RuleSockets, v6: boolean, port: number): number {
    sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (v6) sys.shim_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    // room for bursts while the loop is busy elsewhere (capped by net.core.rmem_max)
    if (rs.proto === "udp") sys.shim_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, LISTEN_RCVBUF);
    if (rs.proto === "udp" && rs.side === "host") {
      noForeignGroups(fd, v6);
      if (!v6 && this.x.udp.mcast?.isBroadcastPort(port)) this.x.udp.mcast.noBroadcasts(fd);
    }
    if (rs.rule.ifname) {
      const name = new TextEncoder().encode(rs.rule.ifname + "\0");
      const rc = sys.shim_setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, name.length);
      if (rc < 0) return rc;
    }
    if (this.x.freebind && rs.side === "host") {
      sys.shim_setsockopt_int(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, 1);
    }
    const rc = sys.shim_bind(fd, this.sa, this.bindAddr(rs, v6, port));
    if (rc < 0 || rs.proto === "udp") return rc;
    return sys.shim_listen(fd, LISTEN_BACKLOG);
  }

  /** The rule's address in sa (any on the host, loopback in the namespace, when it names none); the length. */
  private bindAddr(rs: RuleSockets, v6: boolean, port: number): number {
    const a = rs.rule.addr;
    if (v6) return sockaddr6(this.sa, a instanceof Uint8Array ? a : rs.side === "ns" ? IP6_LOOPBACK : ANY6, 0, port, 0);
    return sockaddr4(this.sa, typeof a === "number" ? a : rs.side === "ns" ? LOOPBACK4 : 0, port);
  }

  private close(i: number): void {
    const l = this.listeners[i]!;
    if (l.proto === "udp") {
      // the flows that receive on it, or send through it, go with it
      this.x.udpSplice?.dropFlowsOf(l.fd);
      if (l.side === "host") this.x.udp.listenerClosed(l.fd);
    }
    this.x.loop.del(l.fd);
    sys.shim_close(l.fd);
    this.listeners[i] = null;
    this.freeSlots.push(i);
  }

  private closeAll(): void {
    for (const rs of this.rules) {
      for (const i of rs.open.values()) this.close(i);
      rs.open.clear();
    }
  }

  private onAccept(i: number): void {
    const l = this.listeners[i];
    if (!l) return;
    for (;;) {
      this.saLen[0] = 28;
      const fd = acceptOrRefuse(l.fd, this.sa, this.saLen);
      if (fd < 0) return;
      this.route(l, fd);
    }
  }

  /** Where an accepted connection goes: see the top of this file. */
  private route(l: Listener, fd: number): void {
    const { splice, spliceMode } = this.x;
    if (l.side === "ns") splice!.join(fd, this.sa, l, "host");
    else if (splice && spliceMode !== "off" && l.taddr === null && saIsLoopback(this.sa)) splice.join(fd, this.sa, l, "ns");
    else if (spliceMode === "only") sys.shim_close(fd);
    else this.x.tcp.acceptFromHost(fd, this.sa, l.target, l.taddr, l.port);
  }

  // ------------------------------------------------------------ auto

  /** Rescan both sides and bring the auto rules' sockets in line; at start-up, a failure of a rule that isn't weak throws. */
  private scan(first: boolean): void {
    for (const side of ["host", "ns"] as const) {
      const setsOf = (proto: Proto) => this.rules.filter((rs) => rs.rule.scan && rs.side === side && rs.proto === proto);
      const tcpSets = setsOf("tcp");
      const udpSets = setsOf("udp");
      if (tcpSets.length === 0 && udpSets.length === 0) continue;
      // one read of the other side's TCP listeners serves both protocols
      const tcp = this.boundOver(side);
      for (const rs of tcpSets) this.sync(rs, tcp, first);
      if (udpSets.length === 0) continue;
      const udp = this.udpBoundOver(side, tcp);
      for (const rs of udpSets) this.sync(rs, udp, first);
    }
  }

  /** TCP ports listening on the other side of `side`, minus the ones our own sockets hold there. */
  private boundOver(side: Side): Uint8Array {
    const over: Side = side === "host" ? "ns" : "host";
    this.ours(over);
    const found = this.foundTcp.fill(0);
    this.diag[over] ??= openSockDiag(sys, over === "host" ? -1 : this.x.nsfd);
    if (this.diag[over] >= 0 && tcpListening(sys, this.diag[over], this.oursTcp, found)) return found;
    found.fill(0);
    for (const fd of this.procFiles(over).tcp) scanProcNet(fd, TCP_LISTEN_STATE, this.oursTcp, found);
    return found;
  }

  /** What UDP forwarding looks for over there: the TCP listeners found (tcp) and the bound UDP ports, minus ours. */
  private udpBoundOver(side: Side, tcp: Uint8Array): Uint8Array {
    const over: Side = side === "host" ? "ns" : "host";
    const found = this.found;
    found.set(tcp);
    for (const fd of this.procFiles(over).udp) scanProcNet(fd, UDP_BOUND_STATE, this.oursUdp, found);
    return found;
  }

  /** The host's IPv4 UDP listeners bound to port (for flows/mcast.ts, which keeps broadcasts off them). */
  udpHostFds(port: number): number[] {
    const fds: number[] = [];
    for (const l of this.listeners) if (l && l.proto === "udp" && l.side === "host" && !l.v6 && l.port === port) fds.push(l.fd);
    return fds;
  }

  /** UDP ports bound in the namespace (pasta), other than ours, into found: the ports the multicast proxy joins groups on. */
  nsUdpPorts(found: Uint8Array): void {
    found.fill(0);
    if (this.x.nsfd < 0) return;
    this.ours("ns");
    for (const fd of this.procFiles("ns").udp) scanProcNet(fd, UDP_BOUND_STATE, this.oursUdp, found);
  }

  /**
   * /proc/net/{tcp,tcp6,udp,udp6} of side, opened once: the host's are ours;
   * the namespace's are opened by a thread inside it (/proc/thread-self/net),
   * so that no process of the namespace is needed (--netns PATH has none).
   */
  private procFiles(side: Side): ProcFiles {
    const have = this.proc[side];
    if (have) return have;
    const open = (name: string) =>
      side === "host" ? openProcFile(`/proc/net/${name}`) : sys.shim_ns_open(this.x.nsfd, cstr(`/proc/thread-self/net/${name}`), O_RDONLY);
    const files = { tcp: [open("tcp"), open("tcp6")].filter((fd) => fd >= 0), udp: [open("udp"), open("udp6")].filter((fd) => fd >= 0) };
    if (files.tcp.length === 0) log.warn(`auto forwarding: can't read the ${side === "ns" ? "namespace's" : "host's"} bound ports`);
    this.proc[side] = files;
    return files;
  }

  /** Our ports on side, TCP and UDP (on the host, UDP flows' sockets too). */
  private ours(side: Side): void {
    this.oursTcp.fill(0);
    this.oursUdp.fill(0);
    for (const l of this.listeners) if (l && l.side === side) bitSet(l.proto === "tcp" ? this.oursTcp : this.oursUdp, l.port);
    if (side === "host") this.x.udp.ownPorts(this.oursUdp);
  }

  /** Listen on the rule's ports found bound over there, stop on the others. */
  private sync(rs: RuleSockets, found: Uint8Array, first: boolean): void {
    for (const [key, i] of rs.open) {
      if (bitGet(found, key >>> 1)) continue;
      this.close(i);
      rs.open.delete(key);
    }
    const { rule } = rs;
    for (let p = rule.first; p <= rule.last; p++) {
      if (!bitGet(found, p)) continue;
      for (const v6 of rs.families) {
        const rc = this.listenOne(rs, v6, p);
        if (rc >= 0) continue;
        if (first && !rule.weak) throw this.bindError(rs, v6, p, rc);
        log.debug(this.bindError(rs, v6, p, rc).message);
      }
    }
  }
}

function protoName(rs: RuleSockets): string {
  return rs.proto === "tcp" ? "TCP" : "UDP";
}

function rangeText(r: FwdRule): string {
  return r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`;
}

/** A target address as the bytes flows use: 4 for IPv4, 16 for IPv6; null stays null. */
function taddrBytes(a: BindAddr | null): Uint8Array | null {
  if (a === null || a instanceof Uint8Array) return a;
  return new Uint8Array([a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255]);
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
  for (const path of [`${dir}/${proto}`, `${dir}/${proto}6`]) {
    const fd = openProcFile(path);
    if (fd < 0) continue;
    scanProcNet(fd, state, ours, found);
    closeSync(fd);
  }
  return found;
}

/** A descriptor for path, -1 if it can't be opened. */
function openProcFile(path: string): number {
  try {
    return openSync(path, "r");
  } catch {
    return -1;
  }
}

const SCAN_CHUNK = 1 << 16;
/** Longer lines are not /proc/net lines: dropped. */
const SCAN_LINE_MAX = 512;
const scanBuf = new Uint8Array(SCAN_CHUNK + SCAN_LINE_MAX);

/** Scan the /proc net file open as fd, from its start (the kernel writes it anew for every read from 0). */
function scanProcNet(fd: number, state: number, ours: Uint8Array, found: Uint8Array): void {
  try {
    let have = 0;
    let pos = 0;
    for (;;) {
      const n = readSync(fd, scanBuf, have, SCAN_CHUNK, pos);
      pos += n;
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
