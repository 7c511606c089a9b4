/**
 * What the bench measures: its tables, their rows and MTU columns, which
 * implementations take part in which, and who the reference of a row is.
 * The layout follows the performance tables the original publishes on its
 * web page (passt.top), measured by its CI.
 *
 * A "mode" is one way of setting an implementation up, shared by the tables
 * measured with it, so that one start per MTU column serves them all:
 *   tap    pasta (or slirp4netns) attached to a guest namespace; traffic
 *          through the tap (ns to host via the gateway address, host to ns
 *          from the upstream namespace to a forwarded port);
 *   lo     pasta with ports forwarded both ways between the two loopbacks:
 *          the spliced path (columns: the MTU of the guest's loopback);
 *   passt  passt with a relay guest (test/tools/relay.ts): a tap in a
 *          namespace relayed to passt's socket.
 *   passt-vu  passt --vhost-user with DPDK's testpmd as the front-end: its
 *          virtio_user port on passt's socket, its tap port (a tap in a
 *          namespace) the guest, packets forwarded between the two.
 * The loopback "implementation" is the ceiling: client and server on one
 * loopback at the column's MTU.
 */

export type Mode = "tap" | "lo" | "passt" | "passt-vu";
/**
 * mtput: UDP multicast throughput (iperf2: iperf3 has no multicast), ours only (see oursOnly).
 * spp: sockperf ping-pong (a client nobody here wrote), the median round trip of 14-byte messages.
 */
export type Kind = "tput" | "mtput" | "rr" | "crr" | "urr" | "spp" | StartupKind | MemoryKind;
/**
 * The start-up table: time of `pasta --config-net -- true` (hyperfine), and
 * VmRSS and RssAnon of `pasta --config-net -- sleep` a moment after start;
 * each for ours run by bun (src/main.ts) and ours built as one executable
 * (`bun run build`: bytecode, no transpiling at start), against the same
 * references' values.
 */
export type StartupKind = "startup" | "startup-rss" | "startup-anon";
/**
 * Memory rows, read from /proc/PID/status: VmRSS a moment after start
 * (idle) and VmHWM before stop (peak); RssAnon (anonymous memory: what one
 * more instance costs, file pages such as Bun's executable being shared) a
 * moment after start, at its largest right after a run (peak: the kernel
 * keeps no high-water mark of it, and ours gives burst buffers back only
 * 2-4 s after the traffic), 6 s after the column's last run, and 40 s
 * after it (at rest: ours gives the runtime's compiled code back 30 s after
 * the traffic stopped, src/loop/loop.ts REST_MS).
 */
export type MemoryKind = "rss-idle" | "rss-peak" | "anon-idle" | "anon-peak" | "anon-end" | "anon-rest";

export function isMemory(kind: Kind): kind is MemoryKind {
  return kind.startsWith("rss") || kind.startsWith("anon");
}
export type Dir = "n2h" | "h2n";
export type Unit = "Gbit/s" | "µs" | "ms" | "MB";

export interface RowDef {
  table: string;
  row: string;
  /** how implementations are set up for it; null: measured outside the per-MTU starts */
  mode: Mode | null;
  kind: Kind;
  proto: "tcp" | "udp";
  ip: 4 | 6;
  dir: Dir;
  unit: Unit;
  columns: number[];
  /** start-up rows: ours is the standalone executable, not `bun src/main.ts` */
  standalone?: boolean;
}

export const TABLE_TITLES: Record<string, string> = {
  "pasta-lo-tcp": "pasta: TCP, local connections (spliced path)",
  "pasta-tap-tcp": "pasta: TCP, connections through the tap device",
  "pasta-lo-udp": "pasta: UDP, local connections (spliced path)",
  "pasta-tap-udp": "pasta: UDP, connections through the tap device",
  "passt-tcp": "passt: TCP, guest through the UNIX socket",
  "passt-udp": "passt: UDP, guest through the UNIX socket",
  "passt-vu-tcp": "passt --vhost-user: TCP, guest through shared-memory rings (testpmd front-end)",
  "passt-vu-udp": "passt --vhost-user: UDP, guest through shared-memory rings (testpmd front-end)",
  startup: "Start-up: time, and memory of an idle pasta (ours by bun, and as one executable)",
  memory: "Memory of the daemon (resident set, anonymous memory)",
};

/** Which mode each table is measured in. */
const TABLE_MODE: Record<string, Mode | null> = {
  "pasta-tap-tcp": "tap",
  "pasta-tap-udp": "tap",
  "pasta-lo-tcp": "lo",
  "pasta-lo-udp": "lo",
  "passt-tcp": "passt",
  "passt-udp": "passt",
  "passt-vu-tcp": "passt-vu",
  "passt-vu-udp": "passt-vu",
  startup: null,
  memory: null,
};

export const MODES: Mode[] = ["tap", "lo", "passt", "passt-vu"];

/** The MTU columns of a mode (quick: the largest only). */
export function columnsFor(mode: Mode, quick: boolean): number[] {
  const cols = mode === "lo" ? [1500, 4000, 16384, 65535] : mode === "passt-vu" ? VU_COLUMNS : [1500, 4000, 16384, 65520];
  return quick ? cols.slice(-1) : cols;
}

/**
 * MTUs of the passt-vu table: testpmd's tap port takes frames of at most
 * 1522 bytes (DPDK 22.11's net_tap), so there is one column, 1500.
 */
const VU_COLUMNS = [1500];

/** The column at which latency (one value per row) is measured: the largest MTU. */
export function latencyColumn(mode: Mode): number {
  return columnsFor(mode, true)[0]!;
}

/**
 * Which implementations take part in which modes. The references: "pasta"
 * and "passt" (Debian's package, 2023) and "upstream" (a July 2026 build of
 * both, /work/shared/reference/upstream/), which runs as pasta or passt by mode.
 */
export const IMPL_MODES: Record<string, Mode[]> = {
  project: ["tap", "lo", "passt", "passt-vu"],
  pasta: ["tap", "lo"],
  passt: ["passt"],
  upstream: ["tap", "lo", "passt", "passt-vu"],
  slirp4netns: ["tap"],
  loopback: ["tap", "lo"],
};

/** Why no reference takes part in the multicast rows. */
export const MCAST_NO_REFERENCE =
  "ours only, no reference can: neither Debian's nor upstream's pasta and passt join groups for the guest (no IGMP/MLD proxy), so nothing sent to a group reaches it";

/** Rows only ours can take part in: why (shown in place of the references), or null. */
export function oursOnly(row: string): string | null {
  return row.includes("multicast") ? MCAST_NO_REFERENCE : null;
}

/**
 * The reference implementations of a row: Debian's passt for passt's rows
 * (pasta otherwise), and upstream; upstream only for vhost-user (Debian's
 * 2023 passt has no --vhost-user).
 */
export function refImpls(table: string, row: string): string[] {
  if (table.startsWith("passt-vu") || row.includes("vhost-user")) return ["upstream"];
  const passt = table.startsWith("passt") || (table === "memory" && row.includes("passt"));
  return [passt ? "passt" : "pasta", "upstream"];
}

/** Units where a smaller value is better (latency, time, memory). */
export const LOWER_IS_BETTER = new Set(["µs", "ms", "MB"]);

/** The best of the references' medians of a cell (null when none has one), and whose it is. */
export function bestReference(
  refs: { impl: string; median: number | null | undefined }[],
  unit: string,
): { impl: string; median: number } | null {
  let best: { impl: string; median: number } | null = null;
  for (const r of refs) {
    if (r.median === null || r.median === undefined) continue;
    const better = best === null || (LOWER_IS_BETTER.has(unit) ? r.median < best.median : r.median > best.median);
    if (better) best = { impl: r.impl, median: r.median };
  }
  return best;
}

const MODE_LABEL: Record<Mode, string> = {
  tap: "pasta, tap path",
  lo: "pasta, spliced path",
  passt: "passt, relay guest",
  "passt-vu": "passt --vhost-user, testpmd guest",
};

/** iperf3 -w for TCP by MTU, as the original's tap tests; the spliced tests use 4M. */
export function windowFor(mode: Mode, mtu: number): string {
  if (mode === "lo") return "4M";
  return mtu <= 1500 ? "512k" : mtu <= 4000 ? "1M" : "8M";
}

/** iperf3 -b for UDP by MTU, as the original (per stream, 4 streams). */
export function udpRateFor(mtu: number): string {
  return mtu <= 4000 ? "3G" : mtu <= 16384 ? "10G" : "15G";
}

/** UDP payload that fills one packet at this MTU (IPv4: 20 + 8 bytes of headers, IPv6: 40 + 8). */
export function udpLenFor(mtu: number, ip: 4 | 6): number {
  return Math.min(65507, mtu - (ip === 4 ? 28 : 48));
}

function dirLabel(mode: Mode, dir: Dir): string {
  if (mode === "passt" || mode === "passt-vu") return dir === "n2h" ? "guest to host" : "host to guest";
  return dir === "n2h" ? "ns to host" : "host to ns";
}

/**
 * The rows of a TCP or UDP table: throughput both ways at every column (the
 * spliced path's host to ns: one value, the host side has one MTU), and
 * latency at the largest MTU: TCP RR and CRR both ways, UDP RR ns to host
 * (bench/rr.c), and on the spliced path TCP and UDP RR ns to host by
 * sockperf too; through the tap and passt, UDP multicast throughput host to
 * guest (ours only: oursOnly).
 */
function protoRows(table: string, proto: "tcp" | "udp", mode: Mode, cols: number[], ips: (4 | 6)[]): RowDef[] {
  const rows: RowDef[] = [];
  const lat = [latencyColumn(mode)];
  const P = proto.toUpperCase();
  for (const dir of ["n2h", "h2n"] as Dir[]) {
    const d = dirLabel(mode, dir);
    const tputCols = mode === "lo" && dir === "h2n" ? lat : cols;
    for (const ip of ips) {
      const base = { table, mode, proto, ip, dir };
      rows.push({ ...base, row: `${P} throughput over IPv${ip}: ${d}`, kind: "tput", unit: "Gbit/s", columns: tputCols });
      if (proto === "tcp") {
        rows.push({ ...base, row: `TCP RR latency over IPv${ip}: ${d}`, kind: "rr", unit: "µs", columns: lat });
        rows.push({ ...base, row: `TCP CRR latency over IPv${ip}: ${d}`, kind: "crr", unit: "µs", columns: lat });
      } else if (dir === "n2h") rows.push({ ...base, row: `UDP RR latency over IPv${ip}: ${d}`, kind: "urr", unit: "µs", columns: lat });
      else if (mode === "tap" || mode === "passt")
        rows.push({ ...base, row: `UDP multicast throughput over IPv${ip}: ${d}`, kind: "mtput", unit: "Gbit/s", columns: cols });
      // sockperf 3.7 (Debian's) speaks IPv4 only
      if (mode === "lo" && dir === "n2h" && ip === 4)
        rows.push({ ...base, row: `${P} RR latency, sockperf ping-pong over IPv4: ${d}`, kind: "spp", unit: "µs", columns: lat });
    }
  }
  return rows;
}

function memoryRows(quick: boolean): RowDef[] {
  const rows: RowDef[] = [];
  for (const mode of MODES) {
    const base = {
      table: "memory",
      mode,
      proto: "tcp" as const,
      ip: 4 as const,
      dir: "n2h" as Dir,
      unit: "MB" as const,
      columns: columnsFor(mode, quick),
    };
    rows.push({ ...base, row: `Idle RSS: ${MODE_LABEL[mode]}`, kind: "rss-idle" });
    rows.push({ ...base, row: `Peak RSS: ${MODE_LABEL[mode]}`, kind: "rss-peak" });
    rows.push({ ...base, row: `Idle anonymous memory: ${MODE_LABEL[mode]}`, kind: "anon-idle" });
    rows.push({ ...base, row: `Peak anonymous memory (right after a run): ${MODE_LABEL[mode]}`, kind: "anon-peak" });
    rows.push({ ...base, row: `Anonymous memory 6 s after the runs: ${MODE_LABEL[mode]}`, kind: "anon-end" });
    rows.push({ ...base, row: `Anonymous memory 40 s after the runs (at rest): ${MODE_LABEL[mode]}`, kind: "anon-rest" });
  }
  return rows;
}

/**
 * Rows cut down to the MTU columns in mtus (bench/run.ts --mtu): each keeps
 * the columns it has among them, rows left with none go. Rows without an
 * MTU (start-up) stay.
 */
export function withColumns(rows: RowDef[], mtus: number[]): RowDef[] {
  return rows
    .map((r) => (r.mode === null ? r : { ...r, columns: r.columns.filter((c) => mtus.includes(c)) }))
    .filter((r) => r.columns.length > 0);
}

export const STARTUP_ROW = "pasta --config-net -- true";
const AS_ONE_FILE = ", ours as one executable (bun run build)";

/** The start-up table's rows (see StartupKind). */
function startupRows(): RowDef[] {
  const base = { table: "startup", mode: null, proto: "tcp" as const, ip: 4 as const, dir: "n2h" as Dir, columns: [0] };
  const rows: RowDef[] = [];
  for (const standalone of [false, true]) {
    const tail = standalone ? AS_ONE_FILE : "";
    rows.push({ ...base, row: STARTUP_ROW + tail, kind: "startup", unit: "ms", standalone });
    rows.push({ ...base, row: `Idle RSS of pasta --config-net${tail}`, kind: "startup-rss", unit: "MB", standalone });
    rows.push({ ...base, row: `Idle anonymous memory of pasta --config-net${tail}`, kind: "startup-anon", unit: "MB", standalone });
  }
  return rows;
}

/** Every row of every table, in report order. Quick: IPv4 only, one column per mode. */
export function allRows(quick: boolean): RowDef[] {
  const ips: (4 | 6)[] = quick ? [4] : [6, 4];
  const rows: RowDef[] = [];
  for (const table of Object.keys(TABLE_TITLES)) {
    const mode = TABLE_MODE[table]!;
    if (table === "startup") rows.push(...startupRows());
    else if (table === "memory") rows.push(...memoryRows(quick));
    else rows.push(...protoRows(table, table.endsWith("tcp") ? "tcp" : "udp", mode!, columnsFor(mode!, quick), ips));
  }
  return rows;
}
