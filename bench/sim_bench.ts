/**
 * The simulator's share of small maps: a 64 KiB and a 2 MiB mapping (each
 * followed by its FB flush and TLB invalidate, as `map` does) into an
 * address space whose tables exist, on sim:ga102, with the event log already
 * full (10,000 entries, as in a long test or REPL session). Host time per
 * map is printed as a multiple of a floor measured in the same run: 1,024
 * simulated 32-bit PRAMIN writes (`window.write32`, one 4 KiB page table's
 * worth), so the figures hold on any machine.
 *
 * What the simulator costs per map: the first posted write after each FB
 * flush snapshots what the GPU still sees (per 4 KiB page), and each flush
 * and invalidate adds an event to the bounded log (a ring: O(1) per event).
 * Also printed: the same posted-write and log work alone, without `mm/`.
 *
 * Run: `deno bench -A bench/sim_bench.ts`
 */

import { type Mapping, openGpu } from "../mod.ts";
import { best, praminFloor } from "./timing.ts";

const KiB = 1024;
const MiB = 2 ** 20;
const PAGE = 4 * KiB;

const gpu = await openGpu({ device: "sim:ga102" });
const sim = gpu.sim!;

// --- the floor: 1,024 simulated 32-bit PRAMIN writes ---------------------------------

const { run: floor, describe: describeFloor, start: scratch } = praminFloor(gpu, 1024);
for (let i = 0; i < 200; i++) floor(); // JIT
let floorMs = best(40, 20, floor);
const times = (ms: number) => `${(ms / floorMs).toFixed(2)}x floor`;

// --- the maps ------------------------------------------------------------------------

const small = gpu.mm.buddy.alloc(64 * KiB, { align: 64 * KiB });
const big = gpu.mm.buddy.alloc(2 * MiB, { align: 2 * MiB });
const anchorPage = gpu.mm.buddy.alloc(PAGE);
const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
// A page mapped nearby keeps the directories, so each map writes only its PTEs.
const anchor: Mapping = vmm.mapPages([anchorPage.start / PAGE]);

function mapSmall(): void {
  vmm.mapRange(small.start, 64 * KiB, { writable: true }).unmap();
}
function mapBig(): void {
  vmm.mapRange(big.start, 2 * MiB, { writable: true }).unmap();
}

// Fill the event log to its bound first: each map and unmap adds a flush and an invalidate.
while (sim.eventCount < 12_000) mapSmall();
for (let i = 0; i < 500; i++) mapBig();

// Interleaved rounds (the floor too), so a busy machine slows all alike.
let smallMs = Infinity;
let bigMs = Infinity;
for (let round = 0; round < 40; round++) {
  smallMs = Math.min(smallMs, best(1, 20, mapSmall));
  bigMs = Math.min(bigMs, best(1, 20, mapBig));
  floorMs = Math.min(floorMs, best(1, 20, floor));
}
console.log(describeFloor(floorMs));
console.log(
  `sim (a) sim:ga102 map + unmap 64 KiB (tables exist, log full): ${
    (smallMs * 1000).toFixed(2)
  } us = ${times(smallMs)}`,
);
console.log(
  `sim (b) sim:ga102 map + unmap 2 MiB (tables exist, log full): ${
    (bigMs * 1000).toFixed(2)
  } us = ${times(bigMs)}`,
);

// --- the simulator's own share: a posted PTE write and a flush -------------------------

/** One PTE write through PRAMIN, then the FB flush that makes it visible (2 log events). */
function postAndFlush(): void {
  {
    using w = gpu.pramin.window();
    w.write32(scratch + 0x100, 1);
  }
  gpu.tlb.fbFlush();
}
for (let i = 0; i < 2000; i++) postAndFlush();
const postMs = best(40, 100, postAndFlush);
console.log(
  `sim (c) one posted write + FB flush (log full): ${(postMs * 1000).toFixed(2)} us = ${
    times(postMs)
  }`,
);

Deno.bench({
  name: "map + unmap 64 KiB (sim:ga102, tables exist, log full)",
  group: "sim",
  fn: mapSmall,
});

Deno.bench({
  name: "map + unmap 2 MiB (sim:ga102, tables exist, log full)",
  group: "sim",
  fn: mapBig,
});

Deno.bench({
  name: "one posted PRAMIN write + FB flush (sim:ga102)",
  group: "sim",
  fn: postAndFlush,
});

// Keep the anchor referenced: it is what keeps the directories alive.
if (!anchor.live) throw new Error("anchor mapping was unmapped");
