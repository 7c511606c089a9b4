/**
 * struct sockaddr_in / sockaddr_in6 written into caller-owned buffers, for the
 * shim's bind/connect/sendto. No allocation: the caller keeps one buffer.
 */
import { sys } from "./ffi.ts";
import { AF_INET, AF_INET6, SOL_SOCKET } from "./consts.ts";

/** Lengths of struct sockaddr_in and sockaddr_in6. */
export const SOCKADDR4_LEN = 16;
export const SOCKADDR6_LEN = 28;

/** sockaddr_in (16 bytes) for a host-order IPv4 address and port. */
export function sockaddr4(sa: Uint8Array, addr: number, port: number): number {
  sa.fill(0, 0, 16);
  sa[0] = AF_INET;
  sa[1] = 0;
  sa[2] = port >>> 8;
  sa[3] = port & 255;
  sa[4] = addr >>> 24;
  sa[5] = (addr >>> 16) & 255;
  sa[6] = (addr >>> 8) & 255;
  sa[7] = addr & 255;
  return 16;
}

/** sockaddr_in6 (28 bytes) for the 16-byte address at b[off], port and scope id. */
export function sockaddr6(sa: Uint8Array, b: Uint8Array, off: number, port: number, scope: number): number {
  sa.fill(0, 0, 28);
  sa[0] = AF_INET6;
  sa[2] = port >>> 8;
  sa[3] = port & 255;
  for (let i = 0; i < 16; i++) sa[8 + i] = b[off + i]!;
  sa[24] = scope & 255;
  sa[25] = (scope >>> 8) & 255;
  sa[26] = (scope >>> 16) & 255;
  sa[27] = scope >>> 24;
  return 28;
}

/** Family of a sockaddr in sa. */
export function saFamily(sa: Uint8Array): number {
  return sa[0]! | (sa[1]! << 8);
}

/** Port of a sockaddr_in or sockaddr_in6. */
export function saPort(sa: Uint8Array): number {
  return (sa[2]! << 8) | sa[3]!;
}

/** Host-order IPv4 address of a sockaddr_in. */
export function saAddr4(sa: Uint8Array): number {
  return ((sa[4]! << 24) | (sa[5]! << 16) | (sa[6]! << 8) | sa[7]!) >>> 0;
}

/** Offset of the 16-byte address inside a sockaddr_in6. */
export const SA6_ADDR = 8;

/** True when the sockaddr at sa[o] holds a loopback address (127/8 or ::1). */
export function saIsLoopback(sa: Uint8Array, o = 0): boolean {
  if (sa[o] === AF_INET) return sa[o + 4] === 127;
  for (let k = 0; k < 15; k++) if (sa[o + SA6_ADDR + k] !== 0) return false;
  return sa[o + SA6_ADDR + 15] === 1;
}

const SO_BINDTODEVICE = 25;
const ANY6 = new Uint8Array(16);
const bindBuf = new Uint8Array(28);

/** Outbound source settings (-o, --outbound-if4/6), as Config carries them. */
export interface Outbound {
  outbound4: number;
  outbound6: Uint8Array | null;
  outboundIf4: string | null;
  outboundIf6: string | null;
}

/**
 * Bind a new outbound socket as -o and --outbound-if4/6 ask, at port (0: any).
 * Returns 0, or -errno from bind (binding to a device is best effort: it needs
 * CAP_NET_RAW on older kernels).
 */
export function bindOutbound(fd: number, v6: boolean, port: number, out: Outbound): number {
  const dev = v6 ? out.outboundIf6 : out.outboundIf4;
  if (dev) {
    const name = new TextEncoder().encode(dev + "\0");
    sys.shim_setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, name.length);
  }
  if (v6 && !out.outbound6 && port === 0) return 0;
  if (!v6 && !out.outbound4 && port === 0) return 0;
  const len = v6 ? sockaddr6(bindBuf, out.outbound6 ?? ANY6, 0, port, 0) : sockaddr4(bindBuf, out.outbound4, port);
  return sys.shim_bind(fd, bindBuf, len);
}
