import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderHtml } from "../../bench/html.ts";
import type { Cell } from "../../bench/report.ts";
import { CHROMIUM_PATHS, CHROMIUM_TIMEOUT_MS, checkResultsPage, dumpDom, findChromium, readPage } from "../tools/page.ts";

const dir = mkdtempSync(join(tmpdir(), "bench-html-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The longest a Chromium run may take before its process group is killed. */

const TRICKY_ROW = `RR <latency> & "quotes" 'too'`;

type TestCell = Omit<Cell, "cpu">;

/** A cell of results.json; runs > 1 get min and max around the median. */
function cell(
  table: string,
  row: string,
  column: number,
  impl: string,
  unit: string,
  median: number | null,
  runs = 3,
  extra: Partial<TestCell> = {},
): TestCell {
  const min = median === null ? null : median * 0.9;
  const max = median === null ? null : median * 1.1;
  const values = median === null ? [] : runs > 1 ? [min!, median, max!] : [median];
  return {
    table,
    row,
    column,
    impl,
    unit,
    median,
    min: runs > 1 ? min : median,
    max: runs > 1 ? max : median,
    runs,
    values,
    errors: [],
    ...extra,
  };
}

/** Two tables, four implementations, a failed and a skipped cell, column-0 rows, a row name that needs escaping. */
const RESULTS = {
  date: "2026-11-29T21:55:32.155Z",
  mode: "quick",
  machine: { cpu: "Test CPU <x>", cores: 2, kernel: "6.1.0", loadavg: [1, 1, 1], loadavgBefore: [0.5, 0.5, 0.5], mhz: 2400 },
  implementations: {
    project: { version: "0.1.0 (abc), bun 1.4.5" },
    pasta: { version: "passt 2023" },
    upstream: { version: "pasta 2026" },
    slirp4netns: { version: "slirp4netns 1.2.0" },
  },
  settings: { runs: 3, columns: [1500, 65520] },
  rows: [
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "project", "Gbit/s", 3.529),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "pasta", "Gbit/s", 0.003),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "slirp4netns", "Gbit/s", 0.51),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "project", "Gbit/s", 11.6),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "pasta", "Gbit/s", 12.25),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "upstream", "Gbit/s", 11.9),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 1500, "upstream", "Gbit/s", null, 3, { errors: ["iperf3 stalled"] }),
    cell("pasta-tap-tcp", "TCP throughput over IPv4: ns to host", 65520, "slirp4netns", "Gbit/s", null, 3, { skipped: "no IPv4 forward" }),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "project", "µs", 27.4),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "pasta", "µs", 131.2),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "upstream", "µs", 28),
    cell("pasta-tap-tcp", TRICKY_ROW, 65520, "slirp4netns", "µs", null, 3, { errors: ["rr exited 2"] }),
    cell("startup", "Time to a connected namespace", 0, "project", "ms", 182.5, 1),
    cell("startup", "Time to a connected namespace", 0, "pasta", "ms", 4.1, 1),
    cell("startup", "Time to a connected namespace", 0, "slirp4netns", "ms", 12, 1),
  ],
  skipped: ["slirp4netns: IPv6 host-to-ns rows <refused>"],
  notes: ["slirp4netns (MTU 65520): rr exited 2"],
};

/** Check a page against RESULTS, and that it prints no other cell. */
async function checkPage(html: string): Promise<void> {
  await checkResultsPage(html, RESULTS);
  const { cells } = await readPage(html);
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

  test("the summary and the grids: ours ÷ the best reference of each cell, and the counts", async () => {
    const { grid, summary } = await readPage(renderHtml(RESULTS));
    const line = (t: string) => summary.find((x) => x.attrs["data-summary"] === t)!.attrs;
    // 1500: 3.529 against Debian's 0.003 (upstream failed); 65520: 11.6 against Debian's 12.25 (upstream 11.9);
    // RR: 27.4 µs against upstream's 28 (Debian 131.2): better, worse, parity
    expect(line("pasta-tap-tcp")).toMatchObject({ "data-better": "1", "data-parity": "1", "data-worse": "1" });
    expect(line("startup")).toMatchObject({ "data-better": "0", "data-parity": "0", "data-worse": "1" });
    const at = (row: string, column: number) => grid.find((g) => g.attrs["data-row"] === row && g.attrs["data-column"] === String(column))!;
    expect(at("TCP throughput over IPv4: ns to host", 65520).attrs).toMatchObject({ "data-ratio": "0.947", "data-verdict": "worse" });
    expect(at(TRICKY_ROW, 65520).attrs).toMatchObject({ "data-ratio": "0.979", "data-verdict": "parity" });
    expect(at(TRICKY_ROW, 65520).text).toBe("×0.98");
  });

  test(
    "headless Chromium renders every median with its data-* attributes, the grids and the summary's numbers",
    async () => {
      const bin = findChromium();
      if (!bin) {
        throw new Error(
          `Chromium's headless shell is not installed (not in PATH, nor at ${CHROMIUM_PATHS.join(", ")}): install the Debian package chromium-headless-shell (.ci/run does)`,
        );
      }
      const path = join(dir, "report.html");
      writeFileSync(path, renderHtml(RESULTS));
      const dom = await dumpDom(bin, path, join(dir, "profile"));
      expect(dom).toContain("</svg>");
      await checkPage(dom);
    },
    CHROMIUM_TIMEOUT_MS + 30_000,
  );
});
