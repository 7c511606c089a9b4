/**
 * Build the C shim with the system compiler into native/build/libshim.so.
 *
 * Runs at `bun install` (postinstall). Where no compiler is found it prints
 * one line and succeeds: src/native/ffi.ts then compiles the same source with
 * bun:ffi's TinyCC at start-up.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const dir = import.meta.dir;
const out = join(dir, "build", "libshim.so");

function findCompiler(): string | null {
  for (const cc of [process.env.CC, "cc", "gcc", "clang"]) {
    if (cc && Bun.which(cc)) return cc;
  }
  return null;
}

export function buildShim(): string | null {
  const cc = findCompiler();
  if (!cc) return null;
  mkdirSync(join(dir, "build"), { recursive: true });
  const args = [cc, "-O2", "-Wall", "-fPIC", "-shared", "-o", out, join(dir, "shim.c"), "-lpthread"];
  const r = Bun.spawnSync(args, { stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error(`native build failed: ${args.join(" ")}`);
  return out;
}

if (import.meta.main) {
  const built = buildShim();
  if (built) console.log(`native: built ${built}`);
  else console.log("native: no C compiler found; the shim will be compiled with TinyCC at start-up");
  if (built && !existsSync(built)) process.exit(1);
}
