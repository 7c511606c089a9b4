/**
 * A guest for passt made of a real kernel: a tap device in the current network
 * namespace, relayed to passt's UNIX socket with qemu's stream framing (each
 * frame preceded by its length, 32-bit big-endian), both directions. The
 * kernel of that namespace is then the guest: its dhclient, SLAAC, ping,
 * socat... talk to passt as a VM's would.
 *
 *   unshare --net -- bun test/tools/relay.ts --socket /tmp/passt.sock [options]
 *   unshare --net -- bun test/tools/relay.ts [options] --spawn -- passt -F 3 ...
 *
 * Options:
 *   --socket PATH    connect to passt's socket at PATH
 *   --spawn -- CMD   instead: make a socket pair and run CMD with one end as
 *                    its descriptor 3 (for passt -F 3)
 *   --tap NAME       name of the tap device (default eth0)
 *   --drop PCT       drop PCT % of the frames in each direction (random)
 *   --drop-in PCT    ... only of frames from passt to the guest
 *   --drop-out PCT   ... only of frames from the guest to passt
 *
 * SIGUSR1 stops reading from passt (so that its socket fills up), a second
 * one resumes; "relay: paused" / "relay: resumed" on stderr confirm.
 *
 * It brings lo and the tap up (DAD off on the tap), prints "relay ready" on
 * stdout, relays until passt closes the connection (exit 0) or a signal
 * arrives, and prints its counters on stderr when it ends. Frames the tap
 * refuses are dropped and counted; towards the socket nothing is dropped
 * (except on purpose): when passt does not read, the relay stops reading the
 * tap until the socket drains.
 *
 * Imported (by the passt tests), this module gives the helpers that run passt
 * and such guests in a test world instead.
 */
import { ptr, type Pointer } from "bun:ffi";
import { writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { EPOLLIN, EPOLLOUT, EPOLLRDHUP, Loop } from "../../src/loop/loop.ts";
import { check, cstr, errnoName, sys } from "../../src/native/ffi.ts";
import { BUN, REPO, type Child, type ExecOptions, type ExecResult, type SpawnOptions, type World } from "../world.ts";

/** This file, run as the relay. */
export const RELAY = import.meta.path;

/**
 * argv of passt under test with args: `bun src/main.ts` in passt mode (see
 * PASST_ENV), or PASST_TEST_CMD (a command line split on spaces), e.g.
 * PASST_TEST_CMD=/usr/bin/passt to check the tests against the reference.
 */
export function passtArgv(args: string[], repo: string = REPO): string[] {
  const override = process.env.PASST_TEST_CMD?.trim();
  if (override) return [...override.split(/\s+/), ...args];
  return [BUN, join(repo, "src", "main.ts"), ...args];
}

/** Environment that makes src/main.ts run as passt. */
export const PASST_ENV: Record<string, string> = { PASST_MODE: "passt" };

/**
 * Start passt in w's host namespace; resolves once its socket is bound (or,
 * with -F, at once). opts.repo: the repository to run it from (see
 * repoForUser, for opts.user).
 */
export async function startPasst(w: World, args: string[], opts: SpawnOptions & { repo?: string } = {}): Promise<Child> {
  const { repo, ...spawnOpts } = opts;
  const c = w.spawn(w.host, passtArgv(["-f", ...args], repo), { cwd: repo, ...spawnOpts, env: { ...PASST_ENV, ...(opts.env ?? {}) } });
  if (!args.includes("-F") && !args.includes("--fd")) await c.waitFor(/addr\.path=(\S+)/, { stream: "stderr", timeoutMs: 20000 });
  return c;
}

/** A guest: a relay in a network namespace of its own, made by `unshare --net`. */
export interface Guest {
  /** the relay process, whose network namespace is the guest's */
  readonly child: Child;
  /** run cmd in the guest's network namespace */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** spawn cmd in the guest's network namespace */
  spawn(cmd: string[], opts?: SpawnOptions): Child;
  /** argv prefix that enters the guest's network namespace */
  readonly enter: string[];
}

/**
 * Start a relay (relayArgs: --socket PATH or --spawn -- CMD, --drop...) in a
 * new network namespace, from w's host namespace; resolves when it is ready.
 * The namespace goes away with the relay and whatever runs in it.
 */
export async function startGuest(w: World, relayArgs: string[]): Promise<Guest> {
  const child = w.spawn(w.host, ["unshare", "--net", "--", BUN, RELAY, ...relayArgs], { env: PASST_ENV });
  await child.waitFor("relay ready", { timeoutMs: 20000 });
  const enter = ["nsenter", `--net=/proc/${child.pid}/ns/net`, "--"];
  return {
    child,
    enter,
    exec: (cmd, opts) => w.exec(null, [...enter, ...cmd], opts),
    spawn: (cmd, opts) => w.spawn(null, [...enter, ...cmd], opts),
  };
}

// ---------------------------------------------------------------- the relay

const KIND_TAP = 1;
const KIND_SOCK = 2;
const KIND_SIGNAL = 3;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const EAGAIN = 11;
const SIGINT = 2;
const SIGTERM = 15;
const SIGUSR1 = 10;
const FRAME_ROOM = 4;
/** Largest frame either side may send. */
const MAX_FRAME = 65535 + 14;
const RX_SLOT = 65536 + 64;
const RX_BATCH = 64;
const OUT_BUF = 16 << 20;
/** Stop reading the tap while this much waits for the socket. */
const OUT_HIGH = 8 << 20;
const IN_BUF = (1 << 20) + FRAME_ROOM + MAX_FRAME;

interface RelayArgs {
  socket: string | null;
  spawn: string[] | null;
  tap: string;
  dropIn: number;
  dropOut: number;
}

function parseRelayArgs(argv: string[]): RelayArgs {
  const a: RelayArgs = { socket: null, spawn: null, tap: "eth0", dropIn: 0, dropOut: 0 };
  for (let i = 0; i < argv.length; i++) {
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${argv[i - 1]} needs a value`);
      return x;
    };
    switch (argv[i]) {
      case "--socket":
        a.socket = v();
        break;
      case "--tap":
        a.tap = v();
        break;
      case "--drop":
        a.dropIn = a.dropOut = Number(v());
        break;
      case "--drop-in":
        a.dropIn = Number(v());
        break;
      case "--drop-out":
        a.dropOut = Number(v());
        break;
      case "--spawn":
        a.spawn = argv.slice(argv[i + 1] === "--" ? i + 2 : i + 1);
        i = argv.length;
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.socket === !a.spawn) throw new Error("give exactly one of --socket PATH and --spawn -- CMD");
  return a;
}

class Relay {
  readonly stats = { toSock: 0, toSockDropped: 0, toTap: 0, toTapDropped: 0, tapRefused: 0, stalls: 0 };
  private readonly loop = new Loop();
  private readonly rx = new Uint8Array(RX_SLOT * RX_BATCH);
  private readonly rxLens = new Uint32Array(RX_BATCH);
  private readonly out = new Uint8Array(OUT_BUF);
  private readonly outBase = ptr(this.out);
  private outHead = 0;
  private outTail = 0;
  private tapPaused = false;
  private sockOut = false;
  /** SIGUSR1 toggles this: while set, nothing is read from passt (its socket fills up). */
  private sockPaused = false;
  private readonly sigBuf = new Uint8Array(16);
  private readonly inb = new Uint8Array(IN_BUF);
  private readonly inBase = ptr(this.inb);
  private inHave = 0;

  constructor(
    private readonly args: RelayArgs,
    private readonly tap: number,
    private readonly sock: number,
    private readonly sigFd: number,
  ) {
    const loop = this.loop;
    loop.on(KIND_TAP, () => this.fromTap());
    loop.on(KIND_SOCK, (_i, ev) => {
      if (ev & EPOLLOUT) this.writeSock();
      if (ev & (EPOLLIN | EPOLLRDHUP)) this.fromSock();
    });
    loop.on(KIND_SIGNAL, () => this.onSignal());
    loop.add(tap, EPOLLIN, KIND_TAP, 0);
    loop.add(sock, EPOLLIN | EPOLLRDHUP, KIND_SOCK, 0);
    loop.add(sigFd, EPOLLIN, KIND_SIGNAL, 0);
  }

  run(): number {
    return this.loop.run();
  }

  /** Frames from the guest's kernel: prefix each with its length, queue, write. */
  private fromTap(): void {
    const { rx, rxLens, out } = this;
    for (;;) {
      if (this.outTail - this.outHead > OUT_HIGH) {
        // the write below resumes the tap once the queue drains (or waits for EPOLLOUT)
        this.pauseTap(true);
        break;
      }
      const n = sys.shim_read_batch(this.tap, rx, RX_SLOT, RX_BATCH, rxLens);
      if (n <= 0) break;
      for (let i = 0; i < n; i++) {
        const len = rxLens[i]!;
        if (this.args.dropOut > 0 && Math.random() * 100 < this.args.dropOut) {
          this.stats.toSockDropped++;
          continue;
        }
        if (this.outTail + FRAME_ROOM + len > OUT_BUF) this.compactOut();
        const t = this.outTail;
        out[t] = len >>> 24;
        out[t + 1] = (len >>> 16) & 255;
        out[t + 2] = (len >>> 8) & 255;
        out[t + 3] = len & 255;
        out.set(rx.subarray(i * RX_SLOT, i * RX_SLOT + len), t + FRAME_ROOM);
        this.outTail = t + FRAME_ROOM + len;
        this.stats.toSock++;
      }
      if (n < RX_BATCH) break;
    }
    this.writeSock();
  }

  private compactOut(): void {
    this.out.copyWithin(0, this.outHead, this.outTail);
    this.outTail -= this.outHead;
    this.outHead = 0;
  }

  private writeSock(): void {
    while (this.outHead < this.outTail) {
      const n = sys.shim_write(this.sock, (this.outBase + this.outHead) as Pointer, this.outTail - this.outHead);
      if (n < 0) {
        if (n !== -EAGAIN) this.finish(`write to passt: ${errnoName(-n)}`, 1);
        else if (!this.sockOut) {
          this.sockOut = true;
          this.stats.stalls++;
          this.watchSock();
        }
        return;
      }
      this.outHead += n;
    }
    this.outHead = this.outTail = 0;
    if (this.sockOut) {
      this.sockOut = false;
      this.watchSock();
    }
    if (this.tapPaused) this.pauseTap(false);
  }

  private watchSock(): void {
    this.loop.mod(this.sock, (this.sockPaused ? 0 : EPOLLIN | EPOLLRDHUP) | (this.sockOut ? EPOLLOUT : 0), KIND_SOCK, 0);
  }

  private onSignal(): void {
    const n = sys.shim_read(this.sigFd, this.sigBuf, 16);
    for (let i = 0; i < n; i++) {
      if (this.sigBuf[i] !== SIGUSR1) return this.finish("signal", 0);
      this.sockPaused = !this.sockPaused;
      this.watchSock();
      writeSync(2, `relay: ${this.sockPaused ? "paused" : "resumed"}\n`);
    }
  }

  private pauseTap(on: boolean): void {
    if (this.tapPaused === on) return;
    this.tapPaused = on;
    this.loop.mod(this.tap, on ? 0 : EPOLLIN, KIND_TAP, 0);
  }

  /** Bytes from passt: cut them into frames, give each to the guest's kernel. */
  private fromSock(): void {
    const b = this.inb;
    for (;;) {
      const n = sys.shim_read(this.sock, (this.inBase + this.inHave) as Pointer, IN_BUF - this.inHave);
      if (n < 0) {
        if (n !== -EAGAIN) this.finish(`read from passt: ${errnoName(-n)}`, 1);
        return;
      }
      if (n === 0) return this.finish("passt closed the connection", 0);
      this.inHave += n;
      let pos = 0;
      while (this.inHave - pos >= FRAME_ROOM) {
        const len = ((b[pos]! << 24) | (b[pos + 1]! << 16) | (b[pos + 2]! << 8) | b[pos + 3]!) >>> 0;
        if (len === 0 || len > MAX_FRAME) return this.finish(`bad frame length ${len} from passt`, 1);
        if (this.inHave - pos - FRAME_ROOM < len) break;
        if (this.args.dropIn > 0 && Math.random() * 100 < this.args.dropIn) this.stats.toTapDropped++;
        else if (sys.shim_write(this.tap, (this.inBase + pos + FRAME_ROOM) as Pointer, len) < 0) this.stats.tapRefused++;
        else this.stats.toTap++;
        pos += FRAME_ROOM + len;
      }
      b.copyWithin(0, pos, this.inHave);
      this.inHave -= pos;
    }
  }

  private finish(why: string, code: number): void {
    writeSync(2, `relay: ${why}; ${JSON.stringify(this.stats)}\n`);
    this.loop.stop(code);
  }
}

function connectUnix(path: string): number {
  const fd = check(sys.shim_socket(AF_UNIX, SOCK_STREAM, 0), "socket");
  const p = new TextEncoder().encode(path);
  const sa = new Uint8Array(110);
  sa[0] = AF_UNIX;
  sa.set(p, 2);
  check(sys.shim_connect(fd, sa, 2 + p.length + 1), `connect to ${path}`);
  return fd;
}

function openTap(name: string): number {
  const fd = sys.shim_ns_tap_open(-1, cstr(name), 0, new Uint8Array(16));
  if (fd < 0) throw new Error(`cannot create tap ${name}: ${errnoName(-fd)}`);
  return fd;
}

function ip(args: string[]): void {
  const r = Bun.spawnSync(["ip", ...args], { stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.toString()}`);
}

function relayMain(argv: string[]): number {
  const args = parseRelayArgs(argv);
  let sock: number;
  if (args.spawn) {
    const sv = new Int32Array(2);
    check(sys.shim_socketpair(sv), "socketpair");
    Bun.spawn(args.spawn, { stdio: ["ignore", "inherit", "inherit", sv[1]!] });
    sys.shim_close(sv[1]!);
    sock = sv[0]!;
  } else {
    sock = connectUnix(args.socket!);
  }
  sys.shim_set_nonblock(sock);
  const tap = openTap(args.tap);
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${args.tap}/accept_dad`, "0");
  } catch {
    /* no IPv6 here: nothing to wait for */
  }
  ip(["link", "set", "lo", "up"]);
  ip(["link", "set", args.tap, "up"]);
  const sigFd = check(sys.shim_signal_pipe(new Int32Array([SIGINT, SIGTERM, SIGUSR1]), 3), "signals");
  const relay = new Relay(args, tap, sock, sigFd);
  writeSync(1, "relay ready\n");
  return relay.run();
}

if (import.meta.main) process.exit(relayMain(process.argv.slice(2)));
