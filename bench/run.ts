#!/usr/bin/env bun
/**
 * The bench suite: `bun run bench [--quick] [--json] [options]`.
 *
 * Measures our pasta ("project": bun src/main.ts) side by side with the
 * reference pasta (Debian package passt, /usr/bin/pasta), slirp4netns, and
 * plain loopback (the ceiling), in the same run on the same machine, and
 * writes perf/results.json and perf/RESULTS.md. What the tables are is in
 * /work/shared/reference/perf-tables.md (the original's performance tables).
 *
 * Table now: pasta-tap-tcp (pasta, connections through the tap device):
 *   TCP throughput (iperf3, 2 streams, receiver side), one value per MTU of
 *   the namespace's tap interface, and TCP RR / CRR latency (bench/rr.c, one
 *   1-byte request-response flow; µs = 1e6 / transactions per second), both
 *   directions, IPv6 and IPv4.
 *
 * Set-up, per implementation its own test world (test/world.ts: a "host"
 * namespace standing in for the machine, an "upstream" namespace behind a
 * veth pair) plus a guest namespace WORLD-g made here; pasta runs in the
 * host namespace and joins the guest with --netns, as root (--runas 0, the
 * reference otherwise drops to "nobody" and cannot open the namespace).
 *
 *   ns to host: servers in the host namespace, on all addresses; the
 *     guest's client connects to the gateway (192.0.2.1, fe80::1%eth0), which
 *     both pastas map to the host's loopback.
 *   host to ns: servers in the guest; pasta forwards -t 5201,5202; the
 *     client runs in the upstream namespace and connects to 192.0.2.2 /
 *     2001:db8::2 (the host's address) over the veth. Its source address is
 *     not a loopback one, so the reference takes the tap path, not the
 *     spliced one (which it takes only for connections from 127.0.0.1 / ::1).
 *   slirp4netns: the same, its guest at 10.0.2.100 / fd00::100, the gateway
 *     10.0.2.2 / fd00::2 mapped to host loopback, -t done with add_hostfwd.
 *   loopback: client and server both in a host namespace over 127.0.0.1 /
 *     ::1, the loopback MTU set to the column's MTU.
 *
 * All traffic stays inside namespaces made here. Every cell is the median of
 * N runs (3, 1 with --quick), with min and max; implementations interleave
 * (A B C A B C ...) within a cell. A missing tool is reported and its
 * rows or implementation skipped.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { connect as unixConnect } from "node:net";
import type { Subprocess } from "bun";
import { ADDR, BUN, REPO, canRunE2E, createWorld, isAlive, run, type Child, type World } from "../test/world.ts";

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
  out: string;
  columns: number[];
  /** run src/ as it is in the working tree, not a snapshot of HEAD */
  worktree: boolean;
  /** only rewrite RESULTS.md from the results.json in out */
  render: boolean;
}

const USAGE = `usage: bun bench/run.ts [--quick] [--json] [--runs N] [--time S] [--rr-time S]
                         [--impl project,pasta,slirp4netns,loopback] [--only REGEX] [--out DIR]

  --quick      one run per cell, MTU 1500 and 65520 only, short measurements
  --json       print only the results JSON on stdout (progress stays on stderr)
  --runs N     runs per cell (default 3, 1 with --quick)
  --time S     iperf3 seconds per run (default 5, 2 with --quick), plus 1 s omitted
  --rr-time S  seconds per RR / CRR run (default 4, 2 with --quick)
  --impl LIST  implementations to run (default: all that are installed)
  --only RE    only rows whose "table row" matches RE
  --out DIR    where results.json and RESULTS.md go (default perf/)
  --worktree   run our src/ as it is in the working tree (default: a snapshot
               of the committed HEAD, taken at start, so that edits made while
               the bench runs do not change what it measures)
  --render     measure nothing: rewrite RESULTS.md from the results.json in
               the --out directory (after a change of its layout)
`;

function parseCli(argv: string[]): Args {
  const a: Args = { quick: false, json: false, runs: 0, time: 0, omit: 1, rrTime: 0, impls: null, only: null, out: join(REPO, "perf"), columns: [], worktree: false, render: false };
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
      case "--quick": a.quick = true; break;
      case "--json": a.json = true; break;
      case "--runs": a.runs = Math.min(20, Math.round(num())); break;
      case "--time": a.time = Math.min(120, num()); break;
      case "--rr-time": a.rrTime = Math.min(120, num()); break;
      case "--impl": a.impls = val().split(",").map((s) => s.trim()).filter(Boolean); break;
      case "--only": a.only = new RegExp(val(), "i"); break;
      case "--out": a.out = val(); break;
      case "--worktree": a.worktree = true; break;
      case "--render": a.render = true; break;
      case "-h": case "--help": process.stdout.write(USAGE); process.exit(0);
      default: throw new Error(`unknown option ${arg}\n${USAGE}`);
    }
  }
  if (!a.runs) a.runs = a.quick ? 1 : 3;
  if (!a.time) a.time = a.quick ? 2 : 5;
  if (!a.rrTime) a.rrTime = a.quick ? 2 : 4;
  a.columns = a.quick ? [1500, 65520] : [1500, 4000, 16384, 65520];
  return a;
}

// ---------------------------------------------------------------------------
// Plan: tables, rows, cells

type Kind = "tput" | "rr" | "crr";
type Dir = "n2h" | "h2n";

interface RowDef {
  table: string;
  row: string;
  kind: Kind;
  ip: 4 | 6;
  dir: Dir;
  unit: "Gbit/s" | "µs";
  columns: number[];
}

/** MTU at which RR / CRR latency is measured (one value per row). */
const LATENCY_MTU = 65520;

function tapTcpRows(columns: number[]): RowDef[] {
  const rows: RowDef[] = [];
  for (const dir of ["n2h", "h2n"] as Dir[]) {
    const d = dir === "n2h" ? "ns to host" : "host to ns";
    for (const ip of [6, 4] as const) {
      const t = "pasta-tap-tcp";
      rows.push({ table: t, row: `TCP throughput over IPv${ip}: ${d}`, kind: "tput", ip, dir, unit: "Gbit/s", columns });
      rows.push({ table: t, row: `TCP RR latency over IPv${ip}: ${d}`, kind: "rr", ip, dir, unit: "µs", columns: [LATENCY_MTU] });
      rows.push({ table: t, row: `TCP CRR latency over IPv${ip}: ${d}`, kind: "crr", ip, dir, unit: "µs", columns: [LATENCY_MTU] });
    }
  }
  return rows;
}

const TABLE_TITLES: Record<string, string> = {
  "pasta-tap-tcp": "pasta: TCP, connections through the tap device",
};

/** iperf3 -w by MTU, as the original's tap tests. */
function windowFor(mtu: number): string {
  return mtu <= 1500 ? "512k" : mtu <= 4000 ? "1M" : "8M";
}

// ---------------------------------------------------------------------------
// Implementations

interface ImplDef {
  name: string;
  /** shown in tables */
  label: string;
  kind: "pasta" | "slirp" | "loopback";
  version: string;
  missing: string | null;
}

function sh(cmd: string[]): string {
  const r = run(cmd, { timeoutMs: 10000 });
  return r.code === 0 ? r.stdout.trim() : "";
}

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
  const r = Bun.spawnSync(["sh", "-c", `r="$1"; d="$2"; shift 2; git -C "$r" archive HEAD -- "$@" | tar -x -C "$d"`, "sh", REPO, dir, ...paths], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 || !existsSync(join(dir, "src", "main.ts"))) throw new Error(`snapshot of HEAD failed: ${r.stderr.toString()}`);
  if (existsSync(join(REPO, "node_modules"))) symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
  if (existsSync(join(dir, "native", "build.ts"))) {
    const b = run([BUN, join(dir, "native", "build.ts")], { timeoutMs: 60000 });
    if (b.code !== 0) throw new Error(`building the shim of the snapshot failed: ${b.stderr}${b.stdout}`);
  }
  projectDir = dir;
  return `${pkg.version} (${commit}), bun ${Bun.version}`;
}

function implDefs(projectVersion: string): ImplDef[] {
  const deb = (p: string) => sh(["dpkg-query", "-W", "-f", "${Version}", p]);
  const slirpV = Bun.which("slirp4netns") ? sh(["slirp4netns", "--version"]).split("\n")[0]?.replace(/^slirp4netns version /, "") ?? "" : "";
  return [
    { name: "project", label: "ours", kind: "pasta", version: projectVersion, missing: null },
    {
      name: "pasta",
      label: "reference",
      kind: "pasta",
      version: existsSync("/usr/bin/pasta") ? `passt ${deb("passt") || "unknown"}` : "",
      missing: existsSync("/usr/bin/pasta") ? null : "/usr/bin/pasta not installed (Debian package passt)",
    },
    {
      name: "slirp4netns",
      label: "slirp4netns",
      kind: "slirp",
      version: slirpV ? `slirp4netns ${slirpV}` : "",
      missing: Bun.which("slirp4netns") ? null : "slirp4netns not installed (Debian package slirp4netns)",
    },
    { name: "loopback", label: "loopback", kind: "loopback", version: `Linux ${release()} loopback`, missing: null },
  ];
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
  constructor(private remainingEstimate: number, private total: number) {}

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
      for (const pid of pids) if (pid > 1 && pid !== process.pid) try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
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

interface Targets {
  /** where the guest reaches the host (IPv4 / IPv6), and the scope interface for a link-local one */
  gw4: string;
  gw6: string;
  gw6If: string | null;
  /** guest interface */
  guestIf: string;
}

class Env {
  world!: World;
  gns = "";
  daemon: Child | null = null;
  guestRr: Child | null = null;
  hostRr: Child | null = null;
  mtu = 0;
  targets: Targets | null = null;
  ipv6 = true;
  /** IPv6 forwarding from host to guest works */
  ipv6In = true;
  restarts = 0;
  private watchdogs: Subprocess[] = [];

  constructor(readonly impl: ImplDef, readonly rrBin: string | null) {}

  async init() {
    this.world = await createWorld({ prefix: "pb", mtu: 65520 });
    for (const ns of [this.world.host, this.world.upstream]) sysctlIn(ns, NS_SYSCTLS);
    if (this.rrBin) {
      this.hostRr = this.world.spawn(this.world.host, [this.rrBin, "server", String(HOST_RR_PORT)]);
      await this.hostRr.waitFor("ready", { timeoutMs: 5000 });
    }
  }

  /** (Re)start the implementation with the guest at this MTU. */
  async start(mtu: number) {
    await this.stop();
    this.mtu = mtu;
    this.ipv6 = this.ipv6In = true;
    if (this.impl.kind === "loopback") {
      run(["ip", "-n", this.world.host, "link", "set", "lo", "mtu", String(mtu)]);
      this.targets = { gw4: "127.0.0.1", gw6: "::1", gw6If: null, guestIf: "lo" };
      return;
    }
    this.gns = `${this.world.id}-g`;
    guestNamespaces.add(this.gns);
    const add = run(["ip", "netns", "add", this.gns]);
    if (add.code !== 0) throw new Error(`ip netns add ${this.gns}: ${add.stderr.trim()}`);
    this.watchdogs.push(guestWatchdog(this.gns));
    sysctlIn(this.gns, NS_SYSCTLS);
    run(["ip", "-n", this.gns, "link", "set", "lo", "up"]);
    const nsPath = `/run/netns/${this.gns}`;
    const ports = `${GUEST_IPERF_PORT},${GUEST_RR_PORT}`;
    if (this.impl.kind === "pasta") {
      const common = ["--runas", "0", "-f", "-q", "--config-net", "-m", String(mtu), "-t", ports, "--netns", nsPath];
      const argv = this.impl.name === "project" ? [BUN, join(projectDir, "src", "main.ts"), ...common] : ["/usr/bin/pasta", ...common];
      this.daemon = this.world.spawn(this.world.host, argv);
      this.targets = { gw4: ADDR.gw4, gw6: ADDR.gwLL, gw6If: "eth0", guestIf: "eth0" };
      await this.waitReady(ADDR.host4, ADDR.host6, true);
    } else {
      const api = join(this.world.dir, "slirp.sock");
      rmSync(api, { force: true });
      const argv = ["slirp4netns", "--configure", `--mtu=${mtu}`, "--enable-ipv6", `--api-socket=${api}`, "--netns-type=path", nsPath, "tap0"];
      this.daemon = this.world.spawn(this.world.host, argv);
      this.targets = { gw4: "10.0.2.2", gw6: "fd00::2", gw6If: null, guestIf: "tap0" };
      await this.waitReady("10.0.2.100", "fd00::", false);
      // the guest's IPv6 address comes from SLAAC (libslirp's router advertisements)
      const guest6 = run(["ip", "-n", this.gns, "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global"]).stdout.match(/inet6 (fd00:[0-9a-f:]+)\//)?.[1];
      if (this.ipv6 && !guest6) {
        this.ipv6 = false;
        this.note("no global IPv6 address on tap0; its IPv6 rows are skipped");
      }
      for (const port of [GUEST_IPERF_PORT, GUEST_RR_PORT]) {
        await slirpApi(api, { execute: "add_hostfwd", arguments: { proto: "tcp", host_addr: "0.0.0.0", host_port: port, guest_port: port } });
        if (this.ipv6 && this.ipv6In) {
          try {
            await slirpApi(api, { execute: "add_hostfwd", arguments: { proto: "tcp", host_addr: "::", host_port: port, guest_addr: guest6, guest_port: port } });
          } catch (e) {
            onceSkipped(`slirp4netns: IPv6 host-to-ns rows: add_hostfwd to its IPv6 address (${this.impl.version}) is refused: ${(e as Error).message}`);
            this.ipv6In = false;
          }
        }
      }
    }
    if (this.rrBin) {
      this.guestRr = this.world.spawn(this.gns, [this.rrBin, "server", String(GUEST_RR_PORT)]);
      await this.guestRr.waitFor("ready", { timeoutMs: 5000 });
    }
  }

  note(msg: string) {
    notes.push(`${this.impl.name} (MTU ${this.mtu}): ${msg}`);
  }

  /** Bounded wait for the guest's addresses and routes, and the forwarded ports on the host. */
  private async waitReady(addr4: string, addr6: string, listeners: boolean) {
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
      const l = listeners ? run(["ip", "netns", "exec", this.world.host, "ss", "-Hltn"]).stdout : "";
      const v4ok = a.includes(`inet ${addr4}/`) && r4.includes("default");
      const v6ok = a.includes(`inet6 ${addr6}`) && !a.includes("tentative") && r6.includes("default");
      const lok = !listeners || (l.includes(`:${GUEST_IPERF_PORT} `) && l.includes(`:${GUEST_RR_PORT} `));
      why = `IPv4 ${v4ok ? "up" : "not up"}, IPv6 ${v6ok ? "up" : "not up"}, listeners ${lok ? "up" : "not up"}`;
      if (v4ok && v6ok && lok) return;
      // slirp4netns's IPv6 comes from router advertisements: give it up to 10 s, then go on without
      if (!listeners && v4ok && performance.now() > deadline - 10000) {
        this.ipv6 = false;
        this.note(`no IPv6 address in the guest after 10 s; its IPv6 rows are skipped`);
        return;
      }
      await Bun.sleep(50);
    }
    throw new Error(`${this.impl.name}: guest not ready after 20 s (${why}); stderr: ${tail(this.daemon?.stderr() ?? "")}`);
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

  async stop() {
    await this.guestRr?.kill({ graceMs: 1000 });
    this.guestRr = null;
    if (this.daemon) {
      const stderr = () => tail(this.daemon!.stderr());
      const code = await this.daemon.kill({ graceMs: 3000 });
      if (code !== 0 && code !== 143 && code !== 128 + 15) this.note(`exit status ${code} after SIGTERM; stderr: ${stderr()}`);
      this.daemon = null;
    }
    if (this.gns) deleteGuestNs(this.gns);
    for (const wd of this.watchdogs) try { process.kill(-wd.pid, "SIGKILL"); } catch { /* gone */ }
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
    const timer = setTimeout(() => { s.destroy(); reject(new Error("API socket timeout")); }, 5000);
    s.on("connect", () => s.write(JSON.stringify(req)));
    s.on("data", (d) => (buf += d.toString()));
    s.on("error", (e) => { clearTimeout(timer); reject(e); });
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

/** Bounded wait (5 s) for a TCP listener on port in ns, started by srv. */
async function waitListening(ns: string, port: number, srv: Child) {
  for (let i = 0; i < 100; i++) {
    if (run(["ip", "netns", "exec", ns, "ss", "-Hltn", `sport = :${port}`]).stdout.trim()) return;
    if (!isAlive(srv.pid)) throw new Error(`${srv.argv.slice(4).join(" ")} exited: ${tail(srv.stderr() + srv.stdout(), 300)}`);
    await Bun.sleep(50);
  }
  throw new Error(`no listener on port ${port} after 5 s: ${srv.argv.join(" ")}`);
}

async function measure(env: Env, row: RowDef, mtu: number, a: Args): Promise<number> {
  const w = env.world;
  const t = env.targets!;
  if (row.ip === 6 && !env.ipv6) throw new Skip("no IPv6");
  if (row.ip === 6 && row.dir === "h2n" && !env.ipv6In) throw new Skip("no IPv6 port forwarding");
  const loop = env.impl.kind === "loopback";
  // who runs the client, who runs the server
  const clientNs = loop ? w.host : row.dir === "n2h" ? env.gns : w.upstream;
  const serverNs = loop ? w.host : row.dir === "n2h" ? w.host : env.gns;
  let host: string;
  let scope: string | null = null;
  if (loop) host = row.ip === 4 ? "127.0.0.1" : "::1";
  else if (row.dir === "n2h") {
    host = row.ip === 4 ? t.gw4 : t.gw6;
    scope = row.ip === 6 ? t.gw6If : null;
  } else host = row.ip === 4 ? ADDR.host4 : ADDR.host6;

  if (row.kind === "tput") {
    const port = row.dir === "n2h" || loop ? HOST_IPERF_PORT : GUEST_IPERF_PORT;
    const srv = w.spawn(serverNs, ["iperf3", "-s", "-1", "-p", String(port)]);
    try {
      await waitListening(serverNs, port, srv);
      const target = scope ? `${host}%${scope}` : host;
      const argv = ["iperf3", "-c", target, "-p", String(port), "-t", String(a.time), "-O", String(a.omit), "-P", "2", "-w", windowFor(mtu), "-J", "--connect-timeout", "5000"];
      const r = await w.exec(clientNs, argv, { timeoutMs: (a.time + a.omit + 25) * 1000 });
      if (r.timedOut) throw new Error(`iperf3 client stalled: no result after ${a.time + a.omit + 25} s (${argv.join(" ")})`);
      let j: any;
      try {
        j = JSON.parse(r.stdout);
      } catch {
        throw new Error(`iperf3 exited ${r.code}: ${tail(r.stderr + r.stdout, 300)}`);
      }
      if (j.error) throw new Error(`iperf3: ${j.error}`);
      const bps = j.end?.sum_received?.bits_per_second;
      if (typeof bps !== "number") throw new Error("iperf3: no receiver sum in its JSON");
      return bps / 1e9;
    } finally {
      await srv.kill({ graceMs: 1000 });
    }
  }
  // RR / CRR
  const port = row.dir === "n2h" || loop ? HOST_RR_PORT : GUEST_RR_PORT;
  const argv = [env.rrBin!, row.kind, host, String(port), String(a.rrTime), ...(scope ? [scope] : [])];
  const r = await w.exec(clientNs, argv, { timeoutMs: (a.rrTime + 20) * 1000 });
  if (r.timedOut) throw new Error(`rr ${row.kind} stalled: no result after ${a.rrTime + 20} s`);
  const m = r.stdout.match(/tps ([\d.]+) transactions (\d+)/);
  if (r.code !== 0 || !m) throw new Error(`rr ${row.kind} exited ${r.code}: ${tail(r.stderr + r.stdout, 300)}`);
  const tps = Number(m[1]);
  if (!(tps > 0)) throw new Error(`rr ${row.kind}: no transactions`);
  const slow = r.stdout.match(/max_us ([\d.]+) slow (\d+)/);
  if (slow && Number(slow[1]) >= 200000) {
    env.note(`${row.row}: ${slow[2]} of ${m[2]} transactions took over 100 ms, the slowest ${(Number(slow[1]) / 1000).toFixed(0)} ms`);
  }
  return 1e6 / tps;
}

// ---------------------------------------------------------------------------
// Results

interface Cell {
  table: string;
  row: string;
  column: number;
  impl: string;
  unit: string;
  median: number | null;
  min: number | null;
  max: number | null;
  runs: number;
  values: number[];
  errors: string[];
  /** why this cell was not measured (not an error) */
  skipped?: string;
}

function median(v: number[]): number {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function round(x: number, unit: string): number {
  return unit === "µs" ? Math.round(x * 10) / 10 : Math.round(x * 1000) / 1000;
}

function fmt(x: number | null | undefined, unit: string): string {
  if (x === null || x === undefined) return "–";
  if (unit === "µs") return x >= 100 ? x.toFixed(0) : x.toFixed(1);
  return x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function machineInfo() {
  let cpu = cpus()[0]?.model?.trim() ?? "";
  if (!cpu) {
    try {
      cpu = readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown";
    } catch {
      cpu = "unknown";
    }
  }
  return { cpu, cores: availableParallelism(), kernel: release(), loadavg: loadavg().map((x) => Math.round(x * 100) / 100) };
}

function markdown(res: any, rows: RowDef[], impls: ImplDef[], a: Args): string {
  const cells: Cell[] = res.rows;
  const get = (t: string, r: string, c: number, i: string) => cells.find((x) => x.table === t && x.row === r && x.column === c && x.impl === i);
  const L: string[] = [];
  const m = res.machine;
  L.push(`# Performance: ours vs the reference`, "");
  L.push(`Measured ${res.date} on ${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, by \`bun run bench${a.quick ? " --quick" : ""}\` (bench/run.ts). ` +
    `Load average (1, 5, 15 min) ${m.loadavgBefore.join(" ")} before and ${m.loadavg.join(" ")} after: the machine is shared, read small differences as noise.`, "");
  L.push(`Implementations:`, "");
  for (const i of impls) L.push(`- **${i.name}**${i.label !== i.name ? ` (${i.label})` : ""}: ${res.implementations[i.name]?.version ?? i.missing}`);
  L.push("");
  L.push(
    `Each cell is the median of ${a.runs} run${a.runs > 1 ? "s" : ""} (implementations interleaved), ` +
      `throughput from iperf3 (2 streams, \`-w\` 512k / 1M / 8M by MTU, ${a.time} s after ${a.omit} s omitted, receiver side) in Gbit/s, ` +
      `latency from bench/rr.c (one flow of 1-byte requests and responses for ${a.rrTime} s; CRR: a new connection for each, the server closing first) as 10^6 / transactions per second, in µs, at MTU ${LATENCY_MTU}. ` +
      `Columns are the MTU of the namespace's interface. The ratio is ours ÷ reference: above 1 is better for throughput, below 1 is better for latency; ` +
      `a huge ratio means the other side stalled (see min–max below), "fail" that no run finished (see the notes at the end).`,
    "",
  );
  L.push(
    `ns to host: the client in the namespace connects to the gateway address (192.0.2.1, fe80::1%eth0), mapped to the host's loopback where the server runs. ` +
      `host to ns: the client runs in a separate "upstream" namespace behind a veth and connects to the host's address (192.0.2.2, 2001:db8::2), forwarded by \`-t\` into the namespace: ` +
      `a non-loopback source, so the reference takes the tap path, not its spliced one.`,
    "",
  );
  for (const table of [...new Set(rows.map((r) => r.table))]) {
    const trows = rows.filter((r) => r.table === table);
    const cols = [...new Set(trows.flatMap((r) => r.columns))].sort((x, y) => x - y);
    L.push(`## ${TABLE_TITLES[table] ?? table} (\`${table}\`)`, "");
    L.push(`ours / reference (×ratio)`, "");
    L.push(`| | ${cols.map((c) => `MTU ${c}`).join(" | ")} |`, `| --- | ${cols.map(() => "---").join(" | ")} |`);
    for (const r of trows) {
      const out = cols.map((c) => {
        if (!r.columns.includes(c)) return "";
        const o = get(table, r.row, c, "project");
        const p = get(table, r.row, c, "pasta");
        if (!o && !p) return "";
        const f = (x?: Cell) => (x ? (x.median === null ? (x.errors.length ? "fail" : "–") : fmt(x.median, r.unit)) : "–");
        const q = o?.median && p?.median ? o.median / p.median : 0;
        const ratio = q ? ` (×${q >= 100 ? Math.round(q) : q >= 10 ? q.toFixed(1) : q.toFixed(2)})` : "";
        return `${f(o)} / ${f(p)}${ratio}`;
      });
      L.push(`| ${r.row} (${r.unit}) | ${out.join(" | ")} |`);
    }
    L.push("");
    L.push(`All implementations: median [min–max]`, "");
    const names = impls.map((i) => i.name).filter((n) => cells.some((c) => c.table === table && c.impl === n));
    L.push(`| | MTU | ${names.join(" | ")} |`, `| --- | --- | ${names.map(() => "---").join(" | ")} |`);
    for (const r of trows) {
      for (const c of r.columns) {
        const vals = names.map((n) => {
          const x = get(table, r.row, c, n);
          if (!x) return "";
          if (x.median === null) return x.errors.length ? "fail" : "–";
          return x.runs > 1 ? `${fmt(x.median, r.unit)} [${fmt(x.min, r.unit)}–${fmt(x.max, r.unit)}]` : fmt(x.median, r.unit);
        });
        if (vals.every((v) => !v)) continue;
        L.push(`| ${r.row} (${r.unit}) | ${c} | ${vals.join(" | ")} |`);
      }
    }
    L.push("");
  }
  if (res.skipped.length) {
    L.push(`## Skipped`, "");
    for (const s of res.skipped) L.push(`- ${s}`);
    L.push("");
  }
  if (res.notes.length) {
    L.push(`## Notes from this run (errors, stalls, exits)`, "");
    for (const n of res.notes) L.push(`- ${n.replace(/\n/g, " ")}`);
    L.push("");
  }
  return L.join("\n");
}

/** --render: RESULTS.md again from results.json, with the settings it was measured with. */
function render(a: Args): number {
  const file = join(a.out, "results.json");
  if (!existsSync(file)) {
    process.stderr.write(`bench: no ${file} to render\n`);
    return 1;
  }
  const res = JSON.parse(readFileSync(file, "utf8"));
  const st = res.settings ?? {};
  Object.assign(a, { quick: res.mode === "quick", runs: st.runs ?? a.runs, time: st.iperf3Seconds ?? a.time, omit: st.iperf3Omit ?? a.omit, rrTime: st.rrSeconds ?? a.rrTime });
  const present = new Set((res.rows as Cell[]).map((c) => `${c.table}\u0000${c.row}`));
  const rows = tapTcpRows(st.columns ?? a.columns).filter((r) => present.has(`${r.table}\u0000${r.row}`));
  const impls = implDefs("").filter((i) => i.name in res.implementations);
  writeFileSync(join(a.out, "RESULTS.md"), markdown(res, rows, impls, a));
  process.stderr.write(`bench: wrote ${join(a.out, "RESULTS.md")}\n`);
  return 0;
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
  scratch = mkdtempSync(join(tmpdir(), `pb-bench-${process.pid}-`));
  chmodSync(scratch, 0o755);
  process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
  let rrBin: string | null = null;
  const cc = Bun.which("cc") ?? Bun.which("gcc") ?? Bun.which("clang");
  if (!cc) skipped.push("RR / CRR rows: no C compiler (cc) to build bench/rr.c");
  else {
    const out = join(scratch, "rr");
    const r = run([cc, "-O2", "-Wall", "-o", out, join(import.meta.dir, "rr.c")]);
    if (r.code === 0) rrBin = out;
    else skipped.push(`RR / CRR rows: bench/rr.c did not build: ${r.stderr.trim()}`);
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
  let rows = tapTcpRows(a.columns).filter((r) => (r.kind === "tput" ? haveIperf : !!rrBin));
  if (a.only) rows = rows.filter((r) => a.only!.test(`${r.table} ${r.row}`));
  for (const s of skipped) say(`skipped: ${s}`);
  if (!rows.length || !active.length) {
    say("nothing to run");
    return 1;
  }

  // the plan: by column (the daemons restart per MTU), then row, then round, then implementation
  const columns = [...new Set(rows.flatMap((r) => r.columns))].sort((x, y) => x - y);
  const tputCost = a.time + a.omit + 0.8;
  const rrCost = a.rrTime + 0.2;
  const startCost = (i: ImplDef) => (i.kind === "loopback" ? 0.05 : i.name === "project" ? 1.5 : 0.6);
  let estimate = active.length * 1.5; // worlds
  let steps = 0;
  for (const c of columns) {
    for (const i of active) estimate += startCost(i) + 0.3;
    for (const r of rows.filter((r) => r.columns.includes(c))) {
      estimate += a.runs * active.length * (r.kind === "tput" ? tputCost : rrCost);
      steps += a.runs * active.length;
    }
  }
  say(`${rows.length} rows, ${columns.length} MTU columns, ${active.map((i) => i.name).join(", ")}, ${a.runs} run(s) per cell: about ${fmtDuration(estimate)}`);
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
  const key = (r: RowDef, c: number, i: string) => `${r.table}\u0000${r.row}\u0000${c}\u0000${i}`;
  const date = new Date().toISOString();
  const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  try {
    const tw = performance.now();
    for (const i of active) {
      const e = new Env(i, rrBin);
      await e.init();
      envs.push(e);
    }
    progress.account(active.length * 1.5, (performance.now() - tw) / 1000);
    for (const col of columns) {
      const live: Env[] = [];
      for (const e of envs) {
        const t0 = performance.now();
        progress.step(`starting ${e.impl.name} at MTU ${col}`, false);
        try {
          await e.start(col);
          progress.account(startCost(e.impl) + 0.3, (performance.now() - t0) / 1000);
          live.push(e);
        } catch (err) {
          const msg = (err as Error).message;
          notes.push(`${e.impl.name} (MTU ${col}): did not start: ${msg}`);
          progress.say(`bench: ${e.impl.name} did not start at MTU ${col}: ${msg}`);
        }
      }
      for (const r of rows.filter((r) => r.columns.includes(col))) {
        for (let round = 1; round <= a.runs; round++) {
          for (const e of envs) {
            const k = key(r, col, e.impl.name);
            let cell = results.get(k);
            if (!cell) {
              cell = { table: r.table, row: r.row, column: col, impl: e.impl.name, unit: r.unit, median: null, min: null, max: null, runs: 0, values: [], errors: [] };
              results.set(k, cell);
            }
            const cost = r.kind === "tput" ? tputCost : rrCost;
            progress.step(`${r.table} · ${r.row} · MTU ${col} · ${e.impl.name}${a.runs > 1 ? ` (run ${round}/${a.runs})` : ""}`);
            const t0 = performance.now();
            if (!live.includes(e)) {
              cell.errors.push("not running");
              progress.finish(cost, 0);
              continue;
            }
            // a daemon that died earlier in this column gets one restart
            if (e.impl.kind !== "loopback" && !e.daemon && e.restarts < 3) {
              e.restarts++;
              try {
                await e.start(col);
              } catch (err) {
                e.note(`restart failed: ${(err as Error).message}`);
              }
            }
            try {
              if (e.impl.kind !== "loopback" && !e.daemon) throw new Error("not running");
              const v = await measure(e, r, col, a);
              cell.values.push(v);
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
            progress.finish(cost, (performance.now() - t0) / 1000);
          }
        }
      }
      for (const e of envs) await e.stop();
    }
  } finally {
    progress.end();
    await cleanup();
  }

  const cells = [...results.values()].map((c) => {
    if (c.values.length) {
      c.median = round(median(c.values), c.unit);
      c.min = round(Math.min(...c.values), c.unit);
      c.max = round(Math.max(...c.values), c.unit);
      c.values = c.values.map((v) => round(v, c.unit));
    }
    c.runs = c.values.length;
    return c;
  });
  const res = {
    date,
    mode: a.quick ? "quick" : "full",
    machine: { ...machineInfo(), loadavgBefore: loadBefore },
    implementations: Object.fromEntries(active.map((i) => [i.name, { version: i.version }])),
    settings: { runs: a.runs, iperf3Seconds: a.time, iperf3Omit: a.omit, rrSeconds: a.rrTime, latencyMtu: LATENCY_MTU, columns },
    rows: cells,
    skipped,
    notes,
  };
  mkdirSync(a.out, { recursive: true });
  writeFileSync(join(a.out, "results.json"), JSON.stringify(res, null, 1) + "\n");
  const md = markdown(res, rows, active, a);
  writeFileSync(join(a.out, "RESULTS.md"), md);
  if (a.json) process.stdout.write(JSON.stringify(res, null, 1) + "\n");
  else process.stdout.write(md + `\nwritten: ${join(a.out, "results.json")}, ${join(a.out, "RESULTS.md")}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
