/**
 * Address translation between what the guest sees and what the host's
 * sockets use: the one place that decides it, for TCP, UDP and ICMP.
 *
 * Theory of operation
 * -------------------
 * The guest lives on the host's own addresses, so it can't reach the host by
 * them: its own address and the host's loopback are both "itself" from inside.
 * A few guest-side addresses therefore stand for host-side ones, for IPv4 and
 * IPv6 independently (Config ip4/ip6; 0 or null means "none"):
 *
 *   mapHostLoopback (--map-host-loopback; default the gateway, none with
 *     --no-map-gw): stands for the host's loopback, 127.0.0.1 or ::1.
 *   mapGuestAddr (--map-guest-addr; default none): stands for the guest's
 *     assigned address as the host has it (the host's own address unless -a
 *     gave another): Podman's host.containers.internal.
 *   dnsMatch (--dns-forward, or by default the mapHostLoopback address when
 *     the host's first resolver is a loopback address or that very address):
 *     DNS traffic to it goes to dnsHost (--dns-host; default the first
 *     resolver of resolv.conf).
 *
 * Outbound, guest destination to host socket address (natOut4/natOut6), the
 * first rule that matches wins:
 *   1. TCP or UDP to port 53 or 853 at dnsMatch goes to dnsHost, same port;
 *   2. mapHostLoopback goes to loopback;
 *   3. mapGuestAddr goes to the guest's assigned address;
 *   4. anything else is left as it is.
 *
 * Inbound, host peer address to the source the guest sees (natIn4/natIn6),
 * for connections accepted on forwarded ports and for datagrams arriving on
 * UDP sockets:
 *   1. on a flow that sent DNS to dnsMatch, dnsHost answering from port 53
 *      or 853 appears as dnsMatch;
 *   2. 127.0.0.1 or ::1 appears as mapHostLoopback;
 *   3. the guest's assigned address appears as mapGuestAddr;
 *   4. an address the guest can't take as a source (the rest of 127/8,
 *      0.0.0.0, its own address when rule 3 has no mapping, IPv4-mapped IPv6,
 *      loopback without rule 2) appears as our address on the tap: the
 *      gateway for IPv4 (none: the traffic is dropped), our link-local address
 *      for IPv6;
 *   5. anything else is left as it is.
 *
 * TCP and ICMP flows keep the remote address as the guest gave it, so their
 * replies need no inbound rule; UDP sockets are not connected (one per guest
 * address and port, whatever the destination), so every datagram from the
 * host goes through natIn.
 *
 * On the data path: a few comparisons of numbers or 16-byte addresses; the
 * results go into buffers the caller owns (a sockaddr, a 16-byte address).
 * Nothing is allocated.
 */
import type { Ip4Config, Ip6Config } from "../conf/config.ts";
import { sockaddr4, sockaddr6 } from "../native/sockaddr.ts";
import { IP6_LOOPBACK, ip6Equal, ip6IsLoopback, ip6IsUnspecified } from "../wire/ipv6.ts";

/** What natOut did to a destination. */
export const NAT_NONE = 0;
export const NAT_DNS = 1;
export const NAT_HOST_LOOPBACK = 2;
export const NAT_GUEST_ADDR = 3;

const LOOPBACK4 = 0x7f000001;
/** DNS and DNS over TLS (or QUIC): the ports --dns-forward redirects. */
const DNS_PORT = 53;
const DNS_TLS_PORT = 853;

/** Whether traffic to port, over TCP or UDP, is DNS for --dns-forward. */
export function isDnsPort(port: number): boolean {
  return port === DNS_PORT || port === DNS_TLS_PORT;
}

/**
 * Where guest IPv4 traffic to dst:port goes on the host: a sockaddr_in
 * written into sa (16 bytes). dns: the protocol is TCP or UDP (ICMP is never
 * DNS). Returns the rule that applied (NAT_*).
 */
export function natOut4(ip4: Ip4Config, sa: Uint8Array, dst: number, port: number, dns: boolean): number {
  if (dns && dst === ip4.dnsMatch && dst !== 0 && ip4.dnsHost !== 0 && isDnsPort(port)) {
    sockaddr4(sa, ip4.dnsHost, port);
    return NAT_DNS;
  }
  if (dst === ip4.mapHostLoopback && dst !== 0) {
    sockaddr4(sa, LOOPBACK4, port);
    return NAT_HOST_LOOPBACK;
  }
  if (dst === ip4.mapGuestAddr && dst !== 0) {
    sockaddr4(sa, ip4.addr, port);
    return NAT_GUEST_ADDR;
  }
  sockaddr4(sa, dst, port);
  return NAT_NONE;
}

/** As natOut4, for the IPv6 destination at b[off]: a sockaddr_in6 (28 bytes) in sa. */
export function natOut6(ip6: Ip6Config, sa: Uint8Array, b: Uint8Array, off: number, port: number, dns: boolean): number {
  if (dns && ip6.dnsMatch && ip6.dnsHost && ip6Equal(b, off, ip6.dnsMatch) && isDnsPort(port)) {
    sockaddr6(sa, ip6.dnsHost, 0, port, 0);
    return NAT_DNS;
  }
  if (ip6.mapHostLoopback && ip6Equal(b, off, ip6.mapHostLoopback)) {
    sockaddr6(sa, IP6_LOOPBACK, 0, port, 0);
    return NAT_HOST_LOOPBACK;
  }
  if (ip6.mapGuestAddr && ip6Equal(b, off, ip6.mapGuestAddr)) {
    sockaddr6(sa, ip6.addr, 0, port, 0);
    return NAT_GUEST_ADDR;
  }
  sockaddr6(sa, b, off, port, 0);
  return NAT_NONE;
}

/**
 * The IPv4 source the guest sees for a host peer at addr:port (host order).
 * dnsFlow: the guest's flow sent DNS to dnsMatch. Returns 0 when there is
 * none to show (the traffic is to be dropped).
 */
export function natIn4(ip4: Ip4Config, addr: number, port: number, dnsFlow: boolean): number {
  if (dnsFlow && addr === ip4.dnsHost && ip4.dnsMatch !== 0 && isDnsPort(port)) return ip4.dnsMatch;
  if (addr === LOOPBACK4 && ip4.mapHostLoopback !== 0) return ip4.mapHostLoopback;
  if (addr === ip4.addr && ip4.mapGuestAddr !== 0) return ip4.mapGuestAddr;
  if (addr >>> 24 === 127 || addr === 0 || addr === ip4.addr) return ip4.gw;
  return addr;
}

/** As natIn4, for the IPv6 peer at b[off]; the address goes to out[0..16]. */
export function natIn6(ip6: Ip6Config, b: Uint8Array, off: number, port: number, dnsFlow: boolean, out: Uint8Array): void {
  if (dnsFlow && ip6.dnsMatch && ip6.dnsHost && ip6Equal(b, off, ip6.dnsHost) && isDnsPort(port)) out.set(ip6.dnsMatch);
  else if (ip6.mapHostLoopback && ip6IsLoopback(b, off)) out.set(ip6.mapHostLoopback);
  else if (ip6.mapGuestAddr && ip6Equal(b, off, ip6.addr)) out.set(ip6.mapGuestAddr);
  else if (!guestCanSee6(ip6, b, off)) out.set(ip6.ourLL);
  else for (let k = 0; k < 16; k++) out[k] = b[off + k]!;
}

/** Whether the guest can take the IPv6 address at b[off] as a source: not loopback, unspecified, v4-mapped or its own. */
function guestCanSee6(ip6: Ip6Config, b: Uint8Array, off: number): boolean {
  return !ip6IsLoopback(b, off) && !ip6IsUnspecified(b, off) && !isV4Mapped(b, off) && !ip6Equal(b, off, ip6.addr);
}

/** Whether the IPv6 address at b[off] is IPv4-mapped (::ffff:a.b.c.d). */
function isV4Mapped(b: Uint8Array, off: number): boolean {
  for (let k = 0; k < 10; k++) if (b[off + k] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}
