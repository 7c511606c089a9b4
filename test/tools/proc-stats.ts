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

/** What each of pid's descriptors is ("3 anon_inode:[eventpoll]" ...), for failure messages; [] once it is gone. */
export function fdTargets(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return `${fd} ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
      } catch {
        return `${fd} (closed)`;
      }
    });
  } catch {
    return [];
  }
}

/**
 * pid's descriptor count once it has stayed the same for quietMs (polled
 * every 100 ms, for at most maxMs): pasta's auto forwarding adds and drops
 * listeners at its once-a-second scans, so a count taken right after a
 * server started on either side may be one scan early.
 */
export async function settledFdCount(pid: number, quietMs = 2500, maxMs = 15000): Promise<number> {
  let n = fdCount(pid);
  let since = Date.now();
  for (const end = Date.now() + maxMs; Date.now() < end && Date.now() - since < quietMs; ) {
    await Bun.sleep(100);
    const now = fdCount(pid);
    if (now !== n) [n, since] = [now, Date.now()];
  }
  return n;
}

/** Resident memory of pid in bytes (VmRSS, its peak VmHWM, or its anonymous part RssAnon), -1 once it is gone. */
export function rssBytes(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon" = "VmRSS"): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`${field}:\\s+(\\d+) kB`));
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

/**
 * /proc/PID/task/T/status of each of pid's threads, by thread id. A thread
 * that ends between the listing and the read (the daemon's short-lived
 * namespace threads do) is left out, not an error.
 */
export function threadStatuses(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(t, readFileSync(`/proc/${pid}/task/${t}/status`, "utf8"));
    } catch {
      // gone
    }
  }
  return out;
}
