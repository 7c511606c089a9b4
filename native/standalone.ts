/**
 * `bun run build`: pasta and passt as one standalone executable, dist/pasta
 * (bun build --compile), that runs on a machine without Bun or a compiler;
 * `bun native/standalone.ts DIR` writes DIR/pasta and DIR/passt instead.
 * The C shim goes inside it twice, as native/build/libshim.so (when a
 * compiler built it at install time) and as native/shim.c for Bun's built-in
 * TinyCC; src/native/ffi.ts loads whichever works. dist/passt is a link to
 * it: the name the executable is started by picks the mode.
 */
import { existsSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { buildShim } from "./build.ts";

const root = join(import.meta.dir, "..");
const dist = process.argv[2] ?? join(root, "dist");
const outfile = join(dist, "pasta");

if (!existsSync(join(root, "native", "build", "libshim.so"))) buildShim();
const assets = [join(root, "native", "shim.c"), join(root, "native", "build", "libshim.so")].filter(existsSync);
mkdirSync(dist, { recursive: true });
const args = [
  "build",
  join(root, "src", "main.ts"),
  "--compile",
  "--bytecode",
  "--minify",
  "--outfile",
  outfile,
  ...assets.flatMap((a) => ["--asset", a]),
];
const r = Bun.spawnSync([process.execPath, ...args], { cwd: root, stdout: "inherit", stderr: "inherit" });
if (r.exitCode !== 0) throw new Error(`bun ${args.join(" ")} failed`);
rmSync(join(dist, "passt"), { force: true });
symlinkSync("pasta", join(dist, "passt"));
console.log(`built ${outfile} (and ${join(dist, "passt")} -> pasta) with ${assets.map((a) => a.slice(root.length + 1)).join(", ")}`);
