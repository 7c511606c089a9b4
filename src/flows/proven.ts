/**
 * Source addresses the guest has shown it owns: a TCP handshake completed
 * from (or to) each of them, or we assigned it. A guest that floods with
 * forged source addresses (hping3 --rand-source) never completes a handshake
 * from them, since its kernel drops our SYN-ACKs to addresses it does not
 * have; so flows/tcp.ts can tell such half-open flows from a real
 * application's and drop them first. A few slots, replaced in turn: a guest
 * uses few addresses, and a forged one can never enter.
 */
import { equalBytes } from "../wire/bytes.ts";

/** Addresses remembered at most. */
const SLOTS = 8;

export class ProvenAddrs {
  private readonly addrs = new Uint8Array(SLOTS * 16);
  /** Length of each slot's address: 4, 16, or 0 (empty). */
  private readonly lens = new Uint8Array(SLOTS);
  private next = 0;

  /** Whether the alen-byte address at a[off] is one of them. */
  has(a: Uint8Array, off: number, alen: number): boolean {
    for (let s = 0; s < SLOTS; s++) if (this.lens[s] === alen && equalBytes(this.addrs, s * 16, a, off, alen)) return true;
    return false;
  }

  /** Remember the alen-byte address at a[off] (the oldest gives way when all slots are taken). */
  add(a: Uint8Array, off: number, alen: number): void {
    if (this.has(a, off, alen)) return;
    const s = this.next;
    this.next = (s + 1) % SLOTS;
    this.addrs.set(a.subarray(off, off + alen), s * 16);
    this.lens[s] = alen;
  }
}
