import { expect, test } from "bun:test";
import { Kind } from "../../src/loop/kinds.ts";
import { EPOLLIN, Loop, now, RESTED, runLoop } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";

const QUIET = 100;
/** Events between two quiets that are a wake-up, not traffic, in these loops: a burst here is 10 to 20 events, a wake-up 1 or 2. */
const WAKE = 5;

/**
 * Run a loop whose eventfd is written every 20 ms during each [from, to) of
 * bursts; returns when the hooks ran, the last event of each burst, and
 * when run() returned RESTED (restMs > 0: Loop.restAfter), running it again each time.
 */
function runBursts(bursts: [number, number][], total: number, restMs = 0): { hooks: number[]; lastEvents: number[]; rests: number[] } {
  const loop = new Loop(QUIET, WAKE);
  if (restMs > 0) loop.restAfter(restMs);
  const rests: number[] = [];
  const fd = sys.shim_eventfd();
  const one = new Uint8Array(8);
  one[0] = 1;
  const sink = new Uint8Array(8);
  const t0 = now();
  const hooks: number[] = [];
  const lastEvents = bursts.map(() => -1);
  loop.on(Kind.UDP, () => {
    sys.shim_read(fd, sink, 8);
    const t = now() - t0;
    const k = bursts.findIndex(([from, to]) => t >= from && t < to + 40);
    if (k >= 0) lastEvents[k] = t;
  });
  loop.add(fd, EPOLLIN, Kind.UDP, 0);
  loop.onQuiet(() => hooks.push(now() - t0));
  loop.every(20, (t) => {
    const at = t - t0;
    if (bursts.some(([from, to]) => at >= from && at < to)) sys.shim_write(fd, one, 8);
    if (at >= total) loop.stop(0);
  });
  while (loop.run() === RESTED) rests.push(now() - t0);
  sys.shim_close(fd);
  return { hooks, lastEvents, rests };
}

test("quiet hooks run once after each burst, and only after its last event", () => {
  const { hooks, lastEvents } = runBursts(
    [
      [0, 400],
      [900, 1300],
    ],
    1800,
  );
  expect(hooks.length).toBe(2);
  expect(hooks[0]!).toBeGreaterThan(lastEvents[0]!);
  expect(hooks[1]!).toBeGreaterThan(lastEvents[1]!);
});

test("a loop that never sees an event runs its quiet hooks once", () => {
  const { hooks } = runBursts([], 600);
  expect(hooks.length).toBe(1);
});

test("a loop rests once per quiet, restMs after its quiet hooks ran, and not while events come", () => {
  const { hooks, lastEvents, rests } = runBursts(
    [
      [0, 300],
      [1000, 1300],
    ],
    2200,
    300,
  );
  expect(hooks.length).toBe(2);
  expect(rests.length).toBe(2);
  expect(rests[0]!).toBeGreaterThanOrEqual(hooks[0]! + 300);
  expect(rests[0]!).toBeLessThan(1000);
  expect(rests[1]!).toBeGreaterThanOrEqual(hooks[1]! + 300);
  expect(rests[1]!).toBeGreaterThan(lastEvents[1]!);
});

test("a wake-up of a few events after the quiet (a neighbour probe) runs the quiet hooks again but does not postpone the rest", () => {
  const { hooks, rests } = runBursts(
    [
      [0, 300],
      [700, 720],
    ],
    2000,
    600,
  );
  expect(hooks.length).toBe(2);
  expect(rests.length).toBe(1);
  expect(rests[0]!).toBeGreaterThanOrEqual(hooks[0]! + 600);
  // counted from the quiet after the wake-up, it would come 600 ms after the second hooks
  expect(rests[0]!).toBeLessThan(hooks[1]! + 600);
});

test("without restAfter a loop never rests", () => {
  expect(runBursts([[0, 200]], 1200).rests.length).toBe(0);
});

test("runLoop runs a loop again after each rest and resolves with its exit status", async () => {
  const loop = new Loop(QUIET);
  loop.restAfter(100);
  let turns = 0;
  const t0 = now();
  loop.every(20, (t) => {
    turns++;
    if (t - t0 >= 1000) loop.stop(7);
  });
  expect(await runLoop(loop)).toBe(7);
  // the ticks went on across the rest(s): about 50 in the second
  expect(turns).toBeGreaterThan(30);
});

test("time(): inside run() the clock reading of the batch's arrival, the same for each of its events; outside run() the clock", () => {
  const loop = new Loop(QUIET);
  const fds = [sys.shim_eventfd(), sys.shim_eventfd()];
  const one = new Uint8Array(8);
  one[0] = 1;
  const sink = new Uint8Array(8);
  const seen: number[] = [];
  let after = 0;
  loop.on(Kind.UDP, (k) => {
    sys.shim_read(fds[k]!, sink, 8);
    seen.push(loop.time());
    // the handler takes a while: time() stays where the batch began
    const until = now() + 5;
    while (now() < until);
    after = now();
    if (seen.length === 2) loop.stop(0);
  });
  for (let k = 0; k < fds.length; k++) loop.add(fds[k]!, EPOLLIN, Kind.UDP, k);
  for (const fd of fds) sys.shim_write(fd, one, 8);
  const before = now();
  loop.run();
  for (const fd of fds) sys.shim_close(fd);
  expect(seen.length).toBe(2);
  expect(seen[1]).toBe(seen[0]!);
  expect(seen[0]!).toBeGreaterThanOrEqual(before);
  expect(after - seen[1]!).toBeGreaterThanOrEqual(10);
  const outside = loop.time();
  expect(outside).toBeGreaterThanOrEqual(after);
});
