/**
 * A least-recently-used order of flows, for the modules that make room by
 * closing the flow unused the longest (UDP, ICMP echo: see their theory of
 * operation).
 *
 * Theory of operation
 * -------------------
 * A doubly linked list threaded through two typed arrays indexed by the flow
 * number (src/flows/flow.ts), least recently used first: `touch` moves a flow
 * to the end, `oldest` is the head. Every operation is a few array writes;
 * nothing is allocated. The arrays are FLOW_MAX long but written only at the
 * numbers of flows in the list (fresh zero pages elsewhere).
 */
import { table } from "../loop/arena.ts";
import { FLOW_MAX } from "./flow.ts";

export class UseOrder {
  private readonly prev = table.i32(FLOW_MAX);
  private readonly next = table.i32(FLOW_MAX);
  private head = -1;
  private tail = -1;

  /** The least recently used flow, -1 when the list is empty. */
  oldest(): number {
    return this.head;
  }

  /** Flow f (not in the list) is used now: last. */
  append(f: number): void {
    this.prev[f] = this.tail;
    this.next[f] = -1;
    if (this.tail >= 0) this.next[this.tail] = f;
    else this.head = f;
    this.tail = f;
  }

  /** Flow f (in the list) was used: last. */
  touch(f: number): void {
    if (f === this.tail) return;
    this.unlink(f);
    this.append(f);
  }

  /** Flow f leaves the list. */
  unlink(f: number): void {
    const p = this.prev[f]!;
    const n = this.next[f]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
  }
}
