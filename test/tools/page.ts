/**
 * Reading the bench's HTML report back, for tests: load it in headless
 * Chromium (Debian's chromium-headless-shell) and take the DOM it built,
 * then find every printed cell by its data-* attributes (bench/html.ts
 * documents them) and compare with the results the page was made from.
 */
import { expect } from "bun:test";
import { existsSync } from "node:fs";
import { formatValue } from "../../bench/html.ts";
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

/** The cells (elements with data-impl) and charts (svg with data-table) of a page. */
export async function readPage(html: string): Promise<{ cells: Printed[]; charts: string[] }> {
  const cells: Printed[] = [];
  const charts: string[] = [];
  await new HTMLRewriter()
    .on("[data-impl]", {
      element(el) {
        const attrs: Record<string, string> = {};
        for (const [k, v] of el.attributes) if (k.startsWith("data-")) attrs[k] = decode(v);
        cells.push({ attrs, text: "" });
      },
      text(t) {
        cells[cells.length - 1]!.text += decode(t.text);
      },
    })
    .on("svg[data-table]", {
      element(el) {
        charts.push(decode(el.getAttribute("data-table") ?? ""));
      },
    })
    .transform(new Response(html))
    .text();
  return { cells, charts };
}

/** A results object's cell, as much of it as the page shows. */
type ResultCell = Pick<Cell, "table" | "row" | "column" | "impl" | "unit" | "median" | "skipped">;

/** Every median of results printed once with its attributes and value, every null one marked, one chart per table. */
export async function checkResultsPage(html: string, results: { rows: ResultCell[] }): Promise<void> {
  const { cells, charts } = await readPage(html);
  const tables = [...new Set(results.rows.map((r) => r.table))];
  expect(charts.sort()).toEqual(tables.sort());
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
