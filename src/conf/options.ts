/**
 * Command line of pasta and passt: one program, two commands.
 *
 * The options are declared once, in OPTIONS, with the names, short letters
 * and meanings of the original tools. From that table come both the citty
 * commands (so --help is generated from the declarations and can't drift)
 * and our own argv scanner. citty's parser is not used for the scan itself
 * because it lets the last of repeated options win (-t 22 -t 80 must add up),
 * reads "--no-dhcp" as the negation of a "dhcp" flag, and keeps parsing
 * options after the command (pasta ls -l must run "ls -l"). The scanner
 * follows getopt_long with a leading '+': short clusters (-dqf, -t22), long
 * options with "=value" or a separate value, unambiguous prefixes of long
 * names, and scanning stops at "--" or at the first non-option.
 *
 * parseArgs() turns argv into the Config shared by every layer (through host
 * discovery, injectable for tests) and the RunOptions that only start-up code
 * reads (logging, pid file, forwarding specs, namespace targets, command).
 * Every bad input is a thrown Error with a one-line message.
 */
import { defineCommand, renderUsage, type ArgsDef, type CommandDef } from "citty";
import type { LogLevelName } from "../log.ts";
import { parseIp4, parseIp6, parseMac, type Config, type Mode } from "./config.ts";
import { buildConfig, DEFAULT_MTU, discoverHostNow, MIN_MTU, type ConfigOverrides, type HostNet, type IfSelect } from "./host.ts";
import { readResolvConf, type ResolvConf } from "./resolv.ts";
import { finishPortFwd, newPortFwd, parsePortSpec, probeEphemeral, type PortFwd, type PortRange } from "../fwd/ports.ts";

export const VERSION = "0.1.0";
/** Where "--netns NAME" points, as ip-netns(8) does. */
export const NETNS_RUN_DIR = "/run/netns";
/** Default log file size limit (--log-size), 1 MiB as the original. */
export const LOG_SIZE_DEFAULT = 1048576;
/** Smallest --log-size the original takes: 5 × max(BUFSIZ, page size). */
export const LOG_SIZE_MIN = 40960;
const IFNAME_MAX = 15;
const DNS_NAME_MAX = 253;
const IPV4_BITS = 32;

/** One option: long name, optional short letter, value hint (absent for flags). */
export interface OptDef {
  long: string;
  short?: string;
  /** Another long name for the same option. */
  alias?: string;
  value?: string;
  /** May be given more than once (values accumulate). */
  many?: boolean;
  /** Valid in one mode only. */
  only?: Mode;
  help: string;
}

/** Every option of both commands, in --help order. */
const OPTIONS: OptDef[] = [
  { long: "debug", short: "d", help: "Be verbose" },
  { long: "trace", help: "Be extra verbose, show single packets; implies --debug" },
  { long: "stats", value: "DELAY", help: "Log event counters, at most every DELAY seconds" },
  { long: "quiet", short: "q", help: "Don't print informational messages" },
  { long: "foreground", short: "f", help: "Don't run in background" },
  { long: "stderr", short: "e", help: "No effect (deprecated upstream, kept for compatibility as there)" },
  { long: "log-file", short: "l", value: "PATH", help: "Log to file PATH, not to standard error" },
  { long: "log-size", value: "SIZE", help: "Limit log file size to SIZE bytes (default 1 MiB)" },
  {
    long: "runas",
    value: "UID|UID:GID|LOGIN|LOGIN:GROUP",
    help: "passt: change to this user and group when started as root; pasta: only its own user",
  },
  { long: "conf-path", short: "c", value: "PATH", help: "Configuration socket for pesto(1): refused, not supported here" },
  { long: "help", short: "h", help: "Display this help message and exit" },
  { long: "version", help: "Show version and exit" },
  { long: "pcap", short: "p", value: "FILE", help: "Capture tap-facing packets to FILE in pcap format" },
  { long: "pid", short: "P", value: "FILE", help: "Write own PID to FILE once initialised" },
  { long: "mtu", short: "m", value: "MTU", help: `Assign MTU via DHCP and NDP (default ${DEFAULT_MTU})` },
  {
    long: "address",
    short: "a",
    value: "ADDR[/PREFIX]",
    many: true,
    help: "Assign IPv4 or IPv6 ADDR, with its prefix length if given (once per version)",
  },
  { long: "netmask", short: "n", value: "MASK", help: "Assign IPv4 netmask, dot-decimal or number of bits" },
  { long: "mac-addr", short: "M", value: "ADDR", help: "Use source MAC ADDR towards guest or namespace" },
  { long: "gateway", short: "g", value: "ADDR", many: true, help: "Assign IPv4 or IPv6 default gateway ADDR (once per version)" },
  { long: "interface", short: "i", value: "NAME", help: "Derive addresses and routes from host interface NAME" },
  { long: "outbound", short: "o", value: "ADDR", many: true, help: "Bind outbound sockets to IPv4 or IPv6 ADDR (once per version)" },
  { long: "outbound-if4", value: "NAME", help: "Bind IPv4 outbound sockets to host interface NAME" },
  { long: "outbound-if6", value: "NAME", help: "Bind IPv6 outbound sockets to host interface NAME" },
  {
    long: "dns",
    short: "D",
    value: "ADDR",
    many: true,
    help: "Use DNS server ADDR instead of resolv.conf ones (repeatable); 'none' for none",
  },
  { long: "dns-forward", value: "ADDR", many: true, help: "Forward DNS queries sent to ADDR to the --dns-host server (once per version)" },
  { long: "dns-host", value: "ADDR", many: true, help: "Host DNS server that --dns-forward queries go to (default: first in resolv.conf)" },
  { long: "search", short: "S", value: "LIST", help: "Space-separated DNS search LIST; 'none' for none" },
  {
    long: "hostname",
    short: "H",
    value: "NAME",
    help: "Hostname to configure the guest with (DHCP option 12; pasta: the new namespace's hostname)",
  },
  { long: "fqdn", value: "NAME", help: "FQDN to configure the guest with (DHCP option 81, DHCPv6 option 39)" },
  { long: "dhcp-dns", only: "pasta", help: "Hand out DNS servers via DHCP, DHCPv6 and NDP (passt does by default)" },
  { long: "no-dhcp-dns", only: "passt", help: "Don't hand out DNS servers via DHCP, DHCPv6 and NDP" },
  { long: "dhcp-search", only: "pasta", help: "Hand out the search list via DHCP, DHCPv6 and NDP (passt does by default)" },
  { long: "no-dhcp-search", only: "passt", help: "Don't hand out the search list via DHCP, DHCPv6 and NDP" },
  {
    long: "map-host-loopback",
    value: "ADDR",
    many: true,
    help: "Guest traffic to ADDR reaches the host's loopback; 'none' for none (default: the gateway)",
  },
  { long: "map-guest-addr", value: "ADDR", many: true, help: "Guest traffic to ADDR reaches the host's own address; 'none' for none" },
  { long: "no-tcp", help: "Disable the TCP protocol handler" },
  { long: "no-udp", help: "Disable the UDP protocol handler" },
  { long: "no-icmp", help: "Disable the ICMP/ICMPv6 echo handler" },
  { long: "no-dhcp", help: "Disable the DHCP server" },
  { long: "no-ndp", help: "Disable NDP responses" },
  { long: "no-dhcpv6", help: "Disable the DHCPv6 server" },
  { long: "no-ra", help: "Disable router advertisements" },
  { long: "freebind", help: "Bind forwarded ports to addresses the host doesn't have (yet)" },
  { long: "no-map-gw", help: "Don't map the gateway address to the host" },
  { long: "chroot-fallback", help: "Fall back to chroot() for the sandbox: refused, no filesystem sandbox here" },
  { long: "ipv4-only", short: "4", help: "Enable IPv4 operation only" },
  { long: "ipv6-only", short: "6", help: "Enable IPv6 operation only" },
  { long: "tcp-ports", short: "t", value: "SPEC", many: true, help: "TCP port forwarding to guest or namespace (repeatable)" },
  { long: "udp-ports", short: "u", value: "SPEC", many: true, help: "UDP port forwarding to guest or namespace (repeatable)" },
  { long: "fd", short: "F", value: "FD", only: "passt", help: "Use the pre-opened, connected socket FD" },
  {
    long: "socket",
    short: "s",
    alias: "socket-path",
    value: "PATH",
    only: "passt",
    help: "UNIX domain socket path for qemu (also --socket-path)",
  },
  { long: "vhost-user", only: "passt", help: "Speak vhost-user on the socket of --socket: the guest's virtio-net rings in shared memory" },
  { long: "print-capabilities", only: "passt", help: "Print the vhost-user back-end capabilities (JSON) and exit" },
  { long: "one-off", short: "1", only: "passt", help: "Quit after handling a single client connection" },
  { long: "ns-ifname", short: "I", value: "NAME", only: "pasta", help: "Name of the tap interface in the namespace" },
  {
    long: "tcp-ns",
    short: "T",
    value: "SPEC",
    many: true,
    only: "pasta",
    help: "TCP port forwarding from namespace to init namespace (repeatable)",
  },
  {
    long: "udp-ns",
    short: "U",
    value: "SPEC",
    many: true,
    only: "pasta",
    help: "UDP port forwarding from namespace to init namespace (repeatable)",
  },
  { long: "host-lo-to-ns-lo", only: "pasta", help: "Connections to host loopback reach namespace loopback (the default here)" },
  { long: "userns", value: "PATH", only: "pasta", help: "Target user namespace to join" },
  { long: "netns", value: "PATH|NAME", only: "pasta", help: "Target network namespace to join" },
  { long: "netns-only", only: "pasta", help: "Join only a network namespace, not a user namespace" },
  { long: "no-netns-quit", only: "pasta", help: "Don't quit when the target namespace goes away" },
  { long: "config-net", only: "pasta", help: "Configure addresses, routes and link state in the namespace" },
  {
    long: "no-copy-routes",
    only: "pasta",
    help: "With --config-net, set up the default route only, not every route of the host interface (deprecated upstream)",
  },
  {
    long: "no-copy-addrs",
    only: "pasta",
    help: "With --config-net, set up one address only, not every address of the host interface (deprecated upstream)",
  },
  { long: "ns-mac-addr", value: "ADDR", only: "pasta", help: "MAC address of the tap interface in the namespace" },
  { long: "no-splice", help: "Local inbound connections go through the tap, not the spliced path (passt never splices)" },
  { long: "splice-only", only: "pasta", help: "No tap device: only forward loopback traffic between namespaces" },
];

/** The options of mode, in --help order (what --help and the man page list). */
export function optionsOf(mode: Mode): OptDef[] {
  return OPTIONS.filter((o) => !o.only || o.only === mode);
}

/** What each command is, in one line (--help's first line, the man page's NAME). */
export const DESCRIPTIONS: Record<Mode, string> = {
  pasta: "Unprivileged user-mode network connectivity for network namespaces",
  passt: "Unprivileged user-mode network connectivity for virtual machines",
};

/** pasta's positional argument, as --help and the man page describe it. */
export const PASTA_COMMAND_HELP =
  "PID | COMMAND [ARGS...]: process whose namespaces to join, or command to run in new ones (default: shell)";

/**
 * Upstream options we know but can't honour: given, each ends the run with
 * one line saying why (never accepted and ignored). mode: refused in that
 * mode only.
 */
const REFUSED: { long: string; mode?: Mode; why: string }[] = [
  { long: "conf-path", why: "there is no configuration socket for pesto(1) here" },
  { long: "chroot-fallback", why: "there is no filesystem sandbox (pivot_root) here to fall back from" },
];

/** Throw for the first option of the scan that REFUSED lists for mode. */
function refuse(s: Scan, mode: Mode): void {
  for (const r of REFUSED) {
    if (flag(s, r.long) && (!r.mode || r.mode === mode)) throw new Error(`--${r.long}: not supported: ${r.why}`);
  }
}

// ---------------------------------------------------------------- citty

/** citty argument declarations for mode, from OPTIONS. */
function cittyArgs(mode: Mode): ArgsDef {
  const args: ArgsDef = {};
  for (const o of optionsOf(mode)) {
    args[o.long] = o.value
      ? { type: "string", alias: o.short, valueHint: o.value, description: o.help }
      : { type: "boolean", alias: o.short, description: o.help };
  }
  if (mode === "pasta") {
    args.command = {
      type: "positional",
      required: false,
      description: PASTA_COMMAND_HELP,
    };
  }
  return args;
}

/** The citty commands: meta and arguments, used for --help and --version. */
export const commands: Record<Mode, CommandDef> = {
  pasta: defineCommand({
    meta: { name: "pasta", version: VERSION, description: DESCRIPTIONS.pasta },
    args: cittyArgs("pasta"),
  }),
  passt: defineCommand({
    meta: { name: "passt", version: VERSION, description: DESCRIPTIONS.passt },
    args: cittyArgs("passt"),
  }),
};

/** The --help text of mode, generated by citty from the declarations. */
export function helpText(mode: Mode): Promise<string> {
  return renderUsage(commands[mode]);
}

/** The --version line of mode. */
export function versionText(mode: Mode): string {
  return `${mode} ${VERSION}`;
}

/**
 * The mode of this process: PASST_MODE=passt|pasta if set, else the program
 * name (argv[1] basename, "passt*" means passt), else pasta.
 */
export function detectMode(argv1: string | undefined, env: Record<string, string | undefined> = process.env): Mode {
  if (env.PASST_MODE === "passt" || env.PASST_MODE === "pasta") return env.PASST_MODE;
  const base = (argv1 ?? "").split("/").pop() ?? "";
  return base.startsWith("passt") ? "passt" : "pasta";
}

// ---------------------------------------------------------------- scanning

/** What the scan found: option values by long name (flags get ""), and the rest of argv. */
interface Scan {
  seen: Map<string, string[]>;
  rest: string[];
}

/** The option long names (exact, else an unambiguous prefix) for --name. */
function findLong(name: string, mode: Mode): OptDef {
  const exact = OPTIONS.find((o) => o.long === name || o.alias === name);
  const found = exact ? [exact] : OPTIONS.filter((o) => o.long.startsWith(name) && (!o.only || o.only === mode));
  if (found.length === 0) throw new Error(`unrecognized option '--${name}'`);
  if (found.length > 1) throw new Error(`option '--${name}' is ambiguous: ${found.map((o) => `--${o.long}`).join(", ")}`);
  return checkMode(found[0]!, mode);
}

/** The option with short letter c. */
function findShort(c: string, mode: Mode): OptDef {
  const o = OPTIONS.find((x) => x.short === c);
  if (!o) throw new Error(`invalid option -- '${c}'`);
  return checkMode(o, mode);
}

/** o itself, or an Error if it belongs to the other mode. */
function checkMode(o: OptDef, mode: Mode): OptDef {
  if (o.only && o.only !== mode) throw new Error(`option --${o.long} is for ${o.only} only`);
  return o;
}

/** Record one occurrence of o with value v. */
function record(scan: Scan, o: OptDef, v: string): void {
  const list = scan.seen.get(o.long);
  if (list) list.push(v);
  else scan.seen.set(o.long, [v]);
}

/** Scan argv as getopt_long with '+': options first, then everything else untouched. */
function scanArgv(argv: string[], mode: Mode): Scan {
  const scan: Scan = { seen: new Map(), rest: [] };
  let i = 0;
  while (i < argv.length) {
    const a = argv[i]!;
    if (a === "--") return { ...scan, rest: argv.slice(i + 1) };
    if (!a.startsWith("-") || a === "-") return { ...scan, rest: argv.slice(i) };
    i = a.startsWith("--") ? scanLong(argv, i, scan, mode) : scanShort(argv, i, scan, mode);
  }
  return scan;
}

/** Scan the long option at argv[i]; return the index of the next argument. */
function scanLong(argv: string[], i: number, scan: Scan, mode: Mode): number {
  const a = argv[i]!.slice(2);
  const eq = a.indexOf("=");
  const o = findLong(eq >= 0 ? a.slice(0, eq) : a, mode);
  if (!o.value) {
    if (eq >= 0) throw new Error(`option '--${o.long}' doesn't allow an argument`);
    record(scan, o, "");
    return i + 1;
  }
  if (eq >= 0) {
    record(scan, o, a.slice(eq + 1));
    return i + 1;
  }
  if (i + 1 >= argv.length) throw new Error(`option '--${o.long}' requires an argument`);
  record(scan, o, argv[i + 1]!);
  return i + 2;
}

/** Scan the short option cluster at argv[i]; return the index of the next argument. */
function scanShort(argv: string[], i: number, scan: Scan, mode: Mode): number {
  const a = argv[i]!;
  for (let j = 1; j < a.length; j++) {
    const o = findShort(a[j]!, mode);
    if (!o.value) {
      record(scan, o, "");
      continue;
    }
    if (j + 1 < a.length) {
      record(scan, o, a.slice(j + 1));
      return i + 1;
    }
    if (i + 1 >= argv.length) throw new Error(`option requires an argument -- '${a[j]}'`);
    record(scan, o, argv[i + 1]!);
    return i + 2;
  }
  return i + 1;
}

// ---------------------------------------------------------------- reading values

/** Whether the flag was given. */
function flag(s: Scan, long: string): boolean {
  return s.seen.has(long);
}

/** true if flag on was given, false if flag off was, undefined for neither (the mode's default). */
function onOff(s: Scan, on: string, off: string): boolean | undefined {
  return flag(s, on) ? true : flag(s, off) ? false : undefined;
}

/** The value of a single-valued option, undefined if absent; the last one when given more than once (as upstream). */
function single(s: Scan, long: string): string | undefined {
  return s.seen.get(long)?.at(-1);
}

/** All values of a repeatable option, in order. */
function many(s: Scan, long: string): string[] {
  return s.seen.get(long) ?? [];
}

/** Run parse on v, turning its error into "--long v: reason". */
function withOpt<T>(long: string, v: string, parse: (v: string) => T): T {
  try {
    return parse(v);
  } catch (e) {
    throw new Error(`--${long} ${v}: ${(e as Error).message}`);
  }
}

/** A decimal integer in [min, max], else an Error naming what it is. */
function intIn(v: string, min: number, max: number, what: string): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`${what} must be an integer from ${min} to ${max}`);
  return Number(v);
}

/** An IPv4 netmask, dot-decimal or number of bits, as a prefix length. */
export function parseNetmask(v: string): number {
  if (/^\d+$/.test(v)) return intIn(v, 0, IPV4_BITS, "prefix length");
  const m = parseIp4(v);
  const inv = ~m >>> 0;
  if ((inv & (inv + 1)) !== 0) throw new Error("not a contiguous netmask");
  return Math.clz32(inv);
}

/** An interface name the kernel would take. */
function parseIfname(v: string): string {
  if (v === "" || v.length > IFNAME_MAX || /[\s/:]/.test(v)) throw new Error("bad interface name");
  return v;
}

/** Split per-version options (-a, -g, -o, --dns-forward) into one IPv4 and one IPv6 address: the last of each (as upstream). */
function perFamily(s: Scan, long: string): { v4?: number; v6?: Uint8Array } {
  const out: { v4?: number; v6?: Uint8Array } = {};
  for (const v of many(s, long)) {
    if (v.includes(":")) out.v6 = withOpt(long, v, parseIp6);
    else out.v4 = withOpt(long, v, parseIp4);
  }
  return out;
}

/**
 * --map-host-loopback and --map-guest-addr (as upstream): the last address of
 * each IP version, "none" for neither (0 / null). Unspecified, loopback and
 * multicast addresses are refused.
 */
function natAddrs(s: Scan, long: string): { v4?: number; v6?: Uint8Array | null } {
  const out: { v4?: number; v6?: Uint8Array | null } = {};
  for (const v of many(s, long)) {
    if (v === "none") {
      out.v4 = 0;
      out.v6 = null;
    } else if (v.includes(":")) {
      const a = withOpt(long, v, parseIp6);
      if (a.every((x, i) => x === (i === 15 ? 1 : 0)) || a.every((x) => x === 0) || a[0] === 0xff)
        throw new Error(`--${long} ${v}: invalid address to remap`);
      out.v6 = a;
    } else {
      const a = withOpt(long, v, parseIp4);
      if (a === 0 || a >>> 24 === 127 || a >>> 28 === 0xe) throw new Error(`--${long} ${v}: invalid address to remap`);
      out.v4 = a;
    }
  }
  return out;
}

/**
 * --dns-forward or --dns-host values: the last of each IP version, as
 * upstream refusing unspecified and broadcast addresses, and loopback ones
 * where the guest would send to them (--dns-forward).
 */
function dnsAddrs(s: Scan, long: string, guestSide: boolean): { v4?: number; v6?: Uint8Array } {
  const a = perFamily(s, long);
  const bad4 = a.v4 === 0 || a.v4 === 0xffffffff || (guestSide && a.v4 !== undefined && a.v4 >>> 24 === 127);
  const bad6 = a.v6 !== undefined && (a.v6.every((x) => x === 0) || (guestSide && a.v6.every((x, i) => x === (i === 15 ? 1 : 0))));
  if (bad4 || bad6) throw new Error(`--${long}: invalid address`);
  return a;
}

/** What -a gives for each IP version: the last address, and its prefix length when written ADDR/PREFIX. */
interface GuestAddrs {
  v4?: number;
  prefix4?: number;
  v6?: Uint8Array;
  prefix6?: number;
}

/** -a values: unicast, non-loopback addresses, each with an optional /PREFIX (0-32, 0-128); the last per version wins. */
function guestAddrs(s: Scan): GuestAddrs {
  const out: GuestAddrs = {};
  for (const v of many(s, "address")) {
    const slash = v.indexOf("/");
    const a = slash < 0 ? v : v.slice(0, slash);
    const p = slash < 0 ? undefined : v.slice(slash + 1);
    if (a.includes(":")) {
      out.v6 = withOpt("address", v, () => parseIp6(a));
      out.prefix6 = p === undefined ? undefined : withOpt("address", v, () => intIn(p, 0, 128, "prefix length"));
    } else {
      out.v4 = withOpt("address", v, () => parseIp4(a));
      out.prefix4 = p === undefined ? undefined : withOpt("address", v, () => intIn(p, 0, IPV4_BITS, "prefix length"));
    }
  }
  const v4Bad = out.v4 !== undefined && (out.v4 === 0 || out.v4 >>> 24 === 127 || out.v4 >>> 28 >= 0xe);
  const v6Bad = out.v6 !== undefined && (out.v6[0] === 0xff || out.v6.subarray(0, 15).every((x) => x === 0));
  if (v4Bad || v6Bad) throw new Error("--address: not a unicast address");
  return out;
}

/** The IPv4 prefix length: from -a ADDR/PREFIX or from -n, never both (as upstream). */
function prefix4(s: Scan, addr: GuestAddrs): number | undefined {
  const mask = single(s, "netmask");
  if (mask === undefined) return addr.prefix4;
  if (addr.prefix4 !== undefined) throw new Error("--netmask: redundant with the prefix length of --address");
  return withOpt("netmask", mask, parseNetmask);
}

/** -D values: IPv4 and IPv6 servers; "none" alone means no servers at all. */
function dnsServers(s: Scan): { dns4?: number[]; dns6?: Uint8Array[] } {
  const vals = many(s, "dns");
  if (vals.length === 0) return {};
  if (vals.includes("none")) {
    if (vals.length > 1) throw new Error("--dns none can't be combined with addresses");
    return { dns4: [], dns6: [] };
  }
  const dns4: number[] = [];
  const dns6: Uint8Array[] = [];
  for (const v of vals) {
    if (v.includes(":")) dns6.push(withOpt("dns", v, parseIp6));
    else dns4.push(withOpt("dns", v, parseIp4));
  }
  return { dns4, dns6 };
}

/** Whether n is a domain name we can encode: letters, digits, '_', '-', labels of 1 to 63 characters, a trailing dot at most. */
function isDomainName(n: string): boolean {
  const labels = (n.endsWith(".") ? n.slice(0, -1) : n).split(".");
  return n.length <= DNS_NAME_MAX && /^[A-Za-z0-9_.-]+$/.test(n) && labels.every((l) => l.length >= 1 && l.length <= 63);
}

/** -S value: a list of domain names, or [] for "none". */
function searchList(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  if (v === "none") return [];
  const names = v.split(/\s+/).filter((x) => x !== "");
  for (const n of names) {
    if (!isDomainName(n)) throw new Error(`--search: bad domain name '${n}'`);
  }
  return names;
}

/** -H and --fqdn values: a domain name (a hostname is one too). */
function hostName(long: string, v: string | undefined): string | undefined {
  if (v !== undefined && !isDomainName(v)) throw new Error(`--${long} ${v}: bad name`);
  return v;
}

// ---------------------------------------------------------------- results

/** Everything from the command line that isn't in Config: read at start-up only. */
export interface RunOptions {
  mode: Mode;
  help: boolean;
  version: boolean;
  logLevel: LogLevelName;
  logFile: string | null;
  logSize: number;
  /** --stats: seconds between counter lines in the log; 0 for none. */
  statsDelay: number;
  foreground: boolean;
  pidFile: string | null;
  pcap: string | null;
  runas: string | null;
  /** -t: host to guest/namespace; -u likewise for UDP. */
  tcp: PortFwd;
  udp: PortFwd;
  /** -T / -U (pasta): namespace to host; mode "none" for passt. */
  tcpNs: PortFwd;
  udpNs: PortFwd;
  noTcp: boolean;
  noUdp: boolean;
  /** -o: source address of outbound sockets. */
  outbound4: number | null;
  outbound6: Uint8Array | null;
  /** --outbound-if4/6: interface outbound sockets are bound to. */
  outboundIf4: string | null;
  outboundIf6: string | null;
  /** -F: pre-opened socket (passt) or tap (pasta) descriptor. */
  fd: number | null;
  /** passt: -s and -1. */
  socket: string | null;
  oneOff: boolean;
  /** passt --vhost-user: the socket speaks vhost-user, not qemu's stream framing. */
  vhostUser: boolean;
  /** pasta: command to spawn (empty: the user's shell), or a namespace to join. */
  command: string[];
  attachPid: number | null;
  netns: string | null;
  userns: string | null;
  netnsOnly: boolean;
  noNetnsQuit: boolean;
  /** --freebind: forwarded ports may listen on addresses the host doesn't have. */
  freebind: boolean;
  /** Inbound loopback connections: spliced (default), through the tap (--no-splice), or only those (--splice-only, no tap). */
  splice: SpliceMode;
}

export type SpliceMode = "on" | "off" | "only";

export type Parsed =
  | { action: "run"; config: Config; opts: RunOptions }
  | { action: "help" | "version" | "print-capabilities"; opts: RunOptions };

/**
 * What --print-capabilities prints: the JSON of the vhost-user
 * specification's "backend program conventions" for a net back-end (the
 * same object as upstream's; upstream writes it to stderr, we to stdout,
 * where the convention and libvirt read it).
 */
export const CAPABILITIES = '{\n  "type": "net"\n}\n';

/** Host access for parseArgs, replaced by tests. */
export interface ParseDeps {
  discover?: (sel: IfSelect) => HostNet;
  resolv?: () => ResolvConf;
  ephemeral?: PortRange;
}

/** -d/--trace/-q as a log level; quiet with debug is a contradiction. */
function logLevel(s: Scan): LogLevelName {
  const debug = flag(s, "debug") || flag(s, "trace");
  if (debug && flag(s, "quiet")) throw new Error("options --quiet and --debug (or --trace) conflict");
  if (flag(s, "trace")) return "trace";
  return debug ? "debug" : flag(s, "quiet") ? "quiet" : "info";
}

/** One forwarding table from every value of a port option, with the mode's default. */
function portFwd(s: Scan, long: string, short: string, mode: Mode, eph: PortRange): PortFwd {
  const fwd = newPortFwd();
  const ctx = { mode, opt: `-${short}`, ephemeral: eph, ip4: !flag(s, "ipv6-only"), ip6: !flag(s, "ipv4-only") };
  for (const spec of many(s, long)) parsePortSpec(fwd, spec, ctx);
  finishPortFwd(fwd, ctx);
  return fwd;
}

/** --no-splice, --splice-only and --host-lo-to-ns-lo, with the combinations the original refuses. */
function spliceMode(s: Scan): SpliceMode {
  const off = flag(s, "no-splice");
  if (off && flag(s, "host-lo-to-ns-lo")) throw new Error("--host-lo-to-ns-lo is incompatible with --no-splice");
  if (off && flag(s, "splice-only")) throw new Error("--splice-only is incompatible with --no-splice");
  return flag(s, "splice-only") ? "only" : off ? "off" : "on";
}

/** --netns: a path as given, or a name under /run/netns. */
function netnsPath(v: string | undefined): string | null {
  if (v === undefined) return null;
  if (v === "") throw new Error("--netns: empty name");
  return v.includes("/") ? v : `${NETNS_RUN_DIR}/${v}`;
}

/**
 * pasta's positional arguments: a lone number is a PID to join, anything
 * else a command. Checks the combinations the man page rules out.
 */
function target(s: Scan, mode: Mode): Pick<RunOptions, "command" | "attachPid" | "netns" | "userns"> {
  if (mode === "passt") {
    if (s.rest.length > 0) throw new Error(`unexpected argument '${s.rest[0]}'`);
    return { command: [], attachPid: null, netns: null, userns: null };
  }
  const netns = netnsPath(single(s, "netns"));
  const userns = single(s, "userns") ?? null;
  const isPid = s.rest.length === 1 && /^\d+$/.test(s.rest[0]!);
  const attachPid = isPid ? intIn(s.rest[0]!, 1, 2 ** 31 - 1, "PID") : null;
  if (netns && attachPid !== null) throw new Error("--netns can't be given with a PID");
  if (netns && s.rest.length > 0) throw new Error("--netns can't be given with a command");
  if (userns !== null && !netns && attachPid === null) throw new Error("--userns needs --netns or a PID");
  return { command: isPid ? [] : s.rest, attachPid, netns, userns };
}

/** The RunOptions from a scan. */
function runOptions(s: Scan, mode: Mode, eph: PortRange): RunOptions {
  const out = perFamily(s, "outbound");
  const ifOut4 = single(s, "outbound-if4");
  const ifOut6 = single(s, "outbound-if6");
  const logSize = single(s, "log-size");
  const stats = single(s, "stats");
  const fd = single(s, "fd");
  return {
    mode,
    help: flag(s, "help"),
    version: flag(s, "version"),
    logLevel: logLevel(s),
    logFile: single(s, "log-file") ?? null,
    logSize: logSize === undefined ? LOG_SIZE_DEFAULT : withOpt("log-size", logSize, (v) => intIn(v, LOG_SIZE_MIN, 2 ** 31 - 1, "size")),
    foreground: flag(s, "foreground"),
    statsDelay: stats === undefined ? 0 : withOpt("stats", stats, (v) => intIn(v, 1, 2 ** 31 - 1, "delay")),
    pidFile: single(s, "pid") ?? null,
    pcap: single(s, "pcap") ?? null,
    runas: single(s, "runas") ?? null,
    tcp: portFwd(s, "tcp-ports", "t", mode, eph),
    udp: portFwd(s, "udp-ports", "u", mode, eph),
    tcpNs: portFwd(s, "tcp-ns", "T", mode, eph),
    udpNs: portFwd(s, "udp-ns", "U", mode, eph),
    noTcp: flag(s, "no-tcp"),
    noUdp: flag(s, "no-udp"),
    outbound4: out.v4 ?? null,
    outbound6: out.v6 ?? null,
    outboundIf4: ifOut4 === undefined ? null : withOpt("outbound-if4", ifOut4, parseIfname),
    outboundIf6: ifOut6 === undefined ? null : withOpt("outbound-if6", ifOut6, parseIfname),
    fd: fd === undefined ? null : withOpt("fd", fd, (v) => intIn(v, 0, 2 ** 31 - 1, "descriptor")),
    socket: single(s, "socket") ?? null,
    oneOff: flag(s, "one-off"),
    vhostUser: flag(s, "vhost-user"),
    ...target(s, mode),
    netnsOnly: flag(s, "netns-only"),
    noNetnsQuit: flag(s, "no-netns-quit"),
    freebind: flag(s, "freebind"),
    splice: spliceMode(s),
  };
}

/** The Config overrides from a scan. */
function overrides(s: Scan): ConfigOverrides {
  if (flag(s, "ipv4-only") && flag(s, "ipv6-only")) throw new Error("options -4 and -6 are mutually exclusive");
  const addr = guestAddrs(s);
  const gw = perFamily(s, "gateway");
  const fwd = dnsAddrs(s, "dns-forward", true);
  const dnsHost = dnsAddrs(s, "dns-host", false);
  const mapLo = natAddrs(s, "map-host-loopback");
  const mapGuest = natAddrs(s, "map-guest-addr");
  const mtu = single(s, "mtu");
  const mac = single(s, "mac-addr");
  const nsMac = single(s, "ns-mac-addr");
  const nsIf = single(s, "ns-ifname");
  return {
    ipv4Only: flag(s, "ipv4-only"),
    ipv6Only: flag(s, "ipv6-only"),
    addr4: addr.v4,
    addr6: addr.v6,
    gw4: gw.v4,
    gw6: gw.v6,
    dnsForward4: fwd.v4,
    dnsForward6: fwd.v6,
    prefixLen4: prefix4(s, addr),
    prefixLen6: addr.prefix6,
    dnsHost4: dnsHost.v4,
    dnsHost6: dnsHost.v6,
    mapHostLoopback4: mapLo.v4,
    mapHostLoopback6: mapLo.v6,
    mapGuestAddr4: mapGuest.v4,
    mapGuestAddr6: mapGuest.v6,
    mtu: mtu === undefined ? undefined : withOpt("mtu", mtu, (v) => intIn(v, MIN_MTU, DEFAULT_MTU, "MTU")),
    mac: mac === undefined ? undefined : withOpt("mac-addr", mac, parseMac),
    nsMac: nsMac === undefined ? undefined : withOpt("ns-mac-addr", nsMac, parseMac),
    nsIfname: nsIf === undefined ? undefined : withOpt("ns-ifname", nsIf, parseIfname),
    ...dnsServers(s),
    search: searchList(single(s, "search")),
    dhcpDns: onOff(s, "dhcp-dns", "no-dhcp-dns"),
    dhcpSearch: onOff(s, "dhcp-search", "no-dhcp-search"),
    hostname: hostName("hostname", single(s, "hostname")),
    fqdn: hostName("fqdn", single(s, "fqdn")),
    noDhcp: flag(s, "no-dhcp"),
    noNdp: flag(s, "no-ndp"),
    noDhcpv6: flag(s, "no-dhcpv6"),
    noRa: flag(s, "no-ra"),
    noIcmp: flag(s, "no-icmp"),
    noUdp: flag(s, "no-udp"),
    noMapGw: flag(s, "no-map-gw"),
    configNet: flag(s, "config-net"),
    ...copyFlags(s),
  };
}

/** --no-copy-routes and --no-copy-addrs, which only mean something with --config-net (as upstream). */
function copyFlags(s: Scan): Pick<ConfigOverrides, "noCopyRoutes" | "noCopyAddrs"> {
  for (const long of ["no-copy-routes", "no-copy-addrs"]) {
    if (flag(s, long) && !flag(s, "config-net")) throw new Error(`--${long} needs --config-net`);
  }
  return { noCopyRoutes: flag(s, "no-copy-routes"), noCopyAddrs: flag(s, "no-copy-addrs") };
}

/** Interfaces to read the host from: -i for both versions, else --outbound-if4/6. */
function ifSelect(s: Scan): IfSelect {
  const i = single(s, "interface");
  const name = i === undefined ? undefined : withOpt("interface", i, parseIfname);
  return { ifname4: name ?? single(s, "outbound-if4"), ifname6: name ?? single(s, "outbound-if6") };
}

/**
 * Parse argv (without the program name) for mode. --help, --version and
 * (passt) --print-capabilities return at once (other options are then only scanned); otherwise the host is discovered (deps.discover, default:
 * netlink) and resolv.conf read (deps.resolv) to build the Config.
 */
export function parseArgs(argv: string[], mode: Mode, deps: ParseDeps = {}): Parsed {
  const s = scanArgv(argv, mode);
  const eph = deps.ephemeral ?? probeEphemeral();
  for (const action of ["help", "version", "print-capabilities"] as const) {
    if (flag(s, action)) return { action, opts: runOptions({ seen: new Map([[action, [""]]]), rest: [] }, mode, eph) };
  }
  refuse(s, mode);
  const opts = runOptions(s, mode, eph);
  const ov = overrides(s);
  const sel = ifSelect(s);
  const host = (deps.discover ?? discoverHostNow)(sel);
  const resolv = (deps.resolv ?? readResolvConf)();
  return { action: "run", config: buildConfig(mode, host, resolv, ov), opts };
}
