/**
 * Hostile guest, whole dispatcher: a few hundred thousand random and mutated
 * frames (real guest frames of every kind, truncated, extended, with flipped
 * bytes and bogus length fields) through Dispatcher.frame() with a real Loop
 * and a checking fake FrameSink. Nothing may throw, the sink must be used as
 * its contract says, the heap must stay flat, and every socket the flows
 * opened must be closed again once they time out.
 *
 * Flows open real sockets (TCP connects, UDP sends), so the work runs in a
 * process of its own inside an empty network namespace (loopback only):
 * test/tools/dispatch-fuzz-worker.ts, started through `unshare --net`.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const WORKER = join(import.meta.dir, "..", "tools", "dispatch-fuzz-worker.ts");
const FRAMES = 300_000;
/** Generous: the heap after warm-up is ~20 MB and does not grow at all when nothing leaks. */
const HEAP_GROWTH_MAX = 16 * 1024 * 1024;

/** argv prefix for an empty network namespace with loopback up, or null when none can be made here. */
function isolation(): { prefix: string[]; why: string } {
  const tries = process.getuid?.() === 0 ? [["unshare", "--net"]] : [];
  tries.push(["unshare", "--user", "--map-root-user", "--net"]);
  let why = "";
  for (const u of tries) {
    const probe = Bun.spawnSync([...u, "--", "ip", "link", "set", "lo", "up"], { stdout: "pipe", stderr: "pipe" });
    if (probe.exitCode === 0) return { prefix: u, why: "" };
    why = `${u.join(" ")}: ${probe.stderr.toString().trim() || `exit ${probe.exitCode}`}`;
  }
  return { prefix: [], why };
}

/**
 * Inside the empty namespace: loopback up, with the remote addresses of the
 * fixtures on it, so that the flows' connects and sends meet real refusals.
 */
const NETUP = "ip link set lo up && ip addr add 198.51.100.1/32 dev lo && ip addr add 2001:db8:1::1/128 dev lo nodad";

const iso = isolation();
if (!iso.prefix.length) console.log(`SKIP dispatch fuzz: cannot make an empty network namespace for its sockets (${iso.why})`);

// (seed, bytes of the fake sink): with 1 MiB the sink never has room for a
// UDP receive batch, and idle flows must time out all the same
for (const [seed, sinkBytes] of [
  [1, 4 << 20],
  [0x5eed, 4 << 20],
  [3, 1 << 20],
] as const) {
  test.skipIf(!iso.prefix.length)(
    `dispatch fuzz, seed ${seed}, sink ${sinkBytes >> 20} MiB: ${FRAMES} frames, nothing throws, heap flat, no socket left`,
    () => {
      const r = Bun.spawnSync(
        [
          ...iso.prefix,
          "--",
          "sh",
          "-c",
          NETUP + ' && exec "$@"',
          "sh",
          process.execPath,
          WORKER,
          String(FRAMES),
          String(seed),
          String(sinkBytes),
        ],
        {
          stdout: "pipe",
          stderr: "pipe",
          env: { ...process.env, PASTA_UDP_TIMEOUT_MS: "200" },
          timeout: 120_000,
        },
      );
      const out = r.stdout.toString();
      expect(r.exitCode, `worker failed:\n${r.stderr.toString()}\n${out}`).toBe(0);
      const res = JSON.parse(out.trim().split("\n").at(-1)!);
      const why = JSON.stringify(res, null, 1);

      expect(res.exceptions, why).toEqual([]);
      expect(res.exceptionCount).toBe(0);
      expect(res.misuse, why).toEqual([]);
      expect(res.stats.frames).toBe(FRAMES);
      // the fixtures are real: the services answered some of them
      expect(res.stats.services, why).toBeGreaterThan(1000);
      expect(res.committed, why).toBeGreaterThan(1000);

      const heaps = res.samples.map((s: { heap: number }) => s.heap);
      expect(Math.max(...heaps) - heaps[0], why).toBeLessThan(HEAP_GROWTH_MAX);
      // every flow timed out and closed its socket
      expect(res.fdsAfterDrain, why).toBeLessThanOrEqual(res.fdsBefore);
      for (const [table, n] of Object.entries(res.socketsAfterDrain)) expect(`${table}: ${n}`, why).toBe(`${table}: 0`);
    },
    150_000,
  );
}
