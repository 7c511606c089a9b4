/**
 * Event kinds: the one list of what a descriptor in the epoll set is.
 *
 * Every descriptor the loop watches is registered with a reference whose top
 * 8 bits are its kind (src/loop/loop.ts); the loop calls the handler
 * registered for that kind with the lower 24 bits (a flow slot, a listener
 * number). Each kind is named and numbered here, once; the module that owns
 * the descriptors registers the handler (`loop.on(Kind.TCP, ...)`), and the
 * loop refuses a second handler for the same kind. pasta and passt are
 * different runs of the same loop: a kind used by only one of them (TAP,
 * PASST_CLIENT) simply has no handler in the other.
 *
 * Numbers are 1..255 (0 is never registered, so a zeroed reference is
 * caught) and must not repeat: `kindCollisions()` is checked by a unit test.
 */

export const Kind = {
  /** pasta: the tap device (src/tap/tap.ts). */
  TAP: 1,
  /** SIGINT, SIGTERM, SIGHUP through the shim's signal pipe (src/daemon.ts). */
  SIGNAL: 2,
  /** pasta: the pidfd of the command's process, or of the process we attached to. */
  CHILD: 3,
  /** An ICMP or ICMPv6 echo socket (src/flows/icmp.ts); index: flow slot. */
  ICMP: 4,
  /** A TCP socket of a connection through the tap (src/flows/tcp.ts); index: flow slot. */
  TCP: 5,
  /** A listening TCP socket of -t/-T (src/fwd/forward.ts); index: listener number. */
  TCP_LISTEN: 6,
  /** A UDP socket of a flow through the tap (src/flows/udp.ts); index: flow slot. */
  UDP: 7,
  /** A bound UDP socket of -u (src/fwd/forward.ts; read by src/flows/udp.ts); index: listener number. */
  UDP_LISTEN: 8,
  /** A socket of a spliced TCP connection (src/flows/splice.ts); index: 2 × connection + side. */
  SPLICE: 9,
  /** A socket of a spliced UDP flow (src/flows/udpsplice.ts); index: flow slot. */
  UDP_SPLICE: 10,
  /** A bound UDP socket of -U, in the namespace (src/fwd/forward.ts; read by src/flows/udpsplice.ts); index: listener number. */
  UDP_NS_LISTEN: 11,
  /** pasta --netns: inotify on the directory of the namespace file (src/ns/watch.ts). */
  NETNS_FILE: 12,
  /** passt: the connected client socket (src/tap/stream.ts), or the vhost-user control socket (src/tap/vhost-user.ts). */
  PASST_CLIENT: 13,
  /** passt: the listening UNIX domain socket (src/passt.ts). */
  PASST_LISTENER: 14,
  /** A UDP socket joined to a group the guest joined (src/flows/mcast.ts); index: group × ports + port slot. */
  MCAST: 15,
  /** passt --vhost-user: a queue's kick eventfd (src/tap/vhost-user.ts); index: the queue (0 receive, 1 transmit). */
  VHOST_KICK: 16,
} as const;

export type KindName = keyof typeof Kind;
export type EventKind = (typeof Kind)[KindName];

/** The name of kind k, for messages ("?" when there is none). */
export function kindName(k: number): string {
  for (const [name, n] of Object.entries(Kind)) if (n === k) return name;
  return "?";
}

/** Kinds that share a number or fall outside 1..255 (a unit test wants none). */
export function kindCollisions(kinds: Record<string, number> = Kind): string[] {
  const seen = new Map<number, string>();
  const bad: string[] = [];
  for (const [name, n] of Object.entries(kinds)) {
    if (!Number.isInteger(n) || n < 1 || n > 255) bad.push(`${name}: ${n} is not in 1..255`);
    const other = seen.get(n);
    if (other !== undefined) bad.push(`${name} and ${other} are both ${n}`);
    seen.set(n, name);
  }
  return bad;
}
