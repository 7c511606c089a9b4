import { expect, test } from "bun:test";
import { Kind, kindCollisions, kindName } from "../../src/loop/kinds.ts";
import { Loop } from "../../src/loop/loop.ts";

test("no two event kinds share a number, and every number fits the reference's 8 bits", () => {
  expect(kindCollisions()).toEqual([]);
});

test("the collision check finds a repeated number and one out of range", () => {
  expect(kindCollisions({ A: 1, B: 2, C: 1, D: 256, E: 0 })).toEqual([
    "C and A are both 1",
    "D: 256 is not in 1..255",
    "E: 0 is not in 1..255",
  ]);
});

test("kindName names a kind, and says ? for a number that is none", () => {
  expect(kindName(Kind.TCP)).toBe("TCP");
  expect(kindName(200)).toBe("?");
});

test("a kind takes one handler: a second registration throws", () => {
  const loop = new Loop();
  loop.on(Kind.UDP, () => {});
  expect(() => loop.on(Kind.UDP, () => {})).toThrow("event kind UDP (7) has a handler already");
});
