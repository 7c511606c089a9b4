/**
 * The inotify records pasta reads when watching its --netns file's directory
 * (src/ns/watch.ts): parsing, and which events mean the file is gone.
 */
import { expect, test } from "bun:test";
import { entryGone, parseInotify } from "../../src/ns/watch.ts";

const IN_CREATE = 0x100;
const IN_DELETE = 0x200;
const IN_MOVED_FROM = 0x40;
const IN_DELETE_SELF = 0x400;

/** One struct inotify_event with its name NUL-padded to pad bytes (as the kernel does). */
function record(mask: number, name: string, pad = 16): Uint8Array {
  const len = name === "" ? 0 : Math.max(pad, name.length + 1);
  const b = new Uint8Array(16 + len);
  const v = new DataView(b.buffer);
  v.setInt32(0, 1, true);
  v.setUint32(4, mask, true);
  v.setUint32(12, len, true);
  b.set(new TextEncoder().encode(name), 16);
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

test("several records, names NUL-padded, in one read", () => {
  const b = concat(record(IN_CREATE, "other"), record(IN_DELETE, "netns-1234", 32), record(IN_DELETE_SELF, ""));
  expect(parseInotify(b, b.length)).toEqual([
    { mask: IN_CREATE, name: "other" },
    { mask: IN_DELETE, name: "netns-1234" },
    { mask: IN_DELETE_SELF, name: "" },
  ]);
});

test("a record cut short by the read length is not read past n", () => {
  const b = concat(record(IN_DELETE, "a"), record(IN_DELETE, "bbbb"));
  expect(parseInotify(b, 16 + 16 + 16 + 2).map((e) => e.name)).toEqual(["a", "bb"]);
  expect(parseInotify(b, 16 + 16 + 8).map((e) => e.name)).toEqual(["a"]);
  expect(parseInotify(b, 10)).toEqual([]);
});

test("the file is gone when its own entry is deleted or moved away, or the directory goes", () => {
  expect(entryGone([{ mask: IN_DELETE, name: "ns" }], "ns")).toBe(true);
  expect(entryGone([{ mask: IN_MOVED_FROM, name: "ns" }], "ns")).toBe(true);
  expect(entryGone([{ mask: IN_DELETE_SELF, name: "" }], "ns")).toBe(true);
  expect(entryGone([{ mask: IN_DELETE, name: "ns2" }], "ns")).toBe(false);
  expect(entryGone([{ mask: IN_CREATE, name: "ns" }], "ns")).toBe(false);
});
