/**
 * Linux constants for the shim's socket calls, in one place (x86-64 and
 * arm64 share these values).
 */
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_PEEK_OFF = 42;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ICMPV6 = 58;
export const IPV6_V6ONLY = 26;
export const TCP_NODELAY = 1;
export const TCP_MAXSEG = 2;
export const SHUT_WR = 1;
export const MSG_DONTWAIT = 0x40;
export const EAGAIN = 11;
/** Out of descriptors: the process's limit, and the system's. */
export const EMFILE = 24;
export const ENFILE = 23;
export const EINPROGRESS = 115;
export const TCP_QUICKACK = 12;
