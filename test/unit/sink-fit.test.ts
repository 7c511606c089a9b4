/**
 * framesThatFit (src/tap/sink.ts): a batch of frames received or peeked
 * straight into a sink's buffer asks for no more than one alloc() can give,
 * so a sink smaller than a whole batch of 64 KiB frames still moves them
 * (before, such a request got -1 forever and the flow stalled).
 */
import { expect, test } from "bun:test";
import { type FrameSink, framesThatFit } from "../../src/tap/sink.ts";

const STRIDE = 65600;

/** A sink whose alloc() gives at most bytes. */
function sinkOf(bytes: number): FrameSink {
  return {
    buf: new Uint8Array(bytes),
    maxAlloc: bytes,
    frameRoom: 0,
    tsoMax: 0,
    csumOffload: false,
    alloc: (maxLen) => (maxLen <= bytes ? 0 : -1),
    commit: () => {},
  };
}

test("a batch of 64 KiB frames is cut to what one alloc() of a 1 MiB sink holds", () => {
  const sink = sinkOf(1 << 20);
  const fit = framesThatFit(sink, STRIDE, 32);
  expect(fit).toBe(15);
  expect(sink.alloc(fit * STRIDE)).toBe(0);
  expect(sink.alloc((fit + 1) * STRIDE)).toBe(-1);
});

test("small frames keep the whole batch; a sink smaller than one frame still gets asked for one", () => {
  expect(framesThatFit(sinkOf(1 << 20), 1600, 32)).toBe(32);
  expect(framesThatFit(sinkOf(1000), STRIDE, 32)).toBe(1);
});
