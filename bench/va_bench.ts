/**
 * VA placement when many holes are big enough but misaligned: 16,384 holes
 * of exactly 64 KiB at 4 KiB mod 64 KiB (each between a 4 KiB range and a
 * 60 KiB one), then a 64 KiB request aligned to 64 KiB — which none of them
 * can hold — against the same request with no holes. Target: with the holes
 * it costs at most 2x what it costs without (the tree keeps per-alignment
 * maxima, so placement skips the holes in O(log n)).
 *
 * - (a) the VA allocator alone: `VaRanges.allocate` + `release` of 64 KiB
 *   aligned to 64 KiB in the space with the holes, against the same number
 *   of ranges packed without holes (the target), and against an empty space
 *   (printed too: that ratio also holds the tree's depth, log2 32,768 = 15);
 * - (b) a whole map: `vmm.mapRange` of a 64 KiB-aligned 64 KiB allocation
 *   and its unmap on sim:ga102, in an address space with only a small
 *   mapping next to where the map lands, and in one whose VA also has the
 *   16,384 holes (32,768 mappings).
 *
 * Host time is printed as a multiple of a floor measured in the same run:
 * 1,024 simulated 32-bit PRAMIN writes (`window.write32`), so the figures
 * hold on any machine.
 *
 * Run: `deno bench -A bench/va_bench.ts`
 */

import { type Mapping, openGpu, type Vmm } from "../mod.ts";
import { best, praminFloor } from "./timing.ts";
import { VaRanges } from "../mm/va_ranges.ts";

const KiB = 1024;
const PAGE = 4 * KiB;
const BLOCK = 64 * KiB;
const HOLES = 16_384;
const PERIOD = 128 * KiB; // [p, p + 4K) taken, [p + 4K, p + 68K) the hole, [p + 68K, p + 128K) taken

// --- the floor: 1,024 simulated 32-bit PRAMIN writes ---------------------------------

const gpu = await openGpu({ device: "sim:ga102" });
const { run: floor, describe: describeFloor } = praminFloor(gpu, 1024);
for (let i = 0; i < 200; i++) floor(); // JIT
let floorMs = best(40, 20, floor);
const us = (ms: number) => `${(ms * 1000).toFixed(2)} us = ${(ms / floorMs).toFixed(3)}x floor`;
const verdict = (ratio: number) =>
  `${ratio.toFixed(2)}x (target <= 2) ${ratio <= 2 ? "OK" : "MISSED"}`;

// --- (a) the VA allocator alone ---------------------------------------------------------

const SPACE = 1n << 40n;
const empty = new VaRanges(SPACE);
const holed = new VaRanges(SPACE);
const packed = new VaRanges(SPACE);
for (let i = 0; i < HOLES; i++) {
  const p = BigInt(i * PERIOD);
  holed.claim(p, BigInt(PAGE), "low");
  holed.claim(p + BigInt(PAGE + BLOCK), BigInt(PERIOD - PAGE - BLOCK), "high");
  packed.claim(p, BigInt(PAGE), "low");
  packed.claim(p + BigInt(PAGE), BigInt(PERIOD - PAGE), "high");
}
const tail = BigInt(HOLES * PERIOD);

function place(space: VaRanges, where: bigint): void {
  const r = space.allocate(BigInt(BLOCK), BigInt(BLOCK), "bench");
  if (r.start !== where) throw new Error(`placed at ${r.start}, expected ${where}`);
  space.release(r);
}
const placeEmpty = () => place(empty, 0n);
const placeHoled = () => place(holed, tail);
const placePacked = () => place(packed, tail);
for (let i = 0; i < 2000; i++) {
  placeEmpty();
  placeHoled();
  placePacked();
}
// Interleaved rounds, so a busy machine slows all alike.
let vaEmpty = Infinity;
let vaHoled = Infinity;
let vaPacked = Infinity;
for (let round = 0; round < 40; round++) {
  vaEmpty = Math.min(vaEmpty, best(1, 200, placeEmpty));
  vaHoled = Math.min(vaHoled, best(1, 50, placeHoled));
  vaPacked = Math.min(vaPacked, best(1, 200, placePacked));
  floorMs = Math.min(floorMs, best(1, 20, floor));
}
console.log(describeFloor(floorMs));
console.log(`va (a) allocate + release 64 KiB aligned to 64 KiB, empty space: ${us(vaEmpty)}`);
console.log(
  `va (a) the same after ${2 * HOLES} ranges packed without holes: ${us(vaPacked)} = ${
    (vaPacked / vaEmpty).toFixed(2)
  }x the empty space`,
);
console.log(
  `va (a) the same after ${2 * HOLES} ranges with ${HOLES} misaligned 64 KiB holes: ${
    us(vaHoled)
  } = ${verdict(vaHoled / vaPacked)} no holes (${(vaHoled / vaEmpty).toFixed(2)}x empty)`,
);

// --- (b) a whole map of a 64 KiB allocation on sim:ga102 -----------------------------

const block = gpu.mm.buddy.alloc(BLOCK, { align: BLOCK });
const frames = gpu.mm.buddy.alloc(16 * PAGE);
const pfn = frames.start / PAGE;
const keep: Mapping[] = [];

/** An address space whose tables exist where the 64 KiB block lands (at `at`). */
function spaceFor(at: bigint): Vmm {
  const vmm = gpu.mm.createVmm({ vaSize: SPACE });
  // A page just past the block keeps the directories (and its page table) alive.
  keep.push(vmm.mapPages([pfn], { va: at + BigInt(BLOCK) }));
  return vmm;
}

const plain = spaceFor(0n);
const holey = spaceFor(tail);
{
  const lowPages = [pfn];
  const highPages = Array.from({ length: (PERIOD - PAGE - BLOCK) / PAGE }, (_, i) => pfn + i);
  for (let i = 0; i < HOLES; i++) {
    const p = BigInt(i * PERIOD);
    keep.push(holey.mapPages(lowPages, { va: p }));
    keep.push(holey.mapPages(highPages, { va: p + BigInt(PAGE + BLOCK) }));
  }
}

function mapIn(vmm: Vmm, where: bigint): void {
  const m = vmm.mapRange(block.start, BLOCK, { writable: true });
  if (m.va !== where) throw new Error(`mapped at ${m.va}, expected ${where}`);
  m.unmap();
}
const mapPlain = () => mapIn(plain, 0n);
const mapHoley = () => mapIn(holey, tail);
for (let i = 0; i < 300; i++) {
  mapPlain();
  mapHoley();
}
let mapNone = Infinity;
let mapHoles = Infinity;
for (let round = 0; round < 40; round++) {
  mapNone = Math.min(mapNone, best(1, 20, mapPlain));
  mapHoles = Math.min(mapHoles, best(1, 20, mapHoley));
}
console.log(
  `va (b) sim:ga102 map + unmap of a 64 KiB-aligned 64 KiB block, no holes: ${us(mapNone)}`,
);
console.log(
  `va (b) the same with ${HOLES} misaligned 64 KiB holes (${holey.ranges.count} ranges): ${
    us(mapHoles)
  } = ${verdict(mapHoles / mapNone)} no holes`,
);

// --- timed cases ---------------------------------------------------------------------

Deno.bench({
  name: "VaRanges allocate + release 64 KiB/64 KiB, empty space",
  group: "va",
  baseline: true,
  fn: placeEmpty,
});

Deno.bench({
  name: `VaRanges allocate + release 64 KiB/64 KiB, ${2 * HOLES} ranges, no holes`,
  group: "va",
  fn: placePacked,
});

Deno.bench({
  name: `VaRanges allocate + release 64 KiB/64 KiB, ${HOLES} misaligned 64 KiB holes`,
  group: "va",
  fn: placeHoled,
});

Deno.bench({
  name: "map + unmap 64 KiB (sim:ga102), no holes",
  group: "va-map",
  baseline: true,
  fn: mapPlain,
});

Deno.bench({
  name: `map + unmap 64 KiB (sim:ga102), ${HOLES} misaligned 64 KiB holes`,
  group: "va-map",
  fn: mapHoley,
});

// Keep the anchors and hole-making mappings referenced for the whole run.
if (!keep.every((m) => m.live)) throw new Error("a bench mapping was unmapped");
