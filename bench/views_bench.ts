/**
 * The cost of the pictures on a large card: sim:gh100 (80 GiB) with 100,000
 * buddy allocations (4 KiB and 64 KiB alternating, one in 64 of them 2 MiB)
 * each mapped into one address space (100,000 mappings, 4 KiB, 64 KiB and
 * 2 MiB pages), plus BAR1 brought up with one mapping.
 *
 * Figures (the best of three runs), printed once at module load, in ms and as a multiple of a floor
 * measured in the same run (the text the REPL prints for the same objects:
 * `String()` of every allocation and mapping, joined):
 * - the VRAM map's data (`vramModel`) and its HTML (`vramMapHtml`);
 * - the address-space view (`addressSpaceHtml`: the dump of 100,000 PTEs,
 *   the tree, the VA coverage bar);
 * - the whole report (`reportHtml`, registers included).
 *
 * Target: the report in < 2 s (absolute, the figure) and <= 20x the
 * floor (what holds on any machine); the page stays small because pieces
 * narrower than a pixel are merged (its size is printed).
 *
 * Run: `deno bench -A bench/views_bench.ts`
 */

import { type Allocation, type Mapping, openGpu } from "../mod.ts";
import { best } from "./timing.ts";
import { addressSpaceHtml, reportHtml, vramMapHtml, vramModel } from "../views/mod.ts";
import { formatSize } from "../hw/errors.ts";

const N = 100_000;
const gpu = await openGpu({ device: "sim:gh100" });
gpu.bar1.bringUp();
gpu.bar1.map(gpu.mm.buddy.alloc(2 ** 21, { label: "bar1 buffer" }));
const vmm = gpu.mm.createVmm({ vaSize: 1n << 48n, name: "bench" });
const allocations: Allocation[] = [];
const mappings: Mapping[] = [];
for (let i = 0; i < N; i++) {
  const size = i % 64 === 63 ? 2 ** 21 : i % 2 === 0 ? 4096 : 65536;
  const a = gpu.mm.buddy.alloc(size, { align: size });
  allocations.push(a);
  mappings.push(vmm.mapRange(a.start, size));
}

const floor = best(3, 1, () => {
  const lines: string[] = [];
  for (const a of allocations) lines.push(String(a));
  for (const m of mappings) lines.push(String(m));
  return lines.join("\n").length;
});
const model = best(3, 1, () => vramModel(gpu));
const m = vramModel(gpu);
let mapBytes = 0;
const map = best(3, 1, () => (mapBytes = vramMapHtml(m).length));
let spaceBytes = 0;
const space = best(3, 1, () => (spaceBytes = addressSpaceHtml(vmm).length));
let reportBytes = 0;
let report = Infinity;
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  reportBytes = (await reportHtml(gpu)).length;
  report = Math.min(report, performance.now() - t0);
}
const x = (ms: number) => `${ms.toFixed(0)} ms = ${(ms / floor).toFixed(1)}x`;
console.log(
  `views sim:gh100 80 GiB, ${N} allocations and mappings; floor (String of each) ${
    floor.toFixed(0)
  } ms`,
);
console.log(`views  vramModel ${x(model)}; vramMapHtml ${x(map)} (${formatSize(mapBytes)})`);
console.log(`views  addressSpaceHtml ${x(space)} (${formatSize(spaceBytes)})`);
console.log(
  `views  reportHtml ${x(report)} (${formatSize(reportBytes)}) (target < 2000 ms and <= 20x) ${
    report < 2000 && report <= 20 * floor ? "OK" : "MISSED"
  }`,
);

Deno.bench({
  name: "reportHtml, 80 GiB card, 100,000 mappings (sim:gh100)",
  group: "views",
  n: 3,
  warmup: 1,
  async fn() {
    await reportHtml(gpu);
  },
});

Deno.bench({
  name: "vramMapHtml, 100,000 allocations",
  group: "views",
  n: 5,
  warmup: 1,
  fn() {
    vramMapHtml(m);
  },
});
