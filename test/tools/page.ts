/**
 * Reading the bench's HTML report back, for tests: load it in headless
 * Chromium (Debian's chromium-headless-shell) and take the DOM it built,
 * then find every printed cell by its data-* attributes (bench/html.ts
 * documents them) and compare with the results the page was made from.
 */
import { expect } from "bun:test";
import { existsSync } from "node:fs";
import { formatRatio, formatValue } from "../../bench/html.ts";
import { LOWER_IS_BETTER, refImpls } from "../../bench/plan.ts";
import type { Cell } from "../../bench/report.ts";

export const CHROMIUM_TIMEOUT_MS = 60_000;
export const CHROMIUM_PATHS = [
  "/usr/bin/chromium-headless-shell",
  "/usr/lib/chromium/headless_shell",
  "/usr/lib/chromium/chromium-headless-shell",
];

/** Where Chromium's headless shell is, or null. */
export function findChromium(): string | null {
  return Bun.which("chromium-headless-shell") ?? CHROMIUM_PATHS.find((p) => existsSync(p)) ?? null;
}

/** Kill a process group, if anything is left of it. */
function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * Load a file in headless Chromium and return the DOM it built. Chromium runs
 * in a session of its own (setsid execs in place: a child of Bun is not a
 * group leader), so its renderer and helper processes share its process
 * group, which is killed when it is done or after CHROMIUM_TIMEOUT_MS.
 */
export async function dumpDom(bin: string, path: string, profileDir: string): Promise<string> {
  const args = ["--headless", "--no-sandbox", "--disable-gpu", `--user-data-dir=${profileDir}`, "--dump-dom", `file://${path}`];
  const proc = Bun.spawn(["setsid", bin, ...args], { stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(proc.pid);
  }, CHROMIUM_TIMEOUT_MS);
  try {
    const [dom, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (timedOut) throw new Error(`${bin} did not finish within ${CHROMIUM_TIMEOUT_MS / 1000} s`);
    if (code !== 0) throw new Error(`${bin} exited ${code}: ${err.slice(-2000)}`);
    return dom;
  } finally {
    clearTimeout(timer);
    killGroup(proc.pid);
  }
}

/** Undo the entity escapes a serialised DOM uses in attribute values and text. */
function decode(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&nbsp;/g, "\u00a0")
    .replace(/&amp;/g, "&");
}

export interface Printed {
  attrs: Record<string, string>;
  text: string;
}

/** Elements matching selector: their data-* attributes and text. */
function collect(rw: HTMLRewriter, selector: string, into: Printed[]): HTMLRewriter {
  return rw.on(selector, {
    element(el) {
      const attrs: Record<string, string> = {};
      for (const [k, v] of el.attributes) if (k.startsWith("data-")) attrs[k] = decode(v);
      into.push({ attrs, text: "" });
    },
    text(t) {
      into[into.length - 1]!.text += decode(t.text);
    },
  });
}

/**
 * What a page prints: the cells (elements with data-impl), the tables
 * (sections with data-table), the grid cells (data-grid) and the summary
 * lines (data-summary).
 */
export async function readPage(html: string): Promise<{ cells: Printed[]; tables: string[]; grid: Printed[]; summary: Printed[] }> {
  const cells: Printed[] = [];
  const grid: Printed[] = [];
  const summary: Printed[] = [];
  const tables: string[] = [];
  let rw = new HTMLRewriter().on("section[data-table]", {
    element(el) {
      tables.push(decode(el.getAttribute("data-table") ?? ""));
    },
  });
  rw = collect(collect(collect(rw, "[data-impl]", cells), "[data-grid]", grid), "[data-summary]", summary);
  await rw.transform(new Response(html)).text();
  return { cells, tables, grid, summary };
}

/** What the grid of a table should say, worked out here from the results alone: ours ÷ the best reference, and the verdict (5 % parity). */
export function expectedGrid(rows: ResultCell[], table: string): { row: string; column: number; ratio: number | null; verdict: string }[] {
  const inTable = rows.filter((r) => r.table === table);
  const keys = [...new Map(inTable.map((r) => [`${r.row}\u0000${r.column}`, r])).values()];
  return keys.map(({ row, column, unit }) => {
    const median = (impl: string) => inTable.find((r) => r.row === row && r.column === column && r.impl === impl)?.median ?? null;
    const lower = LOWER_IS_BETTER.has(unit);
    const refs = refImpls(table, row)
      .map(median)
      .filter((m): m is number => m !== null && m > 0);
    const ours = median("project");
    if (ours === null || !refs.length) return { row, column, ratio: null, verdict: "none" };
    const best = lower ? Math.min(...refs) : Math.max(...refs);
    const ratio = Math.round((ours / best) * 1000) / 1000;
    const goodness = lower ? best / ours : ours / best;
    return { row, column, ratio, verdict: goodness > 1.05 ? "better" : goodness < 1 / 1.05 ? "worse" : "parity" };
  });
}

/** A results object's cell, as much of it as the page shows. */
type ResultCell = Pick<Cell, "table" | "row" | "column" | "impl" | "unit" | "median" | "skipped">;

/** Every median of results printed once with its attributes and value, every null one marked, one chart per table. */
export async function checkResultsPage(html: string, results: { rows: ResultCell[] }): Promise<void> {
  const { cells, tables: sections, grid, summary } = await readPage(html);
  const tables = [...new Set(results.rows.map((r) => r.table))];
  expect(sections.sort()).toEqual([...tables].sort());
  // the grids and the summary, against what the results say
  const all = tables.flatMap((t) => expectedGrid(results.rows, t));
  const total = summary.filter((x) => x.attrs["data-summary"] === "*");
  expect(total.length, "summary of all tables").toBe(1);
  for (const v of ["better", "parity", "worse"]) {
    const n = all.filter((w) => w.verdict === v).length;
    expect(total[0]!.attrs[`data-${v}`], `summary of all tables: ${v}`).toBe(String(n));
    expect(total[0]!.text, `summary of all tables: ${v}`).toContain(`${n} ${v === "parity" ? "at parity" : v}`);
  }
  for (const t of tables) {
    const want = expectedGrid(results.rows, t);
    const got = grid.filter((g) => g.attrs["data-grid"] === t);
    expect(got.length, t).toBe(want.length);
    for (const w of want) {
      const what = `grid ${t} / ${w.row} / ${w.column}`;
      const g = got.find((x) => x.attrs["data-row"] === w.row && x.attrs["data-column"] === String(w.column));
      expect(g?.attrs["data-verdict"], what).toBe(w.verdict);
      if (w.ratio === null) continue;
      expect(Number(g!.attrs["data-ratio"]), what).toBe(w.ratio);
      expect(g!.text, what).toBe(`×${formatRatio(w.ratio)}`);
    }
    const line = summary.filter((x) => x.attrs["data-summary"] === t);
    expect(line.length, `summary of ${t}`).toBe(1);
    for (const v of ["better", "parity", "worse"]) {
      const n = want.filter((w) => w.verdict === v).length;
      expect(line[0]!.attrs[`data-${v}`], `summary of ${t}: ${v}`).toBe(String(n));
      expect(line[0]!.text, `summary of ${t}: ${v}`).toContain(`${n} ${v === "parity" ? "at parity" : v}`);
    }
  }
  for (const r of results.rows) {
    const found = cells.filter(
      (c) =>
        c.attrs["data-table"] === r.table &&
        c.attrs["data-row"] === r.row &&
        c.attrs["data-column"] === String(r.column) &&
        c.attrs["data-impl"] === r.impl,
    );
    const what = `${r.table} / ${r.row} / ${r.column} / ${r.impl}`;
    expect(found.length, what).toBe(1);
    if (r.median === null) {
      expect(found[0]!.attrs["data-value"], what).toBeUndefined();
      expect(found[0]!.attrs["data-missing"], what).toBe(r.skipped ? "skipped" : "failed");
    } else {
      expect(found[0]!.attrs["data-value"], what).toBe(String(r.median));
      expect(Number(found[0]!.attrs["data-value"]), what).toBe(r.median);
      expect(found[0]!.text, what).toBe(formatValue(r.median, r.unit));
    }
  }
}
