#!/usr/bin/env bun
/**
 * The body of test/unit/dispatch-fuzz.test.ts, run in a process of its own
 * inside an empty network namespace (the test starts it through `unshare
 * --net`): flows the fuzzed frames open (TCP connects, UDP sends) then meet a
 * namespace with no route anywhere, so nothing leaves the machine.
 *
 *   bun test/tools/dispatch-fuzz-worker.ts FRAMES SEED [SINK_BYTES]
 *
 * A real Dispatcher with a real Loop, a hand-made Config and a checking fake
 * FrameSink gets FRAMES frames: random bytes, and real guest frames
 * (test/tools/guest-frames.ts) truncated, extended, with flipped bytes and
 * bogus length fields, copied at random offsets of a large receive buffer as
 * the tap does. Between batches the loop turns once, so that socket events
 * and timers run too.
 *
 * Prints one JSON line: frames, exceptions (the first few with the frame in
 * hex, to reproduce), sink misuse, heap and descriptor counts after warm-up
 * and at the end, the dispatcher's stats, and the time taken.
 */
import { readFileSync, readdirSync } from "node:fs";
import { parseIp4, parseIp6, parseMac, type Config } from "../../src/conf/config.ts";
import { Dispatcher } from "../../src/dispatch.ts";
import * as tcpFlows from "../../src/flows/tcp.ts";
import { Loop } from "../../src/loop/loop.ts";
import type { FrameSink } from "../../src/tap/sink.ts";
import * as wfx from "../unit/wire-fixtures.ts";
import { GUEST_FRAMES } from "./guest-frames.ts";
import { turner } from "./loop-turn.ts";
import { rng } from "./rng.ts";

const FRAMES = Number(process.argv[2] ?? 300000);
const SEED = Number(process.argv[3] ?? 1);
const SINK_BYTES = Number(process.argv[4] ?? 4 << 20);
/** Frames between loop turns and sink flushes, as a tap read batch. */
const BATCH = 64;
/** Frames before the baseline measurement: tables, buffers and JIT settle. */
const WARMUP = Math.min(30000, Math.floor(FRAMES / 5));
const MEASURE_EVERY = Math.max(1, Math.floor((FRAMES - WARMUP) / 4));
const MAX_REPORTED = 5;
/** Longest wait, after the last frame, for flows to time out: past the TCP handshake timeout (PASTA_UDP_TIMEOUT_MS is set short by the test). */
const DRAIN_MS = 15000;

/** The test world's addresses, as pasta would build them there. */
function config(): Config {
  return {
    mode: "pasta",
    ourMac: parseMac("9a:55:9a:55:9a:55"),
    nsMac: new Uint8Array(6),
    nsIfname: "eth0",
    mtu: 65520,
    ip4: {
      addr: parseIp4("192.0.2.2"),
      prefixLen: 24,
      gw: parseIp4("192.0.2.1"),
      dns: [parseIp4("198.51.100.53")],
      dnsMatch: 0,
      dnsHost: 0,
      mapHostLoopback: 0,
      mapGuestAddr: 0,
      ifname: "eth0",
      copyAddrs: false,
      copyRoutes: false,
    },
    ip6: {
      addr: parseIp6("2001:db8::2"),
      prefixLen: 64,
      gw: parseIp6("fe80::1"),
      ourLL: parseIp6("fe80::1"),
      dns: [parseIp6("2001:db8:1::53")],
      dnsMatch: null,
      dnsHost: null,
      mapHostLoopback: null,
      mapGuestAddr: null,
      ifname: "eth0",
      copyAddrs: false,
      copyRoutes: false,
    },
    dnsSearch: ["example.test"],
    noDhcp: false,
    noNdp: false,
    noDhcpv6: false,
    noRa: false,
    noIcmp: true, // no ICMP echo sockets in a unit test
    noUdp: false,
    configNet: false,
    outbound4: 0,
    outbound6: null,
    outboundIf4: null,
    outboundIf6: null,
    dhcpDns: true,
    dhcpSearch: true,
    hostname: "",
    fqdn: "",
  };
}

/**
 * A FrameSink that checks how it is used: every commit must be of a frame
 * from the last alloc, inside the buffer, no longer than asked for, with at
 * least an Ethernet header.
 */
class CheckingSink implements FrameSink {
  /**
   * SINK_BYTES (argv[4]): 4 MiB, as the tap's transmit arena, takes a whole
   * UDP receive batch of 64 KiB datagrams; 1 MiB takes batches cut to fit it
   * (framesThatFit), and fills up sooner: flows must still time out then.
   */
  readonly buf = new Uint8Array(SINK_BYTES);
  readonly frameRoom = 4;
  readonly maxAlloc = SINK_BYTES - this.frameRoom;
  readonly tsoMax = 0;
  readonly csumOffload = false;
  private pos = 0;
  private lastOff = -1;
  private lastMax = 0;
  committed = 0;
  bytes = 0;
  misuse: string[] = [];

  alloc(maxLen: number): number {
    if (!(maxLen > 0) || (maxLen | 0) !== maxLen) this.bad(`alloc(${maxLen})`);
    const off = this.pos + this.frameRoom;
    if (off + maxLen > this.buf.length) return -1;
    this.lastOff = off;
    this.lastMax = maxLen;
    return off;
  }

  commit(off: number, len: number): void {
    if (off < this.lastOff || off + len > this.lastOff + this.lastMax || off + len > this.buf.length) {
      this.bad(`commit(${off}, ${len}) outside alloc(${this.lastMax}) at ${this.lastOff}`);
      return;
    }
    if ((len | 0) !== len || len < 14) this.bad(`commit(${off}, ${len}): not a frame`);
    this.committed++;
    this.bytes += len;
    this.pos = off + len;
  }

  /** The tap wrote the batch: start again at the beginning. */
  flush(): void {
    this.pos = 0;
    this.lastOff = -1;
  }

  private bad(what: string): void {
    if (this.misuse.length < MAX_REPORTED) this.misuse.push(what);
    else this.misuse[MAX_REPORTED - 1] = `${what} (and more)`;
  }
}

const seeds: [string, Uint8Array][] = [
  ...Object.entries(GUEST_FRAMES),
  ...Object.entries(wfx)
    .filter(([, v]) => v instanceof Uint8Array)
    .map(([k, v]) => [`wire.${k}`, v as Uint8Array] as [string, Uint8Array]),
];

/** Byte offsets of fields whose bogus values exercise length checks (by ethertype). */
function lengthFields(f: Uint8Array): number[] {
  const et = f.length >= 14 ? (f[12]! << 8) | f[13]! : 0;
  if (et === 0x0800 && f.length >= 34) {
    const l4 = 14 + (f[14]! & 15) * 4;
    // IHL, total length, fragment offset, UDP length / TCP data offset, DHCP option area
    return [14, 16, 17, 20, 21, l4 + 4, l4 + 5, l4 + 12, l4 + 8 + 240 + 1, l4 + 8 + 240 + 4];
  }
  if (et === 0x86dd && f.length >= 54) {
    // payload length, next header, UDP length / TCP data offset / option lengths
    return [18, 19, 20, 54 + 1, 54 + 4, 54 + 5, 54 + 12, 54 + 8 + 4 + 3, 54 + 8 + 4 + 1];
  }
  if (et === 0x0806) return [18, 19, 20, 21];
  return [12, 13];
}

/** One fuzzed frame written at `at` in rx; returns its length. */
function makeFrame(rnd: () => number, rx: Uint8Array, at: number): number {
  const kind = rnd() % 100;
  if (kind < 8) {
    const len = rnd() % 1600;
    for (let i = 0; i < len; i++) rx[at + i] = rnd() & 255;
    return len;
  }
  const [, seed] = seeds[rnd() % seeds.length]!;
  let len = seed.length;
  rx.set(seed, at);
  if (kind < 18) return len; // unchanged: the real handlers run, flows open
  const steps = 1 + (rnd() % 4);
  for (let s = 0; s < steps; s++) {
    switch (rnd() % 8) {
      case 0: // truncate
        len = rnd() % (len + 1);
        break;
      case 1: {
        // extend with garbage
        const extra = rnd() % 300;
        for (let i = 0; i < extra; i++) rx[at + len + i] = rnd() & 255;
        len += extra;
        break;
      }
      case 2:
      case 3: {
        // flip bits of a few bytes
        const n = 1 + (rnd() % 4);
        for (let i = 0; i < n && len > 0; i++) rx[at + (rnd() % len)]! ^= 1 << (rnd() % 8);
        break;
      }
      case 4: // a random byte somewhere
        if (len > 0) rx[at + (rnd() % len)] = rnd() & 255;
        break;
      case 5:
      case 6: {
        // a bogus value in a length (or length-like) field
        const fields = lengthFields(rx.subarray(at, at + len));
        const o = fields[rnd() % fields.length]!;
        const v = [0, 1, 0xff, 0xffff, len, len + 1, len - 1, rnd()][rnd() % 8]! & 0xffff;
        if (o + 1 < len) {
          rx[at + o] = v >> 8;
          rx[at + o + 1] = v & 255;
        } else if (o < len) rx[at + o] = v & 255;
        break;
      }
      case 7: {
        // new ports and addresses: many distinct flows
        const o = 14 + (rnd() % Math.max(1, Math.min(60, len - 14)));
        if (o + 1 < len) {
          rx[at + o] = rnd() & 255;
          rx[at + o + 1] = rnd() & 255;
        }
        break;
      }
    }
  }
  return len;
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

/** Sockets of this (private) network namespace, by /proc/net table. */
function sockets(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of ["tcp", "tcp6", "udp", "udp6", "raw", "raw6", "icmp", "icmp6"]) {
    try {
      out[t] = readFileSync(`/proc/self/net/${t}`, "utf8").trim().split("\n").length - 1;
    } catch {
      /* no such table */
    }
  }
  return out;
}

function heap(): number {
  Bun.gc(true);
  return process.memoryUsage().heapUsed;
}

const cfg = config();
const loop = new Loop();
const sink = new CheckingSink();
const d = new Dispatcher(cfg, loop, sink);
// One loop turn: epoll events (socket errors of flows) and due timers, then back here.
const turn = turner(loop);
type Batched = { batchEnd?: () => void; flush?: () => void };
const batched = d as unknown as Batched;

const rnd = rng(SEED);
const rx = new Uint8Array(1 << 18);
const exceptions: { i: number; error: string; frame: string }[] = [];
let exceptionCount = 0;
const samples: { frames: number; heap: number; fds: number; sockets: Record<string, number> }[] = [];
const t0 = performance.now();
const fdsBefore = openFds();

try {
  d.start();
} catch (e) {
  exceptionCount++;
  exceptions.push({ i: -1, error: `start(): ${(e as Error).stack ?? e}`, frame: "" });
}

for (let i = 0; i < FRAMES; i++) {
  const at = rnd() % (rx.length - 4096);
  const len = makeFrame(rnd, rx, at);
  try {
    d.frame(rx, at, len);
  } catch (e) {
    exceptionCount++;
    if (exceptions.length < MAX_REPORTED) {
      exceptions.push({ i, error: String((e as Error).stack ?? e), frame: Buffer.from(rx.subarray(at, at + len)).toString("hex") });
    }
  }
  // the frame's bytes are the receive buffer's: the next read overwrites them
  rx.fill(0xee, at, at + len);
  if ((i + 1) % BATCH === 0) {
    try {
      batched.batchEnd?.();
      turn();
      batched.flush?.();
    } catch (e) {
      exceptionCount++;
      if (exceptions.length < MAX_REPORTED) exceptions.push({ i, error: `loop turn: ${(e as Error).stack ?? e}`, frame: "" });
    }
    sink.flush();
  }
  if (i + 1 === WARMUP || (i + 1 > WARMUP && (i + 1 - WARMUP) % MEASURE_EVERY === 0) || i + 1 === FRAMES) {
    samples.push({ frames: i + 1, heap: heap(), fds: openFds(), sockets: sockets() });
  }
}

// Drain: let every flow time out (the test sets short timeouts) until the
// descriptors are back to where they started, for at most DRAIN_MS; the test
// asserts what is left, not how long it took.
const fuzzMs = performance.now() - t0;
const drainEnd = performance.now() + DRAIN_MS;
while (openFds() > fdsBefore && performance.now() < drainEnd) {
  try {
    batched.batchEnd?.();
    turn();
    batched.flush?.();
  } catch (e) {
    exceptionCount++;
    if (exceptions.length < MAX_REPORTED) exceptions.push({ i: FRAMES, error: `drain: ${(e as Error).stack ?? e}`, frame: "" });
  }
  sink.flush();
  Bun.sleepSync(5);
}

console.log(
  JSON.stringify({
    frames: FRAMES,
    seed: SEED,
    seeds: seeds.length,
    exceptionCount,
    exceptions,
    misuse: sink.misuse,
    committed: sink.committed,
    samples,
    fdsBefore,
    fdsAfterDrain: openFds(),
    socketsAfterDrain: sockets(),
    stats: d.stats,
    tcpStats: (tcpFlows as Record<string, unknown>).tcpStats ?? null,
    ms: Math.round(fuzzMs),
  }),
);
process.exit(0);
