/**
 * Review of the memory-management code (vmm, va_ranges, bar_user, gpu_mm,
 * gpu, pramin, tlb): each test pins one defect found in review (all fixed) so
 * it stays fixed. The simulator (`gpu.sim`) is the oracle.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Gpu, NovaError, openGpu, Tlb, Vmm } from "../mod.ts";
import { BAR0_WINDOW, getField, NV_PBUS_BAR0_WINDOW } from "../hw/regs.ts";

const PAGE = 4096;
const KiB = 1024;
const MiB = 2 ** 20;

/** The simulator's own walk: the physical address of `va`, or null when it faults. */
function simPa(gpu: Gpu, pdb: number, va: bigint): number | null {
  const r = gpu.sim!.mmu.walk(pdb, va);
  return "fault" in r ? null : Number(r.pa);
}

/** Runs `fn`, swallowing only NovaErrors (a refusal is an acceptable outcome). */
function tryNova(fn: () => unknown): NovaError | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof NovaError) return e;
    throw e;
  }
}

/** A Vmm on a fresh root whose TLB flushes time out after 5 ms (for fault injection). */
function vmmWithShortTlb(gpu: Gpu): Vmm {
  const tlb = new Tlb(gpu.bar0, { timeoutMs: 5, vramSize: gpu.vram.size });
  const root = gpu.mm.buddy.alloc(PAGE);
  gpu.pramin.writeBytes(root.start, new Uint8Array(PAGE));
  return new Vmm(
    {
      pramin: gpu.pramin,
      tlb,
      buddy: gpu.mm.buddy,
      format: gpu.format,
      vramSize: gpu.vram.size,
    },
    { pdb: root.start, vaSize: 1n << 40n, rootAllocation: root, name: "short-tlb" },
  );
}

/**
 * Builds a directory path for VA 0 in fresh VRAM (root .. PD0) plus a small
 * PT and a big PT page; returns the table addresses (index n-1 = PD0, n =
 * small PT, n+1 = big PT) and the root.
 */
function buildTables(gpu: Gpu): { t: (i: number) => number; n: number; pdb: number } {
  const codec = gpu.format.codec;
  const n = gpu.format.directories.length;
  const tables = gpu.mm.buddy.alloc((n + 2) * PAGE);
  const t = (i: number) => tables.start + i * PAGE;
  using w = gpu.pramin.window({ force: true }); // test data anywhere, tables too
  w.fill(tables.start, (n + 2) * PAGE, 0);
  for (let i = 0; i + 1 < n; i++) w.write64(t(i), codec.vramPde(t(i + 1)));
  return { t, n, pdb: tables.start };
}

// --- gpu_mm.ts ----------------------------------------------------------------

Deno.test("regression: createVmm leaks its root page when the Vmm rejects vaSize", async () => {
  // Expected: a refused createVmm leaves the buddy allocator as it was.
  const gpu = await openGpu();
  const before = gpu.mm.buddy.stats().free;
  assert.ok(tryNova(() => gpu.mm.createVmm({ vaSize: 4097n })) !== null);
  assert.equal(gpu.mm.buddy.stats().free, before, "root page not returned to the buddy");
  gpu.close();
});

Deno.test("regression: openVmm on a PDB a live Vmm manages writes PTEs into freed page tables", async () => {
  // Expected: openVmm refuses (EBUSY) a PDB another live Vmm owns, or its mappings stay correct.
  const gpu = await openGpu();
  gpu.bar1.bringUp();
  const a = gpu.mm.buddy.alloc(2 * PAGE);
  const m = gpu.bar1.vmm.mapPages([a.start / PAGE], { va: 0x200000n, writable: true });
  let second: Vmm | null = null;
  const refused = tryNova(() => {
    second = gpu.mm.openVmm({ pdb: gpu.bar1.pdb, vaSize: BigInt(gpu.bar1.size) });
  });
  if (refused !== null) {
    assert.equal(refused.code, "EBUSY");
    gpu.close();
    return;
  }
  m.unmap(); // bar1.vmm frees the small PT it created; `second` still has it in its shadow
  const other = gpu.mm.buddy.alloc(PAGE); // someone else's data lands in that page
  gpu.pramin.writeBytes(other.start, new Uint8Array(PAGE).fill(0xaa));
  (second as Vmm | null)!.mapPages([a.start / PAGE + 1], { va: 0x201000n, writable: true });
  assert.ok(
    gpu.pramin.readBytes(other.start, PAGE).every((b) => b === 0xaa),
    "a PTE was written into a freed page-table page now holding other data",
  );
  assert.equal(simPa(gpu, gpu.bar1.pdb, 0x201000n), a.start + PAGE, "the new mapping translates");
  gpu.close();
});

Deno.test("regression: openVmm({ vaSize: 1.5 }) throws a RangeError, not NovaError EINVAL", async () => {
  // Expected: a non-integer vaSize is refused with EINVAL naming the value.
  const gpu = await openGpu();
  gpu.bar1.bringUp();
  let caught: unknown;
  try {
    gpu.mm.openVmm({ pdb: gpu.bar1.pdb, vaSize: 1.5 });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NovaError, `got ${String(caught)}`);
  assert.equal(caught.code, "EINVAL");
  gpu.close();
});

Deno.test("regression: vmm.destroy() leaves the address space listed in gpu.mm.vmms()", async () => {
  // Expected: vmms() lists only address spaces that are not destroyed, however destroyed.
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  vmm.destroy();
  assert.ok(!gpu.mm.vmms().includes(vmm), "a destroyed Vmm is still listed");
  gpu.close();
});

// --- vmm.ts: VA choice and page sizes ---------------------------------------------

Deno.test("regression: huge-page VA alignment makes a map fail with ENOSPC though an unaligned range fits", async () => {
  // Expected: when no huge-page-aligned range is free, a smaller alignment is used.
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 3n * BigInt(MiB) });
  const a = gpu.mm.buddy.alloc(2 * MiB + PAGE, { align: 2 * MiB });
  vmm.mapPages([a.start / PAGE + 512], { va: 0n }); // VA 0..4 KiB taken; 3 MiB - 4 KiB free
  const m = vmm.mapRange(a.start, 2 * MiB); // fits at 0x1000 with small pages
  assert.equal(simPa(gpu, vmm.pdb, m.va), a.start);
  gpu.close();
});

Deno.test("regression: the VA of a contiguous mapping ignores the PA offset, so no 2 MiB page is used", async () => {
  // Expected: VA ≡ PA (mod 2 MiB), giving one 4 KiB page and one 2 MiB page, not 513 × 4 KiB.
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(8 * MiB, { align: 2 * MiB });
  const m = vmm.mapRange(a.start + 2 * MiB - PAGE, 2 * MiB + PAGE);
  assert.equal(m.pages["2M"], 1, `pages ${JSON.stringify(m.pages)} at VA 0x${m.va.toString(16)}`);
  gpu.close();
});

Deno.test("regression: mapPages({ va }) converts numbers with BigInt() unchecked", async () => {
  // Expected: a non-integer or unsafe-number VA is refused with a NovaError naming it.
  const gpu = await openGpu({ device: "sim:gh100" });
  const vmm = gpu.mm.createVmm({});
  const a = gpu.mm.buddy.alloc(PAGE);
  let caught: unknown;
  try {
    vmm.mapPages([a.start / PAGE], { va: 0.5 });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NovaError, `va 0.5: got ${String(caught)}`);
  // 2^53 + 4097 is not a safe integer: it silently becomes 2^53 + 4096 and maps there.
  const e = tryNova(() => vmm.mapPages([a.start / PAGE], { va: 2 ** 53 + 4097 }));
  assert.ok(e !== null, "an unsafe-number VA was accepted (precision lost silently)");
  gpu.close();
});

// --- vmm.ts: ownership checks and messages ---------------------------------------

Deno.test("regression: executeMap accepts another Vmm's PreparedMapping and overwrites its own PTE", async () => {
  // Expected: EINVAL (not this Vmm's prepared mapping), and nothing written.
  const gpu = await openGpu();
  const a = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const b = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const data = gpu.mm.buddy.alloc(2 * PAGE);
  a.mapPages([data.start / PAGE], { va: 0n });
  const p = b.prepareMap([data.start / PAGE + 1], { va: 0n });
  const e = tryNova(() => a.executeMap(p));
  assert.equal(e?.code, "EINVAL", "a foreign prepared mapping was executed");
  assert.equal(simPa(gpu, a.pdb, 0n), data.start, "a's mapping at VA 0 was overwritten");
  gpu.close();
});

Deno.test("regression: unmap of a foreign mapping says [object Object] instead of its VA", async () => {
  // Expected: the EINVAL message names the mapping by its VA (hex).
  const gpu = await openGpu();
  const a = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const b = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const data = gpu.mm.buddy.alloc(PAGE);
  const m = a.mapPages([data.start / PAGE], { va: 0x123000n });
  const e = tryNova(() => b.unmap(m));
  assert.equal(e?.code, "EINVAL");
  assert.ok(e!.message.includes("0x123000"), e!.message);
  gpu.close();
});

// --- vmm.ts: TLB and error paths ---------------------------------------------------

Deno.test("regression: cancel() frees page tables that were live in VRAM without a TLB flush", async () => {
  // Expected: tables unlinked from written parents are freed only after a TLB flush (as unmap does).
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(2 * PAGE);
  const m = vmm.mapPages([a.start / PAGE], { va: 0n });
  const p = vmm.prepareMap([a.start / PAGE + 1], { va: 0x1000n }); // pins m's tables
  m.unmap(); // tables now empty but pinned: still linked in VRAM
  const flushes = gpu.sim!.flushes.length;
  const free = gpu.mm.buddy.stats().free;
  p.cancel(); // unlinks and frees them
  assert.ok(gpu.mm.buddy.stats().free > free, "precondition: cancel freed tables");
  assert.ok(gpu.sim!.flushes.length > flushes, "tables freed with no TLB flush after unlinking");
  gpu.close();
});

Deno.test("regression: executeMap failing at the TLB flush leaves valid PTEs that cancel() keeps", async () => {
  // Expected: after the failure the mapping is either live (and unmappable) or cancel() removes its PTEs.
  const gpu = await openGpu();
  const vmm = vmmWithShortTlb(gpu);
  const a = gpu.mm.buddy.alloc(PAGE);
  const p = vmm.prepareMap([a.start / PAGE], { va: 0n });
  gpu.sim!.knobs.tlbHang = true;
  assert.equal(tryNova(() => vmm.executeMap(p))?.code, "ETIMEDOUT");
  gpu.sim!.knobs.tlbHang = false;
  if (vmm.mappings().length === 1) {
    vmm.mappings()[0].unmap();
  } else {
    p.cancel();
    assert.equal(vmm.ranges.list().length, 0, "precondition: VA released");
  }
  assert.equal(simPa(gpu, vmm.pdb, 0n), null, "VA still translates to the page after the undo");
  gpu.close();
});

Deno.test("regression: unmap failing at the TLB flush cannot be retried (TypeError)", async () => {
  // Expected: a retry of unmap after the failure completes (or fails with a NovaError), and the VA faults.
  const gpu = await openGpu();
  const vmm = vmmWithShortTlb(gpu);
  const a = gpu.mm.buddy.alloc(PAGE);
  const m = vmm.mapPages([a.start / PAGE], { va: 0x40000000n });
  gpu.sim!.knobs.tlbHang = true;
  assert.equal(tryNova(() => m.unmap())?.code, "ETIMEDOUT");
  gpu.sim!.knobs.tlbHang = false;
  if (m.live) tryNova(() => m.unmap()); // a TypeError escapes here today
  assert.equal(m.live, false, "the mapping can never be released");
  assert.equal(simPa(gpu, vmm.pdb, 0x40000000n), null);
  gpu.close();
});

// --- vmm.ts: scanning existing (firmware) tables -----------------------------------

Deno.test("regression: scan ignores a non-zero invalid dual-PDE half (sparse marker) and rewrites it", async () => {
  // Expected: like a non-zero PTE or PDE, a non-zero dual-PDE half is firmware's: never rewritten.
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const { t, n, pdb } = buildTables(gpu);
    // PD0 entry 0, big half: aperture invalid + v2 VOL_BIG / v3 PCF_BIG 1 (sparse).
    gpu.pramin.write64(t(n - 1), 0x8n);
    const vmm = gpu.mm.openVmm({ pdb, vaSize: 1n << 30n, name: "fw" });
    const data = gpu.mm.buddy.alloc(64 * KiB, { align: 64 * KiB });
    tryNova(() => vmm.mapRange(data.start, 64 * KiB, { va: 0n, pageSize: 64 * KiB }));
    assert.equal(gpu.pramin.read64(t(n - 1)), 0x8n, `${device}: firmware's big half rewritten`);
    gpu.close();
  }
});

Deno.test("regression: scan throws EBUSY when a 64 KiB PTE and 4 KiB PTEs cover the same VA", async () => {
  // Expected: overlapping firmware entries are merged into one taken range; openVmm succeeds.
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const codec = gpu.format.codec;
    const { t, n, pdb } = buildTables(gpu);
    const data = gpu.mm.buddy.alloc(64 * KiB, { align: 64 * KiB });
    const [lo] = codec.vramDualPde({ big: t(n + 1) });
    const [, hi] = codec.vramDualPde({ small: t(n) });
    gpu.pramin.write64(t(n - 1), lo);
    gpu.pramin.write64(t(n - 1) + 8, hi);
    gpu.pramin.write64(t(n) + 16 * 8, codec.vramPte(data.start, { writable: true }), {
      force: true,
    }); // 4K @0x10000
    gpu.pramin.write64(t(n + 1) + 8, codec.vramPte(data.start, { writable: true }), {
      force: true,
    }); // 64K @0x10000
    gpu.tlb.fbFlush(); // the GPU sees PRAMIN writes once the FB flush is done
    assert.equal(simPa(gpu, pdb, 0x10000n), data.start, "precondition: the hardware translates it");
    let vmm: Vmm | null = null;
    const e = tryNova(() => {
      vmm = gpu.mm.openVmm({ pdb, vaSize: 1n << 30n, name: "fw" });
    });
    assert.equal(e, null, `${device}: ${e?.message}`);
    assert.ok((vmm as Vmm | null)!.ranges.find(0x1f000n) !== undefined, "64 KiB page taken");
    gpu.close();
  }
});

// --- pramin.ts ---------------------------------------------------------------------

Deno.test("regression: PRAMIN accesses VRAM through a window whose TARGET is system memory", async () => {
  // Expected: before a VRAM access the window register holds TARGET = VID_MEM (0), whatever was left there.
  const gpu = await openGpu(); // GA102: NV_PBUS_BAR0_WINDOW has a TARGET field
  const a = gpu.mm.buddy.alloc(PAGE);
  const base = a.start - (a.start % (64 * KiB));
  gpu.bar0.write32(NV_PBUS_BAR0_WINDOW, (2 << 24) | (base / (64 * KiB))); // SYS_MEM_COHERENT
  {
    using w = gpu.pramin.window({ force: true }); // test data anywhere, tables too
    w.write32(a.start, 0x12345678);
    const reg = gpu.bar0.read32(NV_PBUS_BAR0_WINDOW);
    assert.equal(getField(reg, BAR0_WINDOW.TARGET), 0, "the write went to system memory");
  }
  gpu.close();
});

Deno.test("regression: a borrowed PRAMIN window outlives its owner and moves the window for good", async () => {
  // Expected: once the owner closes, the borrowed window is dead (ENODEV) or the base is restored.
  const gpu = await openGpu();
  const saved = gpu.bar0.read32(NV_PBUS_BAR0_WINDOW);
  const w = gpu.pramin.window();
  const b = gpu.pramin.borrow();
  w.close();
  tryNova(() => b.write32(0x5000000, 1));
  assert.equal(
    gpu.bar0.read32(NV_PBUS_BAR0_WINDOW),
    saved,
    "window left moved, nobody restores it",
  );
  gpu.close();
});

// --- bar_user.ts -------------------------------------------------------------------

Deno.test("regression: BarMapping.write64 with a non-integer number throws a RangeError", async () => {
  // Expected: EINVAL naming the value, as PraminWindow.write64 does.
  const gpu = await openGpu();
  const a = gpu.mm.buddy.alloc(PAGE);
  using m = gpu.bar1.map(a, { writable: true });
  let caught: unknown;
  try {
    m.write64(0, 1.5);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NovaError, `got ${String(caught)}`);
  assert.equal(caught.code, "EINVAL");
  m.unmap();
  gpu.close();
});

Deno.test("regression: freeing an allocation under a live BAR1 mapping leaves BAR1 pointing at freed VRAM", async () => {
  // Expected: free() is refused (EBUSY) while a BAR1 mapping of it is live, or the mapping goes too.
  const gpu = await openGpu();
  const a = gpu.mm.buddy.alloc(PAGE);
  const m = gpu.bar1.map(a, { writable: true });
  tryNova(() => a.free());
  if (!a.live) {
    const next = gpu.mm.buddy.alloc(PAGE); // the freed page, now someone else's
    gpu.pramin.write32(next.start, 0x600d);
    tryNova(() => m.write32(0, 0xdead));
    assert.equal(gpu.pramin.read32(next.start), 0x600d, "a stale BAR1 PTE wrote into freed VRAM");
  }
  gpu.close();
});
