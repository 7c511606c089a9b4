/**
 * Faults around a running pasta (and passt), as root, in a test world:
 *
 * - a host server resets in the middle of a transfer, while the guest sends
 *   and while it receives: the guest sees the reset, pasta stays up and its
 *   descriptors come back;
 * - a host server that never reads while the guest never reads either (full
 *   buffers both ways): pasta does not spin, a new connection meanwhile gets
 *   through, and all ends once the server goes;
 * - the descriptor limit (EMFILE) reached while connections arrive from both
 *   sides: new ones are refused at once, without spinning, held ones keep
 *   working, and new ones work again once the old ones close;
 * - the namespace's command killed in the middle of a transfer, and SIGTERM
 *   to pasta during transfers: pasta exits, the host's peers see their
 *   connections end, nothing is left in the namespace, the pid file is gone;
 * - a passt client that disconnects in the middle of a frame, and one that
 *   goes away in the middle of a transfer: passt stays up, the host's peer
 *   sees the end, the next client is served; SIGTERM removes the socket file.
 *
 * test/tools/fault-server.ts plays the misbehaving servers,
 * test/tools/conn-holder.ts the client that holds connections open.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { ADDR, BUN, TOOLS, createWorld, describeE2E, isAlive, type Child, type World } from "../world.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";
import { PASST_ENV, startGuest, startPasst } from "../tools/relay.ts";
import { cpuShare, fdCount, fdTargets, netnsOf, processesIn, settledFdCount } from "../tools/proc-stats.ts";

const FAULT_SERVER = join(TOOLS, "fault-server.ts");
const CONN_HOLDER = join(TOOLS, "conn-holder.ts");
/** A looping process at the limit would use a whole CPU; an idle one next to nothing. */
const IDLE_CPU_MAX = 0.25;
const MIB = 1 << 20;

describeE2E("faults (root)", () => {
  let w: World;
  let big: string;
  let port = 31000;
  const nextPort = () => ++port;

  beforeAll(async () => {
    w = await createWorld();
    big = join(w.dir, "big");
    const r = await w.exec(null, ["sh", "-c", `head -c ${64 * MIB} /dev/urandom >${big}`]);
    if (r.code !== 0) throw new Error(r.stderr);
  }, 60000);

  afterAll(async () => {
    await w?.destroy();
  });

  /** A fault server in the host namespace on 127.0.0.1:p, once it listens. */
  async function faultServer(mode: string, p: number, bytes?: number): Promise<Child> {
    const c = w.spawn(w.host, [BUN, FAULT_SERVER, mode, "127.0.0.1", String(p), ...(bytes === undefined ? [] : [String(bytes)])]);
    await c.waitFor("listening");
    return c;
  }

  /** pasta's descriptor count once it is back to want (bounded: 30 s), or the last count seen. */
  async function fdsBackTo(s: PastaSession | number, want: number): Promise<number> {
    const pid = typeof s === "number" ? s : s.pid;
    let n = fdCount(pid);
    for (let i = 0; i < 300 && n !== want; i++) {
      await Bun.sleep(100);
      n = fdCount(pid);
    }
    return n;
  }

  // ------------------------------------------------------------ resets

  test("a host server resets mid-transfer, guest sending and guest receiving: the guest sees the reset, pasta stays up, descriptors come back", async () => {
    const s = await startPasta(w, ["--config-net"]);
    try {
      const base = s.fdCount();
      // the guest sends 64 MiB; the server resets after 4 MiB
      {
        const p = nextPort();
        const srv = await faultServer("read-reset", p, 4 * MIB);
        const r = await s.guest(["socat", "-u", `OPEN:${big}`, `TCP4:${ADDR.gw4}:${p}`], { timeoutMs: 60000 });
        // the server prints "reset" after its close: the client may have seen the reset first
        const reset = await srv.waitFor("reset", { timeoutMs: 10000 }).then(
          () => true,
          () => false,
        );
        const why = `client: ${r.code} ${r.stderr}\nserver: ${srv.stdout()} ${srv.stderr()}\npasta: ${s.log()}`;
        expect(reset, why).toBe(true);
        expect(r.timedOut, why).toBe(false);
        expect(r.code, why).not.toBe(0);
        expect(r.stderr, why).toMatch(/Connection reset by peer|Broken pipe/);
      }
      // the guest receives; the server resets after sending 32 MiB (more than the buffers on the way hold)
      {
        const p = nextPort();
        const srv = await faultServer("send-reset", p, 32 * MIB);
        // -d: socat reports a reset while reading as a warning only
        const r = await s.guest(["socat", "-d", "-u", `TCP4:${ADDR.gw4}:${p}`, "OPEN:/dev/null"], { timeoutMs: 60000 });
        // the server prints "reset" after its close: the client may have seen the reset first
        const reset = await srv.waitFor("reset", { timeoutMs: 10000 }).then(
          () => true,
          () => false,
        );
        const why = `client: ${r.code} ${r.stderr}\nserver: ${srv.stdout()} ${srv.stderr()}\npasta: ${s.log()}`;
        expect(reset, why).toBe(true);
        expect(r.timedOut, why).toBe(false);
        expect(r.stderr, why).toMatch(/Connection reset by peer/);
      }
      expect(s.alive()).toBe(true);
      expect(await fdsBackTo(s, base)).toBe(base);
    } finally {
      await s.stop();
    }
  }, 120000);

  // ------------------------------------------------------------ full both ways

  test("a host server that never reads, a guest that never reads: pasta does not spin, a new connection gets through, all ends with the server", async () => {
    const s = await startPasta(w, ["--config-net"]);
    try {
      const base = s.fdCount();
      const p = nextPort();
      const srv = await faultServer("stall", p);
      // socat -u only writes to the socket: it never reads what the server sends
      const client = s.guestSpawn(["socat", "-u", "OPEN:/dev/zero", `TCP4:${ADDR.gw4}:${p}`]);
      await srv.waitFor("full", { timeoutMs: 30000 });
      const cpu = await cpuShare(s.pid, 2000);
      // meanwhile, a transfer on a new connection
      const p2 = nextPort();
      const out = join(w.dir, `full-${p2}`);
      const rx = w.spawn(w.host, ["socat", "-u", `TCP4-LISTEN:${p2},bind=127.0.0.1,reuseaddr`, `CREATE:${out}`]);
      await waitListen(w, p2);
      const tx = await s.guest(["socat", "-u", `OPEN:${big}`, `TCP4:${ADDR.gw4}:${p2}`], { timeoutMs: 60000 });
      expect(tx.code, tx.stderr).toBe(0);
      expect(await Promise.race([rx.exited, Bun.sleep(30000).then(() => -1)])).toBe(0);
      expect((await w.exec(null, ["cmp", big, out])).code).toBe(0);
      expect(cpu, `pasta used ${cpu} of a CPU with both buffers full`).toBeLessThan(IDLE_CPU_MAX);
      // the server goes: the stalled connection ends, the descriptors come back
      await srv.kill({ signal: "SIGKILL" });
      const code = await Promise.race([client.exited, Bun.sleep(30000).then(() => null)]);
      expect(code, `the guest's client is still there\npasta: ${s.log()}`).not.toBeNull();
      expect(s.alive()).toBe(true);
      expect(await fdsBackTo(s, base)).toBe(base);
    } finally {
      await s.stop();
    }
  }, 120000);

  // ------------------------------------------------------------ EMFILE

  // pasta with its default auto forwarding: its once-a-second scans add
  // listeners for the servers this test starts on either side (the host's
  // echo server is forwarded into the namespace by -T auto and -U auto, the
  // guest's by -u auto), so the idle count is taken once the scans are done;
  // at the limit, the listeners a scan would add are the descriptors it
  // can't have, and the held connections must not notice.
  test("descriptor limit reached: new connections refused at once both ways without spinning, held ones keep working, new ones work again after", async () => {
    const fwd = nextPort();
    const s = await startPasta(w, ["--config-net", "-t", String(fwd)]);
    const echoPort = nextPort();
    const echo = await faultServer("echo", echoPort);
    const guestEcho = s.guestSpawn([BUN, FAULT_SERVER, "echo", "0.0.0.0", String(fwd)]);
    await guestEcho.waitFor("listening");
    let holder: Child | null = null;
    try {
      // room for a few connections (each costs pasta one descriptor)
      const idle = await settledFdCount(s.pid);
      const idleFds = fdTargets(s.pid);
      const limit = idle + 24;
      const pl = await w.exec(null, ["prlimit", `--pid=${s.pid}`, `--nofile=${limit}:${limit}`]);
      expect(pl.code, pl.stderr).toBe(0);
      holder = s.guestSpawn([BUN, CONN_HOLDER, ADDR.gw4, String(echoPort), "200"], { stdin: "pipe" });
      const opened = JSON.parse((await holder.waitFor(/\{"open".*\}/, { timeoutMs: 60000 }))[0]);
      const holderErr = () => holder?.stderr() ?? "";
      const why = () =>
        `holder: ${JSON.stringify(opened)} ${holderErr()}\npasta: fds ${s.fdCount()} (limit ${limit}) ${s.log().slice(-3000)}` +
        `\nidle descriptors: ${idleFds.join(", ")}\nnow: ${fdTargets(s.pid).join(", ")}`;
      // the guest's connection past the limit is refused
      expect(opened.open, why()).toBeGreaterThan(0);
      expect(opened.open, why()).toBeLessThan(200);
      expect(opened.error, why()).toMatch(/ECONNREFUSED|ECONNRESET/);
      // at the limit: a connection from the host to a -t port is refused too, and pasta is idle
      const fromHost = await w.exec(w.host, ["socat", "-u", "-", `TCP4:${ADDR.host4}:${fwd},connect-timeout=10`], {
        input: "x\n",
        timeoutMs: 30000,
      });
      const cpu = await cpuShare(s.pid, 2000);
      expect(fromHost.timedOut, why()).toBe(false);
      expect(cpu, `pasta used ${cpu} of a CPU at the descriptor limit\n${why()}`).toBeLessThan(IDLE_CPU_MAX);
      // the held connections still work
      holder.write("echo\n");
      const echoed = JSON.parse((await holder.waitFor(/\{"echoed".*\}/, { timeoutMs: 30000 }))[0]);
      expect(echoed, why()).toEqual({ echoed: opened.open, failed: 0 });
      // once they close, new connections work again, both ways
      holder.write("close\n");
      await holder.exited;
      holder = null;
      expect(await fdsBackTo(s, idle), why()).toBe(idle);
      const again = await s.guestSh(`echo hello | socat - TCP4:${ADDR.gw4}:${echoPort},connect-timeout=10`, { timeoutMs: 30000 });
      expect(again.stdout.trim(), `${again.stderr}\n${why()}`).toBe("hello");
      const again2 = await w.exec(w.host, ["sh", "-c", `echo hello | socat - TCP4:${ADDR.host4}:${fwd},connect-timeout=10`], {
        timeoutMs: 30000,
      });
      expect(again2.stdout.trim(), `${again2.stderr}\n${why()}`).toBe("hello");
      expect(s.alive()).toBe(true);
    } finally {
      if (holder) await holder.kill();
      await guestEcho.kill();
      await echo.kill();
      await s.stop();
    }
  }, 180000);

  // ------------------------------------------------------------ ending pasta

  /**
   * A pasta with a download and an upload running in its guest (clients in
   * the command's PID namespace, as the command's own children would be),
   * each held open by the host side; returns what the test needs to end it.
   */
  async function pastaWithTransfers(): Promise<{ s: PastaSession; servers: Child[]; clients: Child[]; netns: string }> {
    const s = await startPasta(w, ["--config-net"]);
    const netns = netnsOf(s.guestPid)!;
    const inGuest = ["nsenter", "-t", String(s.guestPid), "-n", "-p", "--"];
    const up = nextPort();
    const down = nextPort();
    // the servers: one reads forever, one sends forever
    const servers = [
      w.spawn(w.host, ["socat", "-u", `TCP4-LISTEN:${up},bind=127.0.0.1,reuseaddr`, "OPEN:/dev/null"]),
      w.spawn(w.host, ["socat", "-u", "OPEN:/dev/zero", `TCP4-LISTEN:${down},bind=127.0.0.1,reuseaddr`]),
    ];
    await waitListen(w, up);
    await waitListen(w, down);
    const clients = [
      w.spawn(null, [...inGuest, "socat", "-u", "OPEN:/dev/zero", `TCP4:${ADDR.gw4}:${up}`]),
      w.spawn(null, [...inGuest, "socat", "-u", `TCP4:${ADDR.gw4}:${down}`, "OPEN:/dev/null"]),
    ];
    // both transfers run: two established connections to the servers, seen from the host
    for (let i = 0; i < 100; i++) {
      const r = await w.exec(w.host, ["ss", "-Htn", "state", "established", `( sport = :${up} or sport = :${down} )`]);
      if (r.stdout.trim().split("\n").filter(Boolean).length >= 2) break;
      await Bun.sleep(50);
    }
    return { s, servers, clients, netns };
  }

  /** After pasta ended: its peers saw their connections end, nothing is left in its namespace. */
  async function expectAllEnded(servers: Child[], clients: Child[], netns: string, log: string): Promise<void> {
    for (const c of [...servers, ...clients]) {
      const code = await Promise.race([c.exited, Bun.sleep(20000).then(() => null)]);
      expect(code, `${c.argv.join(" ")} is still running\npasta: ${log}`).not.toBeNull();
    }
    expect(processesIn(netns), `processes left in the namespace\npasta: ${log}`).toEqual([]);
  }

  test("the namespace's command killed mid-transfer: pasta exits, the host's peers see the end, nothing is left in the namespace", async () => {
    const { s, servers, clients, netns } = await pastaWithTransfers();
    try {
      process.kill(s.guestPid, "SIGKILL");
      const code = await Promise.race([s.child.exited, Bun.sleep(20000).then(() => null)]);
      expect(code, `pasta did not exit\n${s.log()}`).not.toBeNull();
      await expectAllEnded(servers, clients, netns, s.log());
    } finally {
      await s.stop();
      for (const c of [...servers, ...clients]) await c.kill({ graceMs: 200 });
    }
  }, 120000);

  test("SIGTERM to pasta during transfers: it exits with 0, removes its pid file, the peers see the end, nothing is left in the namespace", async () => {
    const { s, servers, clients, netns } = await pastaWithTransfers();
    try {
      process.kill(s.pid, "SIGTERM");
      const code = await Promise.race([s.child.exited, Bun.sleep(20000).then(() => null)]);
      expect(code, `pasta did not exit\n${s.log()}`).toBe(0);
      await expectAllEnded(servers, clients, netns, s.log());
      const pidFile = s.child.argv[s.child.argv.indexOf("-P") + 1]!;
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      await s.stop();
      for (const c of [...servers, ...clients]) await c.kill({ graceMs: 200 });
    }
  }, 120000);

  // ------------------------------------------------------------ passt clients

  test("passt: a client gone mid-frame and one gone mid-transfer; passt stays up, the peer sees the end, the next client is served; SIGTERM removes the socket", async () => {
    const sock = join(w.dir, "faults-passt.socket");
    const passt = await startPasst(w, ["-s", sock], { env: PASST_ENV });
    try {
      const base = fdCount(passt.pid);
      // half a frame: the length says 1000 bytes, 500 come, then the client leaves
      await new Promise<void>((resolve, reject) => {
        const c = net.connect(sock, () => {
          const b = Buffer.alloc(504, 0xab);
          b.writeUInt32BE(1000, 0);
          c.end(b, () => resolve());
        });
        c.on("error", reject);
      });
      await passt.waitFor(/client connection closed/, { stream: "stderr", timeoutMs: 10000 });
      expect(isAlive(passt.pid)).toBe(true);

      // a guest downloading from the host goes away in the middle
      const g = await startGuest(w, ["--socket", sock]);
      await configureGuest(g.exec);
      const p = nextPort();
      const srv = w.spawn(w.host, ["socat", "-u", "OPEN:/dev/zero", `TCP4-LISTEN:${p},bind=127.0.0.1,reuseaddr`]);
      await waitListen(w, p);
      const out = join(w.dir, `passt-gone-${p}`);
      g.spawn(["socat", "-u", `TCP4:${ADDR.gw4}:${p}`, `CREATE:${out}`]);
      for (let i = 0; i < 200 && !(existsSync(out) && Bun.file(out).size > MIB); i++) await Bun.sleep(50);
      expect(Bun.file(out).size).toBeGreaterThan(MIB);
      process.kill(g.child.pid, "SIGKILL");
      const srvCode = await Promise.race([srv.exited, Bun.sleep(20000).then(() => null)]);
      expect(srvCode, `the host's server still runs\npasst: ${passt.stderr()}`).not.toBeNull();
      expect(isAlive(passt.pid)).toBe(true);
      expect(await fdsBackTo(passt.pid, base)).toBe(base);

      // the next client is served
      const g2 = await startGuest(w, ["--socket", sock]);
      await configureGuest(g2.exec);
      const p2 = nextPort();
      const out2 = join(w.dir, `passt-next-${p2}`);
      const rx = w.spawn(w.host, ["socat", "-u", `TCP4-LISTEN:${p2},bind=127.0.0.1,reuseaddr`, `CREATE:${out2}`]);
      await waitListen(w, p2);
      writeFileSync(join(w.dir, "small"), "hello\n".repeat(1000));
      const tx = await g2.exec(["socat", "-u", `OPEN:${join(w.dir, "small")}`, `TCP4:${ADDR.gw4}:${p2}`], { timeoutMs: 30000 });
      expect(tx.code, tx.stderr).toBe(0);
      expect(await Promise.race([rx.exited, Bun.sleep(20000).then(() => -1)])).toBe(0);
      expect((await w.exec(null, ["cmp", join(w.dir, "small"), out2])).code).toBe(0);
      await g2.child.kill();

      process.kill(passt.pid, "SIGTERM");
      const code = await Promise.race([passt.exited, Bun.sleep(20000).then(() => null)]);
      expect(code, passt.stderr()).not.toBeNull();
      expect(existsSync(sock), "passt left its socket file").toBe(false);
    } finally {
      await passt.kill();
    }
  }, 180000);
});

/** The guest's IPv4 address and default route, without DHCP. */
async function configureGuest(exec: (cmd: string[]) => Promise<{ code: number; stderr: string }>): Promise<void> {
  for (const cmd of [
    ["ip", "addr", "add", `${ADDR.host4}/24`, "dev", "eth0"],
    ["ip", "route", "add", "default", "via", ADDR.gw4],
  ]) {
    const r = await exec(cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr}`);
  }
}

/** Wait (bounded) until something listens on TCP port in w's host namespace. */
async function waitListen(w: World, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await w.exec(w.host, ["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await Bun.sleep(50);
  }
  throw new Error(`nothing listens on TCP port ${port}`);
}
