/**
 * The flow table: every conversation through us, of every protocol and
 * path, in one table (the design of src/README.md's "Flows"; the original's
 * flow.c and flow.h are the model).
 *
 * Theory of operation
 * -------------------
 * A flow is a number, 0 .. FLOW_MAX-1. What every flow has is kept here, in
 * typed arrays indexed by that number: its state, its type (which protocol
 * module owns it), its IP version, and its two sides. Side 0 is where the
 * first packet came from (the initiating side), side 1 where we forward it
 * (the target side); each side has its interface (pif: the tap, the host,
 * the namespace's loopback for the spliced paths), the endpoint's address
 * and port, and our address and port on that interface. A side is named by
 * its "sidx", 2 × flow + side: side fields are indexed by it (addresses at
 * 16 × sidx; IPv4 in the first 4 bytes, the rest zero; all zero for an
 * address we do not know or that is not part of the flow's key).
 *
 * A flow goes through the original's states, in order:
 *
 *   FREE → NEW (alloc) → INI (initiate: side 0 set) → TGT (target: side 1
 *   set) → TYPED (setType: the protocol module sets its own fields) →
 *   ACTIVE (activate) → FREE (free);
 *
 * and from NEW, INI, TGT or TYPED back to FREE with cancel. At most one
 * flow is between NEW and ACTIVE at a time (the module that allocated it
 * finishes or cancels it before returning to the loop); a call out of
 * order is a bug, and throws.
 *
 * Protocol modules keep their own fields in typed arrays of FLOW_MAX
 * entries indexed by the flow number, set when they take a flow (nothing
 * is filled at start: the tables are fresh zero pages, resident only where
 * flows were, src/loop/arena.ts). Each module keeps its own bound on its
 * flows and its own order of eviction (see each module's theory of
 * operation); `count(type)` gives it the number of its flows.
 *
 * Numbers: a number freed during a batch of events is not handed out again
 * before the batch ends (endBatch, run by the loop after each batch), since
 * an event of its old socket may still be in that batch (event handlers
 * check the type of the flow they are given, too). After that, the number
 * freed last is handed out first, and numbers never used only when no freed
 * one is left: connection churn keeps reusing the same few numbers, so it
 * touches the same pages of every table however long it goes on, and the
 * tables are resident only as far as the most flows ever open at once.
 *
 * Lookups: one hash index (flows/flowhash.ts) of sides, keyed by (type, pif,
 * IP version, endpoint address and port, our address and port); a module
 * adds the sides it looks up (hashInsert) and `lookup` gives the sidx. Which
 * fields make a key is the protocol's choice, written with its flows: TCP
 * hashes its tap side's four-tuple, UDP its tap side's guest address and
 * port only (its socket talks to any destination), and so on.
 *
 * Timers: one walk of the flows in use, every FLOW_TICK_MS, asks each flow's
 * module whether its time has come (the handler given to `onTimer`, called
 * at most as often as that module asked). The walk goes over a dense list of
 * the flows in use, last first, so that a handler may free the flow it is
 * given.
 */
import { table } from "../loop/arena.ts";
import type { Loop } from "../loop/loop.ts";
import { FlowHash, flowKeyHash } from "./flowhash.ts";

/**
 * Flows at once, of every type together: room for every module's own bound
 * at the same time (TCP's 2^17, and the others' below another 2^17).
 */
export const FLOW_MAX = 1 << 18;
/** Granularity of the timer walk (TCP's retransmission clock). */
export const FLOW_TICK_MS = 50;

// States.
export const FLOW_FREE = 0;
export const FLOW_NEW = 1;
export const FLOW_INI = 2;
export const FLOW_TGT = 3;
export const FLOW_TYPED = 4;
export const FLOW_ACTIVE = 5;

// Types: the module that owns a flow.
export const FT_NONE = 0;
/** TCP through the tap (flows/tcp.ts). */
export const FT_TCP = 1;
/** Spliced TCP, pasta's loopback to loopback (flows/splice.ts). */
export const FT_TCP_SPLICE = 2;
/** UDP through the tap (flows/udp.ts). */
export const FT_UDP = 3;
/** Spliced UDP (flows/udpsplice.ts). */
export const FT_UDP_SPLICE = 4;
/** ICMP or ICMPv6 echo (flows/icmp.ts). */
export const FT_PING = 5;
const FT_COUNT = 6;

// Interfaces a side lives on.
export const PIF_NONE = 0;
/** The guest, through the tap (pasta) or the qemu socket (passt). */
export const PIF_TAP = 1;
/** The host's sockets. */
export const PIF_HOST = 2;
/** Sockets in pasta's namespace (the spliced paths). */
export const PIF_SPLICE = 3;

/** An all-zero address: a side field we do not know, or that is not part of the key. */
export const NO_ADDR = new Uint8Array(16);

/** The flow of a sidx, and its side. */
export const flowOf = (sidx: number): number => sidx >>> 1;
export const sideOf = (sidx: number): number => sidx & 1;

export class FlowTable {
  /** FLOW_FREE .. FLOW_ACTIVE. */
  readonly state = table.u8(FLOW_MAX);
  /** FT_*: which module owns the flow (FT_NONE before setType). */
  readonly type = table.u8(FLOW_MAX);
  /** 1 for IPv6 (both sides: we translate no family into the other). */
  readonly v6 = table.u8(FLOW_MAX);
  /** Per side (sidx): PIF_*. */
  readonly pif = table.u8(2 * FLOW_MAX);
  /** Per side: the endpoint's address, 16 bytes at 16 × sidx. */
  readonly eaddr = table.u8(32 * FLOW_MAX);
  /** Per side: our address on that interface, 16 bytes at 16 × sidx. */
  readonly oaddr = table.u8(32 * FLOW_MAX);
  /** Per side: the endpoint's port (an echo identifier for ICMP). */
  readonly eport = table.u16(2 * FLOW_MAX);
  /** Per side: our port. */
  readonly oport = table.u16(2 * FLOW_MAX);
  /** Per side: 1 while it is in the hash index. */
  private readonly hashed = table.u8(2 * FLOW_MAX);
  private nHashed = 0;
  private readonly index = new FlowHash(2 * FLOW_MAX);
  /** The flows not FREE, densely (any order), and each one's position + 1 there (0: not in use). */
  private readonly used = table.i32(FLOW_MAX);
  private readonly usedPos = table.i32(FLOW_MAX);
  private nUsed = 0;
  /** Numbers ready to be handed out again, the last freed on top. */
  private readonly reuse = table.i32(FLOW_MAX);
  private nReuse = 0;
  /** Numbers freed during the current batch of events (ready after endBatch). */
  private readonly freedNow = table.i32(FLOW_MAX);
  private nFreedNow = 0;
  /** Numbers from here on were never handed out. */
  private fresh = 0;
  /** Flows of each type (TYPED or ACTIVE). */
  private readonly nOfType = new Int32Array(FT_COUNT);
  /** The flow between NEW and ACTIVE, -1: none. */
  private pending = -1;
  /** Per type: the timer handler, its period, and when it is due next. */
  private readonly timers: (((flow: number, t: number) => void) | null)[] = new Array(FT_COUNT).fill(null);
  private readonly period = new Float64Array(FT_COUNT);
  private readonly due = new Float64Array(FT_COUNT);
  private readonly dueNow = new Uint8Array(FT_COUNT);

  constructor(loop: Loop | null) {
    loop?.every(FLOW_TICK_MS, (t) => this.tick(t));
    loop?.onFlush(() => this.endBatch());
    loop?.onQuiet(() => this.index.releaseEmptyPages());
  }

  // ------------------------------------------------------------- lifetime

  /** A free flow, now NEW; -1 when the table is full. */
  alloc(): number {
    if (this.pending >= 0) throw new Error(`flow: ${this.pending} is still being set up (${this.state[this.pending]})`);
    let f: number;
    if (this.nReuse > 0) f = this.reuse[--this.nReuse]!;
    else if (this.fresh < FLOW_MAX) f = this.fresh++;
    else return -1;
    this.used[this.nUsed] = f;
    this.usedPos[f] = ++this.nUsed;
    this.state[f] = FLOW_NEW;
    this.type[f] = FT_NONE;
    this.pending = f;
    return f;
  }

  /**
   * The initiating side of NEW flow f (now INI): where its first packet came
   * from, on interface pif, from the endpoint ea[eOff..] port eport to our
   * oa[oOff..] port oport (null: unknown, all zero).
   */
  initiate(
    f: number,
    pif: number,
    v6: boolean,
    ea: Uint8Array | null,
    eOff: number,
    eport: number,
    oa: Uint8Array | null,
    oOff: number,
    oport: number,
  ): void {
    this.step(f, FLOW_NEW, FLOW_INI);
    this.v6[f] = v6 ? 1 : 0;
    this.setSide(2 * f, pif, ea, eOff, eport, oa, oOff, oport);
  }

  /** The target side of INI flow f (now TGT): where we forward it; as initiate. */
  target(
    f: number,
    pif: number,
    ea: Uint8Array | null,
    eOff: number,
    eport: number,
    oa: Uint8Array | null,
    oOff: number,
    oport: number,
  ): void {
    this.step(f, FLOW_INI, FLOW_TGT);
    this.setSide(2 * f + 1, pif, ea, eOff, eport, oa, oOff, oport);
  }

  /** TGT flow f belongs to module `type` from now on (TYPED): it sets its own fields, then activates it. */
  setType(f: number, type: number): void {
    this.step(f, FLOW_TGT, FLOW_TYPED);
    this.type[f] = type;
    this.nOfType[type]!++;
  }

  /** TYPED flow f is in use (ACTIVE). */
  activate(f: number): void {
    this.step(f, FLOW_TYPED, FLOW_ACTIVE);
    this.pending = -1;
  }

  /** Give flow f back before it became ACTIVE (a socket could not be made, a connect failed at once). */
  cancel(f: number): void {
    const s = this.state[f]!;
    if (s === FLOW_FREE || s === FLOW_ACTIVE) throw new Error(`flow: cancel of ${f} in state ${s}`);
    this.pending = -1;
    this.release(f);
  }

  /** ACTIVE flow f is closed (its module closed its sockets): out of the index, FREE. */
  free(f: number): void {
    if (this.state[f] !== FLOW_ACTIVE) throw new Error(`flow: free of ${f} in state ${this.state[f]}`);
    this.release(f);
  }

  private release(f: number): void {
    if (this.hashed[2 * f]) this.hashRemove(2 * f);
    if (this.hashed[2 * f + 1]) this.hashRemove(2 * f + 1);
    if (this.type[f] !== FT_NONE) this.nOfType[this.type[f]!]!--;
    const pos = this.usedPos[f]! - 1;
    const last = this.used[--this.nUsed]!;
    this.used[pos] = last;
    this.usedPos[last] = pos + 1;
    this.usedPos[f] = 0;
    this.state[f] = FLOW_FREE;
    this.type[f] = FT_NONE;
    this.freedNow[this.nFreedNow++] = f;
  }

  /** The batch of events is over: numbers freed during it may be handed out again. */
  endBatch(): void {
    for (let i = 0; i < this.nFreedNow; i++) this.reuse[this.nReuse++] = this.freedNow[i]!;
    this.nFreedNow = 0;
  }

  private step(f: number, from: number, to: number): void {
    if (this.state[f] !== from || f !== this.pending) throw new Error(`flow: ${f} in state ${this.state[f]}, not ${from}`);
    this.state[f] = to;
  }

  private setSide(
    sidx: number,
    pif: number,
    ea: Uint8Array | null,
    eOff: number,
    eport: number,
    oa: Uint8Array | null,
    oOff: number,
    oport: number,
  ): void {
    this.pif[sidx] = pif;
    this.setAddr(this.eaddr, sidx, ea, eOff);
    this.setAddr(this.oaddr, sidx, oa, oOff);
    this.eport[sidx] = eport;
    this.oport[sidx] = oport;
  }

  /** Copy an address (4 or 16 bytes, by the flow's version) into a side field; null: zero. */
  private setAddr(dst: Uint8Array, sidx: number, a: Uint8Array | null, off: number): void {
    const base = 16 * sidx;
    dst.fill(0, base, base + 16);
    if (a === null) return;
    const alen = this.v6[sidx >>> 1] ? 16 : 4;
    for (let k = 0; k < alen; k++) dst[base + k] = a[off + k]!;
  }

  /** Change side sidx's our port (a flow whose socket was replaced). */
  setOurPort(sidx: number, port: number): void {
    const h = this.hashed[sidx];
    if (h) this.hashRemove(sidx);
    this.oport[sidx] = port;
    if (h) this.hashInsert(sidx);
  }

  // -------------------------------------------------------------- queries

  /** Flows of type `type` (TYPED or ACTIVE). */
  count(type: number): number {
    return this.nOfType[type]!;
  }

  /** Flows not FREE. */
  inUse(): number {
    return this.nUsed;
  }

  /** The k-th flow in use (0 .. inUse()-1, in no order; walk it last first to free as you go). */
  usedAt(k: number): number {
    return this.used[k]!;
  }

  /** True when flow f is ACTIVE and of type `type` (event handlers: a stale event of a freed flow is dropped). */
  is(f: number, type: number): boolean {
    return this.type[f] === type && this.state[f] === FLOW_ACTIVE;
  }

  /** The side of flow f on interface pif (its sidx), or -1. */
  sideOn(f: number, pif: number): number {
    if (this.pif[2 * f] === pif) return 2 * f;
    if (this.pif[2 * f + 1] === pif) return 2 * f + 1;
    return -1;
  }

  // ---------------------------------------------------------------- index

  /** Add side sidx (its fields set) to the index. */
  hashInsert(sidx: number): void {
    const f = sidx >>> 1;
    const h = this.keyHash(
      this.type[f]!,
      this.pif[sidx]!,
      this.v6[f] === 1,
      this.eaddr,
      16 * sidx,
      this.eport[sidx]!,
      this.oaddr,
      16 * sidx,
      this.oport[sidx]!,
    );
    this.index.insert(sidx, h);
    this.hashed[sidx] = 1;
    this.nHashed++;
  }

  /** Take side sidx out of the index. */
  hashRemove(sidx: number): void {
    this.index.remove(sidx);
    this.hashed[sidx] = 0;
    this.nHashed--;
  }

  /** Sides in the index (for tests: none is left behind by a freed flow). */
  indexed(): number {
    return this.nHashed;
  }

  /**
   * The side (sidx) of a flow of `type` whose side on pif has the endpoint
   * ea[eOff..] port eport and our oa[oOff..] port oport (addresses of 4 or
   * 16 bytes by v6), among the sides in the index; -1 if none.
   */
  lookup(
    type: number,
    pif: number,
    v6: boolean,
    ea: Uint8Array,
    eOff: number,
    eport: number,
    oa: Uint8Array,
    oOff: number,
    oport: number,
  ): number {
    const idx = this.index;
    const h = this.keyHash(type, pif, v6, ea, eOff, eport, oa, oOff, oport);
    const alen = v6 ? 16 : 4;
    const v = v6 ? 1 : 0;
    for (let s = idx.start(h); ; s = idx.next(s)) {
      const sidx = idx.at(s);
      if (sidx < 0) return -1;
      if (idx.hashOf[sidx] !== h || this.eport[sidx] !== eport || this.oport[sidx] !== oport || this.pif[sidx] !== pif) continue;
      const f = sidx >>> 1;
      if (this.type[f] !== type || this.v6[f] !== v) continue;
      if (sameBytes(this.eaddr, 16 * sidx, ea, eOff, alen) && sameBytes(this.oaddr, 16 * sidx, oa, oOff, alen)) return sidx;
    }
  }

  private keyHash(
    type: number,
    pif: number,
    v6: boolean,
    ea: Uint8Array,
    eOff: number,
    eport: number,
    oa: Uint8Array,
    oOff: number,
    oport: number,
  ): number {
    const h = flowKeyHash(ea, eOff, eport, oa, oOff, oport, v6 ? 16 : 4);
    const m = Math.imul(h ^ ((type << 8) | (pif << 1) | (v6 ? 1 : 0)), 0x85ebca6b);
    return (m ^ (m >>> 13)) >>> 0;
  }

  // --------------------------------------------------------------- timers

  /** Ask handler about each ACTIVE flow of `type`, every `ms` (at least FLOW_TICK_MS); it may free the flow. */
  onTimer(type: number, ms: number, handler: (flow: number, t: number) => void): void {
    this.timers[type] = handler;
    this.period[type] = Math.max(ms, FLOW_TICK_MS);
    this.due[type] = 0;
  }

  /** The timer walk (public for tests): every ACTIVE flow whose module's period has come, last first. */
  tick(t: number): void {
    if (this.nUsed === 0) return;
    let any = false;
    for (let k = 1; k < FT_COUNT; k++) {
      const on = this.timers[k] !== null && t >= this.due[k]!;
      this.dueNow[k] = on ? 1 : 0;
      if (!on) continue;
      this.due[k] = t + this.period[k]!;
      any = true;
    }
    if (!any) return;
    for (let k = this.nUsed - 1; k >= 0; k--) {
      // a handler may free its flow (the last one moves here: already seen) but no other
      if (k >= this.nUsed) continue;
      const f = this.used[k]!;
      const type = this.type[f]!;
      if (this.state[f] === FLOW_ACTIVE && this.dueNow[type]) this.timers[type]!(f, t);
    }
  }
}

function sameBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (a[aOff + k] !== b[bOff + k]) return false;
  return true;
}
