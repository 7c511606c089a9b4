/**
 * Hostile vhost-user front-ends, without a network: the message parser
 * (src/tap/vhost-msg.ts) and the split-virtqueue walker (src/tap/virtq.ts)
 * get well-formed input, each kind of bad input the issue names (loops,
 * descriptors outside the memory table, lengths past a region, absurd ring
 * sizes, wrong descriptor counts), and random and mutated bytes. Nothing may
 * throw; everything accepted must be inside the limits (a queue of the one
 * pair, a ring size that is a power of two, every piece of a chain inside its
 * region).
 */
import { describe, expect, test } from "bun:test";
import {
  FEATURES,
  HDR_LEN,
  MAX_PAYLOAD,
  MAX_QUEUE_SIZE,
  MAX_REGIONS,
  newMsg,
  parseHeader,
  parseMessage,
  Req,
  VRING_NOFD,
  w32,
  w64,
} from "../../src/tap/vhost-msg.ts";
import {
  BAD_ADDR,
  BAD_AVAIL_IDX,
  BAD_DIRECTION,
  BAD_HEAD,
  BAD_INDIRECT,
  BAD_LOOP,
  BAD_NEXT,
  GuestMemory,
  MAX_SEGS,
  Segs,
  Virtq,
} from "../../src/tap/virtq.ts";
import { rng } from "../tools/rng.ts";

/** A message: header and payload bytes. */
function message(req: number, payload: Uint8Array, flags = 1): Uint8Array {
  const b = new Uint8Array(HDR_LEN + payload.length);
  w32(b, 0, req);
  w32(b, 4, flags);
  w32(b, 8, payload.length);
  b.set(payload, HDR_LEN);
  return b;
}

function u64Payload(v: number): Uint8Array {
  const p = new Uint8Array(8);
  w64(p, 0, v);
  return p;
}

function statePayload(index: number, num: number): Uint8Array {
  const p = new Uint8Array(8);
  w32(p, 0, index);
  w32(p, 4, num);
  return p;
}

function memTablePayload(regions: { gpa: number; size: number; uaddr: number; off: number }[], n = regions.length): Uint8Array {
  const p = new Uint8Array(8 + 32 * regions.length);
  w32(p, 0, n);
  regions.forEach((r, i) => {
    w64(p, 8 + 32 * i, r.gpa);
    w64(p, 16 + 32 * i, r.size);
    w64(p, 24 + 32 * i, r.uaddr);
    w64(p, 32 + 32 * i, r.off);
  });
  return p;
}

/** Parse bytes as the backend does: the header, then the payload; null when accepted, else why not. */
function parse(b: Uint8Array, nfds: number): string | null {
  const m = newMsg();
  if (b.length < HDR_LEN) return "short";
  const size = parseHeader(b, 0, m);
  if (size < 0) return "payload too large";
  if (b.length < HDR_LEN + size) return "short";
  return parseMessage(b.subarray(0, HDR_LEN + size), HDR_LEN, nfds, m);
}

describe("vhost-user message parser", () => {
  test("well-formed messages are accepted and decoded", () => {
    const m = newMsg();
    const feat = message(Req.SET_FEATURES, u64Payload(FEATURES));
    expect(parseHeader(feat, 0, m)).toBe(8);
    expect(parseMessage(feat, HDR_LEN, 0, m)).toBeNull();
    expect(m.u64).toBe(FEATURES);

    const num = message(Req.SET_VRING_NUM, statePayload(1, 256));
    parseHeader(num, 0, m);
    expect(parseMessage(num, HDR_LEN, 0, m)).toBeNull();
    expect([m.index, m.num]).toEqual([1, 256]);

    const mem = message(Req.SET_MEM_TABLE, memTablePayload([{ gpa: 0, size: 0xa0000, uaddr: 0x7f0000000000, off: 0 }]));
    parseHeader(mem, 0, m);
    expect(parseMessage(mem, HDR_LEN, 1, m)).toBeNull();
    expect([m.nregions, m.regionSize[0], m.uaddr[0]]).toEqual([1, 0xa0000, 0x7f0000000000]);

    const kick = message(Req.SET_VRING_KICK, u64Payload(1));
    parseHeader(kick, 0, m);
    expect(parseMessage(kick, HDR_LEN, 1, m)).toBeNull();
    expect([m.index, m.nofd]).toEqual([1, false]);
    expect(parse(message(Req.SET_VRING_CALL, u64Payload(VRING_NOFD)), 0)).toBeNull();
    expect(parse(message(Req.GET_FEATURES, new Uint8Array(0)), 0)).toBeNull();
  });

  test("the wrong number of descriptors is refused", () => {
    const mem = message(Req.SET_MEM_TABLE, memTablePayload([{ gpa: 0, size: 4096, uaddr: 4096, off: 0 }]));
    expect(parse(mem, 0)).toContain("0 descriptors, expected 1");
    expect(parse(mem, 2)).toContain("2 descriptors, expected 1");
    expect(parse(message(Req.SET_VRING_KICK, u64Payload(0)), 0)).toContain("expected 1");
    expect(parse(message(Req.SET_VRING_CALL, u64Payload(VRING_NOFD)), 1)).toContain("expected 0");
    expect(parse(message(Req.GET_FEATURES, new Uint8Array(0)), 1)).toContain("expected 0");
  });

  test("absurd values are refused: ring sizes, queues, regions, features, versions, sizes, requests", () => {
    for (const n of [0, 3, 100, MAX_QUEUE_SIZE * 2, 0xffffffff])
      expect(parse(message(Req.SET_VRING_NUM, statePayload(0, n)), 0)).not.toBeNull();
    expect(parse(message(Req.SET_VRING_NUM, statePayload(2, 256)), 0)).toContain("queue 2");
    expect(parse(message(Req.SET_VRING_BASE, statePayload(0, 0x10000)), 0)).not.toBeNull();
    expect(parse(message(Req.SET_MEM_TABLE, memTablePayload([], 0)), 0)).toContain("0 regions");
    const nine = Array.from({ length: MAX_REGIONS + 1 }, (_, i) => ({ gpa: i << 20, size: 4096, uaddr: i << 20, off: 0 }));
    expect(parse(message(Req.SET_MEM_TABLE, memTablePayload(nine)), MAX_REGIONS)).not.toBeNull();
    expect(parse(message(Req.SET_MEM_TABLE, memTablePayload([{ gpa: 0, size: 0, uaddr: 0, off: 0 }])), 1)).toContain("empty");
    expect(parse(message(Req.SET_MEM_TABLE, memTablePayload([{ gpa: 2 ** 52, size: 2 ** 52, uaddr: 0, off: 0 }])), 1)).toContain("2^53");
    // a table that says 2 regions and carries 1
    expect(parse(message(Req.SET_MEM_TABLE, memTablePayload([{ gpa: 0, size: 4096, uaddr: 0, off: 0 }], 2)), 2)).toContain("payload");
    expect(parse(message(Req.SET_FEATURES, u64Payload(FEATURES + 2 ** 28)), 0)).toContain("did not offer");
    expect(parse(message(Req.SET_FEATURES, u64Payload(2 ** 15)), 0)).toContain("legacy");
    expect(parse(message(Req.GET_FEATURES, new Uint8Array(0), 2), 0)).toContain("version");
    expect(parse(message(Req.SET_VRING_NUM, new Uint8Array(4)), 0)).toContain("payload");
    expect(parse(message(99, new Uint8Array(0)), 0)).toContain("unknown");
    expect(parse(message(6, new Uint8Array(8)), 1)).toContain("unknown");
    const big = new Uint8Array(HDR_LEN);
    w32(big, 0, Req.SET_MEM_TABLE);
    w32(big, 4, 1);
    w32(big, 8, MAX_PAYLOAD + 1);
    expect(parseHeader(big, 0, newMsg())).toBe(-1);
    const addr = new Uint8Array(40);
    w64(addr, 8, 0x1008); // descriptor table not 16-aligned
    expect(parse(message(Req.SET_VRING_ADDR, addr), 0)).toContain("misaligned");
  });

  test("random and mutated messages never throw; what is accepted is within limits", () => {
    const next = rng(0x5eed);
    const seeds = [
      message(Req.SET_FEATURES, u64Payload(FEATURES)),
      message(Req.SET_VRING_NUM, statePayload(0, 256)),
      message(Req.SET_VRING_ADDR, new Uint8Array(40)),
      message(Req.SET_VRING_KICK, u64Payload(1)),
      message(Req.GET_VRING_BASE, statePayload(1, 0)),
      message(
        Req.SET_MEM_TABLE,
        memTablePayload([
          { gpa: 0, size: 0xa0000, uaddr: 0x7f00000000, off: 0 },
          { gpa: 0xc0000, size: 0xff40000, uaddr: 0x7f000c0000, off: 0xc0000 },
        ]),
      ),
    ];
    let accepted = 0;
    for (let i = 0; i < 200_000; i++) {
      let b: Uint8Array;
      if (i % 2 === 0) {
        b = new Uint8Array(HDR_LEN + (next() % (MAX_PAYLOAD + 8)));
        for (let j = 0; j < b.length; j++) b[j] = next() & 255;
        b[4] = (b[4]! & ~3) | 1;
        w32(b, 8, b.length - HDR_LEN);
        b[0] = next() % 20;
        b[1] = b[2] = b[3] = 0;
      } else {
        b = seeds[next() % seeds.length]!.slice();
        for (let k = next() % 4; k >= 0; k--) b[HDR_LEN + (next() % Math.max(1, b.length - HDR_LEN))] = next() & 255;
      }
      const m = newMsg();
      const nfds = next() % 10;
      const size = parseHeader(b, 0, m);
      if (size < 0 || b.length < HDR_LEN + size) continue;
      const why = parseMessage(b, HDR_LEN, nfds, m);
      if (why !== null) continue;
      accepted++;
      expect(nfds).toBeLessThanOrEqual(MAX_REGIONS);
      if (m.req === Req.SET_VRING_NUM) expect(m.num > 0 && m.num <= MAX_QUEUE_SIZE && (m.num & (m.num - 1)) === 0).toBe(true);
      if ([Req.SET_VRING_NUM, Req.SET_VRING_ADDR, Req.SET_VRING_KICK, Req.GET_VRING_BASE].includes(m.req as 8))
        expect(m.index).toBeLessThan(2);
      if (m.req === Req.SET_MEM_TABLE) {
        expect(m.nregions).toBe(nfds);
        for (let r = 0; r < m.nregions; r++)
          expect(m.regionSize[r]! > 0 && m.gpa[r]! + m.regionSize[r]! <= Number.MAX_SAFE_INTEGER).toBe(true);
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });
});

// ------------------------------------------------------------ rings

const NUM = 8;
/** Region 0: guest physical 0x10000, 64 KiB, holding the rings; region 1: 0x40000, 4 KiB of buffers. */
const R0 = { gpa: 0x10000, size: 0x10000, uaddr: 0x7f0000010000 };
const R1 = { gpa: 0x40000, size: 0x1000, uaddr: 0x7f0000040000 };
const DESC = 0x0;
const AVAIL = 0x1000;
const USED = 0x2000;

function world(): { mem: GuestMemory; q: Virtq; r0: DataView; segs: Segs } {
  const mem = new GuestMemory();
  const b0 = new Uint8Array(R0.size);
  mem.add(R0.gpa, R0.uaddr, b0, 0);
  mem.add(R1.gpa, R1.uaddr, new Uint8Array(R1.size), 0);
  const q = new Virtq();
  q.num = NUM;
  q.descAddr = R0.uaddr + DESC;
  q.availAddr = R0.uaddr + AVAIL;
  q.usedAddr = R0.uaddr + USED;
  q.addrSet = true;
  expect(q.place(mem)).toBe(true);
  return { mem, q, r0: new DataView(b0.buffer), segs: new Segs() };
}

function desc(r0: DataView, i: number, addr: number, len: number, flags: number, next: number): void {
  const d = DESC + 16 * i;
  r0.setUint32(d, addr % 2 ** 32, true);
  r0.setUint32(d + 4, Math.floor(addr / 2 ** 32), true);
  r0.setUint32(d + 8, len, true);
  r0.setUint16(d + 12, flags, true);
  r0.setUint16(d + 14, next, true);
}

/** Make head available in entry `slot`, and avail.idx = idx. */
function offer(r0: DataView, slot: number, head: number, idx: number): void {
  r0.setUint16(AVAIL + 4 + 2 * slot, head, true);
  r0.setUint16(AVAIL + 2, idx, true);
}

describe("split virtqueue walker", () => {
  test("a two-piece chain across regions is walked; the used ring gets it back", () => {
    const { mem, q, r0, segs } = world();
    desc(r0, 3, R0.gpa + 0x8000, 12, 1, 5);
    desc(r0, 5, R1.gpa + 0x100, 1500, 0, 0);
    offer(r0, 0, 3, 1);
    expect(q.available(mem)).toBe(1);
    expect(q.chain(mem, 0, false, segs)).toBe(3);
    expect(segs.n).toBe(2);
    expect([segs.region[0], segs.off[0], segs.len[0]]).toEqual([0, 0x8000, 12]);
    expect([segs.region[1], segs.off[1], segs.len[1]]).toEqual([1, 0x100, 1500]);
    q.pushUsed(mem, 3, 0);
    q.publish(mem);
    expect(r0.getUint16(USED + 2, true)).toBe(1);
    expect(r0.getUint32(USED + 4, true)).toBe(3);
  });

  test("each kind of bad ring is refused with its code", () => {
    const cases: [string, (r0: DataView) => void, boolean, number][] = [
      [
        "loop",
        (r0) => {
          desc(r0, 0, R1.gpa, 10, 1, 1);
          desc(r0, 1, R1.gpa, 10, 1, 0);
        },
        false,
        BAD_LOOP,
      ],
      ["self loop", (r0) => desc(r0, 0, R1.gpa, 10, 1, 0), false, BAD_LOOP],
      ["outside every region", (r0) => desc(r0, 0, 0x900000, 10, 0, 0), false, BAD_ADDR],
      ["length past its region", (r0) => desc(r0, 0, R1.gpa + 0xf00, 0x200, 0, 0), false, BAD_ADDR],
      ["address beyond 2^53", (r0) => desc(r0, 0, 2 ** 60, 10, 0, 0), false, BAD_ADDR],
      ["next beyond the ring", (r0) => desc(r0, 0, R1.gpa, 10, 1, NUM), false, BAD_NEXT],
      ["indirect", (r0) => desc(r0, 0, R1.gpa, 16, 4, 0), false, BAD_INDIRECT],
      ["writable on the transmit queue", (r0) => desc(r0, 0, R1.gpa, 10, 2, 0), false, BAD_DIRECTION],
      ["read-only on the receive queue", (r0) => desc(r0, 0, R1.gpa, 10, 0, 0), true, BAD_DIRECTION],
    ];
    for (const [name, make, writable, code] of cases) {
      const { mem, q, r0, segs } = world();
      make(r0);
      offer(r0, 0, 0, 1);
      expect([name, q.chain(mem, 0, writable, segs)]).toEqual([name, code]);
    }
    const { mem, q, r0, segs } = world();
    offer(r0, 0, NUM, 1);
    expect(q.chain(mem, 0, false, segs)).toBe(BAD_HEAD);
    offer(r0, 0, 0, NUM + 1);
    expect(q.available(mem)).toBe(BAD_AVAIL_IDX);
  });

  test("a region seen through several overlapping views: a buffer up to the overlap is found whole, a longer one across a boundary is refused", () => {
    const mem = new GuestMemory();
    const bytes = new Uint8Array(10000);
    const viewAt = (at: number, len: number) => bytes.subarray(at, at + len);
    expect(mem.addRegion(0x100000, 0x7f0000100000, 10000, 0, viewAt, 4096, 256)).toBe(true);
    expect(mem.n).toBe(3);
    expect([...mem.size.subarray(0, 3)]).toEqual([4352, 4352, 1808]);
    expect(mem.regionOfGpa(0x100000 + 4000, 300)).toBe(0);
    expect(mem.regionOfGpa(0x100000 + 4300, 200)).toBe(1);
    expect(mem.regionOfGpa(0x100000 + 4000, 1000)).toBe(-1);
    expect(mem.regionOfGpa(0x100000 + 9990, 20)).toBe(-1);
    expect(mem.regionOfUaddr(0x7f0000100000 + 8500, 100)).toBe(2);
    const full = new GuestMemory();
    expect(full.addRegion(0, 0, 100 * 4096, 0, viewAt, 4096, 0)).toBe(false);
  });

  test("rings outside the memory table are not placed", () => {
    const { mem, q } = world();
    q.usedAddr = R0.uaddr + R0.size - 8;
    expect(q.place(mem)).toBe(false);
    q.usedAddr = R0.uaddr + USED;
    q.num = 8192; // the descriptor table no longer fits region 0
    expect(q.place(mem)).toBe(false);
  });

  test("rings misaligned in their region (a region at an odd front-end address) are not placed", () => {
    const mem = new GuestMemory();
    // the rings' own addresses are aligned; the region's is not, so their offsets in it are not
    mem.add(R0.gpa, R0.uaddr + 2, new Uint8Array(R0.size), 0);
    const q = new Virtq();
    q.num = NUM;
    q.descAddr = R0.uaddr + 0x100;
    q.availAddr = R0.uaddr + 0x1000;
    q.usedAddr = R0.uaddr + 0x2000;
    q.addrSet = true;
    expect(q.place(mem)).toBe(false);
    mem.clear();
    mem.add(R0.gpa, R0.uaddr, new Uint8Array(R0.size), 0);
    expect(q.place(mem)).toBe(true);
  });

  test("random descriptor tables and rings never throw; every piece accepted lies inside its region", () => {
    const next = rng(0xc0ffee);
    const { mem, q, r0, segs } = world();
    const addrs = [R0.gpa, R0.gpa + R0.size - 1, R1.gpa, R1.gpa + R1.size - 16, 0, 2 ** 40, R1.gpa - 1];
    let walked = 0;
    for (let i = 0; i < 100_000; i++) {
      for (let d = 0; d < NUM; d++) {
        const addr = next() % 3 === 0 ? next() * 16 : addrs[next() % addrs.length]! + (next() % 64);
        desc(r0, d, addr, next() % 3 === 0 ? next() : next() % 2048, next() % 8, next() % 3 === 0 ? next() & 0xffff : next() % NUM);
      }
      for (let s = 0; s < NUM; s++) r0.setUint16(AVAIL + 4 + 2 * s, next() % 4 === 0 ? next() & 0xffff : next() % NUM, true);
      q.lastAvail = next() & 0xffff;
      r0.setUint16(AVAIL + 2, next() % 2 ? (q.lastAvail + (next() % (NUM + 1))) & 0xffff : next() & 0xffff, true);
      const n = q.available(mem);
      expect(n === BAD_AVAIL_IDX || (n >= 0 && n <= NUM)).toBe(true);
      if (n <= 0) continue;
      segs.n = 0;
      const id = q.chain(mem, next() % n, next() % 2 === 0, segs);
      if (id < 0) continue;
      walked++;
      expect(id).toBeLessThan(NUM);
      expect(segs.n).toBeLessThanOrEqual(Math.min(NUM, MAX_SEGS));
      for (let s = 0; s < segs.n; s++) expect(segs.off[s]! + segs.len[s]!).toBeLessThanOrEqual(mem.size[segs.region[s]!]!);
    }
    expect(walked).toBeGreaterThan(0);
  });
});
