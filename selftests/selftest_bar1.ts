/**
 * BAR1 self-tests: run unchanged on any device (`deno task selftest`) and in
 * any card state — bare (BAR1 physical), `gsp` (firmware's tables, adopted)
 * or after a driver unloaded. Every page comes from the buddy allocator and
 * is given back; firmware's own BAR1 mappings are never touched; no test
 * lets the CPU touch a BAR1 page outside a live mapping while BAR1 is
 * virtual (that is a BAR fault, fatal on hardware: facts §13.3 item 7); the
 * bind registers are put back as found by `gpu.close()`.
 *
 * @module
 */

import { hex } from "../hw/errors.ts";
import {
  MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  setField,
} from "../hw/regs.ts";
import type { Gpu } from "../mm/gpu.ts";
import { expect, expectError, type SelfTestSuite } from "./selftest.ts";

const PAGE = 4096;

/** Virtual-mode tests do not run on a boot VGA device whose BAR1 is physical: it would blank the console. */
function needsVirtual(gpu: Gpu): string | null {
  const flush = gpu.family.fbFlush;
  if (flush.mechanism === "gsp") {
    return `${gpu.family.name} flushes the frame buffer only through GSP-RM: BAR1 page tables cannot be made visible (${flush.description})`;
  }
  return gpu.device.bootVga && gpu.bar1.mode === "physical"
    ? "boot VGA device: BAR1 stays physical for the console (bar1.bringUp({ force: true }) to test it)"
    : null;
}

/** Brings BAR1 up (a no-op when novamm's or firmware's space is bound) and runs fn with state checked after. */
function balanced(gpu: Gpu, fn: () => void): void {
  gpu.bar1.bringUp();
  const before = gpu.mm.buddy.stats();
  const mappings = gpu.bar1.vmm.mappings().length;
  fn();
  const after = gpu.mm.buddy.stats();
  expect(after.free === before.free, `buddy free ${hex(after.free)} back to ${hex(before.free)}`);
  expect(gpu.bar1.vmm.mappings().length === mappings, "no BAR1 mapping left behind");
}

/** The hardware's bind registers say virtual, bound to `inst`, with no bind pending. */
function expectBound(gpu: Gpu, inst: number | null): void {
  const s = gpu.family.bar1.read(gpu.bar0);
  expect(
    s.instanceBlock === inst,
    `bind register names ${hex(s.instanceBlock ?? 0)}, want ${hex(inst ?? 0)}`,
  );
  expect(
    gpu.bar1.mode === (inst === null ? "physical" : "virtual"),
    `bar1.mode is ${gpu.bar1.mode}`,
  );
}

/** Physical BAR1: VRAM by address, both directions against PRAMIN (unbinding first, then back). */
function physicalRoundTrip(gpu: Gpu): void {
  const bar1 = gpu.bar1;
  const wasVirtual = bar1.mode === "virtual";
  if (wasVirtual) bar1.unbind();
  try {
    const { start, end } = gpu.vram.usable;
    const reach = Math.min(end, bar1.physical.reach);
    expect(reach - start >= PAGE, "physical BAR1 reaches part of the usable region");
    using a = gpu.mm.buddy.alloc(PAGE, { range: { start, end: reach } });
    bar1.physical.write32(a.start + 0x10, 0x600dcafe);
    expect(gpu.pramin.read32(a.start + 0x10) === 0x600dcafe, "PRAMIN reads a physical BAR1 write");
    gpu.pramin.write32(a.start + 0x20, 0x12345678);
    expect(
      bar1.physical.read32(a.start + 0x20) === 0x12345678,
      "physical BAR1 reads a PRAMIN write",
    );
    const bytes = new Uint8Array(300).map((_, i) => i * 7);
    bar1.physical.writeBytes(a.start + 0x101, bytes);
    const back = gpu.pramin.readBytes(a.start + 0x101, bytes.length);
    expect(back.every((b, i) => b === bytes[i]), "unaligned bytes through physical BAR1");
    // Firmware's VRAM within reach (VGA memory at 0, WPR2, ...) is not written without `forced`;
    // a chip without display on a bare card may have none.
    const owned = gpu.vram.layout.find((r) => r.start < bar1.physical.reach);
    if (owned !== undefined) {
      // Reads are allowed anywhere in reach; writes there are not (the write policy).
      bar1.physical.read32(owned.start);
      expectError(
        "EPERM",
        () => bar1.physical.write32(owned.start, 0),
        `a write of VRAM ${hex(owned.start)} (${owned.name}) without forced`,
      );
    }
  } finally {
    if (wasVirtual) bar1.bringUp();
  }
}

/** Bring-up: novamm's (or firmware's) BAR1 space bound, bind register virtual, nothing pending. */
function bringUp(gpu: Gpu): void {
  gpu.bar1.bringUp();
  const b = gpu.bar1.binding;
  expect(b !== null, "BAR1 has a binding after bringUp()");
  expectBound(gpu, b.instanceBlock);
  expect(gpu.bar1.vmm.pdb === b.pdb, "the bound space is bar1.vmm");
}

/** PRAMIN → BAR1 and BAR1 → PRAMIN. */
function roundTrip(gpu: Gpu): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(PAGE);
    using m = gpu.bar1.map(a, { writable: true });
    gpu.pramin.write32(a.start + 0x100, 0xdeadbeef);
    expect(m.read32(0x100) === 0xdeadbeef, `BAR1 read of a PRAMIN write: ${hex(m.read32(0x100))}`);
    m.write32(0x200, 0xcafebabe);
    expect(gpu.pramin.read32(a.start + 0x200) === 0xcafebabe, "PRAMIN read of a BAR1 write");
    m.write64(0x208, 0x0123456789abcdefn);
    expect(gpu.pramin.read64(a.start + 0x208) === 0x0123456789abcdefn, "64-bit through BAR1");
    const t = gpu.bar1.vmm.translate(m.va);
    expect(t !== null && t.pa === a.start && t.writable, "translate() finds the page");
  });
}

/** Scattered physical pages behind one contiguous BAR1 range. */
function scattered(gpu: Gpu): void {
  balanced(gpu, () => {
    using pool = gpu.mm.buddy.alloc(64 * PAGE);
    const pfns = [5, 17, 2, 40, 33, 8, 63, 0].map((i) => pool.start / PAGE + i);
    using m = gpu.bar1.map(pfns, { writable: true });
    const data = new Uint8Array(pfns.length * PAGE);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    m.writeBytes(0, data);
    using w = gpu.pramin.window();
    for (let p = 0; p < pfns.length; p++) {
      const back = w.readBytes(pfns[p] * PAGE, PAGE);
      for (let i = 0; i < PAGE; i += 509) {
        expect(back[i] === data[p * PAGE + i], `page ${p} (pfn ${hex(pfns[p])}) byte ${i}`);
      }
    }
    w.close();
    const read = m.readBytes(3, 3 * PAGE);
    expect(read.every((b, i) => b === data[3 + i]), "unaligned read across pages");
  });
}

/** After unmap the VA no longer translates, a raw CPU access there is refused, and the VA is reusable. */
function unmapReuse(gpu: Gpu): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(2 * PAGE);
    const m = gpu.bar1.map(a, { writable: true });
    const va = m.va;
    m.write32(0, 0x600d600d);
    m.unmap();
    expect(gpu.bar1.vmm.translate(va) === null, "the VA no longer translates");
    expectError("ENODEV", () => m.read32(0), "access through an unmapped BarMapping");
    // Never touched: refused before it reaches the card.
    expectError("EFAULT", () => gpu.device.bar1.read32(Number(va)), "raw BAR1 read of the old VA");
    expect(gpu.sim === null || gpu.sim.lost === null, "the GPU is still there");
    using again = gpu.bar1.map(a, { writable: true, va });
    expect(again.va === va && again.read32(0) === 0x600d600d, "the VA is reusable");
  });
}

/**
 * Maps page A into BAR1, rewrites its PTE through PRAMIN to point at page B,
 * runs `check(m, a, b)`, then puts the PTE back (flushed properly).
 */
function retargetedPte(
  gpu: Gpu,
  check: (m: { read32(o: number): number }, a: number, b: number) => void,
): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(PAGE);
    using b = gpu.mm.buddy.alloc(PAGE);
    gpu.pramin.write32(a.start, 0xaaaaaaaa);
    gpu.pramin.write32(b.start, 0xbbbbbbbb);
    using m = gpu.bar1.map(a, { writable: true });
    expect(m.read32(0) === 0xaaaaaaaa, "mapped to page A");
    const r = gpu.bar1.vmm.walk(m.va);
    expect(r.mapped, "walk finds the PTE");
    const pteAddr = r.steps.at(-1)!.entryAddress;
    const codec = gpu.format.codec;
    gpu.pramin.write64(pteAddr, codec.vramPte(b.start, { writable: true }), { force: true });
    check(m, 0xaaaaaaaa, 0xbbbbbbbb);
    gpu.pramin.write64(pteAddr, codec.vramPte(a.start, { writable: true }), { force: true });
    gpu.tlb.flush(gpu.bar1.pdb, { hubOnly: true });
  });
}

/** A PTE changed without a TLB flush is not seen until the flush. */
function missingTlbFlush(gpu: Gpu): void {
  retargetedPte(gpu, (m, a, b) => {
    gpu.tlb.fbFlush(); // visible in VRAM, but not invalidated
    if (gpu.sim !== null) {
      expect(m.read32(0) === a, "without a TLB flush the stale translation is used");
    }
    gpu.tlb.flush(gpu.bar1.pdb, { hubOnly: true });
    expect(m.read32(0) === b, "after the flush the new PTE is used");
  });
}

/** A PTE written through PRAMIN and invalidated without an FB flush first is not seen (simulator). */
function missingFbFlush(gpu: Gpu): void {
  retargetedPte(gpu, (m, a, b) => {
    // The TLB invalidate alone, by hand, skipping the FB flush that Tlb.flush does first.
    const pdb = gpu.bar1.pdb;
    gpu.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, (pdb % 2 ** 40) / PAGE * 16);
    let control = setField(0, MMU_INVALIDATE.ALL_VA, 1);
    control = setField(control, MMU_INVALIDATE.HUBTLB_ONLY, 1);
    control = setField(control, MMU_INVALIDATE.TRIGGER, 1);
    gpu.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, control);
    for (
      let i = 0;
      i < 1000 && gpu.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE) >>> 31;
      i++
    );
    if (gpu.sim !== null) {
      expect(m.read32(0) === a, "without an FB flush the MMU walked the old PTE");
    }
    gpu.tlb.flush(pdb, { hubOnly: true }); // FB flush, then invalidate
    expect(m.read32(0) === b, "after FB flush + invalidate the new PTE is used");
  });
}

/** A read-only mapping refuses CPU writes (before they reach BAR1). */
function readOnly(gpu: Gpu): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(PAGE);
    gpu.pramin.write32(a.start, 0x12345678);
    using m = gpu.bar1.map(a, { writable: false });
    expect(m.read32(0) === 0x12345678, "readable");
    expectError("EPERM", () => m.write32(0, 0), "write through a read-only BarMapping");
    const t = gpu.bar1.vmm.translate(m.va);
    expect(t !== null && !t.writable, "the PTE is read-only");
    expectError("EFAULT", () => gpu.device.bar1.write32(Number(m.va), 0xdead), "raw BAR1 write");
    expect(gpu.pramin.read32(a.start) === 0x12345678, "VRAM unchanged");
  });
}

/** nova-core's test 3: prepare, execute, translate. */
function prepareExecute(gpu: Gpu): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(PAGE);
    const vmm = gpu.bar1.vmm;
    const p = vmm.prepareMap([a.start / PAGE], { writable: true });
    const cancelled = vmm.prepareMap([a.start / PAGE]);
    cancelled.cancel();
    const m = vmm.executeMap(p);
    const t = vmm.translate(m.va);
    expect(t !== null && t.pa === a.start && t.pageSize === PAGE, "read back the PFN");
    m.unmap();
  });
}

/** bind() a fresh address space: the GPU's MMU translates BAR1 through its tables; then back. */
function bindFresh(gpu: Gpu): void {
  gpu.bar1.bringUp();
  const home = gpu.bar1.binding!;
  const free = gpu.mm.buddy.stats().free;
  const ch = gpu.mm.createVmm({ vaSize: BigInt(gpu.bar1.size), name: "selftest-ch" });
  try {
    using a = gpu.mm.buddy.alloc(2 * PAGE);
    gpu.pramin.write32(a.start + 4, 0x0ddba11);
    const cm = ch.mapPages([a.start / PAGE + 1, a.start / PAGE], { va: 0x30000n, writable: true });
    gpu.bar1.bind(ch);
    try {
      expect(gpu.bar1.vmm === ch, "bar1.vmm is the bound space");
      expectBound(gpu, gpu.bar1.binding!.instanceBlock);
      // VA 0x31000 is ch's second page = a.start: translated by the GPU from ch's tables.
      expect(gpu.device.bar1.read32(0x31004) === 0x0ddba11, "BAR1 through ch's tables");
      gpu.device.bar1.write32(0x30000, 0xfeedf00d);
      expect(gpu.pramin.read32(a.start + PAGE) === 0xfeedf00d, "a BAR1 write lands in ch's page");
      expectError("EFAULT", () => gpu.device.bar1.read32(0x40000), "a VA ch does not map");
      expectError("EBUSY", () => gpu.mm.destroyVmm(ch), "destroying the bound space");
    } finally {
      gpu.bar1.bringUp(); // back to novamm's (or firmware's) BAR1 space
    }
    expectBound(gpu, home.instanceBlock);
    cm.unmap();
  } finally {
    gpu.mm.destroyVmm(ch);
  }
  expect(gpu.mm.buddy.stats().free === free, "root, tables and instance block given back");
}

/** unbind() returns BAR1 to physical mode; bringUp() binds again. */
function unbindRebind(gpu: Gpu): void {
  gpu.bar1.bringUp();
  const home = gpu.bar1.binding!;
  gpu.bar1.unbind();
  expectBound(gpu, null);
  expectError("ENODEV", () => gpu.bar1.vmm, "bar1.vmm in physical mode");
  gpu.bar1.bringUp();
  expectBound(gpu, home.instanceBlock);
}

/** Firmware's own BAR1 mappings still translate to the same pages (simulator: and hold their data). */
function firmwareIntact(gpu: Gpu): void {
  const sim = gpu.sim;
  const taken = gpu.bar1.vmm.ranges.list().filter((r) => r.owner === "firmware");
  expect(taken.length > 0, "firmware mappings were found by the scan");
  if (sim === null || sim.firmware === null) return;
  for (const fw of sim.firmware.mappings) {
    const t = gpu.bar1.vmm.translate(fw.va);
    expect(t !== null && t.pa === fw.pa, `firmware VA ${hex(fw.va)} still maps ${hex(fw.pa)}`);
    const v = gpu.device.bar1.read32(Number(fw.va));
    expect(
      v === fw.pattern,
      `firmware page at VA ${hex(fw.va)} reads ${hex(v)}, expected ${hex(fw.pattern)}`,
    );
  }
}

/** Skips unless BAR1 was bound to firmware's tables when the session opened. */
function needsFirmware(gpu: Gpu): string | null {
  return gpu.bar1AtOpen.mode === "virtual"
    ? null
    : "BAR1 was physical at open: no firmware BAR1 tables (card not booted by GSP-RM)";
}

/** The BAR1 self-test suite. */
export const bar1Suite: SelfTestSuite = {
  name: "bar1",
  tests: [
    {
      name: "physical BAR1 <-> PRAMIN round trip",
      run: physicalRoundTrip,
      writes: true,
      // Bound by firmware on GB10x, it could not be bound back after the unbind.
      skip: (gpu) => gpu.bar1.mode === "virtual" ? needsVirtual(gpu) : null,
    },
    {
      name: "bring-up binds BAR1, nothing pending",
      run: bringUp,
      writes: true,
      skip: needsVirtual,
    },
    { name: "PRAMIN <-> BAR1 round trip", run: roundTrip, writes: true, skip: needsVirtual },
    { name: "scattered pages in one mapping", run: scattered, writes: true, skip: needsVirtual },
    { name: "unmapped VA refused, VA reusable", run: unmapReuse, writes: true, skip: needsVirtual },
    { name: "missing TLB flush is caught", run: missingTlbFlush, writes: true, skip: needsVirtual },
    { name: "missing FB flush is caught", run: missingFbFlush, writes: true, skip: needsVirtual },
    { name: "read-only mapping refuses writes", run: readOnly, writes: true, skip: needsVirtual },
    { name: "prepare/execute/translate", run: prepareExecute, writes: true, skip: needsVirtual },
    { name: "bind a fresh address space", run: bindFresh, writes: true, skip: needsVirtual },
    { name: "unbind to physical, bind again", run: unbindRebind, writes: true, skip: needsVirtual },
    // Reads only, but reading BAR1's tables moves the PRAMIN window: a register write.
    { name: "firmware mappings intact", run: firmwareIntact, writes: true, skip: needsFirmware },
  ],
};
