/**
 * Issue 17 items 5 and 6: printing one way (counts decimal, addresses hex,
 * one range notation, one size formatter, toString everywhere, labelled
 * allocations, derived register values) and errors in the caller's terms and
 * order (lifetime, then permission, then range/alignment; double unmap like
 * double free; pte() takes its own output; walk() and gpu.walk() alike).
 */

import assert from "node:assert/strict";
import { openGpu } from "../mm/gpu.ts";
import { buildGlobals, layoutLines } from "../cli/globals.ts";
import { formatValue } from "../cli/repl_format.ts";
import { formatSize } from "../hw/errors.ts";
import { readRegisters } from "../hw/reg_dump.ts";
import { throwsNova } from "./util.ts";

const KiB = 1024;
const MiB = 2 ** 20;
const PAGE = 4096;

Deno.test("printing: counts, versions, bits and levels decimal; addresses and values hex", () => {
  assert.equal(
    formatValue({ PD0: 1, PT: 4097, polls: 218, hi: 23, lo: 0, mmuVersion: 2, pa: 4096 })
      ?.replace(/\s+/g, " "),
    "{ PD0: 1, PT: 4097, polls: 218, hi: 23, lo: 0, mmuVersion: 2, pa: 0x1000 }",
  );
  assert.equal(formatValue({ "2M": 8, "4K": 17 }), '{ "2M": 8, "4K": 17 }');
  assert.equal(
    formatValue({ size: 2 ** 30, value: 0xdeadbeef }),
    "{ size: 0x40000000, value: 0xdeadbeef }",
  );
  assert.equal(formatValue(0x2a), "0x2a (42)");
});

Deno.test("printing: one size formatter, rounded down, used by the buddy and the banner alike", async () => {
  assert.equal(formatSize(24 * 2 ** 30), "24 GiB");
  assert.equal(formatSize(0x5fff00000 - 0x40000), "23.99 GiB", "never rounded up to 24.0");
  assert.equal(formatSize(1.5 * MiB), "1.5 MiB");
  assert.equal(formatSize(512), "512 B");
  using gpu = await openGpu({ device: "sim" });
  const u = gpu.vram.usable;
  assert.match(String(gpu.mm.buddy), new RegExp(`\\) ${formatSize(u.end - u.start)}: `));
  assert.match(String(gpu.mm.buddy), /23\.99 GiB:/);
});

Deno.test("printing: one range notation [start, end) in layout, ranges and messages", async () => {
  using gpu = await openGpu({ device: "sim" });
  for (const line of layoutLines(gpu.vram.layout)) {
    assert.match(line, /\[0x[0-9a-f]+, 0x[0-9a-f]+\)/);
  }
  const vmm = gpu.mm.createVmm({ name: "r" });
  const a = gpu.mm.buddy.alloc(64 * KiB);
  vmm.mapRange(a.start, 64 * KiB, { va: 0x100000n });
  throwsNova(
    () => vmm.mapRange(a.start, 64 * KiB, { va: 0x108000n }),
    "EBUSY",
    "[0x100000, 0x110000)",
  );
});

Deno.test("printing: toString on objects with a custom inspect; vmm.ranges lists its ranges", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const bar1 = gpu.bar1;
  assert.match(`${bar1}`, /^BAR1 128 GiB, /);
  assert.match(`${gpu}`, /^Gpu sim:gh100 GH100/);
  assert.match(`${gpu.mm}`, /^GpuMm MMU v3/);
  const vmm = gpu.mm.createVmm({ name: "ch" });
  assert.match(`${vmm}`, /^Vmm ch MMU v3/);
  const a = gpu.mm.buddy.alloc(20 * PAGE);
  for (let i = 0; i < 20; i++) vmm.mapPages([a.start / PAGE + i]);
  const m = vmm.mappings()[0];
  assert.match(`${m}`, /^Mapping 0x0 \+4 KiB ro/);
  const text = `${vmm.ranges}`;
  assert.equal(text, Deno.inspect(vmm.ranges));
  assert.match(text, /^VaRanges 20 taken of /);
  assert.match(text, /^ {2}mapping \[0x0, 0x1000\)$/m);
  assert.match(text, /^ {2}\.\.\. 4 more \(\.list\(\) has all\)$/m);
  assert.equal(text.split("\n").length, 1 + 16 + 1);
});

Deno.test("printing: page tables, roots and instance blocks are labelled in allocations()", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  gpu.bar1.bringUp();
  const a = gpu.mm.buddy.alloc(64 * KiB);
  using _m = gpu.bar1.map(a);
  const text = Deno.inspect(gpu.mm.buddy.allocations());
  assert.match(text, /\(1 block\) PD4 of bar1$/m);
  assert.match(text, /\(1 block\) PD2 of bar1$/m);
  assert.match(text, /\(1 block\) instance block of bar1 /m);
  const b = gpu.mm.buddy.alloc(4 * KiB, { label: "my buffer" });
  assert.match(String(b), /\(1 block\) my buffer$/);
  throwsNova(() => gpu.mm.buddy.alloc(4096, { label: 5 as unknown as string }), "EINVAL", "label");
});

Deno.test("printing: regs() shows derived values beside raw fields", async () => {
  {
    using gpu = await openGpu({ device: "sim" });
    const text = Deno.inspect(readRegisters(gpu.bar0, gpu.chip.architecture, gpu.chip.chipId));
    assert.match(text, /MB=0x6000 \(24 GiB\)/);
    assert.match(text, /ADDR=0x5fff0 \(VRAM 0x5fff00000\)/);
  }
  {
    using gpu = await openGpu({ device: "sim:ga100" });
    const text = Deno.inspect(readRegisters(gpu.bar0, gpu.chip.architecture, gpu.chip.chipId));
    assert.match(text, /LOCK_ADDR_LO +0x[0-9a-f]+ +VAL=0x[0-9a-f]+ \(VRAM 0x[0-9a-f]+000\)/);
    assert.match(text, /LOWER_MAG=0x28 \(40 GiB\)/);
  }
});

Deno.test("errors: lifetime first, then permission, then range and alignment; offsets are the mapping's", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const a = gpu.mm.buddy.alloc(64 * KiB);
  using _first = gpu.bar1.map(a); // so that the mapping under test is not at BAR1 VA 0
  const ro = gpu.bar1.map(a);
  assert.notEqual(ro.va, 0n);
  // Read-only and misaligned and past the end: permission is reported before range/alignment.
  throwsNova(() => ro.write32(2, 1), "EPERM", "read-only");
  throwsNova(() => ro.write32(64 * KiB, 1), "EPERM", "read-only");
  // Alignment in the mapping's terms (offset 0x2), not the BAR1 VA.
  const e = throwsNova(() => ro.read32(2), "EINVAL", "offset 0x2 ", "4-byte");
  assert.doesNotMatch(e.message, new RegExp(`0x${(Number(ro.va) + 2).toString(16)}\\b`));
  throwsNova(() => ro.read32(64 * KiB), "EINVAL", "offset 0x10000", "past the end");
  ro.unmap();
  // Unmapped: ENODEV before the permission and the range.
  throwsNova(() => ro.write32(2, 1), "ENODEV", "unmapped");
  throwsNova(() => ro.read32(64 * KiB + 1), "ENODEV", "unmapped");
  throwsNova(() => ro.writeBytes(0, "x" as unknown as Uint8Array), "ENODEV", "unmapped");
});

Deno.test("errors: a second unmap() is reported like a second free()", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const a = gpu.mm.buddy.alloc(64 * KiB);
  const bm = gpu.bar1.map(a);
  bm.unmap();
  throwsNova(() => bm.unmap(), "EINVAL", "double unmap of BAR1 mapping");
  bm[Symbol.dispose](); // disposing after an unmap stays harmless, as for an Allocation
  const vmm = gpu.mm.createVmm({ name: "ch" });
  const m = vmm.mapRange(a.start, 64 * KiB);
  m.unmap();
  throwsNova(() => m.unmap(), "EINVAL", "ch unmap: double unmap of mapping 0x");
  throwsNova(() => vmm.unmap(m), "EINVAL", "double unmap");
  m[Symbol.dispose]();
  a.free();
  throwsNova(() => a.free(), "EINVAL", "double free of allocation");
});

Deno.test("errors: pte() accepts its own decoded output; walk() and gpu.walk() take the same arguments", async () => {
  using gpu = await openGpu({ device: "sim:gh100" });
  const g = buildGlobals(gpu);
  const decoded = g.pte(0x1234501n);
  assert.equal(String(g.pte(decoded as never)), String(decoded));
  assert.equal(gpu.format.codec.encodePte(g.pte(decoded as never) as never), 0x1234501n);
  gpu.bar1.bringUp();
  const pdb = gpu.bar1.pdb!;
  const ref = String(gpu.walk(0n));
  for (
    const r of [g.walk(0n, pdb), g.walk(0n, { pdb }), gpu.walk(0n, pdb), gpu.walk(0n, { pdb })]
  ) {
    assert.equal(String(r), ref);
  }
});
