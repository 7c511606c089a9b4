#!/usr/bin/env bun
/**
 * The bench suite: `bun run bench [--quick] [--json] [options]`.
 *
 * Measures our pasta and passt ("project": bun src/main.ts) side by side
 * with the reference pasta and passt (Debian package passt), upstream's
 * (a 2026 build, UPSTREAM_DIR; on the spliced path with --host-lo-to-ns-lo,
 * which gives the path the others take by default), slirp4netns,
 * and plain loopback (the ceiling), in the same run on the same machine, and
 * writes perf/results.json, perf/RESULTS.md and perf/index.html. The tables
 * and rows are in plan.ts (after the original's published performance tables).
 *
 * Set-up: per implementation its own test world (test/world.ts: a "host"
 * namespace standing in for the machine, an "upstream" namespace behind a
 * veth pair); per mode and MTU column a guest made here (Env.start):
 *
 *   tap: a guest namespace WORLD-g; pasta runs in the host namespace and
 *     joins it with --netns, as root (--runas 0: the reference otherwise
 *     drops to "nobody" and cannot open the namespace), -t/-u forwarding the
 *     guest's server ports. ns to host: servers in the host namespace, the
 *     guest's client connects to the gateway (192.0.2.1, fe80::1%eth0),
 *     which both pastas map to the host's loopback. host to ns: the client
 *     runs in the upstream namespace and connects to the host's address
 *     (192.0.2.2 / 2001:db8::2) over the veth: a non-loopback source, so the
 *     reference takes the tap path, not the spliced one.
 *     slirp4netns: the same, its guest at 10.0.2.100 / fd00::, the gateway
 *     10.0.2.2 / fd00::2, ports through its API socket (add_hostfwd).
 *   lo: the same guest namespace, its loopback at the column's MTU, and
 *     -T/-U as well: ns to host from the guest's 127.0.0.1 / ::1 to the
 *     host's, host to ns from the host's loopback to the guest's.
 *   passt: passt in the host namespace with its socket in the world's dir,
 *     a relay guest (test/tools/relay.ts) connected to it, configured with
 *     the addresses passt hands out; targets as in tap.
 *   passt-vu: passt --vhost-user (ours and upstream's) the same way, with
 *     DPDK's testpmd (Debian package dpdk-dev) as the vhost-user front-end
 *     in a namespace of its own: its virtio_user port on passt's socket, its
 *     tap port the namespace's eth0, io forwarding with retries between the
 *     two on one polling core (--no-huge: its memory in a memfd passt maps).
 *   loopback: client and server both in the host namespace over 127.0.0.1 /
 *     ::1, the loopback MTU set to the column's MTU.
 *
 * Every cell is the median of N runs (3, 1 with --quick), with min and max;
 * implementations interleave (A B C A B C ...) within a cell. Throughput
 * cells also record the daemon's CPU time per GB received (/proc/PID/stat);
 * memory rows the daemon's VmRSS after start and VmHWM before stop, and its
 * RssAnon after start, right after each run (the largest: peak) and 6 s
 * after the column's last run. A
 * missing tool is reported and its rows or implementation skipped. All
 * traffic stays inside namespaces made here.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect as unixConnect } from "node:net";
import type { Subprocess } from "bun";
import { ADDR, BUN, REPO, canRunE2E, createWorld, isAlive, run, type Child, type World } from "../test/world.ts";
import { cpuSeconds, rssBytes } from "../test/tools/proc-stats.ts";
import { startGuest, type Guest } from "../test/tools/relay.ts";
import {
  IMPL_MODES,
  MODES,
  STARTUP_ROW,
  allRows,
  isMemory,
  oursOnly,
  udpLenFor,
  udpRateFor,
  windowFor,
  withColumns,
  type Mode,
  type RowDef,
} from "./plan.ts";
import { markdown, median, roundFor, withHeadline, type Cell } from "./report.ts";
import { renderHtml } from "./html.ts";

// ---------------------------------------------------------------------------
// Command line

interface Args {
  quick: boolean;
  json: boolean;
  runs: number;
  /** iperf3 -t seconds (measured) and -O seconds (omitted) */
  time: number;
  omit: number;
  /** seconds per RR / CRR measurement */
  rrTime: number;
  impls: string[] | null;
  only: RegExp | null;
  /** only these MTU columns (null: all) */
  mtus: number[] | null;
  out: string;
  /** run src/ as it is in the working tree, not a snapshot of HEAD */
  worktree: boolean;
  /** only rewrite RESULTS.md from the results.json in out */
  render: boolean;
}

const USAGE = `usage: bun bench/run.ts [--quick] [--json] [--runs N] [--time S] [--rr-time S]
                         [--impl project,pasta,passt,upstream,slirp4netns,loopback] [--only REGEX] [--mtu LIST] [--out DIR]

  --quick      one run per cell, IPv4 only, the largest MTU only, short
               measurements (about five minutes)
  --json       print only the results JSON on stdout (progress stays on stderr)
  --runs N     runs per cell (default 3, 1 with --quick)
  --time S     iperf3 seconds per run (default 5, 2 with --quick), plus 1 s
               omitted (none with --quick)
  --rr-time S  seconds per RR / CRR run (default 4, 1 with --quick)
  --impl LIST  implementations to run (default: all that are installed)
  --only RE    only rows whose "table row" matches RE
  --mtu LIST   only these MTU columns (comma-separated; rows with none of
               them are left out), e.g. to profile one cell
  --out DIR    where results.json and RESULTS.md go (default perf/)
  --worktree   run our src/ as it is in the working tree (default: a snapshot
               of the committed HEAD, taken at start, so that edits made while
               the bench runs do not change what it measures)
  --render     measure nothing: rewrite RESULTS.md and index.html from the results.json in
               the --out directory (after a change of its layout)
`;

function parseCli(argv: string[]): Args {
  const a: Args = {
    quick: false,
    json: false,
    runs: 0,
    time: 0,
    omit: 1,
    rrTime: 0,
    impls: null,
    only: null,
    mtus: null,
    out: join(REPO, "perf"),
    worktree: false,
    render: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [k, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const val = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    const num = () => {
      const v = Number(val());
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${k}: not a positive number`);
      return v;
    };
    switch (k) {
      case "--quick":
        a.quick = true;
        break;
      case "--json":
        a.json = true;
        break;
      case "--runs":
        a.runs = Math.min(20, Math.round(num()));
        break;
      case "--time":
        a.time = Math.min(120, num());
        break;
      case "--rr-time":
        a.rrTime = Math.min(120, num());
        break;
      case "--impl":
        a.impls = val()
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
        break;
      case "--only":
        a.only = new RegExp(val(), "i");
        break;
      case "--mtu":
        a.mtus = val().split(",").map(Number);
        if (a.mtus.some((m) => !Number.isInteger(m) || m <= 0)) throw new Error(`--mtu: a list of MTUs, e.g. 1500,65520\n${USAGE}`);
        break;
      case "--out":
        a.out = val();
        break;
      case "--worktree":
        a.worktree = true;
        break;
      case "--render":
        a.render = true;
        break;
      case "-h":
      case "--help":
        process.stdout.write(USAGE);
        return process.exit(0);
      default:
        throw new Error(`unknown option ${arg}\n${USAGE}`);
    }
  }
  if (!a.runs) a.runs = a.quick ? 1 : 3;
  if (!a.time) a.time = a.quick ? 2 : 5;
  if (!a.rrTime) a.rrTime = a.quick ? 1 : 4;
  if (a.quick) a.omit = 0;
  return a;
}

// ---------------------------------------------------------------------------
// Implementations

interface ImplDef {
  name: string;
  /** shown in tables */
  label: string;
  kind: "pasta" | "passt" | "slirp" | "loopback";
  /** the executables of a reference, by what it runs as (ours: bun src/main.ts) */
  bin: { pasta?: string; passt?: string };
  version: string;
  missing: string | null;
  /** the modes (plan.ts) it takes part in */
  modes: Mode[];
}

function sh(cmd: string[]): string {
  const r = run(cmd, { timeoutMs: 10000 });
  return r.code === 0 ? r.stdout.trim() : "";
}

/**
 * How long after a column's last run its "anonymous memory 6 s after the
 * runs" row is read: long enough for any daemon that gives memory back when
 * traffic stops to have done so (ours: 2 to 4 s, src/loop/loop.ts), the same
 * for every implementation; before, the wait depended on how many
 * implementations ran after ours.
 */
const AFTER_RUNS_MS = 6000;
/**
 * How long after a column's last run its "40 s after the runs (at rest)"
 * row is read: ours rests REST_MS (30 s) after its quiet hooks ran, which is
 * 2 to 4 s after the traffic; 40 s leaves a margin.
 */
const REST_AFTER_RUNS_MS = 40000;

/**
 * How long a column waits after its last run before reading its memory rows
 * (ms): to "6 s after the runs", then on to "at rest"; each only when such a
 * row is measured in that column (memRows: the selected memory rows of its
 * mode), so that a bench of a few throughput rows does not wait 40 s a column.
 */
function afterRunsWaits(memRows: RowDef[], col: number): { end: number; rest: number } {
  const has = (kind: string) => memRows.some((r) => r.kind === kind && r.columns.includes(col));
  const rest = has("anon-rest") ? REST_AFTER_RUNS_MS - AFTER_RUNS_MS : 0;
  return { end: has("anon-end") || rest > 0 ? AFTER_RUNS_MS : 0, rest };
}
/** Bytes per "MB" of the memory rows: /proc's kB are KiB, so MiB. */
const MB = 1 << 20;

/** Where `bun src/main.ts` of the project runs from (see snapshotProject). */
let projectDir = REPO;

/**
 * A copy of the committed HEAD's src/ and native/ (plus package.json and the
 * like, node_modules linked) in dir, its shim built there; or the working
 * tree itself with worktree. Returns the version string.
 */
function snapshotProject(dir: string, worktree: boolean): string {
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
  const commit = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]);
  if (worktree) {
    projectDir = REPO;
    const dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--", "src", "native"]) ? "+uncommitted changes" : "";
    return `${pkg.version} (working tree at ${commit}${dirty}), bun ${Bun.version}`;
  }
  const tracked = sh(["git", "-C", REPO, "ls-tree", "--name-only", "HEAD"]).split("\n");
  const paths = ["src", "native", "package.json", "bunfig.toml", "tsconfig.json"].filter((p) => tracked.includes(p));
  mkdirSync(dir, { recursive: true });
  const r = Bun.spawnSync(
    ["sh", "-c", `r="$1"; d="$2"; shift 2; git -C "$r" archive HEAD -- "$@" | tar -x -C "$d"`, "sh", REPO, dir, ...paths],
    { stdout: "pipe", stderr: "pipe" },
  );
  if (r.exitCode !== 0 || !existsSync(join(dir, "src", "main.ts"))) throw new Error(`snapshot of HEAD failed: ${r.stderr.toString()}`);
  if (existsSync(join(REPO, "node_modules"))) symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
  if (existsSync(join(dir, "native", "build.ts"))) {
    const b = run([BUN, join(dir, "native", "build.ts")], { timeoutMs: 60000 });
    if (b.code !== 0) throw new Error(`building the shim of the snapshot failed: ${b.stderr}${b.stdout}`);
  }
  projectDir = dir;
  return `${pkg.version} (${commit}), bun ${Bun.version}`;
}

/** Where the upstream build lives (its README says what it is); PASTA_UPSTREAM_DIR overrides. */
const UPSTREAM_DIR = process.env.PASTA_UPSTREAM_DIR ?? resolve(REPO, "..", "shared", "reference", "upstream");

function implDefs(projectVersion: string): ImplDef[] {
  const deb = (p: string) => sh(["dpkg-query", "-W", "-f", "${Version}", p]);
  const up = { pasta: join(UPSTREAM_DIR, "pasta"), passt: join(UPSTREAM_DIR, "passt") };
  const upMissing = [up.pasta, up.passt].filter((f) => !existsSync(f));
  const slirpV = Bun.which("slirp4netns")
    ? (sh(["slirp4netns", "--version"])
        .split("\n")[0]
        ?.replace(/^slirp4netns version /, "") ?? "")
    : "";
  const fromDeb = (bin: string) => ({
    version: existsSync(bin) ? `passt ${deb("passt") || "unknown"}` : "",
    missing: existsSync(bin) ? null : `${bin} not installed (Debian package passt)`,
  });
  const defs: Omit<ImplDef, "modes">[] = [
    { name: "project", label: "ours", kind: "pasta", bin: {}, version: projectVersion, missing: null },
    { name: "pasta", label: "reference", kind: "pasta", bin: { pasta: "/usr/bin/pasta" }, ...fromDeb("/usr/bin/pasta") },
    { name: "passt", label: "reference", kind: "passt", bin: { passt: "/usr/bin/passt" }, ...fromDeb("/usr/bin/passt") },
    {
      name: "upstream",
      label: "upstream",
      kind: "pasta",
      bin: up,
      version: upMissing.length ? "" : `${sh([up.pasta, "--version"]).split("\n")[0] ?? "unknown"} (${UPSTREAM_DIR})`,
      missing: upMissing.length
        ? `${upMissing.join(", ")} not there (the upstream build, see /work/shared/reference/upstream/README.md)`
        : null,
    },
    {
      name: "slirp4netns",
      label: "slirp4netns",
      kind: "slirp",
      bin: {},
      version: slirpV ? `slirp4netns ${slirpV}` : "",
      missing: Bun.which("slirp4netns") ? null : "slirp4netns not installed (Debian package slirp4netns)",
    },
    { name: "loopback", label: "loopback", kind: "loopback", bin: {}, version: `Linux ${release()} loopback`, missing: null },
  ];
  return defs.map((d) => ({ ...d, modes: IMPL_MODES[d.name]! }));
}

// ---------------------------------------------------------------------------
// Progress (stderr) and notes

class Progress {
  private done = 0;
  private spent = 0; // seconds actually spent on finished steps
  private estimated = 0; // their estimates
  private lastLen = 0;
  private readonly tty = !!process.stderr.isTTY;
  private readonly t0 = performance.now();
  constructor(
    private remainingEstimate: number,
    private total: number,
  ) {}

  step(label: string, counted = true) {
    // measured steps so far tell how the estimates hold up on this machine
    const rate = this.estimated > 20 ? this.spent / this.estimated : 1;
    const left = Math.max(0, this.remainingEstimate * rate);
    const line = `[${counted ? this.done + 1 : this.done}/${this.total}] ${label} · ~${fmtDuration(left)} left`;
    if (!counted && !this.tty) return;
    if (this.tty) {
      process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 160) - 1)}`);
    } else process.stderr.write(line + "\n");
    this.lastLen = line.length;
  }
  finish(estimate: number, seconds: number) {
    this.done++;
    this.spent += seconds;
    this.estimated += estimate;
    this.remainingEstimate = Math.max(0, this.remainingEstimate - estimate);
  }
  /** time spent outside the counted steps (starting daemons) */
  account(estimate: number, _seconds: number) {
    this.remainingEstimate = Math.max(0, this.remainingEstimate - estimate);
  }
  /** a message that must not be overwritten */
  say(msg: string) {
    if (this.tty && this.lastLen) process.stderr.write("\r\x1b[K");
    process.stderr.write(msg + "\n");
    this.lastLen = 0;
  }
  end() {
    if (this.tty && this.lastLen) process.stderr.write("\r\x1b[K");
    process.stderr.write(`bench: done in ${fmtDuration((performance.now() - this.t0) / 1000)}\n`);
  }
}

function fmtDuration(s: number): string {
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

const notes: string[] = [];
const skippedList: string[] = [];
function onceSkipped(msg: string) {
  if (!skippedList.includes(msg)) skippedList.push(msg);
}

// ---------------------------------------------------------------------------
// Environments: one world per implementation, a guest namespace per MTU

const GUEST_IPERF_PORT = 5201; // forwarded by pasta -t, server in the guest
const GUEST_RR_PORT = 5202; // forwarded by pasta -t, server in the guest
const HOST_IPERF_PORT = 5301; // server in the host namespace (ns to host)
const HOST_RR_PORT = 5302; // server in the host namespace (ns to host)
/** The groups of the multicast rows: an iperf2 server in the guest joins one on GUEST_IPERF_PORT. */
const MCAST_GROUP = { 4: "239.255.52.1", 6: "ff15::5201" } as const;
const HOST_SOCKPERF_PORT = 5303; // sockperf's TCP and UDP servers, host namespace, 127.0.0.1 (ns to host, spliced)
/**
 * Latency rows run on one CPU: the client, the server, the daemon (and
 * passt's relay guest) pinned to LATENCY_CPU for the measurement. Left to
 * the scheduler, a request-response exchange on two cores comes out in two
 * populations (all on one core, or woken across cores: 36-40 µs against
 * 75-115 µs for the same pasta, sockperf over the spliced path), and which
 * one a run gets decides the cell.
 */
const LATENCY_CPU = "0";
const PIN = ["taskset", "-c", LATENCY_CPU];
/** sockperf (Debian package sockperf), for the spliced path's ping-pong rows; null: those rows are skipped. */
const SOCKPERF = Bun.which("sockperf");

/** sysctls for every namespace we make: no DAD delays, room for CRR's many connections */
const NS_SYSCTLS = [
  "net.ipv6.conf.all.accept_dad=0",
  "net.ipv6.conf.default.accept_dad=0",
  "net.ipv4.ip_local_port_range=10000 65000",
  "net.ipv4.tcp_tw_reuse=1",
];

function sysctlIn(ns: string, settings: string[]) {
  const r = run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", ...settings]);
  if (r.code !== 0) throw new Error(`sysctl in ${ns}: ${r.stderr.trim()}`);
}

/** Guest namespaces made here (the world's watchdog does not know them). */
const guestNamespaces = new Set<string>();
let scratch = "";

function deleteGuestNs(ns: string) {
  if (existsSync(`/run/netns/${ns}`)) {
    for (let round = 0; round < 3; round++) {
      const pids = run(["ip", "netns", "pids", ns]).stdout.split(/\s+/).filter(Boolean).map(Number);
      if (!pids.length) break;
      for (const pid of pids)
        if (pid > 1 && pid !== process.pid)
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
      Bun.sleepSync(50);
    }
    run(["ip", "netns", "del", ns]);
  }
  guestNamespaces.delete(ns);
}

/** Guest namespaces of bench runs whose process is gone (names WORLDPREFIX-PID-N-g). */
function sweepStaleGuests() {
  for (const line of run(["ip", "netns", "list"]).stdout.split("\n")) {
    const ns = line.trim().split(/\s+/)[0] ?? "";
    const m = ns.match(/^pb-(\d+)-\d+-g$/);
    if (m && Number(m[1]) !== process.pid && !isAlive(Number(m[1]))) deleteGuestNs(ns);
  }
}

/** Outside watchdog: removes our guest namespaces if this process dies first (6 h at most). */
function guestWatchdog(ns: string) {
  const script =
    `tail --pid=${process.pid} -f /dev/null 2>/dev/null || while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ` +
    `for p in $(ip netns pids '${ns}' 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; ip netns del '${ns}' 2>/dev/null`;
  const wd = Bun.spawn(["timeout", "21600", "sh", "-c", script], { stdin: "ignore", stdout: "ignore", stderr: "ignore", detached: true });
  wd.unref();
  return wd;
}

/** Where a side of a measurement runs: "host" (the world's host namespace), "upstream", or "guest". */
type Side = "host" | "upstream" | "guest";

interface Targets {
  /** where the guest reaches the host (IPv4 / IPv6), and the scope interface for a link-local one */
  gw4: string;
  gw6: string;
  gw6If: string | null;
}

/** Transmit queue of the passt guests' tap (relay and testpmd), in frames (configurePasstGuest). */
const PASST_GUEST_TXQUEUELEN = 10000;
/** The ports the guest's servers listen at, forwarded host to guest: TCP and UDP. */
const GUEST_PORTS = `${GUEST_IPERF_PORT},${GUEST_RR_PORT}`;
/** The host's servers, forwarded guest loopback to host loopback in the spliced mode. */
const HOST_PORTS = `${HOST_IPERF_PORT},${HOST_RR_PORT},${HOST_SOCKPERF_PORT}`;
/** The passt guest's interface (made by the relay). */
const PASST_GUEST_IF = "eth0";

class Env {
  world!: World;
  /** the guest's named namespace (tap and lo modes) */
  gns = "";
  /** the passt guest (passt mode) */
  guest: Guest | null = null;
  daemon: Child | null = null;
  guestRr: Child | null = null;
  hostRr: Child | null = null;
  mtu = 0;
  mode: Mode = "tap";
  targets: Targets | null = null;
  ipv6 = true;
  /** IPv6 forwarding from host to guest works */
  ipv6In = true;
  restarts = 0;
  private watchdogs: Subprocess[] = [];

  constructor(
    readonly impl: ImplDef,
    readonly rrBin: string | null,
  ) {}

  async init() {
    this.world = await createWorld({ prefix: "pb", mtu: 65520 });
    for (const ns of [this.world.host, this.world.upstream]) sysctlIn(ns, NS_SYSCTLS);
    if (this.rrBin) {
      this.hostRr = this.world.spawn(this.world.host, [...PIN, this.rrBin, "server", String(HOST_RR_PORT)]);
      await this.hostRr.waitFor("ready", { timeoutMs: 5000 });
    }
    if (SOCKPERF) {
      for (const proto of [["--tcp"], []]) {
        const srv = this.world.spawn(this.world.host, [
          ...PIN,
          SOCKPERF,
          "server",
          ...proto,
          "-i",
          "127.0.0.1",
          "-p",
          String(HOST_SOCKPERF_PORT),
        ]);
        await srv.waitFor("to block on socket", { timeoutMs: 5000 });
      }
    }
  }

  /** argv prefix that runs a command on a side */
  enter(side: Side): string[] {
    if (this.impl.kind === "loopback" || side === "host") return ["ip", "netns", "exec", this.world.host];
    if (side === "upstream") return ["ip", "netns", "exec", this.world.upstream];
    if (this.guest) return this.guest.enter;
    return ["ip", "netns", "exec", this.gns];
  }

  spawn(side: Side, argv: string[]): Child {
    return this.world.spawn(null, [...this.enter(side), ...argv]);
  }

  exec(side: Side, argv: string[], timeoutMs: number) {
    return this.world.exec(null, [...this.enter(side), ...argv], { timeoutMs });
  }

  /** (Re)start the implementation for mode with the guest at this MTU. */
  async start(mtu: number, mode: Mode) {
    await this.stop();
    this.mtu = mtu;
    this.mode = mode;
    this.ipv6 = this.ipv6In = true;
    if (this.impl.kind === "loopback") {
      run(["ip", "-n", this.world.host, "link", "set", "lo", "mtu", String(mtu)]);
      return;
    }
    if (mode === "passt-vu") await this.startPasstVu(mtu);
    else if (this.impl.kind === "passt" || mode === "passt") await this.startPasst(mtu);
    else {
      this.makeGuestNs();
      if (mode === "lo") run(["ip", "-n", this.gns, "link", "set", "lo", "mtu", String(mtu)]);
      if (this.impl.kind === "pasta") await this.startPasta(mode === "lo" ? 65520 : mtu, mode);
      else await this.startSlirp(mtu);
    }
    if (this.rrBin) {
      this.guestRr = this.spawn("guest", [...PIN, this.rrBin, "server", String(GUEST_RR_PORT)]);
      await this.guestRr.waitFor("ready", { timeoutMs: 5000 });
    }
  }

  private makeGuestNs() {
    this.gns = `${this.world.id}-g`;
    guestNamespaces.add(this.gns);
    const add = run(["ip", "netns", "add", this.gns]);
    if (add.code !== 0) throw new Error(`ip netns add ${this.gns}: ${add.stderr.trim()}`);
    this.watchdogs.push(guestWatchdog(this.gns));
    sysctlIn(this.gns, NS_SYSCTLS);
    run(["ip", "-n", this.gns, "link", "set", "lo", "up"]);
  }

  /** pasta (ours or the reference) in the host namespace, attached to the guest namespace. */
  private async startPasta(mtu: number, mode: Mode) {
    const nsPath = `/run/netns/${this.gns}`;
    const fwd = ["-t", GUEST_PORTS, "-u", GUEST_PORTS, ...(mode === "lo" ? ["-T", HOST_PORTS, "-U", HOST_PORTS] : [])];
    // upstream (since 2024) forwards the host's loopback to the namespace's
    // address, not its loopback, unless told: the same (loopback to loopback) path needs the option
    const sameLoopback = mode === "lo" && this.impl.name === "upstream" ? ["--host-lo-to-ns-lo"] : [];
    const common = ["--runas", "0", "-f", "-q", "--config-net", "-m", String(mtu), ...fwd, ...sameLoopback, "--netns", nsPath];
    const argv = this.impl.name === "project" ? [BUN, join(projectDir, "src", "main.ts"), ...common] : [this.impl.bin.pasta!, ...common];
    this.daemon = this.world.spawn(this.world.host, argv);
    this.targets = { gw4: ADDR.gw4, gw6: ADDR.gwLL, gw6If: "eth0" };
    await this.waitReady(ADDR.host4, ADDR.host6, mode === "lo" ? "both" : "host");
  }

  /** slirp4netns attached to the guest namespace, ports forwarded through its API socket. */
  private async startSlirp(mtu: number) {
    const nsPath = `/run/netns/${this.gns}`;
    const api = join(this.world.dir, "slirp.sock");
    rmSync(api, { force: true });
    const argv = [
      "slirp4netns",
      "--configure",
      `--mtu=${mtu}`,
      "--enable-ipv6",
      `--api-socket=${api}`,
      "--netns-type=path",
      nsPath,
      "tap0",
    ];
    this.daemon = this.world.spawn(this.world.host, argv);
    this.targets = { gw4: "10.0.2.2", gw6: "fd00::2", gw6If: null };
    await this.waitReady("10.0.2.100", "fd00::", "none");
    // the guest's IPv6 address comes from SLAAC (libslirp's router advertisements)
    const guest6 = run(["ip", "-n", this.gns, "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global"]).stdout.match(
      /inet6 (fd00:[0-9a-f:]+)\//,
    )?.[1];
    if (this.ipv6 && !guest6) {
      this.ipv6 = false;
      this.note("no global IPv6 address on tap0; its IPv6 rows are skipped");
    }
    for (const port of [GUEST_IPERF_PORT, GUEST_RR_PORT]) {
      for (const proto of ["tcp", "udp"]) {
        await slirpApi(api, { execute: "add_hostfwd", arguments: { proto, host_addr: "0.0.0.0", host_port: port, guest_port: port } });
        if (this.ipv6 && this.ipv6In) {
          try {
            await slirpApi(api, {
              execute: "add_hostfwd",
              arguments: { proto, host_addr: "::", host_port: port, guest_addr: guest6, guest_port: port },
            });
          } catch (e) {
            onceSkipped(
              `slirp4netns: IPv6 host-to-ns rows: add_hostfwd to its IPv6 address (${this.impl.version}) is refused: ${(e as Error).message}`,
            );
            this.ipv6In = false;
          }
        }
      }
    }
  }

  /**
   * passt (ours in passt mode, or the reference) in the host namespace, and
   * a relay guest connected to its socket, configured statically with the
   * addresses passt hands out (the host's: 192.0.2.2, 2001:db8::2, routes
   * via the host's gateways).
   */
  private async startPasst(mtu: number) {
    const sock = await this.startPasstDaemon(mtu, []);
    this.guest = await startGuest(this.world, ["--socket", sock]);
    await this.configurePasstGuest(mtu);
  }

  /** passt in the host namespace at this MTU, with extra arguments; resolves with its socket's path once bound. */
  private async startPasstDaemon(mtu: number, extra: string[]): Promise<string> {
    const sock = join(this.world.dir, "passt.sock");
    rmSync(sock, { force: true });
    const args = ["--runas", "0", "-f", "-q", "-m", String(mtu), "-s", sock, "-t", GUEST_PORTS, "-u", GUEST_PORTS, ...extra];
    const argv = this.impl.name === "project" ? [BUN, join(projectDir, "src", "main.ts"), ...args] : [this.impl.bin.passt!, ...args];
    this.daemon = this.world.spawn(this.world.host, argv, { env: { PASST_MODE: "passt" } });
    const deadline = performance.now() + 20000;
    while (!existsSync(sock)) {
      if (!isAlive(this.daemon.pid))
        throw new Error(`${this.impl.name} exited (${await this.daemon.exited}) while starting: ${tail(this.daemon.stderr())}`);
      if (performance.now() > deadline) throw new Error(`${this.impl.name}: no socket at ${sock} after 20 s`);
      await Bun.sleep(20);
    }
    return sock;
  }

  /**
   * passt --vhost-user, and testpmd in a new network namespace as its
   * front-end: the tap port it makes there (eth0) is the guest's interface,
   * configured as the relay guest's. testpmd's frames are one mbuf each
   * (--mbuf-size, --max-pkt-len: the MTU and the Ethernet header).
   */
  private async startPasstVu(mtu: number) {
    const sock = await this.startPasstDaemon(mtu, ["--vhost-user"]);
    // io forwarding with retries: a full transmit ring (passt busy) holds
    // the packet instead of dropping it, as a VM's virtio-net driver stops
    // its queue; plain io forwarding dropped there, and TCP from the guest
    // collapsed to tens of Mbit/s with every back-end
    const cmds = join(this.world.dir, "testpmd.cmds");
    writeFileSync(cmds, "set fwd io retry\nset burst tx delay 10 retry 10000\n");
    const testpmd = [
      "dpdk-testpmd",
      "--no-huge",
      "-m",
      "1024",
      "--no-pci",
      "-l",
      "0,1",
      "--file-prefix",
      `${this.world.id}-vu`,
      `--vdev=net_virtio_user0,path=${sock},queue_size=1024`,
      `--vdev=net_tap0,iface=${PASST_GUEST_IF}`,
      "--",
      `--cmdline-file=${cmds}`,
      "--auto-start",
      "--stats-period",
      "3600",
      `--max-pkt-len=${mtu + 14}`,
      `--mbuf-size=${Math.min(65535, mtu + 14 + 128)}`,
      "--total-num-mbufs=8192",
    ];
    const child = this.world.spawn(this.world.host, ["unshare", "--net", "--", ...testpmd]);
    await child.waitFor(/packets\/burst=|Cause:/, { stream: "both", timeoutMs: 30000 });
    if (!/packets\/burst=/.test(child.stdout())) throw new Error(`testpmd did not start: ${tail(child.stdout() + child.stderr())}`);
    const enter = ["nsenter", `--net=/proc/${child.pid}/ns/net`, "--"];
    this.guest = {
      child,
      enter,
      exec: (cmd, opts) => this.world.exec(null, [...enter, ...cmd], opts),
      spawn: (cmd, opts) => this.world.spawn(null, [...enter, ...cmd], opts),
    };
    await this.exec("guest", ["ip", "link", "set", "lo", "up"], 10000);
    await this.configurePasstGuest(mtu);
  }

  /** The passt guest's eth0: the MTU, the addresses passt hands out, routes via its gateways; then wait for the forwarded ports. */
  private async configurePasstGuest(mtu: number) {
    const ip = async (args: string[]) => {
      const r = await this.exec("guest", ["ip", ...args], 10000);
      if (r.code !== 0) throw new Error(`ip ${args.join(" ")} in the passt guest: ${r.stderr.trim()}`);
    };
    await this.exec("guest", ["sysctl", "-q", "-w", ...NS_SYSCTLS], 10000);
    await ip(["link", "set", PASST_GUEST_IF, "mtu", String(mtu)]);
    // A tap drops what its queue cannot hold (the kernel never stops the
    // sender's queue, as a VM's virtio-net driver does when its ring is
    // full), and both guests stop reading it while passt is behind (the
    // relay until passt's socket drains, testpmd while it retries into
    // passt's ring): at the default 1000 frames the guest lost tens to
    // hundreds of frames in some runs, and TCP from it stalled for whole
    // runs with every implementation. 10000 holds the guest sockets' windows.
    await ip(["link", "set", PASST_GUEST_IF, "txqueuelen", String(PASST_GUEST_TXQUEUELEN)]);
    await ip(["addr", "add", `${ADDR.host4}/${ADDR.prefix4}`, "dev", PASST_GUEST_IF]);
    await ip(["route", "replace", "default", "via", ADDR.gw4]);
    await ip(["-6", "addr", "add", `${ADDR.host6}/${ADDR.prefix6}`, "dev", PASST_GUEST_IF, "nodad"]);
    await ip(["-6", "route", "replace", "default", "via", ADDR.gwLL, "dev", PASST_GUEST_IF]);
    this.targets = { gw4: ADDR.gw4, gw6: ADDR.gwLL, gw6If: PASST_GUEST_IF };
    await this.waitListeners("host", GUEST_PORTS);
  }

  note(msg: string) {
    notes.push(`${this.impl.name} (${this.mode}, MTU ${this.mtu}): ${msg}`);
  }

  /**
   * Bounded wait for the guest's addresses and routes, and the forwarded
   * ports: on the host ("host"), on both sides ("both": the spliced mode's
   * ports towards the host too), or none.
   */
  private async waitReady(addr4: string, addr6: string, listeners: "host" | "both" | "none") {
    const deadline = performance.now() + 20000;
    let why = "";
    while (performance.now() < deadline) {
      if (this.daemon && !isAlive(this.daemon.pid)) {
        const code = await this.daemon.exited;
        throw new Error(`${this.impl.name} exited (${code}) while starting: ${tail(this.daemon.stderr())}`);
      }
      const a = run(["ip", "-n", this.gns, "addr", "show"]).stdout;
      const r4 = run(["ip", "-n", this.gns, "-4", "route", "show", "default"]).stdout;
      const r6 = run(["ip", "-n", this.gns, "-6", "route", "show", "default"]).stdout;
      const v4ok = a.includes(`inet ${addr4}/`) && r4.includes("default");
      const v6ok = a.includes(`inet6 ${addr6}`) && !a.includes("tentative") && r6.includes("default");
      const lok =
        listeners === "none" || (this.listening("host", GUEST_PORTS) && (listeners === "host" || this.listening("guest", HOST_PORTS)));
      why = `IPv4 ${v4ok ? "up" : "not up"}, IPv6 ${v6ok ? "up" : "not up"}, listeners ${lok ? "up" : "not up"}`;
      if (v4ok && v6ok && lok) return;
      // slirp4netns's IPv6 comes from router advertisements: give it up to 10 s, then go on without
      if (listeners === "none" && v4ok && performance.now() > deadline - 10000) {
        this.ipv6 = false;
        this.note(`no IPv6 address in the guest after 10 s; its IPv6 rows are skipped`);
        return;
      }
      await Bun.sleep(50);
    }
    throw new Error(`${this.impl.name}: guest not ready after 20 s (${why}); stderr: ${tail(this.daemon?.stderr() ?? "")}`);
  }

  /** Are TCP listeners on all of ports ("A,B") on side? */
  private listening(side: Side, ports: string): boolean {
    const l = run([...this.enter(side), "ss", "-Hltn"]).stdout;
    return ports.split(",").every((p) => l.includes(`:${p} `));
  }

  private async waitListeners(side: Side, ports: string) {
    for (let i = 0; i < 400; i++) {
      if (this.listening(side, ports)) return;
      if (this.daemon && !isAlive(this.daemon.pid))
        throw new Error(`${this.impl.name} exited while starting: ${tail(this.daemon.stderr())}`);
      await Bun.sleep(50);
    }
    throw new Error(`${this.impl.name}: no listeners on ${ports} after 20 s`);
  }

  /** Is the daemon still there? If not, note it (once) and say why. */
  async checkAlive(): Promise<string | null> {
    if (this.impl.kind === "loopback" || !this.daemon) return null;
    if (isAlive(this.daemon.pid)) return null;
    const code = await this.daemon.exited;
    const msg = `${this.impl.name} exited with status ${code}; stderr: ${tail(this.daemon.stderr())}`;
    this.daemon = null;
    return msg;
  }

  /** The daemon's resident set now (VmRSS), at its peak (VmHWM), or its anonymous part now (RssAnon), in MB; null without one. */
  rss(which: "VmRSS" | "VmHWM" | "RssAnon"): number | null {
    const bytes = this.daemon ? rssBytes(this.daemon.pid, which) : -1;
    return bytes < 0 ? null : bytes / MB;
  }

  /**
   * Pin the daemon and the relay guest, every thread, to LATENCY_CPU (on),
   * or give them every CPU again. testpmd (passt-vu) stays where it is: its
   * forwarding thread polls a core of its own, and on LATENCY_CPU it would
   * take the time of everything else.
   */
  pin(on: boolean) {
    const cpus = on ? LATENCY_CPU : `0-${availableParallelism() - 1}`;
    const guest = this.mode === "passt-vu" ? null : this.guest?.child;
    for (const c of [this.daemon, guest]) if (c && isAlive(c.pid)) run(["taskset", "-a", "-p", "-c", cpus, String(c.pid)]);
  }

  /**
   * Stop (on) or continue this environment's guest while another
   * implementation's cell runs. Only testpmd (passt-vu) needs it: it polls a
   * core even without traffic, and with two of them on that core each
   * forwarded a third as much (TCP guest to host 0.77 Gbit/s with both
   * running, 2.12 with the other stopped). The other guests sleep when idle.
   */
  hold(on: boolean) {
    const c = this.mode === "passt-vu" ? this.guest?.child : null;
    if (c && isAlive(c.pid)) process.kill(c.pid, on ? "SIGSTOP" : "SIGCONT");
  }

  /** CPU seconds (user + system) the daemon has used so far; null without one. */
  cpuSeconds(): number | null {
    const s = this.daemon ? cpuSeconds(this.daemon.pid) : -1;
    return s < 0 ? null : s;
  }

  async stop() {
    await this.guestRr?.kill({ graceMs: 1000 });
    this.guestRr = null;
    if (this.guest) {
      await this.guest.child.kill({ graceMs: 2000 });
      this.guest = null;
    }
    if (this.daemon) {
      const stderr = () => tail(this.daemon!.stderr());
      const code = await this.daemon.kill({ graceMs: 3000 });
      if (code !== 0 && code !== 143 && code !== 128 + 15) this.note(`exit status ${code} after SIGTERM; stderr: ${stderr()}`);
      this.daemon = null;
    }
    if (this.gns) deleteGuestNs(this.gns);
    for (const wd of this.watchdogs)
      try {
        process.kill(-wd.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    this.watchdogs = [];
    this.gns = "";
  }

  async destroy() {
    await this.stop();
    await this.world?.destroy();
  }
}

function tail(s: string, n = 600): string {
  const t = s.replace(/Failed to send \d+ bytes to syslog\n?/g, "").trim();
  return t.length > n ? "…" + t.slice(-n) : t || "(nothing)";
}

/** One request to slirp4netns's API socket. */
function slirpApi(path: string, req: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = unixConnect(path);
    let buf = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("API socket timeout"));
    }, 5000);
    s.on("connect", () => s.write(JSON.stringify(req)));
    s.on("data", (d) => (buf += d.toString()));
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("close", () => {
      clearTimeout(timer);
      try {
        const j = JSON.parse(buf);
        if (j.error) reject(new Error(JSON.stringify(j.error)));
        else resolve(j);
      } catch {
        reject(new Error(`bad API reply: ${buf}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Measurements

class Skip extends Error {}

/** Bounded wait (5 s) for a TCP listener on port on side, started by srv. */
async function waitListening(env: Env, side: Side, port: number, srv: Child) {
  for (let i = 0; i < 100; i++) {
    if (run([...env.enter(side), "ss", "-Hltn", `sport = :${port}`]).stdout.trim()) return;
    if (!isAlive(srv.pid)) throw new Error(`${srv.argv.slice(4).join(" ")} exited: ${tail(srv.stderr() + srv.stdout(), 300)}`);
    await Bun.sleep(50);
  }
  throw new Error(`no listener on port ${port} after 5 s: ${srv.argv.join(" ")}`);
}

async function measure(env: Env, row: RowDef, mtu: number, a: Args, cell: Cell): Promise<number> {
  const t = env.targets;
  if (row.ip === 6 && !env.ipv6) throw new Skip("no IPv6");
  if (row.kind === "mtput") return measureMulticast(env, row, mtu, a, cell);
  if (row.ip === 6 && row.dir === "h2n" && !env.ipv6In) throw new Skip("no IPv6 port forwarding");
  const loop = env.impl.kind === "loopback";
  const lo = env.mode === "lo";
  // who runs the client, who runs the server, and where the client connects
  const clientSide: Side = loop ? "host" : row.dir === "n2h" ? "guest" : lo ? "host" : "upstream";
  const serverSide: Side = loop ? "host" : row.dir === "n2h" ? "host" : "guest";
  let host: string;
  let scope: string | null = null;
  if (loop || lo) host = row.ip === 4 ? "127.0.0.1" : "::1";
  else if (row.dir === "n2h") {
    host = row.ip === 4 ? t!.gw4 : t!.gw6;
    scope = row.ip === 6 ? t!.gw6If : null;
  } else host = row.ip === 4 ? ADDR.host4 : ADDR.host6;
  const toHost = row.dir === "n2h" || loop;

  if (row.kind === "tput") {
    const port = toHost ? HOST_IPERF_PORT : GUEST_IPERF_PORT;
    const srv = env.spawn(serverSide, ["iperf3", "-s", "-1", "-p", String(port)]);
    try {
      await waitListening(env, serverSide, port, srv);
      const target = scope ? `${host}%${scope}` : host;
      const opts =
        row.proto === "udp"
          ? ["-u", "-P", "4", "-b", udpRateFor(mtu), "-l", String(udpLenFor(mtu, row.ip))]
          : ["-P", "2", "-w", windowFor(env.mode, mtu), ...(lo ? ["-l", "1M"] : [])];
      // from the upstream namespace, send from a "remote" address: the upstream's
      // veth address is the guest's gateway, which pasta maps to the host's loopback
      const bind = clientSide === "upstream" ? ["-B", row.ip === 4 ? ADDR.remote4 : ADDR.remote6] : [];
      const argv = [
        "iperf3",
        "-c",
        target,
        "-p",
        String(port),
        "-t",
        String(a.time),
        "-O",
        String(a.omit),
        ...opts,
        ...bind,
        "-J",
        "--connect-timeout",
        "5000",
      ];
      const cpu0 = env.cpuSeconds();
      const r = await env.exec(clientSide, argv, (a.time + a.omit + 25) * 1000);
      const cpu1 = env.cpuSeconds();
      if (r.timedOut) throw new Error(`iperf3 client stalled: no result after ${a.time + a.omit + 25} s (${argv.join(" ")})`);
      const { bps, bytes } = iperfResult(r.stdout, r.stderr, r.code, row.proto);
      if (cpu0 !== null && cpu1 !== null && bytes > 0) cell.cpu.push((cpu1 - cpu0) / (bytes / 1e9));
      return bps / 1e9;
    } finally {
      await srv.kill({ graceMs: 1000 });
    }
  }
  env.pin(true);
  try {
    if (row.kind === "spp") return await sockperfRoundTrip(env, row, clientSide, host, a, cell);
    return await requestResponse(env, row, clientSide, host, scope, toHost, a, cell);
  } finally {
    env.pin(false);
  }
}

/** bench/rr.c's RR, CRR or UDP RR from clientSide: µs per transaction. */
async function requestResponse(
  env: Env,
  row: RowDef,
  clientSide: Side,
  host: string,
  scope: string | null,
  toHost: boolean,
  a: Args,
  cell: Cell,
): Promise<number> {
  const port = toHost ? HOST_RR_PORT : GUEST_RR_PORT;
  const argv = [...PIN, env.rrBin!, row.kind, host, String(port), String(a.rrTime), ...(scope ? [scope] : [])];
  const cpu0 = env.cpuSeconds();
  const r = await env.exec(clientSide, argv, (a.rrTime + 20) * 1000);
  const cpu1 = env.cpuSeconds();
  if (r.timedOut) throw new Error(`rr ${row.kind} stalled: no result after ${a.rrTime + 20} s`);
  const m = r.stdout.match(/tps ([\d.]+) transactions (\d+)/);
  if (r.code !== 0 || !m) throw new Error(`rr ${row.kind} exited ${r.code}: ${tail(r.stderr + r.stdout, 300)}`);
  if (cpu0 !== null && cpu1 !== null && Number(m[2]) > 0) cell.cpu.push(((cpu1 - cpu0) * 1e6) / Number(m[2]));
  const tps = Number(m[1]);
  if (!(tps > 0)) throw new Error(`rr ${row.kind}: no transactions`);
  const slow = r.stdout.match(/max_us ([\d.]+) slow (\d+)/);
  if (slow && Number(slow[1]) >= 200000) {
    env.note(`${row.row}: ${slow[2]} of ${m[2]} transactions took over 100 ms, the slowest ${(Number(slow[1]) / 1000).toFixed(0)} ms`);
  }
  const lost = Number(r.stdout.match(/lost (\d+)/)?.[1] ?? 0);
  if (lost) env.note(`${row.row}: ${lost} datagrams resent after no answer for 200 ms`);
  return 1e6 / tps;
}

/**
 * UDP multicast throughput, host to guest: an iperf2 server in the guest
 * joins the row's group (its kernel reports it, we join it on the host:
 * waited for in the host's eth0 memberships), an iperf2 client in the
 * upstream namespace sends to the group for a.time seconds (datagrams
 * that fill one packet, 4 × the unicast rows' per-stream rate offered);
 * the server's report (CSV) says how many bytes arrived: over a.time
 * seconds, the throughput. The server stops by itself (-t) in case the
 * client's last datagram, which ends its report, is lost.
 */
async function measureMulticast(env: Env, row: RowDef, mtu: number, a: Args, cell: Cell): Promise<number> {
  const group = MCAST_GROUP[row.ip];
  const port = String(GUEST_IPERF_PORT);
  const v6 = row.ip === 6 ? ["-V"] : [];
  const guestIf = env.guest ? PASST_GUEST_IF : "eth0";
  const len = String(udpLenFor(mtu, row.ip));
  // -l: iperf2 reads 1470 bytes a datagram unless told, and counts what it read
  const srv = env.spawn("guest", [
    "iperf",
    "-s",
    "-u",
    ...v6,
    "-B",
    `${group}%${guestIf}`,
    "-p",
    port,
    "-l",
    len,
    "-t",
    String(a.time + 4),
    "-y",
    "C",
  ]);
  try {
    for (let i = 0; ; i++) {
      if (run(["ip", "-n", env.world.host, "maddr", "show", "dev", "eth0"]).stdout.includes(group)) break;
      if (!isAlive(srv.pid)) throw new Error(`iperf server exited: ${tail(srv.stderr() + srv.stdout(), 300)}`);
      if (i === 100) throw new Error(`the host did not join ${group} within 5 s`);
      await Bun.sleep(50);
    }
    const rate = `${4 * Number.parseInt(udpRateFor(mtu), 10)}G`;
    const from = row.ip === 4 ? ["-B", ADDR.gw4] : [];
    const target = row.ip === 4 ? group : `${group}%gw0`;
    const argv = ["iperf", "-c", target, "-u", ...v6, "-p", port, "-t", String(a.time), "-b", rate, "-l", len, "-T", "1", ...from];
    const cpu0 = env.cpuSeconds();
    const r = await env.exec("upstream", argv, (a.time + 25) * 1000);
    if (r.timedOut || r.code !== 0)
      throw new Error(`iperf client: ${r.timedOut ? "stalled" : `exited ${r.code}`}: ${tail(r.stderr + r.stdout, 300)}`);
    // timestamp,local,port,remote,port,id,interval,bytes,bits/s,jitter,lost,total,lost %,out of order: at the client's
    // last datagram, or at the server's -t when that one was lost (then its interval runs to -t: bytes over a.time instead)
    const m = await srv.waitFor(/^\d+,[^,]*,\d+,[^,]*,\d+,-?\d+,[\d.]+-[\d.]+,(\d+),/m, { timeoutMs: 10000 });
    const cpu1 = env.cpuSeconds();
    const bytes = Number(m[1]);
    if (cpu0 !== null && cpu1 !== null && bytes > 0) cell.cpu.push((cpu1 - cpu0) / (bytes / 1e9));
    if (bytes === 0) throw new Error("iperf server: nothing arrived");
    return (bytes * 8) / a.time / 1e9;
  } finally {
    await srv.kill({ graceMs: 1000 });
  }
}

/**
 * sockperf ping-pong from clientSide to the host's sockperf server: the
 * median round trip of 14-byte messages (sockperf's own minimum), in µs.
 * The median rather than sockperf's mean: one stall of the scheduler (tens
 * of ms, seen on this kind of machine) moves a 2 s mean by more than the
 * difference being measured.
 */
async function sockperfRoundTrip(env: Env, row: RowDef, clientSide: Side, host: string, a: Args, cell: Cell): Promise<number> {
  const argv = [...PIN, SOCKPERF!, "ping-pong", ...(row.proto === "tcp" ? ["--tcp"] : []), "-i", host, "-p", String(HOST_SOCKPERF_PORT)];
  const cpu0 = env.cpuSeconds();
  const r = await env.exec(clientSide, [...argv, "-t", String(a.rrTime), "-m", "14", "--full-rtt"], (a.rrTime + 20) * 1000);
  const cpu1 = env.cpuSeconds();
  if (r.timedOut) throw new Error(`sockperf stalled: no result after ${a.rrTime + 20} s`);
  const out = r.stdout + r.stderr;
  const median = out.match(/percentile 50\.000 =\s*([\d.]+)/);
  const count = out.match(/ReceivedMessages=(\d+)/);
  if (r.code !== 0 || !median || !count) throw new Error(`sockperf exited ${r.code}: ${tail(out, 300)}`);
  const n = Number(count[1]);
  if (!(n > 0)) throw new Error("sockperf: no messages came back");
  if (cpu0 !== null && cpu1 !== null) cell.cpu.push(((cpu1 - cpu0) * 1e6) / n);
  const dropped = Number(out.match(/# dropped messages = (\d+)/)?.[1] ?? 0);
  if (dropped) env.note(`${row.row}: sockperf counted ${dropped} dropped messages`);
  return Number(median[1]);
}

/** Receiver-side throughput and bytes from iperf3's JSON (UDP: what arrived). */
function iperfResult(stdout: string, stderr: string, code: number, proto: "tcp" | "udp"): { bps: number; bytes: number } {
  let j: any;
  try {
    j = JSON.parse(stdout);
  } catch {
    throw new Error(`iperf3 exited ${code}: ${tail(stderr + stdout, 300)}`);
  }
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const recv = j.end?.sum_received;
  if (typeof recv?.bits_per_second === "number") return { bps: recv.bits_per_second, bytes: recv.bytes ?? 0 };
  // older iperf3 UDP reports: the sender's sum and the loss the receiver saw
  const sum = j.end?.sum;
  if (proto === "udp" && typeof sum?.bits_per_second === "number") {
    const kept = 1 - (sum.lost_percent ?? 0) / 100;
    return { bps: sum.bits_per_second * kept, bytes: (sum.bytes ?? 0) * kept };
  }
  throw new Error("iperf3: no receiver sum in its JSON");
}

// ---------------------------------------------------------------------------
// Results

function machineInfo() {
  let cpu = cpus()[0]?.model?.trim() ?? "";
  if (!cpu) {
    try {
      cpu =
        readFileSync("/proc/cpuinfo", "utf8")
          .match(/^model name\s*:\s*(.+)$/m)?.[1]
          ?.trim() ?? "unknown";
    } catch {
      cpu = "unknown";
    }
  }
  const mhz = cpus()[0]?.speed || Number(readFileSync("/proc/cpuinfo", "utf8").match(/^cpu MHz\s*:\s*([\d.]+)/m)?.[1] ?? 0);
  return {
    cpu,
    cores: availableParallelism(),
    mhz: Math.round(mhz),
    kernel: release(),
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** --render: RESULTS.md and index.html again from the results.json in the --out directory. */
function render(a: Args): number {
  const file = join(a.out, "results.json");
  if (!existsSync(file)) {
    process.stderr.write(`bench: no ${file} to render\n`);
    return 1;
  }
  writeReports(a.out, JSON.parse(readFileSync(file, "utf8")));
  process.stderr.write(`bench: wrote ${join(a.out, "RESULTS.md")}, ${join(a.out, "index.html")}\n`);
  return 0;
}

/** results.json, RESULTS.md, index.html in out; for the published results (perf/), the README's headline too. */
function writeReports(out: string, res: any) {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "results.json"), JSON.stringify(res, null, 1) + "\n");
  writeFileSync(join(out, "RESULTS.md"), markdown(res));
  writeFileSync(join(out, "index.html"), renderHtml(res));
  const readme = join(REPO, "README.md");
  if (resolve(out) === join(REPO, "perf") && existsSync(readme)) writeFileSync(readme, withHeadline(readFileSync(readme, "utf8"), res));
}

// ---------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  let a: Args;
  try {
    a = parseCli(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    return 2;
  }
  if (a.render) return render(a);
  const check = canRunE2E();
  if (!check.ok) {
    process.stderr.write(`bench: cannot run: ${check.reason}\n`);
    return 1;
  }
  const skipped = skippedList;
  const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

  // tools
  const haveIperf = !!Bun.which("iperf3");
  if (!haveIperf) skipped.push("throughput rows: iperf3 not installed (Debian package iperf3)");
  const haveIperf2 = !!Bun.which("iperf");
  if (!haveIperf2) skipped.push("multicast throughput rows: iperf (2) not installed (Debian package iperf; iperf3 has no multicast)");
  const haveHyperfine = !!Bun.which("hyperfine");
  if (!haveHyperfine) skipped.push("start-up row: hyperfine not installed (Debian package hyperfine)");
  const haveTestpmd = !!Bun.which("dpdk-testpmd");
  if (!haveTestpmd)
    skipped.push(
      "passt-vu tables: dpdk-testpmd not installed (Debian packages dpdk-dev librte-net-virtio23 librte-net-tap23 librte-mempool-ring23)",
    );
  scratch = mkdtempSync(join(tmpdir(), `pb-bench-${process.pid}-`));
  chmodSync(scratch, 0o755);
  process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
  let rrBin: string | null = null;
  const cc = Bun.which("cc") ?? Bun.which("gcc") ?? Bun.which("clang");
  if (!cc) skipped.push("latency rows: no C compiler (cc) to build bench/rr.c");
  else {
    const out = join(scratch, "rr");
    const r = run([cc, "-O2", "-Wall", "-o", out, join(import.meta.dir, "rr.c")]);
    if (r.code === 0) rrBin = out;
    else skipped.push(`latency rows: bench/rr.c did not build: ${r.stderr.trim()}`);
  }

  // implementations
  let projectVersion: string;
  try {
    projectVersion = snapshotProject(join(scratch, "project"), a.worktree);
  } catch (e) {
    say((e as Error).message);
    return 1;
  }
  let impls = implDefs(projectVersion);
  if (a.impls) {
    const unknown = a.impls.filter((n) => !impls.some((i) => i.name === n));
    if (unknown.length) {
      say(`unknown implementation(s): ${unknown.join(", ")}`);
      return 2;
    }
    impls = impls.filter((i) => a.impls!.includes(i.name));
  }
  for (const i of impls) if (i.missing) skipped.push(`${i.name}: ${i.missing}`);
  const active = impls.filter((i) => !i.missing);

  // rows
  if (!SOCKPERF) skipped.push("sockperf rows: sockperf not installed (Debian package sockperf)");
  /** Whether the tool a row is measured with is here. */
  const usable = (r: RowDef): boolean => {
    if (r.mode === "passt-vu" && !haveTestpmd) return false;
    if (r.kind === "tput") return haveIperf;
    if (r.kind === "mtput") return haveIperf2;
    if (r.kind === "startup") return haveHyperfine;
    if (r.kind === "startup-rss" || r.kind === "startup-anon") return true;
    if (r.kind === "spp") return !!SOCKPERF;
    return isMemory(r.kind) || !!rrBin;
  };
  /** Who measures row r: every implementation of its mode, or ours alone (plan.ts oursOnly). */
  const takesPart = (r: RowDef, i: ImplDef) => !oursOnly(r.row) || i.name === "project";
  let rows = allRows(a.quick).filter(usable);
  if (a.only) rows = rows.filter((r) => a.only!.test(`${r.table} ${r.row}`));
  if (a.mtus) rows = withColumns(rows, a.mtus);
  for (const s of skipped) say(`skipped: ${s}`);
  // the modes to set up: those of the measured rows (memory rows ride along, they measure nothing themselves)
  const measured = rows.filter((r) => r.mode && !isMemory(r.kind));
  const modes = MODES.filter((m) => measured.some((r) => r.mode === m));
  rows = rows.filter((r) => !r.mode || modes.includes(r.mode));
  const startupImpls = active.filter((i) => i.name === "project" || i.name === "pasta" || i.name === "upstream");
  if (!startupImpls.some((i) => i.name === "project")) rows = rows.filter((r) => r.table !== "startup");
  const standalone = rows.some((r) => r.standalone) ? buildStandalone() : null;
  if (!standalone) rows = rows.filter((r) => !r.standalone);
  if (!rows.length || !active.length) {
    say("nothing to run");
    return 1;
  }

  // time estimate
  const tputCost = a.time + a.omit + 0.8;
  const rrCost = a.rrTime + 0.2;
  const startCost = (i: ImplDef, m: Mode) =>
    i.kind === "loopback" ? 0.05 : m === "passt-vu" ? 5 : m === "passt" ? 2.5 : i.name === "project" ? 1.5 : 0.6;
  const startupRuns = a.quick ? 5 : 20;
  const startupCost = startupRuns * 0.5 + 3;
  let estimate = active.length * 1.5; // worlds
  let steps = 0;
  for (const m of modes) {
    const inMode = active.filter((i) => i.modes.includes(m));
    for (const c of [...new Set(measured.filter((r) => r.mode === m).flatMap((r) => r.columns))]) {
      for (const i of inMode) estimate += startCost(i, m) + 0.3;
      const wait = afterRunsWaits(
        rows.filter((r) => r.mode === m && isMemory(r.kind)),
        c,
      );
      estimate += (wait.end + wait.rest) / 1000;
      for (const r of measured.filter((r) => r.mode === m && r.columns.includes(c))) {
        const n = inMode.filter((i) => takesPart(r, i)).length;
        estimate += a.runs * n * (r.kind === "tput" || r.kind === "mtput" ? tputCost : rrCost);
        steps += a.runs * n;
      }
    }
  }
  if (rows.some((r) => r.kind === "startup")) {
    estimate += startupCost;
    steps++;
  }
  if (rows.some((r) => r.kind === "startup-rss" || r.kind === "startup-anon")) {
    estimate += IDLE_RUNS * (startupImpls.length + 1) * 3;
    steps++;
  }
  say(
    `${rows.length} rows in ${new Set(rows.map((r) => r.table)).size} tables, modes ${modes.join(", ") || "none"}, ${active.map((i) => i.name).join(", ")}, ${a.runs} run(s) per cell: about ${fmtDuration(estimate)}`,
  );
  const progress = new Progress(estimate, steps);

  sweepStaleGuests();
  const envs: Env[] = [];
  const cleanup = async () => {
    for (const e of envs) await e.destroy().catch(() => {});
    for (const ns of [...guestNamespaces]) deleteGuestNs(ns);
    rmSync(scratch, { recursive: true, force: true });
  };
  let interrupted = false;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      progress.say(`bench: ${sig}, cleaning up`);
      cleanup().finally(() => process.exit(130));
    });
  }
  process.on("exit", () => {
    for (const ns of [...guestNamespaces]) deleteGuestNs(ns);
    rmSync(scratch, { recursive: true, force: true });
  });

  const results = new Map<string, Cell>();
  const cellFor = (r: RowDef, c: number, i: string): Cell => {
    const k = `${r.table}\u0000${r.row}\u0000${c}\u0000${i}`;
    let cell = results.get(k);
    if (!cell) {
      cell = {
        table: r.table,
        row: r.row,
        column: c,
        impl: i,
        unit: r.unit,
        median: null,
        min: null,
        max: null,
        runs: 0,
        values: [],
        errors: [],
        cpu: [],
      };
      results.set(k, cell);
    }
    return cell;
  };
  const date = new Date().toISOString();
  const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  try {
    const tw = performance.now();
    for (const i of active.filter((i) => modes.some((m) => i.modes.includes(m)))) {
      const e = new Env(i, rrBin);
      await e.init();
      envs.push(e);
    }
    const project = active.find((i) => i.name === "project");
    if (!envs.length && project && rows.some((r) => r.table === "startup")) {
      // the start-up table alone: a world to measure it in
      const e = new Env(project, rrBin);
      await e.init();
      envs.push(e);
    }
    progress.account(active.length * 1.5, (performance.now() - tw) / 1000);
    for (const mode of modes) {
      const modeRows = rows.filter((r) => r.mode === mode);
      const memRows = modeRows.filter((r) => isMemory(r.kind));
      /** one memory reading of every live daemon into the memory row of kind at this column */
      const readMemory = (envs: Env[], col: number, kind: string, field: "VmRSS" | "VmHWM" | "RssAnon") => {
        const row = memRows.find((r) => r.kind === kind && r.columns.includes(col));
        for (const e of envs) {
          const v = row && e.impl.kind !== "loopback" ? e.rss(field) : null;
          if (row && v !== null) cellFor(row, col, e.impl.name).values.push(v);
        }
      };
      const modeEnvs = envs.filter((e) => e.impl.modes.includes(mode));
      const columns = [...new Set(measured.filter((r) => r.mode === mode).flatMap((r) => r.columns))].sort((x, y) => x - y);
      for (const col of columns) {
        const live = await startAll(modeEnvs, mode, col, progress, startCost);
        /** Each daemon's largest RssAnon read right after one of its runs, this column. */
        const peakAnon = new Map<Env, number>();
        const notePeakAnon = (e: Env) => {
          const v = e.impl.kind !== "loopback" ? e.rss("RssAnon") : null;
          if (v !== null) peakAnon.set(e, Math.max(v, peakAnon.get(e) ?? 0));
        };
        readMemory(live, col, "rss-idle", "VmRSS");
        readMemory(live, col, "anon-idle", "RssAnon");
        for (const r of modeRows.filter((r) => !isMemory(r.kind) && r.columns.includes(col))) {
          for (let round = 1; round <= a.runs; round++) {
            for (const e of modeEnvs) {
              if (!takesPart(r, e.impl)) continue;
              const cell = cellFor(r, col, e.impl.name);
              const cost = r.kind === "tput" || r.kind === "mtput" ? tputCost : rrCost;
              progress.step(`${r.table} · ${r.row} · MTU ${col} · ${e.impl.name}${a.runs > 1 ? ` (run ${round}/${a.runs})` : ""}`);
              const t0 = performance.now();
              const others = live.filter((o) => o !== e);
              for (const o of others) o.hold(true);
              try {
                await runCell(e, live, r, col, round, a, cell, progress);
              } finally {
                for (const o of others) o.hold(false);
              }
              notePeakAnon(e);
              progress.finish(cost, (performance.now() - t0) / 1000);
            }
          }
        }
        readMemory(modeEnvs, col, "rss-peak", "VmHWM");
        const peakRow = memRows.find((r) => r.kind === "anon-peak" && r.columns.includes(col));
        for (const [e, v] of peakAnon) if (peakRow) cellFor(peakRow, col, e.impl.name).values.push(v);
        // the same waits for every implementation, whatever ran last (see AFTER_RUNS_MS)
        const wait = afterRunsWaits(memRows, col);
        await Bun.sleep(wait.end);
        readMemory(modeEnvs, col, "anon-end", "RssAnon");
        await Bun.sleep(wait.rest);
        readMemory(modeEnvs, col, "anon-rest", "RssAnon");
        for (const e of modeEnvs) await e.stop();
      }
    }
    /** The start-up table's cell of kind for implementation name (ours: by bun, or the standalone executable). */
    const startupCell = (kind: string, name: string, ofStandalone: boolean) => {
      const r = rows.find((r) => r.kind === kind && !!r.standalone === ofStandalone);
      return r ? cellFor(r, 0, name) : null;
    };
    /** Values for the rows of kind: ours by bun into the first row, ours standalone into the second, a reference's into both. */
    const startupValues = (kind: string) => (name: string, values: number[]) => {
      const ofStandalone = name === "project" ? [false] : name === "standalone" ? [true] : [false, true];
      for (const st of ofStandalone) startupCell(kind, name === "standalone" ? "project" : name, st)?.values.push(...values);
    };
    const startupCmds = startupImpls.map((i) => ({
      name: i.name,
      argv: i.name === "project" ? [BUN, join(projectDir, "src", "main.ts")] : [i.bin.pasta!],
    }));
    if (standalone) startupCmds.splice(1, 0, { name: "standalone", argv: [standalone] });
    if (rows.some((r) => r.kind === "startup") && envs[0]) {
      progress.step(`startup · ${STARTUP_ROW} · ${startupCmds.map((c) => c.name).join(", ")} (hyperfine)`);
      const t0 = performance.now();
      await measureStartup(envs[0].world, startupCmds, startupRuns, startupValues("startup"));
      progress.finish(startupCost, (performance.now() - t0) / 1000);
    }
    if (rows.some((r) => r.kind === "startup-rss" || r.kind === "startup-anon") && envs[0]) {
      progress.step(`startup · idle memory of pasta --config-net · ${startupCmds.map((c) => c.name).join(", ")}`);
      const t0 = performance.now();
      await measureIdleMemory(envs[0].world, startupCmds, startupValues("startup-rss"), startupValues("startup-anon"));
      progress.finish(IDLE_RUNS * startupCmds.length * 3, (performance.now() - t0) / 1000);
    }
  } finally {
    progress.end();
    await cleanup();
  }

  const cells = [...results.values()].map((c) => {
    if (c.values.length) {
      c.median = roundFor(median(c.values), c.unit);
      c.min = roundFor(Math.min(...c.values), c.unit);
      c.max = roundFor(Math.max(...c.values), c.unit);
      c.values = c.values.map((v) => roundFor(v, c.unit));
    }
    c.runs = c.values.length;
    c.cpuMedian = c.cpu.length ? Math.round(median(c.cpu) * 1000) / 1000 : null;
    c.cpu = c.cpu.map((v) => Math.round(v * 1000) / 1000);
    return c;
  });
  const res = {
    date,
    mode: a.quick ? "quick" : "full",
    machine: { ...machineInfo(), loadavgBefore: loadBefore },
    implementations: Object.fromEntries(active.map((i) => [i.name, { version: i.version }])),
    settings: { runs: a.runs, iperf3Seconds: a.time, iperf3Omit: a.omit, rrSeconds: a.rrTime, startupRuns, modes },
    rows: cells,
    skipped,
    notes,
  };
  writeReports(a.out, res);
  if (a.json) process.stdout.write(JSON.stringify(res, null, 1) + "\n");
  else
    process.stdout.write(
      markdown(res) + `\nwritten: ${join(a.out, "results.json")}, ${join(a.out, "RESULTS.md")}, ${join(a.out, "index.html")}\n`,
    );
  return 0;
}

/** Start every implementation of a mode at an MTU; returns those that started. */
async function startAll(
  envs: Env[],
  mode: Mode,
  col: number,
  progress: Progress,
  startCost: (i: ImplDef, m: Mode) => number,
): Promise<Env[]> {
  const live: Env[] = [];
  for (const e of envs) {
    const t0 = performance.now();
    progress.step(`starting ${e.impl.name} (${mode}) at MTU ${col}`, false);
    try {
      e.restarts = 0;
      await e.start(col, mode);
      progress.account(startCost(e.impl, mode) + 0.3, (performance.now() - t0) / 1000);
      live.push(e);
    } catch (err) {
      const msg = (err as Error).message;
      notes.push(`${e.impl.name} (${mode}, MTU ${col}): did not start: ${msg}`);
      progress.say(`bench: ${e.impl.name} did not start (${mode}) at MTU ${col}: ${msg}`);
      await e.stop().catch(() => {});
    }
  }
  return live;
}

/** One run of one cell: measure, or record why not; a daemon that died gets restarted (3 times at most per start). */
async function runCell(e: Env, live: Env[], r: RowDef, col: number, round: number, a: Args, cell: Cell, progress: Progress) {
  if (!live.includes(e)) {
    cell.errors.push("not running");
    return;
  }
  if (e.impl.kind !== "loopback" && !e.daemon && e.restarts < 3) {
    e.restarts++;
    try {
      await e.start(col, e.mode);
    } catch (err) {
      e.note(`restart failed: ${(err as Error).message}`);
    }
  }
  try {
    if (e.impl.kind !== "loopback" && !e.daemon) throw new Error("not running");
    cell.values.push(await measure(e, r, col, a, cell));
  } catch (err) {
    if (err instanceof Skip) cell.skipped = err.message;
    else {
      const msg = (err as Error).message;
      cell.errors.push(msg);
      e.note(`${r.row}, run ${round}: ${msg}`);
      progress.say(`bench: ${e.impl.name} · ${r.row} · MTU ${col}: ${msg}`);
    }
  }
  const dead = await e.checkAlive();
  if (dead) {
    e.note(`during "${r.row}", run ${round}: ${dead}`);
    progress.say(`bench: ${dead}`);
  }
}

/** A pasta to start: its name in the results ("standalone": ours built as one executable) and the argv before its options. */
interface StartupCmd {
  name: string;
  argv: string[];
}

/** Starts of each pasta for the idle memory rows (the median is reported). */
const IDLE_RUNS = 3;
/** How long after its start a pasta's memory is read: after its quiet hooks (2 s without events) have run. */
const IDLE_READ_MS = 2500;

/**
 * `bun run build` of the project's snapshot into the scratch directory: the
 * standalone executable's path, or null (with a note) when it cannot be built.
 */
function buildStandalone(): string | null {
  const dir = join(scratch, "dist");
  let why = "";
  // twice: the one failure seen (a full run of 2026-12-06) did not come back by hand
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = run([BUN, join(projectDir, "native", "standalone.ts"), dir], { timeoutMs: 180000 });
    if (r.code === 0 && existsSync(join(dir, "pasta"))) return join(dir, "pasta");
    const out = `${r.stdout}\n${r.stderr}`;
    // bun build's own error lines, before standalone.ts's stack trace
    const errors = out.split("\n").filter((l) => /error/i.test(l));
    const said = errors.slice(0, 4).join(" | ") || tail(out, 300);
    why += ` attempt ${attempt + 1}: exit ${r.code}${r.timedOut ? " (timed out)" : ""}: ${said}`;
  }
  notes.push(`standalone rows: bun run build failed;${why}`);
  return null;
}

/**
 * VmRSS and RssAnon of each pasta, started with `--config-net -f -- sleep`
 * in the world's host namespace and read IDLE_READ_MS later, IDLE_RUNS times.
 */
async function measureIdleMemory(
  w: World,
  cmds: StartupCmd[],
  rss: (name: string, values: number[]) => void,
  anon: (name: string, values: number[]) => void,
) {
  for (const c of cmds) {
    const got = { VmRSS: [] as number[], RssAnon: [] as number[] };
    for (let k = 0; k < IDLE_RUNS; k++) {
      const p = w.spawn(w.host, [...c.argv, "--runas", "0", "-q", "-f", "--config-net", "--", "sleep", "30"]);
      await Bun.sleep(IDLE_READ_MS);
      for (const f of ["VmRSS", "RssAnon"] as const) {
        const bytes = rssBytes(p.pid, f);
        if (bytes >= 0) got[f].push(bytes / MB);
      }
      await p.kill();
    }
    if (!got.VmRSS.length) notes.push(`startup: ${c.name} did not stay up for its idle memory reading`);
    rss(c.name, got.VmRSS);
    anon(c.name, got.RssAnon);
  }
}

/**
 * Start-up time of `pasta --config-net -- true` for each pasta:
 * hyperfine in the world's host namespace (the command's namespace is made
 * by pasta itself), the same options for all, runs per command, 3 warm-ups.
 */
async function measureStartup(w: World, startupCmds: StartupCmd[], runs: number, values: (name: string, v: number[]) => void) {
  const args = "--runas 0 -q --config-net -- true";
  const cmds = startupCmds.map((c) => `${c.argv.join(" ")} ${args}`);
  const out = join(scratch, "hyperfine.json");
  const r = await w.exec(w.host, ["hyperfine", "-N", "--warmup", "3", "--runs", String(runs), "--export-json", out, ...cmds], {
    timeoutMs: 300000,
  });
  if (r.code !== 0) {
    notes.push(`startup: hyperfine exited ${r.code}: ${tail(r.stderr + r.stdout, 600)}`);
    return;
  }
  const j = JSON.parse(readFileSync(out, "utf8"));
  startupCmds.forEach((c, n) => {
    const times: number[] = j.results?.[n]?.times ?? [];
    values(
      c.name,
      times.map((t) => t * 1000),
    );
  });
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
