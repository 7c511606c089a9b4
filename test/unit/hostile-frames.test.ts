/**
 * The hostile-guest generator (test/tools/hostile-frames.ts) says of each
 * frame what a receiver must make of it; the end-to-end test
 * (test/e2e/hostile.test.ts) holds pasta and passt to that. Here both are
 * checked against each other in-process, without a tap: every frame the
 * generator calls malformed, and no other, is counted malformed by our
 * dispatcher; at least the frames it calls unhandled are counted unhandled.
 * And the generator is reproducible: the same seed, the same bytes.
 *
 * Flows open real sockets, so the work runs in an empty network namespace
 * (test/tools/hostile-check-worker.ts through `unshare --net`), as the
 * dispatch fuzz does.
 */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { HostileFrames, ip4, ip6 } from "../tools/hostile-frames.ts";

const WORKER = join(import.meta.dir, "..", "tools", "hostile-check-worker.ts");
const FRAMES = 60000;

function isolation(): string[] | null {
  const tries = process.getuid?.() === 0 ? [["unshare", "--net"]] : [];
  tries.push(["unshare", "--user", "--map-root-user", "--net"]);
  for (const u of tries) {
    if (Bun.spawnSync([...u, "--", "true"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0) return u;
  }
  return null;
}
const iso = isolation();
if (!iso) console.log("SKIP hostile frames check: cannot make an empty network namespace for its sockets");

for (const seed of [1, 7]) {
  test.skipIf(!iso)(`seed ${seed}: ${FRAMES} frames, the dispatcher counts exactly the malformed ones as malformed`, () => {
    const r = Bun.spawnSync(
      [...iso!, "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", process.execPath, WORKER, String(FRAMES), String(seed)],
      {
        stdout: "pipe",
        stderr: "pipe",
        timeout: 60000,
      },
    );
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    const res = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!);
    const why = JSON.stringify(res);
    expect(res.stats.frames).toBe(FRAMES);
    expect(res.stats.malformed, why).toBe(res.byFate.malformed);
    expect(res.stats.unhandled, why).toBeGreaterThanOrEqual(res.byFate.unhandled);
    // every class was made
    expect(Object.keys(res.byClass).length, why).toBe(16);
  });
}

test("the same seed gives the same frames; another seed others", () => {
  const targets = () => ({
    srcMac: new Uint8Array(6),
    src4: ip4("192.0.2.2"),
    dst4: [ip4("192.0.2.1")],
    src6: ip6("2001:db8::2"),
    dst6: [ip6("2001:db8:1::1")],
    live: null,
  });
  const digest = (seed: number) => {
    const g = new HostileFrames(seed, targets());
    const h = createHash("sha256");
    for (let i = 0; i < 5000; i++) {
      const { cls, len } = g.next();
      h.update(cls);
      h.update(g.buf.subarray(0, len));
    }
    return h.digest("hex");
  };
  expect(digest(3)).toBe(digest(3));
  expect(digest(3)).not.toBe(digest(4));
});
