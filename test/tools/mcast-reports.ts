#!/usr/bin/env bun
/**
 * A guest that floods its querier with group membership reports, through a
 * raw socket (AF_PACKET) on an interface of the namespace we run in: IGMPv3
 * reports for --groups distinct groups (239.200.0.0 upwards, 100 records a
 * report), then --bad malformed messages of each kind:
 *   - badChecksum: an IGMPv3 report with its checksum off by one;
 *   - malformed: an IGMPv3 report whose record count, source count or aux
 *     length runs past the message, and a 4-byte IGMP message;
 *     MLDv2 reports whose source lists run past the message;
 *   - notGroup: IGMPv2 reports and MLDv2 records for unicast addresses.
 * Every malformed kind is sent --bad times; the counts per kind are printed
 * as one JSON line, for the test to compare with our counters.
 * --include GROUP:SRC,SRC,... first sends one IGMPv3 report with a
 * CHANGE_TO_INCLUDE record: GROUP from those sources only (as many as given,
 * which a kernel's own sockets could not ask for beyond igmp_max_msf).
 *
 *   nsenter -n -t GUESTPID -- bun test/tools/mcast-reports.ts --if eth0 --groups 3000 --bad 10 --src4 192.0.2.2
 */
import { sys } from "../../src/native/ffi.ts";
import { wr16, wr32 } from "../../src/wire/bytes.ts";
import { checksum, csum, csumFold } from "../../src/wire/checksum.ts";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}

const ifname = arg("if", "eth0");
const groups = Number(arg("groups", "3000"));
const bad = Number(arg("bad", "10"));
const src4 = arg("src4", "192.0.2.2").split(".").map(Number);
const include = arg("include", "");
const RECORDS = 100;

const AF_PACKET = 17;
const SOCK_RAW = 3;

function linkInfo(name: string): { index: number; mac: number[] } {
  const r = Bun.spawnSync(["ip", "-j", "link", "show", "dev", name], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip link show ${name}: ${r.stderr.toString()}`);
  const l = JSON.parse(r.stdout.toString())[0];
  return {
    index: l.ifindex,
    mac: String(l.address)
      .split(":")
      .map((x) => parseInt(x, 16)),
  };
}

const link = linkInfo(ifname);
const fd = sys.shim_socket(AF_PACKET, SOCK_RAW, 0);
if (fd < 0) throw new Error(`AF_PACKET socket: errno ${-fd}`);
const sll = new Uint8Array(20);
new DataView(sll.buffer).setUint16(0, AF_PACKET, true);
new DataView(sll.buffer).setInt32(4, link.index, true);
if (sys.shim_bind(fd, sll, sll.length) < 0) throw new Error("bind AF_PACKET");

const buf = new Uint8Array(2048);
let sent = 0;

function send(len: number): void {
  for (let tries = 0; tries < 100; tries++) {
    if (sys.shim_send(fd, buf, len, 0) === len) {
      sent++;
      return;
    }
    Bun.sleepSync(2);
  }
  throw new Error("send failed");
}

/** Ethernet + IPv4 (with Router Alert) to 224.0.0.22 around an IGMP message of n bytes written at 38; returns the frame length. */
function ipv4Frame(n: number, fixChecksum = true): number {
  buf.set([0x01, 0x00, 0x5e, 0, 0, 0x16, ...link.mac, 0x08, 0x00], 0);
  const ip = 14;
  buf.fill(0, ip, ip + 24);
  buf[ip] = 0x46;
  buf[ip + 1] = 0xc0;
  wr16(buf, ip + 2, 24 + n);
  buf[ip + 8] = 1;
  buf[ip + 9] = 2;
  buf.set(src4, ip + 12);
  buf.set([224, 0, 0, 22], ip + 16);
  wr32(buf, ip + 20, 0x94040000);
  wr16(buf, ip + 10, checksum(buf, ip, 24));
  if (fixChecksum) {
    wr16(buf, 38 + 2, 0);
    wr16(buf, 38 + 2, checksum(buf, 38, n));
  }
  return 14 + 24 + n;
}

/** An IGMPv3 report at 38 of count CHANGE_TO_EXCLUDE records for groups first..; its length. */
function v3Report(first: number, count: number): number {
  const o = 38;
  buf.fill(0, o, o + 8);
  buf[o] = 0x22;
  wr16(buf, o + 6, count);
  for (let k = 0; k < count; k++) {
    const r = o + 8 + k * 8;
    const g = first + k;
    buf.set([4, 0, 0, 0, 239, 200 + (g >> 16), (g >> 8) & 255, g & 255], r);
  }
  return 8 + count * 8;
}

/** Ethernet + IPv6 + hop-by-hop (Router Alert) to ff02::16 around an MLDv2 report of n bytes at 62, checksummed. */
function ipv6Frame(n: number): number {
  buf.set([0x33, 0x33, 0, 0, 0, 0x16, ...link.mac, 0x86, 0xdd], 0);
  const ip = 14;
  buf.fill(0, ip, ip + 48);
  buf[ip] = 0x60;
  wr16(buf, ip + 4, 8 + n);
  buf[ip + 6] = 0;
  buf[ip + 7] = 1;
  buf.set([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99], ip + 8);
  buf.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16], ip + 24);
  buf.set([58, 0, 5, 2, 0, 0, 1, 0], ip + 40);
  const l4 = 62;
  wr16(buf, l4 + 2, 0);
  const sum = csum(buf, ip + 8, 32, 0) + 58 + n;
  wr16(buf, l4 + 2, csumFold(csum(buf, l4, n, sum)));
  return 62 + n;
}

/** An MLDv2 report at 62 with one record for group (16 bytes) claiming nsrc sources, holding none; its length. */
function mldReport(group: number[], nsrc: number): number {
  const o = 62;
  buf.fill(0, o, o + 28);
  buf[o] = 143;
  wr16(buf, o + 6, 1);
  buf[o + 8] = 4;
  wr16(buf, o + 10, nsrc);
  buf.set(group, o + 12);
  return 28;
}

/** An IGMPv3 report at 38 with one CHANGE_TO_INCLUDE record: group from sources; its length. */
function includeReport(group: number[], sources: number[][]): number {
  const o = 38;
  buf.fill(0, o, o + 16 + 4 * sources.length);
  buf[o] = 0x22;
  wr16(buf, o + 6, 1);
  buf[o + 8] = 3;
  wr16(buf, o + 10, sources.length);
  buf.set(group, o + 12);
  for (let i = 0; i < sources.length; i++) buf.set(sources[i]!, o + 16 + 4 * i);
  return 16 + 4 * sources.length;
}

const counts = { reports: 0, malformed: 0, badChecksum: 0, notGroup: 0 };

if (include) {
  const [group, list] = include.split(":");
  const quad = (a: string) => a.split(".").map(Number);
  send(ipv4Frame(includeReport(quad(group!), list!.split(",").map(quad))));
  counts.reports++;
}

for (let g = 0; g < groups; g += RECORDS) {
  send(ipv4Frame(v3Report(g, Math.min(RECORDS, groups - g))));
  counts.reports++;
}
const ff15 = [0xff, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, 0x77];
for (let i = 0; i < bad; i++) {
  // checksum off by one
  const n = v3Report(900_000, 2);
  ipv4Frame(n);
  buf[38 + 3]! ^= 1;
  send(14 + 24 + n);
  counts.badChecksum++;
  // record count past the end
  v3Report(900_000, 2);
  wr16(buf, 38 + 6, 3);
  send(ipv4Frame(8 + 16));
  // source count past the end
  v3Report(900_000, 2);
  wr16(buf, 38 + 8 + 2, 40);
  send(ipv4Frame(8 + 16));
  // aux length past the end
  v3Report(900_000, 2);
  buf[38 + 8 + 1] = 30;
  send(ipv4Frame(8 + 16));
  // shorter than any IGMP message
  buf.fill(0, 38, 42);
  buf[38] = 0x16;
  send(ipv4Frame(4));
  // MLDv2 source list past the end
  send(ipv6Frame(mldReport(ff15, 3)));
  counts.malformed += 5;
  // not multicast: an IGMPv2 report for a unicast address, an MLDv2 record for a global one
  buf.fill(0, 38, 46);
  buf[38] = 0x16;
  buf.set([192, 0, 2, 77], 42);
  send(ipv4Frame(8));
  send(ipv6Frame(mldReport([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, 0x77], 0)));
  counts.notGroup += 2;
}
sys.shim_close(fd);
console.log(JSON.stringify({ sent, ...counts }));
