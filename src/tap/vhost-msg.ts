/**
 * vhost-user messages: what the front-end (QEMU, DPDK's virtio_user) sends on
 * the control socket of passt --vhost-user, checked before anything acts on it.
 *
 * Theory of operation
 * -------------------
 * Every message is a 12-byte header (request, flags, payload size; all
 * little-endian 32-bit) and a payload of that size, sent with one sendmsg();
 * some carry file descriptors (SCM_RIGHTS) with their first byte: the memory
 * table one per region, the kick, call and error eventfds one unless their
 * payload says "no descriptor". src/tap/vhost-user.ts reads the header, then
 * exactly the payload, and hands both, with the descriptors that came along,
 * to parseMessage(), which decodes the payload into a record the caller owns
 * (VhostMsg) or says why the message cannot be trusted.
 *
 * The front-end is untrusted, like the guest. A message is refused when its
 * version is not 1, its payload is larger than any request needs
 * (MAX_PAYLOAD) or shorter than its request's, its request is one we never
 * offered (unknown numbers, the dirty log of migration, RARP), it came with
 * another number of descriptors than its request takes, or its values are
 * beyond what one queue pair of a split virtqueue can mean: a queue index
 * other than 0 (receive) and 1 (transmit), a ring size that is not a power of
 * two up to MAX_QUEUE_SIZE, a last-available index above 65535, no memory
 * regions or more than MAX_REGIONS, a region that is empty or whose end
 * passes 2^53 (addresses are JavaScript numbers). The caller counts the
 * refusal and closes the connection: the next front-end gets a clean start.
 *
 * What the backend offers (FEATURES, PROTOCOL_FEATURES) is here too, so the
 * parser can refuse a front-end that acknowledges something else.
 */

/** Request numbers of the vhost-user specification that we handle. */
export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
} as const;

/** Header: request, flags, size (u32 each, little-endian). */
export const HDR_LEN = 12;
/** Largest payload of any request we take: the memory table, 8 + 8 regions × 32 bytes. */
export const MAX_PAYLOAD = 8 + 8 * 32;
/** Descriptors a message may carry, at most: one per memory region. */
export const MAX_FDS = 8;
/** Memory regions in a table (VHOST_MEMORY_BASELINE_NREGIONS of the specification). */
export const MAX_REGIONS = 8;
/** Largest split virtqueue (the specification's limit). */
export const MAX_QUEUE_SIZE = 32768;
/** Queues: 0 receive (frames to the guest), 1 transmit (frames from the guest). */
export const NUM_QUEUES = 2;

/** flags: the protocol version (bits 0-1), a reply, a reply wanted (REPLY_ACK). */
export const FLAG_VERSION = 1;
export const FLAG_REPLY = 1 << 2;
export const FLAG_NEED_REPLY = 1 << 3;
/** Payload of SET_VRING_KICK/CALL/ERR: the queue index, and this bit when no descriptor comes along. */
export const VRING_NOFD = 1 << 8;

/** Feature bits (virtio 1.x, virtio-net, vhost-user), as bit numbers. */
export const F = {
  GUEST_CSUM: 1,
  MRG_RXBUF: 15,
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  PROTOCOL_FEATURES: 30,
  VERSION_1: 32,
} as const;
/** Protocol feature: the front-end may ask for an acknowledgement of any message. */
export const PF_REPLY_ACK = 3;

/**
 * What we offer: virtio 1.x, merged receive buffers, partial checksums
 * towards the guest, and vhost-user protocol features. No segmentation
 * offload: frames to the guest are as large as its MTU (65520 by default),
 * so a super-frame would gain little, and the guest sends with full
 * checksums and no super-frames, as upstream's back-end asks.
 */
export const FEATURES = bit(F.VERSION_1) + bit(F.MRG_RXBUF) + bit(F.GUEST_CSUM) + bit(F.PROTOCOL_FEATURES);
export const PROTOCOL_FEATURES = bit(PF_REPLY_ACK);

/** 2^n as a number (feature masks fit in 53 bits). */
export function bit(n: number): number {
  return 2 ** n;
}

/** True when feature bit n is set in mask (a number up to 2^53). */
export function hasBit(mask: number, n: number): boolean {
  return Math.floor(mask / 2 ** n) % 2 === 1;
}

/** A decoded message: one record, made once by its owner and refilled by parseMessage(). */
export interface VhostMsg {
  req: number;
  flags: number;
  size: number;
  /** Descriptors that came with it (fds[0..nfds)); the owner closes what it does not keep. */
  nfds: number;
  /** u64 payloads (features), below 2^53. */
  u64: number;
  /** vring state and the queue of kick/call/err/addr: the index... */
  index: number;
  /** ...and the number (ring size, last available index, enable). */
  num: number;
  /** kick/call/err: true when no descriptor comes along (VRING_NOFD). */
  nofd: boolean;
  /** SET_VRING_ADDR: front-end addresses of the three rings. */
  descAddr: number;
  usedAddr: number;
  availAddr: number;
  /** SET_MEM_TABLE: the regions. */
  nregions: number;
  gpa: Float64Array;
  regionSize: Float64Array;
  uaddr: Float64Array;
  mmapOffset: Float64Array;
}

export function newMsg(): VhostMsg {
  return {
    req: 0,
    flags: 0,
    size: 0,
    nfds: 0,
    u64: 0,
    index: 0,
    num: 0,
    nofd: false,
    descAddr: 0,
    usedAddr: 0,
    availAddr: 0,
    nregions: 0,
    gpa: new Float64Array(MAX_REGIONS),
    regionSize: new Float64Array(MAX_REGIONS),
    uaddr: new Float64Array(MAX_REGIONS),
    mmapOffset: new Float64Array(MAX_REGIONS),
  };
}

/** Decode the header at b[off..off+12) into m; returns the payload size, or -1 (m unchanged) for one beyond MAX_PAYLOAD. */
export function parseHeader(b: Uint8Array, off: number, m: VhostMsg): number {
  const size = u32(b, off + 8);
  if (size > MAX_PAYLOAD) return -1;
  m.req = u32(b, off);
  m.flags = u32(b, off + 4);
  m.size = size;
  return size;
}

/**
 * Check and decode the payload at b[off..off+m.size) of the message whose
 * header parseHeader() read into m, which came with nfds descriptors.
 * Returns null when it can be acted on (its fields are in m), else why not.
 */
export function parseMessage(b: Uint8Array, off: number, nfds: number, m: VhostMsg): string | null {
  m.nfds = nfds;
  if ((m.flags & 3) !== FLAG_VERSION) return `${reqName(m.req)}: protocol version ${m.flags & 3}, not 1`;
  if (m.size > MAX_PAYLOAD || off + m.size > b.length) return `${reqName(m.req)}: payload of ${m.size} bytes`;
  const want = fdsWanted(b, off, m);
  if (want < 0) return `unknown or unsupported request ${m.req}`;
  if (nfds !== want) return `${reqName(m.req)}: ${nfds} descriptors, expected ${want}`;
  switch (m.req) {
    case Req.GET_FEATURES:
    case Req.GET_PROTOCOL_FEATURES:
    case Req.GET_QUEUE_NUM:
    case Req.SET_OWNER:
    case Req.RESET_OWNER:
      return null;
    case Req.SET_FEATURES:
    case Req.SET_PROTOCOL_FEATURES:
      return parseFeatures(b, off, m);
    case Req.SET_VRING_NUM:
    case Req.SET_VRING_BASE:
    case Req.GET_VRING_BASE:
    case Req.SET_VRING_ENABLE:
      return parseState(b, off, m);
    case Req.SET_VRING_ADDR:
      return parseAddr(b, off, m);
    case Req.SET_VRING_KICK:
    case Req.SET_VRING_CALL:
    case Req.SET_VRING_ERR:
      return parseVringFd(b, off, m);
    case Req.SET_MEM_TABLE:
      return parseMemTable(b, off, m);
  }
  return `unknown or unsupported request ${m.req}`;
}

/** Descriptors the message in m takes, or -1 for a request we don't take. */
function fdsWanted(b: Uint8Array, off: number, m: VhostMsg): number {
  switch (m.req) {
    case Req.SET_MEM_TABLE:
      return m.size >= 4 ? Math.min(u32(b, off), MAX_FDS + 1) : 0;
    case Req.SET_VRING_KICK:
    case Req.SET_VRING_CALL:
    case Req.SET_VRING_ERR:
      return m.size >= 8 && (u32(b, off) & VRING_NOFD) === 0 ? 1 : 0;
    case Req.GET_FEATURES:
    case Req.SET_FEATURES:
    case Req.SET_OWNER:
    case Req.RESET_OWNER:
    case Req.SET_VRING_NUM:
    case Req.SET_VRING_ADDR:
    case Req.SET_VRING_BASE:
    case Req.GET_VRING_BASE:
    case Req.GET_PROTOCOL_FEATURES:
    case Req.SET_PROTOCOL_FEATURES:
    case Req.GET_QUEUE_NUM:
    case Req.SET_VRING_ENABLE:
      return 0;
  }
  return -1;
}

function parseFeatures(b: Uint8Array, off: number, m: VhostMsg): string | null {
  if (m.size < 8) return `${reqName(m.req)}: payload of ${m.size} bytes, expected 8`;
  const v = u64(b, off);
  const offered = m.req === Req.SET_FEATURES ? FEATURES : PROTOCOL_FEATURES;
  if (v < 0 || !subset(v, offered)) return `${reqName(m.req)}: acknowledges features we did not offer`;
  if (m.req === Req.SET_FEATURES && !hasBit(v, F.VERSION_1)) return "SET_FEATURES: legacy virtio (no VERSION_1) is not supported";
  m.u64 = v;
  return null;
}

function parseState(b: Uint8Array, off: number, m: VhostMsg): string | null {
  if (m.size < 8) return `${reqName(m.req)}: payload of ${m.size} bytes, expected 8`;
  m.index = u32(b, off);
  m.num = u32(b, off + 4);
  if (m.index >= NUM_QUEUES) return `${reqName(m.req)}: queue ${m.index} (one queue pair: 0 and 1)`;
  if (m.req === Req.SET_VRING_NUM && (m.num === 0 || m.num > MAX_QUEUE_SIZE || (m.num & (m.num - 1)) !== 0))
    return `SET_VRING_NUM: ring size ${m.num} (a power of two up to ${MAX_QUEUE_SIZE})`;
  if (m.req === Req.SET_VRING_BASE && m.num > 0xffff) return `SET_VRING_BASE: index ${m.num} beyond 65535`;
  return null;
}

function parseAddr(b: Uint8Array, off: number, m: VhostMsg): string | null {
  if (m.size < 40) return `SET_VRING_ADDR: payload of ${m.size} bytes, expected 40`;
  m.index = u32(b, off);
  if (m.index >= NUM_QUEUES) return `SET_VRING_ADDR: queue ${m.index} (one queue pair: 0 and 1)`;
  m.descAddr = u64(b, off + 8);
  m.usedAddr = u64(b, off + 16);
  m.availAddr = u64(b, off + 24);
  if (m.descAddr < 0 || m.usedAddr < 0 || m.availAddr < 0) return "SET_VRING_ADDR: address beyond 2^53";
  if (m.descAddr % 16 !== 0 || m.availAddr % 2 !== 0 || m.usedAddr % 4 !== 0) return "SET_VRING_ADDR: misaligned ring";
  return null;
}

function parseVringFd(b: Uint8Array, off: number, m: VhostMsg): string | null {
  if (m.size < 8) return `${reqName(m.req)}: payload of ${m.size} bytes, expected 8`;
  const v = u32(b, off);
  m.index = v & 0xff;
  m.nofd = (v & VRING_NOFD) !== 0;
  if ((v & ~(0xff | VRING_NOFD)) !== 0 || u32(b, off + 4) !== 0) return `${reqName(m.req)}: unknown bits in ${v}`;
  if (m.index >= NUM_QUEUES) return `${reqName(m.req)}: queue ${m.index} (one queue pair: 0 and 1)`;
  return null;
}

function parseMemTable(b: Uint8Array, off: number, m: VhostMsg): string | null {
  if (m.size < 8) return `SET_MEM_TABLE: payload of ${m.size} bytes`;
  const n = u32(b, off);
  if (n === 0 || n > MAX_REGIONS) return `SET_MEM_TABLE: ${n} regions (1 to ${MAX_REGIONS})`;
  if (m.size < 8 + 32 * n) return `SET_MEM_TABLE: payload of ${m.size} bytes for ${n} regions`;
  for (let i = 0; i < n; i++) {
    const r = off + 8 + 32 * i;
    const gpa = u64(b, r);
    const size = u64(b, r + 8);
    const uaddr = u64(b, r + 16);
    const mo = u64(b, r + 24);
    if (gpa < 0 || size <= 0 || uaddr < 0 || mo < 0) return `SET_MEM_TABLE: region ${i} empty or beyond 2^53`;
    if (gpa + size > Number.MAX_SAFE_INTEGER || uaddr + size > Number.MAX_SAFE_INTEGER || mo + size > Number.MAX_SAFE_INTEGER)
      return `SET_MEM_TABLE: region ${i} ends beyond 2^53`;
    m.gpa[i] = gpa;
    m.regionSize[i] = size;
    m.uaddr[i] = uaddr;
    m.mmapOffset[i] = mo;
  }
  m.nregions = n;
  return null;
}

/** Write a reply header for request req with size bytes of payload into b at off; returns HDR_LEN. */
export function replyHeader(b: Uint8Array, off: number, req: number, size: number): number {
  w32(b, off, req);
  w32(b, off + 4, FLAG_VERSION | FLAG_REPLY);
  w32(b, off + 8, size);
  return HDR_LEN;
}

/** A u64 into b at off (v below 2^53). */
export function w64(b: Uint8Array, off: number, v: number): void {
  w32(b, off, v % 2 ** 32);
  w32(b, off + 4, Math.floor(v / 2 ** 32));
}

export function w32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 255;
  b[off + 1] = (v >>> 8) & 255;
  b[off + 2] = (v >>> 16) & 255;
  b[off + 3] = v >>> 24;
}

export function u32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

/** The u64 at off, or -1 when it is 2^53 or more. */
export function u64(b: Uint8Array, off: number): number {
  const hi = u32(b, off + 4);
  return hi >= 1 << 21 ? -1 : hi * 2 ** 32 + u32(b, off);
}

/** True when every bit of v is in mask (both below 2^53). */
function subset(v: number, mask: number): boolean {
  const lo = (v % 2 ** 32) >>> 0;
  const hi = Math.floor(v / 2 ** 32);
  return (lo & ~(mask % 2 ** 32)) === 0 && (hi & ~Math.floor(mask / 2 ** 32)) === 0;
}

/** The request's name, for messages. */
export function reqName(req: number): string {
  for (const [name, n] of Object.entries(Req)) if (n === req) return name;
  return `request ${req}`;
}
