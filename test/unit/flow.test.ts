/**
 * The flow table (src/flows/flow.ts): the states and their order, numbers
 * handed out and given back, lookups by either side of a flow, and the
 * timer walk (each module asked about its own flows, at its own period, and
 * free to close the flow it is asked about).
 */
import { expect, test } from "bun:test";
import {
  FLOW_ACTIVE,
  FLOW_FREE,
  FLOW_INI,
  FLOW_NEW,
  FLOW_TGT,
  FLOW_TICK_MS,
  FLOW_TYPED,
  FlowTable,
  flowOf,
  FT_PING,
  FT_TCP,
  FT_UDP,
  NO_ADDR,
  PIF_HOST,
  PIF_TAP,
  sideOf,
} from "../../src/flows/flow.ts";
import { UseOrder } from "../../src/flows/lru.ts";

const GUEST = new Uint8Array([192, 0, 2, 2]);
const REMOTE = new Uint8Array([198, 51, 100, 7]);
const PEER = new Uint8Array([127, 0, 0, 1]);

/** A TCP-like flow: the guest (gport) to REMOTE (rport) through the tap, to PEER on the host; tap side hashed. */
function tcpFlow(ft: FlowTable, gport: number, rport: number): number {
  const f = ft.alloc();
  ft.initiate(f, PIF_TAP, false, GUEST, 0, gport, REMOTE, 0, rport);
  ft.target(f, PIF_HOST, PEER, 0, rport, null, 0, 40000 + gport);
  ft.setType(f, FT_TCP);
  ft.hashInsert(2 * f);
  ft.activate(f);
  return f;
}

test("a flow goes FREE, NEW, INI, TGT, TYPED, ACTIVE, FREE; the sides hold what was given", () => {
  const ft = new FlowTable(null);
  const f = ft.alloc();
  expect(ft.state[f]).toBe(FLOW_NEW);
  ft.initiate(f, PIF_TAP, false, GUEST, 0, 1234, REMOTE, 0, 80);
  expect(ft.state[f]).toBe(FLOW_INI);
  ft.target(f, PIF_HOST, PEER, 0, 80, null, 0, 0);
  expect(ft.state[f]).toBe(FLOW_TGT);
  ft.setType(f, FT_TCP);
  expect(ft.state[f]).toBe(FLOW_TYPED);
  expect(ft.count(FT_TCP)).toBe(1);
  ft.activate(f);
  expect(ft.state[f]).toBe(FLOW_ACTIVE);
  expect(ft.is(f, FT_TCP)).toBe(true);
  expect(ft.is(f, FT_UDP)).toBe(false);
  expect([...ft.eaddr.subarray(32 * f, 32 * f + 4)]).toEqual([...GUEST]);
  expect([...ft.oaddr.subarray(32 * f, 32 * f + 4)]).toEqual([...REMOTE]);
  expect([...ft.eaddr.subarray(32 * f + 16, 32 * f + 20)]).toEqual([...PEER]);
  expect([...ft.oaddr.subarray(32 * f + 16, 32 * f + 32)]).toEqual(new Array(16).fill(0));
  expect(ft.eport[2 * f]).toBe(1234);
  expect(ft.oport[2 * f]).toBe(80);
  expect(ft.sideOn(f, PIF_TAP)).toBe(2 * f);
  expect(ft.sideOn(f, PIF_HOST)).toBe(2 * f + 1);
  ft.free(f);
  expect(ft.state[f]).toBe(FLOW_FREE);
  expect(ft.count(FT_TCP)).toBe(0);
  expect(ft.inUse()).toBe(0);
});

test("steps out of order throw; one flow at a time between NEW and ACTIVE; cancel gives it back", () => {
  const ft = new FlowTable(null);
  const f = ft.alloc();
  expect(() => ft.target(f, PIF_HOST, null, 0, 0, null, 0, 0)).toThrow();
  expect(() => ft.activate(f)).toThrow();
  expect(() => ft.free(f)).toThrow();
  expect(() => ft.alloc()).toThrow();
  ft.initiate(f, PIF_TAP, false, GUEST, 0, 1, REMOTE, 0, 2);
  expect(() => ft.setType(f, FT_TCP)).toThrow();
  ft.target(f, PIF_HOST, null, 0, 0, null, 0, 0);
  ft.setType(f, FT_UDP);
  ft.hashInsert(2 * f);
  ft.cancel(f);
  expect(ft.state[f]).toBe(FLOW_FREE);
  expect(ft.count(FT_UDP)).toBe(0);
  expect(ft.lookup(FT_UDP, PIF_TAP, false, GUEST, 0, 1, REMOTE, 0, 2)).toBe(-1);
  // the next one may be set up now
  const g = tcpFlow(ft, 5, 6);
  expect(() => ft.cancel(g)).toThrow();
  expect(ft.inUse()).toBe(1);
});

test("numbers are handed out in turn: a freed one is not taken again at once", () => {
  const ft = new FlowTable(null);
  const a = tcpFlow(ft, 1, 1);
  ft.free(a);
  const b = tcpFlow(ft, 2, 2);
  expect(b).not.toBe(a);
  const seen = new Set<number>();
  for (let k = 0; k < 100; k++) {
    const f = tcpFlow(ft, 100 + k, 1);
    expect(seen.has(f)).toBe(false);
    seen.add(f);
  }
  expect(ft.inUse()).toBe(101);
});

test("lookup finds the side it was given, by type, interface, version, addresses and ports, and nothing once freed", () => {
  const ft = new FlowTable(null);
  const flows: number[] = [];
  for (let p = 1; p <= 2000; p++) flows.push(tcpFlow(ft, p, 443));
  // the host side of one flow, hashed too: found by its own key, on its own interface
  const f = flows[7]!;
  ft.hashInsert(2 * f + 1);
  const host = ft.lookup(FT_TCP, PIF_HOST, false, PEER, 0, 443, NO_ADDR, 0, 40008);
  expect(flowOf(host)).toBe(f);
  expect(sideOf(host)).toBe(1);
  for (let p = 1; p <= 2000; p++) {
    const s = ft.lookup(FT_TCP, PIF_TAP, false, GUEST, 0, p, REMOTE, 0, 443);
    expect(flowOf(s)).toBe(flows[p - 1]!);
    expect(sideOf(s)).toBe(0);
  }
  expect(ft.lookup(FT_UDP, PIF_TAP, false, GUEST, 0, 5, REMOTE, 0, 443)).toBe(-1);
  expect(ft.lookup(FT_TCP, PIF_HOST, false, GUEST, 0, 5, REMOTE, 0, 443)).toBe(-1);
  expect(ft.lookup(FT_TCP, PIF_TAP, true, GUEST, 0, 5, REMOTE, 0, 443)).toBe(-1);
  expect(ft.lookup(FT_TCP, PIF_TAP, false, GUEST, 0, 5, REMOTE, 0, 444)).toBe(-1);
  expect(ft.lookup(FT_TCP, PIF_TAP, false, PEER, 0, 5, REMOTE, 0, 443)).toBe(-1);
  for (let p = 1; p <= 2000; p += 2) ft.free(flows[p - 1]!);
  for (let p = 1; p <= 2000; p++) {
    const s = ft.lookup(FT_TCP, PIF_TAP, false, GUEST, 0, p, REMOTE, 0, 443);
    expect(s < 0 ? -1 : flowOf(s)).toBe(p % 2 === 1 ? -1 : flows[p - 1]!);
  }
  expect(ft.lookup(FT_TCP, PIF_HOST, false, PEER, 0, 443, NO_ADDR, 0, 40008)).toBe(2 * f + 1);
  expect(ft.indexed()).toBe(1001);
  ft.free(f);
  expect(ft.lookup(FT_TCP, PIF_HOST, false, PEER, 0, 443, NO_ADDR, 0, 40008)).toBe(-1);
  // a freed flow leaves nothing in the index, whichever of its sides were there
  for (let p = 2; p <= 2000; p += 2) if (flows[p - 1] !== f) ft.free(flows[p - 1]!);
  expect(ft.indexed()).toBe(0);
  expect(ft.inUse()).toBe(0);
});

test("IPv6 sides compare all 16 bytes", () => {
  const ft = new FlowTable(null);
  const a6 = new Uint8Array(16).fill(0x20);
  const b6 = new Uint8Array(16).fill(0x30);
  const f = ft.alloc();
  ft.initiate(f, PIF_TAP, true, a6, 0, 7, b6, 0, 8);
  ft.target(f, PIF_HOST, null, 0, 0, null, 0, 0);
  ft.setType(f, FT_UDP);
  ft.hashInsert(2 * f);
  ft.activate(f);
  expect(ft.lookup(FT_UDP, PIF_TAP, true, a6, 0, 7, b6, 0, 8)).toBe(2 * f);
  const c6 = a6.slice();
  c6[15] = 0x21;
  expect(ft.lookup(FT_UDP, PIF_TAP, true, c6, 0, 7, b6, 0, 8)).toBe(-1);
});

test("the timer walk asks each module about its own active flows, at its period, and lets it free them", () => {
  const ft = new FlowTable(null);
  const tcp: number[] = [];
  const udp: number[] = [];
  for (let k = 0; k < 50; k++) tcp.push(tcpFlow(ft, k + 1, 80));
  for (let k = 0; k < 30; k++) {
    const f = ft.alloc();
    ft.initiate(f, PIF_TAP, false, GUEST, 0, 5000 + k, null, 0, 0);
    ft.target(f, PIF_HOST, null, 0, 0, null, 0, 5000 + k);
    ft.setType(f, FT_UDP);
    ft.activate(f);
    udp.push(f);
  }
  // one flow being set up: not asked
  const pending = ft.alloc();
  const askedTcp: number[] = [];
  const askedUdp: number[] = [];
  ft.onTimer(FT_TCP, FLOW_TICK_MS, (f) => {
    askedTcp.push(f);
    if (f % 2 === 0) ft.free(f);
  });
  ft.onTimer(FT_UDP, 1000, (f) => askedUdp.push(f));
  ft.tick(1000);
  expect(askedTcp.sort((x, y) => x - y)).toEqual(tcp.slice().sort((x, y) => x - y));
  expect(askedUdp.sort((x, y) => x - y)).toEqual(udp.slice().sort((x, y) => x - y));
  const left = tcp.filter((f) => f % 2 === 1);
  expect(ft.count(FT_TCP)).toBe(left.length);
  // 50 ms later: TCP is due again, UDP not before its second
  askedTcp.length = 0;
  askedUdp.length = 0;
  ft.tick(1050);
  expect(askedTcp.sort((x, y) => x - y)).toEqual(left.sort((x, y) => x - y));
  expect(askedUdp.length).toBe(0);
  ft.tick(2000);
  expect(askedUdp.length).toBe(30);
  expect(ft.state[pending]).toBe(FLOW_NEW);
  ft.cancel(pending);
  // a type with no handler (ICMP here) is never asked, and the walk is quiet with no flows
  expect(ft.count(FT_PING)).toBe(0);
});

test("the use order (src/flows/lru.ts): oldest first, a touched flow goes last, an unlinked one is gone", () => {
  const u = new UseOrder();
  expect(u.oldest()).toBe(-1);
  for (const f of [5, 9, 2, 7]) u.append(f);
  expect(u.oldest()).toBe(5);
  u.touch(5);
  expect(u.oldest()).toBe(9);
  u.touch(7); // already last: stays
  u.unlink(9);
  expect(u.oldest()).toBe(2);
  u.unlink(2);
  u.unlink(5);
  expect(u.oldest()).toBe(7);
  u.unlink(7);
  expect(u.oldest()).toBe(-1);
  u.append(3);
  expect(u.oldest()).toBe(3);
});
