/**
 * Dumps the BAR1 page tables (read from VRAM) as an indented tree, then checks every mapped
 * page: the first word read through the BAR1 aperture must equal the word
 * PRAMIN reads at the physical address the tables give. On a card whose BAR1
 * is still physical (no driver booted it), BAR1 is brought up first and four
 * pages are mapped so there is a tree to show; `gpu.close()` puts it back.
 *
 * ```sh
 * deno task repl examples/dump_bar1_tables.ts --device sim:gh100:gsp   # firmware's tables
 * deno task repl examples/dump_bar1_tables.ts --walk 0x10000   # also every level of one VA
 * ```
 *
 * Options: `--max-ptes N` (default 256), `--walk VA`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { scriptGlobals } from "../script.ts";
import { fail, hex } from "../script.ts";
import type { DumpNode } from "../script.ts";

const { gpu, bar1, walk, args } = await scriptGlobals();
const { values } = parseArgs({
  args,
  options: { "max-ptes": { type: "string", default: "256" }, walk: { type: "string" } },
  strict: true,
});

if (bar1.mode === "physical") {
  console.log("BAR1 is physical (no driver bound it): bringing it up and mapping 4 pages");
  const a = gpu.mm.buddy.alloc(4 * 4096);
  bar1.map(a, { writable: true }).writeBytes(0, new Uint8Array(4 * 4096).fill(0x5a));
}
const vmm = bar1.vmm;
console.log(bar1);
// Read from VRAM, not the Vmm's shadow: what the hardware walks.
const tree = vmm.dump({ maxPtes: Number(values["max-ptes"]), fromHardware: true });
console.log(tree);

/** Every leaf PTE of the dump: first VA of each mapped page. */
function leaves(node: DumpNode, out: bigint[]): bigint[] {
  const e = node.entry as { valid?: boolean } | null;
  if (node.children.length === 0 && e !== null && e.valid === true) out.push(node.va);
  for (const c of node.children) leaves(c, out);
  return out;
}

const pages = leaves(tree, []);
console.log(`\n${pages.length} mapped pages; BAR1 vs PRAMIN, first word of each:`);
let bad = 0;
for (const va of pages) {
  const t = vmm.translate(va);
  if (t === null) fail("EIO", `the dump lists ${hex(va)} but it does not translate`);
  if (t.aperture !== "video" || typeof t.pa !== "number") {
    console.log(`  ${hex(va).padEnd(12)} -> ${t.aperture} ${hex(t.pa)} (not VRAM: skipped)`);
    continue;
  }
  if (va + 4n > BigInt(gpu.device.bar1.size)) {
    console.log(`  ${hex(va).padEnd(12)} past the BAR1 aperture: skipped`);
    continue;
  }
  const viaBar1 = gpu.device.bar1.read32(Number(va));
  const viaPramin = gpu.pramin.read32(t.pa);
  const ok = viaBar1 === viaPramin;
  if (!ok) bad++;
  console.log(
    `  ${hex(va).padEnd(12)} -> VRAM ${hex(t.pa).padEnd(14)} ${
      String(t.pageSize / 1024).padStart(7)
    } KiB  BAR1 ${hex(viaBar1, 8)}  PRAMIN ${hex(viaPramin, 8)}  ${ok ? "ok" : "MISMATCH"}`,
  );
}
if (values.walk !== undefined) {
  console.log("");
  console.log(walk(BigInt(values.walk)));
}
if (bad > 0) fail("EIO", `${bad} pages read differently through BAR1 and PRAMIN`);
