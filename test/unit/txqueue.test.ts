/**
 * The transmit queue shared by passt's stream backend and the vhost-user
 * backend (src/tap/txqueue.ts): placement in the ring arena, wrapping to
 * the front, partial departures, and the refusals that make flows back off.
 */
import { expect, test } from "bun:test";
import { TX_ARENA, TX_MAX_FRAMES, TX_QUEUE_MAX, TX_SMALL, TxQueue } from "../../src/tap/txqueue.ts";

const ROOM = 4;
const BIG = 64 << 10;

/** Queue frames of len bytes until place refuses; their offsets. */
function fill(q: TxQueue, len: number): number[] {
  const offs: number[] = [];
  for (;;) {
    const off = q.place(len, 1);
    if (off < 0) return offs;
    q.commit(off, len);
    offs.push(off);
  }
}

test("frames follow each other, each behind its room; an empty queue starts again at 0", () => {
  const q = new TxQueue(ROOM);
  const a = q.place(100, 1);
  expect(a).toBe(ROOM);
  q.commit(a, 100);
  const b = q.place(50, 1);
  expect(b).toBe(ROOM + 100 + ROOM);
  q.commit(b, 50);
  expect(q.queued).toBe(100 + 50 + 2 * ROOM);
  expect([q.headStart(), q.headTotal()]).toEqual([0, 100 + ROOM]);
  q.advanceHead();
  q.advanceHead();
  expect(q.empty()).toBe(true);
  expect(q.queued).toBe(0);
  expect(q.place(10, 1)).toBe(ROOM);
});

test("past TX_QUEUE_MAX queued, large requests are refused and small ones still placed", () => {
  const q = new TxQueue(ROOM);
  const offs = fill(q, BIG);
  expect(q.queued).toBeGreaterThan(TX_QUEUE_MAX);
  expect(offs.length).toBe(Math.floor(TX_QUEUE_MAX / (BIG + ROOM)) + 1);
  expect(q.place(TX_SMALL - ROOM, 1)).toBeGreaterThan(0);
});

test("the arena is a ring: once its end is reached, frames go to the front, before the head", () => {
  const q = new TxQueue(ROOM);
  // keep under TX_QUEUE_MAX by sending from the head while filling
  let last = -1;
  for (let k = 0; k < 2 * (TX_ARENA / (BIG + ROOM)); k++) {
    const off = q.place(BIG, 1);
    expect(off).toBeGreaterThan(0);
    q.commit(off, BIG);
    if (off < last) {
      // wrapped: the new frame ends before the head frame starts
      expect(off + BIG).toBeLessThanOrEqual(q.headStart());
      return;
    }
    last = off;
    if (q.queued > TX_QUEUE_MAX / 2) q.advanceHead();
  }
  throw new Error("never wrapped");
});

test("bytes leave in parts: a frame completes when its last byte goes", () => {
  const q = new TxQueue(ROOM);
  for (const len of [10, 20, 30]) q.commit(q.place(len, 1), len);
  expect(q.advanceBytes(5)).toBe(0);
  expect(q.headSent).toBe(5);
  expect(q.advanceBytes(10 + ROOM - 5 + 3)).toBe(1);
  expect(q.headSent).toBe(3);
  expect(q.queued).toBe(20 + ROOM - 3 + 30 + ROOM);
  expect(q.advanceBytes(20 + ROOM - 3 + 30 + ROOM)).toBe(2);
  expect(q.empty()).toBe(true);
  expect(q.queued).toBe(0);
});

test("clear drops what had not gone and says how many frames", () => {
  const q = new TxQueue(ROOM);
  for (let k = 0; k < 5; k++) q.commit(q.place(100, 1), 100);
  q.advanceHead();
  expect(q.clear()).toBe(4);
  expect(q.empty()).toBe(true);
  expect(q.place(1, 1)).toBe(ROOM);
});

test("a request larger than the arena, or of more frames than the list holds, never fits", () => {
  const q = new TxQueue(ROOM);
  expect(q.neverFits(TX_ARENA - ROOM, 1)).toBe(false);
  expect(q.neverFits(TX_ARENA - ROOM + 1, 1)).toBe(true);
  expect(q.neverFits(100, TX_MAX_FRAMES + 1)).toBe(true);
});
