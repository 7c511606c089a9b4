#!/usr/bin/env bun
/**
 * A tiny mDNS responder (RFC 6762) for the test world, in place of
 * avahi-daemon (which wants D-Bus and the machine's own files): it joins
 * 224.0.0.251 on the interface with address --if, listens on port 5353 and
 * answers A queries for --name with --addr.
 *
 * As RFC 6762 6.7 says: a query from port 5353 is answered by multicast to
 * 224.0.0.251:5353 (TTL 255); a query from any other port ("legacy unicast",
 * e.g. dig) by unicast to its sender, with the query's ID and question.
 *
 *   bun test/tools/mdns-responder.ts --if 192.0.2.1 --name upstream.local --addr 192.0.2.1
 *
 * Prints "mdns-responder ready", then one line per query:
 * "query NAME from ADDR port PORT -> multicast|unicast|ignored".
 */
import dgram from "node:dgram";

const GROUP = "224.0.0.251";
const PORT = 5353;
const TYPE_A = 1;
const CLASS_IN = 1;
const CACHE_FLUSH = 0x8000;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}

const ifAddr = arg("if", "192.0.2.1");
const name = arg("name", "upstream.local").toLowerCase();
const addr = arg("addr", ifAddr).split(".").map(Number);

/** The question name at b[o] (no compression in queries) and the offset past it; null if malformed. */
function readName(b: Buffer, o: number): { name: string; end: number } | null {
  const labels: string[] = [];
  while (o < b.length) {
    const n = b[o]!;
    if (n === 0) return { name: labels.join(".").toLowerCase(), end: o + 1 };
    if (n > 63 || o + 1 + n > b.length) return null;
    labels.push(b.subarray(o + 1, o + 1 + n).toString("latin1"));
    o += 1 + n;
  }
  return null;
}

/** The answer to query q (question end qend): ID and question kept for legacy unicast. */
function answer(q: Buffer, qend: number, unicast: boolean): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(unicast ? q.readUInt16BE(0) : 0, 0);
  head.writeUInt16BE(0x8400, 2);
  head.writeUInt16BE(unicast ? 1 : 0, 4);
  head.writeUInt16BE(1, 6);
  const question = unicast ? q.subarray(12, qend) : Buffer.alloc(0);
  const rrName = unicast ? Buffer.from([0xc0, 12]) : q.subarray(12, qend - 4);
  const rr = Buffer.alloc(10 + 4);
  rr.writeUInt16BE(TYPE_A, 0);
  rr.writeUInt16BE(CLASS_IN | (unicast ? 0 : CACHE_FLUSH), 2);
  rr.writeUInt32BE(120, 4);
  rr.writeUInt16BE(4, 8);
  for (let k = 0; k < 4; k++) rr[10 + k] = addr[k]!;
  return Buffer.concat([head, question, rrName, rr]);
}

const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
sock.on("message", (msg, from) => {
  if (msg.length < 12 || (msg[2]! & 0x80) !== 0 || msg.readUInt16BE(4) < 1) return;
  const q = readName(msg, 12);
  if (!q || q.end + 4 > msg.length) return;
  const known = q.name === name && msg.readUInt16BE(q.end) === TYPE_A;
  const unicast = from.port !== PORT;
  console.log(`query ${q.name} from ${from.address} port ${from.port} -> ${known ? (unicast ? "unicast" : "multicast") : "ignored"}`);
  if (!known) return;
  const a = answer(msg, q.end + 4, unicast);
  if (unicast) sock.send(a, from.port, from.address);
  else sock.send(a, PORT, GROUP);
});
sock.bind(PORT, () => {
  sock.addMembership(GROUP, ifAddr);
  sock.setMulticastInterface(ifAddr);
  sock.setMulticastTTL(255);
  sock.setMulticastLoopback(false);
  console.log("mdns-responder ready");
});
process.on("SIGTERM", () => process.exit(0));
