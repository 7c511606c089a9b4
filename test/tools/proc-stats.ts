/**
 * What /proc says of a process under test: descriptors, resident memory,
 * CPU share, and whether any process is left in a network namespace.
 */
import { readFileSync, readdirSync, readlinkSync } from "node:fs";

/** Open descriptors of pid, -1 once it is gone. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** Resident memory of pid in bytes, -1 once it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) * 1024 : -1;
  } catch {
    return -1;
  }
}

/** CPU seconds (user + system) pid has used so far, -1 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8")
      .replace(/^.*\) /s, "")
      .split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return -1;
  }
}

/** Share of one CPU that pid used over the next ms milliseconds (user + system). */
export async function cpuShare(pid: number, ms: number): Promise<number> {
  const t0 = cpuSeconds(pid);
  const start = performance.now();
  await Bun.sleep(ms);
  return (cpuSeconds(pid) - t0) / ((performance.now() - start) / 1000);
}

/** The network namespace of pid ("net:[inode]"), null once it is gone. */
export function netnsOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

/** Pids of the processes in network namespace ns (as netnsOf gives it). */
export function processesIn(ns: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (/^\d+$/.test(e) && netnsOf(Number(e)) === ns) out.push(Number(e));
  }
  return out;
}
