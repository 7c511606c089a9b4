/**
 * Port forwarding specs: the parser shared by -t/-u (host to guest) and
 * -T/-U (namespace to host), with the grammar of the original's man page.
 *
 * A spec is `none`, or `[PREFIX/]CHUNK[,CHUNK...]` where PREFIX is
 *   ADDR[%IF]   listen on ADDR only (IPv4, IPv6, or either in brackets),
 *               and on interface IF only when given;
 *   [*][%IF]    listen on every address of each IP version (the default);
 * and each CHUNK is one of
 *   FIRST[-LAST][:TARGET]  forward these ports; TARGET is TADDR/TFIRST[-TLAST],
 *                          TADDR, or TFIRST[-TLAST] (a range of the same
 *                          length): the guest's port and, with TADDR, the
 *                          guest's address to connect to (default: its own);
 *   ~FIRST[-LAST]          leave these ports out;
 *   all[:TADDR]            every port but the ephemeral ones;
 *   auto                   (pasta) only while the target side has the port
 *                          bound: the rules of the spec become "scan" rules.
 * Without any FIRST[-LAST] chunk (only `all`, `auto` or exclusions), the spec
 * covers every non-ephemeral port except the excluded ones, and ports that
 * can't be bound are skipped ("weak" rules: an error only if none can be).
 * Otherwise every port must be bound, or the program exits.
 *
 * Each spec becomes rules, one per run of consecutive ports, in a PortFwd
 * per option (-t, -u, -T, -U). A rule listening on every address while its
 * target names one IP version is refused, as the original does (say
 * 0.0.0.0/ or [::]/ instead); so are rules whose ports overlap on matching
 * addresses, and `none` after other specs of the same option. -T and -U
 * take no PREFIX: they always listen on the namespace's loopback.
 *
 * Listeners are set up from the rules (src/fwd/forward.ts); the data path
 * never reads them.
 */
import { formatIp4, formatIp6, parseIp4, parseIp6, type Mode } from "../conf/config.ts";
import { readFileSync } from "node:fs";

export const NUM_PORTS = 65536;
const MAX_PORT = NUM_PORTS - 1;
/** Ephemeral range recommended by RFC 6335, used when the sysctl can't be read. */
export const EPHEMERAL_DEFAULT: PortRange = [49152, MAX_PORT];
export const PORT_RANGE_SYSCTL = "/proc/sys/net/ipv4/ip_local_port_range";
/** Longest interface name the kernel takes (IFNAMSIZ minus the NUL). */
const IFNAME_MAX = 15;

/** Inclusive port range [first, last]. */
export type PortRange = [number, number];
/** An address: a number is IPv4 (host order), 16 bytes are IPv6. */
export type BindAddr = number | Uint8Array;

/** One forwarded range: listening ports first..last go to to..to+(last-first). */
export interface FwdRule {
  /** Where to listen; null: every address of each enabled IP version. */
  addr: BindAddr | null;
  /** Interface to listen on (SO_BINDTODEVICE); null: any. */
  ifname: string | null;
  first: number;
  last: number;
  to: number;
  /** Guest address to connect to; null: the guest's own (or its loopback, spliced). */
  taddr: BindAddr | null;
  /** Ports that can't be bound are skipped (only none at all is an error). */
  weak: boolean;
  /** auto: listen on a port only while it is bound on the other side. */
  scan: boolean;
  /** The option and spec the rule comes from, for messages ("-t 8080:80"). */
  origin: string;
}

/** Forwarding for one protocol in one direction: the rules of every spec given. */
export interface PortFwd {
  rules: FwdRule[];
  /** Some spec (even `none`) was given: no default applies. */
  given: boolean;
}

/** What the parser needs to know besides the spec itself. */
export interface SpecContext {
  mode: Mode;
  /** Option name for messages and rules: "-t", "-u", "-T" or "-U". */
  opt: string;
  /** Ephemeral ports, skipped by specs without port ranges. */
  ephemeral?: PortRange;
  /** IP versions in use (-4, -6): a rule for all addresses then covers only one. */
  ip4?: boolean;
  ip6?: boolean;
}

/** An empty forwarding table. */
export function newPortFwd(): PortFwd {
  return { rules: [], given: false };
}

/** Whether port p is set in bitmap map. */
export function bitGet(map: Uint8Array, p: number): boolean {
  return (map[p >>> 3]! & (1 << (p & 7))) !== 0;
}

/** Set port p in bitmap map. */
export function bitSet(map: Uint8Array, p: number): void {
  map[p >>> 3]! |= 1 << (p & 7);
}

/** The rule of fwd that forwards port p (the first, when several addresses do), or null. */
export function ruleFor(fwd: PortFwd, p: number): FwdRule | null {
  return fwd.rules.find((r) => p >= r.first && p <= r.last) ?? null;
}

/** Whether any rule of fwd is an auto (scan) rule. */
export function hasScan(fwd: PortFwd): boolean {
  return fwd.rules.some((r) => r.scan);
}

/**
 * Read the kernel's ephemeral port range from path (the ip_local_port_range
 * sysctl, "min<TAB>max"); the RFC 6335 range when it can't be read or parsed.
 */
export function probeEphemeral(path = PORT_RANGE_SYSCTL): PortRange {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return EPHEMERAL_DEFAULT;
  }
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) return EPHEMERAL_DEFAULT;
  const min = Number(m[1]),
    max = Number(m[2]);
  if (min > max || max > MAX_PORT) return EPHEMERAL_DEFAULT;
  return [min, max];
}

/** Whether p falls in the ephemeral range eph. */
export function isEphemeral(p: number, eph: PortRange): boolean {
  return p >= eph[0] && p <= eph[1];
}

/** An address as the original prints it in rules: "*" for every address. */
export function formatAddr(a: BindAddr | null): string {
  if (a === null) return "*";
  return typeof a === "number" ? formatIp4(a) : formatIp6(a);
}

/** A rule as text: "127.0.0.1/8080-8081 => 192.0.2.5/80-81". */
export function formatRule(r: FwdRule): string {
  const range = (a: number, b: number) => (a === b ? `${a}` : `${a}-${b}`);
  const iface = r.ifname ? `%${r.ifname}` : "";
  const target = r.taddr === null ? "" : `${formatAddr(r.taddr)}/`;
  return `${formatAddr(r.addr)}${iface}/${range(r.first, r.last)} => ${target}${range(r.to, r.to + r.last - r.first)}`;
}

/** An Error naming the option and the spec, with the reason. */
function specError(ctx: SpecContext, spec: string, why: string): Error {
  return new Error(`${ctx.opt} ${spec}: ${why}`);
}

/** Listening address and interface from the PREFIX of a spec. */
interface Listen {
  addr: BindAddr | null;
  ifname: string | null;
}

/** A chunk with its target: listening ports range go to tfirst.. at taddr. */
interface Include {
  range: PortRange;
  taddr: BindAddr | null;
  tfirst: number;
}

/**
 * Parse one spec and add its rules to fwd. Throws a one-line Error for junk,
 * ports out of 1-65535, reversed ranges, targets of another length or IP
 * version, `auto` in passt, a PREFIX for -T/-U, and conflicts with rules
 * already there.
 */
export function parsePortSpec(fwd: PortFwd, spec: string, ctx: SpecContext): void {
  if (spec === "none") {
    if (fwd.rules.length > 0) throw specError(ctx, spec, `'none' conflicts with previous ${ctx.opt} options`);
    fwd.given = true;
    return;
  }
  fwd.given = true;
  const { listen, rest } = splitPrefix(spec, ctx);
  const chunks = rest.split(",");
  let scan = false;
  let all: { taddr: BindAddr | null } | null = null;
  const excluded: PortRange[] = [];
  const included: Include[] = [];
  for (const c of chunks) {
    if (c === "auto") {
      if (ctx.mode !== "pasta") throw specError(ctx, spec, "'auto' port forwarding is only allowed for pasta");
      scan = true;
    } else if (c === "all" || c.startsWith("all:")) {
      all = { taddr: c === "all" ? null : parseAddrOrThrow(c.slice(4), spec, ctx) };
    } else if (c.startsWith("~")) {
      excluded.push(parseRange(c.slice(1), spec, ctx));
    } else {
      included.push(parseInclude(c, spec, ctx));
    }
  }
  if (all && included.length > 0) throw specError(ctx, spec, "'all' can't be combined with port ranges");
  const origin = `${ctx.opt} ${spec}`;
  const base = { ...listen, scan, origin };
  if (included.length === 0) {
    const eph = ctx.ephemeral ?? EPHEMERAL_DEFAULT;
    const skip = [...excluded, eph];
    addRuns(fwd, { range: [1, MAX_PORT], taddr: all?.taddr ?? null, tfirst: 1 }, skip, { ...base, weak: true }, spec, ctx);
    return;
  }
  for (const inc of included) addRuns(fwd, inc, excluded, { ...base, weak: false }, spec, ctx);
}

/**
 * Split "PREFIX/CHUNKS" into the listening address and interface, and the
 * chunks; a spec whose text before the first '/' is not an address, '*'
 * or an interface has no prefix (the '/' then belongs to a target).
 */
function splitPrefix(spec: string, ctx: SpecContext): { listen: Listen; rest: string } {
  const slash = spec.indexOf("/");
  const head = slash >= 0 ? spec.slice(0, slash) : null;
  const listen = head === null ? null : parsePrefix(head, spec, ctx);
  if (listen === null) return { listen: oneFamily({ addr: null, ifname: null }, ctx), rest: spec };
  if (ctx.opt === "-T" || ctx.opt === "-U") throw specError(ctx, spec, `listening address not allowed for ${ctx.opt}`);
  return { listen: oneFamily(listen, ctx), rest: spec.slice(slash! + 1) };
}

/** "ADDR", "ADDR%IF", "*", "*%IF", "%IF" or "": the listening side; null if head is none of those. */
function parsePrefix(head: string, spec: string, ctx: SpecContext): Listen | null {
  const pct = head.indexOf("%");
  const addrText = pct >= 0 ? head.slice(0, pct) : head;
  const ifname = pct >= 0 ? head.slice(pct + 1) : null;
  const addr = addrText === "" || addrText === "*" ? null : parseAddr(addrText);
  if (addr === undefined) return null;
  if (ifname !== null && (ifname === "" || ifname.length > IFNAME_MAX || /\s/.test(ifname) || ifname === "." || ifname === "..")) {
    throw specError(ctx, spec, `bad interface name '${ifname}'`);
  }
  if (addr !== null) checkFamily(addr, spec, ctx);
  return { addr, ifname };
}

/** With one IP version only (-4, -6), "every address" means every address of that version. */
function oneFamily(l: Listen, ctx: SpecContext): Listen {
  if (l.addr !== null) return l;
  if (ctx.ip4 === false) return { ...l, addr: new Uint8Array(16) };
  if (ctx.ip6 === false) return { ...l, addr: 0 };
  return l;
}

/** An address of an IP version that is off (-4, -6) is an error. */
function checkFamily(a: BindAddr, spec: string, ctx: SpecContext): void {
  if (typeof a === "number" && ctx.ip4 === false) throw specError(ctx, spec, "IPv4 forward, but IPv4 not enabled");
  if (typeof a !== "number" && ctx.ip6 === false) throw specError(ctx, spec, "IPv6 forward, but IPv6 not enabled");
}

/** An IPv4 or IPv6 address, optionally in brackets; undefined if s is not one. */
function parseAddr(s: string): BindAddr | undefined {
  const text = s.startsWith("[") && s.endsWith("]") ? s.slice(1, -1) : s;
  try {
    return text.includes(":") ? parseIp6(text) : parseIp4(text);
  } catch {
    return undefined;
  }
}

function parseAddrOrThrow(s: string, spec: string, ctx: SpecContext): BindAddr {
  const a = parseAddr(s);
  if (a === undefined) throw specError(ctx, spec, `bad address '${s}'`);
  return a;
}

/** "FIRST[-LAST]" followed by nothing, ":TADDR/TFIRST[-TLAST]", ":TADDR" or ":TFIRST[-TLAST]". */
function parseInclude(c: string, spec: string, ctx: SpecContext): Include {
  const colon = c.indexOf(":");
  const range = parseRange(colon >= 0 ? c.slice(0, colon) : c, spec, ctx);
  if (colon < 0) return { range, taddr: null, tfirst: range[0] };
  const t = c.slice(colon + 1);
  const slash = t.lastIndexOf("/");
  let taddr: BindAddr | null = null;
  let trange: PortRange = range;
  if (slash >= 0) {
    taddr = parseAddrOrThrow(t.slice(0, slash), spec, ctx);
    trange = parseRange(t.slice(slash + 1), spec, ctx);
  } else if (/^[\d-]*$/.test(t)) {
    trange = parseRange(t, spec, ctx);
  } else {
    taddr = parseAddrOrThrow(t, spec, ctx);
  }
  if (trange[1] - trange[0] !== range[1] - range[0]) {
    throw specError(ctx, spec, `ranges ${range[0]}-${range[1]} and ${trange[0]}-${trange[1]} differ in length`);
  }
  return { range, taddr, tfirst: trange[0] };
}

/** Parse "PORT" or "FIRST-LAST" into an inclusive range of valid ports. */
function parseRange(s: string, spec: string, ctx: SpecContext): PortRange {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw specError(ctx, spec, s === "" ? "empty port" : `bad port '${s}'`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  for (const p of [first, last]) {
    if (p < 1 || p > MAX_PORT) throw specError(ctx, spec, `port ${p} out of range 1-${MAX_PORT}`);
  }
  if (last < first) throw specError(ctx, spec, `reversed range ${first}-${last}`);
  return [first, last];
}

/** The target address of inc fits the listening side: a single IP version, the same one, not multicast. */
function checkTarget(listen: Listen, taddr: BindAddr, spec: string, ctx: SpecContext): void {
  const v4 = typeof taddr === "number";
  const what = v4 ? "IPv4" : "IPv6";
  if (v4 ? taddr >>> 28 === 0xe : taddr[0] === 0xff) throw specError(ctx, spec, `multicast target address ${formatAddr(taddr)}`);
  if (listen.addr === null) {
    throw specError(
      ctx,
      spec,
      `dual stack forward to ${what} address ${formatAddr(taddr)} unsupported: did you mean ${v4 ? "0.0.0.0" : "[::]"}/... instead?`,
    );
  }
  if ((typeof listen.addr === "number") !== v4) {
    throw specError(
      ctx,
      spec,
      `forward from ${v4 ? "IPv6" : "IPv4"} (${formatAddr(listen.addr)}) to ${what} (${formatAddr(taddr)}) unsupported`,
    );
  }
}

/** Whether two listening addresses can receive the same connection. */
function addrsMatch(a: BindAddr | null, b: BindAddr | null): boolean {
  if (a === null || b === null) return true;
  if (typeof a === "number" || typeof b === "number") return typeof a === typeof b && (a === 0 || b === 0 || a === b);
  const zero = (x: Uint8Array) => x.every((v) => v === 0);
  return zero(a) || zero(b) || a.every((v, i) => v === b[i]);
}

/**
 * Add one rule per run of the ports of inc that no range in skip covers.
 * A rule overlapping an existing one on a matching address is an error.
 */
function addRuns(
  fwd: PortFwd,
  inc: Include,
  skip: PortRange[],
  base: Listen & { scan: boolean; weak: boolean; origin: string },
  spec: string,
  ctx: SpecContext,
): void {
  if (inc.taddr !== null) checkTarget(base, inc.taddr, spec, ctx);
  const [first, last] = inc.range;
  const add = (from: number, to: number) =>
    addRule(fwd, { ...base, first: from, last: to, to: inc.tfirst + (from - first), taddr: inc.taddr }, spec, ctx);
  // walk the skipped ranges in order (they may overlap): the gaps between them are the runs
  let next = first;
  for (const [a, b] of [...skip].sort((x, y) => x[0] - y[0])) {
    if (a > last) break;
    if (a > next) add(next, a - 1);
    next = Math.max(next, b + 1);
  }
  if (next <= last) add(next, last);
}

function addRule(fwd: PortFwd, r: FwdRule, spec: string, ctx: SpecContext): void {
  for (const o of fwd.rules) {
    if (r.first > o.last || o.first > r.last || !addrsMatch(r.addr, o.addr)) continue;
    throw specError(ctx, spec, `forwarding configuration conflict: ${formatRule(r)} versus ${formatRule(o)} (${o.origin})`);
  }
  fwd.rules.push(r);
}

/** Give fwd its default if no option set it: auto for pasta, nothing for passt. */
export function finishPortFwd(fwd: PortFwd, ctx: SpecContext): void {
  if (!fwd.given && ctx.mode === "pasta") parsePortSpec(fwd, "auto", ctx);
}
