/**
 * Port forwarding specs: the parser shared by -t/-u (host to guest) and
 * -T/-U (namespace to host), with the grammar of the original man page.
 *
 * A spec is one of:
 *   none            forward nothing
 *   auto            (pasta) forward what is found bound on the other side
 *   all             (passt) every non-ephemeral port except 0
 *   [ADDR][%IF]/LIST   or   LIST
 * where LIST is comma-separated items: PORT, FIRST-LAST, optionally followed by
 * ":TARGET" or ":TFIRST-TLAST" (same length) for translation, or an exclusion
 * "~PORT" / "~FIRST-LAST". Exclusions remove ports from the ranges of the same
 * spec; a spec made of exclusions only forwards every non-ephemeral port but
 * those. ADDR is an IPv4 or IPv6 address to bind, IF an interface to bind to.
 *
 * Several options for one protocol and direction accumulate into one PortFwd.
 * The data path asks "is this port forwarded, and to which port" through two
 * flat arrays indexed by port (a bitmap and a Uint16Array of targets); the
 * listener set-up walks the rules, which keep the bind address of each range.
 */
import { parseIp4, parseIp6, type Mode } from "../conf/config.ts";
import { readFileSync } from "node:fs";

export const NUM_PORTS = 65536;
const MAX_PORT = NUM_PORTS - 1;
/** Ephemeral range recommended by RFC 6335, used when the sysctl can't be read. */
export const EPHEMERAL_DEFAULT: PortRange = [49152, MAX_PORT];
export const PORT_RANGE_SYSCTL = "/proc/sys/net/ipv4/ip_local_port_range";
/** Longest interface name the kernel takes (IFNAMSIZ minus the NUL). */
const IFNAME_MAX = 15;

export type FwdMode = "unset" | "none" | "auto" | "all" | "spec";
/** Inclusive port range [first, last]. */
export type PortRange = [number, number];
/** A bind address: a number is IPv4 (host order), 16 bytes are IPv6. */
export type BindAddr = number | Uint8Array;

/** One forwarded range: host ports first..last go to to..to+(last-first). */
export interface FwdRule {
  addr: BindAddr | null;
  ifname: string | null;
  first: number;
  last: number;
  to: number;
}

/** Forwarding for one protocol in one direction. */
export interface PortFwd {
  mode: FwdMode;
  /** Bitmap of forwarded ports (bit p&7 of byte p>>3). */
  map: Uint8Array;
  /** Bitmap of ports excluded with "~" (auto mode must skip them too). */
  excl: Uint8Array;
  /** Target port of each forwarded port. */
  to: Uint16Array;
  rules: FwdRule[];
}

/** What the parser needs to know besides the spec itself. */
export interface SpecContext {
  mode: Mode;
  /** Option name for messages, e.g. "-t". */
  opt: string;
  /** Ephemeral ports, skipped by "all" and exclusion-only specs. */
  ephemeral?: PortRange;
}

/** An empty forwarding table, mode "unset" until a spec or a default sets it. */
export function newPortFwd(): PortFwd {
  return {
    mode: "unset",
    map: new Uint8Array(NUM_PORTS / 8),
    excl: new Uint8Array(NUM_PORTS / 8),
    to: new Uint16Array(NUM_PORTS),
    rules: [],
  };
}

/** Whether port p is set in bitmap map. */
export function bitGet(map: Uint8Array, p: number): boolean {
  return (map[p >>> 3]! & (1 << (p & 7))) !== 0;
}

/** Set port p in bitmap map. */
export function bitSet(map: Uint8Array, p: number): void {
  map[p >>> 3]! |= 1 << (p & 7);
}

/** Whether host port p is forwarded by fwd. */
export function isForwarded(fwd: PortFwd, p: number): boolean {
  return bitGet(fwd.map, p);
}

/** Whether port p was excluded with "~". */
export function isExcluded(fwd: PortFwd, p: number): boolean {
  return bitGet(fwd.excl, p);
}

/** The port that host port p is forwarded to (meaningful when forwarded). */
export function targetPort(fwd: PortFwd, p: number): number {
  return fwd.to[p]!;
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
  const min = Number(m[1]), max = Number(m[2]);
  if (min > max || max > MAX_PORT) return EPHEMERAL_DEFAULT;
  return [min, max];
}

/** Whether p falls in the ephemeral range eph. */
export function isEphemeral(p: number, eph: PortRange): boolean {
  return p >= eph[0] && p <= eph[1];
}

/** An Error naming the option and the spec, with the reason. */
function specError(ctx: SpecContext, spec: string, why: string): Error {
  return new Error(`${ctx.opt} ${spec}: ${why}`);
}

/**
 * Parse one spec and add it to fwd. Throws a one-line Error for junk, ports
 * out of 1-65535, reversed ranges, translations of different length, modes
 * that don't fit the program (auto in passt, all in pasta) and mixing none,
 * auto or all with anything else.
 */
export function parsePortSpec(fwd: PortFwd, spec: string, ctx: SpecContext): void {
  if (spec === "none" || spec === "auto" || spec === "all") {
    setKeywordMode(fwd, spec, ctx);
    return;
  }
  if (fwd.mode !== "unset" && fwd.mode !== "spec") {
    throw specError(ctx, spec, `can't be combined with '${fwd.mode}'`);
  }
  const slash = spec.indexOf("/");
  const bind = slash >= 0 ? parseBindPrefix(spec.slice(0, slash), spec, ctx) : { addr: null, ifname: null };
  const items = parseItems(slash >= 0 ? spec.slice(slash + 1) : spec, spec, ctx);
  fwd.mode = "spec";
  for (const x of items.excluded) for (let p = x[0]; p <= x[1]; p++) bitSet(fwd.excl, p);
  const included = items.included.length > 0 ? items.included : allNonEphemeral(ctx);
  for (const r of included) addRuns(fwd, r, items.excluded, bind, spec, ctx);
}

/** A parsed item with its translation: host ports range go to target..target+len. */
interface Included {
  range: PortRange;
  target: number;
}

/** Handle none/auto/all: each must be the only spec given for its option. */
function setKeywordMode(fwd: PortFwd, spec: "none" | "auto" | "all", ctx: SpecContext): void {
  if (fwd.mode !== "unset") throw specError(ctx, spec, `can't be combined with other ${ctx.opt} options`);
  if (spec === "auto" && ctx.mode !== "pasta") throw specError(ctx, spec, "'auto' is only allowed for pasta");
  if (spec === "all" && ctx.mode !== "passt") throw specError(ctx, spec, "'all' is only allowed for passt");
  fwd.mode = spec;
  if (spec !== "all") return;
  for (const inc of allNonEphemeral(ctx)) addRuns(fwd, inc, [], { addr: null, ifname: null }, spec, ctx);
}

/** Every port but 0 and the ephemeral range, as identity translations. */
function allNonEphemeral(ctx: SpecContext): Included[] {
  const eph = ctx.ephemeral ?? EPHEMERAL_DEFAULT;
  const out: Included[] = [];
  if (eph[0] > 1) out.push({ range: [1, eph[0] - 1], target: 1 });
  if (eph[1] < MAX_PORT) out.push({ range: [eph[1] + 1, MAX_PORT], target: eph[1] + 1 });
  return out;
}

/** Parse "ADDR", "ADDR%IF" or "%IF" in front of the slash. */
function parseBindPrefix(s: string, spec: string, ctx: SpecContext): { addr: BindAddr | null; ifname: string | null } {
  const pct = s.indexOf("%");
  const addrText = pct >= 0 ? s.slice(0, pct) : s;
  const ifname = pct >= 0 ? s.slice(pct + 1) : null;
  if (addrText === "" && ifname === null) throw specError(ctx, spec, "missing address before '/'");
  if (ifname !== null && (ifname === "" || ifname.length > IFNAME_MAX || /[\s/]/.test(ifname))) {
    throw specError(ctx, spec, `bad interface name '${ifname ?? ""}'`);
  }
  if (addrText === "") return { addr: null, ifname };
  try {
    return { addr: addrText.includes(":") ? parseIp6(addrText) : parseIp4(addrText), ifname };
  } catch (e) {
    throw specError(ctx, spec, (e as Error).message);
  }
}

/** Split a port list into included ranges (with targets) and excluded ranges. */
function parseItems(list: string, spec: string, ctx: SpecContext): { included: Included[]; excluded: PortRange[] } {
  const included: Included[] = [];
  const excluded: PortRange[] = [];
  for (const item of list.split(",")) {
    if (item.startsWith("~")) {
      excluded.push(parseRange(item.slice(1), spec, ctx));
      continue;
    }
    const colon = item.indexOf(":");
    const range = parseRange(colon >= 0 ? item.slice(0, colon) : item, spec, ctx);
    if (colon < 0) {
      included.push({ range, target: range[0] });
      continue;
    }
    const to = parseRange(item.slice(colon + 1), spec, ctx);
    if (to[1] - to[0] !== range[1] - range[0]) {
      throw specError(ctx, spec, `ranges ${range[0]}-${range[1]} and ${to[0]}-${to[1]} differ in length`);
    }
    included.push({ range, target: to[0] });
  }
  return { included, excluded };
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

/**
 * Forward the ports of inc that no exclusion covers: set map and targets,
 * and add one rule per run of consecutive ports. A port already forwarded
 * elsewhere to a different target is an error.
 */
function addRuns(
  fwd: PortFwd, inc: Included, excluded: PortRange[],
  bind: { addr: BindAddr | null; ifname: string | null }, spec: string, ctx: SpecContext,
): void {
  const [first, last] = inc.range;
  let runStart = -1;
  for (let p = first; p <= last + 1; p++) {
    const take = p <= last && !excluded.some((x) => p >= x[0] && p <= x[1]);
    if (take) {
      const to = inc.target + (p - first);
      if (bitGet(fwd.map, p) && fwd.to[p] !== to) {
        throw specError(ctx, spec, `port ${p} already forwarded to ${fwd.to[p]}`);
      }
      bitSet(fwd.map, p);
      fwd.to[p] = to;
      if (runStart < 0) runStart = p;
    } else if (runStart >= 0) {
      fwd.rules.push({ ...bind, first: runStart, last: p - 1, to: inc.target + (runStart - first) });
      runStart = -1;
    }
  }
}

/** Give fwd its default mode if no option set one: auto for pasta, none for passt. */
export function finishPortFwd(fwd: PortFwd, mode: Mode): void {
  if (fwd.mode === "unset") fwd.mode = mode === "pasta" ? "auto" : "none";
}
