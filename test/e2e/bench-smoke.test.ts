/**
 * The bench's smoke test: `bun bench/run.ts --quick` restricted to one row
 * (TCP throughput over IPv4, namespace to host, through the tap) runs end to
 * end in its own test world, and its outputs hold that row for every
 * implementation installed here with a positive number; the HTML report
 * renders in headless Chromium with those numbers. It measures nothing worth
 * reading (one short run): timing is never asserted.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, REPO, describeE2E } from "../world.ts";
import { CHROMIUM_TIMEOUT_MS, checkResultsPage, dumpDom, findChromium } from "../tools/page.ts";

const ROW = "TCP throughput over IPv4: ns to host";
const dir = mkdtempSync(join(tmpdir(), "bench-smoke-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The implementations of the tap table that this machine has. */
function installed(): string[] {
  const names = ["project", "loopback"];
  if (existsSync("/usr/bin/pasta")) names.push("pasta");
  const upstream = process.env.PASTA_UPSTREAM_DIR ?? join(REPO, "..", "shared", "reference", "upstream");
  if (existsSync(join(upstream, "pasta")) && existsSync(join(upstream, "passt"))) names.push("upstream");
  if (Bun.which("slirp4netns")) names.push("slirp4netns");
  return names.sort();
}

describeE2E("bench smoke (quick mode, one row)", () => {
  test(
    "results.json has the row for every installed implementation; the report renders",
    async () => {
      const out = join(dir, "perf");
      const proc = Bun.spawn(
        [BUN, join(REPO, "bench", "run.ts"), "--quick", "--worktree", "--json", "--only", `^pasta-tap-tcp ${ROW}$`, "--out", out],
        {
          cwd: REPO,
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      expect(code, stderr).toBe(0);
      // --json: stdout is the results and nothing else
      const printed = JSON.parse(stdout);
      const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
      expect(printed).toEqual(res);
      expect(res.mode).toBe("quick");
      expect(res.machine.cores).toBeGreaterThan(0);
      const cells = res.rows.filter((c: any) => c.table === "pasta-tap-tcp" && c.row === ROW);
      expect(cells.map((c: any) => c.impl).sort()).toEqual(installed());
      for (const c of cells) {
        expect(c.errors, c.impl).toEqual([]);
        expect(c.median, c.impl).toBeGreaterThan(0);
        expect(c.runs, c.impl).toBe(1);
      }
      expect(readFileSync(join(out, "RESULTS.md"), "utf8")).toContain(ROW);

      const bin = findChromium();
      if (!bin)
        throw new Error("Chromium's headless shell is not installed: install the Debian package chromium-headless-shell (.ci/run does)");
      const dom = await dumpDom(bin, join(out, "index.html"), join(dir, "profile"));
      await checkResultsPage(dom, res);
    },
    240_000 + CHROMIUM_TIMEOUT_MS,
  );
});
