import { expect, test } from "bun:test";
import { Kind } from "../../src/loop/kinds.ts";
import { EPOLLIN, Loop, now } from "../../src/loop/loop.ts";
import { sys } from "../../src/native/ffi.ts";

const QUIET = 100;

/** Run a loop whose eventfd is written every 20 ms during each [from, to) of bursts; returns when the hooks ran and the last event of each burst. */
function runBursts(bursts: [number, number][], total: number): { hooks: number[]; lastEvents: number[] } {
  const loop = new Loop(QUIET);
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
  loop.run();
  sys.shim_close(fd);
  return { hooks, lastEvents };
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
