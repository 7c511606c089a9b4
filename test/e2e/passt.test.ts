/**
 * passt end to end, as root, with a real kernel as the guest: a tap in a
 * namespace of its own, relayed to passt's UNIX socket with qemu's framing
 * (test/tools/relay.ts). Through it: dhclient -4, SLAAC, ping, TCP transfers
 * of 4 KiB and 16 MiB both ways compared byte for byte (guest → host loopback
 * via the gateway address, host → guest through -t), 4 MiB each way with 2%
 * of the frames lost each way, a guest that stops reading (passt must wait
 * without spinning and lose nothing), a second client after the first one
 * left, a second connection while one is served, the framing (split and
 * packed frames, bad lengths), -1, -F, the default socket path, and that
 * passt started as root runs as nobody (or --runas).
 *
 * Each test starts its own guest (so every test after the first is also a
 * new client of the same passt) and ends it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { threadStatuses } from "../tools/proc-stats.ts";
import { join } from "node:path";
import { ADDR, createWorld, describeE2E, ensureTestUser, isAlive, repoForUser, type Child, type World } from "../world.ts";
import { prepareDhclient } from "../tools/dhclient.ts";
import { passtArgv, PASST_ENV, startGuest, startPasst, type Guest } from "../tools/relay.ts";

const IF = "eth0";
/** Port the guest listens on, forwarded from the host by -t. */
const FWD_PORT = 10022;
const MIB = 1 << 20;

/** A file of n pseudo-random bytes in dir. */
function randomFile(dir: string, name: string, n: number): string {
  const p = join(dir, name);
  const b = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) crypto.getRandomValues(b.subarray(off, Math.min(n, off + 65536)));
  writeFileSync(p, b);
  return p;
}

/** dhclient -4 in the guest; returns the lease it recorded. */
async function dhcp4(g: Guest): Promise<Record<string, string>> {
  const d = prepareDhclient(4, { iface: IF });
  try {
    const r = await g.exec(["sh", "-c", d.shell], { timeoutMs: 40000 });
    const lease = d.lastBound();
    if (r.code !== 0 || !lease) throw new Error(`dhclient -4 failed (${r.code}): ${r.stderr}\n${JSON.stringify(d.records())}`);
    return lease;
  } finally {
    d.cleanup();
  }
}

/** Wait (bounded) until the guest has a global address in the host's /64 and a default route. */
async function slaac(g: Guest): Promise<string> {
  let last = "";
  for (let i = 0; i < 100; i++) {
    const a = await g.exec(["ip", "-6", "addr", "show", "dev", IF, "scope", "global"]);
    const r = await g.exec(["ip", "-6", "route", "show", "default"]);
    last = a.stdout + r.stdout;
    if (a.stdout.includes(`inet6 ${ADDR.net6}`) && !a.stdout.includes("tentative") && r.stdout.includes(`via ${ADDR.gwLL}`)) return last;
    await Bun.sleep(100);
  }
  throw new Error(`no SLAAC address or route in the guest:\n${last}`);
}

/**
 * Send file src from `from` to `to` over TCP (socat), into dst; resolves
 * when the receiver has written everything. `listen` runs the receiver.
 */
async function transfer(
  listen: (cmd: string[]) => Child,
  send: (cmd: string[]) => Promise<{ code: number; stderr: string }>,
  listenSpec: string,
  connectSpec: string,
  src: string,
  dst: string,
  timeoutMs: number,
): Promise<void> {
  const rx = listen(["socat", "-u", listenSpec, `CREATE:${dst}`]);
  await Bun.sleep(300);
  const tx = await send(["socat", "-u", `OPEN:${src}`, connectSpec]);
  if (tx.code !== 0) {
    await rx.kill();
    throw new Error(`sender failed (${tx.code}): ${tx.stderr}`);
  }
  const code = await Promise.race([rx.exited, Bun.sleep(timeoutMs).then(() => -1)]);
  if (code !== 0) {
    await rx.kill();
    throw new Error(`receiver ${code === -1 ? "timed out" : `exited ${code}`}: ${rx.stderr()}`);
  }
}

/** Size of the file at p, -1 when it does not exist. */
function size(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return -1;
  }
}

function sameFile(a: string, b: string): boolean {
  if (!existsSync(b)) return false;
  return Buffer.compare(readFileSync(a), readFileSync(b)) === 0;
}

let port = 20000;

/**
 * States other than TIME-WAIT (and LISTEN: passt's own -t sockets) of the TCP sockets on port (either end) that
 * are still there after up to 3 s: a closed connection must leave nothing else
 * (a LAST-ACK left means the ACK of a FIN was never delivered).
 */
/** The kernel's TCP RetransSegs counter where exec runs (its network namespace). */
async function retransSegs(exec: (cmd: string[]) => Promise<{ stdout: string }>): Promise<number> {
  const lines = (await exec(["cat", "/proc/net/snmp"])).stdout.split("\n").filter((l) => l.startsWith("Tcp:"));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf("RetransSegs")]);
}

async function leftoverSockets(exec: (cmd: string[]) => Promise<{ stdout: string }>, p: number): Promise<string[]> {
  let states: string[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await exec(["ss", "-Htan", `( sport = :${p} or dport = :${p} )`]);
    states = r.stdout
      .split("\n")
      .map((l) => l.trim().split(/\s+/)[0]!)
      .filter((st) => st && st !== "TIME-WAIT" && st !== "LISTEN");
    if (states.length === 0) break;
    await Bun.sleep(100);
  }
  return states;
}

/** Guest → host: to the gateway address, which is the host's loopback. */
async function guestToHost(w: World, g: Guest, src: string, timeoutMs = 60000): Promise<string> {
  const dst = join(w.dir, `g2h-${++port}`);
  await transfer(
    (cmd) => w.spawn(w.host, cmd),
    (cmd) => g.exec(cmd, { timeoutMs }),
    `TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr`,
    `TCP4:${ADDR.gw4}:${port}`,
    src,
    dst,
    timeoutMs,
  );
  return dst;
}

/** Host → guest: to the host's forwarded port (-t), which passt offers to the guest. */
async function hostToGuest(w: World, g: Guest, src: string, timeoutMs = 60000): Promise<string> {
  const dst = join(w.dir, `h2g-${++port}`);
  await transfer(
    (cmd) => g.spawn(cmd),
    (cmd) => w.exec(w.host, cmd, { timeoutMs }),
    `TCP4-LISTEN:${FWD_PORT},reuseaddr`,
    `TCP4:127.0.0.1:${FWD_PORT}`,
    src,
    dst,
    timeoutMs,
  );
  return dst;
}

describeE2E("passt through a relayed tap (root)", () => {
  let w: World;
  let passt: Child;
  let sock: string;
  let big: string;
  let small: string;

  beforeAll(async () => {
    w = await createWorld();
    sock = join(w.dir, "passt.socket");
    passt = await startPasst(w, ["-s", sock, "-t", String(FWD_PORT), "-u", String(FWD_PORT)]);
    big = randomFile(w.dir, "big", 16 * MIB);
    small = randomFile(w.dir, "small", 4096);
  });
  afterAll(async () => {
    await w?.destroy();
  });

  test("prints the qemu command line for its socket", () => {
    expect(passt.stderr()).toContain(`-netdev stream,id=s,server=off,addr.type=unix,addr.path=${sock} -device virtio-net-pci,netdev=s`);
  });

  test("dhclient -4, SLAAC and ping from the guest", async () => {
    const g = await startGuest(w, ["--socket", sock]);
    try {
      const lease = await dhcp4(g);
      expect(lease).toMatchObject({ interface: IF, new_ip_address: ADDR.host4, new_subnet_mask: "255.255.255.0", new_routers: ADDR.gw4 });
      expect(Number(lease.new_interface_mtu)).toBe(65520);
      await slaac(g);
      const p4 = await g.exec(["ping", "-c1", "-W5", ADDR.remote4]);
      expect(`${p4.code} ${p4.stdout}${p4.stderr}`).toMatch(/^0 .*1 received/s);
      const p6 = await g.exec(["ping", "-6", "-c1", "-W5", ADDR.remote6]);
      expect(`${p6.code} ${p6.stdout}${p6.stderr}`).toMatch(/^0 .*1 received/s);
    } finally {
      await g.child.kill();
    }
  }, 90000);

  test("TCP: a closed connection costs the guest no retransmission (the ACK of its FIN reaches it), both ways", async () => {
    const g = await startGuest(w, ["--socket", sock]);
    try {
      await dhcp4(g);
      for (let round = 0; round < 3; round++) {
        const before = await retransSegs((c) => g.exec(c));
        expect(sameFile(small, await guestToHost(w, g, small))).toBe(true);
        expect(sameFile(small, await hostToGuest(w, g, small))).toBe(true);
        await Bun.sleep(500);
        expect(await retransSegs((c) => g.exec(c)), `round ${round}: segments the guest sent again`).toBe(before);
      }
    } finally {
      await g.child.kill();
    }
  }, 120000);

  test("TCP: 16 MiB and 4 KiB each way, byte for byte", async () => {
    const g = await startGuest(w, ["--socket", sock]);
    try {
      await dhcp4(g);
      for (const f of [small, big]) {
        expect(sameFile(f, await guestToHost(w, g, f))).toBe(true);
        expect(await leftoverSockets((c) => g.exec(c), port), "guest side, guest to host").toEqual([]);
        expect(await leftoverSockets((c) => w.exec(w.host, c), port), "host side, guest to host").toEqual([]);
        expect(sameFile(f, await hostToGuest(w, g, f))).toBe(true);
        expect(await leftoverSockets((c) => g.exec(c), FWD_PORT), "guest side, host to guest").toEqual([]);
        expect(await leftoverSockets((c) => w.exec(w.host, c), FWD_PORT), "host side, host to guest").toEqual([]);
      }
    } finally {
      await g.child.kill();
    }
  }, 120000);

  test("TCP with 2% of the frames lost each way: 4 MiB each way, still byte for byte", async () => {
    const g = await startGuest(w, ["--socket", sock, "--drop", "2"]);
    const medium = randomFile(w.dir, "medium", 4 * MIB);
    try {
      await dhcp4(g);
      expect(sameFile(medium, await guestToHost(w, g, medium, 100000))).toBe(true);
      expect(sameFile(medium, await hostToGuest(w, g, medium, 100000))).toBe(true);
    } finally {
      await g.child.kill();
    }
    // The relay really dropped frames. With 64 KiB offload frames few cross
    // each way (a direction can see no drop at 2%), so count both together.
    const stats = g.child.stderr().match(/"toSockDropped":(\d+).*"toTapDropped":(\d+)/);
    expect(stats, g.child.stderr()).not.toBeNull();
    expect(Number(stats![1]) + Number(stats![2])).toBeGreaterThan(0);
  }, 240000);

  test("the guest stops reading: passt waits without spinning, then goes on without losing a byte", async () => {
    const g = await startGuest(w, ["--socket", sock]);
    const udp: Child[] = [];
    try {
      await dhcp4(g);
      const dst = join(w.dir, `stall-${++port}`);
      const rx = g.spawn(["socat", "-u", `TCP4-LISTEN:${FWD_PORT},reuseaddr`, `CREATE:${dst}`]);
      await Bun.sleep(300);
      const tx = w.exec(w.host, ["socat", "-u", `OPEN:${big}`, `TCP4:127.0.0.1:${FWD_PORT}`], { timeoutMs: 60000 });
      // stop the relay as soon as the first bytes arrived
      for (let i = 0; i < 2000 && size(dst) <= 0; i++) await Bun.sleep(5);
      process.kill(g.child.pid, "SIGUSR1");
      await g.child.waitFor("relay: paused", { stream: "stderr" });
      // and a UDP flood to the guest on top
      for (let i = 0; i < 2; i++) udp.push(w.spawn(w.host, ["socat", "-u", "OPEN:/dev/zero", `UDP4-SENDTO:127.0.0.1:${FWD_PORT}`]));
      await Bun.sleep(500);
      const cpu = await cpuShare(passt.pid, 2000);
      const stalled = size(dst);
      for (const u of udp) await u.kill();
      process.kill(g.child.pid, "SIGUSR1");
      await g.child.waitFor("relay: resumed", { stream: "stderr" });
      expect((await tx).code).toBe(0);
      expect(await Promise.race([rx.exited, Bun.sleep(60000).then(() => -1)])).toBe(0);
      expect(sameFile(big, dst)).toBe(true);
      expect(stalled).toBeGreaterThan(0);
      expect(stalled).toBeLessThan(16 * MIB);
      expect(cpu).toBeLessThan(0.25);
    } finally {
      for (const u of udp) await u.kill();
      await g.child.kill();
    }
  }, 120000);

  test("a new client after one left: DHCP and TCP work again, nothing of the old one is left", async () => {
    const first = await startGuest(w, ["--socket", sock]);
    await dhcp4(first);
    // a connection of the first client, busy: the host side keeps writing
    const server = w.spawn(w.host, ["socat", "-u", "OPEN:/dev/zero", `TCP4-LISTEN:${++port},bind=127.0.0.1,reuseaddr`]);
    await Bun.sleep(300);
    const hold = first.spawn(["socat", "-u", `TCP4:${ADDR.gw4}:${port}`, "OPEN:/dev/null"]);
    await Bun.sleep(500);
    expect(isAlive(hold.pid) && isAlive(server.pid)).toBe(true);
    const before = passt.stderr().length;
    process.kill(first.child.pid, "SIGTERM");
    await first.child.exited;
    // the host side of the old client's connection is reset when the client goes
    expect(await Promise.race([server.exited, Bun.sleep(10000).then(() => "still running")])).not.toBe("still running");
    await hold.kill();
    const second = await startGuest(w, ["--socket", sock]);
    try {
      expect((await dhcp4(second)).new_ip_address).toBe(ADDR.host4);
      expect(sameFile(small, await guestToHost(w, second, small))).toBe(true);
      expect(sameFile(small, await hostToGuest(w, second, small))).toBe(true);
    } finally {
      await second.child.kill();
    }
    const log = passt.stderr().slice(before);
    expect(log).toMatch(/client connection closed/);
    expect(log).toMatch(/accepted connection/);
    expect(isAlive(passt.pid)).toBe(true);
  }, 90000);

  test("a second connection while a client is connected is closed at once", async () => {
    const g = await startGuest(w, ["--socket", sock]);
    try {
      const extra = await rawClient(sock);
      expect(await extra.closed(5000)).toBe(true);
      await passt.waitFor(/discarding connection/, { stream: "stderr", timeoutMs: 5000 });
      expect((await dhcp4(g)).new_ip_address).toBe(ADDR.host4);
    } finally {
      const before = passt.stderr().length;
      await g.child.kill();
      // the next test's client must not arrive while passt still serves this one (it would be discarded)
      const deadline = performance.now() + 5000;
      while (!/client connection closed/.test(passt.stderr().slice(before)) && performance.now() < deadline) await Bun.sleep(20);
    }
  }, 60000);

  test("framing: frames split across writes and packed together, then a bad length closes the client", async () => {
    const c = await rawClient(sock);
    const arp = arpRequest(ADDR.gw4);
    const one = withLength(arp);
    // byte by byte: every read ends inside a length or a frame
    for (let i = 0; i < one.length; i++) {
      c.write(one.subarray(i, i + 1));
      await Bun.sleep(2);
    }
    const reply = await c.frame(5000);
    expect(isArpReplyFrom(reply, ADDR.gw4)).toBe(true);
    // three frames in one write
    c.write(Buffer.concat([one, one, one]));
    for (let i = 0; i < 3; i++) expect(isArpReplyFrom(await c.frame(5000), ADDR.gw4)).toBe(true);
    const before = passt.stderr().length;
    c.write(new Uint8Array([0, 0, 0, 0]));
    expect(await c.closed(5000)).toBe(true);
    await Bun.sleep(100);
    expect(passt.stderr().slice(before)).toMatch(/bad frame length 0/);

    const c2 = await rawClient(sock);
    c2.write(new Uint8Array([0, 1, 0, 14]));
    expect(await c2.closed(5000)).toBe(true);
    expect(passt.stderr().slice(before)).toMatch(/bad frame length 65550/);

    const c3 = await rawClient(sock);
    c3.write(one);
    expect(isArpReplyFrom(await c3.frame(5000), ADDR.gw4)).toBe(true);
    c3.end();
    expect(isAlive(passt.pid)).toBe(true);
  }, 60000);

  test("started as root, it runs as nobody (every thread, no groups)", () => {
    const ids = threadIds(passt.pid);
    expect(ids.length).toBeGreaterThan(0);
    for (const t of ids)
      expect(t).toEqual({
        uid: "65534 65534 65534 65534",
        gid: `${nobodyGid()} ${nobodyGid()} ${nobodyGid()} ${nobodyGid()}`,
        groups: "",
        capEff: "0000000000000000",
      });
  });

  test("as an ordinary user: serves a guest, stays that user", async () => {
    const user = ensureTestUser();
    const repo = repoForUser(user);
    const su = join(w.dir, "user.socket");
    const p = await startPasst(w, ["-1", "-s", su], { user, repo });
    const g = await startGuest(w, ["--socket", su]);
    try {
      expect((await dhcp4(g)).new_ip_address).toBe(ADDR.host4);
      expect(sameFile(small, await guestToHost(w, g, small))).toBe(true);
      for (const t of threadIds(p.pid)) expect(t.uid).toBe(`${user.uid} ${user.uid} ${user.uid} ${user.uid}`);
      expect(p.stderr()).not.toMatch(/nobody/);
    } finally {
      await g.child.kill();
      await p.kill();
    }
  }, 60000);

  test("--runas UID:GID", async () => {
    const s2 = join(w.dir, "runas.socket");
    const p = await startPasst(w, ["-s", s2, "--runas", "1234:4321"]);
    try {
      await Bun.sleep(200);
      for (const t of threadIds(p.pid))
        expect(t).toEqual({ uid: "1234 1234 1234 1234", gid: "4321 4321 4321 4321", groups: "", capEff: "0000000000000000" });
    } finally {
      await p.kill();
    }
  }, 30000);

  test("-t all -u all: any non-ephemeral port reaches the guest", async () => {
    const sa = join(w.dir, "all.socket");
    const t0 = performance.now();
    const p = await startPasst(w, ["-1", "-s", sa, "-t", "all", "-u", "all"]);
    const startMs = performance.now() - t0;
    const g = await startGuest(w, ["--socket", sa]);
    try {
      await dhcp4(g);
      const dst = join(w.dir, `all-${++port}`);
      const rx = g.spawn(["socat", "-u", "TCP4-LISTEN:1042,reuseaddr", `CREATE:${dst}`]);
      await Bun.sleep(300);
      const tx = await w.exec(w.host, ["socat", "-u", `OPEN:${small}`, "TCP4:127.0.0.1:1042"]);
      expect(tx.code, `${tx.stderr}\n${p.stderr()}`).toBe(0);
      expect(await Promise.race([rx.exited, Bun.sleep(20000).then(() => -1)])).toBe(0);
      expect(sameFile(small, dst)).toBe(true);
      const urx = g.spawn(["socat", "-u", "UDP4-RECV:1043", `CREATE:${dst}.udp`]);
      await Bun.sleep(300);
      await w.exec(w.host, ["sh", "-c", "echo datagram | socat -u - UDP4-SENDTO:127.0.0.1:1043"]);
      for (let i = 0; i < 50 && size(`${dst}.udp`) <= 0; i++) await Bun.sleep(100);
      await urx.kill();
      expect(readFileSync(`${dst}.udp`, "utf8")).toBe("datagram\n");
    } finally {
      await g.child.kill();
      await p.kill();
    }
    console.log(`passt -t all -u all: socket ready after ${startMs.toFixed(0)} ms`);
  }, 90000);

  test("-1: passt exits when its client leaves", async () => {
    const s1 = join(w.dir, "one-off.socket");
    const p = await startPasst(w, ["-1", "-s", s1]);
    const g = await startGuest(w, ["--socket", s1]);
    await dhcp4(g);
    process.kill(g.child.pid, "SIGTERM");
    await g.child.exited;
    const code = await Promise.race([p.exited, Bun.sleep(10000).then(() => "still running")]);
    expect(code).toBe(0);
    expect(p.stderr()).toMatch(/client connection closed.*exiting/);
  }, 60000);

  test("-F: a connected socket handed over; exits when it closes", async () => {
    const pidFile = join(w.dir, "fd.pid");
    // the relay lives in the guest's namespace: passt must go back to the host's
    const g = await startGuest(w, ["--spawn", "--", "ip", "netns", "exec", w.host, ...passtArgv(["-f", "-F", "3", "--pid", pidFile])]);
    let pid = 0;
    try {
      const lease = await dhcp4(g);
      expect(lease.new_ip_address).toBe(ADDR.host4);
      expect(sameFile(small, await guestToHost(w, g, small))).toBe(true);
      pid = Number(readFileSync(pidFile, "utf8"));
      expect(isAlive(pid)).toBe(true);
    } finally {
      if (isAlive(g.child.pid)) process.kill(g.child.pid, "SIGTERM");
      await g.child.exited;
    }
    for (let i = 0; i < 100 && isAlive(pid); i++) await Bun.sleep(100);
    expect(isAlive(pid)).toBe(false);
  }, 60000);

  test("without -f: goes to the background once its socket is ready", async () => {
    const sb = join(w.dir, "bg.socket");
    const pidFile = join(w.dir, "bg.pid");
    const r = await w.exec(w.host, passtArgv(["-1", "-s", sb, "--pid", pidFile]), { env: PASST_ENV, timeoutMs: 20000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`addr.path=${sb}`);
    const pid = Number(readFileSync(pidFile, "utf8"));
    expect(isAlive(pid)).toBe(true);
    const g = await startGuest(w, ["--socket", sb]);
    try {
      expect((await dhcp4(g)).new_ip_address).toBe(ADDR.host4);
    } finally {
      process.kill(g.child.pid, "SIGTERM");
      await g.child.exited;
    }
    for (let i = 0; i < 100 && isAlive(pid); i++) await Bun.sleep(100);
    expect(isAlive(pid)).toBe(false);
  }, 60000);

  test("without -s: the first free /tmp/passt_N.socket", async () => {
    const p = w.spawn(w.host, passtArgv(["-f"]), { env: PASST_ENV });
    try {
      const m = await p.waitFor(/addr\.path=(\S+)/, { stream: "stderr", timeoutMs: 20000 });
      expect(m[1]).toMatch(/^\/tmp\/passt_\d+\.socket$/);
      expect(existsSync(m[1]!)).toBe(true);
    } finally {
      await p.kill();
    }
  }, 30000);
});

// ---------------------------------------------------------------- helpers

/** Share of one CPU that pid used during the next ms milliseconds (utime + stime). */
async function cpuShare(pid: number, ms: number): Promise<number> {
  const ticks = () => {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8")
      .replace(/^.*\) /s, "")
      .split(" ");
    return Number(f[11]) + Number(f[12]);
  };
  const t0 = ticks();
  const start = performance.now();
  await Bun.sleep(ms);
  return (ticks() - t0) / 100 / ((performance.now() - start) / 1000);
}

/** gid of nobody (nogroup on Debian). */
function nobodyGid(): string {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("nobody:"));
  return line ? line.split(":")[3]! : "65534";
}

/** Uid, Gid, Groups and CapEff lines of every thread of pid. */
function threadIds(pid: number): { uid: string; gid: string; groups: string; capEff: string }[] {
  const out = [];
  for (const st of threadStatuses(pid).values()) {
    const f = (k: string) => (st.match(new RegExp(`^${k}:[ \\t]*(.*)$`, "m"))?.[1] ?? "?").trim().split(/\s+/).join(" ");
    out.push({ uid: f("Uid"), gid: f("Gid"), groups: f("Groups"), capEff: f("CapEff") });
  }
  return out;
}

/** The frame with its 32-bit big-endian length in front, as on passt's socket. */
function withLength(frame: Uint8Array): Buffer {
  const b = Buffer.alloc(4 + frame.length);
  b.writeUInt32BE(frame.length, 0);
  b.set(frame, 4);
  return b;
}

const GUEST_MAC = [0x02, 0, 0, 0, 0, 0x42];

function ip4Bytes(a: string): number[] {
  return a.split(".").map(Number);
}

/** A broadcast ARP request from the guest (ADDR.host4) for target. */
function arpRequest(target: string): Uint8Array {
  return new Uint8Array([
    ...[255, 255, 255, 255, 255, 255],
    ...GUEST_MAC,
    0x08,
    0x06,
    0,
    1,
    0x08,
    0,
    6,
    4,
    0,
    1,
    ...GUEST_MAC,
    ...ip4Bytes(ADDR.host4),
    0,
    0,
    0,
    0,
    0,
    0,
    ...ip4Bytes(target),
  ]);
}

function isArpReplyFrom(f: Uint8Array, addr: string): boolean {
  if (f.length < 42 || f[12] !== 0x08 || f[13] !== 0x06 || f[21] !== 2) return false;
  return ip4Bytes(addr).every((x, k) => f[28 + k] === x) && GUEST_MAC.every((x, k) => f[k] === x);
}

interface RawClient {
  write(b: Uint8Array): void;
  end(): void;
  /** the next whole frame passt sends (without its length) */
  frame(timeoutMs: number): Promise<Uint8Array>;
  /** true once passt closed the connection (false after timeoutMs) */
  closed(timeoutMs: number): Promise<boolean>;
}

/** A bare client of passt's socket, speaking the framing by hand. */
async function rawClient(path: string): Promise<RawClient> {
  const { createConnection } = await import("node:net");
  const s = createConnection({ path });
  let buf = Buffer.alloc(0);
  let ended = false;
  // passt may close a connection before the connect completes here: that is "closed" too
  await new Promise<void>((res) => {
    s.once("connect", () => res());
    s.once("error", () => {
      ended = true;
      res();
    });
  });
  const wake = new Set<() => void>();
  const notify = () => {
    for (const f of [...wake]) f();
  };
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    notify();
  });
  s.on("close", () => {
    ended = true;
    notify();
  });
  s.on("error", () => {});
  const until = <T>(get: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise((res, rej) => {
      const check = () => {
        const v = get();
        if (v !== undefined) {
          done();
          res(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        rej(new Error(`timeout waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        wake.delete(check);
      };
      wake.add(check);
      check();
    });
  return {
    write: (b) => void s.write(b),
    end: () => void s.end(),
    frame: (t) =>
      until(
        () => {
          if (buf.length < 4 || buf.length < 4 + buf.readUInt32BE(0)) return undefined;
          const n = buf.readUInt32BE(0);
          const f = new Uint8Array(buf.subarray(4, 4 + n));
          buf = buf.subarray(4 + n);
          return f;
        },
        t,
        "a frame from passt",
      ),
    closed: (t) => until(() => (ended ? true : undefined), t, "passt to close the connection").catch(() => false),
  };
}
