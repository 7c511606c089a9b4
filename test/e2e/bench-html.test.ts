import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatValue, renderHtml } from "../../bench/html.ts";

const dir = mkdtempSync(join(tmpdir(), "bench-html-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The longest a Chromium run may take before its process group is killed. */
const CHROMIUM_TIMEOUT_MS = 60_000;
const CHROMIUM_PATHS = ["/usr/bin/chromium-headless-shell", "/usr/lib/chromium/headless_shell", "/usr/lib/chromium/chromium-headless-shell"];

const TRICKY_ROW = `RR <latency> & "quotes" 'too'`;

interface TestCell {
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
  skipped?: string;
}

/** A cell of results.json; runs > 1 get min and max around the median. */
function cell(table: string, row: string, column: number, impl: string, unit: string, median: number | null, runs = 3, extra: Partial<TestCell> = {}): TestCell {
  const min = median === null ? null : median * 0.9;
  const max = median === null ? null : median * 1.1;
  const values = median === null ? [] : runs > 1 ? [min!, median, max!] : [median];
  return { table, row, column, impl, unit, median, min: runs > 1 ? min : median, max: runs > 1 ? max : median, runs, values, errors: [], ...extra };
}

/** Two tables, three implementations, a failed and a skipped cell, column-0 rows, a row name that needs escaping. */
const RESULTS = {
  date: "2026-11-29T21:55:32.155Z",
  mode: "quick",
  machine: { cpu: "Test CPU <x>", cores: 2, kernel: "6.1.0", loadavg: [1, 1, 1], loadavgBefore: [0.5, 0.5, 0.5], mhz: 2400 },
  implementations: { project: { version: "0.1.0 (abc), bun 1.4.5" }, pasta: { version: "passt 2023" }, slirp4netns: { version: "slirp4netns 1.2.0" } },
  settings: { runs: 3, columns: [1500, 65520] },
  rows: [
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "project", "Gbit/s", 3.529),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "pasta", "Gbit/s", 0.003),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "slirp4netns", "Gbit/s", 0.51),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "project", "Gbit/s", 11.6),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "pasta", "Gbit/s", 12.25),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "slirp4netns", "Gbit/s", null, 3, { skipped: "no IPv4 forward" }),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "project", "µs", 27.4),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "pasta", "µs", 131.2),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "slirp4netns", "µs", null, 3, { errors: ["rr exited 2"] }),
    cell("startup", "Time to a connected namespace", 0, "project", "ms", 182.5, 1),
    cell("startup", "Time to a connected namespace", 0, "pasta", "ms", 4.1, 1),
    cell("startup", "Time to a connected namespace", 0, "slirp4netns", "ms", 12, 1),
  ],
  skipped: ["slirp4netns: IPv6 host-to-ns rows <refused>"],
  notes: ["slirp4netns (MTU 65520): rr exited 2"],
};

/** Where Chromium's headless shell is, or null. */
function findChromium(): string | null {
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
async function dumpDom(bin: string, path: string): Promise<string> {
  const args = ["--headless", "--no-sandbox", "--disable-gpu", `--user-data-dir=${join(dir, "profile")}`, "--dump-dom", `file://${path}`];
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
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&nbsp;/g, "\u00a0").replace(/&amp;/g, "&");
}

interface Printed {
  attrs: Record<string, string>;
  text: string;
}

/** The cells (elements with data-impl) and charts (svg with data-table) of a page. */
async function readPage(html: string): Promise<{ cells: Printed[]; charts: string[] }> {
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

/** Check a page against RESULTS: every median printed once with its attributes, every null one marked, one chart per table. */
async function checkPage(html: string): Promise<void> {
  const { cells, charts } = await readPage(html);
  const tables = [...new Set(RESULTS.rows.map((r) => r.table))];
  expect(charts.sort()).toEqual(tables.sort());
  for (const r of RESULTS.rows) {
    const found = cells.filter(
      (c) => c.attrs["data-table"] === r.table && c.attrs["data-row"] === r.row && c.attrs["data-column"] === String(r.column) && c.attrs["data-impl"] === r.impl,
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
  expect(cells.length).toBe(RESULTS.rows.length);
}

describe("bench HTML report", () => {
  test("self-contained: no scripts, stylesheets or addresses from elsewhere; strings escaped", async () => {
    const html = renderHtml(RESULTS);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link/i);
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/url\(/i);
    expect(html).not.toContain("<latency>");
    expect(html).not.toContain("<x>");
    expect(html).not.toContain("<refused>");
    await checkPage(html);
  });

  test("headless Chromium renders every median with its data-* attributes, one chart per table", async () => {
    const bin = findChromium();
    if (!bin) {
      throw new Error(`Chromium's headless shell is not installed (not in PATH, nor at ${CHROMIUM_PATHS.join(", ")}): install the Debian package chromium-headless-shell (.ci/run does)`);
    }
    const path = join(dir, "report.html");
    writeFileSync(path, renderHtml(RESULTS));
    const dom = await dumpDom(bin, path);
    expect(dom).toContain("</svg>");
    await checkPage(dom);
  }, CHROMIUM_TIMEOUT_MS + 30_000);
});
