/**
 * Guest memory and split virtqueues (virtio 1.x), as passt --vhost-user sees
 * them: the memory table the front-end sent, and the walk of the rings that
 * live in it.
 *
 * Theory of operation
 * -------------------
 * Memory: the front-end sends a table of up to 8 regions, each with its guest
 * physical address, size, the address it has it at in its own process (the
 * ring addresses come in those) and a descriptor to map it from (at
 * mmap_offset). src/tap/vhost-user.ts maps each once and gives GuestMemory a
 * byte view per region (and, for the rings' 16-bit indices, a Uint16Array
 * over the same bytes); tests give it plain arrays. A region larger than a
 * view may be (4 GiB) gets several views, overlapping so that any buffer of
 * up to VIEW_OVERLAP bytes lies whole in one of them. Every address a ring or
 * descriptor holds is translated here, and only a range that lies wholly
 * inside one region is accepted.
 *
 * A split virtqueue of size N (a power of two) has three parts in guest
 * memory: the descriptor table (N × 16 bytes: address, length, flags, next),
 * the available ring (flags, idx, N heads), written by the driver, and the
 * used ring (flags, idx, N × {id, len}), written by us. The driver makes a
 * chain of descriptors, puts its head in the available ring and advances
 * avail.idx; we take chains in order from lastAvail, and give each back in
 * the used ring with the bytes we wrote into it, then advance used.idx (with
 * Atomics.store: the entries must be visible before the index) and, unless
 * the driver set VRING_AVAIL_F_NO_INTERRUPT, signal its call eventfd.
 *
 * The ring walker (chain) trusts nothing: a head or next index of N or more,
 * a chain longer than N descriptors (a loop), a descriptor outside every
 * region, one with the indirect flag (never offered), one whose direction is
 * wrong (a device-writable buffer on the transmit queue, a read-only one on
 * the receive queue), more than MAX_SEGS pieces, or an available index that
 * ran more than N ahead of us: each is a negative code (whyBad() says which);
 * the backend counts it and closes the connection. Only the values read
 * once are used, so a driver that changes a descriptor while we walk it
 * gets garbage in its own buffers, never an access outside its memory.
 */
/** Pieces of one chain we follow, at most (Linux sends 1-2 per frame, and merged receive buffers are 1 each). */
export const MAX_SEGS = 256;
const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;
export const AVAIL_F_NO_INTERRUPT = 1;

/** Why a ring cannot be trusted (negative results of chain() and available()). */
export const BAD_HEAD = -2;
export const BAD_NEXT = -3;
export const BAD_LOOP = -4;
export const BAD_ADDR = -5;
export const BAD_DIRECTION = -6;
export const BAD_INDIRECT = -7;
export const BAD_SEGS = -8;
export const BAD_AVAIL_IDX = -9;

export function whyBad(code: number): string {
  switch (code) {
    case BAD_HEAD:
      return "chain head beyond the ring";
    case BAD_NEXT:
      return "descriptor's next beyond the ring";
    case BAD_LOOP:
      return "descriptor chain longer than the ring (a loop)";
    case BAD_ADDR:
      return "descriptor outside the memory table";
    case BAD_DIRECTION:
      return "descriptor of the wrong direction for its queue";
    case BAD_INDIRECT:
      return "indirect descriptor (not negotiated)";
    case BAD_SEGS:
      return `chain of more than ${MAX_SEGS} pieces`;
    case BAD_AVAIL_IDX:
      return "available index more than the ring size ahead";
  }
  return `error ${code}`;
}

/**
 * Views of guest memory at most: a JavaScript view spans at most 4 GiB, so
 * a larger region is seen through several (VIEW_STEP apart, see
 * src/tap/vhost-user.ts).
 */
export const MAX_VIEWS = 64;
/** A region's views start every VIEW_STEP bytes and reach VIEW_OVERLAP bytes into the next (a frame is at most 64 KiB). */
export const VIEW_STEP = 2 ** 31;
export const VIEW_OVERLAP = 1 << 20;

/** The memory table: one view per region, or several for a region larger than a view may be. */
export class GuestMemory {
  n = 0;
  readonly gpa = new Float64Array(MAX_VIEWS);
  readonly size = new Float64Array(MAX_VIEWS);
  /** Where the front-end has each view's memory in its own address space (ring addresses use these). */
  readonly uaddr = new Float64Array(MAX_VIEWS);
  /** Our address of each view's first byte (for shim_copy); 0 in tests that never copy. */
  readonly host = new Float64Array(MAX_VIEWS);
  readonly u8: Uint8Array[] = [];
  readonly u16: Uint16Array[] = [];
  /**
   * The rings are read and written through these and u16, not DataViews:
   * JavaScriptCore does not compile a DataView's get and set inline here, and
   * each one cost 25-45 ns (a descriptor's five fields: 100 ns; the typed
   * arrays: 12 ns). Typed arrays use the host's byte order and virtio 1.x
   * rings are little-endian, as every host Bun runs on is.
   */
  readonly u32: Uint32Array[] = [];

  /** Add a region whose bytes are view (view.byteOffset a multiple of 4, its length the region's size). */
  add(gpa: number, uaddr: number, view: Uint8Array, host: number): void {
    const i = this.n++;
    this.gpa[i] = gpa;
    this.size[i] = view.length;
    this.uaddr[i] = uaddr;
    this.host[i] = host;
    this.u8[i] = view;
    this.u16[i] = new Uint16Array(view.buffer, view.byteOffset, view.length >>> 1);
    this.u32[i] = new Uint32Array(view.buffer, view.byteOffset, view.length >>> 2);
  }

  /**
   * Add a region of size bytes through views of at most step + overlap
   * bytes, one every step bytes; viewAt(offset, length) makes each, host is
   * our address of the region's first byte. False when that would pass
   * MAX_VIEWS.
   */
  addRegion(
    gpa: number,
    uaddr: number,
    size: number,
    host: number,
    viewAt: (offset: number, length: number) => Uint8Array,
    step = VIEW_STEP,
    overlap = VIEW_OVERLAP,
  ): boolean {
    for (let at = 0; at < size; at += step) {
      if (this.n === MAX_VIEWS) return false;
      this.add(gpa + at, uaddr + at, viewAt(at, Math.min(step + overlap, size - at)), host + at);
    }
    return true;
  }

  /** Forget every region (the caller unmaps them). */
  clear(): void {
    this.n = 0;
    this.u8.length = this.u16.length = this.u32.length = 0;
  }

  /** The region holding guest physical [addr, addr+len) whole, or -1. */
  regionOfGpa(addr: number, len: number): number {
    for (let i = 0; i < this.n; i++) {
      const o = addr - this.gpa[i]!;
      if (o >= 0 && o + len <= this.size[i]!) return i;
    }
    return -1;
  }

  /** The region holding front-end address [addr, addr+len) whole, or -1. */
  regionOfUaddr(addr: number, len: number): number {
    for (let i = 0; i < this.n; i++) {
      const o = addr - this.uaddr[i]!;
      if (o >= 0 && o + len <= this.size[i]!) return i;
    }
    return -1;
  }
}

/** Pieces of chains: region and offset of each, its length; written by chain(). */
export class Segs {
  n = 0;
  readonly region = new Uint8Array(MAX_SEGS);
  readonly off = new Float64Array(MAX_SEGS);
  readonly len = new Uint32Array(MAX_SEGS);
}

/** One split virtqueue's place in guest memory and our position in it. */
export class Virtq {
  /** Ring size (SET_VRING_NUM); 0 until set. */
  num = 0;
  /** Region and offset of the descriptor table, available and used rings; region -1 until placed. */
  descR = -1;
  descO = 0;
  availR = -1;
  availO = 0;
  usedR = -1;
  usedO = 0;
  /** Next available entry we take, and the next used entry we write (both modulo 2^16). */
  lastAvail = 0;
  usedIdx = 0;
  /** Front-end addresses of the rings (SET_VRING_ADDR), kept to place them again after a new memory table. */
  descAddr = 0;
  availAddr = 0;
  usedAddr = 0;
  addrSet = false;

  /**
   * Find the three rings of the addresses given in memory: false when one of
   * them is not wholly inside a region, or not aligned in it as virtio asks
   * (descriptors 16 bytes, used ring 4, available ring 2: a region whose
   * front-end address is odd can misalign rings whose own addresses are
   * not), or the size is not set yet.
   */
  place(mem: GuestMemory): boolean {
    this.descR = this.availR = this.usedR = -1;
    if (!this.addrSet || this.num === 0) return false;
    const d = mem.regionOfUaddr(this.descAddr, 16 * this.num);
    const a = mem.regionOfUaddr(this.availAddr, 6 + 2 * this.num);
    const u = mem.regionOfUaddr(this.usedAddr, 6 + 8 * this.num);
    if (d < 0 || a < 0 || u < 0) return false;
    const descO = this.descAddr - mem.uaddr[d]!;
    const availO = this.availAddr - mem.uaddr[a]!;
    const usedO = this.usedAddr - mem.uaddr[u]!;
    if (descO % 16 !== 0 || availO % 2 !== 0 || usedO % 4 !== 0) return false;
    this.descR = d;
    this.descO = descO;
    this.availR = a;
    this.availO = availO;
    this.usedR = u;
    this.usedO = usedO;
    return true;
  }

  get placed(): boolean {
    return this.descR >= 0;
  }

  /** The used index the driver last saw from us (after a new SET_VRING_ADDR). */
  readUsedIdx(mem: GuestMemory): void {
    this.usedIdx = mem.u16[this.usedR]![(this.usedO + 2) >>> 1]!;
  }

  /** Chains the driver made available past lastAvail, or BAD_AVAIL_IDX. */
  available(mem: GuestMemory): number {
    const idx = Atomics.load(mem.u16[this.availR]!, (this.availO + 2) >>> 1);
    const n = (idx - this.lastAvail) & 0xffff;
    return n > this.num ? BAD_AVAIL_IDX : n;
  }

  /**
   * Walk the chain in available entry lastAvail + ahead, appending its pieces
   * to segs (writable: the receive queue's device-writable buffers, else the
   * transmit queue's read-only ones). Returns its head (the id for the used
   * ring), or a BAD_ code. Zero-length descriptors are skipped.
   */
  chain(mem: GuestMemory, ahead: number, writable: boolean, segs: Segs): number {
    const num = this.num;
    const head = mem.u16[this.availR]![((this.availO + 4) >>> 1) + ((this.lastAvail + ahead) & (num - 1))]!;
    if (head >= num) return BAD_HEAD;
    const u32 = mem.u32[this.descR]!;
    const u16 = mem.u16[this.descR]!;
    let i = head;
    for (let count = 0; ; count++) {
      if (count >= num) return BAD_LOOP;
      // descriptor i in 32-bit words (place() checked the table's 16-byte alignment): address, length, flags and next
      const d = (this.descO >>> 2) + 4 * i;
      const lo = u32[d]!;
      const hi = u32[d + 1]!;
      const len = u32[d + 2]!;
      const flags = u16[2 * d + 6]!;
      const next = u16[2 * d + 7]!;
      if (flags & DESC_F_INDIRECT) return BAD_INDIRECT;
      if (((flags & DESC_F_WRITE) !== 0) !== writable) return BAD_DIRECTION;
      if (len > 0) {
        if (hi >= 1 << 21) return BAD_ADDR;
        const addr = hi * 2 ** 32 + lo;
        const r = mem.regionOfGpa(addr, len);
        if (r < 0) return BAD_ADDR;
        if (segs.n >= MAX_SEGS) return BAD_SEGS;
        segs.region[segs.n] = r;
        segs.off[segs.n] = addr - mem.gpa[r]!;
        segs.len[segs.n] = len;
        segs.n++;
      }
      if (!(flags & DESC_F_NEXT)) return head;
      if (next >= num) return BAD_NEXT;
      i = next;
    }
  }

  /** Give chain id back in the next used entry, with len bytes written into it (published by publish()). */
  pushUsed(mem: GuestMemory, id: number, len: number): void {
    const u32 = mem.u32[this.usedR]!;
    // the used element in 32-bit words (place() checked the ring's 4-byte alignment): id, length
    const e = ((this.usedO + 4) >>> 2) + 2 * (this.usedIdx & (this.num - 1));
    u32[e] = id;
    u32[e + 1] = len;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /** Make the used entries written so far visible to the driver. */
  publish(mem: GuestMemory): void {
    Atomics.store(mem.u16[this.usedR]!, (this.usedO + 2) >>> 1, this.usedIdx);
  }

  /** True unless the driver asked not to be interrupted for used buffers. */
  wantsInterrupt(mem: GuestMemory): boolean {
    return (mem.u16[this.availR]![this.availO >>> 1]! & AVAIL_F_NO_INTERRUPT) === 0;
  }
}
