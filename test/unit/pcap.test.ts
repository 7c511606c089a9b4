import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PCAP_SNAPLEN, PcapWriter } from "../../src/pcap.ts";
import { ARP_REQ, IP4_FRAG_FIRST, TCP4_SYN, UDP6 } from "./wire-fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "pcap-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run tcpdump -r on a file: its stdout lines. */
function tcpdumpRead(path: string): string[] {
  const r = Bun.spawnSync(["tcpdump", "-nn", "-r", path], { stderr: "pipe" });
  expect(r.exitCode).toBe(0);
  return r.stdout
    .toString()
    .trim()
    .split("\n")
    .filter((l) => l.length > 0);
}

/** A frame longer than the snap length: the IPv4 fragment's headers, then filler. */
function hugeFrame(len: number): Uint8Array {
  const b = new Uint8Array(len).fill(0x5a);
  b.set(IP4_FRAG_FIRST.subarray(0, 34));
  return b;
}

describe("PcapWriter", () => {
  test("tcpdump reads back every frame, decoded", () => {
    const path = join(dir, "a.pcap");
    const w = new PcapWriter(path);
    const big = new Uint8Array(3000);
    big.set(UDP6, 1000);
    w.write(ARP_REQ, 0, ARP_REQ.length);
    w.write(big, 1000, UDP6.length);
    w.write(TCP4_SYN, 0, TCP4_SYN.length);
    w.close();
    w.write(ARP_REQ, 0, ARP_REQ.length);
    const lines = tcpdumpRead(path);
    expect(lines.length).toBe(3);
    expect(lines[0]).toContain("Request who-has 10.77.0.2 tell 10.77.0.1");
    expect(lines[1]).toContain("fd77::2.5354: UDP, length 7");
    expect(lines[2]).toContain("10.77.0.2.8080: Flags [S]");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test("file header, timestamps, and truncation to the snap length", () => {
    const path = join(dir, "b.pcap");
    const before = Date.now() / 1000;
    const w = new PcapWriter(path);
    w.write(hugeFrame(65534), 0, 65534);
    w.write(hugeFrame(70000), 0, 70000);
    w.close();
    const f = readFileSync(path);
    const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
    expect(v.getUint32(0, true)).toBe(0xa1b2c3d4);
    expect([v.getUint16(4, true), v.getUint16(6, true)]).toEqual([2, 4]);
    expect(v.getUint32(16, true)).toBe(65535);
    expect(v.getUint32(20, true)).toBe(1);
    const sec = v.getUint32(24, true);
    expect(sec).toBeGreaterThanOrEqual(Math.floor(before));
    expect(sec).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(v.getUint32(28, true)).toBeLessThan(1_000_000);
    expect([v.getUint32(32, true), v.getUint32(36, true)]).toEqual([65534, 65534]);
    const second = 24 + 16 + 65534;
    expect([v.getUint32(second + 8, true), v.getUint32(second + 12, true)]).toEqual([PCAP_SNAPLEN, 70000]);
    expect(f.length).toBe(second + 16 + PCAP_SNAPLEN);
    expect(tcpdumpRead(path).length).toBe(2);
  });

  test("many frames across several buffer flushes, plus explicit flush", () => {
    const path = join(dir, "c.pcap");
    const w = new PcapWriter(path);
    w.write(ARP_REQ, 0, ARP_REQ.length);
    w.flush();
    expect(statSync(path).size).toBe(24 + 16 + ARP_REQ.length);
    const frame = hugeFrame(9000);
    for (let i = 0; i < 300; i++) w.write(frame, 0, frame.length);
    w.close();
    expect(statSync(path).size).toBe(24 + 16 + ARP_REQ.length + 300 * (16 + 9000));
    expect(tcpdumpRead(path).length).toBe(301);
  });
});
