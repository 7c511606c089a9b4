/**
 * An index of entries by the hash of their key: the flow table's index of
 * flow sides (flows/flow.ts; an entry is a sidx), multicast's groups
 * (flows/mcast.ts); and the one hash function of flow keys (flowKeyHash,
 * also the base of TCP's ISN).
 *
 * Theory of operation
 * -------------------
 * Open addressing with linear probing in a power-of-two array at least twice
 * the number of flows, so it is never more than half full and a probe always
 * meets an empty slot. A slot holds a flow number + 1 (0: empty). Each flow's
 * key hash is kept (hashOf), so that a lookup skips other keys without
 * comparing addresses, and a removal needs no key.
 *
 * No tombstones: a removal closes the gap it leaves (backward shift, Knuth's
 * Algorithm R): each entry after the hole, up to the next empty slot, moves
 * back into the hole unless its home slot lies after the hole, so that every
 * entry stays reachable from its home slot without crossing an empty one.
 * With tombstones, a table that sees many distinct keys over time (a SYN flood
 * from random sources, a UDP flood from a new port each datagram) fills up
 * with them, and every lookup of a new key walks the whole table.
 *
 * Callers look a key up with start / next / at and compare keys themselves:
 *
 *   for (let s = idx.start(h); ; s = idx.next(s)) {
 *     const i = idx.at(s);
 *     if (i < 0) return -1;                      // not there
 *     if (idx.hashOf[i] === h && sameKey(i)) return i;
 *   }
 *
 * Memory: keys hash all over the array, so a long run of short flows (a new
 * connection per request, each from a new port) makes every page of it
 * resident, though few entries are ever in it at once. releaseEmptyPages(),
 * when traffic stops, gives back the pages that hold no entry.
 */
import { ptr } from "bun:ffi";
import { release, table } from "../loop/arena.ts";

const PAGE = 4096;
/** Slots per page of the slot array (4-byte slots). */
const PAGE_SLOTS = PAGE / 4;

export class FlowHash {
  private readonly slots: Int32Array;
  private readonly mask: number;
  /** The key hash of each flow in the index. */
  readonly hashOf: Uint32Array;

  constructor(maxFlows: number) {
    let size = 2;
    while (size < 2 * maxFlows) size *= 2;
    this.slots = table.i32(size);
    this.mask = size - 1;
    this.hashOf = table.u32(maxFlows);
  }

  /** The first slot to look at for key hash h. */
  start(h: number): number {
    return h & this.mask;
  }

  /** The slot after s. */
  next(s: number): number {
    return (s + 1) & this.mask;
  }

  /** The flow in slot s, or -1 for an empty slot. */
  at(s: number): number {
    return this.slots[s]! - 1;
  }

  /** Add flow i, whose key hashes to h (it must not be in the index already). */
  insert(i: number, h: number): void {
    this.hashOf[i] = h;
    let s = h & this.mask;
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = i + 1;
  }

  /** Remove flow i, if it is in the index, and close the gap it leaves. */
  remove(i: number): void {
    const mask = this.mask;
    let hole = this.hashOf[i]! & mask;
    while (this.slots[hole] !== i + 1) {
      if (this.slots[hole] === 0) return;
      hole = (hole + 1) & mask;
    }
    this.slots[hole] = 0;
    for (let s = (hole + 1) & mask; this.slots[s] !== 0; s = (s + 1) & mask) {
      const home = this.hashOf[this.slots[s]! - 1]! & mask;
      // the entry at s may move back to the hole unless its home is in (hole, s], cyclically
      const stays = hole < s ? home > hole && home <= s : home > hole || home <= s;
      if (stays) continue;
      this.slots[hole] = this.slots[s]!;
      this.slots[s] = 0;
      hole = s;
    }
  }

  /** Give the pages of the slot array that hold no entry back to the kernel (a run of them at a time); returns how many. */
  releaseEmptyPages(): number {
    const slots = this.slots;
    const base = Number(ptr(slots));
    let n = 0;
    let run = -1;
    // from the first slot on a page boundary, one page at a time; p reaching the end closes the last run
    let p = ((PAGE - (base % PAGE)) % PAGE) / 4;
    for (; p + PAGE_SLOTS <= slots.length; p += PAGE_SLOTS) {
      let s = p;
      while (s < p + PAGE_SLOTS && slots[s] === 0) s++;
      if (s === p + PAGE_SLOTS) {
        n++;
        if (run < 0) run = p;
      } else if (run >= 0) {
        this.releaseSlots(run, p);
        run = -1;
      }
    }
    if (run >= 0) this.releaseSlots(run, p);
    return n;
  }

  /** Release the pages of slots [from, to). */
  private releaseSlots(from: number, to: number): void {
    release(new Uint8Array(this.slots.buffer, this.slots.byteOffset + 4 * from, 4 * (to - from)));
  }

  /** Empty the index. */
  clear(): void {
    this.slots.fill(0);
  }
}

/**
 * Hash of a flow key: two sides, each an address of alen bytes (4 or 16) at
 * a[aOff], b[bOff] and a port (TCP: the guest's and the remote's; UDP,
 * keyed by its guest side only: an all-zero address and port 0 for b).
 * FNV-style mixing of every address byte and both ports; not keyed (TCP's
 * ISN XORs it with a secret).
 */
export function flowKeyHash(a: Uint8Array, aOff: number, aport: number, b: Uint8Array, bOff: number, bport: number, alen: number): number {
  let h = Math.imul(aport ^ (bport << 16), 0x9e3779b1);
  for (let k = 0; k < alen; k++) h = Math.imul(h ^ a[aOff + k]! ^ (b[bOff + k]! << 8), 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}
