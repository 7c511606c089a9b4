/**
 * This program as a command line to run it again: the background copy
 * (src/daemon.ts) and the re-exec into a user namespace (src/ns/ns.ts).
 *
 * From source it is `bun src/main.ts ARGS`. Built into one executable by
 * `bun run build` (bun build --compile), process.argv[1] is a path inside the
 * executable ("/$bunfs/root/...") and not an argument to pass on, and the
 * name we were started by (a link called passt, say) is process.argv0.
 */
const BUNFS = "/$bunfs/";
/** Where files embedded with `--asset` are found in the standalone executable (import.meta.dir is the build machine's there). */
export const EMBEDDED_DIR = "/$bunfs/root";

/** True when running as the standalone executable. */
export const isStandalone = (process.argv[1] ?? "").startsWith(BUNFS);

/** The command line that runs this program again with the same arguments. */
export function selfArgv(): string[] {
  return [process.execPath, ...process.argv.slice(isStandalone ? 2 : 1)];
}

/** The name this program was started by, which picks the mode (pasta or passt). */
export function programName(): string | undefined {
  return isStandalone ? process.argv0 : process.argv[1];
}
