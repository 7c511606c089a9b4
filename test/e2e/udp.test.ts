/**
 * UDP through pasta, end to end, as root (issue 4).
 *
 * Bulk transfers: 64 KiB as eight 8 KiB datagrams, then an empty datagram as
 * end marker (socat's shut-null on the sender, null-eof on the receiver),
 * compared with cmp, IPv4 and IPv6:
 *   - namespace → host through the gateway address (the server listens on the
 *     host's loopback: pasta maps the gateway to it);
 *   - namespace → remote host (the upstream namespace);
 *   - remote host → namespace through `-u PORT`;
 *   - namespace → host and → remote again with the guest's interface at MTU
 *     1500, so that the datagrams leave the guest as IP fragments.
 * DNS with dig (straight to the host's resolvers, and through --dns-forward),
 * replies from a port that was never queried, replies of the namespace to a
 * forwarded port, and 1000 flows at once, then the flow table draining after
 * PASTA_UDP_TIMEOUT_MS.
 *
 * One world for the file; three pasta runs. The guest is a /bin/sh script
 * that writes its results to files in $OUT; where the test has to act while
 * pasta runs (sending from upstream, sampling pasta's descriptors), the two
 * sides meet through files there, every wait bounded.
 *
 * The program is `bun src/main.ts`; PASTA_TEST_CMD (a command line split on
 * spaces) runs something else with the same options, e.g. /usr/bin/pasta.
 * Spliced loopback UDP (-U, and the namespace's own loopback) is not here: it
 * comes with its own issue.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, BUN, HOST_IF, REPO, TOOLS, createWorld, describeE2E, run, type Child, type World } from "../world.ts";

const PEER = join(TOOLS, "udp-peer.ts");
const IF = HOST_IF;
/** 64 KiB in datagrams of 8 KiB */
const SIZE = 64 * 1024;
const DGRAM = 8192;
/** unused addresses in the guest's subnets, for --dns-forward */
const DNS_FWD4 = "192.0.2.53";
const DNS_FWD6 = "2001:db8::53";

function pastaArgv(args: string[]): string[] {
  const override = process.env.PASTA_TEST_CMD?.trim();
  if (override) return [...override.split(/\s+/), ...args];
  return [BUN, join(REPO, "src", "main.ts"), ...args];
}

/** single-quote for /bin/sh */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

interface GuestRun {
  child: Child;
  outDir: string;
  path(name: string): string;
  out(name: string): string;
  /** wait (bounded) for pasta to end; kills it past the bound */
  finish(timeoutMs?: number): Promise<number>;
  dump(): string;
}

let runs = 0;

/** Start pasta with args in w's host namespace; its command is `sh GUEST.sh`, with OUT set. */
function startPasta(w: World, args: string[], script: string, env?: Record<string, string>): GuestRun {
  const outDir = mkdtempSync(join(w.dir, `udp${++runs}-`));
  chmodSync(outDir, 0o777);
  const file = join(outDir, "guest.sh");
  writeFileSync(file, `OUT=${q(outDir)}\nexport OUT\n${script}\n`);
  const child = w.spawn(w.host, pastaArgv([...args, "--", "/bin/sh", file]), { env });
  const path = (name: string) => join(outDir, name);
  const out = (name: string) => (existsSync(path(name)) ? readFileSync(path(name), "utf8") : "");
  return {
    child,
    outDir,
    path,
    out,
    async finish(timeoutMs = 90000) {
      const code = await Promise.race([child.exited, Bun.sleep(timeoutMs).then(() => null)]);
      return code ?? child.kill();
    },
    dump() {
      const files = readdirSync(outDir).filter((f) => f !== "guest.sh" && !f.endsWith(".bin"));
      return [
        `pasta pid ${child.pid}`,
        `pasta stderr: ${child.stderr()}`,
        `pasta stdout: ${child.stdout()}`,
        ...files.map((f) => `--- ${f}\n${out(f)}`),
      ].join("\n");
    },
  };
}

/** Wait (bounded) until path exists; false on timeout or when `until` has exited first. */
async function waitFile(path: string, timeoutMs: number, until?: Child): Promise<boolean> {
  let gone = false;
  until?.exited.then(() => (gone = true));
  for (const end = Date.now() + timeoutMs; Date.now() < end; ) {
    if (existsSync(path)) return true;
    if (gone) return existsSync(path);
    await Bun.sleep(50);
  }
  return existsSync(path);
}

/** The exit code of child once it ends within timeoutMs, else null (and it is killed). */
async function endsWithin(child: Child, timeoutMs: number): Promise<number | null> {
  const code = await Promise.race([child.exited, Bun.sleep(timeoutMs).then(() => null)]);
  if (code === null) await child.kill({ graceMs: 500 });
  return code;
}

/** Wait (bounded) until a UDP socket is bound to port in namespace ns. */
async function udpBound(_w: World, ns: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = run(["ip", "netns", "exec", ns, "ss", "-Hnlu", `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await Bun.sleep(50);
  }
  throw new Error(`nothing bound to UDP port ${port} in ${ns}`);
}

/** sh function definitions for guest scripts */
const SH_LIB = `
# send NAME SOCAT-ADDRESS: $IN as ${DGRAM}-byte datagrams, then an empty one
send() { socat -u -b ${DGRAM} OPEN:"$IN" "$2,shut-null" 2>"$OUT/$1.err"; echo $? >"$OUT/$1.rc"; }
# waitport PORT: until something listens on UDP PORT (at most 10 s)
waitport() { i=0; while [ -z "$(ss -Hnlu "sport = :$1")" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }
# waitfile FILE TENTHS: until FILE exists (bounded)
waitfile() { i=0; while [ ! -e "$1" ] && [ $i -lt $2 ]; do sleep 0.1; i=$((i+1)); done; }
`;

/** sh line: dig for remote.example.test (type A or AAAA) at server (null: resolv.conf's), output to $OUT/name */
function dig(name: string, server: string | null, type: string): string {
  return `dig +time=3 +tries=2 +noall +answer +stats ${server ? `@${server} ` : ""}${ADDR.remoteName} ${type} >"$OUT/${name}" 2>&1; echo $? >"$OUT/${name}.rc"`;
}

/** dig output (+noall +answer +stats): the answer's addresses and the server that answered */
function digResult(text: string): { addrs: string[]; server: string | null } {
  const addrs = [...text.matchAll(/\sIN\s+(?:A|AAAA)\s+(\S+)/g)].map((m) => m[1]!);
  const server = text.match(/SERVER: ([^#\s]+)#53/)?.[1] ?? null;
  return { addrs, server };
}

/** Check the dig of $OUT/name: exit 0, the answer addr, from server; a failure line is added to failures. */
function checkDig(failures: string[], out: (name: string) => string, name: string, server: string, addr: string): void {
  const r = digResult(out(name));
  if (out(`${name}.rc`).trim() !== "0" || r.server !== server || r.addrs.join(",") !== addr)
    failures.push(
      `${name}: dig exited ${out(`${name}.rc`).trim()}, answer ${JSON.stringify(r)}, expected ${addr} from ${server}: ${out(name).trim().replace(/\n/g, " | ")}`,
    );
}

describeE2E("UDP (root)", () => {
  let w: World;
  let input: string;

  beforeAll(async () => {
    w = await createWorld();
    input = join(w.dir, "input.bin");
    writeFileSync(input, crypto.getRandomValues(new Uint8Array(SIZE)));
    chmodSync(input, 0o644);
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("64 KiB as 8 KiB datagrams: namespace → host gateway and remote, remote → namespace (-u), and as fragments at MTU 1500; DNS to the host's resolvers; IPv4 and IPv6", async () => {
    await w.startDns();
    // Outbound cases: name → (namespace of the receiver, receiver address, guest's socat destination)
    const outbound = (suffix: string, base: number) => [
      { name: `gw4${suffix}`, ns: w.host, recv: `UDP4-RECV:${base + 1},bind=127.0.0.1`, send: `UDP4-SENDTO:${ADDR.gw4}:${base + 1}` },
      { name: `gw6${suffix}`, ns: w.host, recv: `UDP6-RECV:${base + 2},bind=[::1]`, send: `UDP6-SENDTO:[${ADDR.gwLL}%${IF}]:${base + 2}` },
      {
        name: `remote4${suffix}`,
        ns: w.upstream,
        recv: `UDP4-RECV:${base + 3},bind=${ADDR.remote4}`,
        send: `UDP4-SENDTO:${ADDR.remote4}:${base + 3}`,
      },
      {
        name: `remote6${suffix}`,
        ns: w.upstream,
        recv: `UDP6-RECV:${base + 4},bind=[${ADDR.remote6}]`,
        send: `UDP6-SENDTO:[${ADDR.remote6}]:${base + 4}`,
      },
    ];
    const big = outbound("", 9000);
    const frag = outbound("-frag", 9010);
    const receivers = new Map<string, { child: Child; file: string; port: number; ns: string }>();
    for (const c of [...big, ...frag]) {
      const file = join(w.dir, `${c.name}.out`);
      const child = w.spawn(c.ns, ["socat", "-u", "-T", "60", `${c.recv},null-eof`, `OPEN:${file},creat,trunc`]);
      receivers.set(c.name, { child, file, port: Number(c.recv.match(/RECV:(\d+)/)![1]), ns: c.ns });
    }
    for (const r of receivers.values()) await udpBound(w, r.ns, r.port);

    const IN4 = 9101;
    const IN6 = 9102;
    const script = [
      `IN=${q(input)}`,
      SH_LIB,
      // DNS: the namespace uses the host's resolvers (resolv.conf), straight through pasta
      `cat /etc/resolv.conf >"$OUT/resolv.conf"`,
      dig("dns-resolv", null, "A"),
      dig("dns4", ADDR.dns4, "A"),
      dig("dns6", ADDR.dns6, "AAAA"),
      ...big.map((c) => `send ${c.name} ${q(c.send)}`),
      // remote → namespace: receivers here, the test sends from upstream once they are bound
      `timeout 30 socat -u UDP4-RECV:${IN4},null-eof OPEN:"$OUT/in4.out",creat,trunc 2>"$OUT/in4.err" & p4=$!`,
      `timeout 30 socat -u UDP6-RECV:${IN6},null-eof OPEN:"$OUT/in6.out",creat,trunc 2>"$OUT/in6.err" & p6=$!`,
      `waitport ${IN4}; waitport ${IN6}; touch "$OUT/in-ready"`,
      `wait $p4; echo $? >"$OUT/in4.rc"; wait $p6; echo $? >"$OUT/in6.rc"`,
      // the same outbound transfers as fragments
      `ip link set ${IF} mtu 1500; ip -j link show dev ${IF} >"$OUT/link"`,
      ...frag.map((c) => `send ${c.name} ${q(c.send)}`),
    ].join("\n");

    const g = startPasta(w, ["--config-net", "-u", `${IN4},${IN6}`], script);
    const senders: Record<string, { code: number; err: string }> = {};
    if (await waitFile(g.path("in-ready"), 60000, g.child)) {
      const up = async (name: string, to: string) => {
        const r = await w.exec(w.upstream, ["socat", "-u", "-b", String(DGRAM), `OPEN:${input}`, `${to},shut-null`], { timeoutMs: 20000 });
        senders[name] = { code: r.code, err: r.stderr };
      };
      await up("in4", `UDP4-SENDTO:${ADDR.host4}:${IN4},bind=${ADDR.remote4}`);
      await up("in6", `UDP6-SENDTO:[${ADDR.host6}]:${IN6},bind=[${ADDR.remote6}]`);
    }
    const code = await g.finish(90000);
    const ended = new Map<string, number | null>();
    await Promise.all([...receivers].map(async ([name, r]) => ended.set(name, await endsWithin(r.child, 10000))));

    const why = () =>
      `${g.dump()}\n--- upstream senders\n${JSON.stringify(senders)}\n--- receivers\n${[...receivers].map(([n, r]) => `${n}: exit ${ended.get(n)} ${r.child.stderr()}`).join("\n")}`;
    expect(code, why()).toBe(0);
    const failures: string[] = [];
    let mtu: unknown = null;
    try {
      mtu = JSON.parse(g.out("link"))[0].mtu;
    } catch {
      /* reported below */
    }
    if (mtu !== 1500) failures.push(`guest ${IF} MTU is ${mtu}, not 1500: the *-frag cases were not fragmented`);
    const same = (name: string, file: string) => {
      if (!existsSync(file)) return failures.push(`${name}: nothing received`);
      const c = run(["cmp", input, file]);
      if (c.code !== 0)
        failures.push(`${name}: ${(c.stdout + c.stderr).trim() || "differs"} (${readFileSync(file).length} of ${SIZE} bytes)`);
    };
    for (const c of [...big, ...frag]) {
      if (g.out(`${c.name}.rc`).trim() !== "0")
        failures.push(`${c.name}: guest socat exited ${g.out(`${c.name}.rc`).trim() || "?"} ${g.out(`${c.name}.err`)}`);
      if (ended.get(c.name) === null) failures.push(`${c.name}: receiver got no end marker (empty datagram)`);
      same(c.name, receivers.get(c.name)!.file);
    }
    for (const name of ["in4", "in6"]) {
      if (senders[name]?.code !== 0) failures.push(`${name}: upstream socat ${JSON.stringify(senders[name] ?? "did not run")}`);
      if (g.out(`${name}.rc`).trim() !== "0")
        failures.push(`${name}: guest receiver exited ${g.out(`${name}.rc`).trim() || "?"} (124: no end marker)`);
      same(name, g.path(`${name}.out`));
    }
    if (!g.out("resolv.conf").includes(`nameserver ${ADDR.dns4}`))
      failures.push(`the namespace's resolv.conf lacks the host's resolver: ${g.out("resolv.conf")}`);
    checkDig(failures, g.out, "dns-resolv", ADDR.dns4, ADDR.remote4);
    checkDig(failures, g.out, "dns4", ADDR.dns4, ADDR.remote4);
    checkDig(failures, g.out, "dns6", ADDR.dns6, ADDR.remote6);
    expect(failures, why()).toEqual([]);
  }, 180000);

  test("--dns-forward, and the host's resolvers still reachable with it; replies from another port; the namespace's replies to -u", async () => {
    await w.startDns();
    const servers = [
      w.spawn(w.upstream, [BUN, PEER, "other-port", "--listen", ADDR.remote4, "--port", "9000", "--reply-port", "9001"]),
      w.spawn(w.upstream, [BUN, PEER, "other-port", "--listen", ADDR.remote6, "--port", "9000", "--reply-port", "9001"]),
    ];
    for (const s of servers) await s.waitFor("udp-peer ready", { timeoutMs: 15000 });

    const client = (name: string, bind: string, port: number, to: string) =>
      `${q(BUN)} ${q(PEER)} client --bind ${bind} --bind-port ${port} --to ${to} --port 9000 --payload ${name} >"$OUT/${name}" 2>"$OUT/${name}.err"; echo $? >"$OUT/${name}.rc"`;
    const ECHO4 = 9103;
    const ECHO6 = 9104;
    const script = [
      SH_LIB,
      dig("fwd4", DNS_FWD4, "A"),
      dig("fwd6", DNS_FWD6, "AAAA"),
      // the resolvers themselves, queried directly: their answers must keep their own source
      dig("direct4-with-fwd", ADDR.dns4, "A"),
      dig("direct6-with-fwd", ADDR.dns6, "AAAA"),
      client("other4", "0.0.0.0", 40000, ADDR.remote4),
      client("other6", "::", 40001, ADDR.remote6),
      // echo servers behind -u: the test sends from upstream and expects the answer from the forwarded port
      `${q(BUN)} ${q(PEER)} echo --listen 0.0.0.0 --port ${ECHO4} --max-ms 40000 >/dev/null 2>&1 & e4=$!`,
      `${q(BUN)} ${q(PEER)} echo --listen :: --port ${ECHO6} --max-ms 40000 >/dev/null 2>&1 & e6=$!`,
      `waitport ${ECHO4}; waitport ${ECHO6}; touch "$OUT/echo-ready"`,
      `waitfile "$OUT/echo-done" 300; kill $e4 $e6`,
    ].join("\n");

    const g = startPasta(w, ["--config-net", "--dns-forward", DNS_FWD4, "--dns-forward", DNS_FWD6, "-u", `${ECHO4},${ECHO6}`], script);
    const inbound: Record<string, any> = {};
    if (await waitFile(g.path("echo-ready"), 60000, g.child)) {
      const ask = async (name: string, bind: string, port: number, to: string, toPort: number) => {
        const r = await w.exec(
          w.upstream,
          [BUN, PEER, "client", "--bind", bind, "--bind-port", String(port), "--to", to, "--port", String(toPort), "--payload", name],
          { timeoutMs: 20000 },
        );
        inbound[name] = r.code === 0 ? JSON.parse(r.stdout) : { code: r.code, err: r.stderr };
      };
      await ask("echo4", ADDR.remote4, 40010, ADDR.host4, ECHO4);
      await ask("echo6", ADDR.remote6, 40011, ADDR.host6, ECHO6);
    }
    writeFileSync(g.path("echo-done"), "");
    const code = await g.finish(90000);
    const why = () =>
      `${g.dump()}\n--- inbound\n${JSON.stringify(inbound)}\n--- dns responder\n${w.dns?.stdout()}\n--- other-port servers\n${servers.map((s) => s.stdout() + s.stderr()).join("\n")}`;
    expect(code, why()).toBe(0);

    const failures: string[] = [];
    const dns = (name: string, server: string, addr: string) => checkDig(failures, g.out, name, server, addr);
    // forwarded: the answer appears from the --dns-forward address
    dns("fwd4", DNS_FWD4, ADDR.remote4);
    dns("fwd6", DNS_FWD6, ADDR.remote6);
    // not forwarded: the resolver's answer from the resolver, as without --dns-forward
    dns("direct4-with-fwd", ADDR.dns4, ADDR.remote4);
    dns("direct6-with-fwd", ADDR.dns6, ADDR.remote6);

    // a reply from port 9001 to a datagram sent to port 9000
    const other = (name: string, from: string, local: number) => {
      const rc = g.out(`${name}.rc`).trim();
      let got: any = null;
      try {
        got = JSON.parse(g.out(name));
      } catch {
        /* reported below */
      }
      const want = { from, port: 9001, data: `reply:${name}`, local };
      if (rc !== "0" || JSON.stringify(got) !== JSON.stringify(want))
        failures.push(`${name}: exit ${rc}, got ${g.out(name).trim() || g.out(`${name}.err`).trim()}, expected ${JSON.stringify(want)}`);
    };
    other("other4", ADDR.remote4, 40000);
    other("other6", ADDR.remote6, 40001);

    // the namespace's echo reaches the remote sender, from the forwarded port of the host's address
    const echo = (name: string, from: string, port: number, local: number) => {
      const want = { from, port, data: name, local };
      if (JSON.stringify(inbound[name]) !== JSON.stringify(want))
        failures.push(`${name}: got ${JSON.stringify(inbound[name] ?? "nothing")}, expected ${JSON.stringify(want)}`);
    };
    echo("echo4", ADDR.host4, ECHO4, 40010);
    echo("echo6", ADDR.host6, ECHO6, 40011);
    expect(failures, why()).toEqual([]);
  }, 180000);

  test("1000 flows at once all get their replies; the flow table drains after PASTA_UDP_TIMEOUT_MS", async () => {
    const PORT = 9200;
    const N = 1000;
    const echo = w.spawn(w.host, [BUN, PEER, "echo", "--listen", "127.0.0.1", "--port", String(PORT), "--max-ms", "150000"]);
    await echo.waitFor("udp-peer ready", { timeoutMs: 15000 });

    const script = [
      SH_LIB,
      `touch "$OUT/ready"; waitfile "$OUT/go" 600`,
      `${q(BUN)} ${q(PEER)} flows --to ${ADDR.gw4} --port ${PORT} --n ${N} --hold "$OUT/release" --max-ms 120000 >"$OUT/flows" 2>"$OUT/flows.err"; echo $? >"$OUT/flows.rc"`,
      `waitfile "$OUT/done" 600`,
    ].join("\n");
    const g = startPasta(w, ["--config-net"], script, { PASTA_UDP_TIMEOUT_MS: "2000" });
    const fds = () => {
      try {
        return readdirSync(`/proc/${g.child.pid}/fd`).length;
      } catch {
        return -1;
      }
    };
    let base = -1;
    let peak = -1;
    let last = -1;
    let drained = false;
    let gone = false;
    g.child.exited.then(() => (gone = true));
    if (await waitFile(g.path("ready"), 60000, g.child)) {
      base = fds();
      writeFileSync(g.path("go"), "");
      // wait for the guest's count; it then keeps every flow in use until released, so pasta's
      // descriptors are counted with all the flows open
      for (let i = 0; i < 1200 && !g.out("flows").trim() && !gone; i++) await Bun.sleep(50);
      if (g.out("flows").trim()) {
        peak = fds();
        writeFileSync(g.path("release"), "");
        // after the guest closes its sockets, pasta's flows time out (2 s): bounded wait for the drain
        for (let i = 0; i < 300 && !drained; i++) {
          await Bun.sleep(100);
          last = fds();
          drained = last >= 0 && last <= base + 4;
        }
      }
    }
    writeFileSync(g.path("done"), "");
    writeFileSync(g.path("release"), "");
    const code = await g.finish(60000);
    const why = () => `${g.dump()}\n--- pasta descriptors: base ${base}, with the flows ${peak}, last ${last}`;
    expect(code, why()).toBe(0);
    expect(g.out("flows.rc").trim(), why()).toBe("0");
    let r: any = {};
    try {
      r = JSON.parse(g.out("flows"));
    } catch {
      /* reported below */
    }
    expect(r.ports, why()).toBe(N);
    expect(r.replies, why()).toBe(N);
    expect(base, why()).toBeGreaterThan(0);
    // one socket per flow while they are in use...
    expect(peak - base, why()).toBeGreaterThanOrEqual(N);
    // ...and none left once they have timed out
    expect(drained, why()).toBe(true);
  }, 180000);
});
