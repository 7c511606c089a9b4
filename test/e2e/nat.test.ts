/**
 * Address translation options, end to end, as root (issue 14; src/flows/nat.ts):
 *
 *   --map-host-loopback 192.0.2.99 / fe80::99: TCP, UDP and ping from the
 *     namespace to that address reach the host's loopback, UDP answers come
 *     back from it; the gateway address no longer reaches the loopback;
 *   --map-guest-addr 169.254.1.2 / fd00::2 (Podman's host.containers.internal):
 *     TCP and UDP from the namespace to that address reach servers bound on the
 *     host's own address (eth0 of the host namespace), answers come back from
 *     it, and connections from the host's own address to a -t port appear
 *     from it in the namespace;
 *   --dns-forward with --dns-host: dig over UDP and TCP to the --dns-forward
 *     address reaches the test DNS responder at the --dns-host address (not
 *     the resolv.conf one, where nothing listens) and its answer comes back
 *     from the --dns-forward address.
 *
 * Clients and servers are socat, ping and dig; every wait is bounded.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ADDR, createWorld, describeE2E, type Child, type World } from "../world.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";

const IF = "eth0";
const MAP_LO4 = "192.0.2.99";
const MAP_LO6 = "fe80::99";
const MAP_GUEST4 = "169.254.1.2";
const MAP_GUEST6 = "fd00::2";
const DNS_FWD4 = "192.0.2.53";
const DNS_FWD6 = "2001:db8::53";

type Family = 4 | 6;

describeE2E("address translation options (root)", () => {
  let w: World;
  let s: PastaSession | null = null;
  let nextPort = 9400;
  const port = () => nextPort++;

  beforeAll(async () => {
    w = await createWorld();
  }, 60000);

  afterAll(async () => {
    await s?.stop();
    await w?.destroy();
  });

  /** A pasta with args (plus --config-net), replacing the previous one. */
  async function pasta(args: string[]): Promise<PastaSession> {
    await s?.stop();
    s = await startPasta(w, ["--config-net", ...args]);
    return s;
  }

  /** socat address of host addr (with %eth0 when link-local) and port. */
  function to(proto: "TCP" | "UDP", fam: Family, addr: string, p: number): string {
    if (fam === 4) return `${proto}4:${addr}:${p}`;
    return `${proto}6:[${addr}${addr.startsWith("fe80:") ? `%${IF}` : ""}]:${p}`;
  }

  /** Wait (bounded) until something is bound to port (TCP listening or UDP) in the host namespace, or in the guest. */
  async function waitBound(where: "host" | "guest", proto: "TCP" | "UDP", p: number): Promise<void> {
    const cmd = ["ss", proto === "TCP" ? "-Hltn" : "-Hlun", `sport = :${p}`];
    for (let i = 0; i < 100; i++) {
      const r = where === "host" ? await w.exec(w.host, cmd) : await s!.guest(cmd);
      if (r.stdout.trim()) return;
      await Bun.sleep(50);
    }
    throw new Error(`nothing bound to ${proto} port ${p} in ${where}`);
  }

  /**
   * A server in the host namespace on bind:p that answers each connection or
   * datagram with "PROTO-ok PEER" (the peer address it saw).
   */
  async function hostServer(proto: "TCP" | "UDP", fam: Family, bind: string, p: number): Promise<Child> {
    const b = fam === 4 ? bind : `[${bind}]`;
    const listen = proto === "TCP" ? `TCP${fam}-LISTEN:${p},bind=${b},reuseaddr,fork` : `UDP${fam}-RECVFROM:${p},bind=${b},fork`;
    const srv = w.spawn(w.host, ["socat", "-T5", listen, `SYSTEM:echo ${proto}-ok $SOCAT_PEERADDR`]);
    await waitBound("host", proto, p);
    return srv;
  }

  /**
   * socat argv of a client that reads the server's answer: TCP only reads
   * (a request left unread would make the server's close a reset), UDP sends
   * one datagram first.
   */
  function client(proto: "TCP" | "UDP", target: string): string[] {
    return proto === "TCP" ? ["socat", "-T5", "-u", target, "STDOUT"] : ["sh", "-c", `echo hello | socat -t3 -T5 - ${target}`];
  }

  /** From the guest: one exchange with the server at addr:p; its answer (addresses made canonical), or the failure. */
  async function ask(proto: "TCP" | "UDP", fam: Family, addr: string, p: number): Promise<string> {
    const r = await s!.guest(client(proto, to(proto, fam, addr, p)), { timeoutMs: 15000 });
    return r.code === 0 ? canonLine(r.stdout) : `failed (${r.code}): ${r.stderr.trim()}`;
  }

  const loopback = (fam: Family) => (fam === 4 ? "127.0.0.1" : "::1");
  const hostAddr = (fam: Family) => (fam === 4 ? ADDR.host4 : ADDR.host6);
  /** socat's $SOCAT_PEERADDR of an address, made canonical: IPv6 in brackets */
  const peerText = (fam: Family, a: string) => (fam === 4 ? a : `[${a}]`);

  test("--map-host-loopback: TCP, UDP and ping to the address reach the host's loopback; the gateway no longer does", async () => {
    const ss = await pasta(["--map-host-loopback", MAP_LO4, "--map-host-loopback", MAP_LO6]);
    const why = () => `pasta: ${ss.log()}`;
    for (const fam of [4, 6] as Family[]) {
      const map = fam === 4 ? MAP_LO4 : MAP_LO6;
      for (const proto of ["TCP", "UDP"] as const) {
        const p = port();
        const srv = await hostServer(proto, fam, loopback(fam), p);
        try {
          // UDP: the guest's socat is connected, so the answer must come from the mapped address
          expect(await ask(proto, fam, map, p), why()).toBe(`${proto}-ok ${peerText(fam, loopback(fam))}`);
          // the gateway is the real gateway again: nothing listens there
          const gw = fam === 4 ? ADDR.gw4 : ADDR.gwLL;
          if (proto === "TCP") expect(await ask(proto, fam, gw, p), why()).toStartWith("failed");
        } finally {
          await srv.kill({ graceMs: 500 });
        }
      }
      const ping = await ss.guest(["ping", `-${fam}`, "-c1", "-W3", fam === 4 ? map : `${map}%${IF}`], { timeoutMs: 10000 });
      expect(ping.code, `${ping.stdout}${ping.stderr}\n${why()}`).toBe(0);
    }
  }, 120000);

  test("--map-guest-addr: TCP and UDP to the address reach the host's own address; the host's own address appears from it", async () => {
    const fwd4 = port();
    const fwd6 = port();
    const ss = await pasta(["--map-guest-addr", MAP_GUEST4, "--map-guest-addr", MAP_GUEST6, "-t", `${fwd4},${fwd6}`]);
    const why = () => `pasta: ${ss.log()}`;
    for (const fam of [4, 6] as Family[]) {
      const map = fam === 4 ? MAP_GUEST4 : MAP_GUEST6;
      for (const proto of ["TCP", "UDP"] as const) {
        const p = port();
        const srv = await hostServer(proto, fam, hostAddr(fam), p);
        try {
          // the host's socket reaches its own address, from its own address
          expect(await ask(proto, fam, map, p), why()).toBe(`${proto}-ok ${peerText(fam, hostAddr(fam))}`);
        } finally {
          await srv.kill({ graceMs: 500 });
        }
      }
      // inbound: a connection from the host's own address to a -t port comes from the mapped address
      const fp = fam === 4 ? fwd4 : fwd6;
      const srv = ss.guestSpawn([
        "socat",
        "-T5",
        `TCP${fam}-LISTEN:${fp},reuseaddr${fam === 6 ? ",ipv6only=1" : ""}`,
        "SYSTEM:echo in-ok $SOCAT_PEERADDR",
      ]);
      try {
        await waitBound("guest", "TCP", fp);
        const bind = fam === 4 ? ADDR.host4 : `[${ADDR.host6}]`;
        const r = await w.exec(w.host, client("TCP", `${to("TCP", fam, hostAddr(fam), fp)},bind=${bind}`), { timeoutMs: 15000 });
        expect(canonLine(r.stdout), `${r.stderr}\n${why()}`).toBe(`in-ok ${peerText(fam, map)}`);
      } finally {
        await srv.kill({ graceMs: 500 });
      }
    }
  }, 120000);

  test("--dns-forward with --dns-host: dig over UDP and TCP reaches the resolver at --dns-host, answered from the --dns-forward address", async () => {
    // the responder listens on the remote addresses only: resolv.conf's server (ADDR.dns4/6) has nobody
    await w.startDns(["--listen", ADDR.remote4, "--listen", ADDR.remote6]);
    const ss = await pasta(["--dns-forward", DNS_FWD4, "--dns-forward", DNS_FWD6, "--dns-host", ADDR.remote4, "--dns-host", ADDR.remote6]);
    const why = () => `pasta: ${ss.log()}\ndns responder: ${w.dns?.stdout()}`;
    for (const [server, type, want] of [
      [DNS_FWD4, "A", ADDR.remote4],
      [DNS_FWD6, "AAAA", ADDR.remote6],
    ] as const) {
      for (const tcp of [false, true]) {
        const r = await ss.guest(
          ["dig", "+time=3", "+tries=2", "+noall", "+answer", "+stats", ...(tcp ? ["+tcp"] : []), `@${server}`, ADDR.remoteName, type],
          { timeoutMs: 20000 },
        );
        const tag = `dig ${tcp ? "+tcp " : ""}@${server} ${type}: ${r.code} ${r.stdout}${r.stderr}\n${why()}`;
        expect(r.code, tag).toBe(0);
        expect(r.stdout, tag).toMatch(new RegExp(`\\sIN\\s+${type}\\s+${want.replace(/\./g, "\\.")}\\s`));
        // dig checks that the answer comes from the server it asked
        expect(r.stdout, tag).toContain(`SERVER: ${server}#53(${server}) (${tcp ? "TCP" : "UDP"})`);
      }
    }
    // the responder saw every query, over both transports, from the host's address
    const log = w.dns!.stdout();
    for (const [type, from] of [
      ["A", ADDR.host4],
      ["AAAA", ADDR.host6],
    ] as const) {
      for (const t of ["udp", "tcp"])
        expect(log, why()).toMatch(
          new RegExp(`query ${type} ${ADDR.remoteName.replace(/\./g, "\\.")} from ${from} port \\d+ ${t} -> NOERROR`),
        );
    }
  }, 120000);
});

/** A line of output with its bracketed IPv6 addresses in canonical form (socat prints them in full). */
function canonLine(text: string): string {
  return text.trim().replace(/\[([0-9a-fA-F:]+)\]/g, (_m, a: string) => new URL(`http://[${a}]/`).hostname);
}
