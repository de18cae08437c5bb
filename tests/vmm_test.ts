import assert from "node:assert/strict";
import { type Gpu, openGpu } from "../mod.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import { errorCode } from "./util.ts";

const PAGE = 4096;
const MiB = 2 ** 20;

/** The simulator's own MMU agrees with the expected physical address. */
function simPa(gpu: Gpu, pdb: number, va: bigint): number | null {
  const r = gpu.sim!.mmu.walk(pdb, va);
  return "fault" in r ? null : Number(r.pa);
}

Deno.test("vmm: scattered 4 KiB pages translate in both walkers; unmap reclaims every table", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const before = gpu.mm.buddy.stats().free;
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
    const afterRoot = gpu.mm.buddy.stats().free;
    const pool = gpu.mm.buddy.alloc(64 * PAGE);
    const pfns = [9, 3, 60, 1, 2, 33].map((i) => pool.start / PAGE + i);
    const m = vmm.mapPages(pfns, { writable: true });
    assert.deepEqual(m.pages, { "4K": 6 });
    for (let i = 0; i < pfns.length; i++) {
      const va = m.va + BigInt(i * PAGE + 0x10);
      assert.equal(simPa(gpu, vmm.pdb, va), pfns[i] * PAGE + 0x10);
      const t = vmm.translate(va)!;
      assert.equal(t.pa, pfns[i] * PAGE + 0x10);
      assert.equal(t.pageSize, PAGE);
      assert.equal(t.writable, true);
    }
    const levels = gpu.format.directories.length;
    assert.equal(Object.values(vmm.tableCounts()).reduce((a, b) => a + b), levels + 1);
    m.unmap();
    assert.equal(simPa(gpu, vmm.pdb, m.va), null);
    assert.equal(vmm.translate(m.va), null);
    assert.deepEqual(Object.values(vmm.tableCounts()), [1], "only the root is left");
    pool.free();
    assert.equal(gpu.mm.buddy.stats().free, afterRoot);
    gpu.mm.destroyVmm(vmm);
    assert.equal(gpu.mm.buddy.stats().free, before);
    assert.deepEqual(gpu.sim!.errors(), []);
    gpu.close();
  }
});

Deno.test("vmm: contiguous memory gets the largest pages the chip and alignment allow", async () => {
  const cases = [
    { device: "sim:ga102", size: 1024 * MiB, align: 512 * MiB, pages: { "512M": 2 } },
    { device: "sim:tu102", size: 1024 * MiB, align: 512 * MiB, pages: { "2M": 512 } },
    {
      device: "sim:gh100",
      size: 512 * MiB + 2 * MiB + 64 * 1024 + PAGE,
      align: 512 * MiB,
      pages: { "512M": 1, "2M": 1, "64K": 1, "4K": 1 },
    },
  ];
  for (const c of cases) {
    const gpu = await openGpu({ device: c.device });
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
    const a = gpu.mm.buddy.alloc(c.size, { align: c.align });
    const m = vmm.mapRange(a.start, c.size, { writable: true });
    assert.deepEqual(m.pages, c.pages, c.device);
    for (const off of [0, c.size / 2, c.size - PAGE, c.size - 4]) {
      const va = m.va + BigInt(off);
      assert.equal(simPa(gpu, vmm.pdb, va), a.start + off, `${c.device} +${off}`);
      assert.equal(vmm.translate(va)!.pa, a.start + off);
    }
    m.unmap();
    a.free();
    gpu.close();
  }
});

Deno.test("vmm: forced page size, and its alignment errors", async () => {
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(4 * MiB, { align: 2 * MiB });
  const m = vmm.mapRange(a.start, 4 * MiB, { pageSize: 64 * 1024 });
  assert.deepEqual(m.pages, { "64K": 64 });
  assert.equal(vmm.translate(m.va + 0x12345n)!.level, "PT64K");
  assert.equal(vmm.translate(m.va)!.writable, false, "read-only by default");
  m.unmap();
  assert.throws(
    () => vmm.mapRange(a.start + PAGE, 64 * 1024, { pageSize: 64 * 1024 }),
    /must be 0x10000-aligned/,
  );
  assert.throws(
    () => vmm.mapPages([1], { pageSize: 8192 }),
    /page size 0x2000 is not one this chip maps/,
  );
  a.free();
  gpu.close();
});

Deno.test("vmm: fixed VAs, overlap refused with EBUSY naming both ranges, bad input leaves nothing", async () => {
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 32n });
  const a = gpu.mm.buddy.alloc(4 * PAGE);
  const pfns = [0, 1, 2, 3].map((i) => a.start / PAGE + i);
  const m = vmm.mapPages(pfns, { va: 0x100000n, writable: true });
  assert.equal(m.va, 0x100000n);
  const free = gpu.mm.buddy.stats().free;
  const counts = vmm.tableCounts();
  assert.throws(
    () => vmm.mapPages(pfns, { va: 0x102000n }),
    /EBUSY: mapping \[0x102000, 0x106000\) overlaps mapping \[0x100000, 0x104000\)/,
  );
  assert.equal(errorCode(() => vmm.mapPages([], {})), "EINVAL");
  assert.equal(errorCode(() => vmm.mapPages([2 ** 40], {})), "EINVAL");
  assert.equal(errorCode(() => vmm.mapPages([1.5], {})), "EINVAL");
  assert.equal(errorCode(() => vmm.mapPages(pfns, { va: 0x1001n })), "EINVAL");
  assert.equal(errorCode(() => vmm.mapPages(pfns, { va: 1n << 32n })), "ENOSPC");
  assert.equal(gpu.mm.buddy.stats().free, free, "nothing allocated");
  assert.deepEqual(vmm.tableCounts(), counts, "no table added");
  assert.equal(vmm.ranges.list().length, 1);
  m.unmap();
  assert.equal(errorCode(() => m.vmm.unmap(m)), "EINVAL", "double unmap");
  a.free();
  gpu.close();
});

Deno.test("vmm: prepare failing for lack of VRAM changes nothing", async () => {
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const page = gpu.mm.buddy.alloc(PAGE);
  // Eat the rest of VRAM so page tables cannot be allocated.
  const hog: { free(): void }[] = [];
  for (;;) {
    const largest = gpu.mm.buddy.stats().largestFree;
    if (largest === 0) break;
    hog.push(gpu.mm.buddy.alloc(largest));
  }
  const counts = vmm.tableCounts();
  assert.equal(errorCode(() => vmm.mapPages([page.start / PAGE])), "ENOMEM");
  assert.deepEqual(vmm.tableCounts(), counts);
  assert.equal(vmm.ranges.list().length, 0, "VA range released");
  for (const h of hog) h.free();
  const m = vmm.mapPages([page.start / PAGE]);
  assert.equal(vmm.translate(m.va)!.pa, page.start);
  gpu.close();
});

Deno.test("vmm: every new table is complete before the PDE pointing at it, each word written once", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 48n });
  const pool = gpu.mm.buddy.alloc(8 * MiB);
  const writes: MmioAccess[] = [];
  gpu.device.bar0.tracer = (a) => {
    if (a.op === "w") writes.push(a);
  };
  const pfns = Array.from({ length: 700 }, (_, i) => pool.start / PAGE + ((i * 37) % 2048));
  const m = vmm.mapPages(pfns, { writable: true });
  gpu.device.bar0.tracer = undefined;
  // Resolve PRAMIN writes to VRAM addresses by following the window register.
  let base = 0;
  const vram: number[] = [];
  for (const w of writes) {
    if (w.offset === 0x10fd40) base = w.value * 65536;
    else if (w.offset >= 0x700000 && w.offset < 0x800000) vram.push(base + w.offset - 0x700000);
  }
  assert.equal(new Set(vram).size, vram.length, "no VRAM word written twice");
  // For each table on the path: its last write comes before the write of the PDE pointing to it.
  const r = vmm.walk(m.va + BigInt(699 * PAGE));
  assert.ok(r.mapped);
  for (let i = 1; i < r.steps.length; i++) {
    const table = r.steps[i].entryAddress -
      r.steps[i].index * (r.steps[i].raw instanceof Array ? 16 : 8);
    const lastTableWrite = Math.max(
      ...vram.map((a, k) => (a >= table && a < table + PAGE ? k : -1)),
    );
    const pdeWrite = vram.indexOf(
      r.steps[i - 1].entryAddress + (r.steps[i - 1].raw instanceof Array ? 8 : 0),
    );
    assert.ok(pdeWrite > lastTableWrite, `PDE of ${r.steps[i].level} written after the table`);
  }
  // New: PD3, PD2, PD1, PD0 and two PTs (the 2.8 MiB range is 2 MiB aligned), each written
  // whole exactly once, plus the one root entry pointing at the new PD3.
  assert.equal(vram.length / 2, 4 * 512 + 2 * 512 + 1);
  m.unmap();
  gpu.close();
});

Deno.test("vmm: a PD0 entry's other half is preserved when a half is added", async () => {
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(2 * MiB, { align: 2 * MiB });
  const small = vmm.mapPages([a.start / PAGE], { va: 0x40000000n, writable: true });
  const pd0 = vmm.walk(0x40000000n).steps.find((s) => s.level === "PD0")!;
  const [lo0, hi0] = pd0.raw as [bigint, bigint];
  assert.equal(lo0, 0n);
  const big = vmm.mapRange(a.start + 64 * 1024, 64 * 1024, {
    va: 0x40010000n,
    pageSize: 64 * 1024,
  });
  const after = vmm.walk(0x40010000n);
  assert.ok(after.mapped && after.level === "PT64K");
  const [lo1, hi1] = after.steps.find((s) => s.level === "PD0")!.raw as [bigint, bigint];
  assert.notEqual(lo1, 0n, "big half set");
  assert.equal(hi1, hi0, "small half untouched");
  assert.equal(vmm.translate(0x40000000n)!.pa, a.start, "the 4 KiB page still maps");
  big.unmap();
  const [lo2, hi2] = vmm.walk(0x40000000n).steps.find((s) => s.level === "PD0")!.raw as [
    bigint,
    bigint,
  ];
  assert.equal(lo2, 0n, "big table reclaimed, its half cleared");
  assert.equal(hi2, hi0);
  small.unmap();
  gpu.close();
});

Deno.test("bar1: firmware mappings are found, kept, and their PD0 entry is never rewritten", async () => {
  for (const device of ["sim:ga102:gsp", "sim:gh100:gsp"]) {
    const gpu = await openGpu({ device });
    const fw = gpu.sim!.firmware!;
    assert.equal(gpu.bar1.pdb, fw.bar1Pdb, "PDB found through BAR1_BLOCK and the instance block");
    assert.equal(gpu.bar1Binding!.instanceBlock, fw.instanceBlock);
    const taken = gpu.bar1.vmm.ranges.list().filter((r) => r.owner === "firmware");
    for (const f of fw.mappings) {
      assert.ok(
        taken.some((r) => r.start <= f.va && f.va + BigInt(f.size) <= r.end),
        `fw ${f.va} taken`,
      );
    }
    const pd0Before = gpu.walk(0n).steps.find((s) => s.level === "PD0")!.raw;
    // Fill the rest of the first 2 MiB with mappings: they share firmware's PD0 entry.
    const a = gpu.mm.buddy.alloc(2 * MiB);
    const maps = [];
    for (let va = 0n; va < 2n * BigInt(MiB); va += 4096n) {
      if (gpu.bar1.vmm.ranges.find(va) !== undefined) continue;
      maps.push(gpu.bar1.map([a.start / PAGE + Number(va / 4096n)], { va, writable: true }));
    }
    assert.ok(maps.length > 400);
    assert.equal(
      errorCode(() => gpu.bar1.map([a.start / PAGE], { va: fw.mappings[0].va })),
      "EBUSY",
    );
    assert.deepEqual(gpu.walk(0n).steps.find((s) => s.level === "PD0")!.raw, pd0Before);
    for (const m of maps) m.unmap();
    for (const f of fw.mappings) {
      assert.equal(
        gpu.device.bar1.read32(Number(f.va)),
        f.pattern,
        "firmware data still reachable",
      );
    }
    assert.deepEqual(gpu.walk(0n).steps.find((s) => s.level === "PD0")!.raw, pd0Before);
    a.free();
    assert.deepEqual(gpu.sim!.errors(), []);
    gpu.close();
  }
});

Deno.test("bar1: mapping more than BAR1 holds fails with ENOSPC naming the sizes", async () => {
  const gpu = await openGpu();
  const a = gpu.mm.buddy.alloc(512 * MiB);
  assert.throws(
    () => gpu.bar1.map(a),
    /ENOSPC: cannot map 0x20000000 bytes into the 0x10000000-byte BAR1/,
  );
  // A bare card: novamm's own BAR1 space is empty, so the whole aperture maps.
  const b = gpu.mm.buddy.alloc(256 * MiB);
  gpu.bar1.map(b).unmap();
  a.free();
  b.free();
  gpu.close();
  // On a gsp card firmware's pages take part of the aperture.
  const gsp = await openGpu({ device: "sim:ga102:gsp" });
  const c = gsp.mm.buddy.alloc(256 * MiB);
  assert.throws(() => gsp.bar1.map(c), /ENOSPC/);
  c.free();
  gsp.close();
});

Deno.test("bar1: one-line map/write/read-back through PRAMIN (the issue's REPL line)", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const a = gpu.mm.buddy.alloc(4 * MiB);
  {
    using m = gpu.bar1.map(a, { writable: true });
    const pattern = new Uint8Array(4 * MiB).map((_, i) => i * 13);
    m.writeBytes(0, pattern);
    const back = gpu.pramin.readBytes(a.start, 4 * MiB);
    assert.deepEqual(back, pattern);
    assert.deepEqual(m.mapping.pages, { "2M": 2 });
  }
  assert.equal(gpu.bar1.vmm.mappings().length, 0);
  gpu.close();
});

Deno.test("gpu.close() unmaps this session's BAR1 mappings and address spaces, then closes", async () => {
  const gpu = await openGpu({ device: "sim:gh100:gsp" });
  const sim = gpu.sim!;
  const a = gpu.mm.buddy.alloc(64 * 1024);
  const m = gpu.bar1.map(a, { writable: true });
  const ch = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const cm = ch.mapPages([a.start / PAGE], { writable: true });
  assert.equal(simPa(gpu, gpu.bar1.pdb, m.va), a.start);
  gpu.close();
  assert.equal(simPa(gpu, gpu.bar1.pdb, m.va), null, "the BAR1 PTE is gone from firmware's tables");
  assert.equal(m.mapping.live, false);
  assert.equal(cm.live, false);
  m[Symbol.dispose](); // disposing afterwards is harmless
  assert.throws(() => m.unmap(), /EINVAL: BAR1 unmap: double unmap of BAR1 mapping/);
  for (const f of sim.firmware!.mappings) {
    assert.equal(simPa(gpu, sim.firmware!.bar1Pdb, f.va), f.pa, "firmware's own mappings stay");
  }
});

Deno.test("vmm.dump({ fromHardware }) reads VRAM and matches the shadow; a stray write shows only there", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const a = gpu.mm.buddy.alloc(4 * MiB, { align: 2 * MiB });
  const m = gpu.bar1.map([a.start / PAGE, a.start / PAGE + 7], { writable: true });
  const big = gpu.bar1.map(a, { writable: true });
  const lines = (n: unknown) =>
    Deno.inspect(n).split("\n").slice(1).map((l) => l.replace("  (firmware)", ""));
  const shadow = lines(gpu.bar1.vmm.dump());
  const hw = lines(gpu.bar1.vmm.dump({ fromHardware: true }));
  assert.deepEqual(hw, shadow);
  assert.ok(
    shadow.some((l) => l.includes("PT[")) && shadow.some((l) => /PD0\[\d+\].*PTE v3 valid/.test(l)),
  );
  // Someone scribbles a PTE behind the Vmm's back: only the hardware dump shows it.
  const pte = gpu.bar1.vmm.walk(m.va).steps.at(-1)!.entryAddress;
  gpu.pramin.write64(pte + 8 * 100, gpu.format.codec.vramPte(a.start, { writable: false }), {
    force: true,
  });
  assert.equal(lines(gpu.bar1.vmm.dump()).length, shadow.length);
  assert.equal(lines(gpu.bar1.vmm.dump({ fromHardware: true })).length, shadow.length + 1);
  m.unmap();
  big.unmap();
  gpu.close();
});

Deno.test("bar1: an instance block with 128 KiB big pages is refused, not mapped with 64 KiB layouts", async () => {
  const gpu = await openGpu({ device: "sim:ga102:gsp" });
  const inst = gpu.sim!.firmware!.instanceBlock;
  const word = gpu.pramin.read32(inst + 0x200);
  gpu.pramin.write32(inst + 0x200, word & ~(1 << 11), { force: true }); // BIG_PAGE_SIZE = 128 KiB
  assert.throws(
    () => gpu.bar1,
    /ENOTSUP: the BAR1 instance block at 0x5f0000000 selects 128 KiB big pages/,
  );
  gpu.close();
});

Deno.test("vmm.destroy() unmaps every mapping with one TLB flush and reclaims every table", async () => {
  const gpu = await openGpu();
  const before = gpu.mm.buddy.stats().free;
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(64 * PAGE);
  const maps = [0, 9, 17, 40].map((i) =>
    vmm.mapPages([a.start / PAGE + i], { va: BigInt(i) << 30n, writable: true })
  );
  const flushes = gpu.sim!.flushes.length;
  gpu.mm.destroyVmm(vmm);
  assert.equal(gpu.sim!.flushes.length, flushes + 1, "one flush for all four mappings");
  assert.ok(maps.every((m) => !m.live));
  a.free();
  assert.equal(gpu.mm.buddy.stats().free, before, "root and every table back in the allocator");
  gpu.close();
});
