/**
 * A loop at rest gives JavaScriptCore's compiled code and its data back
 * (src/loop/loop.ts, runLoop): test/tools/rest-child.ts compiles and runs a
 * few hundred hot functions in a loop's ticks, then reads its anonymous
 * memory before and after the rest that follows. Bun.shrink() only acts
 * once no JavaScript runs, so without runLoop's turn of the runtime (or
 * without the shrink) nothing comes back: measured 11.9 -> 12.8 MB and
 * 11.7 -> 12.6 MB there, against 11.5 -> 6.3 MB with both.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

/** What the rest must give back, at least (about 5 MB measured). */
const MIN_DROP = 2 << 20;

test("runLoop at rest: the compiled code and its data go back, the anonymous memory falls", () => {
  const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "tools", "rest-child.ts")], { stderr: "pipe" });
  const out = r.stdout.toString();
  expect(r.exitCode, out + r.stderr.toString()).toBe(0);
  const before = Number(/^before (\d+)$/m.exec(out)?.[1]);
  const after = Number(/^after (\d+)$/m.exec(out)?.[1]);
  console.log(`RssAnon ${(before / 2 ** 20).toFixed(1)} MB before the rest, ${(after / 2 ** 20).toFixed(1)} MB after`);
  expect(before).toBeGreaterThan(0);
  expect(before - after).toBeGreaterThanOrEqual(MIN_DROP);
}, 30_000);
