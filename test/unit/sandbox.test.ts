/**
 * The seccomp sandbox (src/sandbox.ts, native/shim.c shim_sandbox), in a
 * process of its own: before it, exec works; after it, exec fails with EPERM
 * while sockets still work, and every thread has no_new_privs and the filter.
 * Both ways of loading the shim (the built library and TinyCC).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const PROBE = join(import.meta.dir, "..", "tools", "sandbox-probe.ts");

for (const shim of ["lib", "tcc"]) {
  test(`exec is refused after the sandbox, sockets still work, on every thread (shim: ${shim})`, () => {
    const r = Bun.spawnSync([process.execPath, PROBE], { env: { ...process.env, PASTA_SHIM: shim } });
    const out = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!);
    expect(out.before).toEqual({ spawn: "exit 0", socket: true });
    expect(out.after.spawn).toBe("EPERM");
    expect(out.after.socket).toBe(true);
    expect(out.after.threads).toBeGreaterThan(1);
    expect(out.after.noNewPrivs).toBe(out.after.threads);
    expect(out.after.seccomp).toBe(out.after.threads);
  });
}
