/**
 * passt's run: a UNIX domain socket for qemu, services and flows, until a
 * signal (or, with -1 or -F, the end of the first client).
 *
 * Order of start-up (each step can fail with one clear line):
 * 1. the listening socket is bound: -s PATH, or the first free
 *    /tmp/passt_N.socket (N from 1); with -F FD, the connected socket given
 *    is used instead and no socket is bound;
 * 2. the forwarded ports are bound (-t, -u: explicit specs or `all`), and the
 *    pcap and pid files opened;
 * 3. started as root, we become `nobody` (or --runas UID[:GID]) for good;
 * 4. the qemu command line is printed and the loop runs; without -f, in a
 *    copy of the process that goes to the background at this point.
 *
 * With --vhost-user, the client is a vhost-user front-end (QEMU with
 * -netdev vhost-user) and the backend src/tap/vhost-user.ts; the rest of
 * this run is the same.
 *
 * One client at a time. A connection that arrives while a client is
 * connected is accepted and closed at once. When the client goes away (end of
 * stream, a bad frame length, a socket error), every flow it had is dropped:
 * TCP peers on the host see a reset, UDP and ICMP sockets are closed, what we
 * learnt about the guest (MAC, IPv6 address) is forgotten; the listening
 * ports stay. Then we wait for the next client, or exit (0) with -1 or -F.
 *
 * When the client does not read and its socket fills up (a stopped VM), the
 * backend reports congestion (src/tap/stream.ts): we stop watching the UDP
 * sockets until it clears, then let every TCP connection send again.
 */
import { chownSync, lstatSync, readFileSync, rmSync } from "node:fs";
import { readyInBackground, removePidFile, signalPipe, watchSignals, writePidFile } from "./daemon.ts";
import { enterSandbox } from "./sandbox.ts";
import type { Config } from "./conf/config.ts";
import type { RunOptions } from "./conf/options.ts";
import { Dispatcher } from "./dispatch.ts";
import { Forwarder } from "./fwd/forward.ts";
import type { FwdRule, PortFwd } from "./fwd/ports.ts";
import { debugOn, log } from "./log.ts";
import { Kind } from "./loop/kinds.ts";
import { EPOLLIN, Loop, restMs, runLoop } from "./loop/loop.ts";
import { watchHeap } from "./loop/heap.ts";
import { countersLine, reportStats } from "./loop/stats.ts";
import { acceptOrRefuse } from "./native/accept.ts";
import { check, errnoName, sys } from "./native/ffi.ts";
import { PcapWriter } from "./pcap.ts";
import { StreamBackend } from "./tap/stream.ts";
import { VhostUserBackend } from "./tap/vhost-user.ts";
import { CongestionWatch } from "./tap/congestion.ts";
import { lookupPasswd, parseRunas, type Ids } from "./conf/runas.ts";
import { AF_UNIX, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET } from "./native/consts.ts";

const SO_PEERCRED = 17;
const ENOENT = 2;
const EACCES = 13;
const ECONNREFUSED = 111;
/** The default path pattern, and how many N we try, as the original. */
const UNIX_SOCK_PATH = (n: number) => `/tmp/passt_${n}.socket`;
const UNIX_SOCK_MAX = 100;
/** sun_path is 108 bytes, NUL included. */
const UNIX_PATH_MAX = 108;
const NOBODY = 65534;
/** Descriptors we ask for as root: enough for `-t all -u all` on both IP versions and many flows. */
const FD_WANTED = 1 << 20;
/** Descriptors left for flows, the client and everything else when ports are many. */
const FD_RESERVE = 4096;

export interface PasstRun {
  /** -s: socket path; null: the first free /tmp/passt_N.socket. */
  socket: string | null;
  /** -F: an already connected socket; null: listen. */
  fd: number | null;
  /** -1: exit when the first client goes away. */
  oneOff: boolean;
  /** --vhost-user: the client speaks vhost-user (src/tap/vhost-user.ts), not qemu's stream framing. */
  vhostUser: boolean;
  pidFile: string | null;
  pcap: string | null;
  /** --stats: seconds between counter lines in the log; 0 for none. */
  statsDelay: number;
  /** -t: host ports forwarded to the guest; null with --no-tcp. */
  tcp: PortFwd | null;
  /** -u: likewise for UDP; null with --no-udp. */
  udp: PortFwd | null;
  /** --freebind: forwarded ports may listen on addresses the host doesn't have. */
  freebind: boolean;
  /** --runas UID[:GID] or LOGIN[:GROUP]; null: nobody when started as root. */
  runas: string | null;
}

/** From the parsed command line. */
export function passtRunOf(opts: RunOptions): PasstRun {
  return {
    socket: opts.socket,
    fd: opts.fd,
    oneOff: opts.oneOff || opts.fd !== null,
    vhostUser: opts.vhostUser,
    pidFile: opts.pidFile,
    statsDelay: opts.statsDelay,
    pcap: opts.pcap,
    tcp: opts.noTcp ? null : opts.tcp,
    udp: opts.noUdp ? null : opts.udp,
    runas: opts.runas,
    freebind: opts.freebind,
  };
}

/** Run passt; returns the exit status for the process. */
export function runPasst(cfg: Config, run: PasstRun): number | Promise<number> {
  const nofile = raiseNofile();
  const ids = targetIds(run.runas);
  const loop = new Loop();
  watchHeap(loop);
  const sigFd = signalPipe();
  const listener = run.fd === null ? openSocket(run.socket) : null;
  try {
    return serve(cfg, fitPorts(cfg, run, nofile), loop, sigFd, listener, ids);
  } finally {
    if (listener) {
      sys.shim_close(listener.fd);
      removeQuietly(listener.path);
    }
  }
}

/**
 * The guest ports the -u rules of fwd forward to, as the multicast proxy's
 * port source (flows/mcast.ts): a VM's sockets can't be seen from here, but
 * a port forwarded to it is one it listens on.
 */
function forwardedPorts(fwd: PortFwd | null): (found: Uint8Array) => void {
  const ports = new Uint8Array(65536 / 8);
  for (const r of fwd?.rules ?? []) {
    for (let p = r.first; p <= r.last; p++) {
      const t = r.to + p - r.first;
      ports[t >> 3]! |= 1 << (t & 7);
    }
  }
  return (found) => found.set(ports);
}

function serve(cfg: Config, run: PasstRun, loop: Loop, sigFd: number, listener: Listener | null, ids: Ids | null): Promise<number> {
  const pcap = run.pcap ? new PcapWriter(run.pcap) : null;
  let dispatcher: Dispatcher | null = null;
  const Backend = run.vhostUser ? VhostUserBackend : StreamBackend;
  const backend: ClientBackend = new Backend(
    loop,
    (b, off, len, csumPartial) => dispatcher!.frame(b, off, len, csumPartial),
    () => dispatcher!.batchEnd(),
    pcap,
  );
  const statsOf = () => ({ [run.vhostUser ? "vhostUser" : "passt"]: backend.stats, ...dispatcher!.counters() });
  dispatcher = new Dispatcher(cfg, loop, backend);
  const forwarder = new Forwarder({
    cfg,
    loop,
    tcp: dispatcher.tcp,
    udp: dispatcher.udp,
    splice: null,
    udpSplice: null,
    nsfd: -1,
    freebind: run.freebind,
    spliceMode: "off",
  });
  forwarder.start({ tcp: run.tcp, udp: run.udp, tcpNs: null, udpNs: null });
  if (dispatcher.mcast) {
    dispatcher.mcast.portSource = forwardedPorts(run.udp);
    dispatcher.mcast.listenersOn = (port) => forwarder.udpHostFds(port);
  }
  if (run.pidFile) writePidFile(run.pidFile);
  if (ids) {
    if (listener) chownQuietly(listener.path, ids);
    if (run.pidFile) chownQuietly(run.pidFile, ids);
    dropPrivileges(ids);
  }

  watchSignals(loop, sigFd);
  if (run.statsDelay > 0) reportStats(loop, run.statsDelay, statsOf);
  // traffic stopped: burst buffers and garbage back to the kernel
  loop.onQuiet(() => {
    backend.releaseIdle();
    Bun.gc(true);
  });
  const congestion = new CongestionWatch(
    backend,
    (paused) => {
      if (debugOn) log.debug(`passt: client socket ${paused ? "full, pausing UDP" : "drained, resuming"}`);
      dispatcher!.udp.pauseReceive(paused);
      forwarder.pauseUdp(paused);
      dispatcher!.mcast?.pauseReceive(paused);
    },
    () => dispatcher!.tcp.resume(),
  );
  loop.onFlush(() => {
    dispatcher!.flush();
    backend.flush();
    pcap?.flush();
    if (backend.gone !== null) clientGone(run, loop, backend, dispatcher!);
    congestion.check();
  });

  if (listener) {
    loop.on(Kind.PASST_LISTENER, () => accept(listener.fd, backend));
    loop.add(listener.fd, EPOLLIN, Kind.PASST_LISTENER, 0);
    announce(listener.path, run.vhostUser);
  } else {
    log.info(`using the connected socket given as descriptor ${run.fd}`);
    backend.attach(run.fd!);
  }
  dispatcher.start();
  readyInBackground();
  enterSandbox();
  loop.restAfter(restMs());
  return runLoop(loop).finally(() => {
    backend.flush();
    backend.detach();
    pcap?.close();
    if (run.pidFile) removePidFile(run.pidFile);
    log.debug(countersLine(statsOf()));
  });
}

/** What a run needs of its backend: the FrameSink, and the client connection's life. */
type ClientBackend = StreamBackend | VhostUserBackend;

// ------------------------------------------------------------ descriptors

/**
 * Raise RLIMIT_NOFILE as far as we may: to fs.nr_open when we can raise the
 * hard limit (root with CAP_SYS_RESOURCE), else the soft limit to the hard
 * one. `-t all` alone takes two listening sockets per port. Returns the limit.
 */
function raiseNofile(): number {
  if (sys.shim_geteuid() === 0) {
    let max = FD_WANTED;
    try {
      max = Math.min(max, Number(readFileSync("/proc/sys/fs/nr_open", "utf8")));
    } catch {
      /* keep FD_WANTED */
    }
    sys.shim_set_nofile(max);
  }
  const n = sys.shim_raise_nofile();
  return n > 0 ? n : 1024;
}

/**
 * The forwarded ports, trimmed so that their listening sockets (one per
 * port, protocol and IP version) leave FD_RESERVE descriptors for flows:
 * the highest ports go first, with a warning that says where it stopped.
 */
function fitPorts(cfg: Config, run: PasstRun, limit: number): PasstRun {
  const families = (cfg.ip4 ? 1 : 0) + (cfg.ip6 ? 1 : 0);
  const count = (f: PortFwd | null) => (f ? f.rules.reduce((n, r) => n + r.last - r.first + 1, 0) : 0);
  const budget = Math.floor((limit - FD_RESERVE) / Math.max(families, 1));
  let tcp = count(run.tcp);
  let udp = count(run.udp);
  if (tcp + udp <= budget) return run;
  const trim = (f: PortFwd | null, keep: number, what: string): PortFwd | null => {
    if (!f) return f;
    const rules: FwdRule[] = [];
    let n = 0;
    let cut = 0;
    for (const r of [...f.rules].sort((a, b) => a.first - b.first)) {
      const room = Math.min(keep - n, r.last - r.first + 1);
      if (room > 0) rules.push({ ...r, last: r.first + room - 1 });
      if (room < r.last - r.first + 1 && !cut) cut = r.first + Math.max(room, 0);
      n += Math.max(room, 0);
    }
    if (cut)
      log.warn(
        `${what}: descriptor limit ${limit} too low for every port: ports from ${cut} up are not forwarded (raise it with ulimit -n)`,
      );
    return { ...f, rules };
  };
  const share = Math.max(0, budget);
  const tcpKeep = udp === 0 ? share : tcp === 0 ? 0 : Math.ceil((share * tcp) / (tcp + udp));
  tcp = Math.min(tcp, tcpKeep);
  udp = Math.max(0, share - tcp);
  return { ...run, tcp: trim(run.tcp, tcp, "-t"), udp: trim(run.udp, udp, "-u") };
}

// ------------------------------------------------------------ clients

/** Accept every pending connection: the first becomes the client, others are closed. */
function accept(listenFd: number, backend: ClientBackend): void {
  for (;;) {
    const fd = acceptOrRefuse(listenFd, null, null);
    if (fd < 0) return;
    const pid = peerPid(fd);
    if (backend.fd >= 0) {
      log.info(`discarding connection from PID ${pid}: a client is already connected`);
      sys.shim_close(fd);
      continue;
    }
    log.info(`accepted connection from PID ${pid}`);
    backend.attach(fd);
  }
}

/** The client is gone: drop it and its flows; exit with -1/-F, else wait for the next one. */
function clientGone(run: PasstRun, loop: Loop, backend: ClientBackend, dispatcher: Dispatcher): void {
  const reason = backend.gone!;
  if (backend.goneBadly) log.error(`client: ${reason}`);
  log.info(`client connection closed (${reason})${run.oneOff ? ", exiting" : ""}`);
  backend.detach();
  dispatcher.guestGone();
  if (run.oneOff) loop.stop(0);
}

/** PID of the process at the other end of a UNIX socket (SO_PEERCRED), or "?". */
function peerPid(fd: number): string {
  const cred = new Int32Array(3);
  const len = new Int32Array([12]);
  return sys.shim_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) < 0 ? "?" : String(cred[0]);
}

function announce(path: string, vhostUser: boolean): void {
  log.info(`UNIX domain socket bound at ${path}`);
  if (vhostUser) {
    log.info("You can now start qemu with vhost-user (the guest's memory must be shared):");
    log.info(
      `    kvm ... -object memory-backend-memfd,id=mem,size=RAM,share=on -numa node,memdev=mem -chardev socket,id=c,path=${path} -netdev vhost-user,id=n,chardev=c -device virtio-net-pci,netdev=n`,
    );
    return;
  }
  log.info("You can now start qemu (>= 7.2, with commit 13c6be96618c):");
  log.info(`    kvm ... -netdev stream,id=s,server=off,addr.type=unix,addr.path=${path} -device virtio-net-pci,netdev=s`);
}

// ------------------------------------------------------------ the socket

interface Listener {
  fd: number;
  path: string;
}

/** struct sockaddr_un for path in sa; returns its length. */
function sockaddrUn(sa: Uint8Array, path: string): number {
  const p = new TextEncoder().encode(path);
  if (p.length === 0 || p.length >= UNIX_PATH_MAX) throw new Error(`socket path too long (at most ${UNIX_PATH_MAX - 1} bytes): ${path}`);
  sa.fill(0);
  sa[0] = AF_UNIX;
  sa.set(p, 2);
  return 2 + p.length + 1;
}

/** Something answers (or could) at the socket in sa: anything but "nothing there". */
function inUse(sa: Uint8Array, len: number): boolean {
  const probe = check(sys.shim_socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0), "UNIX domain socket");
  const rc = sys.shim_connect(probe, sa, len);
  sys.shim_close(probe);
  return rc === 0 || (rc !== -ENOENT && rc !== -ECONNREFUSED && rc !== -EACCES);
}

/** Bind and listen: path, or the first free default path. */
function openSocket(path: string | null): Listener {
  const fd = check(sys.shim_socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0), "UNIX domain socket");
  const sa = new Uint8Array(110);
  for (let n = 1; n < UNIX_SOCK_MAX; n++) {
    const p = path ?? UNIX_SOCK_PATH(n);
    const len = sockaddrUn(sa, p);
    if (inUse(sa, len)) {
      if (path !== null) {
        sys.shim_close(fd);
        throw new Error(`socket path ${p} already in use`);
      }
      continue;
    }
    if (isSocket(p)) removeQuietly(p);
    const rc = sys.shim_bind(fd, sa, len);
    if (rc === 0) {
      check(sys.shim_listen(fd, 1), `listen on ${p}`);
      return { fd, path: p };
    }
    if (path !== null) {
      sys.shim_close(fd);
      throw new Error(`cannot bind to socket path ${p}: ${errnoName(-rc)}`);
    }
  }
  sys.shim_close(fd);
  throw new Error(`no free UNIX domain socket path (tried ${UNIX_SOCK_PATH(1)} to ${UNIX_SOCK_PATH(UNIX_SOCK_MAX - 1)})`);
}

function isSocket(path: string): boolean {
  try {
    return lstatSync(path).isSocket();
  } catch {
    return false;
  }
}

// ------------------------------------------------------------ privileges

/**
 * Who to become: null to stay as we are (not root, and --runas names us or
 * is not given). As root: --runas, else nobody. Throws for a --runas that
 * names nobody known, or another user when we are not root.
 */
function targetIds(runas: string | null): Ids | null {
  const euid = sys.shim_geteuid();
  if (runas === null) {
    if (euid !== 0) return null;
    const pw = lookupPasswd("nobody");
    log.warn("started as root: changing to nobody");
    return pw ? { uid: pw.uid, gid: pw.gid, name: "nobody" } : { uid: NOBODY, gid: NOBODY, name: "nobody" };
  }
  const ids = parseRunas(runas);
  if (euid !== 0) {
    if (ids.uid === euid && ids.gid === sys.shim_getgid()) return null;
    throw new Error(`--runas ${runas}: only root can change to another user`);
  }
  return ids;
}

/** setgroups, setgid, setuid, for every thread; throws if any step fails. */
function dropPrivileges(ids: Ids): void {
  const rc = sys.shim_drop_privileges(ids.uid, ids.gid);
  if (rc < 0) throw new Error(`cannot change to ${ids.name} (UID ${ids.uid}, GID ${ids.gid}): ${errnoName(-rc)}`);
  log.debug(`running as UID ${ids.uid}, GID ${ids.gid}`);
}

// ------------------------------------------------------------ files

function chownQuietly(path: string, ids: Ids): void {
  try {
    chownSync(path, ids.uid, ids.gid);
  } catch {
    /* not ours to change: removing it at exit may fail, nothing else */
  }
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    /* gone, or no longer ours to remove */
  }
}
