/**
 * The test world of the end-to-end tests (bun test test/e2e/...).
 *
 *   upstream ns                                  host ns (stands in for the machine)
 *   ┌──────────────────────────────┐            ┌───────────────────────────────┐
 *   │ lo: 198.51.100.1/32          │            │                               │
 *   │     198.51.100.53/32 (DNS)   │   veth     │ eth0 192.0.2.2/24             │
 *   │     2001:db8:1::1/128        │◄──────────►│      2001:db8::2/64           │
 *   │     2001:db8:1::53/128 (DNS) │            │ default via 192.0.2.1         │
 *   │ gw0 192.0.2.1/24             │            │ default via fe80::1 dev eth0  │
 *   │     2001:db8::1/64, fe80::1  │            │ /etc/resolv.conf: private one │
 *   │ forwarding on                │            │ ping_group_range 0 2147483647 │
 *   └──────────────────────────────┘            └───────────────────────────────┘
 *
 * Nothing here has a route to the machine's real interfaces: the namespaces
 * only know each other. pasta runs in the host namespace; its guest is the
 * namespace pasta makes.
 *
 * Usage:
 *   import { createWorld, describeE2E } from "../world.ts";
 *   describeE2E("something", () => {
 *     let w: World;
 *     beforeAll(async () => { w = await createWorld({ dns: true }); });
 *     afterAll(async () => { await w?.destroy(); });
 *     test("ping", async () => {
 *       const r = await w.exec(w.host, ["ping", "-c1", "-W2", ADDR.remote4]);
 *       expect(r.code).toBe(0);
 *     });
 *   });
 *
 * Every namespace, /etc/netns directory, temp dir and child process a world
 * makes is removed by destroy(), and by an exit hook if a test run dies first.
 * Only processes started here (tracked by pid, each in its own process group)
 * and processes still inside this world's own namespaces are ever killed.
 */

import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

// ---------------------------------------------------------------------------
// Constants of the world

export const ADDR = {
  /** host namespace, eth0 */
  host4: "192.0.2.2",
  host6: "2001:db8::2",
  /** gateway (upstream end of the veth) */
  gw4: "192.0.2.1",
  gw6: "2001:db8::1",
  /** link-local IPv6 gateway the host's default route points at */
  gwLL: "fe80::1",
  prefix4: 24,
  prefix6: 64,
  net4: "192.0.2.0",
  net6: "2001:db8::",
  /** "remote" addresses, on the upstream namespace's loopback */
  remote4: "198.51.100.1",
  remote6: "2001:db8:1::1",
  /** where the DNS responder listens (also remote, also on upstream's lo) */
  dns4: "198.51.100.53",
  dns6: "2001:db8:1::53",
  hostMac: "02:42:c0:00:02:02",
  upstreamMac: "02:42:c0:00:02:01",
  searchDomain: "example.test",
  /** name the DNS responder knows: A remote4, AAAA remote6 */
  remoteName: "remote.example.test",
  /** name the DNS responder knows: A dns4, AAAA dns6 */
  dnsName: "dns.example.test",
} as const;

export const HOST_IF = "eth0";
export const UPSTREAM_IF = "gw0";

/** Root of the repository (this file lives in test/). */
export const REPO = resolve(import.meta.dir, "..");
/** The Bun running the tests. */
export const BUN = process.execPath;
export const TOOLS = join(import.meta.dir, "tools");

export const DEFAULT_RESOLV_CONF =
  `# private resolv.conf of the test world (never the machine's)\n` +
  `nameserver ${ADDR.dns4}\nnameserver ${ADDR.dns6}\nsearch ${ADDR.searchDomain}\n`;

/** Link-local address the kernel derives (EUI-64) from a MAC address. */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(":").map((x) => parseInt(x, 16));
  const e = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const g: string[] = [];
  for (let i = 0; i < 8; i += 2) g.push(((e[i]! << 8) | e[i + 1]!).toString(16));
  while (g.length > 1 && g[0] === "0") g.shift(); // leading zeros join the "::" after fe80
  return `fe80::${g.join(":")}`;
}

// ---------------------------------------------------------------------------
// Process helpers

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  /** true when the command was killed because it ran past its timeout */
  timedOut: boolean;
  signal: string | null;
}

export interface ExecOptions {
  /** milliseconds before the process group gets SIGKILL (default 30000) */
  timeoutMs?: number;
  /** extra environment variables */
  env?: Record<string, string>;
  cwd?: string;
  /** data for stdin (default: no stdin) */
  input?: string | Uint8Array;
  /** run as the unprivileged test user (true: ensureTestUser()) */
  user?: boolean | TestUser;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** "pipe" to write to child.stdin, default "ignore" */
  stdin?: "pipe" | "ignore";
  user?: boolean | TestUser;
}

/** A process started by spawn(). Output is collected as it arrives. */
export interface Child {
  readonly pid: number;
  readonly proc: Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  readonly argv: string[];
  /** resolves with the exit code (signal deaths: 128 + signal number) */
  readonly exited: Promise<number>;
  /** everything printed so far */
  stdout(): string;
  stderr(): string;
  /** write to stdin (spawned with stdin: "pipe") */
  write(data: string | Uint8Array): void;
  /**
   * Wait until stdout (or stderr, or either) matches; resolves with the match.
   * Rejects on timeout or if the process exits first without matching.
   */
  waitFor(pattern: RegExp | string, opts?: { timeoutMs?: number; stream?: "stdout" | "stderr" | "both" }): Promise<RegExpMatchArray>;
  /** SIGTERM the process group, SIGKILL after graceMs (default 2000); resolves with the exit code */
  kill(opts?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<number>;
}

const tracked = new Set<ChildImpl>();

function signalNumber(sig: string | number | null | undefined): number {
  if (typeof sig === "number") return sig;
  const table: Record<string, number> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGPIPE: 13,
    SIGALRM: 14,
    SIGTERM: 15,
  };
  return sig ? (table[sig] ?? 0) : 0;
}

function killGroup(pid: number, sig: NodeJS.Signals | number): void {
  // Every child is spawned detached (setsid), so its pid is its process group.
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  }
}

/** A process that exists and is not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX] /s.test(stat);
  } catch {
    return false;
  }
}

class ChildImpl implements Child {
  readonly pid: number;
  readonly exited: Promise<number>;
  private out = "";
  private err = "";
  private done = false;
  private waiters = new Set<() => void>();
  private outDone: Promise<void>;
  private errDone: Promise<void>;

  constructor(
    readonly proc: Subprocess<"pipe" | "ignore", "pipe", "pipe">,
    readonly argv: string[],
  ) {
    this.pid = proc.pid;
    this.outDone = this.pump(proc.stdout, (s) => (this.out += s));
    this.errDone = this.pump(proc.stderr, (s) => (this.err += s));
    this.exited = proc.exited.then(async (code) => {
      // Let the pipes drain, but never hang on a grandchild holding them open.
      await Promise.race([Promise.all([this.outDone, this.errDone]), Bun.sleep(500)]);
      this.done = true;
      tracked.delete(this);
      this.notify();
      return proc.signalCode ? 128 + signalNumber(proc.signalCode) : code;
    });
  }

  private async pump(stream: ReadableStream<Uint8Array>, add: (s: string) => void) {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) {
        add(dec.decode(chunk, { stream: true }));
        this.notify();
      }
    } catch {
      /* stream closed */
    }
  }

  private notify() {
    for (const w of [...this.waiters]) w();
  }

  stdout() {
    return this.out;
  }
  stderr() {
    return this.err;
  }

  write(data: string | Uint8Array) {
    const sink = this.proc.stdin as any;
    if (!sink || typeof sink.write !== "function") throw new Error('spawned without stdin: "pipe"');
    sink.write(data);
    sink.flush?.();
  }

  waitFor(pattern: RegExp | string, opts: { timeoutMs?: number; stream?: "stdout" | "stderr" | "both" } = {}): Promise<RegExpMatchArray> {
    const timeoutMs = opts.timeoutMs ?? 10000;
    const stream = opts.stream ?? "stdout";
    const re = typeof pattern === "string" ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) : pattern;
    const text = () => (stream === "stdout" ? this.out : stream === "stderr" ? this.err : this.out + "\n" + this.err);
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        const m = text().match(re);
        if (m) {
          finish();
          resolvePromise(m);
        } else if (this.done) {
          finish();
          reject(new Error(`${this.argv.join(" ")} exited before printing ${re}\nstdout: ${this.out}\nstderr: ${this.err}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(
          new Error(`timeout (${timeoutMs} ms) waiting for ${re} from ${this.argv.join(" ")}\nstdout: ${this.out}\nstderr: ${this.err}`),
        );
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  async kill(opts: { signal?: NodeJS.Signals; graceMs?: number } = {}): Promise<number> {
    if (!this.done) {
      killGroup(this.pid, opts.signal ?? "SIGTERM");
      const t = await Promise.race([this.exited, Bun.sleep(opts.graceMs ?? 2000).then(() => null)]);
      if (t === null) killGroup(this.pid, "SIGKILL");
    }
    return this.exited;
  }

  /** exit-hook path: no waiting */
  killNow() {
    if (!this.done) killGroup(this.pid, "SIGKILL");
  }
}

function baseEnv(extra?: Record<string, string>): Record<string, string> {
  return { ...(process.env as Record<string, string>), ...(extra ?? {}) };
}

function resolveUser(u: boolean | TestUser | undefined): TestUser | null {
  if (!u) return null;
  return u === true ? ensureTestUser() : u;
}

/** argv prefix to enter a namespace (null: stay in the current one). */
function nsPrefix(ns: string | null): string[] {
  return ns ? ["ip", "netns", "exec", ns] : [];
}

function buildArgv(ns: string | null, cmd: string[], user: TestUser | null, env?: Record<string, string>): string[] {
  return [...nsPrefix(ns), ...(user ? asUser(cmd, user, env) : cmd)];
}

/** Spawn a command (in namespace ns, or the current one for null), tracked for teardown. */
export function spawnIn(ns: string | null, cmd: string[], opts: SpawnOptions = {}): Child {
  const user = resolveUser(opts.user);
  const argv = buildArgv(ns, cmd, user, opts.env);
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd ?? REPO,
    env: baseEnv(user ? undefined : opts.env),
    stdin: opts.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
    detached: true,
  }) as Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  const child = new ChildImpl(proc, argv);
  tracked.add(child);
  return child;
}

/** Run a command to completion (in namespace ns, or the current one for null). */
export async function execIn(ns: string | null, cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const user = resolveUser(opts.user);
  const argv = buildArgv(ns, cmd, user, opts.env);
  const input = opts.input === undefined ? "ignore" : typeof opts.input === "string" ? new TextEncoder().encode(opts.input) : opts.input;
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd ?? REPO,
    env: baseEnv(user ? undefined : opts.env),
    stdin: input,
    stdout: "pipe",
    stderr: "pipe",
    detached: true,
  });
  const child = new ChildImpl(proc as Subprocess<"pipe" | "ignore", "pipe", "pipe">, argv);
  tracked.add(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.killNow();
  }, opts.timeoutMs ?? 30000);
  try {
    const code = await child.exited;
    return {
      code,
      stdout: child.stdout(),
      stderr: child.stderr(),
      timedOut,
      signal: proc.signalCode == null ? null : String(proc.signalCode),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Synchronous run, for set-up and teardown steps (current namespace). */
export function run(cmd: string[], opts: { input?: string; timeoutMs?: number } = {}): ExecResult {
  const r = Bun.spawnSync(cmd, {
    stdin: opts.input === undefined ? "ignore" : new TextEncoder().encode(opts.input),
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 30000,
    killSignal: "SIGKILL",
  });
  return {
    code: r.exitCode ?? 128 + signalNumber(r.signalCode),
    stdout: r.stdout?.toString() ?? "",
    stderr: r.stderr?.toString() ?? "",
    timedOut: !!(r as any).exitedDueToTimeout,
    signal: r.signalCode == null ? null : String(r.signalCode),
  };
}

function mustRun(cmd: string[], what: string, input?: string): string {
  const r = run(cmd, { input });
  if (r.code !== 0) throw new Error(`${what}: ${cmd.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// Can end-to-end tests run here?

export interface E2ECheck {
  ok: boolean;
  reason: string;
}

let e2eCheck: E2ECheck | null = null;

/** Root, a working `ip netns` (checked by making one) and /dev/net/tun. Cached. */
export function canRunE2E(): E2ECheck {
  if (e2eCheck) return e2eCheck;
  const fail = (reason: string) => (e2eCheck = { ok: false, reason });
  if (process.platform !== "linux") return fail("not Linux");
  if (process.getuid?.() !== 0) return fail("not root (end-to-end tests build network namespaces)");
  if (!existsSync("/dev/net/tun")) return fail("/dev/net/tun is missing");
  if (!Bun.which("ip")) return fail("`ip` (iproute2) is not installed");
  const probe = `${DEFAULT_PREFIX}-probe-${process.pid}`;
  const add = run(["ip", "netns", "add", probe], { timeoutMs: 10000 });
  if (add.code !== 0) return fail(`cannot create a network namespace: ${add.stderr.trim() || `ip netns add exited ${add.code}`}`);
  const lo = run(["ip", "-n", probe, "link", "set", "lo", "up"], { timeoutMs: 10000 });
  run(["ip", "netns", "del", probe], { timeoutMs: 10000 });
  if (lo.code !== 0) return fail(`cannot configure a network namespace: ${lo.stderr.trim()}`);
  return (e2eCheck = { ok: true, reason: "" });
}

let skipNoted = false;

/** Print, once per test run, the one line that says why end-to-end tests are skipped. */
export function noteE2ESkip(): void {
  const c = canRunE2E();
  if (c.ok || skipNoted) return;
  skipNoted = true;
  console.log(`SKIP end-to-end tests: ${c.reason}`);
}

/**
 * describe() for end-to-end tests: a plain describe when canRunE2E() holds,
 * otherwise describe.skip plus one clear line on stdout.
 */
export function describeE2E(name: string, fn: () => void): void {
  // Required lazily so that this module also loads outside `bun test`.
  const { describe } = require("bun:test") as typeof import("bun:test");
  if (canRunE2E().ok) describe(name, fn);
  else {
    noteE2ESkip();
    describe.skip(name, fn);
  }
}

// ---------------------------------------------------------------------------
// Unprivileged test user

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** a private, writable HOME for this test process */
  home: string;
}

export const TEST_USER = "pastatest";
const users = new Map<string, TestUser>();
const tempDirs = new Set<string>();

function lookupUser(name: string): { uid: number; gid: number } | null {
  const r = run(["getent", "passwd", name]);
  if (r.code !== 0) return null;
  const f = r.stdout.trim().split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/**
 * Make sure the unprivileged user exists (idempotent, safe against a parallel
 * run creating it too), open /dev/net/tun to everyone, and give the user a
 * private HOME for this process. Needs root.
 */
export function ensureTestUser(name = TEST_USER): TestUser {
  const known = users.get(name);
  if (known) return known;
  sweepStaleOnce(DEFAULT_PREFIX);
  let ids = lookupUser(name);
  if (!ids) {
    const r = run([
      "useradd",
      "--system",
      "--user-group",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      name,
    ]);
    ids = lookupUser(name);
    if (!ids) throw new Error(`cannot create user ${name}: ${r.stderr}`);
  }
  chmodSync("/dev/net/tun", 0o666);
  const home = mkdtempSync(join(tmpdir(), `${name}-home-${process.pid}-`));
  chownSync(home, ids.uid, ids.gid);
  chmodSync(home, 0o700);
  tempDirs.add(home);
  const u: TestUser = { name, uid: ids.uid, gid: ids.gid, home };
  users.set(name, u);
  return u;
}

/**
 * argv that runs cmd as the test user (setpriv: real and effective uid/gid,
 * supplementary groups of the user, no inheritable capabilities) with a clean
 * environment: PATH, HOME, USER, LOGNAME, LANG, TMPDIR, plus env.
 */
export function asUser(cmd: string[], user: TestUser = ensureTestUser(), env: Record<string, string> = {}): string[] {
  const vars: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    LANG: "C.UTF-8",
    TMPDIR: "/tmp",
    ...env,
  };
  return [
    "setpriv",
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--init-groups",
    "--inh-caps=-all",
    "--",
    "env",
    "-i",
    ...Object.entries(vars).map(([k, v]) => `${k}=${v}`),
    ...cmd,
  ];
}

/** Run a command as the test user in the current namespace (or ns). */
export function execAsUser(cmd: string[], opts: ExecOptions & { ns?: string | null } = {}): Promise<ExecResult> {
  return execIn(opts.ns ?? null, cmd, { ...opts, user: opts.user || true });
}

let userRepo: string | null = null;

/**
 * A copy of the repository the test user can read: REPO itself when the user
 * can already reach it, otherwise a world-readable copy under /tmp (src,
 * native, node_modules and the top-level files), made once per process.
 */
export function repoForUser(user: TestUser = ensureTestUser(), opts: { copy?: boolean } = {}): string {
  if (userRepo && !opts.copy) return userRepo;
  const probe = run(asUser(["test", "-r", join(REPO, "package.json"), "-a", "-x", join(REPO, "src")], user));
  if (probe.code === 0 && !opts.copy) return (userRepo = REPO);
  const dir = mkdtempSync(join(tmpdir(), `pasta-repo-${process.pid}-`));
  tempDirs.add(dir);
  for (const entry of ["package.json", "bunfig.toml", "tsconfig.json", "bun.lock", "src", "native", "node_modules", "test"]) {
    const from = join(REPO, entry);
    if (existsSync(from)) cpSync(from, join(dir, entry), { recursive: true, verbatimSymlinks: true });
  }
  run(["chmod", "-R", "a+rX", dir]);
  chmodSync(dir, 0o755);
  return (userRepo = dir);
}

// ---------------------------------------------------------------------------
// The world

export interface WorldOptions {
  /** namespace name prefix (default "pt"); names are PREFIX-PID-N-h / -u */
  prefix?: string;
  /** MTU of the veth pair (default 1500) */
  mtu?: number;
  /** start the DNS responder in the upstream namespace (default false) */
  dns?: boolean;
  /** content of the host namespace's /etc/resolv.conf */
  resolvConf?: string;
}

export interface World {
  /** unique id, also the common part of the namespace names */
  readonly id: string;
  /** name of the host namespace (pasta runs here) */
  readonly host: string;
  /** name of the upstream namespace (gateway, remote servers, DNS) */
  readonly upstream: string;
  readonly hostIf: string;
  readonly upstreamIf: string;
  /** link-local address of the host's eth0 (from its fixed MAC) */
  readonly hostLinkLocal: string;
  readonly mtu: number;
  /** what the host namespace sees as /etc/resolv.conf */
  readonly resolvConf: string;
  /** a temp dir of this world (mode 0777), removed by destroy() */
  readonly dir: string;
  /** the DNS responder, once started */
  dns: Child | null;
  exec(ns: string | null, cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  spawn(ns: string | null, cmd: string[], opts?: SpawnOptions): Child;
  /** start the DNS responder (idempotent); extra args go to test/tools/dns-responder.ts */
  startDns(args?: string[]): Promise<Child>;
  /** kill the world's children, delete namespaces, /etc/netns dirs and the temp dir */
  destroy(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export const DEFAULT_PREFIX = "pt";
let counter = 0;
const liveWorlds = new Set<WorldImpl>();

function netnsList(): string[] {
  const r = run(["ip", "netns", "list"]);
  return r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter(Boolean);
}

/** Kill processes still inside a namespace of ours, then delete it and its /etc/netns dir. */
function deleteNamespace(ns: string): void {
  if (existsSync(`/run/netns/${ns}`)) {
    for (let round = 0; round < 3; round++) {
      const pids = run(["ip", "netns", "pids", ns]).stdout.split(/\s+/).filter(Boolean).map(Number);
      if (!pids.length) break;
      for (const pid of pids) {
        if (pid > 1 && pid !== process.pid) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
        }
      }
      Bun.sleepSync(50);
    }
    run(["ip", "netns", "del", ns]);
  }
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

/**
 * What a test process that died left behind (its watchdog normally removes
 * it within a second): namespaces named PREFIX-PID-N-[hu] and temp dirs
 * PREFIX-PID-N-*, TEST_USER-home-PID-*, pasta-repo-PID-* whose PID is gone.
 */
function sweepStale(prefix: string): void {
  const p = prefix.replace(/[^A-Za-z0-9]/g, "\\$&");
  const dead = (pid: string) => Number(pid) !== process.pid && !isAlive(Number(pid));
  const nsRe = new RegExp(`^${p}-(\\d+)-\\d+-[hu]$`);
  for (const ns of netnsList()) {
    const m = ns.match(nsRe);
    if (m && dead(m[1]!)) deleteNamespace(ns);
  }
  const dirRe = new RegExp(`^(?:${p}-(\\d+)-\\d+|${TEST_USER}-home-(\\d+)|pasta-repo-(\\d+))-[A-Za-z0-9]{6}$`);
  let entries: string[] = [];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    /* no tmp? */
  }
  for (const e of entries) {
    const m = e.match(dirRe);
    const pid = m && (m[1] ?? m[2] ?? m[3]);
    if (!pid || !dead(pid)) continue;
    try {
      rmSync(join(tmpdir(), e), { recursive: true, force: true });
    } catch {
      /* something is still mounted in there (a namespace file a dead test bound): not ours to undo, skip it */
    }
  }
}

const swept = new Set<string>();
function sweepStaleOnce(prefix: string): void {
  if (swept.has(prefix)) return;
  swept.add(prefix);
  sweepStale(prefix);
}

class WorldImpl implements World {
  readonly hostIf = HOST_IF;
  readonly upstreamIf = UPSTREAM_IF;
  readonly hostLinkLocal = linkLocalFromMac(ADDR.hostMac);
  dns: Child | null = null;
  private children = new Set<Child>();
  private watchdog: Subprocess | null = null;
  private destroyed = false;
  readonly dir: string;

  constructor(
    readonly id: string,
    readonly host: string,
    readonly upstream: string,
    readonly mtu: number,
    readonly resolvConf: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `${id}-`));
    chmodSync(this.dir, 0o777);
  }

  exec(ns: string | null, cmd: string[], opts?: ExecOptions) {
    return execIn(ns, cmd, opts);
  }

  spawn(ns: string | null, cmd: string[], opts?: SpawnOptions): Child {
    const c = spawnIn(ns, cmd, opts);
    this.children.add(c);
    return c;
  }

  async startDns(args: string[] = []): Promise<Child> {
    if (this.dns) return this.dns;
    const c = this.spawn(this.upstream, [BUN, join(TOOLS, "dns-responder.ts"), ...args]);
    await c.waitFor("dns-responder ready", { timeoutMs: 15000 });
    this.dns = c;
    return c;
  }

  build(): void {
    const { host, upstream, mtu } = this;
    const U = (args: string[], what: string) => mustRun(["ip", "-n", upstream, ...args], what);
    const H = (args: string[], what: string) => mustRun(["ip", "-n", host, ...args], what);
    const sysctl = (ns: string, settings: string[]) =>
      mustRun(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", ...settings], `sysctl in ${ns}`);

    mustRun(["ip", "netns", "add", upstream], "create upstream namespace");
    mustRun(["ip", "netns", "add", host], "create host namespace");

    // upstream: a router owning the gateway and the "remote" addresses
    sysctl(upstream, [
      "net.ipv4.ip_forward=1",
      "net.ipv6.conf.all.forwarding=1",
      "net.ipv6.conf.default.accept_dad=0",
      "net.ipv6.conf.all.accept_dad=0",
    ]);
    U(["link", "set", "lo", "up"], "upstream lo");
    for (const a of [`${ADDR.remote4}/32`, `${ADDR.dns4}/32`]) U(["addr", "add", a, "dev", "lo"], "remote IPv4 address");
    for (const a of [`${ADDR.remote6}/128`, `${ADDR.dns6}/128`]) U(["-6", "addr", "add", a, "dev", "lo", "nodad"], "remote IPv6 address");

    // host: the machine pasta runs on
    sysctl(host, [
      "net.ipv4.ping_group_range=0 2147483647",
      "net.ipv6.conf.default.accept_dad=0",
      "net.ipv6.conf.all.accept_dad=0",
      "net.ipv6.conf.default.accept_ra=0",
      "net.ipv6.conf.all.accept_ra=0",
    ]);
    H(["link", "set", "lo", "up"], "host lo");

    // the veth pair, made inside the host namespace: no name ever appears in the root namespace
    H(
      [
        "link",
        "add",
        HOST_IF,
        "mtu",
        String(mtu),
        "address",
        ADDR.hostMac,
        "type",
        "veth",
        "peer",
        "name",
        UPSTREAM_IF,
        "mtu",
        String(mtu),
        "address",
        ADDR.upstreamMac,
        "netns",
        upstream,
      ],
      "create veth pair",
    );

    U(["link", "set", UPSTREAM_IF, "addrgenmode", "none"], "upstream addrgenmode");
    sysctl(upstream, [`net.ipv6.conf.${UPSTREAM_IF}.accept_dad=0`]);
    U(["addr", "add", `${ADDR.gw4}/${ADDR.prefix4}`, "dev", UPSTREAM_IF], "gateway IPv4");
    U(["-6", "addr", "add", `${ADDR.gw6}/${ADDR.prefix6}`, "dev", UPSTREAM_IF, "nodad"], "gateway IPv6");
    U(["-6", "addr", "add", `${ADDR.gwLL}/64`, "dev", UPSTREAM_IF, "nodad"], "gateway link-local");
    U(["link", "set", UPSTREAM_IF, "up"], "upstream link up");

    sysctl(host, [`net.ipv6.conf.${HOST_IF}.accept_dad=0`, `net.ipv6.conf.${HOST_IF}.accept_ra=0`]);
    H(["addr", "add", `${ADDR.host4}/${ADDR.prefix4}`, "dev", HOST_IF], "host IPv4");
    H(["-6", "addr", "add", `${ADDR.host6}/${ADDR.prefix6}`, "dev", HOST_IF, "nodad"], "host IPv6");
    H(["link", "set", HOST_IF, "up"], "host link up");
    H(["route", "add", "default", "via", ADDR.gw4, "dev", HOST_IF], "host IPv4 default route");
    H(["-6", "route", "add", "default", "via", ADDR.gwLL, "dev", HOST_IF], "host IPv6 default route");

    // private resolv.conf: `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*
    for (const ns of [host, upstream]) {
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/resolv.conf`, this.resolvConf);
    }
  }

  /**
   * `bun test` runs no exit hooks, so a watchdog outside this process removes
   * the world if the process dies before destroy(): it waits for our pid to go
   * (at most 6 hours), then kills what is left inside our two namespaces and
   * deletes them, their /etc/netns dirs and the world's temp dir. destroy()
   * kills the watchdog first.
   */
  startWatchdog(): void {
    const q = (x: string) => `'${x.replace(/'/g, `'\\''`)}'`;
    const ns = [this.host, this.upstream].map(q).join(" ");
    const script =
      `tail --pid=${process.pid} -f /dev/null 2>/dev/null || while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ` +
      `for ns in ${ns}; do for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; ` +
      `ip netns del "$ns" 2>/dev/null; rm -rf "/etc/netns/$ns"; done; rm -rf ${q(this.dir)}`;
    const wd = Bun.spawn(["timeout", "21600", "sh", "-c", script], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
      detached: true,
    });
    wd.unref();
    this.watchdog = wd;
  }

  /** wait (bounded) for the links to be up and IPv6 addresses usable */
  async settle(): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const h = run(["ip", "-n", this.host, "-6", "addr", "show", "dev", HOST_IF]).stdout;
      const u = run(["ip", "-n", this.upstream, "-6", "addr", "show", "dev", UPSTREAM_IF]).stdout;
      const hl = run(["ip", "-n", this.host, "link", "show", "dev", HOST_IF]).stdout;
      if (!/tentative/.test(h + u) && /LOWER_UP/.test(hl) && h.includes(this.hostLinkLocal)) return;
      await Bun.sleep(100);
    }
    throw new Error(`world ${this.id}: links did not settle`);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.children].map((c) => c.kill({ graceMs: 1500 }).catch(() => 0)));
    this.children.clear();
    this.dns = null;
    this.destroySync();
  }

  /** what destroy() does once the children are dealt with; also the exit-hook path */
  destroySync(): void {
    if (this.watchdog) {
      killGroup(this.watchdog.pid, "SIGKILL");
      this.watchdog = null;
    }
    for (const c of this.children) (c as ChildImpl).killNow();
    this.children.clear();
    deleteNamespace(this.host);
    deleteNamespace(this.upstream);
    rmSync(this.dir, { recursive: true, force: true });
    liveWorlds.delete(this);
  }

  [Symbol.asyncDispose]() {
    return this.destroy();
  }
}

/**
 * Build a fresh world. On any failure while building, whatever was made is
 * removed before the error is thrown.
 */
export async function createWorld(opts: WorldOptions = {}): Promise<World> {
  const check = canRunE2E();
  if (!check.ok) throw new Error(`cannot build the test world: ${check.reason}`);
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  if (!/^[A-Za-z0-9_]{1,12}$/.test(prefix)) throw new Error(`bad world prefix ${prefix}`);
  sweepStaleOnce(prefix);
  installExitHook();
  const id = `${prefix}-${process.pid}-${++counter}`;
  const w = new WorldImpl(id, `${id}-h`, `${id}-u`, opts.mtu ?? 1500, opts.resolvConf ?? DEFAULT_RESOLV_CONF);
  liveWorlds.add(w);
  try {
    w.startWatchdog();
    w.build();
    await w.settle();
    if (opts.dns) await w.startDns();
    return w;
  } catch (e) {
    await w.destroy();
    throw e;
  }
}

/** Build a world, run fn, always destroy it. */
export async function withWorld<T>(opts: WorldOptions, fn: (w: World) => Promise<T>): Promise<T> {
  const w = await createWorld(opts);
  try {
    return await fn(w);
  } finally {
    await w.destroy();
  }
}

let exitHook = false;
function installExitHook() {
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const c of [...tracked]) c.killNow();
    for (const w of [...liveWorlds]) {
      try {
        w.destroySync();
      } catch {
        /* best effort */
      }
    }
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });
}

// temp dirs made by ensureTestUser()/repoForUser() go too, even without a world
process.on("exit", () => {
  if (exitHook) return;
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/**
 * The hard RLIMIT_NOFILE of this process: the most descriptors a process we
 * start may be given (raising it needs CAP_SYS_RESOURCE, which containers
 * often lack).
 */
export function nofileHardLimit(): number {
  const m = readFileSync("/proc/self/limits", "utf8").match(/^Max open files\s+\S+\s+(\d+|unlimited)/m);
  return !m ? 1024 : m[1] === "unlimited" ? 1 << 20 : Number(m[1]);
}

/** Read a file inside a world's temp dir (convenience for tests). */
export function readWorldFile(w: World, name: string): string {
  const p = join(w.dir, name);
  return existsSync(p) ? readFileSync(p, "utf8") : "";
}
