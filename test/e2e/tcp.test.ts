/**
 * TCP through pasta, end to end, as root: real socat transfers compared with
 * cmp, in both directions of data for each direction of connection:
 *
 *   namespace → host      guest client → gateway address → server on the host's loopback
 *   namespace → remote    guest client → server in the upstream namespace
 *   remote → namespace    client in upstream → host address, -t port → guest server
 *   host → namespace      client on the host's loopback → -t port → guest server
 *
 * then the same with 2% of the guest's TCP segments dropped each way (nft in
 * the guest), half-close, resets both ways, refused and unreachable
 * destinations, 200 concurrent connections (and pasta's descriptors after
 * them), and iperf3 both ways.
 *
 * One pasta (test/tools/pasta-session.ts) serves most tests; commands run in
 * its guest through nsenter. The concurrency test has a pasta of its own so
 * that its descriptor count starts from a quiet baseline.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { ADDR, BUN, TOOLS, createWorld, describeE2E, type Child, type ExecResult, type World } from "../world.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";

const IF = "eth0";
/** ports pasta forwards from the host to the guest (-t) */
const FWD_FIRST = 8000;
const FWD_COUNT = 40;
const SMALL = 4096;
const BIG = 16 << 20;

type Where = "guest" | "host" | "upstream";
type Family = 4 | 6;

describeE2E("pasta TCP (root)", () => {
  let w: World;
  let s: PastaSession | null = null;
  /** the guest's IPv6 default gateway (link-local), as its routing table says */
  let gw6 = ADDR.gwLL as string;
  const files: Record<number, string> = {};

  let fwdNext = 0;
  const fwdPort = () => FWD_FIRST + (fwdNext++ % FWD_COUNT);
  let hostNext = 9000;
  const hostPort = () => hostNext++;
  let upNext = 7000;
  const upPort = () => upNext++;

  /** The shared pasta, started again if an earlier test killed it. */
  async function session(): Promise<PastaSession> {
    if (s?.alive()) return s;
    if (s) console.log(`pasta died earlier; its output:\n${s.log()}`);
    s = await startPasta(w, ["--config-net", "-t", `${FWD_FIRST}-${FWD_FIRST + FWD_COUNT - 1}`]);
    const r = await s.guest(["ip", "-6", "route", "show", "default"]);
    const m = r.stdout.match(/via (\S+)/);
    if (m) gw6 = m[1]!;
    return s;
  }

  function argvIn(where: Where, cmd: string[]): string[] {
    if (where === "guest") return s!.guestArgv(cmd);
    return ["ip", "netns", "exec", where === "host" ? w.host : w.upstream, ...cmd];
  }
  const execIn = (where: Where, cmd: string[], opts?: Parameters<World["exec"]>[2]) => w.exec(null, argvIn(where, cmd), opts);
  const spawnIn = (where: Where, cmd: string[]) => w.spawn(null, argvIn(where, cmd));

  /** Wait (bounded) until something listens on TCP port in where. */
  async function waitListen(where: Where, port: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const r = await execIn(where, ["ss", "-Hltn", `sport = :${port}`]);
      if (r.stdout.trim()) return;
      await Bun.sleep(50);
    }
    throw new Error(`nothing listens on TCP port ${port} in ${where}`);
  }

  /** socat address text for a connection to addr:port */
  function connectAddr(fam: Family, addr: string, port: number, opts = ""): string {
    return fam === 4 ? `TCP4:${addr}:${port}${opts}` : `TCP6:[${addr}]:${port}${opts}`;
  }
  function listenAddr(fam: Family, port: number, bind: string | null): string {
    const b = bind ? `,bind=${fam === 6 ? `[${bind}]` : bind}` : "";
    return `TCP${fam}-LISTEN:${port},reuseaddr${b}${fam === 6 ? ",ipv6only=1" : ""}`;
  }

  let scripts = 0;
  /** a shell script file in w.dir */
  function script(text: string): string {
    const p = join(w.dir, `s${++scripts}.sh`);
    writeFileSync(p, text);
    return p;
  }

  interface Transfer {
    server: Where;
    fam: Family;
    /** port the server listens on, bind address (null: any) */
    port: number;
    bind: string | null;
    client: Where;
    /** address and port the client connects to */
    to: string;
    toPort: number;
    /** extra socat options for the client's TCP address, e.g. ",bind=..." */
    clientOpts?: string;
    /** "up": client sends the file to the server; "down": server sends it to the client */
    dir: "up" | "down";
    size: number;
    timeoutMs?: number;
  }

  /**
   * One socat transfer of a random file; the server runs an EXEC script
   * that records $SOCAT_PEERADDR. Returns the peer the server saw and a
   * description for failure messages; asserts the bytes arrived unchanged.
   */
  async function transfer(t: Transfer): Promise<{ peer: string }> {
    const tag = `${t.client}->${t.server} v${t.fam} ${t.dir} ${t.size}B port ${t.port}`;
    const src = files[t.size]!;
    const n = ++scripts;
    const out = join(w.dir, `out${n}`);
    const peer = join(w.dir, `peer${n}`);
    const serverScript = script(`echo "$SOCAT_PEERADDR" >${peer}\n` + (t.dir === "up" ? `cat >${out}\n` : `cat ${src}\n`));
    const server = spawnIn(t.server, ["socat", "-t", "30", listenAddr(t.fam, t.port, t.bind), `EXEC:sh ${serverScript}`]);
    const timeoutMs = t.timeoutMs ?? 60000;
    try {
      await waitListen(t.server, t.port);
      const target = connectAddr(t.fam, t.to, t.toPort, (t.clientOpts ?? "") + ",connect-timeout=20");
      const cmd =
        t.dir === "up" ? ["socat", "-u", "-t", "30", `OPEN:${src}`, target] : ["socat", "-u", "-t", "30", target, `CREATE:${out}`];
      const c = await execIn(t.client, cmd, { timeoutMs });
      const sc = await Promise.race([server.exited, Bun.sleep(timeoutMs).then(() => null)]);
      const why = `${tag}\nclient: ${c.code}${c.timedOut ? " (timed out)" : ""} ${c.stderr}\nserver: ${sc} ${server.stderr()}\npasta: ${s?.log() ?? ""}`;
      expect(c.code, why).toBe(0);
      expect(sc, why).toBe(0);
      const cmp = await w.exec(null, ["cmp", src, out]);
      expect(cmp.code, `${why}\ncmp: ${cmp.stdout}${cmp.stderr}`).toBe(0);
      return { peer: existsSync(peer) ? readFileSync(peer, "utf8").trim() : "" };
    } finally {
      await server.kill({ graceMs: 500 });
      rmSync(out, { force: true });
    }
  }

  /** Both directions of data, both sizes, for one way of connecting (a fresh port each); returns the peers the server saw. */
  async function matrix(base: Omit<Transfer, "dir" | "size" | "port" | "toPort">, nextPort: () => number): Promise<string[]> {
    const peers: string[] = [];
    for (const size of [SMALL, BIG]) {
      for (const dir of ["up", "down"] as const) {
        const port = nextPort();
        peers.push((await transfer({ ...base, dir, size, port, toPort: port })).peer);
      }
    }
    return peers;
  }

  beforeAll(async () => {
    w = await createWorld();
    for (const size of [SMALL, BIG]) {
      files[size] = join(w.dir, `random-${size}`);
      const r = await w.exec(null, ["sh", "-c", `head -c ${size} /dev/urandom >${files[size]}`]);
      if (r.code !== 0) throw new Error(`cannot make ${files[size]}: ${r.stderr}`);
    }
    await session();
  }, 60000);

  afterAll(async () => {
    await s?.stop();
    await w?.destroy();
  });

  // ------------------------------------------------------------- transfers

  for (const fam of [4, 6] as Family[]) {
    test(`IPv${fam}: namespace → host loopback through the gateway address`, async () => {
      await session();
      const to = fam === 4 ? ADDR.gw4 : `${gw6}%${IF}`;
      const peers = await matrix({ server: "host", fam, bind: fam === 4 ? "127.0.0.1" : "::1", client: "guest", to }, hostPort);
      // pasta's socket to the host's loopback comes from the loopback
      for (const p of peers) expect(canon(p)).toBe(canon(fam === 4 ? "127.0.0.1" : "::1"));
    }, 180000);

    test(`IPv${fam}: namespace → remote host`, async () => {
      await session();
      const remote = fam === 4 ? ADDR.remote4 : ADDR.remote6;
      const peers = await matrix({ server: "upstream", fam, bind: remote, client: "guest", to: remote }, upPort);
      // the remote sees the host's address
      for (const p of peers) expect(canon(p)).toBe(canon(fam === 4 ? ADDR.host4 : ADDR.host6));
    }, 180000);

    test(`IPv${fam}: remote host → namespace through a -t port`, async () => {
      await session();
      const remote = fam === 4 ? ADDR.remote4 : ADDR.remote6;
      const bindOpt = `,bind=${fam === 4 ? remote : `[${remote}]`}`;
      const to = fam === 4 ? ADDR.host4 : ADDR.host6;
      const peers = await matrix({ server: "guest", fam, bind: null, client: "upstream", to, clientOpts: bindOpt }, fwdPort);
      // the guest sees the remote's own address
      for (const p of peers) expect(canon(p)).toBe(canon(remote));
    }, 180000);

    // From the host's loopback, a -t port is spliced to the namespace's loopback
    // (splice.test.ts); from the host's own address it goes through the tap.
    test(`IPv${fam}: host → namespace through a -t port from the host's address, seen from the gateway address`, async () => {
      await session();
      const peers = await matrix({ server: "guest", fam, bind: null, client: "host", to: fam === 4 ? ADDR.host4 : ADDR.host6 }, fwdPort);
      for (const p of peers) expect(canon(p)).toBe(canon(fam === 4 ? ADDR.gw4 : gw6));
    }, 180000);
  }

  /** The namespace's TCP RetransSegs counter. */
  async function guestRetrans(): Promise<number> {
    const lines = (await execIn("guest", ["cat", "/proc/net/snmp"])).stdout.split("\n").filter((l) => l.startsWith("Tcp:"));
    return Number(lines[1]!.split(/\s+/)[lines[0]!.split(/\s+/).indexOf("RetransSegs")]);
  }

  // A connection that closes must leave the namespace nothing to send again:
  // a lost ACK of its FIN shows as a retransmitted FIN (and a socket in LAST-ACK).
  test("closing both ways through the tap costs the namespace no retransmission (IPv4 and IPv6)", async () => {
    await session();
    for (const fam of [4, 6] as Family[]) {
      const remote = fam === 4 ? ADDR.remote4 : ADDR.remote6;
      const before = await guestRetrans();
      for (const dir of ["up", "down"] as const) {
        const up = upPort();
        await transfer({ server: "upstream", fam, port: up, toPort: up, bind: remote, client: "guest", to: remote, dir, size: SMALL });
        const fwd = fwdPort();
        const to = fam === 4 ? ADDR.host4 : ADDR.host6;
        await transfer({
          server: "guest",
          fam,
          port: fwd,
          toPort: fwd,
          bind: null,
          client: "upstream",
          to,
          clientOpts: `,bind=${fam === 4 ? remote : `[${remote}]`}`,
          dir,
          size: SMALL,
        });
      }
      await Bun.sleep(500);
      expect(await guestRetrans(), `IPv${fam}: segments the namespace sent again`).toBe(before);
    }
  }, 120000);

  // ------------------------------------------------------------- offloads off

  // With PASTA_NO_OFFLOAD=1 the tap has no virtio-net header offloads: the
  // namespace sends plain MSS-sized frames with full checksums, and pasta
  // sends one segment per frame with checksums computed by the shim
  // (shim_tcp_segments), which the namespace's kernel verifies: a wrong
  // checksum shows in its counters (TCP retransmissions alone would still
  // deliver the bytes, slowly).
  test("offloads off: 16 MiB byte-exact both ways, remote host ↔ namespace, IPv4 and IPv6; no checksum errors", async () => {
    await s?.stop();
    s = await startPasta(w, ["--config-net", "-t", `${FWD_FIRST}-${FWD_FIRST + FWD_COUNT - 1}`], { env: { PASTA_NO_OFFLOAD: "1" } });
    try {
      for (const fam of [4, 6] as Family[]) {
        const remote = fam === 4 ? ADDR.remote4 : ADDR.remote6;
        for (const dir of ["up", "down"] as const) {
          const port = upPort();
          await transfer({ server: "upstream", fam, bind: remote, client: "guest", to: remote, dir, size: BIG, port, toPort: port });
        }
      }
      const snmp = (await s.guest(["cat", "/proc/net/snmp"])).stdout;
      expect(snmpCounter(snmp, "Tcp", "InCsumErrors")).toBe(0);
      expect(snmpCounter(snmp, "Ip", "InHdrErrors")).toBe(0);
    } finally {
      await s.stop();
      s = null;
    }
  }, 240000);

  // ------------------------------------------------------------- packet loss

  test("2% of the guest's TCP segments dropped each way: 16 MiB byte-exact both ways, IPv4 and IPv6", async () => {
    const ss = await session();
    const table = "pasta_test_loss";
    const rules = [
      `add table inet ${table}`,
      `add chain inet ${table} in { type filter hook input priority 0; policy accept; }`,
      `add chain inet ${table} out { type filter hook output priority 0; policy accept; }`,
      `add rule inet ${table} in iifname "${IF}" meta l4proto tcp numgen random mod 100 < 2 drop`,
      `add rule inet ${table} out oifname "${IF}" meta l4proto tcp numgen random mod 100 < 2 drop`,
    ].join("\n");
    const nft = await ss.guest(["nft", "-f", "-"], { input: rules + "\n" });
    expect(nft.code, nft.stderr).toBe(0);
    try {
      for (const fam of [4, 6] as Family[]) {
        for (const dir of ["up", "down"] as const) {
          // the guest connects to the host's loopback through the gateway
          const hp = hostPort();
          await transfer({
            server: "host",
            fam,
            port: hp,
            bind: fam === 4 ? "127.0.0.1" : "::1",
            client: "guest",
            to: fam === 4 ? ADDR.gw4 : `${gw6}%${IF}`,
            toPort: hp,
            dir,
            size: BIG,
            timeoutMs: 120000,
          });
          // the host connects to the guest through a -t port (from its own address: through the tap)
          const fp = fwdPort();
          await transfer({
            server: "guest",
            fam,
            port: fp,
            bind: null,
            client: "host",
            to: fam === 4 ? ADDR.host4 : ADDR.host6,
            toPort: fp,
            dir,
            size: BIG,
            timeoutMs: 120000,
          });
        }
      }
      // the rules did drop segments
      const list = await ss.guest(["nft", "list", "table", "inet", table]);
      expect(list.stdout).toContain("drop");
    } finally {
      await ss.guest(["nft", "delete", "table", "inet", table]);
    }
  }, 1200000);

  // ------------------------------------------------------------- closing

  /** socat that sends input, shuts its write side, and prints what comes back (waits up to 20 s for it); -d: warnings (a reset is one) */
  const halfCloseClient = (fam: Family, to: string, port: number) => [
    "socat",
    "-d",
    "-t",
    "20",
    "-",
    connectAddr(fam, to, port, ",connect-timeout=20"),
  ];

  test("half-close: the side that shut down its writing still receives the reply (both ways, IPv4 and IPv6)", async () => {
    await session();
    const request = "x".repeat(100000);
    // the server reads to the end of the request, then answers
    const answer = script(`n=$(wc -c)\necho "got $n bytes"\n`);
    for (const fam of [4, 6] as Family[]) {
      // guest client, host server
      {
        const port = hostPort();
        const srv = spawnIn("host", ["socat", "-t", "20", listenAddr(fam, port, fam === 4 ? "127.0.0.1" : "::1"), `EXEC:sh ${answer}`]);
        await waitListen("host", port);
        const r = await execIn("guest", halfCloseClient(fam, fam === 4 ? ADDR.gw4 : `${gw6}%${IF}`, port), {
          input: request,
          timeoutMs: 40000,
        });
        expect(r.stdout.trim(), `guest → host v${fam}: ${r.code} ${r.stderr}\nserver: ${srv.stderr()}`).toBe(`got ${request.length} bytes`);
        expect(r.code).toBe(0);
        await srv.kill({ graceMs: 500 });
      }
      // host client, guest server through -t
      {
        const port = fwdPort();
        const srv = spawnIn("guest", ["socat", "-t", "20", listenAddr(fam, port, null), `EXEC:sh ${answer}`]);
        await waitListen("guest", port);
        const r = await execIn("host", halfCloseClient(fam, fam === 4 ? ADDR.host4 : ADDR.host6, port), {
          input: request,
          timeoutMs: 40000,
        });
        expect(r.stdout.trim(), `host → guest v${fam}: ${r.code} ${r.stderr}\nserver: ${srv.stderr()}`).toBe(`got ${request.length} bytes`);
        expect(r.code).toBe(0);
        await srv.kill({ graceMs: 500 });
      }
    }
  }, 180000);

  /** socat reports a reset as a warning "read(...): Connection reset by peer" */
  async function expectReset(label: string, client: Promise<ExecResult>, srv: Child): Promise<void> {
    const r = await client;
    await Promise.race([srv.exited, Bun.sleep(5000)]);
    const why = `${label}: client exit ${r.code}${r.timedOut ? " (timed out)" : ""}\nclient stderr: ${r.stderr}\nclient stdout: ${r.stdout}\nserver: ${srv.stdout()} ${srv.stderr()}\npasta: ${s?.log() ?? ""}`;
    expect(srv.stdout(), why).toContain("reset");
    expect(r.timedOut, why).toBe(false);
    expect(r.stderr, why).toMatch(/Connection reset by peer/);
  }

  test("reset: a server that aborts is seen by the client as a reset (both ways, IPv4 and IPv6)", async () => {
    await session();
    const abort = join(TOOLS, "tcp-abort-server.ts");
    for (const fam of [4, 6] as Family[]) {
      {
        const port = hostPort();
        const srv = spawnIn("host", [BUN, abort, fam === 4 ? "127.0.0.1" : "::1", String(port)]);
        await srv.waitFor("listening");
        const c = execIn("guest", halfCloseClient(fam, fam === 4 ? ADDR.gw4 : `${gw6}%${IF}`, port), {
          input: "hello\n",
          timeoutMs: 30000,
        });
        await expectReset(`host server aborts, guest client v${fam}`, c, srv);
      }
      {
        const port = fwdPort();
        const srv = spawnIn("guest", [BUN, abort, fam === 4 ? "0.0.0.0" : "::", String(port)]);
        await srv.waitFor("listening");
        const c = execIn("host", halfCloseClient(fam, fam === 4 ? ADDR.host4 : ADDR.host6, port), { input: "hello\n", timeoutMs: 30000 });
        await expectReset(`guest server aborts, host client v${fam}`, c, srv);
      }
    }
  }, 120000);

  // ------------------------------------------------------------- failures

  test("a refused port fails at once; an unreachable address fails (IPv4 and IPv6)", async () => {
    await session();
    // make sure the upstream namespace answers for these networks with "unreachable"
    for (const [v, net] of [
      ["-4", "203.0.113.0/24"],
      ["-6", "2001:db8:ff::/48"],
    ] as const) {
      const r = await w.exec(w.upstream, ["ip", v, "route", "replace", "unreachable", net]);
      expect(r.code, r.stderr).toBe(0);
    }
    const refused: [Family, string][] = [
      [4, ADDR.gw4],
      [6, `${gw6}%${IF}`],
      [4, ADDR.remote4],
      [6, ADDR.remote6],
    ];
    for (const [fam, to] of refused) {
      const r = await execIn("guest", ["socat", "-u", "-", connectAddr(fam, to, 9, ",connect-timeout=20")], {
        input: "",
        timeoutMs: 30000,
      });
      expect(r.timedOut, `refused ${to}: ${r.stderr}`).toBe(false);
      expect(r.code, `refused ${to}: ${r.stderr}`).not.toBe(0);
      expect(r.stderr, `refused ${to}`).toMatch(/Connection refused/);
    }
    for (const [fam, to] of [
      [4, "203.0.113.9"],
      [6, "2001:db8:ff::9"],
    ] as [Family, string][]) {
      const r = await execIn("guest", ["socat", "-u", "-", connectAddr(fam, to, 80, ",connect-timeout=30")], {
        input: "",
        timeoutMs: 40000,
      });
      const why = `unreachable ${to}: exit ${r.code}${r.timedOut ? " (killed)" : ""} ${r.stderr}`;
      expect(r.timedOut, why).toBe(false);
      expect(r.code, why).not.toBe(0);
    }
  }, 180000);

  // ------------------------------------------------------------- iperf3

  test("iperf3 for 5 s each way completes with nonzero throughput", async () => {
    await session();
    const srv = spawnIn("host", ["iperf3", "-s", "-B", "127.0.0.1", "-p", "5201"]);
    try {
      await waitListen("host", 5201);
      for (const reverse of [false, true]) {
        const r = await execIn("guest", ["iperf3", "-c", ADDR.gw4, "-p", "5201", "-t", "5", "-J", ...(reverse ? ["-R"] : [])], {
          timeoutMs: 60000,
        });
        const why = `iperf3${reverse ? " -R" : ""}: exit ${r.code}${r.timedOut ? " (timed out)" : ""}\n${r.stdout.slice(-3000)}\n${r.stderr}\nserver: ${srv.stdout().slice(-2000)}`;
        expect(r.code, why).toBe(0);
        const j = JSON.parse(r.stdout);
        expect(j.error, why).toBeUndefined();
        expect(j.end.sum_sent.bytes, why).toBeGreaterThan(0);
        expect(j.end.sum_received.bits_per_second, why).toBeGreaterThan(0);
      }
    } finally {
      await srv.kill({ graceMs: 1000 });
    }
  }, 120000);

  /** The namespace's TcpExtTCPWinProbe: window probes its TCP sent to a peer whose window stayed closed. */
  async function guestWinProbes(): Promise<number> {
    const r = await execIn("guest", ["nstat", "-az", "TcpExtTCPWinProbe"]);
    const m = r.stdout.match(/^TcpExtTCPWinProbe\s+(\d+)/m);
    if (!m) throw new Error(`nstat: no TcpExtTCPWinProbe: ${r.stdout} ${r.stderr}`);
    return Number(m[1]);
  }

  // The window we advertise follows the host socket's free space; once that
  // drains, the guest must hear of it from us. When it did not (d71dfe9
  // fixed it: an EPOLLOUT that found the window still closed was the last
  // one the kernel sent), a bulk upload waited for the guest's persist
  // timer each time its window filled: 5 window probes in 3 s of iperf3.
  test("a bulk upload from the namespace never leaves its TCP probing a closed window", async () => {
    await session();
    const srv = spawnIn("host", ["iperf3", "-s", "-B", "127.0.0.1", "-p", "5202"]);
    try {
      await waitListen("host", 5202);
      const before = await guestWinProbes();
      const r = await execIn("guest", ["iperf3", "-c", ADDR.gw4, "-p", "5202", "-t", "3", "-P", "2", "-w", "8M"], { timeoutMs: 60000 });
      expect(r.code, `iperf3: ${r.stdout.slice(-2000)} ${r.stderr}`).toBe(0);
      expect((await guestWinProbes()) - before, `window probes from the namespace\n${r.stdout.slice(-1500)}`).toBe(0);
    } finally {
      await srv.kill({ graceMs: 1000 });
    }
  }, 120000);

  // ------------------------------------------------------------- many at once

  test("200 concurrent connections, 256 KiB each way, byte-exact; pasta's descriptors return to their count", async () => {
    const N = 200;
    const SIZE = 256 << 10;
    // a pasta of its own, so that no flow of another test is closing meanwhile
    const own = await startPasta(w, ["--config-net"]);
    const dir = join(w.dir, "many");
    try {
      const mk = await w.exec(null, [
        "sh",
        "-c",
        `mkdir -p ${dir} && cd ${dir} && head -c ${N * SIZE} /dev/urandom | split -b ${SIZE} -d -a 3 - c.`,
      ]);
      expect(mk.code, mk.stderr).toBe(0);
      const port = hostPort();
      const echo = spawnIn("host", ["socat", "-t", "30", `TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=512`, "EXEC:cat"]);
      await waitListen("host", port);
      const before = own.fdCount();
      expect(before).toBeGreaterThan(0);
      const clients =
        `cd ${dir}; i=0; while [ $i -lt ${N} ]; do n=$(printf %03d $i); ` +
        `( socat -t 60 "OPEN:c.$n!!CREATE:r.$n" TCP4:${ADDR.gw4}:${port},connect-timeout=30 2>e.$n; echo $? >rc.$n ) & i=$((i+1)); done; wait; ` +
        `i=0; while [ $i -lt ${N} ]; do n=$(printf %03d $i); cmp -s c.$n r.$n || echo "$n rc=$(cat rc.$n) $(cat e.$n)"; i=$((i+1)); done`;
      const r = await w.exec(null, own.guestArgv(["sh", "-c", clients]), { timeoutMs: 240000 });
      const why = `clients: exit ${r.code}${r.timedOut ? " (timed out)" : ""}\nmismatches (index, client status, stderr):\n${r.stdout.slice(0, 4000)}\n${r.stderr}\npasta: ${own.log()}`;
      expect(r.timedOut, why).toBe(false);
      expect(r.stdout.trim(), why).toBe("");
      await echo.kill({ graceMs: 500 });

      // every flow closes: the descriptor count comes back (bounded wait)
      let after = own.fdCount();
      for (let i = 0; i < 300 && after !== before; i++) {
        await Bun.sleep(100);
        after = own.fdCount();
      }
      expect(after, `pasta's fds: ${before} before, ${after} after\n${own.log()}`).toBe(before);
      expect(own.alive()).toBe(true);
    } finally {
      await own.stop();
      await w.exec(null, ["rm", "-rf", dir]);
    }
  }, 400000);
});

/** An address as socat prints it ("[0000:...:0001]", "192.0.2.1") in one canonical form. */
function canon(a: string): string {
  const t = a
    .trim()
    .replace(/^\[|\]$/g, "")
    .replace(/%.*$/, "");
  if (!t.includes(":")) return t;
  const m = t.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i);
  if (m) return m[1]!;
  const [head, tail] = t.includes("::") ? t.split("::") : [t, null];
  const h = head ? head.split(":") : [];
  const tl = tail === null ? [] : tail ? tail.split(":") : [];
  const fill = tail === null ? [] : Array(8 - h.length - tl.length).fill("0");
  return [...h, ...fill, ...tl].map((g) => parseInt(g || "0", 16).toString(16)).join(":");
}

/** A counter from /proc/net/snmp text: the header line and the value line of a protocol. */
function snmpCounter(snmp: string, proto: string, name: string): number {
  const lines = snmp.split("\n").filter((l) => l.startsWith(`${proto}:`));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const k = names.indexOf(name);
  if (k < 0) throw new Error(`no ${proto} ${name} in /proc/net/snmp`);
  return Number(values[k]);
}
