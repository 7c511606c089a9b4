/**
 * The bench's robustness table (issue 15): what floods from the guest, and
 * many connections, do to a running pasta; ours beside the references
 * (Debian's pasta, upstream's build), the same loads for each, one run each.
 *
 *   bun bench/robustness.ts [--quick] [--impl project,pasta,upstream] [--out DIR]
 *
 * writes DIR/robustness.json and DIR/robustness.md (DIR: perf/). It runs on
 * its own rather than as a table of bench/run.ts: its loads take minutes per
 * implementation and share nothing with the throughput rows.
 *
 * Per implementation: a test world (test/world.ts), in its host namespace
 * the peers' server (test/tools/conns.c: TCP and UDP echo on PEER_PORT) and
 * an iperf3 server, and pasta started with --config-net -T PEER_PORT by
 * test/tools/pasta-session.ts (its guest is the namespace it makes), its
 * descriptor limit raised to NOFILE (soft and hard) for both. The guest
 * reaches the host's loopback through the gateway address (the tap path)
 * or its own loopback (-T: the spliced path).
 *
 * Floods, one after another (the commands in FLOOD_CMDS, bounded by
 * `timeout`), each in three phases of floodSeconds:
 *   1. iperf3 from the host to the namespace (-R: over a connection the
 *      guest opened) without the flood (its rate);
 *   2. the flood alone: a new connection (or flow, echo, fragmented
 *      datagram) started once a second, each given PROBE_S seconds with
 *      the guest's own retries, counted when it got through; the daemon's
 *      CPU time; its descriptors sampled every 100 ms;
 *   3. the same flood again, started a second into the same iperf3 (a
 *      transfer that exists before the flood): its rate in the seconds
 *      within the flood, as a share of phase 1's.
 * settleSeconds after the flood: the daemon's descriptors and RSS again.
 *
 * Connections (conns.c): hold N at once through the tap and through the
 * spliced path (RSS per open connection; descriptors after closing), churn
 * N one after another, N UDP flows one after another (a new source port
 * each; the daemon's descriptors at peak). "over idle": minus the value
 * before the load.
 *
 * Everything stays inside the world's namespaces; every load is bounded in
 * time and count.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startPasta, type PastaSession } from "../test/tools/pasta-session.ts";
import { cpuSeconds, rssBytes } from "../test/tools/proc-stats.ts";
import { ADDR, BUN, REPO, canRunE2E, createWorld, nofileHardLimit, run, type Child, type World } from "../test/world.ts";

/** The floods, in order. */
const FLOODS = ["SYN flood", "UDP flood", "ICMP echo flood", "fragment flood", "ARP/NDP storm"] as const;

/** The loads' sizes: full, or --quick. */
interface RobustSizes {
  floodSeconds: number;
  settleSeconds: number;
  hold: number;
  churn: number;
  udpFlows: number;
  /** Seconds at most for the connections and flows in sequence (what is done by then counts). */
  seqSeconds: number;
  nofile: number;
}

function robustSizes(quick: boolean): RobustSizes {
  return quick
    ? { floodSeconds: 4, settleSeconds: 4, hold: 2000, churn: 20000, udpFlows: 20000, seqSeconds: 60, nofile: NOFILE }
    : { floodSeconds: 8, settleSeconds: 12, hold: 10000, churn: 100000, udpFlows: 100000, seqSeconds: 300, nofile: NOFILE };
}

/**
 * Descriptors for pasta and the peers: 10000 spliced connections take 6
 * each in pasta; within the hard limit we may give (raising it needs
 * CAP_SYS_RESOURCE).
 */
const NOFILE = Math.min(131072, nofileHardLimit());
const PEER_PORT = 6101;
const IPERF_PORT = 6102;
/** Seconds a new connection tried during a flood has to get through. */
const PROBE_S = 15;
/** Where a flood's fragmented probe goes: the guest fragments at this MTU towards the gateway. */
const FRAG_MTU = 1500;

interface RobustImpl {
  name: string;
  /** argv of the pasta to run (options follow) */
  program: string[];
}

interface RobustIo {
  /** a measured value, or why there is none */
  record(row: string, impl: string, value: number | null, error?: string): void;
  /** every row starting with prefix that has no value yet failed, for msg */
  fail(prefix: string, impl: string, msg: string): void;
  note(msg: string): void;
  step(label: string): void;
}

/** A flood: guest commands (each run under `timeout`), and the probe for a new connection. */
interface Flood {
  name: (typeof FLOODS)[number];
  cmds: (t: Tools, s: PastaSession) => Promise<string[][]>;
  probe: "tcp" | "udp" | "ping" | "frag";
}

interface Tools {
  conns: string;
  storm: string;
}

const FLOOD_CMDS: Flood[] = [
  {
    name: "SYN flood",
    probe: "tcp",
    cmds: async () => [
      ["hping3", "--flood", "-q", "-S", "-p", "5999", ADDR.gw4],
      ["hping3", "--flood", "-q", "-S", "--rand-source", "-p", String(PEER_PORT), ADDR.gw4],
    ],
  },
  { name: "UDP flood", probe: "udp", cmds: async () => [["hping3", "--flood", "-q", "--udp", "-p", "5999", ADDR.gw4]] },
  {
    name: "ICMP echo flood",
    probe: "ping",
    cmds: async () => [
      ["hping3", "--flood", "-q", "--icmp", ADDR.gw4],
      ["hping3", "--flood", "-q", "--icmp", "--rand-dest", "-I", "eth0", "192.0.2.x"],
    ],
  },
  {
    name: "fragment flood",
    probe: "frag",
    cmds: async () => [["hping3", "--flood", "-q", "--udp", "-x", "-d", "64", "-p", "5999", ADDR.gw4]],
  },
  {
    name: "ARP/NDP storm",
    probe: "tcp",
    cmds: async (t, s) => {
      const ll =
        (await s.guest(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])).stdout.match(
          /inet6 (fe80::[0-9a-f:]+)\//,
        )?.[1] ?? "fe80::1";
      const gw6 = (await s.guest(["ip", "-6", "route", "show", "default"])).stdout.match(/via (\S+)/)?.[1] ?? ADDR.gwLL;
      return [
        [t.storm, "arp", "eth0", "600", "1000000000", ADDR.gw4],
        [t.storm, "ns", "eth0", "600", "1000000000", gw6, ll],
      ];
    },
  },
];

/** One implementation's world, pasta and servers. */
class Rig {
  world!: World;
  pasta!: PastaSession;
  private servers: Child[] = [];

  constructor(
    readonly impl: RobustImpl,
    readonly tools: Tools,
    readonly z: RobustSizes,
  ) {}

  async start() {
    this.world = await createWorld({ prefix: "pr" });
    const limit = ["prlimit", `--nofile=${NOFILE}:${NOFILE}`, "--"];
    const srv = this.world.spawn(this.world.host, [...limit, this.tools.conns, "server", String(PEER_PORT)]);
    await srv.waitFor("ready", { timeoutMs: 10_000 });
    this.servers.push(srv);
    this.servers.push(this.world.spawn(this.world.host, [...limit, "iperf3", "-s", "-p", String(IPERF_PORT)]));
    this.pasta = await startPasta(this.world, ["--runas", "0", "-q", "--config-net", "-T", String(PEER_PORT)], {
      launcher: limit,
      program: this.impl.program,
    });
    for (let i = 0; i < 100 && !(await this.world.exec(this.world.host, ["ss", "-Hltn", `sport = :${IPERF_PORT}`])).stdout.trim(); i++)
      await Bun.sleep(50);
  }

  async stop() {
    await this.pasta?.stop();
    for (const s of this.servers) await s.kill({ graceMs: 1000 });
    await this.world?.destroy();
  }

  fds(): number {
    return Math.max(0, this.pasta.fdCount());
  }

  /** The daemon's VmRSS in MB. */
  rssMB(): number {
    return Math.max(0, rssBytes(this.pasta.pid)) / (1 << 20);
  }

  /** The daemon's CPU seconds (user + system) so far. */
  cpu(): number {
    return Math.max(0, cpuSeconds(this.pasta.pid));
  }

  guest(cmd: string[], timeoutMs: number) {
    return this.pasta.guest(["prlimit", `--nofile=${NOFILE}:${NOFILE}`, "--", ...cmd], { timeoutMs });
  }

  /** iperf3 -R (the host sends, over a connection the guest opened) for seconds: its rate in each second, Gbit/s, or null. */
  async iperf(seconds: number): Promise<number[] | null> {
    const r = await this.guest(
      ["iperf3", "-c", ADDR.gw4, "-p", String(IPERF_PORT), "-R", "-t", String(seconds), "-i", "1", "-J", "--connect-timeout", "5000"],
      (seconds + 30) * 1000,
    );
    try {
      const rates = (JSON.parse(r.stdout).intervals as { sum: { bits_per_second: number } }[]).map((i) => i.sum.bits_per_second / 1e9);
      return rates.length ? rates : null;
    } catch {
      return null;
    }
  }

  /**
   * One new connection of the kind: true if it got through within PROBE_S,
   * with the guest's own retries (TCP's SYN, conns.c's UDP resends, ping's
   * next request): a flood fills the tap's queue, and the guest's kernel
   * drops what it sends while it is full, whichever daemon reads it.
   */
  async probe(kind: Flood["probe"]): Promise<boolean> {
    const c = this.tools.conns;
    const bound = (PROBE_S + 5) * 1000;
    if (kind === "ping") return (await this.guest(["ping", "-c", "1", "-w", String(PROBE_S), ADDR.gw4], bound)).code === 0;
    const argv =
      kind === "tcp"
        ? [c, "churn", ADDR.gw4, String(PEER_PORT), "1", String(PROBE_S)]
        : [c, "udp", ADDR.gw4, String(PEER_PORT), "1", String(PROBE_S), kind === "frag" ? "4000" : "1"];
    return (await this.guest(argv, bound)).stdout.trim() === "done 1 failed 0";
  }
}

/** Sample the daemon's descriptors every 100 ms until stop() is called; stop() resolves with the largest count. */
function sampleFds(rig: Rig): () => Promise<number> {
  let max = rig.fds();
  let on = true;
  const done = (async () => {
    while (on) {
      max = Math.max(max, rig.fds());
      await Bun.sleep(100);
    }
  })();
  return async () => {
    on = false;
    await done;
    return max;
  };
}

async function runFlood(rig: Rig, f: Flood, io: RobustIo) {
  const z = rig.z;
  const T = z.floodSeconds;
  const row = (what: string) => `${f.name}: ${what}`;
  const rec = (what: string, v: number | null, err?: string) => io.record(row(what), rig.impl.name, v, err);
  if (f.probe === "frag") await rig.pasta.guest(["ip", "route", "add", `${ADDR.gw4}/32`, "dev", "eth0", "mtu", "lock", String(FRAG_MTU)]);
  try {
    const alone = mean(await rig.iperf(T));
    const idle = { fds: rig.fds(), rss: rig.rssMB() };
    const cmds = await f.cmds(rig.tools, rig.pasta);
    let floods = cmds.map((c) => rig.pasta.guestSpawn(["timeout", String(T + 1), ...c]));
    try {
      await Bun.sleep(300);
      // phase 2: the flood alone
      const stopFds = sampleFds(rig);
      const cpu0 = rig.cpu();
      const t0 = performance.now();
      const probes: Promise<boolean>[] = [];
      while (performance.now() - t0 < T * 1000) {
        probes.push(rig.probe(f.probe));
        await Bun.sleep(Math.min(1000, t0 + T * 1000 - performance.now()));
      }
      const cpu = ((rig.cpu() - cpu0) / ((performance.now() - t0) / 1000)) * 100;
      await Promise.all(floods.map((c) => c.kill({ graceMs: 1000 })));
      // phase 3: the flood again, a second into a transfer: its rate in the seconds within the flood
      const transfer = rig.iperf(T + 2);
      await Bun.sleep(1000);
      floods = cmds.map((c) => rig.pasta.guestSpawn(["timeout", String(T), ...c]));
      const rates = await transfer;
      const during = rates && rates.length >= T + 1 ? mean(rates.slice(2, T + 1)) : null;
      const peak = await stopFds();
      const through = (await Promise.all(probes)).filter(Boolean).length;
      rec("new connections through", (100 * through) / probes.length);
      rec("daemon CPU during the flood", cpu);
      rec("daemon descriptors at peak, over idle", peak - idle.fds);
      if (alone && during !== null) rec("transfer during the flood, of its rate without", (100 * during) / alone);
      else rec("transfer during the flood, of its rate without", null, `iperf3: ${alone} Gbit/s alone, ${rates?.join(" ")} during`);
    } finally {
      await Promise.all(floods.map((c) => c.kill({ graceMs: 1000 })));
    }
    await Bun.sleep(z.settleSeconds * 1000);
    if (!rig.pasta.alive()) throw new Error(`exited during the ${f.name}: ${rig.pasta.log().slice(-500)}`);
    rec("descriptors after, over idle", rig.fds() - idle.fds);
    rec("RSS after, over idle", rig.rssMB() - idle.rss);
  } finally {
    if (f.probe === "frag") await rig.pasta.guest(["ip", "route", "del", `${ADDR.gw4}/32`, "dev", "eth0"]);
  }
}

/** The mean of values, or null for none. */
function mean(values: number[] | null): number | null {
  return values?.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/** Wait (bounded) for the daemon's descriptors to come down to n; returns the count. */
async function fdsBackTo(rig: Rig, n: number, ms: number): Promise<number> {
  let fds = rig.fds();
  for (const end = performance.now() + ms; fds > n && performance.now() < end; fds = rig.fds()) await Bun.sleep(100);
  return fds;
}

async function holdMany(rig: Rig, path: "tap" | "spliced", io: RobustIo) {
  const z = rig.z;
  const row = (what: string) => `connections at once, ${path}: ${what}`;
  const until = join(rig.world.dir, `close-${path}`);
  const idle = { fds: rig.fds(), rss: rig.rssMB() };
  const host = path === "tap" ? ADDR.gw4 : "127.0.0.1";
  const client = rig.pasta.guestSpawn([
    "prlimit",
    `--nofile=${NOFILE}:${NOFILE}`,
    "--",
    rig.tools.conns,
    "hold",
    host,
    String(PEER_PORT),
    String(z.hold),
    "300",
    until,
  ]);
  try {
    const m = await client.waitFor(/held (\d+) failed (\d+)/, { timeoutMs: 300_000 });
    const held = Number(m[1]);
    io.record(row("held"), rig.impl.name, held);
    if (held > 0) io.record(row("RSS per open connection"), rig.impl.name, ((rig.rssMB() - idle.rss) * 1024 * 1024) / held);
    if (held < z.hold) io.note(`${rig.impl.name}: ${path}: ${m[2]} of ${z.hold} connections failed`);
    await Bun.write(until, "");
    await client.waitFor(/closed \d+/, { timeoutMs: 60_000 });
    io.record(
      row("descriptors after closing, over idle"),
      rig.impl.name,
      (await fdsBackTo(rig, idle.fds, z.settleSeconds * 1000)) - idle.fds,
    );
  } finally {
    await Bun.write(until, "");
    await client.kill({ graceMs: 2000 });
  }
}

async function churn(rig: Rig, io: RobustIo) {
  const z = rig.z;
  const idle = { fds: rig.fds(), rss: rig.rssMB() };
  const r = await rig.guest(
    [rig.tools.conns, "churn", ADDR.gw4, String(PEER_PORT), String(z.churn), String(z.seqSeconds)],
    (z.seqSeconds + 60) * 1000,
  );
  const m = r.stdout.match(/done (\d+) failed (\d+)/);
  if (!m) throw new Error(`conns churn: ${r.code} ${r.stderr}`);
  io.record("connections in sequence: through", rig.impl.name, Number(m[1]));
  io.record(
    "connections in sequence: descriptors after, over idle",
    rig.impl.name,
    (await fdsBackTo(rig, idle.fds, z.settleSeconds * 1000)) - idle.fds,
  );
  io.record("connections in sequence: RSS after, over idle", rig.impl.name, rig.rssMB() - idle.rss);
}

async function udpFlows(rig: Rig, io: RobustIo) {
  const z = rig.z;
  const idle = { fds: rig.fds(), rss: rig.rssMB() };
  const stopFds = sampleFds(rig);
  const r = await rig.guest(
    [rig.tools.conns, "udp", ADDR.gw4, String(PEER_PORT), String(z.udpFlows), String(z.seqSeconds)],
    (z.seqSeconds + 60) * 1000,
  );
  const peak = await stopFds();
  const m = r.stdout.match(/done (\d+) failed (\d+)/);
  if (!m) throw new Error(`conns udp: ${r.code} ${r.stderr}`);
  io.record("UDP flows in sequence: through", rig.impl.name, Number(m[1]));
  io.record("UDP flows in sequence: daemon descriptors at peak, over idle", rig.impl.name, peak - idle.fds);
  io.record("UDP flows in sequence: RSS after, over idle", rig.impl.name, rig.rssMB() - idle.rss);
}

/**
 * Run the robustness table for each implementation; a scenario that fails
 * is recorded as an error of its rows (its note says why) and the next one
 * runs on a fresh pasta.
 */
async function measureRobustness(impls: RobustImpl[], tools: Tools, z: RobustSizes, io: RobustIo): Promise<void> {
  type Scenario = { label: string; run: (rig: Rig) => Promise<void> };
  const scenarios: Scenario[] = [
    ...FLOOD_CMDS.map((f) => ({ label: f.name, run: (rig: Rig) => runFlood(rig, f, io) })),
    { label: "connections at once, tap", run: (rig: Rig) => holdMany(rig, "tap", io) },
    { label: "connections at once, spliced", run: (rig: Rig) => holdMany(rig, "spliced", io) },
    { label: "connections in sequence", run: (rig: Rig) => churn(rig, io) },
    { label: "UDP flows in sequence", run: (rig: Rig) => udpFlows(rig, io) },
  ];
  for (const impl of impls) {
    let rig: Rig | null = null;
    for (const sc of scenarios) {
      io.step(`robustness · ${sc.label} · ${impl.name}`);
      try {
        if (!rig) {
          rig = new Rig(impl, tools, z);
          await rig.start();
        }
        await sc.run(rig);
      } catch (e) {
        const msg = (e as Error).message;
        io.note(`robustness, ${impl.name}, ${sc.label}: ${msg}`);
        io.fail(`${sc.label}:`, impl.name, msg);
        await rig?.stop().catch(() => {});
        rig = null;
      }
    }
    await rig?.stop().catch(() => {});
  }
}

/** Units where a higher value is better (the others: lower is better). */
const HIGHER_IS_BETTER = new Set(["%", "conns"]);

/** The table's rows, in order, with their units. */
function rowsAndUnits(): [string, string][] {
  const rows: [string, string][] = [];
  for (const f of FLOODS) {
    rows.push([`${f}: new connections through`, "%"]);
    rows.push([`${f}: daemon CPU during the flood`, "% CPU"]);
    rows.push([`${f}: daemon descriptors at peak, over idle`, "fds"]);
    rows.push([`${f}: transfer during the flood, of its rate without`, "%"]);
    rows.push([`${f}: descriptors after, over idle`, "fds"]);
    rows.push([`${f}: RSS after, over idle`, "MB"]);
  }
  for (const path of ["tap", "spliced"]) {
    rows.push([`connections at once, ${path}: held`, "conns"]);
    rows.push([`connections at once, ${path}: RSS per open connection`, "B/conn"]);
    rows.push([`connections at once, ${path}: descriptors after closing, over idle`, "fds"]);
  }
  rows.push(["connections in sequence: through", "conns"]);
  rows.push(["connections in sequence: descriptors after, over idle", "fds"]);
  rows.push(["connections in sequence: RSS after, over idle", "MB"]);
  rows.push(["UDP flows in sequence: through", "conns"]);
  rows.push(["UDP flows in sequence: daemon descriptors at peak, over idle", "fds"]);
  rows.push(["UDP flows in sequence: RSS after, over idle", "MB"]);
  return rows;
}

/** What one implementation got in one row: a value, or why there is none. */
type Result = { value: number } | { error: string };

interface Results {
  date: string;
  sizes: RobustSizes;
  implementations: RobustImpl[];
  /** row → implementation name → result */
  rows: Record<string, Record<string, Result>>;
  notes: string[];
}

const LABELS: Record<string, string> = { project: "ours", pasta: "Debian's pasta", upstream: "upstream's pasta" };

function fmtValue(x: number, unit: string): string {
  if (unit === "fds" || unit === "conns" || unit === "B/conn") return x.toFixed(0);
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1);
}

/**
 * The table in markdown: per row, each implementation's value, and ours
 * against the best reference where both are positive numbers (a ratio of
 * differences near zero, "over idle", says nothing: those rows have none).
 */
function markdown(res: Results): string {
  const impls = res.implementations.map((i) => i.name);
  const z = res.sizes;
  const L = [
    "# Robustness: floods from the guest, many connections",
    "",
    `Run ${res.date} by \`bun bench/robustness.ts\` (bench/robustness.ts says what each row measures). ` +
      `Each pasta with --config-net and -T PORT, descriptors raised to ${z.nofile}. Each flood runs ${z.floodSeconds} s alone ` +
      `(a new connection started once a second: a TCP connection, a UDP echo, a ping or a fragmented UDP echo, each given ${PROBE_S} s with the guest's own retries), then again, started a second into an iperf3 ` +
      `transfer from the host to the namespace: its rate in the seconds within the flood, against the same transfer just before; "after" is ${z.settleSeconds} s after the flood. ` +
      `Connections: ${z.hold} at once, ${z.churn} in sequence and ${z.udpFlows} UDP flows in sequence (or as many as ${z.seqSeconds} s allow).`,
    "",
    `| row | unit | ${impls.map((i) => LABELS[i] ?? i).join(" | ")} | ours ÷ best reference |`,
    `| --- | --- | ${impls.map(() => "---").join(" | ")} | --- |`,
  ];
  for (const [row, unit] of rowsAndUnits()) {
    const got = res.rows[row] ?? {};
    const cell = (i: string) => {
      const r = got[i];
      return !r ? "–" : "value" in r ? fmtValue(r.value, unit) : "fail";
    };
    const value = (i: string) => {
      const r = got[i];
      return r && "value" in r ? r.value : null;
    };
    const ours = value("project");
    const refs = impls
      .filter((i) => i !== "project")
      .map(value)
      .filter((v): v is number => v !== null && v > 0);
    const best = refs.length ? (HIGHER_IS_BETTER.has(unit) ? Math.max(...refs) : Math.min(...refs)) : null;
    const ratio = ours !== null && ours > 0 && best !== null && !row.includes("over idle") ? `×${(ours / best).toFixed(2)}` : "";
    L.push(`| ${row} | ${unit} | ${impls.map(cell).join(" | ")} | ${ratio} |`);
  }
  if (res.notes.length) L.push("", "Notes:", "", ...res.notes.map((n) => `- ${n.replace(/\s+/g, " ").slice(0, 400)}`));
  return `${L.join("\n")}\n`;
}

const UPSTREAM_PASTA = resolve(process.env.PASTA_UPSTREAM_DIR ?? resolve(REPO, "..", "shared", "reference", "upstream"), "pasta");

/** The implementations by name: ours from this checkout, Debian's, upstream's. */
function implementation(name: string): RobustImpl | string {
  if (name === "project") return { name, program: [BUN, join(REPO, "src", "main.ts")] };
  if (name === "pasta")
    return existsSync("/usr/bin/pasta") ? { name, program: ["/usr/bin/pasta"] } : "/usr/bin/pasta is missing (Debian package passt)";
  if (name === "upstream") return existsSync(UPSTREAM_PASTA) ? { name, program: [UPSTREAM_PASTA] } : `${UPSTREAM_PASTA} is missing`;
  return `unknown implementation ${name}`;
}

/** Build conns.c and storm.c into dir; the tools, or why not. */
function buildTools(dir: string): Tools | string {
  const cc = Bun.which("cc") ?? Bun.which("gcc");
  if (!cc) return "no C compiler (cc)";
  if (!Bun.which("hping3")) return "hping3 is not installed (Debian package hping3)";
  if (!Bun.which("iperf3")) return "iperf3 is not installed";
  const tools = { conns: join(dir, "conns"), storm: join(dir, "storm") };
  for (const [name, out] of Object.entries(tools)) {
    const r = run([cc, "-O2", "-Wall", "-o", out, join(REPO, "test", "tools", `${name}.c`)]);
    if (r.code !== 0) return `test/tools/${name}.c did not build: ${r.stderr.trim()}`;
  }
  return tools;
}

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      impl: { type: "string", default: "project,pasta,upstream" },
      out: { type: "string", default: join(REPO, "perf") },
    },
  });
  const e2e = canRunE2E();
  if (!e2e.ok) {
    console.error(`robustness: cannot run: ${e2e.reason}`);
    return 1;
  }
  const notes: string[] = [];
  const impls: RobustImpl[] = [];
  for (const name of a.impl!.split(",")) {
    const i = implementation(name.trim());
    if (typeof i === "string") notes.push(`${name}: skipped: ${i}`);
    else impls.push(i);
  }
  const scratch = mkdtempSync(join(tmpdir(), "robustness-"));
  try {
    const tools = buildTools(scratch);
    if (typeof tools === "string") {
      console.error(`robustness: cannot run: ${tools}`);
      return 1;
    }
    const z = robustSizes(a.quick!);
    const res: Results = { date: new Date().toISOString(), sizes: z, implementations: impls, rows: {}, notes };
    const put = (row: string, impl: string, r: Result) => ((res.rows[row] ??= {})[impl] = r);
    await measureRobustness(impls, tools, z, {
      record: (row, impl, value, error) => put(row, impl, value === null ? { error: error ?? "no value" } : { value }),
      fail(prefix, impl, msg) {
        for (const [row] of rowsAndUnits()) if (row.startsWith(prefix) && !res.rows[row]?.[impl]) put(row, impl, { error: msg });
      },
      note: (msg) => notes.push(msg),
      step: (label) => console.log(`· ${label}`),
    });
    mkdirSync(a.out!, { recursive: true });
    writeFileSync(join(a.out!, "robustness.json"), `${JSON.stringify(res, null, 2)}\n`);
    writeFileSync(join(a.out!, "robustness.md"), markdown(res));
    console.log(markdown(res));
    return 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (import.meta.main) process.exit(await main());
