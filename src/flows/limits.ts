/**
 * How many host descriptors each flow table may hold, so that a flood from
 * the guest cannot take them all.
 *
 * Every flow holds at least one host socket, and the descriptor limit
 * (RLIMIT_NOFILE, raised as far as we may at start) is shared by everything:
 * listening sockets, established connections, the spliced path's pipes. A
 * table that the guest can fill at will (half-open TCP connections, UDP
 * flows, ICMP echo flows) may hold at most FD_SHARE of the limit; past that
 * it makes room by dropping its oldest entry (see each table).
 */
import { readFileSync } from "node:fs";

/** The fraction of the descriptor limit one guest-fillable table may hold. */
const FD_SHARE = 1 / 4;
/** What we assume when /proc/self/limits cannot be read (the usual soft limit). */
const DEFAULT_LIMIT = 1024;

let limit = 0;

/** The soft RLIMIT_NOFILE, read once (after start-up raised it). */
export function openFileLimit(): number {
  if (limit > 0) return limit;
  limit = DEFAULT_LIMIT;
  try {
    const m = readFileSync("/proc/self/limits", "utf8").match(/^Max open files\s+(\d+|unlimited)/m);
    if (m) limit = m[1] === "unlimited" ? 1 << 30 : Number(m[1]);
  } catch {
    /* keep the default */
  }
  return limit;
}

/** Entries a guest-fillable table may hold: at most max, and its share of the descriptor limit. */
export function fdBudget(max: number): number {
  return Math.max(16, Math.min(max, Math.floor(openFileLimit() * FD_SHARE)));
}
