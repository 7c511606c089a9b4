/**
 * Ethernet II header (no 802.1Q): destination MAC, source MAC, EtherType.
 *
 * Functions take (b, o) with o the offset of the Ethernet header. MAC
 * addresses are 6 bytes compared and copied in place.
 */
import { copyBytes, equalBytes, inBounds, rd16, wr16 } from "./bytes.ts";

export const ETH_ALEN = 6;
export const ETH_HLEN = 14;
export const ETH_DST = 0;
export const ETH_SRC = 6;
export const ETH_TYPE = 12;

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;

/** Validate an Ethernet header in len available bytes at b[o]: ETH_HLEN, or -1 when too short. */
export function ethCheck(b: Uint8Array, o: number, len: number): number {
  return len >= ETH_HLEN && inBounds(b, o, len) ? ETH_HLEN : -1;
}

/** EtherType of the frame at b[o]. */
export function ethType(b: Uint8Array, o: number): number {
  return rd16(b, o + ETH_TYPE);
}

/** True when the destination MAC is multicast or broadcast (group bit set). */
export function ethDstIsGroup(b: Uint8Array, o: number): boolean {
  return (b[o + ETH_DST]! & 1) === 1;
}

/** True when the destination MAC equals mac. */
export function ethDstIs(b: Uint8Array, o: number, mac: Uint8Array): boolean {
  return equalBytes(b, o + ETH_DST, mac, 0, ETH_ALEN);
}

/** Copy the source MAC of the frame at b[o] into mac (6 bytes). */
export function ethCopySrc(b: Uint8Array, o: number, mac: Uint8Array): void {
  copyBytes(mac, 0, b, o + ETH_SRC, ETH_ALEN);
}

/** Write the destination MAC. */
export function ethSetDst(b: Uint8Array, o: number, mac: Uint8Array): void {
  copyBytes(b, o + ETH_DST, mac, 0, ETH_ALEN);
}

/** Write the source MAC. */
export function ethSetSrc(b: Uint8Array, o: number, mac: Uint8Array): void {
  copyBytes(b, o + ETH_SRC, mac, 0, ETH_ALEN);
}

/** True when the 6 bytes at b[o] are a unicast MAC other than 00:00:00:00:00:00. */
export function macIsUnicast(b: Uint8Array, o: number): boolean {
  if (b[o]! & 1) return false;
  for (let i = 0; i < ETH_ALEN; i++) if (b[o + i] !== 0) return true;
  return false;
}

/**
 * Write a complete Ethernet header at b[o]: dst and src MACs (6 bytes each)
 * and the EtherType. Returns the offset just past it (where the L3 header goes).
 */
export function writeEth(b: Uint8Array, o: number, dst: Uint8Array, src: Uint8Array, ethertype: number): number {
  copyBytes(b, o + ETH_DST, dst, 0, ETH_ALEN);
  copyBytes(b, o + ETH_SRC, src, 0, ETH_ALEN);
  wr16(b, o + ETH_TYPE, ethertype);
  return o + ETH_HLEN;
}
