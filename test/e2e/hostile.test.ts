/**
 * A hostile guest, through the real tap: while two TCP transfers run (one
 * each way, between the guest and the host's loopback through the gateway
 * address), a raw socket in the guest writes random and mutated frames
 * (test/tools/hostile-frames.ts: bad headers and lengths, extension chains,
 * fragments, flag soup, options of every length, zero windows, segments of
 * both live connections far out of their windows). Then:
 *
 * - pasta (passt) is still up, both transfers are byte-exact;
 * - the dispatcher's drop counters (--stats) account for the junk: every frame the
 *   generator made malformed is counted as malformed, every frame of a
 *   protocol nobody serves as unhandled (less what the interface itself
 *   dropped, which the generator reports);
 * - once the flows the junk opened have ended, the descriptor count is back
 *   where it was, and the resident memory grew by less than RSS_GROWTH_MAX.
 *
 * The transfers are held open until the junk is done (the sender keeps its
 * last MiB back until a flag file appears), so that the connections live
 * through all of it and their last data and FINs come after it.
 *
 * Sizes: HOSTILE_FRAMES frames and HOSTILE_MIB MiB per transfer; the nightly
 * size (PASTA_TEST_NIGHTLY=1) is 2 million frames and 256 MiB. PASTA_TEST_CMD
 * / PASST_TEST_CMD run the reference instead: it must stay up and deliver
 * every byte; its counters, descriptors and memory are printed ("hostile
 * figures:"), not asserted (its idle flows live 60 s and 180 s).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, BUN, TOOLS, createWorld, describeE2E, type Child, type World } from "../world.ts";
import { startPasta, type PastaSession } from "../tools/pasta-session.ts";
import { PASST_ENV, startGuest, startPasst, type Guest } from "../tools/relay.ts";
import { fdCount, rssBytes } from "../tools/proc-stats.ts";

const NIGHTLY = process.env.PASTA_TEST_NIGHTLY === "1";
const FRAMES = Number(process.env.HOSTILE_FRAMES) || (NIGHTLY ? 2_000_000 : 100_000);
const MIB = Number(process.env.HOSTILE_MIB) || (NIGHTLY ? 256 : 32);
const GENERATOR = join(TOOLS, "hostile-frames.ts");
/** Resident memory may grow this much over the run (heap pages the collector keeps). */
const RSS_GROWTH_MAX = 48 << 20;
/** Per-test bound, generous for the nightly size. */
const TEST_MS = NIGHTLY ? 1_800_000 : 300_000;
/** Idle UDP and ICMP echo flows end after this (ours; the reference keeps its own timeouts). */
const FLOW_TIMEOUT_MS = 1000;
/** Source ports of the guest's ends of the live connections. */
const UP_SPORT = 41001;
const DOWN_SPORT = 41002;

interface GenResult {
  frames: number;
  sent: number;
  sendErrors: number;
  byFate: { malformed: number; unhandled: number; handled: number };
  byClass: Record<string, number>;
  txPackets: number;
  txDropped: number;
  live: { seq: number; ack: number } | null;
  pauses: number;
  ms: number;
}

/** What the program under test is and where its guest lives, for the shared steps. */
interface Target {
  label: string;
  /** pid of pasta or passt */
  pid: number;
  /** argv prefix that runs a command in the guest's network namespace */
  enter: string[];
  alive(): boolean;
  log(): string;
  /** stop it; resolves when it has exited */
  stop(): Promise<void>;
  /** ours (not a reference binary given by PASTA_TEST_CMD / PASST_TEST_CMD) */
  ours: boolean;
}

/**
 * The counters of group name in the last --stats line our program logged
 * ("stats: tap: rxFrames 1 ...; dispatch: frames 2 malformed 3 ...; tcp: ..."),
 * or null. --stats rather than -d: debug logging of every flow grows the
 * resident memory we measure (its strings, outside the JavaScript heap: with
 * -d, about 10 MB per 400000 junk frames; without, none).
 */
function counters(log: string, name: string): Record<string, number> | null {
  const lines = log.split("\n").filter((l) => l.includes("stats: "));
  const group = lines
    .at(-1)
    ?.split("stats: ")[1]
    ?.split("; ")
    .find((g) => g.startsWith(`${name}: `));
  if (!group) return null;
  const f = group.slice(name.length + 2).split(" ");
  const out: Record<string, number> = {};
  for (let k = 0; k + 1 < f.length; k += 2) out[f[k]!] = Number(f[k + 1]);
  return out;
}

/**
 * The dispatcher's counters once they account for frames frames and at least
 * malformed malformed ones (--stats logs them within a second of a change):
 * the last ones logged after a bounded wait (30 s).
 */
async function dispatchStats(t: { log(): string }, frames: number, malformed: number): Promise<Record<string, number> | null> {
  let c = counters(t.log(), "dispatch");
  for (let i = 0; i < 300 && !(c && c.frames! >= frames && c.malformed! >= malformed); i++) {
    await Bun.sleep(100);
    c = counters(t.log(), "dispatch");
  }
  return c;
}

describeE2E("hostile guest (root)", () => {
  let w: World;
  let file: string;

  beforeAll(async () => {
    w = await createWorld();
    file = join(w.dir, "payload");
    const r = await w.exec(null, ["sh", "-c", `head -c ${MIB << 20} /dev/urandom >${file}`], { timeoutMs: 120000 });
    if (r.code !== 0) throw new Error(`cannot make ${file}: ${r.stderr}`);
    // sends file $1, but its last MiB only once file $2 exists (waits 300 s at most)
    writeFileSync(
      join(w.dir, "held.sh"),
      'size=$(stat -c %s "$1"); head -c $((size - 1048576)) "$1"\n' +
        'i=0; while [ ! -e "$2" ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i+1)); done\n' +
        'tail -c 1048576 "$1"\n',
    );
  }, 180000);

  afterAll(async () => {
    await w?.destroy();
  });

  let runs = 0;

  /**
   * The common body: baseline, transfers held open, the generator aimed at
   * both, release, checks. gen: extra generator arguments (addresses).
   */
  async function hostileRun(t: Target, gen: string[]): Promise<void> {
    const n = ++runs;
    const t0 = performance.now();
    const marks: Record<string, number> = {};
    const mark = (what: string) => (marks[what] = Math.round(performance.now() - t0));
    const upPort = 30000 + 10 * n;
    const downPort = upPort + 1;
    const flag = join(w.dir, `release-${n}`);
    const upOut = join(w.dir, `up-${n}`);
    const downOut = join(w.dir, `down-${n}`);
    const held = join(w.dir, "held.sh");
    const genArgv = (frames: number, seed: number, flow: string | null) => [
      ...t.enter,
      BUN,
      GENERATOR,
      "--frames",
      String(frames),
      "--seed",
      String(seed),
      ...gen,
      ...(flow ? ["--flow4", flow] : []),
    ];
    const generator = (frames: number, seed: number, flow: string | null) =>
      w.exec(null, genArgv(frames, seed, flow), { timeoutMs: TEST_MS });
    const finished = async (c: Child) => {
      const code = await Promise.race([c.exited, Bun.sleep(TEST_MS).then(() => -1)]);
      return { code, stdout: c.stdout(), stderr: c.stderr() };
    };
    const parse = (r: { code: number; stdout: string; stderr: string }, what: string): GenResult => {
      if (r.code !== 0) throw new Error(`${what}: exit ${r.code}\n${r.stderr}\n${t.log().slice(-3000)}`);
      return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    };

    // the tap's queue as long as a burst of junk, so that the interface drops little of it
    const q = await w.exec(null, [...t.enter, "ip", "link", "set", "eth0", "txqueuelen", "10000"]);
    expect(q.code, q.stderr).toBe(0);
    // warm-up: the junk's code paths compiled, its flows opened and ended; then the baseline
    const fdsBase = fdCount(t.pid);
    const warm = parse(await generator(Math.min(20000, FRAMES), 99, null), "warm-up generator");
    const fdsWarm = await fdsBackTo(t.pid, fdsBase);
    if (t.ours) expect(fdsWarm, `descriptors after the warm-up\n${t.log().slice(-3000)}`).toBe(fdsBase);
    const rssBase = rssBytes(t.pid);
    mark("baseline");

    const servers: Child[] = [];
    try {
      servers.push(w.spawn(w.host, ["socat", "-u", `TCP4-LISTEN:${upPort},bind=127.0.0.1,reuseaddr`, `CREATE:${upOut}`]));
      servers.push(
        w.spawn(w.host, ["socat", "-t", "30", `TCP4-LISTEN:${downPort},bind=127.0.0.1,reuseaddr`, `EXEC:sh ${held} ${file} ${flag}`]),
      );
      await waitListen(w, upPort);
      await waitListen(w, downPort);
      // the generators listen for the live connections' first frames, then they open
      const half = Math.floor(FRAMES / 2);
      const g1 = w.spawn(null, genArgv(half, 1, `${UP_SPORT}:${upPort}`));
      const g2 = w.spawn(null, genArgv(FRAMES - half, 2, `${DOWN_SPORT}:${downPort}`));
      await g1.waitFor("sniffing");
      await g2.waitFor("sniffing");
      const up = w.exec(
        null,
        [...t.enter, "socat", "-u", `EXEC:sh ${held} ${file} ${flag}`, `TCP4:${ADDR.gw4}:${upPort},sourceport=${UP_SPORT}`],
        { timeoutMs: TEST_MS },
      );
      const down = w.exec(null, [...t.enter, "socat", "-u", `TCP4:${ADDR.gw4}:${downPort},sourceport=${DOWN_SPORT}`, `CREATE:${downOut}`], {
        timeoutMs: TEST_MS,
      });
      const gens = [parse(await finished(g1), "generator (upload)"), parse(await finished(g2), "generator (download)")];
      mark("junk");
      writeFileSync(flag, "");

      const [ru, rd] = await Promise.all([up, down]);
      mark("transfers");
      const upCode = await Promise.race([servers[0]!.exited, Bun.sleep(60000).then(() => -1)]);
      const why = `upload: ${ru.code}${ru.timedOut ? " (timed out)" : ""} ${ru.stderr}\ndownload: ${rd.code}${rd.timedOut ? " (timed out)" : ""} ${rd.stderr}\nupload server: ${upCode} ${servers[0]!.stderr()}\ndownload server: ${servers[1]!.stderr()}\n${t.label}: ${t.log().slice(-3000)}`;
      expect(t.alive(), why).toBe(true);
      expect(ru.code, why).toBe(0);
      expect(rd.code, why).toBe(0);
      expect(upCode, why).toBe(0);
      expect(sameBytes(file, upOut), `upload differs\n${why}`).toBe(true);
      expect(sameBytes(file, downOut), `download differs\n${why}`).toBe(true);

      const fdsAfter = await fdsBackTo(t.pid, fdsBase);
      mark("fds");
      const rssAfter = rssBytes(t.pid);
      const sent = warm.sent + gens[0]!.sent + gens[1]!.sent;
      const dropped = warm.txDropped + gens[0]!.txDropped + gens[1]!.txDropped;
      const expectMalformed = warm.byFate.malformed + gens[0]!.byFate.malformed + gens[1]!.byFate.malformed;
      const expectUnhandled = warm.byFate.unhandled + gens[0]!.byFate.unhandled + gens[1]!.byFate.unhandled;
      const stats = t.ours ? await dispatchStats(t, sent - dropped, expectMalformed - dropped) : null;
      await t.stop();
      const figures = {
        target: t.label,
        tcp: counters(t.log(), "tcp"),
        frames: sent,
        tapDropped: dropped,
        expectMalformed,
        expectUnhandled,
        stats,
        fdsBase,
        fdsAfter,
        rssBase,
        rssAfter,
        mib: MIB,
        generators: [warm, ...gens].map((g) => ({ ms: g.ms, pauses: g.pauses, dropped: g.txDropped })),
        phases: marks,
      };
      console.log(`hostile figures: ${JSON.stringify(figures)}`);

      if (t.ours) {
        // the reference keeps idle flows longer (60 s, 180 s): its figures are reported, not asserted
        expect(fdsAfter, JSON.stringify(figures)).toBe(fdsBase);
        expect(rssAfter - rssBase, JSON.stringify(figures)).toBeLessThan(RSS_GROWTH_MAX);
        expect(stats, t.log().slice(-3000)).not.toBeNull();
        // every junk frame that reached us is counted where it belongs
        expect(stats!.malformed, JSON.stringify(figures)).toBeLessThanOrEqual(expectMalformed);
        expect(stats!.malformed, JSON.stringify(figures)).toBeGreaterThanOrEqual(expectMalformed - dropped);
        expect(stats!.unhandled, JSON.stringify(figures)).toBeGreaterThanOrEqual(expectUnhandled - dropped);
        expect(stats!.frames, JSON.stringify(figures)).toBeGreaterThanOrEqual(sent - dropped);
      }
    } finally {
      if (!existsSync(flag)) writeFileSync(flag, "");
      for (const s of servers) await s.kill({ graceMs: 500 });
    }
  }

  test(
    `pasta: ${FRAMES} hostile frames through the tap during ${MIB} MiB each way`,
    async () => {
      const s: PastaSession = await startPasta(w, ["--config-net", "--stats", "1"], {
        env: { PASTA_UDP_TIMEOUT_MS: String(FLOW_TIMEOUT_MS), PASTA_ICMP_TIMEOUT_MS: String(FLOW_TIMEOUT_MS) },
      });
      let stopped = false;
      const t: Target = {
        label: "pasta",
        pid: s.pid,
        enter: s.guestArgv([]),
        alive: () => s.alive(),
        log: () => s.log(),
        stop: async () => {
          if (!stopped) await s.stop();
          stopped = true;
        },
        ours: !process.env.PASTA_TEST_CMD,
      };
      try {
        await hostileRun(t, [
          "--src4",
          ADDR.host4,
          "--dst4",
          `${ADDR.gw4},${ADDR.remote4}`,
          "--src6",
          ADDR.host6,
          "--dst6",
          `${ADDR.remote6},${ADDR.gw6}`,
        ]);
      } finally {
        await t.stop();
      }
    },
    TEST_MS,
  );

  test(
    `passt: ${FRAMES} hostile frames through a relayed tap during ${MIB} MiB each way`,
    async () => {
      const sock = join(w.dir, "passt.socket");
      const passt = await startPasst(w, ["-s", sock, "--stats", "1"], {
        env: { ...PASST_ENV, PASTA_UDP_TIMEOUT_MS: String(FLOW_TIMEOUT_MS), PASTA_ICMP_TIMEOUT_MS: String(FLOW_TIMEOUT_MS) },
      });
      let g: Guest | null = null;
      const t: Target = {
        label: "passt",
        pid: passt.pid,
        enter: [],
        alive: () => fdCount(passt.pid) > 0,
        log: () => passt.stdout() + passt.stderr(),
        stop: async () => {
          await g?.child.kill();
          await passt.kill({ graceMs: 3000 });
        },
        ours: !process.env.PASST_TEST_CMD,
      };
      try {
        g = await startGuest(w, ["--socket", sock]);
        t.enter = g.enter;
        for (const cmd of [
          ["ip", "addr", "add", `${ADDR.host4}/24`, "dev", "eth0"],
          ["ip", "route", "add", "default", "via", ADDR.gw4],
        ]) {
          const r = await g.exec(cmd);
          expect(r.code, r.stderr).toBe(0);
        }
        await hostileRun(t, [
          "--src4",
          ADDR.host4,
          "--dst4",
          `${ADDR.gw4},${ADDR.remote4}`,
          "--src6",
          ADDR.host6,
          "--dst6",
          `${ADDR.remote6},${ADDR.gw6}`,
        ]);
      } finally {
        await t.stop();
      }
    },
    TEST_MS,
  );
});

/** Wait (bounded) until something listens on TCP port in w's host namespace. */
async function waitListen(w: World, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await w.exec(w.host, ["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await Bun.sleep(50);
  }
  throw new Error(`nothing listens on TCP port ${port}`);
}

/** The descriptor count of pid once it is back to want (the flows the junk opened ended), bounded to 60 s; or the last count seen. */
async function fdsBackTo(pid: number, want: number): Promise<number> {
  let n = fdCount(pid);
  for (let i = 0; i < 600 && n !== want; i++) {
    await Bun.sleep(100);
    n = fdCount(pid);
  }
  return n;
}

function sameBytes(a: string, b: string): boolean {
  if (!existsSync(b)) return false;
  return Buffer.compare(readFileSync(a), readFileSync(b)) === 0;
}
