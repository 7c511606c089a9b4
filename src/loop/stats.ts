/**
 * --stats DELAY: the event counters in the log, at most every DELAY seconds,
 * and only when one of them moved since the last line (as the original: no
 * events, no statistics). The counters are the ones the backends and the
 * dispatcher keep anyway (frames in and out, dropped, malformed...).
 */
import { log } from "../log.ts";
import type { Loop } from "./loop.ts";

/** Counter groups by name, e.g. { tap: tap.stats, dispatch: dispatcher.stats }. */
export type StatsSource = () => Record<string, object>;

/** One line for the counters of every group: "tap: rxFrames 12 txFrames 10; dispatch: ...". */
export function formatStats(groups: Record<string, object>): string {
  return Object.entries(groups)
    .map(
      ([name, counters]) =>
        `${name}: ${Object.entries(counters)
          .map(([k, v]) => `${k} ${v}`)
          .join(" ")}`,
    )
    .join("; ");
}

/** The counters of every group as JSON, for the last line of a --debug run: "tap: {...} dispatch: {...}". */
export function countersLine(groups: Record<string, object>): string {
  return Object.entries(groups)
    .map(([name, counters]) => `${name}: ${JSON.stringify(counters)}`)
    .join(" ");
}

/** Log the counters every delaySec seconds while they change. */
export function reportStats(loop: Loop, delaySec: number, read: StatsSource): void {
  let last = formatStats(read());
  loop.every(delaySec * 1000, () => {
    const line = formatStats(read());
    if (line === last) return;
    last = line;
    log.info(`stats: ${line}`);
  });
}
