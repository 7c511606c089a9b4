/**
 * The event loop: one thread, one epoll instance, driven from TypeScript.
 *
 * Theory of operation
 * -------------------
 * Every descriptor we watch is registered with a 32-bit reference: its event
 * kind (src/loop/kinds.ts, the one list of them) in the top 8 bits, an index
 * (flow slot, socket number...) in the lower 24. The shim copies each event out as a plain {events, ref} pair; run() looks
 * the kind up in a table of handlers and calls handler(index, events).
 *
 * While epoll_wait blocks, Bun's own event loop does not run, so the data path
 * uses no promises and no Bun timers. Timers here are periodic ticks (protocol
 * timeouts, RA intervals, port scans): each has a next deadline on the
 * monotonic clock, and the nearest one becomes the epoll_wait timeout.
 *
 * After each batch of events, the flush hooks run once (e.g. the tap backend
 * writes every frame queued during the batch in one call). The clock is read
 * once per batch, when its events arrive: time() is that reading inside
 * run() (the data path's timestamps and deadlines take it, instead of a
 * clock read per frame and per ACK), and the clock itself outside run().
 *
 * Quiet hooks give memory back when traffic stops: buffers sized for bursts
 * (a tap's batch of 64 KiB frames, a transmit arena) stay resident once a
 * burst has touched them, though an idle daemon needs none of it. A tick
 * every QUIET_MS looks whether any event came since it last looked; the
 * first time none did since start-up or the last burst, the quiet hooks run
 * once (the daemons release pages with shim_release and collect the
 * JavaScript heap), and not again until events have come and gone. The next
 * burst faults the pages back in as zeros.
 *
 * Rest: what stays after that is mostly JavaScriptCore's: the compiled code
 * of the data path and the data each compiled function keeps (several MB
 * after a few kinds of traffic), which only Bun.shrink() gives back. It
 * waits until no JavaScript runs, and run() never returns while the daemon
 * lives: so once the loop has been quiet for restMs more (restAfter; the
 * daemons take REST_MS, or PASTA_REST_MS from the environment, for tests),
 * run() returns RESTED, and runLoop() asks for the shrink, lets the runtime
 * turn once (JavaScriptCore throws the code away, collects, and hands the
 * allocator's free memory back) and runs the loop again. The next burst
 * pays for compiling its path again, which is why this waits for a long
 * quiet, not the short one of the burst buffers. A guest at rest still wakes
 * the loop now and then (neighbour probes, a router solicitation, a ping
 * every few seconds: a few events between two quiets); such a wake-up runs
 * the quiet hooks again once it is over, but it is not traffic and does not
 * postpone the rest. Only a wake-up of more than wakeEvents events
 * (WAKE_EVENTS) counts as traffic: restMs starts again at the quiet after it.
 */
import { debugOn, log } from "../log.ts";
import { sys } from "../native/ffi.ts";
import { kindName, type EventKind } from "./kinds.ts";

export const EPOLLIN = 0x001;
export const EPOLLPRI = 0x002;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 1 << 31;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;

/** How long without any event counts as quiet (see the theory of operation). */
export const QUIET_MS = 2000;
/** How long after quiet the loop rests (see the theory of operation): a daemon at rest, not a pause between bursts. */
export const REST_MS = 30_000;
/** Events between two quiets that are a wake-up, not traffic: they do not postpone the rest (see the theory of operation). */
export const WAKE_EVENTS = 100;
/** run()'s result when it stopped to rest (runLoop runs it again); exit statuses are never negative. */
export const RESTED = -1;
/** Events fetched per epoll_wait. */
const MAX_EVENTS = 128;
/** Handler kinds fit in the top 8 bits of a reference. */
const KIND_SHIFT = 24;
const INDEX_MASK = (1 << KIND_SHIFT) - 1;

export type Handler = (index: number, events: number) => void;

interface Tick {
  every: number;
  next: number;
  fn: (now: number) => void;
}

export class Loop {
  private readonly ep: number;
  private readonly handlers: (Handler | undefined)[] = new Array(256);
  private readonly pairs = new Uint32Array(MAX_EVENTS * 2);
  private readonly ticks: Tick[] = [];
  private readonly flushes: (() => void)[] = [];
  private readonly quietHooks: (() => void)[] = [];
  /** Events dispatched so far. */
  private events = 0;
  /** The event count the quiet tick saw last, and whether it ran the hooks for it. */
  private eventsSeen = 0;
  private quietDone = false;
  /** When the quiet hooks first ran after traffic (-1: not yet); restMs after it, quiet again, the loop rests (restMs 0: never). */
  private quietAt = -1;
  /** The event count when the quiet hooks last ran: what came since is a wake-up or traffic. */
  private eventsAtQuiet = 0;
  private restMs = 0;
  private restDone = false;
  private running = false;
  private exitCode = 0;
  /** When the current batch's events arrived (time()). */
  private batchAt = 0;

  /** quietMs: how long without events counts as quiet (onQuiet); wakeEvents: how many events between two quiets are not traffic (restAfter). */
  constructor(
    private readonly quietMs = QUIET_MS,
    private readonly wakeEvents = WAKE_EVENTS,
  ) {
    const ep = sys.shim_epoll_create();
    if (ep < 0) throw new Error(`epoll_create1 failed: ${-ep}`);
    this.ep = ep;
  }

  /** Register the handler of one kind; a kind has one handler (a second one throws). */
  on(kind: EventKind, handler: Handler): void {
    if (this.handlers[kind]) throw new Error(`event kind ${kindName(kind)} (${kind}) has a handler already`);
    this.handlers[kind] = handler;
  }

  /** Watch fd for events; ref = (kind, index). Returns 0 or -errno. */
  add(fd: number, events: number, kind: EventKind, index: number): number {
    return sys.shim_epoll_ctl(this.ep, EPOLL_CTL_ADD, fd, events | 0, (kind << KIND_SHIFT) | index);
  }

  /** Change the events watched for fd (the ref is given again). */
  mod(fd: number, events: number, kind: EventKind, index: number): number {
    return sys.shim_epoll_ctl(this.ep, EPOLL_CTL_MOD, fd, events | 0, (kind << KIND_SHIFT) | index);
  }

  del(fd: number): number {
    return sys.shim_epoll_ctl(this.ep, EPOLL_CTL_DEL, fd, 0, 0);
  }

  /** Call fn every `ms` milliseconds (first call after `ms`). */
  every(ms: number, fn: (now: number) => void): void {
    this.ticks.push({ every: ms, next: now() + ms, fn });
  }

  /** Run fn after every batch of events and ticks (batched writes). */
  onFlush(fn: () => void): void {
    this.flushes.push(fn);
  }

  /** Run fn once after start-up and once each time traffic stops: quietMs to 2 * quietMs after the last event. */
  onQuiet(fn: () => void): void {
    this.watchQuiet();
    this.quietHooks.push(fn);
  }

  /** Rest (run() returns RESTED) once ms have passed after the quiet that followed traffic, quiet again; once per such quiet (see the theory of operation). */
  restAfter(ms: number): void {
    this.watchQuiet();
    this.restMs = ms;
  }

  private watchQuiet(): void {
    if (this.quietHooks.length === 0 && this.restMs === 0) this.every(this.quietMs, (t) => this.checkQuiet(t));
  }

  private checkQuiet(t: number): void {
    if (this.events !== this.eventsSeen) {
      this.eventsSeen = this.events;
      this.quietDone = false;
      return;
    }
    if (!this.quietDone) {
      this.quietDone = true;
      const traffic = this.events - this.eventsAtQuiet > this.wakeEvents;
      this.eventsAtQuiet = this.events;
      if (traffic || this.quietAt < 0) {
        this.quietAt = t;
        this.restDone = false;
        if (debugOn) log.debug("loop: quiet after traffic");
      }
      for (let i = 0; i < this.quietHooks.length; i++) this.quietHooks[i]!();
    }
    if (this.restMs > 0 && !this.restDone && t - this.quietAt >= this.restMs) {
      this.restDone = true;
      this.stop(RESTED);
    }
  }

  /** Monotonic milliseconds: when the current batch's events arrived, inside run(); now() outside it (see the theory of operation). */
  time(): number {
    return this.running ? this.batchAt : now();
  }

  /** Make run() return with this code after the current batch. */
  stop(code: number): void {
    this.running = false;
    this.exitCode = code;
  }

  /** Dispatch events until stop(); returns the code given to stop(). */
  run(): number {
    this.running = true;
    while (this.running) {
      const n = sys.shim_epoll_wait(this.ep, this.pairs, MAX_EVENTS, this.timeout());
      if (n < 0) throw new Error(`epoll_wait failed: ${-n}`);
      this.batchAt = now();
      this.events += n;
      for (let i = 0; i < n; i++) {
        const ref = this.pairs[2 * i + 1]!;
        const h = this.handlers[ref >>> KIND_SHIFT];
        if (h) h(ref & INDEX_MASK, this.pairs[2 * i]!);
      }
      this.runTicks();
      for (let i = 0; i < this.flushes.length; i++) this.flushes[i]!();
    }
    return this.exitCode;
  }

  private timeout(): number {
    if (this.ticks.length === 0) return -1;
    const t = now();
    let min = Infinity;
    for (let i = 0; i < this.ticks.length; i++) min = Math.min(min, this.ticks[i]!.next - t);
    return Math.max(0, Math.ceil(min));
  }

  private runTicks(): void {
    const t = now();
    for (let i = 0; i < this.ticks.length; i++) {
      const tick = this.ticks[i]!;
      if (tick.next > t) continue;
      tick.next = t + tick.every;
      tick.fn(t);
    }
  }
}

/** Monotonic milliseconds. */
export function now(): number {
  return performance.now();
}

/**
 * Run the loop until it stops for good (its exit status), letting the
 * runtime go idle at each rest (see the theory of operation): Bun.shrink()
 * only asks, and JavaScriptCore does it once this turn of the runtime ends.
 */
export async function runLoop(loop: Loop): Promise<number> {
  for (;;) {
    const code = loop.run();
    if (code !== RESTED) return code;
    if (debugOn) log.debug("loop: at rest, compiled code given back");
    Bun.shrink();
    await Bun.sleep(0);
  }
}

/** The rest of the daemons: REST_MS, or PASTA_REST_MS from the environment (tests). */
export function restMs(): number {
  const v = Number(process.env.PASTA_REST_MS);
  return Number.isInteger(v) && v > 0 ? v : REST_MS;
}
