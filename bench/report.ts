/**
 * The bench's results and their Markdown report (perf/RESULTS.md): the
 * original's tables, each cell "ours / reference (×ratio)", then every
 * implementation's median [min–max], CPU time per gigabyte, skipped rows and
 * the notes of the run. Everything comes from the results object that
 * bench/run.ts writes to results.json, so `bun run bench --render` can
 * rebuild the report from a saved run.
 */
import { LOWER_IS_BETTER, TABLE_TITLES, allRows, bestReference, oursOnly, refImpls, type RowDef } from "./plan.ts";

/** One cell of a table for one implementation: what results.json holds per row. */
export interface Cell {
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
  /** the daemon's CPU time per run: seconds per gigabyte received (throughput), µs per transaction (latency); and their median */
  cpu: number[];
  cpuMedian?: number | null;
}

export function median(v: number[]): number {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function roundFor(x: number, unit: string): number {
  return unit === "µs" || unit === "ms" || unit === "MB" ? Math.round(x * 10) / 10 : Math.round(x * 1000) / 1000;
}

export function fmt(x: number | null | undefined, unit: string): string {
  if (x === null || x === undefined) return "–";
  if (unit === "µs" || unit === "ms" || unit === "MB") return x >= 100 ? x.toFixed(0) : x.toFixed(1);
  return x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

const LABELS: Record<string, string> = {
  project: "ours",
  pasta: "reference pasta, Debian",
  passt: "reference passt, Debian",
  upstream: "reference pasta and passt, upstream",
};

/**
 * A table cell: "ours / Debian's / upstream's (×ratio)", the ratio ours ÷
 * the best of the two references (a missing reference prints "–").
 */
function versus(cells: Cell[], r: RowDef, c: number): string {
  const get = (i: string) => cells.find((x) => x.table === r.table && x.row === r.row && x.column === c && x.impl === i);
  const refs = refImpls(r.table, r.row).map(get);
  const o = get("project");
  if (!o && refs.every((x) => !x)) return "";
  const f = (x?: Cell) => (x?.median == null ? (x?.errors.length ? "fail" : "–") : fmt(x.median, r.unit));
  if (oursOnly(r.row)) return `${f(o)} (ours only: no reference can)`;
  const best = bestReference(
    refs.filter((x): x is Cell => !!x),
    r.unit,
  );
  return `${f(o)} / ${refs.map(f).join(" / ")}${ratio(o?.median, best?.median)}`;
}

function ratio(o: number | null | undefined, p: number | null | undefined): string {
  if (!o || !p) return "";
  const q = o / p;
  return ` (×${q >= 100 ? Math.round(q) : q >= 10 ? q.toFixed(1) : q.toFixed(2)})`;
}

function colLabel(table: string, c: number): string {
  if (c === 0) return "value";
  return table.includes("-lo-") ? `lo MTU ${c}` : `MTU ${c}`;
}

/** Rows present in the results, in the plan's order. */
function presentRows(cells: Cell[]): RowDef[] {
  const present = new Set(cells.map((c) => `${c.table}\u0000${c.row}`));
  return allRows(false).filter((r) => present.has(`${r.table}\u0000${r.row}`));
}

function header(res: any): string[] {
  const m = res.machine;
  const st = res.settings ?? {};
  const L: string[] = [`# Performance: ours vs the reference`, ""];
  L.push(
    `Measured ${res.date} on ${m.cpu}${m.mhz ? ` (${m.mhz} MHz)` : ""}, ${m.cores} cores, Linux ${m.kernel}, by \`bun run bench${res.mode === "quick" ? " --quick" : ""}\` (bench/run.ts). ` +
      `Load average (1, 5, 15 min) ${m.loadavgBefore?.join(" ")} before and ${m.loadavg?.join(" ")} after: the machine is shared, read small differences as noise.`,
    "",
  );
  L.push(`Implementations:`, "");
  for (const [name, v] of Object.entries<any>(res.implementations))
    L.push(`- **${name}**${LABELS[name] ? ` (${LABELS[name]})` : ""}: ${v.version}`);
  L.push("");
  L.push(
    `Each cell is the median of ${st.runs} run${st.runs > 1 ? "s" : ""} (implementations interleaved: A B C A B C…). ` +
      `Throughput: iperf3, receiver side, ${st.iperf3Seconds} s after ${st.iperf3Omit} s omitted; TCP with 2 streams and \`-w\` 512k / 1M / 8M by MTU through the tap, \`-w 4M -l 1M\` on the spliced path; ` +
      `UDP with 4 streams offered 3G / 3G / 10G / 15G each by MTU, datagrams that fill one packet at the column's MTU. ` +
      `UDP multicast (ours only): iperf2 (iperf3 has no multicast), one stream from the upstream namespace to a group the guest's server joined, offered 4 × that rate, bytes received over the sending time. ` +
      `Latency: bench/rr.c, one flow of 1-byte requests and responses for ${st.rrSeconds} s (CRR: a new connection for each, the server closing first; UDP RR: one socket), ` +
      `10^6 / transactions per second in µs, at the largest MTU; on the spliced path also sockperf ping-pong (14-byte messages, the median round trip). Latency rows run on one CPU (client, server, daemon and relay guest pinned with taskset: left to the scheduler, the same exchange comes out in two populations, on one core or across two). Start-up: hyperfine, ${st.startupRuns ?? "?"} runs. Memory: the daemon's VmRSS a moment after start (idle) and VmHWM before it stops (peak), and its RssAnon (anonymous memory: what one more instance costs, file pages such as Bun's executable being shared) a moment after start, at its largest right after a run (peak: the kernel keeps no high-water mark of it; ours gives a burst's buffers back 2-4 s after the traffic), 6 s after the column's last run (by then ours has given those buffers back), and 40 s after it (ours rests 30 s after the traffic stops: the runtime gives its compiled code back), at each MTU.`,
    "",
  );
  L.push(
    `Set-up: ns to host through the tap: the client in the namespace connects to the gateway address (192.0.2.1, fe80::1%eth0), mapped to the host's loopback where the server runs. ` +
      `host to ns through the tap: the client in a separate "upstream" namespace behind a veth connects to the host's address (192.0.2.2, 2001:db8::2), forwarded by \`-t\`/\`-u\` into the namespace (a non-loopback source: the tap path). ` +
      `Spliced: 127.0.0.1 / ::1 on both sides, \`-t -u\` and \`-T -U\` (upstream also \`--host-lo-to-ns-lo\`: without it, since 2024, it delivers host-loopback connections to the namespace's address instead of its loopback); columns are the MTU of the namespace's loopback. ` +
      `passt: a relay guest (test/tools/relay.ts: a tap in a namespace relayed to passt's socket), configured with the addresses passt hands out. ` +
      `slirp4netns: its own addressing (10.0.2.2, fd00::2), ports through its API. loopback: client and server on one loopback at the column's MTU, the ceiling.`,
    "",
  );
  L.push(
    `The ratio is ours ÷ the best reference in that cell (Debian's or upstream's): above 1 is better for throughput, below 1 is better for latency, time and memory; ` +
      `a huge ratio means the other side stalled (see min–max below), "fail" that no run finished (see the notes at the end).`,
    "",
  );
  return L;
}

function table(table: string, rows: RowDef[], cells: Cell[], impls: string[]): string[] {
  const get = (r: string, c: number, i: string) => cells.find((x) => x.table === table && x.row === r && x.column === c && x.impl === i);
  const trows = rows.filter((r) => r.table === table);
  const cols = [...new Set(cells.filter((c) => c.table === table).map((c) => c.column))].sort((x, y) => x - y);
  const L: string[] = [`## ${TABLE_TITLES[table] ?? table} (\`${table}\`)`, ""];
  const refNames = trows[0] ? refImpls(table, trows[0].row).join(" / ") : "references";
  L.push(
    `ours / ${refNames} (×ours ÷ the best reference); ${LOWER_IS_BETTER.has(trows[0]?.unit ?? "") ? "lower" : "higher"} is better`,
    "",
  );
  L.push(`| | ${cols.map((c) => colLabel(table, c)).join(" | ")} |`, `| --- | ${cols.map(() => "---").join(" | ")} |`);
  for (const r of trows) L.push(`| ${r.row} (${r.unit}) | ${cols.map((c) => versus(cells, r, c)).join(" | ")} |`);
  const only = [...new Set(trows.map((r) => oursOnly(r.row)).filter((why) => why !== null))];
  if (only.length) L.push("", ...only.map((why) => `Multicast rows: ${why}.`));
  L.push("", `All implementations: median [min–max]`, "");
  const names = impls.filter((n) => cells.some((c) => c.table === table && c.impl === n));
  L.push(`| | ${table === "startup" ? "" : "MTU "}| ${names.join(" | ")} |`, `| --- | --- | ${names.map(() => "---").join(" | ")} |`);
  for (const r of trows) {
    for (const c of cols) {
      const vals = names.map((n) => {
        const x = get(r.row, c, n);
        if (!x) return "";
        if (x.median === null) return x.errors.length ? "fail" : "–";
        return x.runs > 1 ? `${fmt(x.median, r.unit)} [${fmt(x.min, r.unit)}–${fmt(x.max, r.unit)}]` : fmt(x.median, r.unit);
      });
      if (vals.every((v) => !v)) continue;
      L.push(`| ${r.row} (${r.unit}) | ${c || ""} | ${vals.join(" | ")} |`);
    }
  }
  L.push("");
  const cpuNames = names.filter((n) => cells.some((c) => c.table === table && c.impl === n && typeof c.cpuMedian === "number"));
  const cpuRows = trows.filter((r) => r.unit === "Gbit/s" || r.unit === "µs");
  if (cpuRows.length && cpuNames.length) {
    L.push(`The daemon's CPU time: seconds per GB received (throughput rows), µs per transaction (latency rows); median`, "");
    L.push(`| | MTU | ${cpuNames.join(" | ")} |`, `| --- | --- | ${cpuNames.map(() => "---").join(" | ")} |`);
    for (const r of cpuRows) {
      for (const c of r.columns) {
        const vals = cpuNames.map((n) => {
          const v = get(r.row, c, n)?.cpuMedian;
          return typeof v === "number" ? (r.unit === "µs" ? v.toFixed(1) : v.toFixed(2)) : "";
        });
        if (vals.some(Boolean)) L.push(`| ${r.row} | ${c} | ${vals.join(" | ")} |`);
      }
    }
    L.push("");
  }
  return L;
}

/** RESULTS.md from a results object (as written to results.json). */
export function markdown(res: any): string {
  const cells: Cell[] = res.rows;
  const rows = presentRows(cells);
  const impls = Object.keys(res.implementations);
  const L = header(res);
  for (const t of [...new Set(rows.map((r) => r.table))]) L.push(...table(t, rows, cells, impls));
  if (res.skipped?.length) {
    L.push(`## Skipped`, "");
    for (const s of res.skipped) L.push(`- ${s}`);
    L.push("");
  }
  if (res.notes?.length) {
    L.push(`## Notes from this run (errors, stalls, exits)`, "");
    for (const n of res.notes) L.push(`- ${n.replace(/\n/g, " ")}`);
    L.push("");
  }
  return L.join("\n");
}

/**
 * The headline table for the README: every IPv4 row of each table (the IPv6
 * ones are in RESULTS.md), ours / reference (×ratio), at the smallest and the
 * largest MTU column, then start-up and memory.
 */
export function headline(res: any): string {
  const cells: Cell[] = res.rows;
  const rows = presentRows(cells).filter((r) => r.ip === 4 || r.table === "startup");
  const L = [`| table: row | small MTU | large MTU |`, `| --- | --- | --- |`];
  for (const r of rows) {
    const cols = [...new Set(cells.filter((x) => x.table === r.table && x.row === r.row).map((x) => x.column))].sort((x, y) => x - y);
    const show = (c: number | undefined) => {
      if (c === undefined) return "";
      const v = versus(cells, r, c);
      return v && c ? `${v} @${c}` : v;
    };
    const small = cols.length > 1 ? show(cols[0]) : "";
    L.push(`| ${r.table}: ${r.row} (${r.unit}) | ${small} | ${show(cols.at(-1))} |`);
  }
  return L.join("\n");
}

/** Marks around the README's headline table, which writeReports keeps current. */
export const README_START = "<!-- bench:headline -->";
export const README_END = "<!-- /bench:headline -->";

/** text with the part between the marks replaced by the headline of res (text unchanged without the marks). */
export function withHeadline(text: string, res: any): string {
  const a = text.indexOf(README_START);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) return text;
  const m = res.machine;
  const intro =
    `Measured ${res.date.slice(0, 10)} by \`bun run bench\` on ${m.cpu}, ${m.cores} cores (${res.settings.runs} runs per cell, median). Each cell: ours / Debian's pasta or passt (2023) / upstream's (July 2026) (×ours ÷ the better reference; above 1 is better for throughput, below 1 for latency, time and memory).` +
    (res.implementations?.upstream ? "" : " Upstream was not measured in this run: its column reads –.");
  return text.slice(0, a + README_START.length) + "\n" + intro + "\n\n" + headline(res) + "\n" + text.slice(b);
}
