/**
 * How TcpFlows picks a slot of its flow tables (takeSlot): in turn, so that
 * a slot just freed is not handed out again at once (an event for its old
 * socket may still be in the batch being dispatched), but within the first
 * SLOT_WINDOW (16384) slots while fewer than half of those are open, so
 * that connection churn keeps touching the same pages of the tables instead
 * of walking through all 131072 slots' worth of memory.
 */
import { expect, test } from "bun:test";
import { TcpFlows, TCP_MAX_CONNS } from "../../src/flows/tcp.ts";
import { Loop } from "../../src/loop/loop.ts";
import type { FrameSink } from "../../src/tap/sink.ts";
import { flowTestConfig as cfg } from "../tools/flow-config.ts";
import { Guest } from "../../src/services/guest.ts";

const WINDOW = 1 << 14;

const sink: FrameSink = { buf: new Uint8Array(4096), frameRoom: 0, tsoMax: 0, csumOffload: false, alloc: () => -1, commit: () => {} };

/** The private slot functions of a fresh TcpFlows (no sockets are involved). */
function slots() {
  const flows = new TcpFlows(cfg, new Loop(), sink, new Guest()) as unknown as {
    takeSlot(t: number): number;
    free(i: number): void;
    count(): number;
  };
  return { take: () => flows.takeSlot(0), free: (i: number) => flows.free(i), count: () => flows.count() };
}

test("one connection at a time, 3 windows' worth: slots stay in the window, none is reused before the window has gone round", () => {
  const s = slots();
  const seen: number[] = [];
  for (let n = 0; n < 3 * WINDOW; n++) {
    const i = s.take();
    seen.push(i);
    s.free(i);
  }
  expect(Math.max(...seen)).toBe(WINDOW - 1);
  for (let n = 1; n < seen.length; n++) expect(seen[n]).toBe((seen[n - 1]! + 1) % WINDOW);
  expect(s.count()).toBe(0);
});

test("with many open, the window grows to twice the open count; every slot taken is free", () => {
  const s = slots();
  const open = new Set<number>();
  for (let n = 0; n < 12000; n++) open.add(s.take());
  expect(open.size).toBe(12000);
  // churn at 12000 open: the window is 24000 slots
  let max = 0;
  for (let n = 0; n < 50000; n++) {
    const i = s.take();
    expect(open.has(i)).toBe(false);
    open.add(i);
    max = Math.max(max, i);
    const drop = open.values().next().value!;
    open.delete(drop);
    s.free(drop);
  }
  expect(max).toBeGreaterThanOrEqual(WINDOW);
  expect(max).toBeLessThan(2 * 12001);
  expect(s.count()).toBe(12000);
});

test("a full table refuses; one freed slot is found wherever it is", () => {
  const s = slots();
  for (let n = 0; n < TCP_MAX_CONNS; n++) expect(s.take()).toBe(n);
  expect(s.take()).toBe(-1);
  s.free(777);
  expect(s.take()).toBe(777);
  expect(s.take()).toBe(-1);
});
