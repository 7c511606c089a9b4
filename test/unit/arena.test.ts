import { expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { readFileSync } from "node:fs";
import { release, table } from "../../src/loop/arena.ts";

test("tables are zeroed, 16-byte aligned, and never overlap", () => {
  const made = [table.u8(3), table.f64(5), table.u16(7), table.i32(9), table.u8(1), table.i16(2), table.u32(11)];
  for (const t of made) {
    expect(t.byteOffset % 16).toBe(0);
    expect([...t].every((v) => v === 0)).toBe(true);
  }
  // write every byte of every table, then check that each still holds its own mark
  made.forEach((t, k) => {
    new Uint8Array(t.buffer, t.byteOffset, t.byteLength).fill(k + 1);
  });
  made.forEach((t, k) => {
    expect([...new Uint8Array(t.buffer, t.byteOffset, t.byteLength)].every((v) => v === k + 1)).toBe(true);
  });
});

test("a request past the end of a chunk, or larger than one, gets fresh zeroed room", () => {
  const big = table.u8((32 << 20) + 100);
  expect(big.length).toBe((32 << 20) + 100);
  big[big.length - 1] = 7;
  const next = table.u32(1 << 20);
  expect(next.buffer === big.buffer && next.byteOffset < big.byteOffset + big.byteLength).toBe(false);
  expect(next[next.length - 1]).toBe(0);
});

test("release() zeroes the whole pages inside a view and keeps the partial pages at its edges", () => {
  const page = 4096;
  const all = table.u8(8 * page);
  all.fill(7);
  const part = all.subarray(100, 100 + 5 * page + 50);
  release(part);
  const base = Number(ptr(all));
  const first = Math.ceil((base + 100) / page) * page - base;
  const end = Math.floor((base + 100 + part.length) / page) * page - base;
  expect(end - first).toBeGreaterThanOrEqual(4 * page);
  const wrong = [...all.keys()].filter((i) => all[i] !== (i >= first && i < end ? 0 : 7));
  expect(wrong).toEqual([]);
  part.fill(9);
  expect(part.every((v) => v === 9)).toBe(true);
});

test("released pages stop counting as the process's anonymous memory", () => {
  const rssAnonKb = () => Number(/RssAnon:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
  const big = table.u8(16 << 20);
  big.fill(1);
  const touched = rssAnonKb();
  release(big);
  expect(touched - rssAnonKb()).toBeGreaterThan(12 << 10);
});

test("a chunk is a mapping of its own, outside JSC's heap, and costs nothing until written", () => {
  const rssAnonKb = () => Number(/RssAnon:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
  const before = rssAnonKb();
  const len = 40 << 20; // larger than a chunk: a chunk of its own, exactly this long
  const big = table.u8(len);
  expect(rssAnonKb() - before).toBeLessThan(1 << 10);
  const at = Number(ptr(big));
  const mapping = readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .map((l) =>
      l
        .split(" ")[0]!
        .split("-")
        .map((h) => Number.parseInt(h, 16)),
    )
    .find(([lo, hi]) => lo! <= at && at < hi!);
  // JSC's own ArrayBuffers live in a heap region of a GiB or more (its
  // "gigacage"); the kernel may merge our mapping with anonymous ones next to it
  expect(mapping).toBeDefined();
  expect(mapping![1]! - mapping![0]!).toBeLessThan(1 << 30);
  expect(mapping![1]! >= at + len).toBe(true);
});
