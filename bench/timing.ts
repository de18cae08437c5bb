/**
 * What the bench suites share: the fastest-run timer and the floor their figures are
 * multiples of (simulated 32-bit PRAMIN writes through one window, `window.write32`).
 * Not a suite itself (its name keeps it out of `deno bench`).
 *
 * @module
 */

import type { Gpu } from "../mod.ts";

/**
 * The fastest of `runs` timings of `reps` calls of fn, per call, in ms (the fastest: on a
 * shared machine it is the run least disturbed by others).
 *
 * @example
 * ```ts
 * best(5, 1, () => JSON.stringify({ a: 1 })); // ms for one call
 * ```
 */
export function best(runs: number, reps: number, fn: () => unknown): number {
  let min = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) fn();
    min = Math.min(min, (performance.now() - t0) / reps);
  }
  return min;
}

/**
 * The floor: a function that makes `words` simulated 32-bit PRAMIN writes through one window
 * into VRAM of its own (at least 64 KiB, allocated once from `gpu`'s allocator: `start`), and
 * how it prints.
 *
 * @example
 * ```ts
 * import { openGpu } from "../mod.ts";
 * const gpu = await openGpu({ device: "sim:ga102" });
 * const floor = praminFloor(gpu, 1024);
 * best(5, 1, floor.run); // ms
 * ```
 */
export function praminFloor(
  gpu: Gpu,
  words: number,
): { run: () => void; describe: (ms: number) => string; start: number; free: () => void } {
  const at = gpu.mm.buddy.alloc(Math.max(64 * 1024, words * 4));
  return {
    run: () => {
      using w = gpu.pramin.window();
      for (let i = 0; i < words; i++) w.write32(at.start + i * 4, i);
    },
    describe: (ms) =>
      `floor: ${words} simulated 32-bit PRAMIN writes (window.write32) = ${
        ms >= 1 ? `${ms.toFixed(1)} ms` : `${(ms * 1000).toFixed(2)} us`
      }`,
    start: at.start,
    free: () => at.free(),
  };
}
