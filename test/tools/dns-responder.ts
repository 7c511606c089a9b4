#!/usr/bin/env bun
/**
 * A tiny authoritative-only DNS responder for the test world.
 *
 * Runs in the "upstream" namespace and answers A and AAAA queries for a few
 * fixed names over UDP (and TCP, length-prefixed) on the given addresses.
 * Unknown names get NXDOMAIN; known names without the asked type get an empty
 * NOERROR answer. Nothing is ever forwarded anywhere.
 *
 * Usage:
 *   bun test/tools/dns-responder.ts [--listen ADDR]... [--port 53]
 *       [--record NAME=ADDR[,ADDR...]]... [--ttl 60] [--no-tcp]
 *
 * Defaults: listen on 198.51.100.53 and 2001:db8:1::53, port 53, records
 *   remote.example.test -> 198.51.100.1, 2001:db8:1::1
 *   dns.example.test    -> 198.51.100.53, 2001:db8:1::53
 *
 * Prints "dns-responder ready" on stdout once every socket is bound, then one
 * line per query: "query <TYPE> <name> from <addr> port <port> <udp|tcp> -> <RCODE> <n>".
 */

export const DEFAULT_RECORDS: Record<string, string[]> = {
  "remote.example.test": ["198.51.100.1", "2001:db8:1::1"],
  "dns.example.test": ["198.51.100.53", "2001:db8:1::53"],
};

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_NAMES: Record<number, string> = { 1: "A", 28: "AAAA", 5: "CNAME", 15: "MX", 16: "TXT", 33: "SRV", 12: "PTR", 255: "ANY" };

function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = Number(parts[i]);
    if (!/^\d{1,3}$/.test(parts[i]!) || n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | null {
  if (!s.includes(":")) return null;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  }
  return out;
}

interface Question {
  name: string; // lower case, no trailing dot
  type: number;
  cls: number;
  end: number; // offset after the question
}

function readQuestion(msg: Uint8Array): Question | null {
  if (msg.length < 12) return null;
  const qd = (msg[4]! << 8) | msg[5]!;
  if (qd < 1) return null;
  let off = 12;
  const labels: string[] = [];
  for (let guard = 0; guard < 128; guard++) {
    if (off >= msg.length) return null;
    const len = msg[off]!;
    if (len === 0) {
      off++;
      break;
    }
    if (len > 63 || off + 1 + len > msg.length) return null; // no compression in questions
    labels.push(new TextDecoder().decode(msg.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  if (off + 4 > msg.length) return null;
  return {
    name: labels.join(".").toLowerCase(),
    type: (msg[off]! << 8) | msg[off + 1]!,
    cls: (msg[off + 2]! << 8) | msg[off + 3]!,
    end: off + 4,
  };
}

export interface Answer {
  rcode: number;
  response: Uint8Array;
  answers: number;
}

/** Build the response to one query message; null when it is not worth answering. */
export function answer(msg: Uint8Array, records: Map<string, Uint8Array[]>, ttl = 60): Answer | null {
  if (msg.length < 12) return null;
  if (msg[2]! & 0x80) return null; // a response, not a query
  const opcode = (msg[2]! >> 3) & 0x0f;
  const q = readQuestion(msg);
  const header = (rcode: number, an: number, qd: number) => {
    const h = new Uint8Array(12);
    h[0] = msg[0]!;
    h[1] = msg[1]!;
    h[2] = 0x80 | (opcode << 3) | 0x04 | (msg[2]! & 0x01); // QR, AA, copy RD
    h[3] = rcode & 0x0f; // RA = 0
    h[5] = qd;
    h[6] = an >> 8;
    h[7] = an & 0xff;
    return h;
  };
  if (opcode !== 0 || !q) {
    const rcode = opcode !== 0 ? 4 : 1; // NOTIMP or FORMERR
    return { rcode, response: header(rcode, 0, 0), answers: 0 };
  }
  const question = msg.subarray(12, q.end);
  const addrs = records.get(q.name);
  let rcode = 0;
  const rrs: Uint8Array[] = [];
  if (!addrs)
    rcode = 3; // NXDOMAIN
  else if (q.cls === 1 || q.cls === 255) {
    for (const a of addrs) {
      const t = a.length === 4 ? TYPE_A : TYPE_AAAA;
      if (q.type !== t && q.type !== 255) continue;
      const rr = new Uint8Array(12 + a.length);
      rr[0] = 0xc0; // pointer to the name in the question
      rr[1] = 12;
      rr[2] = t >> 8;
      rr[3] = t & 0xff;
      rr[5] = 1; // IN
      new DataView(rr.buffer).setUint32(6, ttl);
      rr[11] = a.length;
      rr.set(a, 12);
      rrs.push(rr);
    }
  }
  const h = header(rcode, rrs.length, 1);
  const total = h.length + question.length + rrs.reduce((n, r) => n + r.length, 0);
  const out = new Uint8Array(total);
  out.set(h, 0);
  out.set(question, h.length);
  let off = h.length + question.length;
  for (const r of rrs) {
    out.set(r, off);
    off += r.length;
  }
  return { rcode, response: out, answers: rrs.length };
}

function rcodeName(r: number): string {
  return ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"][r] ?? `RCODE${r}`;
}

function describe(msg: Uint8Array): string {
  const q = readQuestion(msg);
  if (!q) return "? ?";
  return `${TYPE_NAMES[q.type] ?? `TYPE${q.type}`} ${q.name || "."}`;
}

export function buildRecords(spec: Record<string, string[]>): Map<string, Uint8Array[]> {
  const m = new Map<string, Uint8Array[]>();
  for (const [name, addrs] of Object.entries(spec)) {
    const bytes = addrs.map((a) => {
      const b = parseIPv4(a) ?? parseIPv6(a);
      if (!b) throw new Error(`bad address ${a} for ${name}`);
      return b;
    });
    m.set(name.toLowerCase().replace(/\.$/, ""), bytes);
  }
  return m;
}

async function main(argv: string[]) {
  const listen: string[] = [];
  let port = 53;
  let ttl = 60;
  let tcp = true;
  const spec: Record<string, string[]> = {};
  let anyRecord = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--listen") listen.push(next());
    else if (a === "--port") port = Number(next());
    else if (a === "--ttl") ttl = Number(next());
    else if (a === "--no-tcp") tcp = false;
    else if (a === "--record") {
      const v = next();
      const eq = v.indexOf("=");
      if (eq < 1) throw new Error(`bad --record ${v}`);
      spec[v.slice(0, eq)] = v
        .slice(eq + 1)
        .split(",")
        .filter(Boolean);
      anyRecord = true;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!listen.length) listen.push("198.51.100.53", "2001:db8:1::53");
  const records = buildRecords(anyRecord ? spec : DEFAULT_RECORDS);

  const log = (s: string) => process.stdout.write(s + "\n");
  for (const host of listen) {
    await Bun.udpSocket({
      hostname: host,
      port,
      socket: {
        data(sock, buf, rport, raddr) {
          const msg = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
          const r = answer(msg, records, ttl);
          if (!r) return;
          sock.send(r.response, rport, raddr);
          log(`query ${describe(msg)} from ${raddr} port ${rport} udp -> ${rcodeName(r.rcode)} ${r.answers}`);
        },
      },
    });
    if (tcp) {
      Bun.listen<{ buf: Uint8Array }>({
        hostname: host,
        port,
        socket: {
          open(s) {
            s.data = { buf: new Uint8Array(0) };
          },
          data(s, chunk) {
            const joined = new Uint8Array(s.data.buf.length + chunk.length);
            joined.set(s.data.buf, 0);
            joined.set(chunk, s.data.buf.length);
            let b = joined;
            for (let guard = 0; guard < 64 && b.length >= 2; guard++) {
              const len = (b[0]! << 8) | b[1]!;
              if (b.length < 2 + len) break;
              const msg = b.slice(2, 2 + len);
              b = b.subarray(2 + len);
              const r = answer(msg, records, ttl);
              if (!r) continue;
              const out = new Uint8Array(2 + r.response.length);
              out[0] = r.response.length >> 8;
              out[1] = r.response.length & 0xff;
              out.set(r.response, 2);
              s.write(out);
              log(`query ${describe(msg)} from ${s.remoteAddress} port 0 tcp -> ${rcodeName(r.rcode)} ${r.answers}`);
            }
            s.data.buf = b.slice();
          },
        },
      });
    }
  }
  log("dns-responder ready");
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`dns-responder: ${e?.message ?? e}\n`);
    process.exit(1);
  });
}
