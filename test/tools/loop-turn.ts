/**
 * For tests that drive a Loop by hand: turner(loop) returns a function that
 * runs one turn of it (the events ready now and the timers due, then the
 * flushes) and returns to the caller.
 */
import type { Loop } from "../../src/loop/loop.ts";

export function turner(loop: Loop): () => void {
  let turning = false;
  loop.every(0, () => {
    if (turning) loop.stop(0);
  });
  return () => {
    turning = true;
    loop.run();
    turning = false;
  };
}
