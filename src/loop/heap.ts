/**
 * Test hook for the no-allocation promise of the data path: with
 * PASTA_HEAP_REPORT=FILE in the environment, every HEAP_REPORT_MS the live
 * object count and heap size of the JavaScript heap (bun:jsc heapStats) are
 * appended to FILE as one JSON line, {t, objects, heap}. A data path that
 * allocates per packet shows as objects growing with the bytes moved; ours
 * stays flat (test/e2e/heap.test.ts moves 1 GiB and compares). Off by
 * default: nothing runs unless the variable is set.
 */
import { heapStats } from "bun:jsc";
import { appendFileSync } from "node:fs";
import type { Loop } from "./loop.ts";

const HEAP_REPORT_MS = 250;

export function watchHeap(loop: Loop): void {
  const file = process.env.PASTA_HEAP_REPORT;
  if (!file) return;
  const sample = (t: number) => {
    const s = heapStats();
    appendFileSync(file, JSON.stringify({ t: Math.round(t), objects: s.objectCount, heap: s.heapSize }) + "\n");
  };
  sample(performance.now());
  loop.every(HEAP_REPORT_MS, sample);
}
