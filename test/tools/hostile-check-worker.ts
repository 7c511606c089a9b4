#!/usr/bin/env bun
/**
 * The body of test/unit/hostile-frames.test.ts, run inside an empty network
 * namespace (the flows these frames open meet no route): FRAMES frames of
 * test/tools/hostile-frames.ts, seed SEED, through a real Dispatcher with a
 * sink that discards, the loop turned every 64 frames as a tap batch would.
 *
 *   bun test/tools/hostile-check-worker.ts FRAMES SEED
 *
 * Prints one JSON line: the frames per expected fate, the dispatcher's
 * counters, and per class the frames made and those counted malformed.
 */
import { Dispatcher } from "../../src/dispatch.ts";
import { Loop } from "../../src/loop/loop.ts";
import type { FrameSink } from "../../src/tap/sink.ts";
import { flowTestConfig } from "./flow-config.ts";
import { CLASSES, HostileFrames, ip4, ip6, type Fate } from "./hostile-frames.ts";
import { turner } from "./loop-turn.ts";

const FRAMES = Number(process.argv[2] ?? 50000);
const SEED = Number(process.argv[3] ?? 1);
const BATCH = 64;

const sink: FrameSink = {
  buf: new Uint8Array(1 << 20),
  maxAlloc: 1 << 20,
  frameRoom: 0,
  tsoMax: 0,
  csumOffload: false,
  alloc: (n) => (n <= 1 << 20 ? 0 : -1),
  commit: () => {},
};
const loop = new Loop();
const d = new Dispatcher({ ...flowTestConfig, noIcmp: true }, loop, sink);
const turn = turner(loop);
const gen = new HostileFrames(SEED, {
  srcMac: new Uint8Array([2, 0, 0, 0, 0, 2]),
  src4: ip4("192.0.2.2"),
  dst4: [ip4("192.0.2.1"), ip4("198.51.100.1")],
  src6: ip6("2001:db8::2"),
  dst6: [ip6("2001:db8:1::1")],
  live: { sport: 41001, dport: 30000, seq: 12345, ack: 999 },
});
const byFate: Record<Fate, number> = { malformed: 0, unhandled: 0, handled: 0 };
const byClass: Record<string, { frames: number; malformed: number }> = {};
// frames live in a receive buffer that the next read overwrites, as the tap's
const rx = new Uint8Array(2048);
for (let i = 0; i < FRAMES; i++) {
  const { cls, len } = gen.next();
  rx.set(gen.buf.subarray(0, len));
  const before = d.stats.malformed;
  d.frame(rx, 0, len);
  byFate[CLASSES[cls].fate]++;
  const c = (byClass[cls] ??= { frames: 0, malformed: 0 });
  c.frames++;
  c.malformed += d.stats.malformed - before;
  if ((i + 1) % BATCH === 0) {
    d.batchEnd();
    d.flush();
    turn();
  }
}
console.log(JSON.stringify({ byFate, stats: d.stats, byClass }));
process.exit(0);
