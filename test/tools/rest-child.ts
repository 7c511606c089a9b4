/**
 * Child of test/unit/loop-rest.test.ts: a Loop run by runLoop, resting
 * REST_AFTER ms after its quiet hooks ran. Its first ticks compile and run
 * a few hundred distinct hot functions (JavaScriptCore keeps their compiled
 * code and its data, as it keeps a daemon's data path after a burst); then
 * it prints its anonymous memory once before the rest and once after it
 * ("before N", "after N", bytes), and exits 0.
 */
import { Loop, now, runLoop } from "../../src/loop/loop.ts";

const QUIET = 200;
/** Past WORK_MS: the rest comes after the work. */
const REST_AFTER = 1500;
const WORK_MS = 1200;
const FUNCTIONS = 400;

function rssAnon(): number {
  const m = /RssAnon:\s+(\d+) kB/.exec(require("node:fs").readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : -1;
}

const fns: ((a: Int32Array) => number)[] = [];
for (let k = 0; k < FUNCTIONS; k++)
  fns.push(
    new Function(
      "a",
      `let s = ${k}; for (let i = 0; i < a.length; i++) { s = (s * 31 + a[i] + ${k}) | 0; if (s & ${k + 1}) s ^= i; else s += a[(i * ${k}) & 1023]; } return s;`,
    ) as (a: Int32Array) => number,
  );
const data = new Int32Array(1024).map((_, i) => i * 7);

const loop = new Loop(QUIET);
loop.restAfter(REST_AFTER);
let sum = 0;
let before = -1;
const t0 = now();
// no event ever comes: the loop is quiet from its first check (QUIET to 2 * QUIET), and rests REST_AFTER later, once
loop.every(20, (t) => {
  const at = t - t0;
  if (at < WORK_MS) for (let r = 0; r < 20; r++) for (const f of fns) sum += f(data);
  else if (before < 0) before = rssAnon();
  if (at > 2 * QUIET + REST_AFTER + 600) loop.stop(0);
});
const code = await runLoop(loop);
console.log(`before ${before}`);
console.log(`after ${rssAnon()}`);
console.log(`sum ${sum}`);
process.exit(code);
