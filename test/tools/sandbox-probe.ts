/**
 * Run by test/unit/sandbox.test.ts in a process of its own: tries a few
 * system calls before and after src/sandbox.ts's enterSandbox() and prints
 * what happened as one JSON line.
 */
import { readdirSync, readFileSync } from "node:fs";
import { enterSandbox } from "../../src/sandbox.ts";
import { sys } from "../../src/native/ffi.ts";

function canSpawn(): string {
  try {
    return `exit ${Bun.spawnSync(["/bin/true"]).exitCode}`;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

function udpRoundTrip(): boolean {
  const a = sys.shim_socket(2, 2, 0);
  const ok = a >= 0;
  if (ok) sys.shim_close(a);
  return ok;
}

const before = { spawn: canSpawn(), socket: udpRoundTrip() };
enterSandbox();
const threads = readdirSync("/proc/self/task").map((t) => readFileSync(`/proc/self/task/${t}/status`, "utf8"));
const after = {
  spawn: canSpawn(),
  socket: udpRoundTrip(),
  threads: threads.length,
  noNewPrivs: threads.filter((s) => /^NoNewPrivs:\s+1$/m.test(s)).length,
  seccomp: threads.filter((s) => /^Seccomp:\s+2$/m.test(s)).length,
};
console.log(JSON.stringify({ before, after }));
