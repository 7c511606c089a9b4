/**
 * --trace's line per frame (src/wire/describe.ts), on captured frames and on
 * every truncation of them; --log-size's limit on the log file (src/log.ts).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeFrame } from "../../src/wire/describe.ts";
import { log, setLogFile, setLogLevel } from "../../src/log.ts";
import { ARP_REQ, ICMP4_ECHO_REQ, ICMP6_ECHO_REQ, NS, TCP4_DATA, TCP4_SYN, UDP4 } from "./wire-fixtures.ts";

const all = { ARP_REQ, ICMP4_ECHO_REQ, ICMP6_ECHO_REQ, NS, TCP4_DATA, TCP4_SYN, UDP4 };

test("captured frames: protocol, addresses, ports, TCP flags", () => {
  expect(describeFrame(TCP4_SYN, 0, TCP4_SYN.length)).toMatch(
    /^\d+ bytes, IPv4 TCP [\d.]+:\d+ > [\d.]+:\d+ \[S\] seq \d+ ack \d+ win \d+ len 0$/,
  );
  expect(describeFrame(TCP4_DATA, 0, TCP4_DATA.length)).toMatch(/IPv4 TCP .* \[[A-Z]*A[A-Z]*\] .* len [1-9]\d*$/);
  expect(describeFrame(UDP4, 0, UDP4.length)).toMatch(/IPv4 UDP [\d.]+:\d+ > [\d.]+:\d+ len \d+$/);
  expect(describeFrame(ICMP4_ECHO_REQ, 0, ICMP4_ECHO_REQ.length)).toContain("IPv4 ICMP type 8 code 0");
  expect(describeFrame(ICMP6_ECHO_REQ, 0, ICMP6_ECHO_REQ.length)).toContain("IPv6 ICMPv6 type 128 code 0");
  expect(describeFrame(NS, 0, NS.length)).toContain("ICMPv6 type 135");
  expect(describeFrame(ARP_REQ, 0, ARP_REQ.length)).toMatch(/^\d+ bytes, ARP request [\d.]+ tell [\d.]+$/);
});

test("every truncation of every frame gives a line, never an exception or a read past len", () => {
  for (const [name, frame] of Object.entries(all)) {
    for (let len = 0; len <= frame.length; len++) {
      // the bytes after len differ between the two buffers: a description must not depend on them
      const lines = [0xee, 0x11].map((poison) => {
        const b = new Uint8Array(frame.length + 64).fill(poison);
        b.set(frame.subarray(0, len), 8);
        return describeFrame(b, 8, len);
      });
      expect(lines[0], `${name} at ${len}`).toStartWith(`${len} bytes`);
      expect(lines[0], `${name} at ${len}`).toBe(lines[1]!);
    }
  }
});

const dir = mkdtempSync(join(tmpdir(), "log-size-"));
afterAll(() => {
  setLogFile(null);
  setLogLevel("info");
  rmSync(dir, { recursive: true, force: true });
});

test("--log-size: the file never passes the limit, keeps the newest lines whole, drops the oldest", () => {
  const path = join(dir, "pasta.log");
  writeFileSync(path, "an older line\n");
  const limit = 40960;
  setLogLevel("info");
  setLogFile(path, limit);
  for (let i = 0; i < 3000; i++) {
    log.info(`line ${i} ${"x".repeat(i % 50)}`);
    expect(statSync(path).size).toBeLessThanOrEqual(limit);
  }
  setLogFile(null);
  const text = readFileSync(path, "utf8");
  const lines = text.split("\n");
  expect(lines.at(-1)).toBe("");
  expect(lines.at(-2)).toStartWith("line 2999 ");
  expect(lines[0]).toMatch(/^line \d+ x*$/);
  expect(text).not.toContain("an older line");
  const numbers = lines.slice(0, -1).map((l) => Number(l.split(" ")[1]));
  for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBe(numbers[i - 1]! + 1);
  expect(text.length).toBeGreaterThan(limit * 0.5);
});
