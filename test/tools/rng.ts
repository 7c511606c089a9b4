/**
 * The fuzz tests' random numbers: xorshift32, deterministic, so that a
 * failure reproduces from its seed.
 */

/** A generator of 32-bit unsigned numbers from seed (0 stands for 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}
