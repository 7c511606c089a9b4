/**
 * The TCP connection record (flows/tcp.ts): every field of a connection
 * through the tap, declared once, with its meaning, its unit, and who
 * writes it (as the original's tcp_conn.h does for its struct).
 *
 * Layout: one typed array per field, indexed by the connection's flow
 * number (0 .. FLOW_MAX-1, src/flows/flow.ts), allocated once from the
 * arena (src/loop/arena.ts): a field read is one indexed load, nothing is
 * allocated per connection, and a flow's fields are reset by initFlow in
 * flows/tcp.ts when it becomes a connection. What every flow has (its two
 * sides: the guest's and the remote's addresses and ports on the tap side)
 * is the flow table's, not here.
 *
 * Writers, as the fields below name them:
 * - guest side: handling a segment from the tap (fromGuest and what it calls:
 *   guestOpens, guestSynAck, established, guestAck, guestFin, flushRun);
 * - host side: handling an event of the connection's socket (onSocket,
 *   connected, sendData, hostEof) or an accepted connection (acceptFromHost);
 * - timer: onTick's per-connection timeout (timeout, probeWindow);
 * - table: flow and list bookkeeping (allocFrom, alloc, initFlow, free, the
 *   half-open list).
 *
 * Sequence numbers are modulo 2^32 (compare with seqDiff); times are
 * milliseconds of the monotonic clock (src/loop/loop.ts's now()).
 */
import { table } from "../loop/arena.ts";

// Values of `state`.
/** The slot is free. */
export const FREE = 0;
/** Guest sent SYN; our connect() is in progress. */
export const CONNECTING = 1;
/** Host accepted; we sent SYN to the guest and wait for its SYN-ACK. */
export const SYN_TO_GUEST = 2;
/** Both sides connected. */
export const ESTABLISHED = 3;

// Bits of `flags`.
/** An IPv6 connection (addresses are 16 bytes; else 4, at the start of the 16). */
export const F_V6 = 1;
/** The guest sent its FIN (guest side). */
export const F_GUEST_FIN = 2;
/** The host socket reached end of stream (host side). */
export const F_HOST_EOF = 4;
/** We sent our FIN to the guest. */
export const F_FIN_SENT = 8;
/** The guest acknowledged our FIN. */
export const F_FIN_ACKED = 16;
/** In the ACK list: an ACK to the guest goes out at the end of the batch (flushAcks). */
export const F_ACK_PENDING = 32;
/** EPOLLOUT is watched: the socket was full, a window update follows when it drains. */
export const F_OUT_WAIT = 64;
/** shutdown(SHUT_WR) was done on the socket (after the guest's FIN and its data). */
export const F_SHUT_WR = 128;
/** In the send list: acknowledged bytes to discard, and data to send, at the end of the batch. */
export const F_SEND_QUEUED = 256;
/** In a half-open list: the handshake is not complete on both sides. */
export const F_HALF_OPEN = 512;
/**
 * A write to the host socket failed for good (the peer reset it: the error
 * is consumed by that write, so EPOLLERR will not tell): reset the guest
 * side at the end of the batch (flushSends).
 */
export const F_HOST_ERR = 1024;
/** In the half-open list of proven guest addresses (flows/proven.ts), not the unproven one's. */
export const F_HO_PROVEN = 2048;

/** Every connection's fields, one typed array each (see the top of this file). */
export class TcpConns {
  /** FREE, CONNECTING, SYN_TO_GUEST or ESTABLISHED. Writers: guest side, host side, table. */
  readonly state: Uint8Array;
  /** F_* bits above. Writers: all. */
  readonly flags: Uint16Array;
  /** The host socket; -1 when closed. Writers: host side (accept, connect), guest side (its RST), table (-1 at initFlow). */
  readonly fd: Int32Array;

  /** Next sequence number we send to the guest (SND.NXT, moved back by a rewind). Writers: host side, timer. */
  readonly seqToGuest: Uint32Array;
  /** Highest sequence number the guest acknowledged (SND.UNA): everything before it is gone from the socket. Writer: guest side. */
  readonly seqAcked: Uint32Array;
  /**
   * The furthest seqToGuest reached before a rewind took it back (never
   * behind seqAcked): with seqToGuest, the right edge of what the guest may
   * acknowledge (RFC 9293's SND.NXT, which retransmission does not move).
   * Writers: guest side, host side.
   */
  readonly seqMax: Uint32Array;
  /** Next sequence number expected from the guest (RCV.NXT). Writer: guest side. */
  readonly seqFromGuest: Uint32Array;

  /** The guest's receive window, bytes (scaled by guestWs). Writer: guest side. */
  readonly guestWnd: Uint32Array;
  /** The guest's window scale (shift count, 0..14). Writer: guest side (its SYN or SYN-ACK). */
  readonly guestWs: Uint8Array;
  /** Our window scale for this connection (0 when the guest did not offer scaling). Writer: guest side. */
  readonly ourWs: Uint8Array;
  /** Largest payload per segment to the guest, bytes: its MSS option within our MTU. Writers: guest side, host side (accept). */
  readonly mss: Uint16Array;
  /** The last window we advertised to the guest, in units of 2^ourWs bytes (as on the wire). Writer: whoever builds a segment. */
  readonly lastWndSent: Uint32Array;

  /**
   * Free space of the host socket's send buffer, bytes: a lower bound, exact
   * when last asked (sndSpaceAsked), less what we wrote since (the peer's
   * reads only add to it). Spares the system calls of asking on every ACK
   * (TcpFlows.windowToGuest). Writers: whoever builds a segment, flushRun.
   */
  readonly sndSpace: Uint32Array;
  /** What the socket answered when last asked for its free space, bytes. Writer: whoever builds a segment. */
  readonly sndSpaceAsked: Uint32Array;

  /** EPOLLOUT events in a row that found the window still closed (see TcpFlows.updateWindowIfOpen). Writer: host side. */
  readonly outSpins: Uint8Array;

  /** Duplicate ACKs in a row (fast retransmission at DUP_ACK_THRESHOLD). Writers: guest side, table. */
  readonly dupAcks: Uint8Array;
  /** 1 after a fast retransmission, until the guest acknowledges new data: its further duplicate ACKs are echoes of it. Writer: guest side. */
  readonly recovering: Uint8Array;
  /** Retransmissions (or SYN, SYN-ACK, window probes) without progress; reset past TCP_MAX_RETRIES. Writers: timer, guest side. */
  readonly retries: Uint8Array;
  /** 1 while the host socket may hold data not yet sent to the guest (set by EPOLLIN, cleared when a peek finds none). Writer: host side. */
  readonly hostPending: Uint8Array;
  /**
   * Bytes the guest acknowledged that are still in the socket: the
   * discarding read waits for the end of the batch, so that the ACKs of one
   * batch (the guest acknowledges every second segment) cost one read, not
   * one each. Writers: guest side (adds), flushSends (reads them away).
   */
  readonly unDiscarded: Float64Array;
  /** SYN-ACK sent to the guest and not yet confirmed by its ACK (retransmitted on timeout). Writers: host side, guest side. */
  readonly synAckPending: Uint8Array;

  /** When the connection's timer fires next, ms (0: none). Writers: all. */
  readonly deadline: Float64Array;
  /** Last traffic either way, ms (idle timeout, eviction order). Writers: guest side, host side. */
  readonly lastActive: Float64Array;
  /** When the handshake began, ms (half-open connections). Writer: table (the half-open list). */
  readonly openedAt: Float64Array;

  /** Neighbours in its half-open list, oldest first (-1: none). Writer: table. */
  readonly hoPrev: Int32Array;
  readonly hoNext: Int32Array;

  constructor(n: number) {
    this.state = table.u8(n);
    this.flags = table.u16(n);
    this.fd = table.i32(n);
    this.seqToGuest = table.u32(n);
    this.seqAcked = table.u32(n);
    this.seqMax = table.u32(n);
    this.seqFromGuest = table.u32(n);
    this.guestWnd = table.u32(n);
    this.guestWs = table.u8(n);
    this.ourWs = table.u8(n);
    this.mss = table.u16(n);
    this.lastWndSent = table.u32(n);
    this.sndSpace = table.u32(n);
    this.sndSpaceAsked = table.u32(n);
    this.outSpins = table.u8(n);
    this.dupAcks = table.u8(n);
    this.recovering = table.u8(n);
    this.retries = table.u8(n);
    this.hostPending = table.u8(n);
    this.unDiscarded = table.f64(n);
    this.synAckPending = table.u8(n);
    this.deadline = table.f64(n);
    this.lastActive = table.f64(n);
    this.openedAt = table.f64(n);
    this.hoPrev = table.i32(n);
    this.hoNext = table.i32(n);
  }
}
