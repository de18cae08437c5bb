/**
 * `help(x)` at the prompt is generated from the JSDoc: the committed
 * cli/help_data.json must be what tools/gen_help.ts makes of the source now,
 * and help prints signatures, docs and examples for methods found by identity.
 */

import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { generate } from "../tools/gen_help.ts";
import { classOf, helpFor, returnClass } from "../cli/help.ts";
import { buildGlobals } from "../cli/globals.ts";
import { ROOT } from "./util.ts";

Deno.test("help data: cli/help_data.json is generated from the current source", async () => {
  const fresh = await generate(new URL(`file://${ROOT}`));
  const committed = await Deno.readTextFile(`${ROOT}cli/help_data.json`);
  assert.ok(fresh === committed, "cli/help_data.json is stale: run `deno task help-data`");
});

Deno.test("help: methods by identity, with signature, doc and example; classes list members", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const read32 = helpFor(gpu.pramin.read32)!;
  assert.match(read32, /^Pramin\.read32\(addr: number\): number\n {2}One-shot 32-bit read/);
  using w = gpu.pramin.window();
  assert.match(
    helpFor(w.fill)!,
    /^PraminWindow\.fill\(addr: number, len: number, byte: number\): void/,
  );
  const alloc = helpFor(gpu.mm.buddy.alloc)!;
  assert.match(
    alloc,
    /^BuddyAllocator\.alloc\(size: number, options\?: AllocOptions\): Allocation/m,
  );
  assert.match(alloc, /\n {2}e\.g\.\n/);
  assert.match(helpFor(gpu.bar1)!, /^class BarUser: BAR1 of one GPU\./);
  assert.match(helpFor(gpu.bar1)!, /^ {2}bringUp\(options\?: \{ force\?: boolean \}\): this/m);
  assert.match(helpFor(openGpu)!, /^openGpu\(options\?: OpenGpuOptions\): Promise<Gpu>/);
  assert.equal(classOf(gpu.mm.buddy.alloc(4096)), "Allocation");
  assert.equal(returnClass(gpu.mm.buddy.alloc), "Allocation");
  assert.equal(helpFor(() => 1), null, "an undocumented function has no entry");
  // Through the preloaded help(): a helper shows its own parameters.
  const g = buildGlobals(gpu);
  assert.match(
    String(g.help(g.hexdump32)),
    /^hexdump32\(source, len = 256, start = 0\)\n {2}32-bit word dump/,
  );
  assert.match(String(g.help(gpu.pramin.read32)), /^Pramin\.read32\(addr: number\): number/);
  const all = String(g.help());
  assert.match(all, /^The card:$/m);
  assert.match(all, /^Page tables, TLB and BAR1:$/m);
});
