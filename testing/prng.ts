/**
 * The seeded PRNG of the property tests and benchmarks, so a failure
 * reproduces from its seed and every file draws the same sequence for the
 * same seed.
 *
 * @module
 */

/**
 * mulberry32 (Tommy Ettinger's 32-bit generator): a tiny, fast, seeded PRNG
 * with a 2^32 period, good enough to drive property tests and benchmarks (not
 * for cryptography). Returns a function yielding floats in [0, 1), each with
 * 32 random bits; only the low 32 bits of `seed` matter.
 *
 * @example
 * ```ts
 * const r = prng(42);
 * const die = Math.floor(r() * 6) + 1; // the same roll on every run
 * ```
 */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
