/**
 * Fixed tables (per-flow columns, frame buffers) carved out of a few large
 * ArrayBuffers, instead of one typed array each.
 *
 * Theory of operation
 * -------------------
 * A new typed array of a few hundred KiB to a few MiB comes from the
 * allocator's reused memory, which JSC must zero first: start-up spent about
 * 80 ms (of 280) in typed-array constructors for the flow tables, and every
 * page of them became resident although most flows are never used. A large
 * ArrayBuffer is mapped fresh: zero pages that cost nothing until written.
 *
 * So tables take views of CHUNK-sized buffers, in order, each view aligned to
 * 16 bytes; a request that does not fit the rest of a chunk opens a new one
 * (the unused tail is never written, so never resident). Views live as long
 * as the process; nothing is ever given back. A view's `.buffer` is the whole
 * chunk: take other-typed views with its byteOffset and length.
 */

/** Bytes per chunk (a request larger than this gets a chunk of its own). */
const CHUNK = 32 << 20;
const ALIGN = 16;

let chunk: ArrayBuffer | null = null;
let used = 0;

/** Room for bytes: the chunk and the offset where it starts. */
function take(bytes: number): [ArrayBuffer, number] {
  const off = (used + ALIGN - 1) & ~(ALIGN - 1);
  if (chunk === null || off + bytes > chunk.byteLength) {
    chunk = new ArrayBuffer(Math.max(CHUNK, bytes));
    used = bytes;
    return [chunk, 0];
  }
  used = off + bytes;
  return [chunk, off];
}

/** Zeroed tables of n elements. */
export const table = {
  u8(n: number): Uint8Array {
    const [b, o] = take(n);
    return new Uint8Array(b, o, n);
  },
  u16(n: number): Uint16Array {
    const [b, o] = take(n * 2);
    return new Uint16Array(b, o, n);
  },
  i16(n: number): Int16Array {
    const [b, o] = take(n * 2);
    return new Int16Array(b, o, n);
  },
  u32(n: number): Uint32Array {
    const [b, o] = take(n * 4);
    return new Uint32Array(b, o, n);
  },
  i32(n: number): Int32Array {
    const [b, o] = take(n * 4);
    return new Int32Array(b, o, n);
  },
  f64(n: number): Float64Array {
    const [b, o] = take(n * 8);
    return new Float64Array(b, o, n);
  },
};
