/**
 * Scale and churn (issue 15, part 3), end to end, as root, in counts scaled
 * down from the bench's (bench/robustness.ts runs the full sizes):
 *
 *   - HOLD connections open at once from the namespace to the host, through
 *     the tap (to the gateway address) and through the spliced path (to the
 *     namespace's loopback, -T), a byte each way on each;
 *   - CHURN connections one after another (connect, a byte each way, the
 *     server closes);
 *   - UDP_FLOWS UDP flows one after another, each from a new source port,
 *     more than the UDP table may hold at once (pasta's descriptor limit is
 *     set so that its share for UDP is UDP_BUDGET).
 *
 * Each asserts that every connection or flow got through and that pasta's
 * descriptors come back to their count once the connections are closed (or
 * the flows expired); the UDP flows never hold more than the table's bound.
 * Resident memory is printed, per open connection too, not asserted.
 *
 * The peers are test/tools/conns.c (built here with cc): one epoll server on
 * the host, clients in the namespace. Traffic stays in the test world.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, TOOLS, createWorld, describeE2E, nofileHardLimit, type Child, type World } from "../world.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";

/**
 * Descriptors for pasta and the peers: room for the spliced connections (6
 * each in pasta), within the hard limit we may give (no CAP_SYS_RESOURCE in
 * some containers: 20000 here). A quarter of it bounds pasta's UDP table.
 */
const NOFILE = Math.min(32768, nofileHardLimit());
const UDP_BUDGET = Math.min(8192, Math.floor(NOFILE / 4));
const HOLD = Math.min(3000, Math.floor((NOFILE - 500) / 6));
const CHURN = 10000;
const UDP_FLOWS = UDP_BUDGET + 4000;
/** UDP flows expire after this (PASTA_UDP_TIMEOUT_MS). */
const UDP_TIMEOUT_MS = 3000;
/** The host's server (TCP and UDP), also the -T port. */
const PORT = 6001;
/** Every peer gets this descriptor limit. */
const PEER_LIMIT = ["prlimit", `--nofile=${NOFILE}:${NOFILE}`, "--"];

describeE2E("scale and churn (root)", () => {
  let w: World;
  let s: PastaSession | null = null;
  let conns = "";
  let server: Child | null = null;

  beforeAll(async () => {
    w = await createWorld();
    conns = join(w.dir, "conns");
    const cc = Bun.which("cc") ?? Bun.which("gcc");
    if (!cc) throw new Error("no C compiler (cc) to build test/tools/conns.c: install gcc (.ci/run does)");
    const built = await w.exec(null, [cc, "-O2", "-Wall", "-o", conns, join(TOOLS, "conns.c")]);
    if (built.code !== 0) throw new Error(`test/tools/conns.c did not build: ${built.stderr}`);
    server = w.spawn(w.host, [...PEER_LIMIT, conns, "server", String(PORT)]);
    await server.waitFor("ready");
    s = await startPasta(w, ["--config-net", "-T", String(PORT)], {
      launcher: ["prlimit", `--nofile=${NOFILE}:${NOFILE}`, "--"],
      env: { PASTA_UDP_TIMEOUT_MS: String(UDP_TIMEOUT_MS) },
    });
  }, 60_000);

  afterAll(async () => {
    await s?.stop();
    await w?.destroy();
  });

  /** pasta's resident set, in KiB. */
  function rssKiB(): number {
    const m = readFileSync(`/proc/${s!.pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : 0;
  }

  /** Wait (bounded) for pasta's descriptors to come down to n; returns the count. */
  async function fdsBackTo(n: number, ms = 20_000): Promise<number> {
    let fds = s!.fdCount();
    for (const end = Date.now() + ms; fds > n && Date.now() < end; fds = s!.fdCount()) await Bun.sleep(100);
    return fds;
  }

  /** HOLD connections from the guest to host:port, all open at once, then closed. */
  async function holdMany(what: string, host: string) {
    // one connection first: the spliced path fills its pools of pipes and sockets at its first use
    const warm = await s!.guest([conns, "churn", host, String(PORT), "1", "10"], { timeoutMs: 15_000 });
    expect(warm.stdout.trim(), warm.stderr).toBe("done 1 failed 0");
    await Bun.sleep(500);
    const before = { fds: s!.fdCount(), rss: rssKiB() };
    const until = join(w.dir, `close-${what}`);
    const client = s!.guestSpawn([...PEER_LIMIT, conns, "hold", host, String(PORT), String(HOLD), "60", until]);
    try {
      const m = await client.waitFor(/held (\d+) failed (\d+)/, { timeoutMs: 60_000 });
      const open = { fds: s!.fdCount(), rss: rssKiB() };
      const perConn = ((open.rss - before.rss) * 1024) / HOLD;
      writeFileSync(until, "");
      await client.waitFor(/closed \d+/, { timeoutMs: 20_000 });
      const after = await fdsBackTo(before.fds);
      console.log(
        `${what}: ${m[1]} held; pasta's descriptors ${before.fds} before, ${open.fds} open, ${after} after; ` +
          `RSS ${before.rss} KiB before, ${open.rss} open (${perConn.toFixed(0)} bytes per connection), ${rssKiB()} after`,
      );
      expect(Number(m[1]), `${client.stdout()}${client.stderr()}\n${s!.log().slice(-2000)}`).toBe(HOLD);
      expect(open.fds).toBeGreaterThanOrEqual(before.fds + HOLD);
      expect(after).toBe(before.fds);
    } finally {
      if (!existsSync(until)) writeFileSync(until, "");
      await client.kill({ graceMs: 2000 });
    }
  }

  test(`${HOLD} connections at once through the tap: all held, descriptors back to their count after`, async () => {
    await holdMany("tap", ADDR.gw4);
  }, 90_000);

  test(`${HOLD} connections at once through the spliced path: all held, descriptors back to their count after`, async () => {
    await holdMany("splice", "127.0.0.1");
  }, 90_000);

  test(`${CHURN} connections one after another through the tap: all through, descriptors back to their count`, async () => {
    const before = { fds: s!.fdCount(), rss: rssKiB() };
    const r = await s!.guest([...PEER_LIMIT, conns, "churn", ADDR.gw4, String(PORT), String(CHURN), "90"], { timeoutMs: 100_000 });
    const after = await fdsBackTo(before.fds);
    console.log(
      `churn: ${r.stdout.trim()}; pasta's descriptors ${before.fds} before, ${after} after; RSS ${before.rss} KiB before, ${rssKiB()} after`,
    );
    expect(r.stdout.trim(), r.stderr).toBe(`done ${CHURN} failed 0`);
    expect(after).toBe(before.fds);
  }, 120_000);

  test(`${UDP_FLOWS} UDP flows one after another, more than the table holds: all through, at most ${UDP_BUDGET} sockets, then none`, async () => {
    const before = { fds: s!.fdCount(), rss: rssKiB() };
    let maxFds = before.fds;
    let running = true;
    const sampler = (async () => {
      while (running) {
        maxFds = Math.max(maxFds, s!.fdCount());
        await Bun.sleep(50);
      }
    })();
    const r = await s!.guest([...PEER_LIMIT, conns, "udp", ADDR.gw4, String(PORT), String(UDP_FLOWS), "90"], { timeoutMs: 100_000 });
    running = false;
    await sampler;
    const after = await fdsBackTo(before.fds, UDP_TIMEOUT_MS + 10_000);
    console.log(
      `udp flows: ${r.stdout.trim()}; pasta's descriptors ${before.fds} before, at most ${maxFds}, ${after} after; RSS ${before.rss} KiB before, ${rssKiB()} after`,
    );
    expect(r.stdout.trim(), r.stderr).toBe(`done ${UDP_FLOWS} failed 0`);
    // the table's sockets, and a few that come and go (the spliced path's pools refilling)
    expect(maxFds).toBeLessThanOrEqual(before.fds + UDP_BUDGET + 16);
    expect(after).toBe(before.fds);
  }, 120_000);
});
