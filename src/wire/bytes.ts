/**
 * Big-endian field access over byte buffers, shared by every wire module.
 *
 * Network fields are read and written byte by byte (no DataView per packet):
 * 16-bit values come back as 0..65535, 32-bit values as unsigned 0..2^32-1
 * (`>>> 0`), so sequence numbers and IPv4 addresses compare as plain numbers.
 * Callers check bounds first; these helpers do not.
 */

/** Read the big-endian 16-bit value at b[o]. */
export function rd16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/** Read the big-endian 32-bit value at b[o] as an unsigned number. */
export function rd32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** Write v (taken modulo 2^16) big-endian at b[o]. */
export function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

/** Write v (taken modulo 2^32) big-endian at b[o]. */
export function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** Copy n bytes from src[sOff] to dst[dOff] with a plain loop (no subarray views). */
export function copyBytes(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dOff + i] = src[sOff + i]!;
}

/** True when the n bytes at a[aOff] equal the n bytes at c[cOff]. */
export function equalBytes(a: Uint8Array, aOff: number, c: Uint8Array, cOff: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[aOff + i] !== c[cOff + i]) return false;
  return true;
}

/** True when o and len are non-negative integers and o + len lies inside b. */
export function inBounds(b: Uint8Array, o: number, len: number): boolean {
  return o >= 0 && len >= 0 && (o | 0) === o && (len | 0) === len && o + len <= b.length;
}
