/**
 * Listening TCP ports through sock_diag (src/fwd/sockdiag.ts): the request
 * it sends, the ports it reads back from crafted replies, and a real dump of
 * this process's namespace that finds a listener made here on 127.0.0.1 and
 * ::1 (and leaves it out when it is ours).
 */
import { describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { sys } from "../../src/native/ffi.ts";
import { listenRequest, markPorts, openSockDiag, tcpListening } from "../../src/fwd/sockdiag.ts";

const bitmap = () => new Uint8Array(8192);
const has = (m: Uint8Array, p: number) => (m[p >> 3]! & (1 << (p & 7))) !== 0;
const set = (m: Uint8Array, p: number) => {
  m[p >> 3]! |= 1 << (p & 7);
};

/** A reply message: netlink header, then inet_diag_msg with source port sport. */
function reply(sport: number): Uint8Array {
  const m = new Uint8Array(16 + 72);
  new DataView(m.buffer).setUint32(0, m.length, true);
  m[16] = 2;
  m[17] = 10;
  m[20] = sport >> 8;
  m[21] = sport & 255;
  return m;
}

function listen(host: string): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

describe("sock_diag", () => {
  test("the request: SOCK_DIAG_BY_FAMILY dump, TCP, the LISTEN state only", () => {
    const r = listenRequest(10, 7);
    const dv = new DataView(r.buffer);
    expect(r.length).toBe(72);
    expect(dv.getUint32(0, true)).toBe(72);
    expect(dv.getUint16(4, true)).toBe(20);
    expect(dv.getUint16(6, true)).toBe(0x301);
    expect(dv.getUint32(8, true)).toBe(7);
    expect([r[16], r[17]]).toEqual([10, 6]);
    expect(dv.getUint32(20, true)).toBe(1 << 10);
  });

  test("ports from replies, big-endian, ours left out", () => {
    const found = bitmap();
    const ours = bitmap();
    set(ours, 8080);
    markPorts([reply(22), reply(0x1f90), reply(65535), reply(8080)], ours, found);
    expect([22, 8080, 8081, 65535, 0x901f].map((p) => has(found, p))).toEqual([true, false, false, true, false]);
  });

  test("a real dump finds listeners on 127.0.0.1 and ::1", async () => {
    const fd = openSockDiag(sys, -1);
    expect(fd).toBeGreaterThanOrEqual(0);
    const a = await listen("127.0.0.1");
    const b = await listen("::1");
    try {
      const found = bitmap();
      expect(tcpListening(sys, fd, bitmap(), found)).toBe(true);
      expect(has(found, a.port)).toBe(true);
      expect(has(found, b.port)).toBe(true);
      const ours = bitmap();
      set(ours, a.port);
      const again = bitmap();
      expect(tcpListening(sys, fd, ours, again)).toBe(true);
      expect(has(again, a.port)).toBe(false);
      expect(has(again, b.port)).toBe(true);
    } finally {
      a.server.close();
      b.server.close();
      sys.shim_close(fd);
    }
  });
});
