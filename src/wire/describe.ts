/**
 * One line for one frame, for --trace: what it is, from where to where.
 *
 * "IPv4 TCP 192.0.2.2:40312 > 198.51.100.1:80 [S] seq 1000 ack 0 win 64240 len 0",
 * "ARP request 192.0.2.1 tell 192.0.2.2", "IPv6 ICMPv6 type 135 fe80::1 > ff02::1:ff00:1".
 *
 * Only --trace calls it, so it may allocate; it must not trust the frame:
 * every field it reads is checked against len first, and what does not fit
 * is described as truncated.
 */
import { formatIp4, formatIp6, formatMac } from "../conf/config.ts";

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const ETH_P_ARP = 0x0806;
const ETH_P_IPV6 = 0x86dd;
const IPV6_HLEN = 40;
const PROTO_NAMES: Record<number, string> = { 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6" };
const TCP_FLAGS = "FSRPAU";

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** The transport part: ports and, for TCP, flags, sequence numbers and window; l4 bytes l4..end. */
function transport(b: Uint8Array, proto: number, src: string, dst: string, l4: number, end: number): string {
  const name = PROTO_NAMES[proto] ?? `protocol ${proto}`;
  const avail = end - l4;
  if (proto === 6 && avail >= 20) {
    const flags = [...TCP_FLAGS].filter((_, i) => (b[l4 + 13]! & (1 << i)) !== 0).join("");
    const len = avail - ((b[l4 + 12]! >> 4) << 2);
    return `${name} ${src}:${u16(b, l4)} > ${dst}:${u16(b, l4 + 2)} [${flags}] seq ${u32(b, l4 + 4)} ack ${u32(b, l4 + 8)} win ${u16(b, l4 + 14)} len ${len}`;
  }
  if (proto === 17 && avail >= 8) return `${name} ${src}:${u16(b, l4)} > ${dst}:${u16(b, l4 + 2)} len ${avail - 8}`;
  if ((proto === 1 || proto === 58) && avail >= 2) return `${name} type ${b[l4]} code ${b[l4 + 1]} ${src} > ${dst}`;
  return `${name} ${src} > ${dst}${avail > 0 && (proto === 6 || proto === 17) ? " (truncated)" : ""}`;
}

function ipv4(b: Uint8Array, o: number, end: number): string {
  if (end - o < 20) return "IPv4 (truncated)";
  const hlen = (b[o]! & 15) * 4;
  const total = Math.min(u16(b, o + 2), end - o);
  const frag = u16(b, o + 6) & 0x3fff;
  const head = `IPv4 ${transport(b, b[o + 9]!, formatIp4(u32(b, o + 12)), formatIp4(u32(b, o + 16)), o + hlen, o + total)}`;
  return frag !== 0 ? `${head} (fragment, offset ${(frag & 0x1fff) * 8})` : head;
}

function ipv6(b: Uint8Array, o: number, end: number): string {
  if (end - o < IPV6_HLEN) return "IPv6 (truncated)";
  const stop = Math.min(o + IPV6_HLEN + u16(b, o + 4), end);
  return `IPv6 ${transport(b, b[o + 6]!, formatIp6(b, o + 8), formatIp6(b, o + 24), o + IPV6_HLEN, stop)}`;
}

function arp(b: Uint8Array, o: number, end: number): string {
  if (end - o < 28) return "ARP (truncated)";
  const op = u16(b, o + 6);
  const sender = formatIp4(u32(b, o + 14));
  const target = formatIp4(u32(b, o + 24));
  return op === 1 ? `ARP request ${target} tell ${sender}` : op === 2 ? `ARP reply ${sender} is-at ${formatMac(b, o + 8)}` : `ARP op ${op}`;
}

/** One line describing the Ethernet frame of len bytes at b[off]. */
export function describeFrame(b: Uint8Array, off: number, len: number): string {
  const end = Math.min(off + len, b.length);
  if (end - off < ETH_HLEN) return `${len} bytes (truncated Ethernet header)`;
  const type = u16(b, off + 12);
  const l3 = off + ETH_HLEN;
  const what =
    type === ETH_P_IP
      ? ipv4(b, l3, end)
      : type === ETH_P_IPV6
        ? ipv6(b, l3, end)
        : type === ETH_P_ARP
          ? arp(b, l3, end)
          : `ethertype 0x${type.toString(16).padStart(4, "0")}`;
  return `${len} bytes, ${what}`;
}
