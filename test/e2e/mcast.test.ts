/**
 * Multicast and broadcast UDP through pasta and passt, end to end, as root
 * (issue 19; src/flows/mcast.ts), with real tools only:
 *
 * - a socat in the guest that joins a group (ip-add-membership /
 *   ipv6-join-group) receives what the upstream namespace, and a process of
 *   the host itself, send to the group; the host's eth0 is a member while
 *   it is (ip maddr), and no longer once it has left;
 * - a guest kernel forced to IGMPv2 and MLDv1 joins and leaves as well;
 * - what the guest sends to a group reaches a receiver upstream and one on
 *   the host, with the guest's TTL (tcpdump upstream); a limited broadcast
 *   reaches upstream too;
 * - host broadcasts (limited and subnet) to a port the guest broadcast to
 *   reach it as broadcast frames, and no unicast copy of them (pcap);
 * - an mDNS query (dig) from the guest is answered by a responder outside
 *   (test/tools/mdns-responder.ts), by unicast to its port and by multicast
 *   to a guest that asks from port 5353 and joined 224.0.0.251;
 * - tshark finds well-formed IGMPv3 and MLDv2 general queries from us in the
 *   pcap;
 * - a guest that floods reports for thousands of groups, and malformed
 *   ones, gets at most MCAST_MAX_GROUPS of them joined, one log line, and
 *   the drops counted (test/tools/mcast-reports.ts writes them);
 * - a guest joined for one source only (IGMPv3 and MLDv2 INCLUDE, iperf2's
 *   --ssm-host) gets no frame from another source (pcap), and the host's
 *   own membership is for that source only (/proc/net/mcfilter, mcfilter6); with more
 *   sources than the host takes per socket, we filter them ourselves;
 * - passt, with a relayed guest: the mDNS exchange from port 5353, and a
 *   guest that only listens (a port forwarded with -u, mDNS's port);
 * - --no-udp: no group is joined.
 *
 * Queries every PASTA_MCAST_QUERY_MS = 2 s here, so that memberships also
 * expire within the test.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, BUN, TOOLS, createWorld, describeE2E, type Child, type World } from "../world.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";
import { startGuest, startPasst } from "../tools/relay.ts";

const QUERY_MS = 2000;
const ENV = { PASTA_MCAST_QUERY_MS: String(QUERY_MS) };
const GROUP4 = "239.1.2.3";
const GROUP6 = "ff15::1234";
const RESPONDER = join(TOOLS, "mdns-responder.ts");
const FLOOD = join(TOOLS, "mcast-reports.ts");
/** An mDNS query for upstream.local, type A, class IN (printf escapes). */
const MDNS_QUERY = "\\000\\000\\000\\000\\000\\001\\000\\000\\000\\000\\000\\000\\010upstream\\005local\\000\\000\\001\\000\\001";

describeE2E("multicast (root)", () => {
  let w: World;
  let s: PastaSession | null = null;
  const pcap = () => join(w.dir, "mcast.pcap");

  beforeAll(async () => {
    w = await createWorld();
    s = await startPasta(w, ["--config-net", "-p", pcap(), "--stats", "1"], { env: ENV });
  });

  afterAll(async () => {
    await s?.stop();
    await w?.destroy();
  });

  /** Bounded wait for cond, polling every 100 ms. */
  async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 15000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond()) return;
      await Bun.sleep(100);
    }
    throw new Error(`timed out: ${what}\npasta: ${s?.log().slice(-4000)}`);
  }

  const fileHas = (f: string, text: string) => existsSync(f) && readFileSync(f, "utf8").includes(text);
  const hostGroups = async () => (await w.exec(w.host, ["ip", "maddr", "show", "dev", "eth0"])).stdout;

  /** A socat in the guest that joins group (v4 or v6) on its eth0 and writes what it receives on port to a file. */
  function guestReceiver(v6: boolean, group: string, port: number, out: string): Child {
    const addr = v6 ? `UDP6-RECV:${port},ipv6-join-group=[${group}]:eth0` : `UDP4-RECV:${port},ip-add-membership=${group}:eth0`;
    return s!.guestSpawn(["socat", "-u", addr, `CREATE:${out}`]);
  }

  /** Send text to group:port from namespace ns (through its interface ifname) until cond holds (bounded). */
  async function sendUntil(
    ns: string | null,
    v6: boolean,
    group: string,
    port: number,
    ifname: string,
    text: string,
    cond: () => boolean,
  ): Promise<void> {
    const target = v6
      ? `UDP6-DATAGRAM:[${group}]:${port},ipv6-join-group=[${group}]:${ifname}`
      : `UDP4-DATAGRAM:${group}:${port},ip-multicast-if=${ifaddr4(ns)}`;
    await until(`${text} to ${group}:${port}`, async () => {
      await w.exec(ns, ["sh", "-c", `echo ${text} | socat -u - '${target}'`]);
      await Bun.sleep(200);
      return cond();
    });
  }

  function ifaddr4(ns: string | null): string {
    return ns === w.upstream ? ADDR.gw4 : ADDR.host4;
  }

  /** The last values of the mcast counters in --stats lines of log. */
  function counters(log: string): Record<string, number> {
    const lines = log.split("\n").filter((l) => l.includes("stats:") && l.includes("mcast:"));
    const m = /mcast: ([^;]*)/.exec(lines.at(-1) ?? "");
    const out: Record<string, number> = {};
    const f = (m?.[1] ?? "").trim().split(/\s+/);
    for (let k = 0; k + 1 < f.length; k += 2) out[f[k]!] = Number(f[k + 1]);
    return out;
  }

  /** A responder for upstream.local in the upstream namespace. */
  async function responder(): Promise<Child> {
    const r = w.spawn(w.upstream, [BUN, RESPONDER, "--if", ADDR.gw4, "--name", "upstream.local", "--addr", ADDR.gw4]);
    await r.waitFor("mdns-responder ready", { timeoutMs: 15000 });
    return r;
  }

  /** Run and spawn in a guest's network namespace (pasta's, or a relayed passt guest's). */
  interface GuestNs {
    exec(cmd: string[]): Promise<{ stdout: string }>;
    spawn(cmd: string[]): Child;
  }

  /** The A record's address in an answer (192.0.2.1), as the hex of its bytes: queries don't carry it. */
  const ANSWER_HEX = "c0000201";

  /**
   * An mDNS query for upstream.local from an ephemeral port of the guest
   * ("legacy unicast", answered by unicast), until an answer comes
   * (bounded); the hex of what came back.
   */
  async function mdnsLegacyQuery(g: GuestNs): Promise<string> {
    for (let i = 0; i < 10; i++) {
      const r = await g.exec([
        "sh",
        "-c",
        `printf '${MDNS_QUERY}' | socat -t2 -T2 - UDP4-DATAGRAM:224.0.0.251:5353 | od -An -tx1 -v | tr -d ' \\n'`,
      ]);
      if (r.stdout.includes(ANSWER_HEX)) return r.stdout;
    }
    return "";
  }

  /**
   * As an mDNS resolver does: a socket on port 5353 joined to 224.0.0.251
   * (shared with SO_REUSEADDR), then queries from port 5353, answered by
   * multicast, until the joined socket has an answer (bounded). Returns
   * whether it came.
   */
  async function mdnsMulticastQuery(g: GuestNs, out: string): Promise<boolean> {
    const rx = g.spawn(["socat", "-u", "UDP4-RECV:5353,reuseaddr,ip-add-membership=224.0.0.251:eth0", `CREATE:${out}`]);
    const answered = () => existsSync(out) && readFileSync(out).toString("hex").includes(ANSWER_HEX);
    try {
      // (passt learns the port from the queries: the host joins only once they go)
      await until("the guest joined 224.0.0.251", async () =>
        (await g.exec(["ip", "maddr", "show", "dev", "eth0"])).stdout.includes("224.0.0.251"),
      );
      for (let i = 0; i < 20 && !answered(); i++) {
        await g.exec([
          "sh",
          "-c",
          `printf '${MDNS_QUERY}' | socat -u - UDP4-DATAGRAM:224.0.0.251:5353,bind=:5353,reuseaddr,ip-multicast-ttl=255`,
        ]);
        await Bun.sleep(250);
      }
      return answered();
    } finally {
      await rx.kill();
    }
  }

  test("IPv4: the guest joins a group; what upstream and the host send to it reaches the guest; leaving drops the host's membership", async () => {
    const out = join(w.dir, "recv4");
    const rx = guestReceiver(false, GROUP4, 5001, out);
    await until("the host joined the group", async () => (await hostGroups()).includes(GROUP4));
    await sendUntil(w.upstream, false, GROUP4, 5001, "gw0", "from-upstream", () => fileHas(out, "from-upstream"));
    await sendUntil(w.host, false, GROUP4, 5001, "eth0", "from-host", () => fileHas(out, "from-host"));
    await rx.kill();
    await until("the host left the group", async () => !(await hostGroups()).includes(GROUP4));
    // and nothing sent to the group reaches the guest any more
    for (let i = 0; i < 3; i++)
      await w.exec(w.upstream, ["sh", "-c", `echo after-leave | socat -u - 'UDP4-DATAGRAM:${GROUP4}:5001,ip-multicast-if=${ADDR.gw4}'`]);
    await Bun.sleep(500);
    expect((await framesTo(5001)).map((f) => f.text.trim())).not.toContain("after-leave");
  });

  test("IPv6: the guest joins a group (MLD); what upstream and the host send to it reaches the guest; leaving drops the membership", async () => {
    const out = join(w.dir, "recv6");
    const rx = guestReceiver(true, GROUP6, 5003, out);
    await until("the host joined the group", async () => (await hostGroups()).includes(GROUP6));
    await sendUntil(w.upstream, true, GROUP6, 5003, "gw0", "from-upstream6", () => fileHas(out, "from-upstream6"));
    await sendUntil(w.host, true, GROUP6, 5003, "eth0", "from-host6", () => fileHas(out, "from-host6"));
    await rx.kill();
    await until("the host left the group", async () => !(await hostGroups()).includes(GROUP6));
  });

  test("the guest's group traffic reaches receivers upstream and on the host, with the guest's TTL; a limited broadcast reaches upstream", async () => {
    const up = join(w.dir, "up4");
    const onHost = join(w.dir, "host4");
    const upRx = w.spawn(w.upstream, ["socat", "-u", "UDP4-RECV:5002,ip-add-membership=239.1.2.4:gw0", `CREATE:${up}`]);
    const hostRx = w.spawn(w.host, ["socat", "-u", "UDP4-RECV:5002,reuseaddr,ip-add-membership=239.1.2.4:eth0", `CREATE:${onHost}`]);
    const dump = w.spawn(w.upstream, ["tcpdump", "-l", "-n", "-v", "-c", "1", "-i", "gw0", "udp port 5002"]);
    await dump.waitFor(/listening on/, { stream: "stderr", timeoutMs: 10000 });
    await until("the guest's datagram upstream and on the host", async () => {
      await s!.guest(["sh", "-c", "echo from-guest | socat -u - UDP4-DATAGRAM:239.1.2.4:5002,ip-multicast-ttl=7"]);
      await Bun.sleep(200);
      return fileHas(up, "from-guest") && fileHas(onHost, "from-guest");
    });
    await dump.exited;
    expect(dump.stdout()).toMatch(/ttl 7\b/);
    const bcast = join(w.dir, "bcast");
    const bRx = w.spawn(w.upstream, ["socat", "-u", "UDP4-RECV:5004,so-broadcast", `CREATE:${bcast}`]);
    await until("the guest's broadcast upstream", async () => {
      await s!.guest(["sh", "-c", "echo from-guest-bcast | socat -u - UDP4-DATAGRAM:255.255.255.255:5004,broadcast"]);
      await Bun.sleep(200);
      return fileHas(bcast, "from-guest-bcast");
    });
    for (const c of [upRx, hostRx, bRx]) await c.kill();
  });

  test("host broadcasts to a port the guest broadcast to reach it as broadcast frames, and not a second time as unicast", async () => {
    const out = join(w.dir, "bcast-in");
    const rx = s!.guestSpawn(["socat", "-u", "UDP4-RECV:5040,reuseaddr", `CREATE:${out}`]);
    // pasta's default -u auto forwards the port from the host as soon as the guest binds it: that socket must not deliver them too
    await until(
      "the -u auto socket on the host's port 5040",
      async () => (await w.exec(w.host, ["ss", "-Hlun", "sport = :5040"])).stdout.trim() !== "",
    );
    // as LAN discovery does: the guest broadcasts from and to the port it listens on
    const r = await s!.guest([
      "sh",
      "-c",
      "echo hello | socat -u - UDP4-DATAGRAM:255.255.255.255:5040,broadcast,sourceport=5040,reuseaddr",
    ]);
    expect(r.code, r.stderr).toBe(0);
    for (const [dst, text] of [
      ["255.255.255.255", "to-limited"],
      ["192.0.2.255", "to-subnet"],
    ]) {
      await until(`${text} in the guest`, async () => {
        await w.exec(w.upstream, ["sh", "-c", `echo ${text} | socat -u - 'UDP4-DATAGRAM:${dst}:5040,broadcast,bind=${ADDR.gw4}'`]);
        await Bun.sleep(200);
        return fileHas(out, text);
      });
    }
    const frames = await w.exec(null, [
      "tshark",
      "-r",
      pcap(),
      "-Y",
      "udp.dstport == 5040",
      "-T",
      "fields",
      "-e",
      "eth.dst",
      "-e",
      "ip.dst",
    ]);
    const seen = new Set(frames.stdout.trim().split("\n"));
    expect([...seen].sort(), frames.stderr).toEqual(["ff:ff:ff:ff:ff:ff\t192.0.2.255", "ff:ff:ff:ff:ff:ff\t255.255.255.255"]);
    await until("the broadcasts counted", () => (counters(s!.log()).broadcastToGuest ?? 0) >= 2);
    await rx.kill();
  });

  /** The frames to the guest's UDP port in the pcap: source address and payload (as text). */
  async function framesTo(port: number, v6 = false): Promise<{ src: string; text: string }[]> {
    const r = await w.exec(null, [
      "tshark",
      "-r",
      pcap(),
      "-Y",
      `udp.dstport == ${port}`,
      "-T",
      "fields",
      "-e",
      v6 ? "ipv6.src" : "ip.src",
      "-e",
      "data.data",
    ]);
    return r.stdout
      .trim()
      .split("\n")
      .filter((l) => l.includes("\t"))
      .map((l) => {
        const [src, hex] = l.split("\t");
        return { src: src!, text: Buffer.from(hex!.replace(/:/g, ""), "hex").toString() };
      });
  }

  test("source filters: a guest joined to a group for one source (IGMPv3 INCLUDE, iperf2 --ssm-host) gets nothing from another", async () => {
    const group = "239.1.2.6";
    const rx = s!.guestSpawn(["iperf", "-s", "-u", "-p", "5020", "-B", `${group}%eth0`, "-H", ADDR.gw4]);
    await until("the host joined the group", async () => (await hostGroups()).includes(group));
    // the host's own membership is for that source only (/proc/net/mcfilter: device, group, source, INCLUDE and EXCLUDE counts)
    await until("the host's filter: the group from 192.0.2.1 only", async () =>
      /eth0 0xef010206 0xc0000201\s+1\s+0\b/.test((await w.exec(w.host, ["cat", "/proc/net/mcfilter"])).stdout),
    );
    const send = (text: string, from: string) =>
      w.exec(w.upstream, ["sh", "-c", `echo ${text} | socat -u - 'UDP4-DATAGRAM:${group}:5020,bind=${from},ip-multicast-if=${ADDR.gw4}'`]);
    const arrived = async (text: string) => (await framesTo(5020)).some((f) => f.text.startsWith(text));
    await until("the included source's datagram", async () => {
      await send("from-gw", ADDR.gw4);
      return arrived("from-gw");
    });
    // datagrams from another source, then one more from the included one: once that one is in, the others would have been too
    for (let i = 0; i < 3; i++) await send("from-remote", ADDR.remote4);
    await until("the last datagram from the included source", async () => {
      await send("last-from-gw", ADDR.gw4);
      return arrived("last-from-gw");
    });
    const sources = new Set((await framesTo(5020)).map((f) => f.src));
    expect([...sources]).toEqual([ADDR.gw4]);
    await rx.kill();
  });

  test("IPv6 source filters: a guest joined to ff3e::5:6 for one source (MLDv2, iperf2 -V --ssm-host) gets nothing from another; the host's membership is for that source", async () => {
    const group = "ff3e::5:6";
    const rx = s!.guestSpawn(["iperf", "-s", "-u", "-V", "-p", "5024", "-B", `${group}%eth0`, "-H", ADDR.gw6]);
    await until("the host joined the group", async () => (await hostGroups()).includes(group));
    await until("the host's filter: the group from 2001:db8::1 only", async () =>
      /eth0\s+ff3e0000000000000000000000050006\s+20010db8000000000000000000000001\s+1\s+0\b/.test(
        (await w.exec(w.host, ["cat", "/proc/net/mcfilter6"])).stdout,
      ),
    );
    const send = (text: string, from: string) =>
      w.exec(w.upstream, ["sh", "-c", `echo ${text} | socat -u - 'UDP6-DATAGRAM:[${group}]:5024,bind=[${from}],so-bindtodevice=gw0'`]);
    const arrived = async (text: string) => (await framesTo(5024, true)).some((f) => f.text.startsWith(text));
    await until("the included source's datagram", async () => {
      await send("from-gw6", ADDR.gw6);
      return arrived("from-gw6");
    });
    for (let i = 0; i < 3; i++) await send("from-remote6", ADDR.remote6);
    await until("the last datagram from the included source", async () => {
      await send("last-from-gw6", ADDR.gw6);
      return arrived("last-from-gw6");
    });
    expect([...new Set((await framesTo(5024, true)).map((f) => f.src))]).toEqual([ADDR.gw6]);
    await rx.kill();
  });

  test("a source list longer than the host takes (INCLUDE of 11 sources, over igmp_max_msf): the host joins any source, we still deliver the listed ones only", async () => {
    const group = "239.1.2.11";
    // a bound port for the guest (pasta learns it from the namespace), and a report its kernel could not send for one socket
    const rx = s!.guestSpawn(["socat", "-u", "UDP4-RECV:5022", "/dev/null"]);
    const listed = [ADDR.remote4, ...Array.from({ length: 10 }, (_, i) => `10.9.9.${i + 1}`)];
    const report = async () => {
      const r = await s!.guest([
        BUN,
        FLOOD,
        "--if",
        "eth0",
        "--groups",
        "0",
        "--bad",
        "0",
        "--src4",
        ADDR.host4,
        "--include",
        `${group}:${listed.join(",")}`,
      ]);
      expect(r.code, r.stderr).toBe(0);
    };
    const send = (text: string, from: string) =>
      w.exec(w.upstream, ["sh", "-c", `echo ${text} | socat -u - 'UDP4-DATAGRAM:${group}:5022,bind=${from},ip-multicast-if=${ADDR.gw4}'`]);
    const arrived = async (text: string) => (await framesTo(5022)).some((f) => f.text.startsWith(text));
    // (nobody in the guest re-reports the group: each step reports it again, within its membership interval)
    await until("a listed source's datagram", async () => {
      await report();
      await send("from-listed", ADDR.remote4);
      return arrived("from-listed");
    });
    await report();
    for (let i = 0; i < 3; i++) await send("from-unlisted", ADDR.gw4);
    await until("the last datagram from a listed source", async () => {
      await send("last-from-listed", ADDR.remote4);
      return arrived("last-from-listed");
    });
    expect([...new Set((await framesTo(5022)).map((f) => f.src))]).toEqual([ADDR.remote4]);
    await until("the unlisted ones refused by us, counted", () => (counters(s!.log()).filtered ?? 0) >= 3);
    expect(counters(s!.log()).hostFilterFull ?? 0).toBeGreaterThan(0);
    await rx.kill();
  });

  test("mDNS: a query from the guest is answered from outside, by unicast to an ephemeral port and by multicast to port 5353", async () => {
    const r = await responder();
    try {
      const g: GuestNs = { exec: (cmd) => s!.guest(cmd), spawn: (cmd) => s!.guestSpawn(cmd) };
      expect(await mdnsLegacyQuery(g), r.stdout()).toContain(ANSWER_HEX);
      expect(r.stdout()).toContain("-> unicast");
      expect(await mdnsMulticastQuery(g, join(w.dir, "mdns-pasta")), r.stdout()).toBe(true);
      expect(r.stdout()).toContain("port 5353 -> multicast");
      // our own query, looped back to our socket for the group by the host, did not go back to the guest
      await until("the looped query counted", () => (counters(s!.log()).looped ?? 0) > 0);
    } finally {
      await r.kill();
    }
  });

  test("tshark finds well-formed IGMPv3 and MLDv2 general queries from us in the pcap", async () => {
    await Bun.sleep(QUERY_MS + 500);
    const q4 = await w.exec(null, [
      "tshark",
      "-r",
      pcap(),
      "-Y",
      "igmp.type == 0x11",
      "-T",
      "fields",
      "-e",
      "ip.src",
      "-e",
      "ip.dst",
      "-e",
      "ip.ttl",
      "-e",
      "igmp.version",
      "-e",
      "igmp.max_resp",
      "-e",
      "ip.opt.ra",
    ]);
    const first4 = q4.stdout.trim().split("\n")[0]!.split("\t");
    expect(first4.slice(0, 4), q4.stderr).toEqual([ADDR.gw4, "224.0.0.1", "1", "3"]);
    const q6 = await w.exec(null, [
      "tshark",
      "-r",
      pcap(),
      "-Y",
      "icmpv6.type == 130",
      "-T",
      "fields",
      "-e",
      "ipv6.dst",
      "-e",
      "ipv6.hlim",
      "-e",
      "icmpv6.mld.maximum_response_code",
      "-e",
      "icmpv6.checksum.status",
    ]);
    const first6 = q6.stdout.trim().split("\n")[0]!.split("\t");
    expect(first6[0], q6.stderr).toBe("ff02::1");
    expect(first6[1]).toBe("1");
    const bad = await w.exec(null, [
      "tshark",
      "-r",
      pcap(),
      "-Y",
      "(igmp || icmpv6.type == 130) && (_ws.malformed || _ws.expert.severity >= warning)",
    ]);
    expect(bad.stdout.trim(), bad.stdout).toBe("");
  });

  test("a flood of reports for thousands of groups and malformed ones: at most 256 joined, one log line, drops counted; groups nobody re-reports expire, a real member's stays", async () => {
    const keep = join(w.dir, "keep");
    const rx = guestReceiver(false, "239.1.2.9", 5010, keep);
    await until("the host joined 239.1.2.9", async () => (await hostGroups()).includes("239.1.2.9"));
    await Bun.sleep(1500);
    const before = counters(s!.log());
    const fds = s!.fdCount();
    const r = await s!.guest([BUN, FLOOD, "--if", "eth0", "--groups", "3000", "--bad", "10", "--src4", ADDR.host4], { timeoutMs: 60000 });
    expect(r.code, r.stderr).toBe(0);
    const sent = JSON.parse(r.stdout.trim());
    await until("the counters moved", () => (counters(s!.log()).notGroup ?? 0) - (before.notGroup ?? 0) >= sent.notGroup);
    await Bun.sleep(1500);
    const after = counters(s!.log());
    expect(after.malformed! - before.malformed!).toBe(sent.malformed);
    expect(after.badChecksum! - before.badChecksum!).toBe(sent.badChecksum);
    expect(after.notGroup! - before.notGroup!).toBe(sent.notGroup);
    expect(after.groupLimit! - before.groupLimit!).toBeGreaterThan(0);
    const joined = (await hostGroups()).split("\n").filter((l) => l.includes("239.200.")).length;
    expect(joined).toBeGreaterThan(0);
    expect(joined).toBeLessThanOrEqual(256);
    expect(s!.fdCount() - fds).toBeLessThanOrEqual(512);
    expect(s!.log().match(/group limit \(256\) is reached/g)?.length).toBe(1);
    // nobody answers our queries for the flooded groups: gone after the membership interval; the real member stays
    await until("the flooded groups expired", async () => !(await hostGroups()).includes("239.200."), 20000);
    expect(await hostGroups()).toContain("239.1.2.9");
    await sendUntil(w.upstream, false, "239.1.2.9", 5010, "gw0", "still-here", () => fileHas(keep, "still-here"));
    await rx.kill();
  }, 90000);

  test("passt: an mDNS exchange from port 5353 through a relayed guest", async () => {
    const sock = join(w.dir, "passt.socket");
    const passt = await startPasst(w, ["-s", sock], { env: ENV });
    const r = await responder();
    const g = await startGuest(w, ["--socket", sock]);
    try {
      for (const cmd of [
        ["ip", "addr", "add", `${ADDR.host4}/24`, "dev", "eth0"],
        ["ip", "route", "add", "default", "via", ADDR.gw4],
      ]) {
        const res = await g.exec(cmd);
        expect(res.code, res.stderr).toBe(0);
      }
      const ns: GuestNs = { exec: (cmd) => g.exec(cmd, { timeoutMs: 10000 }), spawn: (cmd) => g.spawn(cmd) };
      expect(await mdnsMulticastQuery(ns, join(w.dir, "mdns-passt")), r.stdout() + passt.stderr()).toBe(true);
      expect(r.stdout()).toContain("port 5353 -> multicast");
    } finally {
      await g.child.kill();
      await r.kill();
      await passt.kill();
    }
  });

  test("passt: a guest that only listens gets group traffic on a port forwarded with -u and on mDNS's port", async () => {
    const sock = join(w.dir, "passt-listen.socket");
    const passt = await startPasst(w, ["-s", sock, "-u", "5031"], { env: ENV });
    const g = await startGuest(w, ["--socket", sock]);
    const outU = join(w.dir, "passt-listen-u");
    const outM = join(w.dir, "passt-listen-mdns");
    try {
      const res = await g.exec(["ip", "addr", "add", `${ADDR.host4}/24`, "dev", "eth0"]);
      expect(res.code, res.stderr).toBe(0);
      const rxU = g.spawn(["socat", "-u", "UDP4-RECV:5031,ip-add-membership=239.1.2.8:eth0", `CREATE:${outU}`]);
      const rxM = g.spawn(["socat", "-u", "UDP4-RECV:5353,ip-add-membership=224.0.0.251:eth0", `CREATE:${outM}`]);
      await until("the host joined both groups", async () => {
        const m = await hostGroups();
        return m.includes("239.1.2.8") && m.includes("224.0.0.251");
      });
      await sendUntil(w.upstream, false, "239.1.2.8", 5031, "gw0", "to-listener", () => fileHas(outU, "to-listener"));
      await sendUntil(w.upstream, false, "224.0.0.251", 5353, "gw0", "to-mdns", () => fileHas(outM, "to-mdns"));
      await rxU.kill();
      await rxM.kill();
    } finally {
      await g.child.kill();
      await passt.kill();
    }
  });

  // near the end: the guest's kernel may stay in its IGMPv2 / MLDv1 compatibility mode a while after the sysctls are back
  test("a guest kernel speaking IGMPv2 and MLDv1 (force_igmp_version, force_mld_version) joins and leaves: v2 reports and leaves, v1 reports and dones", async () => {
    const force = (v4: string, v6: string) =>
      s!.guest(["sysctl", "-q", "-w", `net.ipv4.conf.eth0.force_igmp_version=${v4}`, `net.ipv6.conf.eth0.force_mld_version=${v6}`]);
    expect((await force("2", "1")).code).toBe(0);
    try {
      const leaves = counters(s!.log()).leaves ?? 0;
      const out4 = join(w.dir, "recv-v2");
      const out6 = join(w.dir, "recv-v1");
      const rx4 = guestReceiver(false, "239.1.2.12", 5025, out4);
      const rx6 = guestReceiver(true, "ff15::1212", 5026, out6);
      await until("the host joined both groups", async () => {
        const m = await hostGroups();
        return m.includes("239.1.2.12") && m.includes("ff15::1212");
      });
      await sendUntil(w.upstream, false, "239.1.2.12", 5025, "gw0", "to-v2", () => fileHas(out4, "to-v2"));
      await sendUntil(w.upstream, true, "ff15::1212", 5026, "gw0", "to-v1", () => fileHas(out6, "to-v1"));
      await rx4.kill();
      await rx6.kill();
      await until("the host left both groups", async () => {
        const m = await hostGroups();
        return !m.includes("239.1.2.12") && !m.includes("ff15::1212");
      });
      await until("both leaves counted", () => (counters(s!.log()).leaves ?? 0) >= leaves + 2);
      const seen = await w.exec(null, [
        "tshark",
        "-r",
        pcap(),
        "-Y",
        "igmp.type == 0x16 || igmp.type == 0x17 || icmpv6.type == 131 || icmpv6.type == 132",
        "-T",
        "fields",
        "-e",
        "igmp.type",
        "-e",
        "icmpv6.type",
      ]);
      const kinds = new Set(
        seen.stdout
          .trim()
          .split("\n")
          .map((l) => l.replace(/\t/g, "")),
      );
      for (const k of ["0x16", "0x17", "131", "132"]) expect(kinds, seen.stderr).toContain(k);
    } finally {
      await force("0", "0");
    }
  });

  test("--no-udp: the guest's reports join nothing", async () => {
    await s!.stop();
    s = await startPasta(w, ["--config-net", "--no-udp"], { env: ENV });
    const rx = guestReceiver(false, "239.1.2.5", 5005, join(w.dir, "noudp"));
    await Bun.sleep(2500);
    expect(await hostGroups()).not.toContain("239.1.2.5");
    await rx.kill();
  });
});
