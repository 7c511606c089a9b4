/**
 * The /proc/net scanner of automatic port forwarding (src/fwd/forward.ts,
 * listeningPorts): listening ports found in files as the kernel writes them,
 * read in chunks (lines cut at chunk edges), others' states ignored, our
 * own ports left out.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listeningPorts } from "../../src/fwd/forward.ts";
import { bitGet } from "../../src/fwd/ports.ts";

const dir = mkdtempSync(join(tmpdir(), "procnet-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEAD4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
const line4 = (sl: number, port: number, st: string) =>
  `${String(sl).padStart(4)}: 0100007F:${port.toString(16).toUpperCase().padStart(4, "0")} 0100007F:A2C4 ${st} 00000000:00000000 00:00000000 00000000     0        0 ${1000 + sl} 1 0000000000000000 100 0 0 10 0\n`;
const line6 = (sl: number, port: number, st: string) =>
  `${String(sl).padStart(4)}: 00000000000000000000000000000000:${port.toString(16).toUpperCase().padStart(4, "0")} 00000000000000000000000000000000:0000 ${st} 00000000:00000000 00:00000000 00000000     0        0 ${2000 + sl} 1 0000000000000000 100 0 0 10 0\n`;

function setBits(ports: number[]): Uint8Array {
  const b = new Uint8Array(8192);
  for (const p of ports) b[p >> 3]! |= 1 << (p & 7);
  return b;
}

function portsIn(bits: Uint8Array): number[] {
  const out: number[] = [];
  for (let p = 1; p < 65536; p++) if (bitGet(bits, p)) out.push(p);
  return out;
}

test("listening ports among thousands of other lines, across chunk edges, minus ours", () => {
  // about 200 KiB: TIME_WAIT (06) and ESTABLISHED (01) lines with listeners spread through
  let tcp = HEAD4;
  const listen = [22, 8080, 5201, 65535];
  for (let i = 0; i < 1500; i++) {
    tcp += line4(i, 30000 + (i % 1000), i % 2 ? "06" : "01");
    if (i % 400 === 7) tcp += line4(i, listen[(i - 7) / 400]!, "0A");
    // one listener across the edge of the first 64 KiB read: a filler line
    // (padded with spaces) ends 30 bytes before the edge
    const need = 65536 - 30 - tcp.length;
    if (need > 0 && need < 300) {
      const filler = line4(i, 31000, "06");
      tcp += filler.slice(0, -1).padEnd(need - 1, " ") + "\n" + line4(i, 7777, "0A");
    }
  }
  expect(tcp.indexOf(":1E61 ")).toBeLessThan(65536);
  expect(tcp.indexOf("\n", tcp.indexOf(":1E61 "))).toBeGreaterThan(65536);
  writeFileSync(join(dir, "tcp"), tcp);
  writeFileSync(join(dir, "tcp6"), HEAD4 + line6(0, 443, "0A") + line6(1, 9999, "06"));
  expect(tcp.length).toBeGreaterThan(2 * 65536);
  const found = listeningPorts(dir, "tcp", setBits([8080]), new Uint8Array(8192).fill(255));
  expect(portsIn(found)).toEqual([22, 443, 5201, 7777, 65535]);
});

test("UDP: bound (07) sockets only; a missing file is no port", () => {
  writeFileSync(join(dir, "udp"), HEAD4 + line4(0, 53, "07") + line4(1, 123, "01"));
  const found = listeningPorts(dir, "udp", new Uint8Array(8192), new Uint8Array(8192));
  expect(portsIn(found)).toEqual([53]);
  expect(portsIn(listeningPorts(join(dir, "nowhere"), "udp", new Uint8Array(8192), new Uint8Array(8192)))).toEqual([]);
});
