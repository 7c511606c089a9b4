/**
 * DHCPv6 server (RFC 8415, DNS options from RFC 3646): hands the guest one
 * address, cfg.ip6.addr, in an IA_NA, and the DNS servers and search list.
 *
 * Theory of operation
 *
 * The integrator passes us the UDP payload of a datagram the guest sent to
 * port 547 and sends what we write back to the guest's source address and
 * port (546), from our link-local address cfg.ip6.ourLL. There is no relay
 * support (RELAY-FORW is dropped) and no state: the single binding is the
 * configured address, identified by the first IA_NA of each message.
 *
 * Each message is first checked as RFC 8415 section 16 says (a Client ID
 * where one is required, a Server ID present and ours, or absent, as the
 * message type requires) and every option is bounds-checked, including the
 * options nested in IA_NA. Then:
 *  - SOLICIT -> ADVERTISE (preference 255, so that the client need not wait
 *    for other servers), or REPLY with Rapid Commit if the client asked for
 *    it (RFC 8415 section 18.3.1);
 *  - REQUEST, RENEW, REBIND -> REPLY with the address; addresses the client
 *    holds that are not ours come back with zero lifetimes;
 *  - CONFIRM -> REPLY with Success, or NotOnLink if an address is outside our
 *    prefix (no reply when it carries no address, section 18.3.3);
 *  - RELEASE, DECLINE -> REPLY with Success (nothing to release);
 *  - INFORMATION-REQUEST -> REPLY with configuration only.
 * The first IA_NA gets the address, further IA_NAs get NoAddrsAvail; IA_TA
 * and IA_PD are not served. Lifetimes, T1 and T2 are infinite: the
 * configuration does not change while we run. DNS servers (23) and the domain
 * list (24, uncompressed) are sent, with cfg.dhcpDns and cfg.dhcpSearch
 * respectively, when the Option Request option asks for them, or when there
 * is none; with --fqdn, every reply carries the Client FQDN option (39, RFC
 * 4704), as the original's do: the name in wire form, flags 0, or O when the
 * client asked us (S) to update DNS, which we never do. Optional options are
 * left out, whole, if the reply would not fit in the minimum IPv6 MTU (or the
 * configured one, if larger).
 */
import type { Config } from "../conf/config.ts";
import { copyBytes, equalBytes, inBounds, rd16, wr16, wr32 } from "../wire/bytes.ts";
import { dnsNameWire, dnsNamesWire } from "./dhcp.ts";

export const SOLICIT = 1,
  ADVERTISE = 2,
  REQUEST = 3,
  CONFIRM = 4,
  RENEW = 5,
  REBIND = 6;
export const REPLY = 7,
  RELEASE = 8,
  DECLINE = 9,
  INFORMATION_REQUEST = 11;

const OPT_CLIENTID = 1,
  OPT_SERVERID = 2,
  OPT_IA_NA = 3,
  OPT_IA_TA = 4,
  OPT_IAADDR = 5;
const OPT_ORO = 6,
  OPT_PREFERENCE = 7,
  OPT_STATUS = 13,
  OPT_RAPID_COMMIT = 14;
const OPT_DNS = 23,
  OPT_DOMAINS = 24,
  OPT_IA_PD = 25,
  OPT_CLIENT_FQDN = 39;
/** Client FQDN flags (RFC 4704 section 4.1): S, the server should update DNS; O, it overrode the client's S. */
const FQDN_FLAG_S = 0x01,
  FQDN_FLAG_O = 0x02;

export const STATUS_SUCCESS = 0,
  STATUS_NOADDRSAVAIL = 2,
  STATUS_NOTONLINK = 4;

/** Lifetimes, T1 and T2 we grant: infinite (RFC 8415 section 7.7). */
export const DHCPV6_LIFETIME = 0xffffffff;

/** IA_NA options we look at per message; more are ignored. */
const MAX_IA = 4;
/** DUID lengths allowed by RFC 8415 section 11.1: type (2) plus 1 to 128 octets. */
const DUID_MIN = 3,
  DUID_MAX = 130;
/** Our DUID: DUID-LL (type 3), hardware type 1 (Ethernet), then our MAC. */
const DUID_LEN = 10;
/** IPv6 and UDP headers the integrator puts around the reply, and the minimum MTU. */
const IP6_UDP_HDRS = 48,
  IPV6_MIN_MTU = 1280;

export const dhcpv6Counters = {
  rx: 0,
  /** Shorter than a message header, or a range outside the buffer. */
  truncated: 0,
  /** An option (or nested IA option) running past its container or with a bad length. */
  badOption: 0,
  /** Violates RFC 8415 section 16: Client ID or Server ID missing or where it must not be. */
  invalid: 0,
  /** Addressed to another server (its Server ID is not ours). */
  otherServer: 0,
  /** Valid but unsupported or needing no reply: unknown types, relays, CONFIRM without addresses. */
  ignored: 0,
  noRoom: 0,
  advertise: 0,
  reply: 0,
};

/* The request's options, filled by parseMessage(); offsets point into the request buffer. */
let rqType = 0;
let rqCidOff = 0,
  rqCidLen = 0;
let rqSidOff = 0,
  rqSidLen = 0,
  rqHasSid = false;
let rqOroOff = 0,
  rqOroLen = 0,
  rqHasOro = false;
let rqRapid = false;
let rqFqdnS = false;
let rqHasIa = false;
let rqIaCount = 0;
const rqIaOff = new Int32Array(MAX_IA);
const rqIaLen = new Int32Array(MAX_IA);

/** Check that b[start..end) is a sequence of whole options (code, length, data). */
function optionsFit(b: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    if (i + 4 > end) return false;
    i += 4 + rd16(b, i + 2);
    if (i > end) return false;
  }
  return true;
}

/**
 * Offset of the next IAADDR option (with its 24 fixed bytes) in the nested
 * options b[pos..end) of an IA_NA, or -1. The options were checked to fit.
 */
function nextIaAddr(b: Uint8Array, pos: number, end: number): number {
  for (let i = pos; i + 4 <= end; i += 4 + rd16(b, i + 2)) {
    if (rd16(b, i) === OPT_IAADDR && rd16(b, i + 2) >= 24) return i;
  }
  return -1;
}

/** Record one top-level option; false when its length is not allowed. */
function noteOption(b: Uint8Array, code: number, o: number, l: number): boolean {
  switch (code) {
    case OPT_CLIENTID:
      if (l < DUID_MIN || l > DUID_MAX) return false;
      if (rqCidLen === 0) {
        rqCidOff = o;
        rqCidLen = l;
      }
      return true;
    case OPT_SERVERID:
      if (l < DUID_MIN || l > DUID_MAX) return false;
      if (!rqHasSid) {
        rqSidOff = o;
        rqSidLen = l;
        rqHasSid = true;
      }
      return true;
    case OPT_ORO:
      if (l % 2 !== 0) return false;
      if (!rqHasOro) {
        rqOroOff = o;
        rqOroLen = l;
        rqHasOro = true;
      }
      return true;
    case OPT_RAPID_COMMIT:
      if (l !== 0) return false;
      rqRapid = true;
      return true;
    case OPT_CLIENT_FQDN:
      if (l < 1) return false;
      rqFqdnS = (b[o]! & FQDN_FLAG_S) !== 0;
      return true;
    case OPT_IA_NA:
      if (l < 12 || !optionsFit(b, o + 12, o + l)) return false;
      rqHasIa = true;
      if (rqIaCount < MAX_IA) {
        rqIaOff[rqIaCount] = o;
        rqIaLen[rqIaCount++] = l;
      }
      return true;
    case OPT_IA_TA:
    case OPT_IA_PD:
      rqHasIa = true;
      return true;
    default:
      return true;
  }
}

/** Parse the options of req[off..off+len) into the rq* scalars; false (counted) on a bad option. */
function parseMessage(req: Uint8Array, off: number, len: number): boolean {
  rqType = req[off]!;
  rqCidLen = 0;
  rqHasSid = rqHasOro = rqRapid = rqFqdnS = rqHasIa = false;
  rqIaCount = 0;
  const end = off + len;
  for (let i = off + 4; i < end; ) {
    if (i + 4 > end) {
      dhcpv6Counters.badOption++;
      return false;
    }
    const l = rd16(req, i + 2);
    if (i + 4 + l > end || !noteOption(req, rd16(req, i), i + 4, l)) {
      dhcpv6Counters.badOption++;
      return false;
    }
    i += 4 + l;
  }
  return true;
}

/** Is the Server ID in the request our DUID-LL? */
function serverIdIsOurs(cfg: Config, req: Uint8Array): boolean {
  if (rqSidLen !== DUID_LEN || rd16(req, rqSidOff) !== 3 || rd16(req, rqSidOff + 2) !== 1) return false;
  for (let i = 0; i < 6; i++) if (req[rqSidOff + 4 + i] !== cfg.ourMac[i]) return false;
  return true;
}

/**
 * Apply RFC 8415 section 16's discard rules for the parsed message type;
 * false (counted) when the message must be dropped.
 */
function acceptable(cfg: Config, req: Uint8Array): boolean {
  const needSid = rqType === REQUEST || rqType === RENEW || rqType === RELEASE || rqType === DECLINE;
  const noSid = rqType === SOLICIT || rqType === CONFIRM || rqType === REBIND;
  if (rqType === INFORMATION_REQUEST) {
    if (rqHasIa) {
      dhcpv6Counters.invalid++;
      return false;
    }
  } else if (!needSid && !noSid) {
    dhcpv6Counters.ignored++;
    return false;
  } else if (rqCidLen === 0 || (needSid && !rqHasSid) || (noSid && rqHasSid)) {
    dhcpv6Counters.invalid++;
    return false;
  }
  if (rqHasSid && !serverIdIsOurs(cfg, req)) {
    dhcpv6Counters.otherServer++;
    return false;
  }
  return true;
}

/** Does the ORO ask for `code`? With no ORO, everything counts as asked. */
function asked(req: Uint8Array, code: number): boolean {
  if (!rqHasOro) return true;
  for (let i = 0; i < rqOroLen; i += 2) if (rd16(req, rqOroOff + i) === code) return true;
  return false;
}

/** Is the 16-byte address at b[o] inside our prefix? */
function onLink(cfg: Config, b: Uint8Array, o: number): boolean {
  const ip6 = cfg.ip6!;
  const bits = Math.max(0, Math.min(128, ip6.prefixLen));
  const full = bits >>> 3;
  for (let i = 0; i < full; i++) if (b[o + i] !== ip6.addr[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[o + full]! & mask) === (ip6.addr[full]! & mask);
}

/**
 * CONFIRM: the status to answer, STATUS_SUCCESS or STATUS_NOTONLINK, or -1
 * when the message holds no address to judge.
 */
function confirmStatus(cfg: Config, req: Uint8Array): number {
  let seen = false;
  for (let k = 0; k < rqIaCount; k++) {
    const o = rqIaOff[k]!,
      end = o + rqIaLen[k]!;
    for (let a = nextIaAddr(req, o + 12, end); a >= 0; a = nextIaAddr(req, a + 4 + rd16(req, a + 2), end)) {
      seen = true;
      if (!onLink(cfg, req, a + 4)) return STATUS_NOTONLINK;
    }
  }
  return seen ? STATUS_SUCCESS : -1;
}

/** Write an option header at out[p]; returns the data offset. */
function putHdr(out: Uint8Array, p: number, code: number, len: number): number {
  wr16(out, p, code);
  wr16(out, p + 2, len);
  return p + 4;
}

/** Status Code option with no message text; returns the new position. */
function putStatus(out: Uint8Array, p: number, status: number): number {
  wr16(out, putHdr(out, p, OPT_STATUS, 2), status);
  return p + 6;
}

/** IAADDR option for the address at src[so] with both lifetimes = `life`. */
function putIaAddr(out: Uint8Array, p: number, src: Uint8Array, so: number, life: number): number {
  const d = putHdr(out, p, OPT_IAADDR, 24);
  copyBytes(out, d, src, so, 16);
  wr32(out, d + 16, life);
  wr32(out, d + 20, life);
  return d + 24;
}

/** Room an IA_NA answer to request IA k takes (must match putIaNa). */
function iaNaSize(cfg: Config, req: Uint8Array, k: number): number {
  if (k > 0) return 4 + 12 + 6;
  if (rqType === SOLICIT) return 4 + 12 + 28;
  let n = 4 + 12 + 28;
  const o = rqIaOff[k]!,
    end = o + rqIaLen[k]!;
  for (let a = nextIaAddr(req, o + 12, end); a >= 0; a = nextIaAddr(req, a + 4 + rd16(req, a + 2), end)) {
    if (!equalBytes(req, a + 4, cfg.ip6!.addr, 0, 16)) n += 28;
  }
  return n;
}

/**
 * Answer request IA_NA k at out[p]: its IAID, infinite T1/T2 and our address
 * (k = 0; for REQUEST/RENEW/REBIND also the client's other addresses with
 * zero lifetimes), or status NoAddrsAvail (k > 0). Returns the new position.
 */
function putIaNa(cfg: Config, req: Uint8Array, k: number, out: Uint8Array, p: number): number {
  const o = rqIaOff[k]!,
    end = o + rqIaLen[k]!;
  const d = putHdr(out, p, OPT_IA_NA, iaNaSize(cfg, req, k) - 4);
  copyBytes(out, d, req, o, 4);
  wr32(out, d + 4, k === 0 ? DHCPV6_LIFETIME : 0);
  wr32(out, d + 8, k === 0 ? DHCPV6_LIFETIME : 0);
  if (k > 0) return putStatus(out, d + 12, STATUS_NOADDRSAVAIL);
  let q = putIaAddr(out, d + 12, cfg.ip6!.addr, 0, DHCPV6_LIFETIME);
  if (rqType === SOLICIT) return q;
  for (let a = nextIaAddr(req, o + 12, end); a >= 0; a = nextIaAddr(req, a + 4 + rd16(req, a + 2), end)) {
    if (!equalBytes(req, a + 4, cfg.ip6!.addr, 0, 16)) q = putIaAddr(out, q, req, a + 4, 0);
  }
  return q;
}

/** Option 23 (if we have servers and it fits before limit); returns the new position. */
function putDns(cfg: Config, out: Uint8Array, p: number, limit: number): number {
  const ip6 = cfg.ip6!;
  if (ip6.dnsMatch) {
    if (p + 20 > limit) return p;
    copyBytes(out, putHdr(out, p, OPT_DNS, 16), ip6.dnsMatch, 0, 16);
    return p + 20;
  }
  const n = ip6.dns.length;
  if (n === 0 || p + 4 + 16 * n > limit) return p;
  let q = putHdr(out, p, OPT_DNS, 16 * n);
  for (let i = 0; i < n; i++, q += 16) copyBytes(out, q, ip6.dns[i]!, 0, 16);
  return q;
}

/** Option 24 (if we have names and it fits before limit); returns the new position. */
function putDomains(cfg: Config, out: Uint8Array, p: number, limit: number): number {
  const wire = dnsNamesWire(cfg.dnsSearch);
  if (wire.length === 0 || p + 4 + wire.length > limit) return p;
  out.set(wire, putHdr(out, p, OPT_DOMAINS, wire.length));
  return p + 4 + wire.length;
}

/** Option 39 (with --fqdn, if it fits before limit): flags, then the name in wire form; returns the new position. */
function putFqdn(cfg: Config, out: Uint8Array, p: number, limit: number): number {
  const wire = dnsNameWire(cfg.fqdn);
  if (wire.length === 0 || p + 5 + wire.length > limit) return p;
  const d = putHdr(out, p, OPT_CLIENT_FQDN, 1 + wire.length);
  out[d] = rqFqdnS ? FQDN_FLAG_O : 0;
  out.set(wire, d + 1);
  return d + 1 + wire.length;
}

/**
 * Write the reply's mandatory part at out[o]: type, transaction id, Server ID,
 * Client ID, Rapid Commit or Preference, IA_NAs or a top-level status.
 * Returns the end position, or -1 when it does not fit before limit.
 */
function putCore(
  cfg: Config,
  req: Uint8Array,
  off: number,
  type: number,
  status: number,
  out: Uint8Array,
  o: number,
  limit: number,
): number {
  const withIa = rqType === SOLICIT || rqType === REQUEST || rqType === RENEW || rqType === REBIND;
  let need = 4 + 4 + DUID_LEN + (rqCidLen ? 4 + rqCidLen : 0) + (status >= 0 ? 6 : 0);
  if (rqType === SOLICIT) need += type === REPLY ? 4 : 5;
  if (withIa) for (let k = 0; k < rqIaCount; k++) need += iaNaSize(cfg, req, k);
  if (o + need > limit) return -1;
  out[o] = type;
  copyBytes(out, o + 1, req, off + 1, 3);
  let p = putHdr(out, o + 4, OPT_SERVERID, DUID_LEN);
  wr16(out, p, 3);
  wr16(out, p + 2, 1);
  copyBytes(out, p + 4, cfg.ourMac, 0, 6);
  p += DUID_LEN;
  if (rqCidLen) {
    copyBytes(out, putHdr(out, p, OPT_CLIENTID, rqCidLen), req, rqCidOff, rqCidLen);
    p += 4 + rqCidLen;
  }
  if (rqType === SOLICIT && type === REPLY) p = putHdr(out, p, OPT_RAPID_COMMIT, 0);
  if (rqType === SOLICIT && type === ADVERTISE) {
    out[putHdr(out, p, OPT_PREFERENCE, 1)] = 255;
    p += 5;
  }
  if (withIa) for (let k = 0; k < rqIaCount; k++) p = putIaNa(cfg, req, k, out, p);
  if (status >= 0) p = putStatus(out, p, status);
  return p;
}

/**
 * Answer the DHCPv6 message req[off..off+len) (the UDP payload sent to port
 * 547) by writing the reply message at out[outOff..]; returns its length, or
 * 0 when there is nothing to send (counted in dhcpv6Counters). The reply goes
 * back to the request's source address and port. Never throws on any input.
 */
export function dhcpv6Reply(cfg: Config, req: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): number {
  dhcpv6Counters.rx++;
  if (!cfg.ip6 || cfg.noDhcpv6) {
    dhcpv6Counters.ignored++;
    return 0;
  }
  if (!inBounds(req, off, len) || len < 4) {
    dhcpv6Counters.truncated++;
    return 0;
  }
  if (!parseMessage(req, off, len) || !acceptable(cfg, req)) return 0;
  let status = -1;
  if (rqType === CONFIRM) {
    status = confirmStatus(cfg, req);
    if (status < 0) {
      dhcpv6Counters.ignored++;
      return 0;
    }
  } else if (rqType === RELEASE || rqType === DECLINE) {
    status = STATUS_SUCCESS;
  }
  const type = rqType === SOLICIT && !rqRapid ? ADVERTISE : REPLY;
  const limit = Math.min(out.length, outOff + Math.max(IPV6_MIN_MTU, cfg.mtu) - IP6_UDP_HDRS);
  let p = inBounds(out, outOff, 0) ? putCore(cfg, req, off, type, status, out, outOff, limit) : -1;
  if (p < 0) {
    dhcpv6Counters.noRoom++;
    return 0;
  }
  if (cfg.dhcpDns && asked(req, OPT_DNS)) p = putDns(cfg, out, p, limit);
  if (cfg.dhcpSearch && asked(req, OPT_DOMAINS)) p = putDomains(cfg, out, p, limit);
  p = putFqdn(cfg, out, p, limit);
  if (type === ADVERTISE) dhcpv6Counters.advertise++;
  else dhcpv6Counters.reply++;
  return p - outOff;
}
