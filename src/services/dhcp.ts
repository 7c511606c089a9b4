/**
 * DHCP server (RFC 2131, options from RFC 2132, 3397, 6842): hands the guest
 * one IPv4 address, cfg.ip4.addr, with its prefix, gateway, DNS servers,
 * search domains and MTU.
 *
 * Theory of operation
 *
 * The integrator strips Ethernet/IPv4/UDP from a datagram the guest sent to
 * port 67 and passes us the BOOTP message. We validate it (fixed header,
 * Ethernet hardware type, magic cookie, every option's length), read the few
 * options we care about into module-level scalars (no allocation) and write
 * the reply BOOTP message into the caller's buffer. The integrator wraps it in
 * UDP 67 -> 68 and IPv4/Ethernet headers as dhcpReply's `dest` says (destination
 * per RFC 2131 section 4.1, source address = our server identifier).
 *
 * There is a single lease and no state: the address is the one in the
 * configuration, so every DISCOVER is OFFERed the same address and every
 * REQUEST for it is ACKed, whatever the state the client is in (SELECTING,
 * INIT-REBOOT, RENEWING, REBINDING). A REQUEST for another address gets a NAK,
 * a REQUEST that names another server is ignored (the client chose that one),
 * INFORM gets an ACK with parameters only, RELEASE and DECLINE get nothing.
 *
 * Lease time: infinite (0xffffffff, RFC 2131 section 3.3). The configuration
 * never changes while we run, so there is nothing to renew; no T1/T2 sent.
 *
 * Options: 53 and 54 always, 51 in OFFER/ACK, the client identifier (61) is
 * echoed (RFC 6842). Parameters we can supply are 1 (mask), 3 (router),
 * 6 (DNS), 15 (domain name), 119 (search list, RFC 3397, uncompressed, split
 * over several instances when longer than 255 bytes as RFC 3396 concatenates
 * them), 26 (interface MTU), 12 (host name, -H) and 81 (client FQDN, RFC
 * 4702, --fqdn: flags with only E set, as the name is in wire form, both
 * RCODEs 255); DNS servers only with cfg.dhcpDns, domain name and search list
 * only with cfg.dhcpSearch (passt's default; pasta's with --dhcp-dns,
 * --dhcp-search). We send every one we have a value for, as the
 * original does: those in the client's parameter request list (55) first, in
 * its order, then the others by code. Clients that ask for little still get
 * what they need: busybox udhcpc never asks for the MTU. The reply stays within
 * the client's maximum message size (57, at least 576 including IP and UDP
 * headers): optional parameters that do not fit are left out, whole. Option
 * overload (52) is honoured when reading requests (file, then sname), never
 * used in replies. Replies are padded to the 300-byte BOOTP minimum.
 */
import type { Config } from "../conf/config.ts";
import { copyBytes, inBounds, rd16, rd32, wr32 } from "../wire/bytes.ts";

/** BOOTP fixed-header offsets (RFC 2131 figure 1). */
const OP = 0,
  HTYPE = 1,
  HLEN = 2,
  XID = 4,
  FLAGS = 10,
  CIADDR = 12,
  YIADDR = 16;
const GIADDR = 24,
  CHADDR = 28,
  SNAME = 44,
  FILE = 108,
  COOKIE = 236,
  OPTIONS = 240;
const SNAME_LEN = 64,
  FILE_LEN = 128;
/** Smallest BOOTP message we send (RFC 1542 section 2.1). */
const BOOTP_MIN = 300;
/** Smallest maximum message size a client must accept, with 28 bytes of IPv4 and UDP headers. */
const DHCP_MIN_MAX_SIZE = 576,
  IP_UDP_HDRS = 28;
const BROADCAST_FLAG = 0x8000;

export const DHCPDISCOVER = 1,
  DHCPOFFER = 2,
  DHCPREQUEST = 3,
  DHCPDECLINE = 4;
export const DHCPACK = 5,
  DHCPNAK = 6,
  DHCPRELEASE = 7,
  DHCPINFORM = 8;

/** Lease time we grant: infinite. */
export const DHCP_LEASE_TIME = 0xffffffff;

const OPT_PAD = 0,
  OPT_MASK = 1,
  OPT_ROUTER = 3,
  OPT_DNS = 6,
  OPT_HOSTNAME = 12,
  OPT_DOMAIN = 15,
  OPT_MTU = 26;
const OPT_REQ_ADDR = 50,
  OPT_LEASE = 51,
  OPT_OVERLOAD = 52,
  OPT_TYPE = 53,
  OPT_SERVER_ID = 54;
const OPT_PRL = 55,
  OPT_MAX_SIZE = 57,
  OPT_CLIENT_ID = 61,
  OPT_FQDN = 81,
  OPT_SEARCH = 119,
  OPT_END = 255;
/** Option 81 flags: E, the name is in canonical wire format (RFC 4702 section 2.1). */
const FQDN_FLAG_E = 0x04;

/** Parameters we can supply, by code: the order of those the client did not request. */
const PARAMS = [OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_MTU, OPT_FQDN, OPT_SEARCH] as const;

/** What happened to requests: read by logging and tests. */
export const dhcpCounters = {
  rx: 0,
  /** Shorter than a BOOTP header plus cookie, or a range outside the buffer. */
  truncated: 0,
  /** Not a BOOTREQUEST over Ethernet, bad cookie, no message type, unknown type. */
  malformed: 0,
  /** An option running past its area, or an option we read with a wrong length. */
  badOption: 0,
  /** Valid but needing no reply: RELEASE, DECLINE, a REQUEST to another server. */
  ignored: 0,
  /** The output buffer cannot hold a reply. */
  noRoom: 0,
  offer: 0,
  ack: 0,
  nak: 0,
};

/** How to address a reply dhcpReply() wrote (valid when it returned > 0). */
export interface DhcpDest {
  /** Send to ff:ff:ff:ff:ff:ff and 255.255.255.255 (else to clientMac and dstAddr). */
  broadcast: boolean;
  /** The client's hardware address (chaddr). */
  clientMac: Uint8Array;
  /** IPv4 destination, host order: 0xffffffff when broadcast, else ciaddr or yiaddr. */
  dstAddr: number;
  /** IPv4 source, host order: our server identifier (see dhcpServerId). */
  srcAddr: number;
  /** DHCPOFFER, DHCPACK or DHCPNAK. */
  msgType: number;
}

/** A DhcpDest for dhcpReply to fill, made once by its caller and reused. */
export function newDhcpDest(): DhcpDest {
  return { broadcast: false, clientMac: new Uint8Array(6), dstAddr: 0, srcAddr: 0, msgType: 0 };
}

/* The request's options, filled by parseOptions(); offsets point into the request buffer. */
let rqType = 0;
let rqAddr = -1;
let rqServer = -1;
let rqPrlOff = 0,
  rqPrlLen = 0;
let rqCidOff = 0,
  rqCidLen = 0;
let rqMaxSize = 0;
let rqOverload = 0;

/** Netmask (host order) of an IPv4 prefix length; 0 for /0. */
export function ip4Mask(prefixLen: number): number {
  return prefixLen <= 0 ? 0 : prefixLen >= 32 ? 0xffffffff : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/**
 * Our server identifier and the source address of our replies: the gateway,
 * or when there is none an address of the guest's subnet other than the
 * guest's own (network + 1 or + 2; the other half of a /31 or /32).
 */
export function dhcpServerId(cfg: Config): number {
  const ip4 = cfg.ip4;
  if (!ip4) return 0;
  if (ip4.gw !== 0) return ip4.gw >>> 0;
  if (ip4.prefixLen >= 31) return (ip4.addr ^ 1) >>> 0;
  const net = (ip4.addr & ip4Mask(ip4.prefixLen)) >>> 0;
  const first = (net | 1) >>> 0;
  return first !== ip4.addr >>> 0 ? first : (net | 2) >>> 0;
}

let wireNames: readonly string[] | null = null;
let wireBytes: Uint8Array = new Uint8Array(0);
let oneName = "";
let oneBytes: Uint8Array = new Uint8Array(0);

/**
 * DNS wire encoding (RFC 1035 section 3.1, no compression) of a list of domain
 * names, as used by DHCP option 119, DHCPv6 option 24 and the NDP DNSSL
 * option. Names with an empty or over-long label, or longer than 255 bytes,
 * are skipped. The result is cached per array: the configuration is fixed, so
 * the data path encodes once and never allocates afterwards.
 */
export function dnsNamesWire(names: readonly string[]): Uint8Array {
  if (names === wireNames) return wireBytes;
  wireNames = names;
  wireBytes = encodeNames(names);
  return wireBytes;
}

/** The wire encoding of one name (empty for "" or a name dnsNamesWire skips), cached by its text. */
export function dnsNameWire(name: string): Uint8Array {
  if (name !== oneName) {
    oneName = name;
    oneBytes = encodeNames([name]);
  }
  return oneBytes;
}

/** Encode names one after the other, see dnsNamesWire. */
function encodeNames(names: readonly string[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: number[] = [];
  for (const raw of names) {
    const name = raw.endsWith(".") ? raw.slice(0, -1) : raw;
    if (name === "") continue;
    const one: number[] = [];
    let ok = true;
    for (const label of name.split(".")) {
      const b = enc.encode(label);
      if (b.length === 0 || b.length > 63) ok = false;
      one.push(b.length, ...b);
    }
    one.push(0);
    if (ok && one.length <= 255) parts.push(...one);
  }
  return Uint8Array.from(parts);
}

/** Reset the request scalars before parsing a new message. */
function resetRequest(): void {
  rqType = 0;
  rqAddr = -1;
  rqServer = -1;
  rqPrlLen = 0;
  rqCidLen = 0;
  rqMaxSize = 0;
  rqOverload = 0;
}

/**
 * Record one option we care about (first instance wins). Returns false when
 * an option we read has a length its definition does not allow.
 */
function noteOption(b: Uint8Array, code: number, o: number, l: number, main: boolean): boolean {
  switch (code) {
    case OPT_TYPE:
      if (l !== 1) return false;
      if (rqType === 0) rqType = b[o]!;
      return true;
    case OPT_REQ_ADDR:
      if (l !== 4) return false;
      if (rqAddr < 0) rqAddr = rd32(b, o);
      return true;
    case OPT_SERVER_ID:
      if (l !== 4) return false;
      if (rqServer < 0) rqServer = rd32(b, o);
      return true;
    case OPT_PRL:
      if (rqPrlLen === 0) {
        rqPrlOff = o;
        rqPrlLen = l;
      }
      return true;
    case OPT_CLIENT_ID:
      if (l < 2) return false;
      if (rqCidLen === 0) {
        rqCidOff = o;
        rqCidLen = l;
      }
      return true;
    case OPT_MAX_SIZE:
      if (l !== 2) return false;
      if (rqMaxSize === 0) rqMaxSize = rd16(b, o);
      return true;
    case OPT_OVERLOAD:
      if (l !== 1 || b[o]! < 1 || b[o]! > 3) return false;
      if (main && rqOverload === 0) rqOverload = b[o]!;
      return true;
    default:
      return true;
  }
}

/**
 * Walk the options in b[start..end): pads are skipped, END stops, every other
 * option must fit whole. `main` is true for the options field proper (the
 * only place an overload option counts). Returns false on a bad option.
 */
function parseOptions(b: Uint8Array, start: number, end: number, main: boolean): boolean {
  let i = start;
  while (i < end) {
    const code = b[i]!;
    if (code === OPT_PAD) {
      i++;
      continue;
    }
    if (code === OPT_END) return true;
    if (i + 2 > end) return false;
    const l = b[i + 1]!;
    if (i + 2 + l > end) return false;
    if (!noteOption(b, code, i + 2, l, main)) return false;
    i += 2 + l;
  }
  return true;
}

/**
 * Validate the BOOTP header of req[off..off+len) and read its options,
 * including those overloaded into file and sname. Counts and returns false
 * when the message must be dropped.
 */
function parseRequest(req: Uint8Array, off: number, len: number): boolean {
  resetRequest();
  if (len < OPTIONS) {
    dhcpCounters.truncated++;
    return false;
  }
  if (req[off + OP] !== 1 || req[off + HTYPE] !== 1 || req[off + HLEN] !== 6 || rd32(req, off + COOKIE) !== 0x63825363) {
    dhcpCounters.malformed++;
    return false;
  }
  let ok = parseOptions(req, off + OPTIONS, off + len, true);
  if (ok && rqOverload & 1) ok = parseOptions(req, off + FILE, off + FILE + FILE_LEN, false);
  if (ok && rqOverload & 2) ok = parseOptions(req, off + SNAME, off + SNAME + SNAME_LEN, false);
  if (!ok) {
    dhcpCounters.badOption++;
    return false;
  }
  if (rqType === 0) {
    dhcpCounters.malformed++;
    return false;
  }
  return true;
}

/**
 * Decide the reply type for the parsed request: DHCPOFFER, DHCPACK, DHCPNAK,
 * or 0 for no reply (counted). A REQUEST is checked against the address the
 * client asks for: option 50 (SELECTING, INIT-REBOOT) or else ciaddr
 * (RENEWING, REBINDING).
 */
function replyType(cfgAddr: number, ourId: number, ciaddr: number): number {
  switch (rqType) {
    case DHCPDISCOVER:
      return DHCPOFFER;
    case DHCPREQUEST: {
      if (rqServer >= 0 && rqServer !== ourId) {
        dhcpCounters.ignored++;
        return 0;
      }
      const asked = rqAddr >= 0 ? rqAddr : ciaddr;
      return asked === cfgAddr ? DHCPACK : DHCPNAK;
    }
    case DHCPINFORM:
      return DHCPACK;
    case DHCPDECLINE:
    case DHCPRELEASE:
      dhcpCounters.ignored++;
      return 0;
    default:
      dhcpCounters.malformed++;
      return 0;
  }
}

/**
 * Write option `code` with a 4-byte address value at out[pos]; returns the
 * new position, or pos when it does not fit before `limit` (room for END is
 * kept by the caller's limit).
 */
function putAddrOpt(out: Uint8Array, pos: number, limit: number, code: number, v: number): number {
  if (pos + 6 > limit) return pos;
  out[pos] = code;
  out[pos + 1] = 4;
  wr32(out, pos + 2, v);
  return pos + 6;
}

/** Option 6: the DNS servers we hand out (the forwarder address, else the host's). */
function putDns(cfg: Config, out: Uint8Array, pos: number, limit: number): number {
  const ip4 = cfg.ip4!;
  if (ip4.dnsMatch !== 0) return putAddrOpt(out, pos, limit, OPT_DNS, ip4.dnsMatch);
  let n = 0;
  for (let i = 0; i < ip4.dns.length && n < 63; i++) if (ip4.dns[i]! !== 0) n++;
  if (n === 0 || pos + 2 + 4 * n > limit) return pos;
  out[pos] = OPT_DNS;
  out[pos + 1] = 4 * n;
  let p = pos + 2;
  for (let i = 0; i < ip4.dns.length && p < pos + 2 + 4 * n; i++) {
    if (ip4.dns[i]! === 0) continue;
    wr32(out, p, ip4.dns[i]!);
    p += 4;
  }
  return p;
}

/** Option 15: the first search domain as dotted text, taken from its wire form. */
function putDomain(wire: Uint8Array, out: Uint8Array, pos: number, limit: number): number {
  if (wire.length === 0) return pos;
  let end = 0;
  while (wire[end] !== 0) end += wire[end]! + 1;
  const textLen = end - 1;
  if (pos + 2 + textLen > limit) return pos;
  out[pos] = OPT_DOMAIN;
  out[pos + 1] = textLen;
  let p = pos + 2;
  for (let i = 0; i < end; ) {
    const l = wire[i]!;
    if (i > 0) out[p++] = 0x2e;
    copyBytes(out, p, wire, i + 1, l);
    p += l;
    i += l + 1;
  }
  return p;
}

/** Option 119: the search list, split into instances of at most 255 bytes, all or nothing. */
function putSearch(wire: Uint8Array, out: Uint8Array, pos: number, limit: number): number {
  const chunks = Math.ceil(wire.length / 255);
  if (chunks === 0 || pos + wire.length + 2 * chunks > limit) return pos;
  let p = pos;
  for (let i = 0; i < wire.length; i += 255) {
    const l = Math.min(255, wire.length - i);
    out[p] = OPT_SEARCH;
    out[p + 1] = l;
    copyBytes(out, p + 2, wire, i, l);
    p += 2 + l;
  }
  return p;
}

/** Option 12: the host name as text. */
function putHostname(name: string, out: Uint8Array, pos: number, limit: number): number {
  const n = name.length;
  if (n === 0 || n > 255 || pos + 2 + n > limit) return pos;
  out[pos] = OPT_HOSTNAME;
  out[pos + 1] = n;
  for (let i = 0; i < n; i++) out[pos + 2 + i] = name.charCodeAt(i);
  return pos + 2 + n;
}

/** Option 81: flags (E), RCODE1 and RCODE2 (255), the FQDN in wire form. */
function putFqdn(wire: Uint8Array, out: Uint8Array, pos: number, limit: number): number {
  const n = 3 + wire.length;
  if (wire.length === 0 || n > 255 || pos + 2 + n > limit) return pos;
  out[pos] = OPT_FQDN;
  out[pos + 1] = n;
  out[pos + 2] = FQDN_FLAG_E;
  out[pos + 3] = 255;
  out[pos + 4] = 255;
  copyBytes(out, pos + 5, wire, 0, wire.length);
  return pos + 2 + n;
}

/** Write parameter `code` if we have a value for it; returns the new position. */
function putParam(cfg: Config, code: number, out: Uint8Array, pos: number, limit: number): number {
  const ip4 = cfg.ip4!;
  switch (code) {
    case OPT_MASK:
      return putAddrOpt(out, pos, limit, OPT_MASK, ip4Mask(ip4.prefixLen));
    case OPT_ROUTER:
      return ip4.gw === 0 ? pos : putAddrOpt(out, pos, limit, OPT_ROUTER, ip4.gw);
    case OPT_DNS:
      return cfg.dhcpDns ? putDns(cfg, out, pos, limit) : pos;
    case OPT_DOMAIN:
      return cfg.dhcpSearch ? putDomain(dnsNamesWire(cfg.dnsSearch), out, pos, limit) : pos;
    case OPT_SEARCH:
      return cfg.dhcpSearch ? putSearch(dnsNamesWire(cfg.dnsSearch), out, pos, limit) : pos;
    case OPT_HOSTNAME:
      return putHostname(cfg.hostname, out, pos, limit);
    case OPT_FQDN:
      return putFqdn(dnsNameWire(cfg.fqdn), out, pos, limit);
    case OPT_MTU:
      if (cfg.mtu < 68 || cfg.mtu > 0xffff || pos + 4 > limit) return pos;
      out[pos] = OPT_MTU;
      out[pos + 1] = 2;
      out[pos + 2] = cfg.mtu >>> 8;
      out[pos + 3] = cfg.mtu & 255;
      return pos + 4;
    default:
      return pos;
  }
}

/** Bit of a parameter in the "already sent" mask; 0 for codes we do not supply. */
function paramBit(code: number): number {
  const i = PARAMS.indexOf(code as (typeof PARAMS)[number]);
  return i < 0 ? 0 : 1 << i;
}

/** Write every parameter we have: the requested ones in request-list order, then the rest by code. */
function putParams(cfg: Config, req: Uint8Array, out: Uint8Array, pos: number, limit: number): number {
  let sent = 0;
  let p = pos;
  for (let i = 0; i < rqPrlLen; i++) {
    const code = req[rqPrlOff + i]!;
    const bit = paramBit(code);
    if (bit === 0 || (sent & bit) !== 0) continue;
    sent |= bit;
    p = putParam(cfg, code, out, p, limit);
  }
  for (let i = 0; i < PARAMS.length; i++) {
    if ((sent & (1 << i)) === 0) p = putParam(cfg, PARAMS[i]!, out, p, limit);
  }
  return p;
}

/**
 * Write the options of a reply of type `type` from out[pos], ending with END
 * before `limit`. Returns the position after END, or -1 when even the
 * mandatory options do not fit.
 */
function putOptions(cfg: Config, type: number, ourId: number, req: Uint8Array, out: Uint8Array, pos: number, limit: number): number {
  const end = limit - 1;
  const need = 3 + 6 + (type === DHCPNAK || rqType === DHCPINFORM ? 0 : 6) + (rqCidLen ? rqCidLen + 2 : 0);
  if (pos + need > end) return -1;
  out[pos] = OPT_TYPE;
  out[pos + 1] = 1;
  out[pos + 2] = type;
  let p = putAddrOpt(out, pos + 3, end, OPT_SERVER_ID, ourId);
  if (type !== DHCPNAK && rqType !== DHCPINFORM) p = putAddrOpt(out, p, end, OPT_LEASE, DHCP_LEASE_TIME);
  if (rqCidLen !== 0) {
    out[p] = OPT_CLIENT_ID;
    out[p + 1] = rqCidLen;
    copyBytes(out, p + 2, req, rqCidOff, rqCidLen);
    p += 2 + rqCidLen;
  }
  if (type !== DHCPNAK) p = putParams(cfg, req, out, p, end);
  out[p++] = OPT_END;
  return p;
}

/**
 * Write the fixed BOOTP header of the reply at out[o]: BOOTREPLY, xid, flags,
 * giaddr and chaddr echoed, yiaddr and ciaddr as RFC 2131 table 3 wants,
 * sname and file empty, then the magic cookie.
 */
function putHeader(req: Uint8Array, off: number, out: Uint8Array, o: number, yiaddr: number, ciaddr: number): void {
  out.fill(0, o, o + OPTIONS);
  out[o + OP] = 2;
  out[o + HTYPE] = 1;
  out[o + HLEN] = 6;
  copyBytes(out, o + XID, req, off + XID, 4);
  out[o + FLAGS] = req[off + FLAGS]!;
  out[o + FLAGS + 1] = req[off + FLAGS + 1]!;
  wr32(out, o + CIADDR, ciaddr);
  wr32(out, o + YIADDR, yiaddr);
  copyBytes(out, o + GIADDR, req, off + GIADDR, 4);
  copyBytes(out, o + CHADDR, req, off + CHADDR, 16);
  wr32(out, o + COOKIE, 0x63825363);
}

/**
 * Fill dest with the reply's destination (RFC 2131 section 4.1, no relay
 * agents on our link): NAKs are broadcast; a client with an address (ciaddr)
 * gets unicast there; otherwise broadcast if the client set the BROADCAST
 * flag, else unicast to yiaddr at chaddr, as a client without an address
 * can receive a frame addressed to its MAC. An INFORM without ciaddr has no
 * address to go to: broadcast.
 */
function setDestination(dest: DhcpDest, req: Uint8Array, off: number, type: number, yiaddr: number, ciaddr: number, ourId: number): void {
  const flags = rd16(req, off + FLAGS);
  dest.msgType = type;
  dest.srcAddr = ourId;
  copyBytes(dest.clientMac, 0, req, off + CHADDR, 6);
  if (type === DHCPNAK || (ciaddr === 0 && (flags & BROADCAST_FLAG) !== 0) || (ciaddr === 0 && yiaddr === 0)) {
    dest.broadcast = true;
    dest.dstAddr = 0xffffffff;
  } else {
    dest.broadcast = false;
    dest.dstAddr = ciaddr !== 0 ? ciaddr : yiaddr;
  }
}

/**
 * Answer the BOOTP message req[off..off+len) (the UDP payload sent to port
 * 67) by writing a reply BOOTP message at out[outOff..]. Returns the reply's
 * length, or 0 when there is nothing to send (dropped or ignored requests are
 * counted in dhcpCounters). On success dest says how to address it.
 * Never throws on any input.
 */
export function dhcpReply(cfg: Config, req: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, dest: DhcpDest): number {
  dhcpCounters.rx++;
  if (!cfg.ip4 || cfg.noDhcp) {
    dhcpCounters.ignored++;
    return 0;
  }
  if (!inBounds(req, off, len)) {
    dhcpCounters.truncated++;
    return 0;
  }
  if (!parseRequest(req, off, len)) return 0;
  const cfgAddr = cfg.ip4.addr >>> 0;
  const ourId = dhcpServerId(cfg);
  const reqCiaddr = rd32(req, off + CIADDR);
  const type = replyType(cfgAddr, ourId, reqCiaddr);
  if (type === 0) return 0;
  const maxMsg = Math.max(DHCP_MIN_MAX_SIZE, rqMaxSize);
  const mtuMsg = Math.max(DHCP_MIN_MAX_SIZE, cfg.mtu);
  const limit = Math.min(out.length - outOff, Math.min(maxMsg, mtuMsg) - IP_UDP_HDRS);
  if (!inBounds(out, outOff, 0) || limit < BOOTP_MIN) {
    dhcpCounters.noRoom++;
    return 0;
  }
  const inform = rqType === DHCPINFORM;
  const yiaddr = type === DHCPNAK || inform ? 0 : cfgAddr;
  const ciaddr = (type === DHCPACK && rqType === DHCPREQUEST) || inform ? reqCiaddr : 0;
  putHeader(req, off, out, outOff, yiaddr, ciaddr);
  const end = putOptions(cfg, type, ourId, req, out, outOff + OPTIONS, outOff + limit);
  if (end < 0) {
    dhcpCounters.noRoom++;
    return 0;
  }
  const total = Math.max(BOOTP_MIN, end - outOff);
  out.fill(0, end, outOff + total);
  setDestination(dest, req, off, type, yiaddr, ciaddr, ourId);
  if (type === DHCPOFFER) dhcpCounters.offer++;
  else if (type === DHCPACK) dhcpCounters.ack++;
  else dhcpCounters.nak++;
  return total;
}
