/**
 * Which half-open flow TcpFlows drops when it must make room (a SYN flood):
 * flows from guest addresses that never completed a handshake (forged
 * sources) before flows from proven ones (the address we assigned, or one
 * that completed a handshake), and the oldest first within each. Flows are
 * made through the table's private functions, without sockets.
 */
import { expect, test } from "bun:test";
import { FlowTable } from "../../src/flows/flow.ts";
import { TcpFlows } from "../../src/flows/tcp.ts";
import { Loop } from "../../src/loop/loop.ts";
import { flowTestConfig as cfg, refusingSink } from "../tools/flow-config.ts";
import { Guest } from "../../src/services/guest.ts";

const sink = refusingSink;

interface Internals {
  allocFrom(v6: boolean, ga: Uint8Array, gOff: number, gport: number, ra: Uint8Array, rOff: number, rport: number, t: number): number;
  halfOpenAdd(i: number): void;
  handshakeDone(i: number): void;
  evictHalfOpen(): boolean;
  halfOpen(): number;
  /** The connection record (src/flows/tcp-conn.ts). */
  readonly conn: { readonly fd: Int32Array; readonly state: Uint8Array };
}

const GUEST = Uint8Array.of(192, 0, 2, 2);
const GW = Uint8Array.of(192, 0, 2, 1);

function table() {
  const t = new TcpFlows(cfg, new Loop(), sink, new Guest(), new FlowTable(null)) as unknown as Internals;
  let port = 10000;
  /** A half-open flow from guest address ga (a fresh source port each). */
  const open = (ga: Uint8Array): number => {
    const i = t.allocFrom(false, ga, 0, port++, GW, 0, 80, 0);
    t.conn.fd[i] = -1;
    t.halfOpenAdd(i);
    return i;
  };
  const alive = (i: number) => t.conn.state[i] !== 0;
  return { t, open, alive };
}

test("a flood from forged sources is dropped before an older flow from the assigned address", () => {
  const { t, open, alive } = table();
  const legit = open(GUEST);
  const forged = Array.from({ length: 100 }, (_, k) => open(Uint8Array.of(10, 1, k >> 8, k & 255)));
  for (let k = 0; k < 100; k++) expect(t.evictHalfOpen()).toBe(true);
  expect(forged.some(alive)).toBe(false);
  expect(alive(legit)).toBe(true);
  expect(t.halfOpen()).toBe(1);
  expect(t.evictHalfOpen()).toBe(true);
  expect(alive(legit)).toBe(false);
  expect(t.evictHalfOpen()).toBe(false);
});

test("within a list, the oldest goes first", () => {
  const { t, open, alive } = table();
  const a = open(GUEST);
  const b = open(GUEST);
  const x = open(Uint8Array.of(10, 0, 0, 1));
  const y = open(Uint8Array.of(10, 0, 0, 2));
  t.evictHalfOpen();
  expect([alive(x), alive(y)]).toEqual([false, true]);
  t.evictHalfOpen();
  t.evictHalfOpen();
  expect([alive(a), alive(b)]).toEqual([false, true]);
});

test("an address proves itself with a completed handshake: its next flows outlive unproven ones", () => {
  const { t, open, alive } = table();
  const other = Uint8Array.of(198, 51, 100, 7);
  t.handshakeDone(open(other));
  expect(t.halfOpen()).toBe(0);
  const later = open(other);
  const forged = open(Uint8Array.of(10, 9, 9, 9));
  t.evictHalfOpen();
  expect([alive(forged), alive(later)]).toEqual([false, true]);
});
