/**
 * Running the program under test in a test world.
 *
 *   const r = await runPasta(w, ["--config-net"], guestScript);
 *   r.code            // pasta's exit status
 *   r.out("addr")     // what the guest script wrote to $OUT/addr
 *
 * pasta runs in the world's host namespace; its command (the guest) is a
 * /bin/sh script that writes each result to a file of its own in $OUT, a
 * directory any user can write (the guest may be "root" of an unprivileged
 * user namespace). One pasta run covers a whole group of checks.
 *
 * The program is `bun src/main.ts`. PASTA_TEST_CMD (a command line split on
 * spaces) runs something else with the same options instead, e.g.
 * PASTA_TEST_CMD=/usr/bin/pasta checks the tests against the reference.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADDR, BUN, REPO, type ExecResult, type TestUser, type World } from "../world.ts";
import type { Dhclient } from "./dhclient.ts";

/** The entry point the tests run. */
export const PASTA_MAIN = join(REPO, "src", "main.ts");

/** argv of the program under test with args, for a repository at repo (default REPO). */
export function pastaArgv(args: string[], repo: string = REPO): string[] {
  const override = process.env.PASTA_TEST_CMD?.trim();
  if (override) return [...override.split(/\s+/), ...args];
  return [BUN, join(repo, "src", "main.ts"), ...args];
}

/** Single-quote s for /bin/sh. */
export function sh(s: string): string {
  return /^[A-Za-z0-9_\-./=:,@+%]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface PastaResult extends ExecResult {
  /** the $OUT directory of this run */
  outDir: string;
  /** content of $OUT/name ("" when the script did not write it) */
  out(name: string): string;
  /** $OUT/name parsed as JSON (throws with the text when it is not JSON) */
  json<T = any>(name: string): T;
  /** every file the guest script wrote, for failure messages */
  dump(): string;
}

export interface RunPastaOptions {
  /** run as this unprivileged user, from repo (see repoForUser) */
  user?: TestUser;
  repo?: string;
  timeoutMs?: number;
}

let runs = 0;

/**
 * Run pasta with options args in w's host namespace; its command is
 * `sh GUEST.sh`, where GUEST.sh is script with OUT set to a fresh directory.
 */
export async function runPasta(w: World, args: string[], script: string, opts: RunPastaOptions = {}): Promise<PastaResult> {
  const outDir = mkdtempSync(join(w.dir, `run${++runs}-`));
  chmodSync(outDir, 0o777);
  const file = join(outDir, "guest.sh");
  writeFileSync(file, `OUT=${sh(outDir)}\nexport OUT\n${script}\n`);
  chmodSync(file, 0o755);
  const argv = pastaArgv([...args, "--", "/bin/sh", file], opts.repo);
  const r = await w.exec(w.host, argv, { timeoutMs: opts.timeoutMs ?? 90000, user: opts.user, cwd: opts.repo });
  const read = (name: string) => {
    const p = join(outDir, name);
    return existsSync(p) ? readFileSync(p, "utf8") : "";
  };
  const dump = () => {
    const files = readdirSync(outDir)
      .filter((f) => f !== "guest.sh")
      .sort();
    return [
      `pasta exit ${r.code}${r.timedOut ? " (timed out)" : ""}`,
      `stderr: ${r.stderr}`,
      `stdout: ${r.stdout}`,
      ...files.map((f) => `--- ${f}\n${read(f)}`),
    ].join("\n");
  };
  return {
    ...r,
    outDir,
    out: read,
    json(name) {
      const t = read(name);
      try {
        return JSON.parse(t);
      } catch {
        throw new Error(`$OUT/${name} is not JSON: ${JSON.stringify(t)}\n${dump()}`);
      }
    },
    dump,
  };
}

/**
 * sh lines that wait (at most tenths/10 seconds) until cond, a shell
 * condition, holds; they write 1 or 0 to $OUT/name.
 */
export function waitUntil(name: string, cond: string, tenths = 150): string {
  return (
    `i=0; while ! { ${cond}; } && [ $i -lt ${tenths} ]; do sleep 0.1; i=$((i+1)); done; ` +
    `if ${cond}; then echo 1 >"$OUT/${name}"; else echo 0 >"$OUT/${name}"; fi`
  );
}

/** sh line: run cmd, its stdout to $OUT/name, stderr to $OUT/name.err, status to $OUT/name.rc. */
export function record(name: string, cmd: string): string {
  return `${cmd} >"$OUT/${name}" 2>"$OUT/${name}.err"; echo $? >"$OUT/${name}.rc"`;
}

/** The ip -j addr_info entries of one interface as "addr/prefix" strings, with their scope. */
export function addrsOf(ipAddrJson: any[], ifname: string): { local: string; prefixlen: number; scope: string; family: string }[] {
  const link = ipAddrJson.find((l: any) => l.ifname === ifname);
  return link ? link.addr_info : [];
}

/**
 * The guest script of a client run on interface ifname: dhclient -4, SLAAC
 * (waited for, bounded), dhclient -6 when d6 is given, ping and ping -6 to
 * the remote addresses, then the addresses and routes as JSON. Results in
 * $OUT: dhcp4, slaac (1 or 0), slaac-addr, slaac-route, dhcp6, ping4, ping6,
 * addr, route4, route6 (each with .rc and .err).
 */
export function clientScript(ifname: string, d4: Dhclient, d6: Dhclient | null): string {
  const slaac = `ip -6 addr show dev ${ifname} scope global | grep -q 'inet6 ${ADDR.net6}' && ip -6 route show default | grep -q 'via ${ADDR.gwLL}'`;
  return [
    record("dhcp4", d4.shell),
    waitUntil("slaac", slaac),
    record("slaac-addr", `ip -j -6 addr show dev ${ifname}`),
    record("slaac-route", "ip -j -6 route show default"),
    ...(d6 ? [record("dhcp6", d6.shell)] : []),
    record("ping4", `ping -c1 -W5 ${ADDR.remote4}`),
    record("ping6", `ping -6 -c1 -W5 ${ADDR.remote6}`),
    record("addr", "ip -j addr show"),
    record("route4", "ip -j -4 route show"),
    record("route6", "ip -j -6 route show"),
  ].join("\n");
}

/**
 * Pids of processes whose command line contains marker (a unique string a
 * test put in the argv of what it started), for leftover checks.
 */
export function procsWith(marker: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(marker)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Text without ANSI colour sequences. */
export function stripAnsi(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the colour codes removed here
  return s.replace(/\x1b\[[0-9;]*m/g, "");
}
