/**
 * rtnetlink, in TypeScript: build requests and parse replies over plain bytes.
 *
 * Used twice: at start-up to discover the host's routes, addresses and links,
 * and (pasta) to configure the tap interface inside the namespace: bring it up,
 * set MTU and MAC, add addresses and routes, or copy the host interface's
 * addresses and routes as dumped (addrCopies, routeCopies).
 *
 * The socket is hidden behind NlTalk: send one request, get back the bytes of
 * every reply message up to the end of the answer (NLMSG_DONE for dumps, the
 * acknowledgement for changes), or a thrown NetlinkError carrying the errno.
 * makeTalk() is the real one over a netlink socket (blocking: this only runs
 * at configuration time, never from the event loop); tests pass canned bytes
 * through collectReplies() instead.
 *
 * Netlink uses host byte order; addresses inside attributes are in network
 * order and are returned as raw bytes (4 or 16), see ip4FromBytes().
 */
import { AF_NETLINK, SOCK_RAW } from "../native/consts.ts";

/** Send one request, return the reply messages (each a whole nlmsghdr+payload). */
export type NlTalk = (req: Uint8Array) => Uint8Array[];

export const AF_INET = 2;
export const AF_INET6 = 10;
export type Family = typeof AF_INET | typeof AF_INET6;

const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

const NLMSG_HDRLEN = 16;
const NLA_HDRLEN = 4;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
/** On NLMSG_ERROR: the original request was cut to its header / TLVs follow. */
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;

const IFINFOMSG_LEN = 16;
const IFADDRMSG_LEN = 8;
const RTMSG_LEN = 12;
const RTNEXTHOP_LEN = 8;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_LABEL = 3;
const IFA_CACHEINFO = 6;
const IFA_FLAGS = 8;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_MULTIPATH = 9;
const RTA_CACHEINFO = 12;
const RTA_TABLE = 15;
const RTA_NH_ID = 30;
const IFA_F_DEPRECATED = 0x20;
/** Nexthop state flags (RTNH_F_DEAD, _OFFLOAD, _LINKDOWN, _TRAP): the kernel refuses them in a new route. */
const RTNH_STATE_FLAGS = 0x01 | 0x08 | 0x10 | 0x40;

export const IFF_UP = 0x1;
export const IFA_F_NODAD = 0x02;
export const RT_TABLE_MAIN = 254;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
const RTPROT_BOOT = 3;
const RTN_UNICAST = 1;
const RTNH_F_ONLINK = 0x4;

/** Size of the receive buffer: larger than any datagram a dump sends. */
const RECV_BUF_SIZE = 65536;
const EINTR = 4;
const EEXIST = 17;
const ENETUNREACH = 101;
const EHOSTUNREACH = 113;

/** Netlink is host-endian: this is true on x86-64 and arm64. */
const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  34: "ERANGE",
  95: "EOPNOTSUPP",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
};

/** A negative answer from the kernel, or a failed socket call. */
export class NetlinkError extends Error {
  readonly errno: number;
  /** errno is positive; detail is the kernel's extended-ack text, if any. */
  constructor(errno: number, what: string, detail = "") {
    super(`${what}: ${ERRNO_NAMES[errno] ?? `errno ${errno}`}${detail ? ` (${detail})` : ""}`);
    this.errno = errno;
  }
}

// ---------------------------------------------------------------- building

/** A DataView over the whole of b, whatever its offset in its buffer. */
function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Round n up to the 4-byte netlink alignment. */
function align4(n: number): number {
  return (n + 3) & ~3;
}

/** One attribute: header, data, padding. */
function attr(type: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(align4(NLA_HDRLEN + data.length));
  const dv = view(out);
  dv.setUint16(0, NLA_HDRLEN + data.length, LE);
  dv.setUint16(2, type, LE);
  out.set(data, NLA_HDRLEN);
  return out;
}

/** A u32 attribute (host order). */
function attrU32(type: number, v: number): Uint8Array {
  const b = new Uint8Array(4);
  view(b).setUint32(0, v >>> 0, LE);
  return attr(type, b);
}

/**
 * A whole request: nlmsghdr (seq and pid left 0: the transport sets seq),
 * the fixed family header, then the attributes.
 */
function message(type: number, flags: number, fixed: Uint8Array, attrs: Uint8Array[] = []): Uint8Array {
  const len = NLMSG_HDRLEN + fixed.length + attrs.reduce((n, a) => n + a.length, 0);
  const out = new Uint8Array(len);
  const dv = view(out);
  dv.setUint32(0, len, LE);
  dv.setUint16(4, type, LE);
  dv.setUint16(6, flags | NLM_F_REQUEST, LE);
  out.set(fixed, NLMSG_HDRLEN);
  let off = NLMSG_HDRLEN + fixed.length;
  for (const a of attrs) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}

/** struct ifinfomsg. */
function ifinfomsg(index: number, flags = 0, change = 0): Uint8Array {
  const b = new Uint8Array(IFINFOMSG_LEN);
  const dv = view(b);
  dv.setInt32(4, index, LE);
  dv.setUint32(8, flags, LE);
  dv.setUint32(12, change, LE);
  return b;
}

/** struct ifaddrmsg. */
function ifaddrmsg(family: number, prefixLen = 0, flags = 0, scope = 0, index = 0): Uint8Array {
  const b = new Uint8Array(IFADDRMSG_LEN);
  b[0] = family;
  b[1] = prefixLen;
  b[2] = flags & 0xff;
  b[3] = scope;
  view(b).setUint32(4, index, LE);
  return b;
}

/** struct rtmsg for a unicast route in the main table. */
function rtmsg(family: number, dstLen = 0, scope = RT_SCOPE_UNIVERSE, flags = 0): Uint8Array {
  const b = new Uint8Array(RTMSG_LEN);
  b[0] = family;
  b[1] = dstLen;
  b[4] = RT_TABLE_MAIN;
  b[5] = RTPROT_BOOT;
  b[6] = scope;
  b[7] = RTN_UNICAST;
  view(b).setUint32(8, flags, LE);
  return b;
}

// ---------------------------------------------------------------- parsing

/** Type, flags and payload of one reply message. */
function header(msg: Uint8Array): { type: number; flags: number; seq: number } {
  const dv = view(msg);
  return { type: dv.getUint16(4, LE), flags: dv.getUint16(6, LE), seq: dv.getUint32(8, LE) };
}

/** The attributes found in b from off to the end, by type (the first of each type wins). */
function parseAttrs(b: Uint8Array, off: number): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const dv = view(b);
  while (off + NLA_HDRLEN <= b.length) {
    const len = dv.getUint16(off, LE);
    if (len < NLA_HDRLEN || off + len > b.length) break;
    const type = dv.getUint16(off + 2, LE) & 0x3fff;
    if (!out.has(type)) out.set(type, b.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return out;
}

/** Every attribute in b from off to the end, in order, duplicates included. */
function attrList(b: Uint8Array, off: number): { type: number; data: Uint8Array }[] {
  const out: { type: number; data: Uint8Array }[] = [];
  const dv = view(b);
  while (off + NLA_HDRLEN <= b.length) {
    const len = dv.getUint16(off, LE);
    if (len < NLA_HDRLEN || off + len > b.length) break;
    out.push({ type: dv.getUint16(off + 2, LE), data: b.subarray(off + NLA_HDRLEN, off + len) });
    off += align4(len);
  }
  return out;
}

/** A u32 attribute's value, or dflt when absent or short. */
function u32Of(attrs: Map<number, Uint8Array>, type: number, dflt: number): number {
  const a = attrs.get(type);
  return a && a.length >= 4 ? view(a).getUint32(0, LE) : dflt;
}

/** A NUL-terminated string attribute's value. */
function strOf(a: Uint8Array | undefined): string {
  if (!a) return "";
  const nul = a.indexOf(0);
  return new TextDecoder().decode(nul >= 0 ? a.subarray(0, nul) : a);
}

/** The errno (positive) and extended-ack text of an NLMSG_ERROR message. */
function errorOf(msg: Uint8Array): { errno: number; detail: string } {
  if (msg.length < NLMSG_HDRLEN + 4) return { errno: 0, detail: "" };
  const { flags } = header(msg);
  const errno = -view(msg).getInt32(NLMSG_HDRLEN, LE);
  if (!(flags & NLM_F_ACK_TLVS) || msg.length < NLMSG_HDRLEN * 2 + 4) return { errno, detail: "" };
  const orig = NLMSG_HDRLEN + 4;
  const origLen = flags & NLM_F_CAPPED ? NLMSG_HDRLEN : view(msg).getUint32(orig, LE);
  const tlvs = parseAttrs(msg, orig + align4(origLen));
  return { errno, detail: strOf(tlvs.get(NLMSGERR_ATTR_MSG)) };
}

/**
 * Split one received datagram into messages, append copies of the data
 * messages to out and tell whether the answer is complete (NLMSG_DONE or an
 * acknowledgement seen). Messages of another sequence number (stale answers)
 * are skipped unless seq is null. Throws NetlinkError for a negative answer.
 */
export function collectReplies(buf: Uint8Array, seq: number | null, out: Uint8Array[]): boolean {
  const dv = view(buf);
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length; ) {
    const len = dv.getUint32(off, LE);
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new NetlinkError(22, "netlink: malformed reply");
    const msg = buf.slice(off, off + len);
    off += align4(len);
    const h = header(msg);
    if (seq !== null && h.seq !== seq) continue;
    if (h.type === NLMSG_DONE) return true;
    if (h.type !== NLMSG_ERROR) {
      out.push(msg);
      continue;
    }
    const { errno, detail } = errorOf(msg);
    if (errno !== 0) throw new NetlinkError(errno, "netlink", detail);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- queries

export interface Route {
  ifindex: number;
  /** Next hop: 4 or 16 bytes, null for a directly connected default route. */
  gateway: Uint8Array | null;
  table: number;
  /** Route metric (RTA_PRIORITY), 0 when absent. */
  metric: number;
}

export interface Addr {
  addr: Uint8Array;
  prefixLen: number;
  scope: number;
  flags: number;
}

export interface Link {
  ifindex: number;
  name: string;
  /** Hardware address, as long as the link type makes it (empty when none). */
  mac: Uint8Array;
  mtu: number;
  flags: number;
}

/** Default routes of family (any table, as dumped), in kernel order. */
export function getRoutes(talk: NlTalk, family: Family): Route[] {
  const out: Route[] = [];
  const fixed = new Uint8Array(RTMSG_LEN);
  fixed[0] = family;
  for (const msg of talk(message(RTM_GETROUTE, NLM_F_DUMP, fixed))) {
    const r = parseRoute(msg, family);
    if (r) out.push(r);
  }
  return out;
}

/** One RTM_NEWROUTE as a Route if it is a unicast default route of family, else null. */
function parseRoute(msg: Uint8Array, family: Family): Route | null {
  const body = NLMSG_HDRLEN;
  if (header(msg).type !== RTM_NEWROUTE || msg.length < body + RTMSG_LEN) return null;
  if (msg[body] !== family || msg[body + 1] !== 0 || msg[body + 7] !== RTN_UNICAST) return null;
  const attrs = parseAttrs(msg, body + RTMSG_LEN);
  const route: Route = {
    ifindex: u32Of(attrs, RTA_OIF, 0),
    gateway: attrs.get(RTA_GATEWAY)?.slice() ?? null,
    table: u32Of(attrs, RTA_TABLE, msg[body + 4]!),
    metric: u32Of(attrs, RTA_PRIORITY, 0),
  };
  const mp = attrs.get(RTA_MULTIPATH);
  if (route.ifindex === 0 && mp) firstNexthop(mp, route);
  return route;
}

/** Fill ifindex and gateway of route from the first nexthop of a multipath route. */
function firstNexthop(mp: Uint8Array, route: Route): void {
  if (mp.length < RTNEXTHOP_LEN) return;
  const dv = view(mp);
  const len = Math.min(dv.getUint16(0, LE), mp.length);
  route.ifindex = dv.getInt32(4, LE);
  route.gateway = parseAttrs(mp.subarray(0, len), RTNEXTHOP_LEN).get(RTA_GATEWAY)?.slice() ?? null;
}

/** Addresses of family on interface ifindex, in kernel order. */
export function getAddrs(talk: NlTalk, family: Family, ifindex: number): Addr[] {
  const out: Addr[] = [];
  const req = message(RTM_GETADDR, NLM_F_DUMP, ifaddrmsg(family, 0, 0, 0, ifindex));
  for (const msg of talk(req)) {
    const body = NLMSG_HDRLEN;
    if (header(msg).type !== RTM_NEWADDR || msg.length < body + IFADDRMSG_LEN) continue;
    if (msg[body] !== family || view(msg).getUint32(body + 4, LE) !== ifindex) continue;
    const attrs = parseAttrs(msg, body + IFADDRMSG_LEN);
    const a = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
    if (!a) continue;
    out.push({ addr: a.slice(), prefixLen: msg[body + 1]!, scope: msg[body + 3]!, flags: u32Of(attrs, IFA_FLAGS, msg[body + 2]!) });
  }
  return out;
}

/** One unicast route of the main table as dumped, for copying: where it goes, through which interfaces. */
export interface RouteMsg {
  /** Destination prefix (null for a default route). */
  dst: Uint8Array | null;
  dstLen: number;
  /** RTA_OIF, or the interface of each nexthop of a multipath route. */
  ifindexes: number[];
  /** The dumped message, header included. */
  msg: Uint8Array;
}

/** The unicast routes of family in the main table, in kernel order. */
export function getMainRoutes(talk: NlTalk, family: Family): RouteMsg[] {
  const out: RouteMsg[] = [];
  const fixed = new Uint8Array(RTMSG_LEN);
  fixed[0] = family;
  for (const msg of talk(message(RTM_GETROUTE, NLM_F_DUMP, fixed))) {
    const body = NLMSG_HDRLEN;
    if (header(msg).type !== RTM_NEWROUTE || msg.length < body + RTMSG_LEN) continue;
    if (msg[body] !== family || msg[body + 7] !== RTN_UNICAST) continue;
    const attrs = parseAttrs(msg, body + RTMSG_LEN);
    if (u32Of(attrs, RTA_TABLE, msg[body + 4]!) !== RT_TABLE_MAIN) continue;
    const mp = attrs.get(RTA_MULTIPATH);
    out.push({
      dst: attrs.get(RTA_DST)?.slice() ?? null,
      dstLen: msg[body + 1]!,
      ifindexes: mp ? nexthopIfindexes(mp) : [u32Of(attrs, RTA_OIF, 0)],
      msg,
    });
  }
  return out;
}

/** The interface index of each nexthop (struct rtnexthop: len, flags, hops, ifindex) in an RTA_MULTIPATH payload. */
function nexthopIfindexes(mp: Uint8Array): number[] {
  const out: number[] = [];
  const dv = view(mp);
  for (let off = 0; off + RTNEXTHOP_LEN <= mp.length; ) {
    const len = dv.getUint16(off, LE);
    if (len < RTNEXTHOP_LEN) break;
    out.push(dv.getInt32(off + 4, LE));
    off += align4(len);
  }
  return out;
}

/**
 * RTM_NEWROUTE requests that copy, onto interface `to` of another namespace,
 * every route of routes whose interfaces are all `from`: the dumped message
 * with its interfaces rewritten, without the preferred source address and
 * nexthop object id (they name things of the host), cache information or
 * nexthop state flags (the kernel's own, refused in a new route).
 */
export function routeCopies(routes: RouteMsg[], from: number, to: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const r of routes) {
    if (r.ifindexes.length === 0 || r.ifindexes.some((i) => i !== from)) continue;
    const fixed = r.msg.slice(NLMSG_HDRLEN, NLMSG_HDRLEN + RTMSG_LEN);
    view(fixed).setUint32(8, view(fixed).getUint32(8, LE) & ~RTNH_STATE_FLAGS, LE);
    const attrs: Uint8Array[] = [];
    for (const a of attrList(r.msg, NLMSG_HDRLEN + RTMSG_LEN)) {
      const type = a.type & 0x3fff;
      if (type === RTA_PREFSRC || type === RTA_NH_ID || type === RTA_CACHEINFO) continue;
      if (type === RTA_OIF) attrs.push(attrU32(RTA_OIF, to));
      else if (type === RTA_MULTIPATH) attrs.push(attr(RTA_MULTIPATH, nexthopsOn(a.data, to)));
      else attrs.push(attr(a.type, a.data));
    }
    out.push(message(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, fixed, attrs));
  }
  return out;
}

/** A copy of an RTA_MULTIPATH payload with every nexthop on interface `to`. */
function nexthopsOn(mp: Uint8Array, to: number): Uint8Array {
  const out = mp.slice();
  const dv = view(out);
  for (let off = 0; off + RTNEXTHOP_LEN <= out.length; ) {
    const len = dv.getUint16(off, LE);
    if (len < RTNEXTHOP_LEN) break;
    dv.setInt32(off + 4, to, LE);
    off += align4(len);
  }
  return out;
}

/**
 * Send route requests (routeCopies) until each is in: a route whose gateway
 * is reachable only through another of them fails (ENETUNREACH) until that
 * one is in, so the whole list is sent as many times as it has routes at
 * most, and routes already in (EEXIST) or never reachable are passed over.
 * Any other refusal is thrown.
 */
export function addRoutes(talk: NlTalk, reqs: Uint8Array[]): void {
  let pending = reqs;
  for (let round = 0; round < reqs.length && pending.length > 0; round++) {
    const failed: Uint8Array[] = [];
    for (const req of pending) {
      try {
        talk(req);
      } catch (e) {
        const errno = e instanceof NetlinkError ? e.errno : 0;
        if (errno === ENETUNREACH || errno === EHOSTUNREACH) failed.push(req);
        else if (errno !== EEXIST) throw e;
      }
    }
    pending = failed;
  }
}

/**
 * RTM_NEWADDR requests that put on interface `to` of another namespace every
 * address of family on `from`, except link-local and deprecated ones: the
 * dumped message on the new interface, with IFA_F_NODAD (the address is ours
 * alone there), without its label (a host interface name) and lifetimes.
 */
export function addrCopies(talk: NlTalk, family: Family, from: number, to: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const msg of talk(message(RTM_GETADDR, NLM_F_DUMP, ifaddrmsg(family, 0, 0, 0, from)))) {
    const body = NLMSG_HDRLEN;
    if (header(msg).type !== RTM_NEWADDR || msg.length < body + IFADDRMSG_LEN) continue;
    if (msg[body] !== family || view(msg).getUint32(body + 4, LE) !== from || msg[body + 3] === RT_SCOPE_LINK) continue;
    const attrs = attrList(msg, body + IFADDRMSG_LEN);
    const flags = attrs.find((a) => (a.type & 0x3fff) === IFA_FLAGS);
    const flags32 = flags && flags.data.length >= 4 ? view(flags.data).getUint32(0, LE) : msg[body + 2]!;
    if (flags32 & IFA_F_DEPRECATED) continue;
    const fixed = ifaddrmsg(family, msg[body + 1]!, msg[body + 2]! | IFA_F_NODAD, msg[body + 3]!, to);
    const copied = attrs.filter((a) => ![IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS].includes(a.type & 0x3fff)).map((a) => attr(a.type, a.data));
    copied.push(attrU32(IFA_FLAGS, flags32 | IFA_F_NODAD));
    out.push(message(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, fixed, copied));
  }
  return out;
}

/** Every link, in kernel order. */
export function getLinks(talk: NlTalk): Link[] {
  const out: Link[] = [];
  for (const msg of talk(message(RTM_GETLINK, NLM_F_DUMP, ifinfomsg(0)))) {
    const body = NLMSG_HDRLEN;
    if (header(msg).type !== RTM_NEWLINK || msg.length < body + IFINFOMSG_LEN) continue;
    const dv = view(msg);
    const attrs = parseAttrs(msg, body + IFINFOMSG_LEN);
    out.push({
      ifindex: dv.getInt32(body + 4, LE),
      name: strOf(attrs.get(IFLA_IFNAME)),
      mac: attrs.get(IFLA_ADDRESS)?.slice() ?? new Uint8Array(0),
      mtu: u32Of(attrs, IFLA_MTU, 0),
      flags: dv.getUint32(body + 8, LE),
    });
  }
  return out;
}

/** The index of the interface called name; throws NetlinkError ENODEV if there is none. */
export function linkIndex(talk: NlTalk, name: string): number {
  const link = getLinks(talk).find((l) => l.name === name);
  if (!link) throw new NetlinkError(19, `interface ${name}`);
  return link.ifindex;
}

// ---------------------------------------------------------------- changes

export interface LinkChange {
  up?: boolean;
  mtu?: number;
  mac?: Uint8Array;
}

/**
 * Change link ifindex: MTU and MAC first (some drivers refuse a new MAC on a
 * running link), then the up/down state, each acknowledged by the kernel.
 */
export function linkSet(talk: NlTalk, ifindex: number, ch: LinkChange): void {
  const attrs: Uint8Array[] = [];
  if (ch.mtu !== undefined) attrs.push(attrU32(IFLA_MTU, ch.mtu));
  if (ch.mac !== undefined) attrs.push(attr(IFLA_ADDRESS, ch.mac));
  if (attrs.length > 0) talk(message(RTM_NEWLINK, NLM_F_ACK, ifinfomsg(ifindex), attrs));
  if (ch.up !== undefined) talk(message(RTM_NEWLINK, NLM_F_ACK, ifinfomsg(ifindex, ch.up ? IFF_UP : 0, IFF_UP)));
}

/**
 * Add address addr/prefixLen (4 or 16 bytes) of family to ifindex. With
 * nodad, IPv6 duplicate address detection is skipped, so the address is usable
 * at once. Throws NetlinkError (EEXIST if it is already there).
 */
export function addrAdd(
  talk: NlTalk,
  family: Family,
  ifindex: number,
  addr: Uint8Array,
  prefixLen: number,
  opts: { nodad?: boolean } = {},
): void {
  const flags = opts.nodad ? IFA_F_NODAD : 0;
  const attrs = [attr(IFA_LOCAL, addr), attr(IFA_ADDRESS, addr), attrU32(IFA_FLAGS, flags)];
  const fixed = ifaddrmsg(family, prefixLen, flags, RT_SCOPE_UNIVERSE, ifindex);
  talk(message(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, fixed, attrs));
}

/** A destination prefix for routeAdd. */
export interface Prefix {
  addr: Uint8Array;
  prefixLen: number;
}

/**
 * Add a route of family in the main table through ifindex: via gateway (null
 * for an on-link route), to dst (null: the default route). onlink makes the
 * kernel take a gateway that is outside every prefix of the interface.
 */
export function routeAdd(
  talk: NlTalk,
  family: Family,
  ifindex: number,
  gateway: Uint8Array | null,
  dst: Prefix | null = null,
  opts: { onlink?: boolean } = {},
): void {
  const scope = gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  const attrs = [attrU32(RTA_OIF, ifindex)];
  if (gateway) attrs.push(attr(RTA_GATEWAY, gateway));
  if (dst && dst.prefixLen > 0) attrs.push(attr(RTA_DST, dst.addr));
  const fixed = rtmsg(family, dst?.prefixLen ?? 0, scope, opts.onlink ? RTNH_F_ONLINK : 0);
  talk(message(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, fixed, attrs));
}

/** IPv4 address bytes (network order) as a host-order u32. */
export function ip4FromBytes(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** A host-order u32 IPv4 address as 4 bytes in network order. */
export function ip4ToBytes(v: number): Uint8Array {
  return Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
}

// ---------------------------------------------------------------- transport

/** The socket calls makeTalk needs: those of src/native/ffi.ts (negative = -errno). */
export interface NlSys {
  shim_socket(domain: number, type: number, proto: number): number;
  shim_ns_socket(nsfd: number, domain: number, type: number, proto: number): number;
  shim_bind(fd: number, addr: Uint8Array, len: number): number;
  shim_setsockopt(fd: number, level: number, opt: number, val: Uint8Array, len: number): number;
  shim_send(fd: number, buf: Uint8Array, len: number, flags: number): number;
  shim_recv(fd: number, buf: Uint8Array, len: number, flags: number): number;
  shim_close(fd: number): number;
}

/** The shim's calls, loaded on first use so that pure parsing never loads native code. */
function shimSys(): NlSys {
  return (require("../native/ffi.ts") as { sys: NlSys }).sys;
}

/** Throw a NetlinkError for a negative shim result, return it otherwise. */
function checkRc(rc: number, what: string): number {
  if (rc < 0) throw new NetlinkError(-rc, what);
  return rc;
}

/**
 * Open a route netlink socket, in the network namespace nsfd refers to
 * (-1: ours), bound with a kernel-chosen port id, asking for small
 * acknowledgements and extended error messages (best effort).
 */
export function openNetlink(nsfd = -1, io: NlSys = shimSys()): number {
  const fd = checkRc(
    nsfd < 0 ? io.shim_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) : io.shim_ns_socket(nsfd, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE),
    "netlink socket",
  );
  const sa = new Uint8Array(12);
  view(sa).setUint16(0, AF_NETLINK, LE);
  const rc = io.shim_bind(fd, sa, sa.length);
  if (rc < 0) {
    io.shim_close(fd);
    checkRc(rc, "netlink bind");
  }
  const one = new Uint8Array(4);
  view(one).setUint32(0, 1, LE);
  io.shim_setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
  io.shim_setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
  return fd;
}

/**
 * The real NlTalk over netlink socket fd (blocking): number the request,
 * send it, and receive datagrams until the answer is complete.
 */
export function makeTalk(fd: number, io: NlSys = shimSys()): NlTalk {
  let seq = Math.floor(Date.now() / 1000) >>> 0;
  const buf = new Uint8Array(RECV_BUF_SIZE);
  return (req: Uint8Array): Uint8Array[] => {
    seq = (seq + 1) >>> 0;
    view(req).setUint32(8, seq, LE);
    checkRc(io.shim_send(fd, req, req.length, 0), "netlink send");
    const out: Uint8Array[] = [];
    for (;;) {
      const n = io.shim_recv(fd, buf, buf.length, 0);
      if (n === -EINTR) continue;
      if (collectReplies(buf.subarray(0, checkRc(n, "netlink recv")), seq, out)) return out;
    }
  };
}
