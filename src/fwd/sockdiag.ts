/**
 * Listening TCP ports of a network namespace through sock_diag
 * (NETLINK_SOCK_DIAG, see sock_diag(7)), for auto forwarding (forward.ts).
 *
 * Theory of operation
 * -------------------
 * /proc/net/tcp and tcp6 list the listening sockets too, but the kernel
 * builds them by walking its whole connection hash table, empty buckets
 * included: about 4 ms per file here (262144 buckets), whatever the
 * namespace holds, for each side and each scan (start-up, then every
 * second). A sock_diag dump asking for the LISTEN state only walks the
 * listening table. The socket is made once per side (inside the namespace
 * for its side) and kept; a kernel without sock_diag for TCP (inet_diag,
 * tcp_diag) makes openSockDiag or tcpListening fail, and the caller reads
 * /proc instead.
 */
import { type NlSys, collectReplies } from "../conf/netlink.ts";

const AF_NETLINK = 16;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const IPPROTO_TCP = 6;
const TCP_LISTEN = 10;
const NLMSG_HDRLEN = 16;
/** struct inet_diag_req_v2: family, protocol, ext, pad, states, then a 48-byte inet_diag_sockid. */
const REQ_LEN = NLMSG_HDRLEN + 56;
/** In a reply, struct inet_diag_msg: family, state, timer, retrans, then the sockid, whose first field is the source port (big-endian). */
const MSG_SPORT = NLMSG_HDRLEN + 4;
const EINTR = 4;
const RECV_BUF = 32768;

/** The dump request for listening TCP sockets of family. */
export function listenRequest(family: number, seq: number): Uint8Array {
  const req = new Uint8Array(REQ_LEN);
  const dv = new DataView(req.buffer);
  dv.setUint32(0, REQ_LEN, true);
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  dv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
  dv.setUint32(8, seq, true);
  req[NLMSG_HDRLEN] = family;
  req[NLMSG_HDRLEN + 1] = IPPROTO_TCP;
  dv.setUint32(NLMSG_HDRLEN + 4, 1 << TCP_LISTEN, true);
  return req;
}

/** Set in found the source port of each inet_diag_msg in msgs, unless ours holds it (port bitmaps). */
export function markPorts(msgs: Uint8Array[], ours: Uint8Array, found: Uint8Array): void {
  for (const m of msgs) {
    if (m.length < MSG_SPORT + 2) continue;
    const port = (m[MSG_SPORT]! << 8) | m[MSG_SPORT + 1]!;
    if (!(ours[port >> 3]! & (1 << (port & 7)))) found[port >> 3]! |= 1 << (port & 7);
  }
}

/** A sock_diag socket in the namespace nsfd refers to (-1: ours); negative errno on failure. */
export function openSockDiag(io: Pick<NlSys, "shim_socket" | "shim_ns_socket">, nsfd: number): number {
  const type = SOCK_RAW | SOCK_CLOEXEC;
  return nsfd < 0 ? io.shim_socket(AF_NETLINK, type, NETLINK_SOCK_DIAG) : io.shim_ns_socket(nsfd, AF_NETLINK, type, NETLINK_SOCK_DIAG);
}

const buf = new Uint8Array(RECV_BUF);
let seq = 0;

/**
 * Mark in found the ports of every listening TCP socket (IPv4 and IPv6) that
 * sock_diag socket fd sees, leaving out those in ours; false if the kernel
 * did not answer (found is then partly filled: read /proc instead).
 */
export function tcpListening(io: Pick<NlSys, "shim_send" | "shim_recv">, fd: number, ours: Uint8Array, found: Uint8Array): boolean {
  try {
    for (const family of [AF_INET, AF_INET6]) {
      seq = (seq + 1) >>> 0;
      const req = listenRequest(family, seq);
      if (io.shim_send(fd, req, req.length, 0) < 0) return false;
      const msgs: Uint8Array[] = [];
      for (let done = false; !done; ) {
        const n = io.shim_recv(fd, buf, buf.length, 0);
        if (n === -EINTR) continue;
        if (n <= 0) return false;
        done = collectReplies(buf.subarray(0, n), seq, msgs);
      }
      markPorts(msgs, ours, found);
    }
    return true;
  } catch {
    return false; // an error answer (no tcp_diag for this family, say)
  }
}
