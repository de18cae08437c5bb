/**
 * VRAM buddy allocator: 100,000 random alloc/free operations (4 KiB..16 MiB,
 * ~1,000 live, one in ten scattered) on an 80 GiB region against a 1 GiB
 * one. The cost per operation must not grow with VRAM size: the printed ratio
 * (80 GiB / 1 GiB time) should stay at or below 1.3.
 *
 * Run: `deno bench -A bench/buddy_bench.ts`
 */

import { type Allocation, BuddyAllocator } from "../mm/buddy.ts";
import { prng } from "../testing/prng.ts";

const OPS = 100_000;
const LIVE = 1000;
const GIB = 2 ** 30;
const START = 0x200000; // the usable region starts above the low reserved 2 MiB

/** Mostly small sizes, 3% large ones up to 16 MiB: ~1,000 live take ~1/3 of 1 GiB. */
function randomSize(rnd: () => number): number {
  const exp = rnd() < 0.97 ? Math.floor(rnd() * 7) : 6 + Math.floor(rnd() * 7); // 4K<<0..12
  const base = 4096 * 2 ** exp;
  return Math.min(16 << 20, base + 4096 * Math.floor(rnd() * 2 ** exp));
}

interface Outcome {
  ms: number;
  failed: number;
}

/** The whole workload on a fresh allocator; the same seed gives the same requests. */
function workload(size: number): Outcome {
  const rnd = prng(0x5eed);
  const t0 = performance.now();
  const buddy = new BuddyAllocator({ start: START, size });
  const live: Allocation[] = [];
  let failed = 0;
  for (let i = 0; i < OPS; i++) {
    const grow = live.length < LIVE ? 0.6 : 0.4;
    if (live.length === 0 || rnd() < grow) {
      const bytes = randomSize(rnd);
      const scattered = rnd() < 0.1;
      try {
        live.push(scattered ? buddy.alloc(bytes, { contiguous: false }) : buddy.alloc(bytes));
      } catch {
        failed++; // ENOMEM: counted, the run goes on
      }
    } else {
      const j = Math.floor(rnd() * live.length);
      const a = live[j];
      live[j] = live[live.length - 1];
      live.pop();
      a.free();
    }
  }
  for (const a of live) a.free();
  return { ms: performance.now() - t0, failed };
}

// One-off measurement outside Deno.bench, so the ratio is printed once.
{
  workload(1 * GIB); // warm the JIT
  workload(80 * GIB);
  const small: number[] = [];
  const big: number[] = [];
  let failed = [0, 0];
  for (let i = 0; i < 5; i++) {
    const s = workload(1 * GIB);
    const b = workload(80 * GIB);
    small.push(s.ms);
    big.push(b.ms);
    failed = [s.failed, b.failed];
  }
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
  const s = median(small);
  const b = median(big);
  console.log(
    `buddy: ${OPS} ops, ~${LIVE} live: 1 GiB ${(s * 1000 / OPS).toFixed(2)} µs/op, ` +
      `80 GiB ${(b * 1000 / OPS).toFixed(2)} µs/op, ratio 80/1 = ${(b / s).toFixed(2)} ` +
      `(target ≤ 1.3; ENOMEM ${failed[0]} / ${failed[1]})`,
  );
}

Deno.bench({
  name: "buddy 100k ops, 1 GiB",
  group: "buddy",
  baseline: true,
  n: 5,
  warmup: 1,
  fn: () => {
    workload(1 * GIB);
  },
});

Deno.bench({
  name: "buddy 100k ops, 80 GiB",
  group: "buddy",
  n: 5,
  warmup: 1,
  fn: () => {
    workload(80 * GIB);
  },
});
