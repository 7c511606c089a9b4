/**
 * ARP for IPv4 over Ethernet (RFC 826): the only kind we parse or send.
 *
 * Functions take (b, o) with o the offset of the ARP header (just past the
 * Ethernet header). Protocol addresses are host-order u32, hardware
 * addresses 6 bytes in place.
 */
import { copyBytes, inBounds, rd16, rd32, wr16, wr32 } from "./bytes.ts";
import { ETH_ALEN, ETH_P_IP } from "./eth.ts";

/** Length of an Ethernet/IPv4 ARP packet. */
export const ARP_LEN = 28;
export const ARP_HTYPE = 0;
export const ARP_PTYPE = 2;
export const ARP_HLN = 4;
export const ARP_PLN = 5;
export const ARP_OP = 6;
export const ARP_SHA = 8;
export const ARP_SPA = 14;
export const ARP_THA = 18;
export const ARP_TPA = 24;

export const ARPHRD_ETHER = 1;
export const ARPOP_REQUEST = 1;
export const ARPOP_REPLY = 2;
/** Protocol address length for IPv4. */
const IP4_ALEN = 4;

/**
 * Validate an ARP packet in len available bytes at b[o]: Ethernet hardware,
 * IPv4 protocol, address lengths 6 and 4. Returns ARP_LEN or -1. Trailing
 * bytes (Ethernet padding) are allowed.
 */
export function arpCheck(b: Uint8Array, o: number, len: number): number {
  if (len < ARP_LEN || !inBounds(b, o, len)) return -1;
  if (rd16(b, o + ARP_HTYPE) !== ARPHRD_ETHER || rd16(b, o + ARP_PTYPE) !== ETH_P_IP) return -1;
  if (b[o + ARP_HLN] !== ETH_ALEN || b[o + ARP_PLN] !== IP4_ALEN) return -1;
  return ARP_LEN;
}

/** Opcode (ARPOP_REQUEST, ARPOP_REPLY, ...). */
export function arpOp(b: Uint8Array, o: number): number {
  return rd16(b, o + ARP_OP);
}

/** Sender protocol (IPv4) address. */
export function arpSpa(b: Uint8Array, o: number): number {
  return rd32(b, o + ARP_SPA);
}

/** Target protocol (IPv4) address. */
export function arpTpa(b: Uint8Array, o: number): number {
  return rd32(b, o + ARP_TPA);
}

/**
 * Write a complete Ethernet/IPv4 ARP packet at b[o]: opcode, sender MAC and
 * IPv4 address, target MAC and IPv4 address. Returns the offset past it.
 */
export function writeArp(b: Uint8Array, o: number, op: number, sha: Uint8Array, spa: number, tha: Uint8Array, tpa: number): number {
  wr16(b, o + ARP_HTYPE, ARPHRD_ETHER);
  wr16(b, o + ARP_PTYPE, ETH_P_IP);
  b[o + ARP_HLN] = ETH_ALEN;
  b[o + ARP_PLN] = IP4_ALEN;
  wr16(b, o + ARP_OP, op);
  copyBytes(b, o + ARP_SHA, sha, 0, ETH_ALEN);
  wr32(b, o + ARP_SPA, spa);
  copyBytes(b, o + ARP_THA, tha, 0, ETH_ALEN);
  wr32(b, o + ARP_TPA, tpa);
  return o + ARP_LEN;
}
