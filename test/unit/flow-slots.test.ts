/**
 * How the flow table (src/flows/flow.ts) hands out flow numbers: a number
 * freed during a batch of events is not handed out again before the batch
 * ends (an event for its old socket may still be in it), then the last
 * freed first, so that connection churn keeps reusing the same few numbers
 * (the same pages of every table) and the tables grow only as far as the
 * most flows open at once. And TCP's own bound (TCP_MAX_CONNS) within it.
 */
import { expect, test } from "bun:test";
import { FLOW_MAX, FlowTable, FT_TCP, PIF_HOST, PIF_TAP } from "../../src/flows/flow.ts";
import { TcpFlows, TCP_MAX_CONNS } from "../../src/flows/tcp.ts";
import { Loop } from "../../src/loop/loop.ts";
import { flowTestConfig as cfg, refusingSink } from "../tools/flow-config.ts";
import { Guest } from "../../src/services/guest.ts";

const sink = refusingSink;

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
  return { take, free: (i: number) => ft.free(i), endBatch: () => ft.endBatch(), count: () => ft.inUse() };
}

test("within one batch no freed number comes back; after it, churn reuses the same number", () => {
  const s = slots();
  const inBatch: number[] = [];
  for (let n = 0; n < 1000; n++) {
    const i = s.take();
    inBatch.push(i);
    s.free(i);
  }
  expect(new Set(inBatch).size).toBe(1000);
  s.endBatch();
  const churn = new Set<number>();
  for (let n = 0; n < 50000; n++) {
    const i = s.take();
    churn.add(i);
    s.free(i);
    s.endBatch();
  }
  expect(churn.size).toBe(1);
  expect(inBatch).toContain([...churn][0]!);
  expect(s.count()).toBe(0);
});

test("churn with many open stays within the most ever open; every number taken is free", () => {
  const s = slots();
  const open = new Set<number>();
  for (let n = 0; n < 12000; n++) open.add(s.take());
  expect(open.size).toBe(12000);
  let max = 0;
  for (let n = 0; n < 50000; n++) {
    const i = s.take();
    expect(open.has(i)).toBe(false);
    open.add(i);
    max = Math.max(max, i);
    const drop = open.values().next().value!;
    open.delete(drop);
    s.free(drop);
    if (n % 7 === 0) s.endBatch();
  }
  // at most 12000 open plus the 7 freed in a batch, one taken before its end
  expect(max).toBeLessThan(12000 + 8);
  expect(s.count()).toBe(12000);
});

test("a full table refuses; a freed number is found once its batch is over", () => {
  const s = slots();
  for (let n = 0; n < FLOW_MAX; n++) expect(s.take()).toBe(n);
  expect(s.take()).toBe(-1);
  s.free(777);
  expect(s.take()).toBe(-1);
  s.endBatch();
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
