/**
 * FlowHash (src/flows/flowhash.ts): the flow tables' index by key hash,
 * open addressing without tombstones. Checked against a Map under random
 * inserts and removals with colliding hashes, and for the property that
 * tombstones lacked: after any number of distinct keys came and went, a
 * lookup of an absent key stops at once in an emptied table.
 */
import { expect, test } from "bun:test";
import { FlowHash } from "../../src/flows/flowhash.ts";
import { rng } from "../tools/rng.ts";

/** Flow of key hash h in the index, or -1 (keys are the hashes themselves here). */
function find(idx: FlowHash, h: number, keyOf: Uint32Array): number {
  for (let s = idx.start(h); ; s = idx.next(s)) {
    const i = idx.at(s);
    if (i < 0) return -1;
    if (idx.hashOf[i] === h && keyOf[i] === h) return i;
  }
}

test("random inserts and removals, many collisions: every key present is found, every removed one is not", () => {
  const MAX = 512;
  const idx = new FlowHash(MAX);
  const keyOf = new Uint32Array(MAX);
  const model = new Map<number, number>(); // key -> flow
  const free = Array.from({ length: MAX }, (_, i) => i);
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
  for (let step = 0; step < 200_000; step++) {
    // keys from a small range with few distinct low bits: long probe runs that wrap around
    const key = ((rnd() % 4096) << 12) | (rnd() % 8);
    if (model.has(key)) {
      const i = model.get(key)!;
      idx.remove(i);
      model.delete(key);
      free.push(i);
    } else if (free.length) {
      const i = free.pop()!;
      keyOf[i] = key;
      idx.insert(i, key);
      model.set(key, i);
    }
    if (step % 1000 === 0) {
      for (const [k, i] of model) expect(find(idx, k, keyOf)).toBe(i);
    }
  }
  for (const [k, i] of model) expect(find(idx, k, keyOf)).toBe(i);
  for (const [k, i] of [...model]) {
    idx.remove(i);
    model.delete(k);
    expect(find(idx, k, keyOf)).toBe(-1);
  }
});

test("after 100000 distinct keys came and went, the index is empty again: an absent key's lookup ends at its first slot", () => {
  const idx = new FlowHash(1024);
  const keyOf = new Uint32Array(1024);
  for (let n = 0; n < 100_000; n++) {
    const i = n % 1024;
    if (n >= 1024) idx.remove(i);
    const key = Math.imul(n + 1, 0x9e3779b1) >>> 0;
    keyOf[i] = key;
    idx.insert(i, key);
  }
  for (let i = 0; i < 1024; i++) idx.remove(i);
  for (let s = 0; s < 2048; s++) expect(idx.at(s)).toBe(-1);
});

test("removing a flow that is not in the index changes nothing", () => {
  const idx = new FlowHash(8);
  const keyOf = new Uint32Array(8);
  keyOf[1] = 5;
  idx.insert(1, 5);
  idx.remove(3);
  expect(find(idx, 5, keyOf)).toBe(1);
});

test("releaseEmptyPages gives back the pages a churn of keys left empty, and keeps the entries still in", () => {
  const MAX = 1 << 16; // 2^17 slots: 128 pages
  const idx = new FlowHash(MAX);
  const keyOf = new Uint32Array(MAX);
  const next = rng(99);
  // churn: 40000 keys all over the array, inserted and removed, 8 left in
  const kept: number[] = [];
  for (let i = 0; i < 40000; i++) {
    const flow = i % MAX;
    const h = next();
    keyOf[flow] = h;
    idx.insert(flow, h);
    if (i % 5000 === 0) kept.push(flow);
    else idx.remove(flow);
  }
  const released = idx.releaseEmptyPages();
  expect(released).toBeGreaterThanOrEqual(128 - kept.length - 1);
  for (const flow of kept) expect(find(idx, keyOf[flow]!, keyOf)).toBe(flow);
  // the index works on after it: new keys go in and are found, removed ones are gone
  for (const flow of kept) idx.remove(flow);
  for (let flow = 0; flow < 1000; flow++) {
    keyOf[flow] = next();
    idx.insert(flow, keyOf[flow]!);
  }
  for (let flow = 0; flow < 1000; flow++) expect(find(idx, keyOf[flow]!, keyOf)).toBe(flow);
  expect(find(idx, keyOf[kept[1]!]! ^ 1, keyOf)).toBe(-1);
});
