/**
 * The npm package as users get it: `bun pm pack` makes the tarball, which
 * must hold sources only (no shim built on the packing machine); installed
 * from that file into a fresh directory (`bun install --offline`: the
 * dependencies come from Bun's cache, nothing from the network), its
 * `pasta` and `passt` commands work in three set-ups:
 *
 *   - scripts blocked (Bun's default for a dependency, and what `bunx` does):
 *     no native/build/libshim.so, the shim compiled by TinyCC at start-up;
 *   - the package trusted, a compiler on PATH: postinstall builds the library;
 *   - the package trusted, no compiler on PATH: postinstall says so and
 *     succeeds, TinyCC at start-up.
 *
 * pasta runs `--config-net -- true` (its own namespace: no traffic), so the
 * file is an end-to-end test, run under the network lock.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, REPO, describeE2E } from "../world.ts";

const dir = mkdtempSync(join(tmpdir(), "pasta-package-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run argv in cwd with env; its exit status and output. */
function run(argv: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}) {
  const r = Bun.spawnSync(argv, {
    cwd: opts.cwd,
    env: opts.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 30000,
    killSignal: "SIGKILL",
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** A PATH without any C compiler: bun, sh and true only. */
function bareBin(): string {
  const bin = join(dir, "bare-bin");
  if (existsSync(bin)) return bin;
  mkdirSync(bin);
  symlinkSync(BUN, join(bin, "bun"));
  for (const tool of ["sh", "true"]) symlinkSync(Bun.which(tool)!, join(bin, tool));
  return bin;
}

describeE2E("npm package (bun pm pack, installed from the tarball)", () => {
  let tarball = "";
  let listing: string[] = [];

  beforeAll(() => {
    const out = join(dir, "pack");
    const r = run([BUN, "pm", "pack", "--destination", out, "--quiet"], { cwd: REPO, timeoutMs: 60000 });
    if (r.code !== 0) throw new Error(`bun pm pack: ${r.stderr}${r.stdout}`);
    tarball = join(out, `pasta-${require(join(REPO, "package.json")).version}.tgz`);
    listing = run(["tar", "-tzf", tarball]).stdout.split("\n").filter(Boolean);
  }, 90000);

  test("the tarball holds sources only", () => {
    for (const f of [
      "package/package.json",
      "package/src/main.ts",
      "package/bin/passt.ts",
      "package/native/shim.c",
      "package/native/build.ts",
      "package/man/pasta.1",
      "package/man/passt.1",
    ]) {
      expect(listing).toContain(f);
    }
    expect(listing.filter((f) => f.startsWith("package/native/build/") || /\.(so|o|a)$/.test(f))).toEqual([]);
  });

  /** Install the tarball into a new directory; returns the environment to run its commands with. */
  function install(name: string, trusted: boolean, compiler: boolean): { cwd: string; env: Record<string, string> } {
    const cwd = join(dir, name);
    mkdirSync(cwd);
    const pkg = {
      name: `pasta-package-test-${name}`,
      private: true,
      dependencies: { pasta: `file:${tarball}` },
      ...(trusted ? { trustedDependencies: ["pasta"] } : {}),
    };
    writeFileSync(join(cwd, "package.json"), JSON.stringify(pkg, null, 1));
    const env = { ...process.env, PATH: compiler ? process.env.PATH! : bareBin() } as Record<string, string>;
    delete env.CC;
    delete env.PASTA_SHIM;
    const r = run([BUN, "install", "--offline"], { cwd, env, timeoutMs: 120000 });
    if (r.code !== 0) throw new Error(`bun install --offline of ${tarball}: ${r.stderr}${r.stdout}`);
    return { cwd, env };
  }

  /** Which way the installed copy loads its shim ("lib" or "tcc"). */
  function shimKind(at: { cwd: string; env: Record<string, string> }): string {
    const ffi = join(at.cwd, "node_modules", "pasta", "src", "native", "ffi.ts");
    const r = run([BUN, "-e", `const m = await import(${JSON.stringify(ffi)}); console.log(m.shimKind, m.sys.shim_getuid())`], {
      cwd: at.cwd,
      env: at.env,
      timeoutMs: 60000,
    });
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  }

  /** The installed commands answer by their name, and pasta runs a command in a namespace it makes. */
  function checkCommands(at: { cwd: string; env: Record<string, string> }) {
    const bin = (n: string) => join(at.cwd, "node_modules", ".bin", n);
    const version = require(join(REPO, "package.json")).version;
    for (const n of ["pasta", "passt"]) {
      const r = run([bin(n), "--version"], { cwd: at.cwd, env: at.env, timeoutMs: 30000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split("\n")[0]).toBe(`${n} ${version}`);
    }
    const r = run([bin("pasta"), "--config-net", "--", "true"], { cwd: at.cwd, env: at.env, timeoutMs: 60000 });
    expect(r.code, r.stderr).toBe(0);
  }

  test("installed with scripts blocked (as bunx does): no library, TinyCC at start-up", () => {
    const at = install("blocked", false, true);
    expect(existsSync(join(at.cwd, "node_modules", "pasta", "native", "build", "libshim.so"))).toBe(false);
    expect(shimKind(at)).toBe("tcc 0");
    checkCommands(at);
  }, 180000);

  test("trusted, with a compiler: postinstall builds the library", () => {
    const at = install("trusted", true, true);
    expect(existsSync(join(at.cwd, "node_modules", "pasta", "native", "build", "libshim.so"))).toBe(true);
    expect(shimKind(at)).toBe("lib 0");
    checkCommands(at);
  }, 180000);

  test("trusted, without a compiler: postinstall succeeds, TinyCC at start-up", () => {
    const at = install("nocc", true, false);
    expect(existsSync(join(at.cwd, "node_modules", "pasta", "native", "build", "libshim.so"))).toBe(false);
    expect(shimKind(at)).toBe("tcc 0");
    checkCommands(at);
  }, 180000);
});
