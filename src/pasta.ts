/**
 * pasta's run: namespace, tap, services and flows, until the command ends.
 *
 * Order of start-up (each step can fail with one clear line, and nothing is
 * left behind: the child is killed, the pid file is written only at the end):
 * 1. the command's process is cloned into new namespaces (or an existing
 *    namespace is opened), and waits;
 * 2. the tap is created inside, brought up (and, with --config-net, given
 *    addresses, routes and MTU) over netlink from a socket made in there
 *    (with --splice-only there is no tap: only loopback is brought up);
 *    then the forwarded ports are bound;
 * 3. the child is released to exec its command; the loop runs until the child
 *    exits (pasta then exits with its status) or a signal asks us to stop.
 */
import { readyInBackground, removePidFile, signalPipe, watchSignals, writePidFile } from "./daemon.ts";
import { enterSandbox } from "./sandbox.ts";
import type { Config } from "./conf/config.ts";
import type { SpliceMode } from "./conf/options.ts";
import { Dispatcher } from "./dispatch.ts";
import { SpliceFlows } from "./flows/splice.ts";
import { UdpSplice } from "./flows/udpsplice.ts";
import { Forwarder } from "./fwd/forward.ts";
import type { PortFwd } from "./fwd/ports.ts";
import { Kind } from "./loop/kinds.ts";
import { Loop, EPOLLIN, now, restMs, runLoop } from "./loop/loop.ts";
import { watchHeap } from "./loop/heap.ts";
import { countersLine, reportStats } from "./loop/stats.ts";
import { log } from "./log.ts";
import { sys } from "./native/ffi.ts";
import { configureInterface } from "./ns/netconf.ts";
import { namespaceHostname, openNetns, reap, release, spawnCommand, type Child } from "./ns/ns.ts";
import { watchNetnsFile } from "./ns/watch.ts";
import { PcapWriter } from "./pcap.ts";
import { NullSink } from "./tap/sink.ts";
import { TapBackend } from "./tap/tap.ts";

const SIGTERM = 15;
const SIGKILL = 9;
/** After the command exits: stop once every connection from the namespace is closed, or after this long at most. */
const DRAIN_MAX_MS = 3000;
const DRAIN_TICK_MS = 20;

export interface PastaRun {
  /** Command to run in a new namespace; ignored when attaching. */
  command: string[];
  /** Attach: a PID whose namespace to use, or a netns path/name. */
  attachPid: number | null;
  netns: string | null;
  pidFile: string | null;
  pcap: string | null;
  /** --stats: seconds between counter lines in the log; 0 for none. */
  statsDelay: number;
  /** -t: host ports forwarded to the namespace through the tap; null with --no-tcp. */
  tcp: PortFwd | null;
  /** -T: namespace ports forwarded to the host's loopback (spliced); null with --no-tcp. */
  tcpNs: PortFwd | null;
  /** Attached: exit when the PID's process ends or the --netns file is removed (not with --no-netns-quit). */
  quitWithNetns?: boolean;
  /** -u: likewise for UDP; null with --no-udp. */
  udp: PortFwd | null;
  /** -U: namespace UDP ports forwarded to the host's loopback; null with --no-udp. */
  udpNs: PortFwd | null;
  /** --freebind: forwarded ports may listen on addresses the host doesn't have. */
  freebind: boolean;
  /** Inbound loopback connections: spliced, through the tap (--no-splice), or spliced only (--splice-only). */
  splice: SpliceMode;
}

/** Run pasta; returns the exit status for the process. */
export function runPasta(cfg: Config, run: PastaRun): number | Promise<number> {
  sys.shim_raise_nofile();
  const loop = new Loop();
  watchHeap(loop);
  const sigFd = signalPipe();
  let child: Child | null = null;
  let nsfd: number;
  if (run.attachPid !== null) nsfd = openNetns(`/proc/${run.attachPid}/ns/net`);
  else if (run.netns !== null) nsfd = openNetns(run.netns);
  else {
    child = spawnCommand(run.command, namespaceHostname(cfg.hostname));
    nsfd = child.nsfd;
  }
  // set-up that fails, or the loop throwing: the command goes too
  const fail = (e: unknown): never => {
    if (child) {
      sys.shim_kill(child.pid, SIGKILL);
      reap(child.pid);
    }
    throw e;
  };
  try {
    return serve(cfg, run, loop, sigFd, nsfd, child).catch(fail);
  } catch (e) {
    return fail(e);
  }
}

function serve(cfg: Config, run: PastaRun, loop: Loop, sigFd: number, nsfd: number, child: Child | null): Promise<number> {
  const pcap = run.pcap ? new PcapWriter(run.pcap) : null;
  let dispatcher: Dispatcher | null = null;
  const tap =
    run.splice === "only"
      ? null
      : TapBackend.open(
          nsfd,
          cfg.nsIfname,
          (b, off, len, csumPartial) => dispatcher!.frame(b, off, len, csumPartial),
          pcap,
          () => dispatcher!.batchEnd(),
        );
  dispatcher = new Dispatcher(cfg, loop, tap ?? new NullSink());
  configureInterface(nsfd, tap ? tap.ifname : null, cfg);
  startForwarding(cfg, run, loop, dispatcher, nsfd);
  if (tap) {
    loop.on(Kind.TAP, () => {
      if (!tap.readAll()) loop.stop(0);
    });
    loop.add(tap.fd, EPOLLIN, Kind.TAP, 0);
  }
  loop.onFlush(() => {
    dispatcher!.flush();
    tap?.flush();
    pcap?.flush();
  });
  // traffic stopped: burst buffers and garbage back to the kernel
  loop.onQuiet(() => {
    tap?.releaseIdle();
    Bun.gc(true);
  });
  // SIGINT, SIGTERM, SIGHUP to pasta: end the command too
  watchSignals(loop, sigFd, () => {
    if (child) sys.shim_kill(child.pid, SIGTERM);
  });
  if (run.statsDelay > 0) reportStats(loop, run.statsDelay, () => ({ ...(tap ? { tap: tap.stats } : {}), ...dispatcher!.counters() }));
  if (run.pidFile) writePidFile(run.pidFile);
  if (child)
    startChild(loop, child, run.command[0]!, () => {
      tap?.readAll();
      return dispatcher!.tcp.guestOpen() === 0;
    });
  else if (run.attachPid !== null && run.quitWithNetns !== false) watchTarget(loop, run.attachPid);
  else if (run.netns !== null && run.quitWithNetns !== false) watchNetnsFile(loop, run.netns);
  if (tap) dispatcher.start();
  readyInBackground();
  enterSandbox();
  loop.restAfter(restMs());
  return runLoop(loop).finally(() => {
    tap?.flush();
    pcap?.close();
    if (run.pidFile) removePidFile(run.pidFile);
    log.debug(countersLine({ ...(tap ? { tap: tap.stats } : {}), ...dispatcher.counters() }));
  });
}

/** Listeners and spliced paths for -t/-T/-u/-U (after the namespace's interfaces are up); throws when a port can't be bound. */
function startForwarding(cfg: Config, run: PastaRun, loop: Loop, dispatcher: Dispatcher, nsfd: number): void {
  const splice = new SpliceFlows(loop, nsfd, dispatcher.flows);
  const udpSplice = new UdpSplice(loop, nsfd, dispatcher.flows);
  if (run.splice !== "off") dispatcher.udp.splice = udpSplice;
  const fwd = new Forwarder({
    cfg,
    loop,
    tcp: dispatcher.tcp,
    udp: dispatcher.udp,
    splice,
    udpSplice,
    nsfd,
    freebind: run.freebind,
    spliceMode: run.splice,
  });
  fwd.start({ tcp: run.tcp, udp: run.udp, tcpNs: run.tcpNs, udpNs: run.udpNs });
  if (dispatcher.mcast) {
    dispatcher.mcast.portSource = (found) => fwd.nsUdpPorts(found);
    dispatcher.mcast.listenersOn = (port) => fwd.udpHostFds(port);
  }
}

/** Attached to a process's namespace: when that process ends, so do we. */
function watchTarget(loop: Loop, pid: number): void {
  const fd = sys.shim_pidfd_open(pid);
  if (fd < 0) return;
  loop.on(Kind.CHILD, () => {
    log.info(`process ${pid} ended: exiting`);
    loop.stop(0);
  });
  loop.add(fd, EPOLLIN, Kind.CHILD, 0);
}

/**
 * Let the command run; its exit ends the loop with its status, once what the
 * namespace already sent is handled and every connection from it is closed:
 * data its programs wrote to sockets before exiting is still on its way out
 * (the kernel keeps sending for closed sockets), and must reach the host
 * before we tear the tap down.
 */
function startChild(loop: Loop, child: Child, name: string, drained: () => boolean): void {
  loop.on(Kind.CHILD, () => {
    const status = reap(child.pid);
    if (status === null) return;
    const start = now();
    if (drained()) return loop.stop(status);
    loop.every(DRAIN_TICK_MS, (t) => {
      if (drained() || t - start > DRAIN_MAX_MS) loop.stop(status);
    });
  });
  loop.add(child.pidfd, EPOLLIN, Kind.CHILD, 0);
  const err = release(child);
  if (err) throw new Error(`cannot run ${name}: ${err}`);
}
