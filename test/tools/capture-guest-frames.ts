#!/usr/bin/env bun
/**
 * Regenerate test/tools/guest-frames.ts: frames a real guest sends, captured
 * with pasta's own -p in a test world (root, needs namespaces):
 * dhclient -4, SLAAC (router and neighbour solicitations), dhclient -6, ping,
 * ping -6, ARP, and a short TCP and UDP exchange over IPv4 and IPv6 with
 * socat servers on the world's remote addresses.
 *
 *   bun test/tools/capture-guest-frames.ts [OUTPUT]   (default: guest-frames.ts next to this file)
 *
 * Only frames from the guest (source MAC not pasta's) are kept, one of each
 * kind (first seen), as hex.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, HOST_IF, createWorld } from "../world.ts";
import { prepareDhclient } from "./dhclient.ts";
import { clientScript, record, runPasta } from "./pasta.ts";

const OUR_MAC = "9a559a559a55";
const TCP_PORT = 7777;
const UDP_PORT = 7778;

/** Frames of a little-endian pcap file. */
function pcapFrames(file: Uint8Array): Uint8Array[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (v.getUint32(0, true) !== 0xa1b2c3d4) throw new Error("not a little-endian microsecond pcap");
  const out: Uint8Array[] = [];
  for (let o = 24; o + 16 <= file.length; ) {
    const incl = v.getUint32(o + 8, true);
    out.push(file.slice(o + 16, o + 16 + incl));
    o += 16 + incl;
  }
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** A name for the kind of a guest frame, or null for kinds not kept. */
function kindOf(f: Uint8Array): string | null {
  const et = (f[12]! << 8) | f[13]!;
  if (et === 0x0806) return `ARP_${f[21] === 1 ? "REQUEST" : "REPLY"}`;
  if (et === 0x0800) {
    const ihl = (f[14]! & 15) * 4;
    const p = f[23]!;
    const l4 = 14 + ihl;
    if (p === 1) return `ICMP4_TYPE${f[l4]}`;
    const dport = (f[l4 + 2]! << 8) | f[l4 + 3]!;
    if (p === 17 && dport === 67) return `DHCP4_TYPE${dhcpType(f, l4 + 8)}`;
    if (p === 17) return `UDP4_${dport === UDP_PORT ? "DATA" : dport}`;
    if (p === 6) return `TCP4_${tcpFlags(f[l4 + 13]!)}${f.length > l4 + (f[l4 + 12]! >> 4) * 4 ? "_DATA" : ""}`;
    return `IP4_PROTO${p}`;
  }
  if (et === 0x86dd) {
    let nh = f[20]!;
    let o = 54;
    while (nh === 0 || nh === 43 || nh === 60) {
      nh = f[o]!;
      o += (f[o + 1]! + 1) * 8;
    }
    if (nh === 58) return `ICMP6_TYPE${f[o]}`;
    const dport = (f[o + 2]! << 8) | f[o + 3]!;
    if (nh === 17 && dport === 547) return `DHCP6_TYPE${f[o + 8]}`;
    if (nh === 17) return `UDP6_${dport === UDP_PORT ? "DATA" : dport}`;
    if (nh === 6) return `TCP6_${tcpFlags(f[o + 13]!)}${f.length > o + (f[o + 12]! >> 4) * 4 ? "_DATA" : ""}`;
    return `IP6_NH${nh}`;
  }
  return null;
}

function tcpFlags(fl: number): string {
  const n: string[] = [];
  if (fl & 2) n.push("SYN");
  if (fl & 1) n.push("FIN");
  if (fl & 4) n.push("RST");
  if (fl & 8) n.push("PSH");
  if (fl & 16) n.push("ACK");
  return n.join("");
}

/** DHCP message type (option 53) of the BOOTP message at o. */
function dhcpType(f: Uint8Array, o: number): number {
  for (let i = o + 240; i + 1 < f.length; ) {
    const c = f[i]!;
    if (c === 0) {
      i++;
      continue;
    }
    if (c === 255) break;
    if (c === 53) return f[i + 2]!;
    i += 2 + f[i + 1]!;
  }
  return 0;
}

const output = process.argv[2] ?? join(import.meta.dir, "guest-frames.ts");
const w = await createWorld();
const d4 = prepareDhclient(4, { iface: HOST_IF });
const d6 = prepareDhclient(6, { iface: HOST_IF });
try {
  for (const [v, a] of [
    ["4", ADDR.remote4],
    ["6", `[${ADDR.remote6}]`],
  ]) {
    w.spawn(w.upstream, ["socat", `TCP${v}-LISTEN:${TCP_PORT},bind=${a},reuseaddr,fork`, "SYSTEM:cat"]);
    w.spawn(w.upstream, ["socat", "-u", `UDP${v}-RECV:${UDP_PORT},bind=${a}`, "/dev/null"]);
  }
  await Bun.sleep(300);
  const pcap = join(w.dir, "guest.pcap");
  const script = [
    clientScript(HOST_IF, d4, d6),
    record("tcp4", `echo hello | timeout 5 socat - TCP:${ADDR.remote4}:${TCP_PORT}`),
    record("tcp6", `echo hello | timeout 5 socat - TCP:[${ADDR.remote6}]:${TCP_PORT}`),
    record("udp4", `echo hello | timeout 5 socat - UDP:${ADDR.remote4}:${UDP_PORT}`),
    record("udp6", `echo hello | timeout 5 socat - UDP:[${ADDR.remote6}]:${UDP_PORT}`),
  ].join("\n");
  const r = await runPasta(w, ["-p", pcap], script);
  if (r.code !== 0) throw new Error(r.dump());
  for (const t of ["tcp4", "tcp6", "udp4", "udp6"]) if (r.out(`${t}.rc`).trim() !== "0") throw new Error(`${t} failed:\n${r.dump()}`);
  const kept = new Map<string, Uint8Array>();
  for (const f of pcapFrames(readFileSync(pcap))) {
    if (hex(f.subarray(6, 12)) === OUR_MAC) continue;
    const k = kindOf(f);
    if (k && !kept.has(k)) kept.set(k, f);
  }
  const lines = [
    "/**",
    " * Frames a real guest sent (dhclient -4/-6, the kernel's SLAAC and",
    " * neighbour discovery, ping, socat over TCP and UDP), captured by pasta's -p",
    " * in a test world. Generated by test/tools/capture-guest-frames.ts: do not edit.",
    " */",
    'const h = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));',
    "",
    "export const GUEST_FRAMES: Record<string, Uint8Array> = {",
    ...[...kept].sort(([a], [b]) => a.localeCompare(b)).map(([k, f]) => `  ${k}: h("${hex(f)}"),`),
    "};",
    "",
  ];
  writeFileSync(output, lines.join("\n"));
  console.log(`${kept.size} frames: ${[...kept.keys()].sort().join(" ")}`);
} finally {
  d4.cleanup();
  d6.cleanup();
  await w.destroy();
}
