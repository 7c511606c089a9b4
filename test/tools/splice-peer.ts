#!/usr/bin/env bun
/**
 * Small TCP and UDP programs for the spliced-path tests (test/e2e/splice.test.ts),
 * Bun only. Every mode is bounded in time (--max-ms, default 120000) and
 * prints its result as one line of JSON on stdout; servers first print
 * "splice-peer ready" once they listen.
 *
 *   echo    --host H --port P
 *       TCP echo server, any number of connections; a half-closed client
 *       gets the rest of its echo, then the end.
 *   server  --host H --port P --on-data reply|reset
 *       one connection, then exit. reply: read to end of stream, answer
 *       "got N bytes", close. reset: at the first bytes, close with SO_LINGER
 *       0 (a reset). Prints {"event":"end"|"error","code","bytes"}.
 *   client  --host H --port P --send N --then end|reset|wait
 *       one connection: write N bytes, then end: shut down writing and read
 *       the reply to its end; reset: once the bytes are written, close with
 *       a reset; wait: read until the peer ends or an error.
 *       Prints {"event","code","reply","bytes"}.
 *   short   --host H --port P --n N
 *       N connections one after another: connect, write 1 byte, read it back,
 *       close. Prints {"n","ok","failures":[first few errors]}.
 *   hold    --host H --port P --n N --until FILE
 *       N connections at once against an echo server; each writes 1 byte and
 *       waits for it. Prints {"n","held","errors"} once all are settled
 *       (echoed or failed), keeps them open until FILE exists, closes them,
 *       prints {"closed":K}.
 *   probe   --host H --port P --want echo|refused --max-ms M
 *       try a 1-byte echo exchange every 50 ms until its outcome is the
 *       wanted one ("echo", or "refused": ECONNREFUSED) or M ms pass.
 *       Prints {"ok","outcome","attempts","ms","outcomes":{outcome:count}}.
 *   udp-recv --host H --port P --out FILE [--bytes B]
 *       bind; append every datagram to FILE until an empty datagram comes
 *       or B bytes arrived. Prints {"datagrams","bytes","sizes"}.
 */
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import net from "node:net";

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

const { mode, a } = parse(process.argv.slice(2));
const host = a.host ?? "127.0.0.1";
const port = Number(a.port ?? 0);
const maxMs = Number(a["max-ms"] ?? 120000);
const v6only = host.includes(":");

function out(obj: unknown) {
  console.log(JSON.stringify(obj));
}

/** Exit (status 3) if still running after the bound; unref'd so it never keeps us alive. */
setTimeout(() => {
  out({ event: "max-ms", ms: maxMs });
  process.exit(3);
}, maxMs + 5000).unref();

type Sock = net.Socket & { resetAndDestroy(): void };

function listen(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, ipv6Only: v6only, backlog: 1024 }, () => {
      console.log("splice-peer ready");
      resolve();
    });
  });
}

async function echoServer() {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.on("data", (d) => s.write(d));
    s.on("end", () => s.end());
  });
  await listen(server);
  await Bun.sleep(maxMs);
  process.exit(0);
}

async function oneServer() {
  const onData = need(a, "on-data");
  await new Promise<void>((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      server.close();
      let bytes = 0;
      let done = false;
      const finish = (r: object) => {
        if (done) return;
        done = true;
        out({ bytes, ...r });
        resolve();
      };
      s.on("data", (d) => {
        bytes += d.length;
        if (onData === "reset") {
          (s as Sock).resetAndDestroy();
          finish({ event: "reset-sent" });
        }
      });
      s.on("end", () => {
        s.end(`got ${bytes} bytes\n`, () => finish({ event: "end" }));
      });
      s.on("error", (e: any) => finish({ event: "error", code: e.code ?? String(e) }));
    });
    listen(server).catch((e) => {
      out({ event: "listen-error", code: e.code ?? String(e) });
      process.exit(1);
    });
  });
  await Bun.sleep(200);
  process.exit(0);
}

async function oneClient() {
  const send = Number(need(a, "send"));
  const then = need(a, "then");
  const r = await new Promise<object>((resolve) => {
    let reply = "";
    let bytes = 0;
    let done = false;
    const finish = (x: object) => {
      if (done) return;
      done = true;
      resolve({ ...x, reply, bytes });
    };
    const c = net.connect({ host, port, allowHalfOpen: true }) as Sock;
    c.on("connect", () => {
      c.write(Buffer.alloc(send, 0x78), () => {
        if (then !== "reset") return;
        c.resetAndDestroy();
        finish({ event: "reset-sent" });
      });
      if (then === "end") c.end();
    });
    c.on("data", (d) => {
      bytes += d.length;
      reply += d.toString();
    });
    c.on("end", () => finish({ event: "end" }));
    c.on("error", (e: any) => finish({ event: "error", code: e.code ?? String(e) }));
    c.on("close", () => finish({ event: "close" }));
    setTimeout(() => finish({ event: "timeout" }), maxMs);
  });
  out(r);
  process.exit(0);
}

/** One connection: write one byte, expect it back, close. Resolves with "echo" or what went wrong. */
function exchange(timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    let done = false;
    const c = net.connect({ host, port, allowHalfOpen: false });
    const finish = (r: string) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      if (r === "echo") c.end();
      else c.destroy();
      resolve(r);
    };
    const t = setTimeout(() => finish("timeout"), timeoutMs);
    c.on("connect", () => c.write("e"));
    c.on("data", (d) => finish(d.toString() === "e" ? "echo" : `wrong:${d.toString()}`));
    c.on("end", () => finish("closed"));
    c.on("error", (e: any) => finish(e.code === "ECONNREFUSED" ? "refused" : e.code === "ECONNRESET" ? "reset" : String(e.code ?? e)));
  });
}

async function shortConns() {
  const n = Number(need(a, "n"));
  let ok = 0;
  const failures: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await exchange(10000);
    if (r === "echo") ok++;
    else if (failures.length < 10) failures.push(`#${i}: ${r}`);
  }
  out({ n, ok, failures });
  await Bun.sleep(100);
  process.exit(0);
}

async function hold() {
  const n = Number(need(a, "n"));
  const until = need(a, "until");
  const socks: net.Socket[] = [];
  const errors: Record<string, number> = {};
  let held = 0;
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          let settled = false;
          const settle = (what: string) => {
            if (settled) return;
            settled = true;
            if (what === "echo") held++;
            else errors[what] = (errors[what] ?? 0) + 1;
            resolve();
          };
          const c = net.connect({ host, port });
          socks.push(c);
          c.on("connect", () => c.write("h"));
          c.on("data", () => settle("echo"));
          c.on("end", () => settle("closed"));
          c.on("error", (e: any) => settle(String(e.code ?? e)));
          setTimeout(() => settle("timeout"), 60000);
        }),
    ),
  );
  out({ n, held, errors });
  const deadline = Date.now() + maxMs;
  while (!existsSync(until) && Date.now() < deadline) await Bun.sleep(50);
  let closed = 0;
  for (const s of socks) {
    if (!s.destroyed) closed++;
    s.destroy();
  }
  out({ closed });
  await Bun.sleep(100);
  process.exit(0);
}

async function probe() {
  const want = need(a, "want");
  const start = Date.now();
  const outcomes: Record<string, number> = {};
  let attempts = 0;
  let outcome = "";
  for (;;) {
    attempts++;
    outcome = await exchange(Math.max(100, Math.min(1000, start + maxMs - Date.now())));
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (outcome === want || Date.now() - start >= maxMs) break;
    await Bun.sleep(50);
  }
  out({ ok: outcome === want, outcome, attempts, ms: Date.now() - start, outcomes });
  process.exit(0);
}

async function udpRecv() {
  const file = need(a, "out");
  const want = a.bytes === undefined ? Infinity : Number(a.bytes);
  writeFileSync(file, "");
  const sizes: number[] = [];
  let bytes = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const sock = await Bun.udpSocket({
    hostname: host,
    port,
    socket: {
      data(_s, buf) {
        sizes.push(buf.length);
        if (buf.length === 0) return resolveDone();
        appendFileSync(file, buf);
        bytes += buf.length;
        if (bytes >= want) resolveDone();
      },
    },
  });
  console.log("splice-peer ready");
  await Promise.race([done, Bun.sleep(maxMs)]);
  sock.close();
  out({ datagrams: sizes.filter((s) => s > 0).length, bytes, sizes });
  process.exit(0);
}

const modes: Record<string, () => Promise<void>> = {
  echo: echoServer,
  server: oneServer,
  client: oneClient,
  short: shortConns,
  hold,
  probe,
  "udp-recv": udpRecv,
};
const fn = modes[mode];
if (!fn) {
  console.error(`usage: splice-peer.ts ${Object.keys(modes).join("|")} [--options]`);
  process.exit(2);
}
fn().catch((e) => {
  console.error(`splice-peer ${mode}: ${e?.stack ?? e}`);
  process.exit(1);
});
