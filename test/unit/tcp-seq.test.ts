/**
 * TCP sequence arithmetic modulo 2^32 (src/wire/tcp.ts): seqAdd, seqDiff,
 * seqLt, seqLe around the wrap-around and the 2^31 boundary, and as a
 * property over many random pairs (fixed seed, so failures reproduce).
 */
import { describe, expect, test } from "bun:test";
import { seqAdd, seqDiff, seqLe, seqLt } from "../../src/wire/tcp.ts";
import { rng } from "../tools/rng.ts";

const MAX = 0xffffffff;
const HALF = 0x80000000;

const isUint32 = (v: number) => Number.isInteger(v) && v >= 0 && v <= MAX;

describe("seqAdd", () => {
  test("wraps past 2^32 - 1 to small numbers", () => {
    expect(seqAdd(MAX, 1)).toBe(0);
    expect(seqAdd(MAX, 2)).toBe(1);
    expect(seqAdd(0xfffffff0, 0x20)).toBe(0x10);
    expect(seqAdd(0xfffffffe, 65535)).toBe(65533);
  });

  test("stays an unsigned 32-bit number (never negative, never 2^32)", () => {
    for (const [a, n] of [
      [MAX, 1],
      [HALF, HALF],
      [HALF - 1, 1],
      [0x7fffffff, 0x7fffffff],
      [123, 0],
      [MAX, MAX],
    ]) {
      const r = seqAdd(a!, n!);
      expect(isUint32(r), `seqAdd(${a}, ${n}) = ${r}`).toBe(true);
    }
    expect(seqAdd(HALF - 1, 1)).toBe(HALF);
    expect(seqAdd(MAX, MAX)).toBe(0xfffffffe);
  });

  test("a negative step goes back across zero", () => {
    expect(seqAdd(0, -1)).toBe(MAX);
    expect(seqAdd(5, -10)).toBe(0xfffffffb);
    expect(seqAdd(0x10, -0x20)).toBe(0xfffffff0);
  });

  test("round-trips through a Uint32Array slot (how the flow table keeps it)", () => {
    const slot = new Uint32Array(1);
    slot[0] = MAX - 3;
    slot[0] = seqAdd(slot[0]!, 10);
    expect(slot[0]).toBe(6);
  });
});

describe("seqDiff", () => {
  test("is the signed distance across the wrap", () => {
    expect(seqDiff(1, MAX)).toBe(2);
    expect(seqDiff(MAX, 1)).toBe(-2);
    expect(seqDiff(0, MAX)).toBe(1);
    expect(seqDiff(0x10, 0xfffffff0)).toBe(0x20);
    expect(seqDiff(0xfffffff0, 0x10)).toBe(-0x20);
    expect(seqDiff(7, 7)).toBe(0);
    expect(seqDiff(MAX, MAX)).toBe(0);
  });

  test("works on both sides of 2^31", () => {
    expect(seqDiff(HALF, HALF - 1)).toBe(1);
    expect(seqDiff(HALF - 1, HALF)).toBe(-1);
    expect(seqDiff(HALF + 100, HALF - 100)).toBe(200);
  });

  test("the largest distances either way", () => {
    expect(seqDiff(HALF - 1, 0)).toBe(0x7fffffff);
    expect(seqDiff(0, HALF - 1)).toBe(-0x7fffffff);
    expect(seqDiff(seqAdd(MAX, 0x7fffffff), MAX)).toBe(0x7fffffff);
  });
});

describe("seqLt / seqLe", () => {
  test("order across the wrap", () => {
    expect(seqLt(0xfffffff0, 0x10)).toBe(true);
    expect(seqLt(0x10, 0xfffffff0)).toBe(false);
    expect(seqLt(MAX, 0)).toBe(true);
    expect(seqLt(0, MAX)).toBe(false);
    expect(seqLe(MAX, 0)).toBe(true);
    expect(seqLe(0, MAX)).toBe(false);
  });

  test("equal numbers: seqLe holds, seqLt does not", () => {
    for (const a of [0, 1, HALF - 1, HALF, MAX]) {
      expect(seqLe(a, a)).toBe(true);
      expect(seqLt(a, a)).toBe(false);
    }
  });

  test("a window that straddles the wrap: every number inside is after its left edge and before its right edge", () => {
    const left = 0xffff0000;
    const right = seqAdd(left, 0x20000); // 0x00010000
    expect(right).toBe(0x10000);
    for (const off of [1, 0xffff, 0x10000, 0x10001, 0x1ffff]) {
      const s = seqAdd(left, off);
      expect(seqLt(left, s), `left < ${s.toString(16)}`).toBe(true);
      expect(seqLt(s, right), `${s.toString(16)} < right`).toBe(true);
      expect(seqLe(s, right)).toBe(true);
    }
    expect(seqLe(right, right)).toBe(true);
    expect(seqLt(right, seqAdd(right, 1))).toBe(true);
  });
});

describe("properties over random numbers (fixed seed)", () => {
  test("seqDiff(seqAdd(a, d), a) === d and the order follows the sign of d", () => {
    const r = rng(0x5eed1234);
    for (let k = 0; k < 20000; k++) {
      const a = r();
      // |d| < 2^31: the distances sequence comparison is defined for
      const d = (r() % 0x7fffffff) * (r() & 1 ? 1 : -1);
      const b = seqAdd(a, d);
      const why = `a=${a} d=${d} b=${b}`;
      if (!isUint32(b)) throw new Error(`seqAdd not uint32: ${why}`);
      if (seqDiff(b, a) !== d) throw new Error(`seqDiff(b, a) != d: ${why}`);
      if (seqDiff(a, b) !== -d) throw new Error(`seqDiff(a, b) != -d: ${why}`);
      if (seqLt(a, b) !== d > 0) throw new Error(`seqLt(a, b): ${why}`);
      if (seqLt(b, a) !== d < 0) throw new Error(`seqLt(b, a): ${why}`);
      if (seqLe(a, b) !== d >= 0) throw new Error(`seqLe(a, b): ${why}`);
      // exactly one of a < b, a == b, b < a
      const n = Number(seqLt(a, b)) + Number(a === b) + Number(seqLt(b, a));
      if (n !== 1) throw new Error(`trichotomy: ${why}`);
    }
    expect(true).toBe(true);
  });

  test("seqAdd composes: (a + x) + y == a + (x + y) modulo 2^32", () => {
    const r = rng(42);
    for (let k = 0; k < 20000; k++) {
      const a = r();
      const x = r() & 0xfffff;
      const y = r() & 0xfffff;
      const lhs = seqAdd(seqAdd(a, x), y);
      const rhs = seqAdd(a, x + y);
      if (lhs !== rhs) throw new Error(`a=${a} x=${x} y=${y}: ${lhs} != ${rhs}`);
    }
    expect(true).toBe(true);
  });
});
