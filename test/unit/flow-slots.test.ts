/**
 * How the flow table (src/flows/flow.ts) hands out flow numbers: in turn, so
 * that a number just freed is not handed out again at once (an event for
 * its old socket may still be in the batch being dispatched), but within
 * the first SLOT_WINDOW (16384) numbers while fewer than half of those are
 * in use, so that connection churn keeps touching the same pages of the
 * tables instead of walking through all FLOW_MAX numbers' worth of memory.
 * And TCP's own bound (TCP_MAX_CONNS) within it. (Until the flow table,
 * TCP picked its slots this way itself: these are its tests, moved.)
 */
import { expect, test } from "bun:test";
import { FLOW_MAX, FlowTable, FT_TCP, PIF_HOST, PIF_TAP } from "../../src/flows/flow.ts";
import { TcpFlows, TCP_MAX_CONNS } from "../../src/flows/tcp.ts";
import { Loop } from "../../src/loop/loop.ts";
import type { FrameSink } from "../../src/tap/sink.ts";
import { flowTestConfig as cfg } from "../tools/flow-config.ts";
import { Guest } from "../../src/services/guest.ts";

const WINDOW = 1 << 14;

const sink: FrameSink = { buf: new Uint8Array(4096), frameRoom: 0, tsoMax: 0, csumOffload: false, alloc: () => -1, commit: () => {} };

/** Taking and freeing numbers of a fresh flow table (each taken one made ACTIVE, with empty sides). */
function slots() {
  const ft = new FlowTable(null);
  const take = (): number => {
    const f = ft.alloc();
    if (f < 0) return f;
    ft.initiate(f, PIF_TAP, false, null, 0, 0, null, 0, 0);
    ft.target(f, PIF_HOST, null, 0, 0, null, 0, 0);
    ft.setType(f, FT_TCP);
    ft.activate(f);
    return f;
  };
  return { take, free: (i: number) => ft.free(i), count: () => ft.inUse() };
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
  for (let n = 0; n < FLOW_MAX; n++) expect(s.take()).toBe(n);
  expect(s.take()).toBe(-1);
  s.free(777);
  expect(s.take()).toBe(777);
  expect(s.take()).toBe(-1);
});

test("TCP refuses a connection past TCP_MAX_CONNS, and takes one again once one closed", () => {
  const ft = new FlowTable(null);
  const tcp = new TcpFlows(cfg, new Loop(), sink, new Guest(), ft) as unknown as {
    allocFrom(v6: boolean, ga: Uint8Array, gOff: number, gport: number, ra: Uint8Array, rOff: number, rport: number, t: number): number;
    free(i: number): void;
    count(): number;
  };
  const guest = Uint8Array.of(192, 0, 2, 2);
  const remote = Uint8Array.of(198, 51, 100, 1);
  for (let n = 0; n < TCP_MAX_CONNS; n++) expect(tcp.allocFrom(false, guest, 0, n & 0xffff, remote, 0, 1 + (n >> 16), 0)).toBe(n);
  expect(tcp.allocFrom(false, guest, 0, 1, remote, 0, 9, 0)).toBe(-1);
  expect(tcp.count()).toBe(TCP_MAX_CONNS);
  tcp.free(777);
  expect(tcp.allocFrom(false, guest, 0, 1, remote, 0, 9, 0)).toBeGreaterThanOrEqual(0);
  expect(tcp.allocFrom(false, guest, 0, 2, remote, 0, 9, 0)).toBe(-1);
});
