/**
 * BAR1 self-tests: run unchanged on any device (`deno task selftest`).
 * Every page comes from the buddy allocator and is given back; firmware's own
 * BAR1 mappings are never touched.
 *
 * @module
 */

import { hex } from "../hw/errors.ts";
import type { Gpu } from "../mm/gpu.ts";
import { expect, expectError, type SelfTestSuite } from "./selftest.ts";

const PAGE = 4096;

/** Runs fn with BAR1/buddy state checked to be back where it started. */
function balanced(gpu: Gpu, fn: () => void): void {
  const before = gpu.mm.buddy.stats();
  const mappings = gpu.bar1.vmm.mappings().length;
  fn();
  const after = gpu.mm.buddy.stats();
  expect(after.free === before.free, `buddy free ${hex(after.free)} back to ${hex(before.free)}`);
  expect(gpu.bar1.vmm.mappings().length === mappings, "no BAR1 mapping left behind");
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

/** After unmap the VA faults (on the simulator) and can be mapped again. */
function unmapReuse(gpu: Gpu): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(2 * PAGE);
    const m = gpu.bar1.map(a, { writable: true });
    const va = m.va;
    m.write32(0, 0x600d600d);
    m.unmap();
    expect(gpu.bar1.vmm.translate(va) === null, "the VA no longer translates");
    expectError("ENODEV", () => m.read32(0), "access through an unmapped BarMapping");
    const sim = gpu.sim;
    if (sim !== null) {
      const faults = sim.mmu.faultCount;
      const v = gpu.device.bar1.read32(Number(va));
      expect(sim.mmu.faultCount === faults + 1, "a raw BAR1 read of the old VA faulted");
      expect(v === 0xbad1fa17, `and read the fault pattern, got ${hex(v)}`);
    }
    using again = gpu.bar1.map(a, { writable: true, va });
    expect(again.va === va && again.read32(0) === 0x600d600d, "the VA is reusable");
  });
}

/** A PTE changed without a TLB flush is not seen until the flush. */
function missingFlush(gpu: Gpu): void {
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
    gpu.pramin.write64(pteAddr, codec.vramPte(b.start, { writable: true })); // no flush
    if (gpu.sim !== null) {
      expect(m.read32(0) === 0xaaaaaaaa, "without a flush the stale translation is used");
    }
    gpu.tlb.flush(gpu.bar1.pdb);
    expect(m.read32(0) === 0xbbbbbbbb, "after the flush the new PTE is used");
    gpu.pramin.write64(pteAddr, codec.vramPte(a.start, { writable: true }));
    gpu.tlb.flush(gpu.bar1.pdb);
  });
}

/** A read-only mapping refuses writes (and the hardware drops them on the simulator). */
function readOnly(gpu: Gpu): void {
  balanced(gpu, () => {
    using a = gpu.mm.buddy.alloc(PAGE);
    gpu.pramin.write32(a.start, 0x12345678);
    using m = gpu.bar1.map(a, { writable: false });
    expect(m.read32(0) === 0x12345678, "readable");
    expectError("EPERM", () => m.write32(0, 0), "write through a read-only BarMapping");
    const t = gpu.bar1.vmm.translate(m.va);
    expect(t !== null && !t.writable, "the PTE is read-only");
    const sim = gpu.sim;
    if (sim !== null) {
      const faults = sim.mmu.faultCount;
      gpu.device.bar1.write32(Number(m.va), 0xdead);
      expect(sim.mmu.faultCount === faults + 1, "the raw write faulted");
      expect(sim.mmu.lastFault === "read-only", `reason ${sim.mmu.lastFault}`);
      expect(gpu.pramin.read32(a.start) === 0x12345678, "VRAM unchanged");
    }
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

/** Firmware's own BAR1 mappings still translate to the same pages (simulator: and hold their data). */
function firmwareIntact(gpu: Gpu): void {
  const sim = gpu.sim;
  const taken = gpu.bar1.vmm.ranges.list().filter((r) => r.owner === "firmware");
  expect(taken.length > 0 || sim === null, "firmware mappings were found by the scan");
  if (sim === null) return;
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

/** The BAR1 self-test suite. */
export const bar1Suite: SelfTestSuite = {
  name: "bar1",
  tests: [
    { name: "PRAMIN <-> BAR1 round trip", run: roundTrip, writes: true },
    { name: "scattered pages in one mapping", run: scattered, writes: true },
    { name: "unmap faults, VA reusable", run: unmapReuse, writes: true },
    { name: "missing TLB flush is caught", run: missingFlush, writes: true },
    { name: "read-only mapping refuses writes", run: readOnly, writes: true },
    { name: "prepare/execute/translate", run: prepareExecute, writes: true },
    // Reads only, but reading BAR1's tables moves the PRAMIN window: a register write.
    { name: "firmware mappings intact", run: firmwareIntact, writes: true },
  ],
};
