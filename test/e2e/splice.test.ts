/**
 * pasta's local paths, end to end as root (issue 5): TCP and UDP between the
 * host's loopback and the namespace's loopback, spliced socket to socket
 * (src/flows/splice.ts, src/flows/udpsplice.ts), with explicit forwarding
 * and with auto mode (src/fwd/forward.ts).
 *
 * Three pasta runs, one world:
 *
 *   explicit   -t/-T/-u/-U ranges, -t 8080:80, -t 9000-9010,~9005,
 *              -t 127.0.0.1/9100: socat transfers (4 KiB and 16 MiB, both
 *              data directions, IPv4 and IPv6) host loopback → namespace
 *              loopback server and namespace loopback → host loopback server;
 *              UDP both ways (64 KiB as 8 KiB datagrams); translation,
 *              exclusion, bound address; half-close and resets both ways; a
 *              flood of 300 held connections during a 16 MiB transfer.
 *   auto       no port options: servers on the host started before pasta,
 *              servers in the namespace started after it, TCP and UDP both
 *              ways; a server that starts after pasta is reachable from the
 *              other side within 2 s and refused once it exits, both ways.
 *   short      2000 short connections each way; pasta's descriptor count
 *              comes back to where it was once its pools of pipes and
 *              namespace sockets were filled (a warm-up burst, then idle).
 *
 * Clients and servers are socat and test/tools/splice-peer.ts (Bun). The
 * guest's commands join its network namespace with nsenter. PASTA_TEST_CMD
 * (split on spaces) runs another program with the same options, e.g.
 * PASTA_TEST_CMD=/usr/bin/pasta checks these tests against the reference.
 */
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, TOOLS, createWorld, describeE2E, type Child, type ExecOptions, type ExecResult, type World } from "../world.ts";

const PEER = join(TOOLS, "splice-peer.ts");
const SMALL = 4096;
const BIG = 16 << 20;
const UDP_SIZE = 64 << 10;
const UDP_CHUNK = 8192;

type Family = 4 | 6;
type Side = "host" | "guest";
const FAMILIES: Family[] = [4, 6];
const lo = (fam: Family) => (fam === 4 ? "127.0.0.1" : "::1");

// ---------------------------------------------------------------------------
// A long-lived pasta with its guest

type Pasta = PastaSession;

/** pid's descriptors counted by kind ("pipe", "socket", "anon_inode:[eventpoll]", paths...). */
function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  try {
    for (const f of readdirSync(`/proc/${pid}/fd`)) {
      let t: string;
      try {
        t = readlinkSync(`/proc/${pid}/fd/${f}`).replace(/^(pipe|socket):\[\d+\]$/, "$1");
      } catch {
        continue;
      }
      kinds[t] = (kinds[t] ?? 0) + 1;
    }
  } catch {
    /* gone */
  }
  return kinds;
}

// ---------------------------------------------------------------------------

describeE2E("pasta splice: loopback to loopback (root)", () => {
  let w: World;
  /** the pasta of the group running now */
  let p: Pasta | null = null;
  const files: Record<number, string> = {};
  let seq = 0;

  function argvIn(side: Side, cmd: string[]): string[] {
    if (side === "guest") return ["nsenter", "-t", String(p!.guestPid), "-n", "--", ...cmd];
    return ["ip", "netns", "exec", w.host, ...cmd];
  }
  const run = (side: Side, cmd: string[], opts?: ExecOptions) => w.exec(null, argvIn(side, cmd), opts);
  const spawn = (side: Side, cmd: string[]) => w.spawn(null, argvIn(side, cmd));
  const peer = (args: string[]) => [BUN, PEER, ...args];
  const pastaLog = () => `\npasta (pid ${p?.pid}): ${p?.log() ?? ""}`;

  /** Wait (bounded) until something listens on (tcp) or is bound to (udp) port on side. */
  async function waitBound(side: Side, proto: "tcp" | "udp", port: number, ms = 10000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await run(side, ["ss", "-Hn", proto === "tcp" ? "-lt" : "-lu", `sport = :${port}`]);
      if (r.stdout.trim()) return r.stdout;
      if (Date.now() > deadline)
        throw new Error(
          `nothing ${proto === "tcp" ? "listens on TCP" : "is bound to UDP"} port ${port} in the ${side} namespace after ${ms} ms${pastaLog()}`,
        );
      await Bun.sleep(50);
    }
  }

  /** Wait (bounded) until nothing listens on TCP port on side. */
  async function waitUnbound(side: Side, port: number, ms = 10000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await run(side, ["ss", "-Hltn", `sport = :${port}`]);
      if (!r.stdout.trim()) return;
      if (Date.now() > deadline) throw new Error(`TCP port ${port} still listening in the ${side} namespace:\n${r.stdout}`);
      await Bun.sleep(50);
    }
  }

  /** Parse the last JSON line a splice-peer printed. */
  function lastJson(text: string): any {
    const lines = text
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"));
    if (!lines.length) throw new Error(`no JSON in ${JSON.stringify(text)}`);
    return JSON.parse(lines[lines.length - 1]!);
  }

  async function peerRun(side: Side, args: string[], timeoutMs = 60000): Promise<{ r: ExecResult; j: any }> {
    const r = await run(side, peer(args), { timeoutMs });
    let j: any = null;
    try {
      j = lastJson(r.stdout);
    } catch {
      /* reported by the caller's expectation */
    }
    return { r, j };
  }

  async function peerServer(side: Side, args: string[]): Promise<Child> {
    const c = spawn(side, peer(args));
    await c.waitFor("splice-peer ready", { timeoutMs: 15000 });
    return c;
  }

  function tcpListen(fam: Family, port: number, bind: string): string {
    return fam === 4 ? `TCP4-LISTEN:${port},bind=${bind},reuseaddr` : `TCP6-LISTEN:${port},bind=[${bind}],reuseaddr,ipv6only=1`;
  }
  function tcpConnect(fam: Family, port: number): string {
    return fam === 4 ? `TCP4:127.0.0.1:${port},connect-timeout=20` : `TCP6:[::1]:${port},connect-timeout=20`;
  }

  // ------------------------------------------------------------- TCP transfer

  interface TcpServer {
    child: Child;
    out: string;
    port: number;
    fam: Family;
    side: Side;
    dir: "up" | "down";
    size: number;
  }

  /**
   * A one-shot socat server on side's loopback: "up" receives a file into
   * out, "down" sends the file of that size. Waits until it listens.
   */
  async function tcpServer(side: Side, fam: Family, port: number, dir: "up" | "down", size: number): Promise<TcpServer> {
    const out = join(w.dir, `tcp-out-${++seq}`);
    const listen = tcpListen(fam, port, lo(fam));
    const cmd =
      dir === "up" ? ["socat", "-u", "-T", "60", listen, `CREATE:${out}`] : ["socat", "-u", "-T", "60", `OPEN:${files[size]}`, listen];
    const child = spawn(side, cmd);
    await waitBound(side, "tcp", port);
    return { child, out, port, fam, side, dir, size };
  }

  /** The client of a TcpServer on the other side, through pasta; checks exit codes and bytes. */
  async function tcpClient(s: TcpServer, label: string): Promise<void> {
    const client: Side = s.side === "guest" ? "host" : "guest";
    const out = join(w.dir, `tcp-in-${++seq}`);
    const target = tcpConnect(s.fam, s.port);
    const cmd =
      s.dir === "up" ? ["socat", "-u", "-T", "60", `OPEN:${files[s.size]}`, target] : ["socat", "-u", "-T", "60", target, `CREATE:${out}`];
    try {
      const c = await run(client, cmd, { timeoutMs: 90000 });
      const sc = await Promise.race([s.child.exited, Bun.sleep(30000).then(() => null)]);
      const got = s.dir === "up" ? s.out : out;
      const cmp = await w.exec(null, ["cmp", files[s.size]!, got]);
      const why =
        `${label}: ${client} client → ${s.side} server, IPv${s.fam}, port ${s.port}, ${s.dir === "up" ? "client sends" : "server sends"} ${s.size} bytes\n` +
        `client: exit ${c.code}${c.timedOut ? " (killed)" : ""} ${c.stderr}\nserver: exit ${sc} ${s.child.stderr()}\ncmp: ${cmp.stdout}${cmp.stderr}${pastaLog()}`;
      expect(c.code, why).toBe(0);
      expect(sc, why).toBe(0);
      expect(cmp.code, why).toBe(0);
    } finally {
      await s.child.kill({ graceMs: 500 });
      rmSync(out, { force: true });
      rmSync(s.out, { force: true });
    }
  }

  // ------------------------------------------------------------- UDP transfer

  /** A receiver of UDP_SIZE bytes on side's loopback; resolves once bound. */
  async function udpReceiver(side: Side, fam: Family, port: number): Promise<{ child: Child; out: string }> {
    const out = join(w.dir, `udp-out-${++seq}`);
    const child = await peerServer(side, [
      "udp-recv",
      "--host",
      lo(fam),
      "--port",
      String(port),
      "--out",
      out,
      "--bytes",
      String(UDP_SIZE),
      "--max-ms",
      "60000",
    ]);
    return { child, out };
  }

  /** socat sends the 64 KiB file as 8 KiB datagrams from the other side to the receiver's port on its own loopback. */
  async function udpSend(rx: { child: Child; out: string }, rxSide: Side, fam: Family, port: number, label: string): Promise<void> {
    const tx: Side = rxSide === "guest" ? "host" : "guest";
    const to = fam === 4 ? `UDP4-SENDTO:127.0.0.1:${port}` : `UDP6-SENDTO:[::1]:${port}`;
    try {
      const c = await run(tx, ["socat", "-u", "-b", String(UDP_CHUNK), `OPEN:${files[UDP_SIZE]}`, to], { timeoutMs: 30000 });
      const rc = await Promise.race([rx.child.exited, Bun.sleep(30000).then(() => null)]);
      const cmp = await w.exec(null, ["cmp", files[UDP_SIZE]!, rx.out]);
      const why = `${label}: UDP ${tx} → ${rxSide}, IPv${fam}, port ${port}\nsender: exit ${c.code} ${c.stderr}\nreceiver: exit ${rc} ${rx.child.stdout()} ${rx.child.stderr()}\ncmp: ${cmp.stdout}${cmp.stderr}${pastaLog()}`;
      expect(c.code, why).toBe(0);
      expect(rc, why).toBe(0);
      const j = lastJson(rx.child.stdout());
      expect(j.bytes, why).toBe(UDP_SIZE);
      expect(j.sizes, why).toEqual(Array(UDP_SIZE / UDP_CHUNK).fill(UDP_CHUNK));
      expect(cmp.code, why).toBe(0);
    } finally {
      await rx.child.kill({ graceMs: 500 });
      rmSync(rx.out, { force: true });
    }
  }

  beforeAll(async () => {
    w = await createWorld();
    for (const size of [SMALL, BIG, UDP_SIZE]) {
      files[size] = join(w.dir, `random-${size}`);
      const r = await w.exec(null, ["sh", "-c", `head -c ${size} /dev/urandom >${files[size]}`]);
      if (r.code !== 0) throw new Error(`cannot make ${files[size]}: ${r.stderr}`);
    }
  }, 60000);

  afterAll(async () => {
    await p?.stop();
    await w?.destroy();
  });

  // =========================================================================
  describe("explicit forwarding: -t 7000-7099 -T 7100-7199 -u 7200-7219 -U 7220-7239 -t 8080:80 -t 9000-9010,~9005 -t 127.0.0.1/9100", () => {
    let tNext = 7000; // -t: host → namespace
    let TNext = 7100; // -T: namespace → host
    let uNext = 7200; // -u
    let UNext = 7220; // -U

    beforeAll(async () => {
      p = await startPasta(w, [
        "--config-net",
        "-t",
        "7000-7099",
        "-T",
        "7100-7199",
        "-u",
        "7200-7219",
        "-U",
        "7220-7239",
        "-t",
        "8080:80",
        "-t",
        "9000-9010,~9005",
        "-t",
        "127.0.0.1/9100",
      ]);
    }, 60000);

    afterAll(async () => {
      await p?.stop();
      p = null;
    });

    for (const fam of FAMILIES) {
      test(`TCP IPv${fam}: host loopback → namespace loopback server (-t), 4 KiB and 16 MiB, both data directions, byte-exact`, async () => {
        for (const size of [SMALL, BIG]) {
          for (const dir of ["up", "down"] as const) {
            const s = await tcpServer("guest", fam, tNext++, dir, size);
            await tcpClient(s, "-t");
          }
        }
      }, 180000);

      test(`TCP IPv${fam}: namespace loopback → host loopback server (-T), 4 KiB and 16 MiB, both data directions, byte-exact`, async () => {
        for (const size of [SMALL, BIG]) {
          for (const dir of ["up", "down"] as const) {
            const s = await tcpServer("host", fam, TNext++, dir, size);
            await tcpClient(s, "-T");
          }
        }
      }, 180000);

      test(`UDP IPv${fam}: 64 KiB as 8 KiB datagrams, host loopback → namespace (-u) and namespace loopback → host (-U)`, async () => {
        const up = uNext++;
        await udpSend(await udpReceiver("guest", fam, up), "guest", fam, up, "-u");
        const Up = UNext++;
        await udpSend(await udpReceiver("host", fam, Up), "host", fam, Up, "-U");
      }, 120000);
    }

    test("translation: -t 8080:80, host 127.0.0.1:8080 reaches the namespace's port 80", async () => {
      const srv = await peerServer("guest", ["echo", "--host", "127.0.0.1", "--port", "80", "--max-ms", "60000"]);
      try {
        const { r, j } = await peerRun("host", ["probe", "--host", "127.0.0.1", "--port", "8080", "--want", "echo", "--max-ms", "10000"]);
        expect(j?.ok, `${r.stdout}${r.stderr}${pastaLog()}`).toBe(true);
        // nothing listens on the host's own port 80: the 80 is only the target
        const ss = await run("host", ["ss", "-Hltn", "sport = :80"]);
        expect(ss.stdout.trim()).toBe("");
      } finally {
        await srv.kill({ graceMs: 500 });
      }
    }, 60000);

    test("exclusion: -t 9000-9010,~9005 forwards 9004 and 9006 but not 9005", async () => {
      const ss = await run("host", ["ss", "-Hltn"]);
      const ports = new Set(
        ss.stdout
          .split("\n")
          .map((l) => l.trim().split(/\s+/)[3] ?? "")
          .map((a) => Number(a.slice(a.lastIndexOf(":") + 1))),
      );
      for (let port = 9000; port <= 9010; port++)
        expect(ports.has(port), `port ${port} in host ss -ltn:\n${ss.stdout}`).toBe(port !== 9005);
      const srvs = await Promise.all(
        [9004, 9005, 9006].map((port) => peerServer("guest", ["echo", "--host", "127.0.0.1", "--port", String(port), "--max-ms", "60000"])),
      );
      try {
        for (const port of [9004, 9006]) {
          const { r, j } = await peerRun("host", [
            "probe",
            "--host",
            "127.0.0.1",
            "--port",
            String(port),
            "--want",
            "echo",
            "--max-ms",
            "10000",
          ]);
          expect(j?.ok, `port ${port}: ${r.stdout}${r.stderr}${pastaLog()}`).toBe(true);
        }
        const { r, j } = await peerRun("host", ["probe", "--host", "127.0.0.1", "--port", "9005", "--want", "refused", "--max-ms", "1000"]);
        expect(j?.outcomes, `port 9005: ${r.stdout}${r.stderr}`).toEqual({ refused: 1 });
      } finally {
        await Promise.all(srvs.map((s) => s.kill({ graceMs: 500 })));
      }
    }, 60000);

    test("bound address: -t 127.0.0.1/9100 listens on the host's 127.0.0.1 only", async () => {
      const ss = await run("host", ["ss", "-Hltn", "sport = :9100"]);
      const locals = ss.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.trim().split(/\s+/)[3]);
      expect(locals, ss.stdout).toEqual(["127.0.0.1:9100"]);
      const srv = await peerServer("guest", ["echo", "--host", "127.0.0.1", "--port", "9100", "--max-ms", "60000"]);
      try {
        const ok = await peerRun("host", ["probe", "--host", "127.0.0.1", "--port", "9100", "--want", "echo", "--max-ms", "10000"]);
        expect(ok.j?.ok, `${ok.r.stdout}${ok.r.stderr}${pastaLog()}`).toBe(true);
        // the host's own address is not bound
        const no = await peerRun("host", ["probe", "--host", "192.0.2.2", "--port", "9100", "--want", "refused", "--max-ms", "1000"]);
        expect(no.j?.outcomes, `${no.r.stdout}${no.r.stderr}`).toEqual({ refused: 1 });
      } finally {
        await srv.kill({ graceMs: 500 });
      }
    }, 60000);

    /** One connection from the other side to a splice-peer server on side's loopback at port. */
    async function oneConnection(
      side: Side,
      fam: Family,
      port: number,
      onData: "reply" | "reset",
      send: number,
      then: "end" | "reset" | "wait",
    ) {
      const srv = await peerServer(side, ["server", "--host", lo(fam), "--port", String(port), "--on-data", onData, "--max-ms", "30000"]);
      const client: Side = side === "guest" ? "host" : "guest";
      const c = await peerRun(client, [
        "client",
        "--host",
        lo(fam),
        "--port",
        String(port),
        "--send",
        String(send),
        "--then",
        then,
        "--max-ms",
        "20000",
      ]);
      await Promise.race([srv.exited, Bun.sleep(25000)]);
      await srv.kill({ graceMs: 500 });
      let s: any = null;
      try {
        s = lastJson(srv.stdout());
      } catch {
        /* in why */
      }
      const why = `${client} client → ${side} server, IPv${fam}, port ${port}\nclient: ${c.r.stdout}${c.r.stderr}\nserver: ${srv.stdout()}${srv.stderr()}${pastaLog()}`;
      return { c: c.j, s, why };
    }

    test("half-close: a client that shut down its writing still gets the reply (both ways, IPv4 and IPv6)", async () => {
      const N = 100000;
      for (const fam of FAMILIES) {
        for (const side of ["guest", "host"] as Side[]) {
          const { c, s, why } = await oneConnection(side, fam, side === "guest" ? tNext++ : TNext++, "reply", N, "end");
          expect(s?.event, why).toBe("end");
          expect(s?.bytes, why).toBe(N);
          expect(c?.event, why).toBe("end");
          expect(c?.reply, why).toBe(`got ${N} bytes\n`);
        }
      }
    }, 120000);

    test("reset: a server closing with SO_LINGER 0 → the client gets ECONNRESET (both ways, IPv4 and IPv6)", async () => {
      for (const fam of FAMILIES) {
        for (const side of ["guest", "host"] as Side[]) {
          const { c, s, why } = await oneConnection(side, fam, side === "guest" ? tNext++ : TNext++, "reset", 10, "wait");
          expect(s?.event, why).toBe("reset-sent");
          expect(c?.event, why).toBe("error");
          expect(c?.code, why).toBe("ECONNRESET");
        }
      }
    }, 120000);

    test("reset: a client closing with SO_LINGER 0 → the server gets ECONNRESET (both ways, IPv4 and IPv6)", async () => {
      for (const fam of FAMILIES) {
        for (const side of ["guest", "host"] as Side[]) {
          const { c, s, why } = await oneConnection(side, fam, side === "guest" ? tNext++ : TNext++, "reply", 10, "reset");
          expect(c?.event, why).toBe("reset-sent");
          expect(s?.event, why).toBe("error");
          expect(s?.code, why).toBe("ECONNRESET");
        }
      }
    }, 120000);

    test("a flood of 300 connections held open during a 16 MiB transfer doesn't break it", async () => {
      const N = 300;
      const echoPort = tNext++;
      const xferPort = tNext++;
      const go = join(w.dir, `flood-go-${++seq}`);
      const release = join(w.dir, `flood-release-${++seq}`);
      const half = join(w.dir, `flood-half-${seq}`);
      const rest = join(w.dir, `flood-rest-${seq}`);
      const split = await w.exec(null, [
        "sh",
        "-c",
        `head -c ${BIG / 2} ${files[BIG]} >${half} && tail -c +${BIG / 2 + 1} ${files[BIG]} >${rest}`,
      ]);
      expect(split.code, split.stderr).toBe(0);
      const echo = await peerServer("guest", ["echo", "--host", "127.0.0.1", "--port", String(echoPort), "--max-ms", "120000"]);
      const s = await tcpServer("guest", 4, xferPort, "up", BIG);
      let flood: Child | null = null;
      try {
        // the client sends the first half, waits (bounded) for `go`, then sends the rest
        const feed = `cat ${half}; i=0; while [ ! -e ${go} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; cat ${rest}`;
        const client = run("host", ["sh", "-c", `(${feed}) | socat -u -T 60 - ${tcpConnect(4, xferPort)}`], { timeoutMs: 120000 });
        // the first half arrived: the transfer is under way
        for (let i = 0; i < 600; i++) {
          if (existsSync(s.out) && statSync(s.out).size >= BIG / 2) break;
          await Bun.sleep(50);
        }
        expect(existsSync(s.out) ? statSync(s.out).size : 0, `first half not received${pastaLog()}`).toBeGreaterThanOrEqual(BIG / 2);
        flood = spawn(
          "host",
          peer(["hold", "--host", "127.0.0.1", "--port", String(echoPort), "--n", String(N), "--until", release, "--max-ms", "120000"]),
        );
        await flood.waitFor(/"held":\d+/, { timeoutMs: 90000 });
        const held = lastJson(flood.stdout());
        writeFileSync(go, "");
        const c = await client;
        const sc = await Promise.race([s.child.exited, Bun.sleep(30000).then(() => null)]);
        const cmp = await w.exec(null, ["cmp", files[BIG]!, s.out]);
        const why = `flood: ${JSON.stringify(held)}\nclient: exit ${c.code}${c.timedOut ? " (killed)" : ""} ${c.stderr}\nserver: exit ${sc} ${s.child.stderr()}\ncmp: ${cmp.stdout}${cmp.stderr}${pastaLog()}`;
        expect(c.code, why).toBe(0);
        expect(sc, why).toBe(0);
        expect(cmp.code, why).toBe(0);
        expect(held.held, why).toBe(N);
        writeFileSync(release, "");
        await flood.waitFor(/"closed":\d+/, { timeoutMs: 30000 });
        expect(lastJson(flood.stdout()).closed, why).toBe(N);
      } finally {
        writeFileSync(go, "");
        writeFileSync(release, "");
        await flood?.kill({ graceMs: 1000 });
        await echo.kill({ graceMs: 500 });
        await s.child.kill({ graceMs: 500 });
        for (const f of [half, rest, s.out]) rmSync(f, { force: true });
      }
    }, 240000);
  });

  // =========================================================================
  describe("auto forwarding (no port options)", () => {
    // ports bound on the host before pasta starts
    const preTcp: TcpServer[] = [];
    const preUdp: { rx: { child: Child; out: string }; fam: Family; port: number }[] = [];

    beforeAll(async () => {
      let port = 7300;
      for (const fam of FAMILIES) {
        for (const size of [SMALL, BIG]) {
          for (const dir of ["up", "down"] as const) preTcp.push(await tcpServer("host", fam, port++, dir, size));
        }
      }
      port = 7320;
      for (const fam of FAMILIES) {
        const rx = await udpReceiver("host", fam, port);
        preUdp.push({ rx, fam, port: port++ });
      }
      p = await startPasta(w, ["--config-net"]);
    }, 90000);

    afterAll(async () => {
      for (const s of preTcp) await s.child.kill({ graceMs: 200 });
      for (const u of preUdp) await u.rx.child.kill({ graceMs: 200 });
      await p?.stop();
      p = null;
    });

    test("TCP: host loopback servers started before pasta, reached from the namespace's loopback (IPv4 and IPv6, 4 KiB and 16 MiB, both data directions)", async () => {
      for (const s of preTcp) {
        await waitBound("guest", "tcp", s.port); // pasta's mirror in the namespace
        await tcpClient(s, "auto");
      }
    }, 240000);

    test("TCP: namespace loopback servers started after pasta, reached from the host's loopback (IPv4 and IPv6, 4 KiB and 16 MiB, both data directions)", async () => {
      let port = 7340;
      for (const fam of FAMILIES) {
        for (const size of [SMALL, BIG]) {
          for (const dir of ["up", "down"] as const) {
            const s = await tcpServer("guest", fam, port++, dir, size);
            await waitBound("host", "tcp", s.port); // pasta's mirror on the host
            await tcpClient(s, "auto");
          }
        }
      }
    }, 240000);

    test("UDP: host loopback receivers bound before pasta get 64 KiB from the namespace's loopback (IPv4 and IPv6)", async () => {
      for (const u of preUdp) {
        await waitBound("guest", "udp", u.port);
        await udpSend(u.rx, "host", u.fam, u.port, "auto");
      }
    }, 120000);

    test("UDP: namespace loopback receivers bound after pasta get 64 KiB from the host's loopback (IPv4 and IPv6)", async () => {
      let port = 7360;
      for (const fam of FAMILIES) {
        const rx = await udpReceiver("guest", fam, port);
        await waitBound("host", "udp", port);
        await udpSend(rx, "guest", fam, port, "auto");
        port++;
      }
    }, 120000);

    for (const side of ["guest", "host"] as Side[]) {
      const other: Side = side === "guest" ? "host" : "guest";
      test(`a ${side === "guest" ? "namespace" : "host"} server started after pasta is reachable from the ${other === "host" ? "host" : "namespace"} within 2 s, and refused once it exits`, async () => {
        const port = side === "guest" ? 7380 : 7381;
        const srv = await peerServer(side, ["echo", "--host", "127.0.0.1", "--port", String(port), "--max-ms", "60000"]);
        let killed = false;
        try {
          const up = await peerRun(other, ["probe", "--host", "127.0.0.1", "--port", String(port), "--want", "echo", "--max-ms", "2000"]);
          expect(up.j?.ok, `reachable within 2 s: ${up.r.stdout}${up.r.stderr}${pastaLog()}`).toBe(true);
          await srv.kill({ graceMs: 500 });
          killed = true;
          await waitUnbound(side, port);
          const down = await peerRun(other, [
            "probe",
            "--host",
            "127.0.0.1",
            "--port",
            String(port),
            "--want",
            "refused",
            "--max-ms",
            "10000",
          ]);
          expect(down.j?.ok, `refused after the server exits: ${down.r.stdout}${down.r.stderr}${pastaLog()}`).toBe(true);
          // and it stays that way
          const again = await peerRun(other, [
            "probe",
            "--host",
            "127.0.0.1",
            "--port",
            String(port),
            "--want",
            "refused",
            "--max-ms",
            "1000",
          ]);
          expect(again.j?.outcomes, `${again.r.stdout}${again.r.stderr}`).toEqual({ refused: 1 });
          await waitUnbound(other, port);
        } finally {
          if (!killed) await srv.kill({ graceMs: 500 });
        }
      }, 60000);
    }
  });

  // =========================================================================
  describe("2000 short connections each way: -t 7400 -T 7401 -u none -U none", () => {
    const N = 2000;
    let echoes: Child[] = [];

    beforeAll(async () => {
      p = await startPasta(w, ["--config-net", "-t", "7400", "-T", "7401", "-u", "none", "-U", "none"]);
      echoes = [
        await peerServer("guest", ["echo", "--host", "127.0.0.1", "--port", "7400", "--max-ms", "600000"]),
        await peerServer("host", ["echo", "--host", "127.0.0.1", "--port", "7401", "--max-ms", "600000"]),
      ];
    }, 60000);

    afterAll(async () => {
      for (const e of echoes) await e.kill({ graceMs: 500 });
      await p?.stop();
      p = null;
    });

    test(`${N} connections (1 byte each way) host → namespace and namespace → host all succeed; pasta's descriptors return to their count`, async () => {
      // Warm-up: pasta keeps pools of pipes and namespace sockets, topped up on
      // a timer and refilled by closing connections up to a cap. One connection
      // each way, then a burst of 32 at once each way (the pools reach their
      // caps), then a second of idle; the count is taken after that.
      for (const [client, port] of [
        ["host", 7400],
        ["guest", 7401],
      ] as [Side, number][]) {
        const { r, j } = await peerRun(client, ["short", "--host", "127.0.0.1", "--port", String(port), "--n", "1"]);
        expect(j?.ok, `warm-up ${client} → port ${port}: ${r.stdout}${r.stderr}${pastaLog()}`).toBe(1);
        const release = join(w.dir, `warm-release-${++seq}`);
        const burst = spawn(
          client,
          peer(["hold", "--host", "127.0.0.1", "--port", String(port), "--n", "32", "--until", release, "--max-ms", "60000"]),
        );
        try {
          await burst.waitFor(/"held":\d+/, { timeoutMs: 60000 });
          expect(lastJson(burst.stdout()).held, `warm-up burst ${client} → port ${port}: ${burst.stdout()}${pastaLog()}`).toBe(32);
          writeFileSync(release, "");
          await burst.waitFor(/"closed":\d+/, { timeoutMs: 30000 });
        } finally {
          writeFileSync(release, "");
          await burst.kill({ graceMs: 1000 });
        }
      }
      await Bun.sleep(1000);
      const before = p!.fdCount();
      const kindsBefore = fdKinds(p!.pid);
      expect(before).toBeGreaterThan(0);

      for (const [client, port] of [
        ["host", 7400],
        ["guest", 7401],
      ] as [Side, number][]) {
        const { r, j } = await peerRun(client, ["short", "--host", "127.0.0.1", "--port", String(port), "--n", String(N)], 300000);
        const why = `${client} → port ${port}: exit ${r.code}${r.timedOut ? " (killed)" : ""}\n${r.stdout}${r.stderr}${pastaLog()}`;
        expect(j?.n, why).toBe(N);
        expect(j?.failures, why).toEqual([]);
        expect(j?.ok, why).toBe(N);
      }

      // every connection is closed: no TCP socket of pasta's is left on either
      // side but its listeners (bounded wait)
      const pastaConns = async () => {
        const lines: string[] = [];
        for (const side of ["host", "guest"] as Side[]) {
          const r = await run(side, ["ss", "-Htanp"]);
          for (const l of r.stdout.split("\n"))
            if (l.includes(`pid=${p!.pid},`) && !l.startsWith("LISTEN")) lines.push(`${side}: ${l.trim()}`);
        }
        return lines;
      };
      let conns = await pastaConns();
      for (let i = 0; i < 100 && conns.length; i++) {
        await Bun.sleep(100);
        conns = await pastaConns();
      }
      expect(conns, `pasta's TCP sockets still open:\n${conns.slice(0, 20).join("\n")}${pastaLog()}`).toEqual([]);

      // and its descriptor count comes back to where it was (bounded wait)
      let after = p!.fdCount();
      for (let i = 0; i < 300 && after !== before; i++) {
        await Bun.sleep(100);
        after = p!.fdCount();
      }
      const why = `pasta's fds: ${before} before, ${after} after\nby kind before: ${JSON.stringify(kindsBefore)}\nby kind after:  ${JSON.stringify(fdKinds(p!.pid))}${pastaLog()}`;
      expect(after, why).toBe(before);
    }, 600000);
  });
});
