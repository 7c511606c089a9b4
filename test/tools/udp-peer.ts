#!/usr/bin/env bun
/**
 * Small UDP programs for the end-to-end tests (Bun only: no Python needed).
 *
 *   bun test/tools/udp-peer.ts echo --listen ADDR --port P
 *       echo every datagram back to its sender, from the same socket.
 *   bun test/tools/udp-peer.ts other-port --listen ADDR --port P --reply-port R
 *       answer every datagram with "reply:" + payload from a second socket
 *       bound to ADDR:R (a reply from a port that was never queried).
 *   bun test/tools/udp-peer.ts client --bind ADDR --bind-port P --to ADDR --port P
 *       [--payload TEXT] [--timeout-ms 8000]
 *       send from a fixed (address, port), accept the first answer from any
 *       source; prints {"from","port","data"} as JSON, exit 0, or exit 1 on
 *       timeout. Resends once a second while nothing came back.
 *   bun test/tools/udp-peer.ts flows --to ADDR --port P [--n 1000] [--rounds 8]
 *       open n sockets (ephemeral ports), send one datagram from each, and
 *       count the sockets that got their own payload echoed back. Sockets
 *       still waiting resend once a round (one second). Prints {"n","ports",
 *       "first","replies","rounds"} as JSON: first is the count after the
 *       first round. With --hold FILE the sockets then stay open, each
 *       sending again every half second (so its flow stays in use), until
 *       FILE exists; then they are closed and the program exits.
 *
 * The servers print "udp-peer ready" once bound and run until killed (or
 * --max-ms, default 120000, as a bound).
 */

export {};

type Args = Record<string, string>;

function parse(argv: string[]): { mode: string; a: Args } {
  const mode = argv[0] ?? "";
  const a: Args = {};
  for (let i = 1; i < argv.length; i++) {
    const k = argv[i]!;
    if (!k.startsWith("--")) throw new Error(`unexpected argument ${k}`);
    a[k.slice(2)] = argv[++i] ?? "";
  }
  return { mode, a };
}

function need(a: Args, k: string): string {
  const v = a[k];
  if (v === undefined) throw new Error(`--${k} is required`);
  return v;
}

const dec = new TextDecoder();

async function echo(a: Args) {
  const sock = await Bun.udpSocket({
    hostname: need(a, "listen"),
    port: Number(need(a, "port")),
    socket: {
      data(s, buf, port, addr) {
        s.send(buf, port, addr);
      },
    },
  });
  console.log(`udp-peer ready ${sock.hostname} ${sock.port}`);
}

async function otherPort(a: Args) {
  const host = need(a, "listen");
  const replier = await Bun.udpSocket({ hostname: host, port: Number(need(a, "reply-port")) });
  const sock = await Bun.udpSocket({
    hostname: host,
    port: Number(need(a, "port")),
    socket: {
      data(_s, buf, port, addr) {
        console.log(`query from ${addr} port ${port}: ${dec.decode(buf)}`);
        replier.send(`reply:${dec.decode(buf)}`, port, addr);
      },
    },
  });
  console.log(`udp-peer ready ${sock.hostname} ${sock.port} reply-from ${replier.port}`);
}

async function client(a: Args) {
  const to = need(a, "to");
  const port = Number(need(a, "port"));
  const payload = a.payload ?? "hello";
  const timeoutMs = Number(a["timeout-ms"] ?? 8000);
  let done = false;
  const sock = await Bun.udpSocket({
    hostname: need(a, "bind"),
    port: Number(need(a, "bind-port")),
    socket: {
      data(s, buf, rport, addr) {
        if (done) return;
        done = true;
        console.log(JSON.stringify({ from: addr, port: rport, data: dec.decode(buf), local: s.port }));
        s.close();
        process.exit(0);
      },
    },
  });
  const start = Date.now();
  while (!done && Date.now() - start < timeoutMs) {
    sock.send(payload, port, to);
    await Bun.sleep(1000);
  }
  if (!done) {
    console.error(`no answer within ${timeoutMs} ms`);
    process.exit(1);
  }
}

async function flows(a: Args) {
  const to = need(a, "to");
  const port = Number(need(a, "port"));
  const n = Number(a.n ?? 1000);
  const rounds = Number(a.rounds ?? 8);
  const any = to.includes(":") ? "::" : "0.0.0.0";
  const got = new Uint8Array(n);
  let replies = 0;
  const socks: import("bun").udp.Socket<"buffer">[] = [];
  for (let i = 0; i < n; i++) {
    const want = `flow-${i}`;
    socks.push(
      await Bun.udpSocket({
        hostname: any,
        port: 0,
        socket: {
          data(_s, buf) {
            if (!got[i] && dec.decode(buf) === want) {
              got[i] = 1;
              replies++;
            }
          },
        },
      }),
    );
  }
  const ports = new Set(socks.map((s) => s.port)).size;
  let first = -1;
  let round = 0;
  for (; round < rounds && replies < n; round++) {
    for (let i = 0; i < n; i++) if (!got[i]) socks[i]!.send(`flow-${i}`, port, to);
    // wait for this round's answers, at most a second
    for (let t = 0; t < 20 && replies < n; t++) await Bun.sleep(50);
    if (first < 0) first = replies;
  }
  console.log(JSON.stringify({ n, ports, first, replies, rounds: round }));
  const hold = a.hold;
  if (hold) {
    const { existsSync } = await import("node:fs");
    while (!existsSync(hold)) {
      for (let i = 0; i < n; i++) socks[i]!.send(`flow-${i}`, port, to);
      await Bun.sleep(500);
    }
  }
  for (const s of socks) s.close();
  process.exit(0);
}

const { mode, a } = parse(process.argv.slice(2));
const maxMs = Number(a["max-ms"] ?? 120000);
setTimeout(() => process.exit(2), maxMs).unref?.();
switch (mode) {
  case "echo":
    await echo(a);
    setTimeout(() => process.exit(0), maxMs);
    break;
  case "other-port":
    await otherPort(a);
    setTimeout(() => process.exit(0), maxMs);
    break;
  case "client":
    await client(a);
    break;
  case "flows":
    await flows(a);
    break;
  default:
    console.error("usage: udp-peer.ts echo|other-port|client|flows --option value ...");
    process.exit(64);
}
