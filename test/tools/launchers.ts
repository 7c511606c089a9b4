#!/usr/bin/env bun
/**
 * How the programs that start pasta and passt do it, rebuilt from their
 * current sources, for the end-to-end launch tests (test/e2e/launch-*.test.ts).
 *
 * Nobody types `pasta --netns ...`: Podman, rootlesskit and libvirt do, and
 * each of them waits for the program in its own way. What they have in common:
 * stdin is /dev/null, stdout and stderr are pipes the caller reads, and the
 * caller goes on only once the process has exited AND every pipe has reached
 * end-of-file. A program that forks to the background while the background
 * copy still holds one of those pipes makes its caller hang, even though it
 * "started fine"; runLikeCaller() measures exactly that.
 *
 *   Podman 5 (containers/container-libs, common/libnetwork/pasta/pasta_linux.go,
 *   April 2026; Podman 5.3 and later): createPastaArgs() builds
 *     --config-net [-t|-u [ADDR/]HOST-HOSTEND:CTR-CTREND]... --dns-forward 169.254.1.1
 *     [-t none] [-u none] [-T none] [-U none] --no-map-gw --quiet --netns PATH
 *     --map-guest-addr 169.254.1.2
 *   and runs it with exec.Command().CombinedOutput(): ONE pipe on both stdout
 *   and stderr. Exit status 1 with "unrecognized option '--map-guest-addr" in
 *   the output: it drops the last two arguments and runs it again (pasta
 *   older than 2024-08-14). The namespace file is made before (an empty file
 *   in $XDG_RUNTIME_DIR/netns, unshare(CLONE_NEWNET) on a thread, bind mount of
 *   its /proc/.../ns/net), and removed after the container (umount MNT_DETACH,
 *   then unlink); pasta is expected to quit by itself when the file goes.
 *   Rootless, all of this happens inside Podman's user and mount namespace.
 *   Its rootless network namespace (for bridge networks) is set up the same
 *   way with "--pid FILE" among the options (common/libnetwork/internal/
 *   rootlessnetns): Podman reads that pid once pasta returns, and ends pasta
 *   with SIGTERM when it tears the namespace down.
 *
 *   Podman 4.4 (libpod/networking_pasta_linux.go): --config-net [ports]
 *   [-t none] [-u none] [-T none] [-U none] --no-map-gw --netns PATH, run with
 *   exec.Command().Output(): stdout and stderr on two separate pipes.
 *
 *   rootlesskit 2 (pkg/network/pasta/pasta.go): first `pasta --version` (it
 *   must succeed) and `pasta --host-lo-to-ns-lo --version` (success means the
 *   option exists); then --stderr --ns-ifname=tap0 --mtu=65520 --config-net
 *   --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3
 *   [--no-map-gw] [--ipv4-only] --tcp-ports=auto --udp-ports=auto
 *   [--host-lo-to-ns-lo] PID, with CombinedOutput(). PID is its child, already
 *   in a new user and network namespace (Docker's defaults: host loopback
 *   disabled, IPv4 only, the "implicit" port driver).
 *
 *   libvirt (src/qemu/qemu_passt.c, qemuPasstStart): passt --one-off --socket
 *   PATH --pid FILE [--mtu N] [--interface DEV] [--log-file FILE] [--address A
 *   [--netmask N]] [--tcp-ports|--udp-ports SPEC]..., run with virCommandRun():
 *   stdin /dev/null, stdout and stderr two pipes read to their end, then
 *   waitpid. The socket is where QEMU's `-netdev stream` connects; the pid
 *   file is how libvirt finds passt later.
 *
 * As a program (for a launch that must happen inside another namespace, e.g.
 * inside `podman unshare`): `bun test/tools/launchers.ts JSON`, where JSON is a
 * LaunchSpec; prints the Launch as one line of JSON on stdout.
 */
import { readFileSync, readdirSync } from "node:fs";

/** How long a launch may take before we call the caller hung (it would wait forever). */
export const LAUNCH_TIMEOUT_MS = 15_000;

/** What the caller saw. */
export interface Launch {
  /** the program's argv, as the caller built it (the last attempt, after retries) */
  argv: string[];
  /** exit status (signal deaths: 128 + number); -1 when it never exited */
  code: number;
  /** stdout, or stdout and stderr together for a single-pipe caller */
  output: string;
  /** stderr of a two-pipe caller ("" for a single pipe) */
  stderr: string;
  /** ms from spawn until the process exited */
  exitMs: number;
  /** ms from spawn until the caller could go on: exit and end-of-file on every pipe */
  ms: number;
  /** the caller would still be waiting: no exit or no end-of-file within the timeout */
  hung: boolean;
  /** Podman: how many times it started again without --map-guest-addr */
  retries: number;
}

export interface CallerOptions {
  /** one pipe for stdout and stderr (Go's CombinedOutput), or two (Output, virCommandRun) */
  combined: boolean;
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
}

/**
 * Start argv with stdin on /dev/null and its output on pipes, and wait for
 * what a Go or libvirt caller waits for: exit, and end-of-file on every pipe.
 * A single pipe on both descriptors comes from a shell that duplicates stdout
 * onto stderr and then becomes the program (exec), so the program holds the
 * very same pipe twice, as under CombinedOutput.
 */
export async function runLikeCaller(argv: string[], opts: CallerOptions): Promise<Launch> {
  const cmd = opts.combined ? ["sh", "-c", 'exec "$@" 2>&1', "sh", ...argv] : argv;
  const start = performance.now();
  const proc = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...(process.env as Record<string, string>), ...(opts.env ?? {}) },
    cwd: opts.cwd,
  });
  let exitMs = -1;
  const exited = proc.exited.then((code) => {
    exitMs = performance.now() - start;
    return code;
  });
  const out = readToEnd(proc.stdout);
  const err = readToEnd(proc.stderr);
  const done = Promise.all([exited, out.text, err.text]);
  const timeout = Bun.sleep(opts.timeoutMs ?? LAUNCH_TIMEOUT_MS).then(() => null);
  const settled = await Promise.race([done, timeout]);
  const ms = performance.now() - start;
  if (settled === null) {
    // The caller would wait forever. Stop waiting; what holds the pipes is
    // the test's to end (it knows the pid), the direct child is ours to end.
    if (exitMs < 0) proc.kill("SIGKILL");
    out.cancel();
    err.cancel();
  }
  const code = exitMs < 0 ? -1 : proc.signalCode ? 128 + signalNumber(proc.signalCode) : (proc.exitCode ?? -1);
  return {
    argv,
    code,
    output: out.sofar(),
    stderr: err.sofar(),
    exitMs: Math.round(exitMs),
    ms: Math.round(ms),
    hung: settled === null,
    retries: 0,
  };
}

function signalNumber(sig: string | number): number {
  if (typeof sig === "number") return sig;
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 } as Record<string, number>)[sig] ?? 0;
}

/** A pipe read to its end, with what arrived so far and a way to stop reading. */
function readToEnd(stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let got = "";
  const text = (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
      if (done) return got;
      got += dec.decode(value, { stream: true });
    }
  })();
  return { text, sofar: () => got, cancel: () => void reader.cancel().catch(() => {}) };
}

// ---------------------------------------------------------------- Podman

/** One published port, as Podman's types.PortMapping. */
export interface PortMapping {
  hostIP?: string;
  hostPort: number;
  containerPort: number;
  /** number of ports (default 1) */
  range?: number;
  /** "tcp", "udp" or "tcp,udp" */
  protocol: string;
}

/** Podman's fixed link-local addresses (pasta_linux.go). */
export const PODMAN_DNS_FORWARD = "169.254.1.1";
export const PODMAN_MAP_GUEST_ADDR = "169.254.1.2";
const MAP_GUEST_ADDR = "--map-guest-addr";

/** Podman's port argument: [ADDR/]HOST-HOSTEND:CTR-CTREND. */
function portArgs(ports: PortMapping[]): string[] {
  const out: string[] = [];
  for (const p of ports) {
    const n = p.range ?? 1;
    for (const proto of p.protocol.split(",")) {
      out.push(proto === "udp" ? "-u" : "-t");
      out.push(`${p.hostIP ? `${p.hostIP}/` : ""}${p.hostPort}-${p.hostPort + n - 1}:${p.containerPort}-${p.containerPort + n - 1}`);
    }
  }
  return out;
}

/** Which of -t/-u/-T/-U an argument list already has. */
function forwardsIn(args: string[]) {
  const has = (...names: string[]) => args.some((a) => names.includes(a));
  return { t: has("-t", "--tcp-ports"), u: has("-u", "--udp-ports"), T: has("-T", "--tcp-ns"), U: has("-U", "--udp-ns") };
}

function noneForUnset(args: string[]): string[] {
  const f = forwardsIn(args);
  return [...(f.t ? [] : ["-t", "none"]), ...(f.u ? [] : ["-u", "none"]), ...(f.T ? [] : ["-T", "none"]), ...(f.U ? [] : ["-U", "none"])];
}

/** Podman 5's createPastaArgs(), with extra as containers.conf's pasta_options plus --network pasta:OPTS. */
export function podman5Args(netns: string, ports: PortMapping[], extra: string[] = []): string[] {
  let mapGw = false;
  let args = ["--config-net", ...extra].filter((a) => (a === "--map-gw" ? !(mapGw = true) : true));
  const given = (opt: string) => args.includes(opt);
  const quiet = !args.some((a) => a === "-d" || a === "--debug" || a === "--trace");
  args = [...args, ...portArgs(ports)];
  if (!given("--dns-forward")) args.push("--dns-forward", PODMAN_DNS_FORWARD);
  args.push(...noneForUnset(args));
  if (!mapGw) args.push("--no-map-gw");
  if (quiet) args.push("--quiet");
  args.push("--netns", netns);
  if (!given(MAP_GUEST_ADDR)) args.push(MAP_GUEST_ADDR, PODMAN_MAP_GUEST_ADDR);
  return args;
}

/** Podman 4.4's setupPasta() arguments. */
export function podman44Args(netns: string, ports: PortMapping[], extra: string[] = []): string[] {
  let mapGw = false;
  const args = ["--config-net", ...portArgs(ports), ...extra].filter((a) => (a === "--map-gw" ? !(mapGw = true) : true));
  args.push(...noneForUnset(args));
  if (!mapGw) args.push("--no-map-gw");
  args.push("--netns", netns);
  return args;
}

/**
 * Podman 5's Setup(): run pasta with one pipe for its output; on status 1
 * with "unrecognized option '--map-guest-addr" in it, when that option is the
 * one Podman added itself, run it again without the last two arguments.
 */
export async function launchPodman5(
  pasta: string[],
  netns: string,
  ports: PortMapping[],
  opts: Omit<CallerOptions, "combined"> = {},
  extra: string[] = [],
): Promise<Launch> {
  let args = podman5Args(netns, ports, extra);
  let ownMapGuestAddr = args.at(-2) === MAP_GUEST_ADDR;
  for (let retries = 0; ; retries++) {
    const r = await runLikeCaller([...pasta, ...args], { ...opts, combined: true });
    if (r.code === 1 && ownMapGuestAddr && r.output.includes(`unrecognized option '${MAP_GUEST_ADDR}`)) {
      ownMapGuestAddr = false;
      args = args.slice(0, -2);
      continue;
    }
    return { ...r, retries };
  }
}

/** Podman 4.4: stdout and stderr on separate pipes, no retry. */
export function launchPodman44(
  pasta: string[],
  netns: string,
  ports: PortMapping[],
  opts: Omit<CallerOptions, "combined"> = {},
  extra: string[] = [],
): Promise<Launch> {
  return runLikeCaller([...pasta, ...podman44Args(netns, ports, extra)], { ...opts, combined: false });
}

// ---------------------------------------------------------------- rootlesskit

export interface RootlesskitNet {
  /** the child's pid (its user and network namespaces are pasta's target) */
  childPid: number;
  ifname?: string;
  mtu?: number;
  /** --cidr, default 10.0.2.0/24: the child gets .100, the gateway .2, DNS .3 */
  net?: string;
  prefix?: number;
  disableHostLoopback?: boolean;
  enableIPv6?: boolean;
  implicitPortForwarding?: boolean;
}

/** The addresses rootlesskit derives from its CIDR (iputils.AddIPInt). */
export function rootlesskitAddrs(net = "10.0.2.0"): { address: string; gateway: string; dns: string } {
  const b = net.split(".").map(Number);
  const plus = (n: number) => [b[0], b[1], b[2], b[3]! + n].join(".");
  return { address: plus(100), gateway: plus(2), dns: plus(3) };
}

/** The parent driver's ConfigureNetwork() arguments. */
export function rootlesskitArgs(n: RootlesskitNet, hasHostLoToNsLo: boolean): string[] {
  const a = rootlesskitAddrs(n.net);
  const implicit = n.implicitPortForwarding ?? true;
  return [
    "--stderr",
    `--ns-ifname=${n.ifname ?? "tap0"}`,
    `--mtu=${n.mtu ?? 65520}`,
    "--config-net",
    `--address=${a.address}`,
    `--netmask=${n.prefix ?? 24}`,
    `--gateway=${a.gateway}`,
    `--dns-forward=${a.dns}`,
    ...((n.disableHostLoopback ?? true) ? ["--no-map-gw"] : []),
    ...((n.enableIPv6 ?? false) ? [] : ["--ipv4-only"]),
    ...(implicit ? ["--tcp-ports=auto", "--udp-ports=auto"] : ["--tcp-ports=none", "--udp-ports=none"]),
    ...(hasHostLoToNsLo ? ["--host-lo-to-ns-lo"] : []),
    String(n.childPid),
  ];
}

export interface RootlesskitLaunch extends Launch {
  /** `pasta --version` */
  version: Launch;
  /** `pasta --host-lo-to-ns-lo --version`: status 0 means the option exists */
  hostLoProbe: Launch;
}

/** DetectFeatures() then ConfigureNetwork(): what rootlesskit runs, in order. */
export async function launchRootlesskit(
  pasta: string[],
  n: RootlesskitNet,
  opts: Omit<CallerOptions, "combined"> = {},
): Promise<RootlesskitLaunch> {
  const version = await runLikeCaller([...pasta, "--version"], { ...opts, combined: true });
  const hostLoProbe = await runLikeCaller([...pasta, "--host-lo-to-ns-lo", "--version"], { ...opts, combined: true });
  const r = await runLikeCaller([...pasta, ...rootlesskitArgs(n, hostLoProbe.code === 0)], { ...opts, combined: true });
  return { ...r, version, hostLoProbe };
}

// ---------------------------------------------------------------- libvirt

export interface LibvirtNet {
  socket: string;
  pidFile: string;
  mtu?: number;
  sourceDev?: string;
  logFile?: string;
  address?: string;
  prefix?: number;
  /** <portForward proto='tcp'> ranges, already in passt's syntax (e.g. "8089:80") */
  tcpPorts?: string[];
  udpPorts?: string[];
}

/** qemuPasstStart()'s arguments. */
export function libvirtArgs(n: LibvirtNet): string[] {
  return [
    "--one-off",
    "--socket",
    n.socket,
    "--pid",
    n.pidFile,
    ...(n.mtu ? ["--mtu", String(n.mtu)] : []),
    ...(n.sourceDev ? ["--interface", n.sourceDev] : []),
    ...(n.logFile ? ["--log-file", n.logFile] : []),
    ...(n.address ? ["--address", n.address, ...(n.prefix ? ["--netmask", String(n.prefix)] : [])] : []),
    ...(n.tcpPorts ?? []).flatMap((p) => ["--tcp-ports", p]),
    ...(n.udpPorts ?? []).flatMap((p) => ["--udp-ports", p]),
  ];
}

/** virCommandRun(): two pipes read to their end, then the exit status. */
export function launchLibvirt(passt: string[], n: LibvirtNet, opts: Omit<CallerOptions, "combined"> = {}): Promise<Launch> {
  return runLikeCaller([...passt, ...libvirtArgs(n)], { ...opts, combined: false });
}

// ---------------------------------------------------------------- after the launch

/**
 * Pids of processes whose argv holds args as a contiguous run: the pasta or
 * passt a launch left running (its background copy keeps the argv). Tests
 * end them by these pids.
 */
export function pidsWithArgs(args: string[]): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    for (let i = 0; i + args.length <= argv.length; i++) {
      if (args.every((a, j) => argv[i + j] === a)) {
        out.push(Number(e));
        break;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- as a program

/** A launch described as data, for `bun test/tools/launchers.ts JSON`. */
export type LaunchSpec =
  | {
      launcher: "podman5" | "podman44";
      pasta: string[];
      netns: string;
      ports: PortMapping[];
      extra?: string[];
      env?: Record<string, string>;
    }
  | { launcher: "rootlesskit"; pasta: string[]; net: RootlesskitNet; env?: Record<string, string> }
  | { launcher: "libvirt"; passt: string[]; net: LibvirtNet; env?: Record<string, string> };

export function launch(spec: LaunchSpec): Promise<Launch> {
  const opts = { env: spec.env };
  switch (spec.launcher) {
    case "podman5":
      return launchPodman5(spec.pasta, spec.netns, spec.ports, opts, spec.extra);
    case "podman44":
      return launchPodman44(spec.pasta, spec.netns, spec.ports, opts, spec.extra);
    case "rootlesskit":
      return launchRootlesskit(spec.pasta, spec.net, opts);
    case "libvirt":
      return launchLibvirt(spec.passt, spec.net, opts);
  }
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? "null") as LaunchSpec | null;
  if (!spec) {
    process.stderr.write("usage: bun test/tools/launchers.ts LAUNCH-SPEC-JSON\n");
    process.exit(2);
  }
  const r = await launch(spec);
  process.stdout.write(JSON.stringify(r) + "\n");
  // A hung launch leaves a pipe nobody will ever close: don't wait for it.
  process.exit(0);
}
