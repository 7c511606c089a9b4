/**
 * Fixed tables (per-flow columns, frame buffers) carved out of a few large
 * ArrayBuffers, instead of one typed array each.
 *
 * Theory of operation
 * -------------------
 * A new typed array of a few hundred KiB to a few MiB comes from the
 * allocator's reused memory, which JSC must zero first: start-up spent about
 * 80 ms (of 280) in typed-array constructors for the flow tables, and every
 * page of them became resident although most flows are never used. Even a
 * large ArrayBuffer is sometimes zeroed that way (seen in the bench: now and
 * then a daemon started with its whole 32 MiB chunk resident in JSC's heap,
 * 41 MB of anonymous memory instead of 9). So chunks are mapped by the shim
 * (shim_map_private: private anonymous memory, zero pages that cost nothing
 * until written) and wrapped as ArrayBuffers; new ArrayBuffer only if that
 * mapping fails.
 *
 * Tables take views of CHUNK-sized buffers, in order, each view aligned to
 * 16 bytes; a request that does not fit the rest of a chunk opens a new one
 * (the unused tail is never written, so never resident). Views live as long
 * as the process; nothing is ever given back to the allocator. A view's
 * `.buffer` is the whole chunk: take other-typed views with its byteOffset
 * and length.
 *
 * release(view) hands the pages wholly inside a view back to the kernel
 * (madvise MADV_DONTNEED through the shim): a burst buffer that is idle costs
 * nothing again until it is written, and then reads as zeros.
 */
import { toArrayBuffer } from "bun:ffi";
import { sys } from "../native/ffi.ts";

/** Bytes per chunk (a request larger than this gets a chunk of its own). */
const CHUNK = 32 << 20;
const ALIGN = 16;

let chunk: ArrayBuffer | null = null;
let used = 0;

/** Room for bytes: the chunk and the offset where it starts. */
function take(bytes: number): [ArrayBuffer, number] {
  const off = (used + ALIGN - 1) & ~(ALIGN - 1);
  if (chunk === null || off + bytes > chunk.byteLength) {
    chunk = mapChunk(Math.max(CHUNK, bytes));
    used = bytes;
    return [chunk, 0];
  }
  used = off + bytes;
  return [chunk, off];
}

/** len bytes of fresh zero pages outside JSC's heap (never unmapped: views live as long as the process). */
function mapChunk(len: number): ArrayBuffer {
  const p = sys.shim_map_private(len);
  return p === null ? new ArrayBuffer(len) : toArrayBuffer(p, 0, len);
}

type View<T> = { new (buffer: ArrayBuffer, byteOffset: number, length: number): T; readonly BYTES_PER_ELEMENT: number };

/** A zeroed table of n elements of type C. */
function view<T>(C: View<T>, n: number): T {
  const [b, o] = take(n * C.BYTES_PER_ELEMENT);
  return new C(b, o, n);
}

/** Give the whole pages of v back to the kernel; its contents read as zeros after. */
export function release(v: Uint8Array): void {
  sys.shim_release(v, v.byteLength);
}

/** Zeroed tables of n elements. */
export const table = {
  u8: (n: number) => view(Uint8Array, n),
  u16: (n: number) => view(Uint16Array, n),
  i16: (n: number) => view(Int16Array, n),
  u32: (n: number) => view(Uint32Array, n),
  i32: (n: number) => view(Int32Array, n),
  f64: (n: number) => view(Float64Array, n),
};
