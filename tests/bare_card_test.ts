/**
 * A card nobody booted (facts §13): the simulator's card states, opening like
 * a driver (GFW wait, VRAM size per chip, PRI / all-ones reads), the VRAM
 * layout, BAR1 in physical mode, bring-up / bind / unbind / restore, the
 * flush order, and the BAR1 guard — each shown against the simulator, which
 * is fatal where silicon is.
 */

import assert from "node:assert/strict";
import { NovaError, openGpu } from "../mod.ts";
import { createSimGpu } from "../hw/sim/gpu.ts";
import { Mmio } from "../hw/mmio.ts";
import {
  getField,
  LOCAL_MEMORY_RANGE,
  MMU_INVALIDATE,
  NV_PBUS_BAR1_BLOCK,
  NV_PDISP_VGA_WORKSPACE_BASE,
  NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE,
  NV_UFLUSH_FB_FLUSH,
  NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK,
  NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH,
  NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED,
  VGA_WORKSPACE_BASE,
} from "../hw/regs.ts";
import { throwsNova } from "./util.ts";

const MiB = 2 ** 20;

/** What the simulated MMU translates VA 0x10000 of `pdb` to (null: a fault). */
function simPa(sim: { mmu: { walk(pdb: number, va: bigint): object } }, pdb: number): unknown {
  const t = sim.mmu.walk(pdb, 0x10000n);
  return "pa" in t ? t.pa : null;
}
const PAGE = 4096;

/** The live bind register of a chip as the simulator holds it (raw, no novamm code). */
function bindRegister(gpu: Awaited<ReturnType<typeof openGpu>>): number {
  const sim = gpu.sim!;
  return gpu.chip.mmuVersion === 2
    ? sim.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK)
    : sim.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR);
}

Deno.test("bare card: physical BAR1, VRAM by address, usable below the VGA workspace, map brings BAR1 up", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    assert.equal(gpu.device.spec, device);
    assert.equal(sim.boot.state, "bare");
    assert.equal(gpu.bar1.mode, "physical");
    assert.equal(sim.bar1Mode, "physical");
    assert.equal(gpu.bar1AtOpen.mode, "physical");
    assert.equal(gpu.vram.usableSource, "layout");
    if (device === "sim:ga102") {
      // Usable ends below the VGA workspace 0x625F04 reports.
      const vga = sim.bar0.read32(NV_PDISP_VGA_WORKSPACE_BASE);
      assert.equal(getField(vga, VGA_WORKSPACE_BASE.STATUS_VALID), 1);
      const workspace = getField(vga, VGA_WORKSPACE_BASE.ADDR) * 2 ** 16;
      assert.ok(gpu.vram.usable.end <= workspace, `${device}: usable ends below ${workspace}`);
      assert.ok(gpu.vram.usable.start >= 256 * 1024, "the first 256 KiB stay firmware's");
      assert.ok(gpu.vram.layout.some((r) => r.name === "vga-workspace" && r.start === workspace));
    } else {
      // GH100 has no display (facts §14.1): no VGA workspace, no VGA memory, nothing at the top.
      assert.deepEqual(gpu.vram.layout, []);
      assert.deepEqual(gpu.vram.usable, { start: 0, end: gpu.vram.size });
    }
    assert.ok(!gpu.vram.layout.some((r) => r.name === "mmu-lock"), "the MMU lock is GA100's only");
    assert.ok(!gpu.vram.layout.some((r) => r.name === "wpr2"), "WPR2 is clear on a cold boot");
    // Physical BAR1: offset X is VRAM X.
    const a = gpu.mm.buddy.alloc(64 * 1024);
    gpu.bar1.physical.write32(a.start + 8, 0xc0ffee01);
    assert.equal(gpu.pramin.read32(a.start + 8), 0xc0ffee01);
    gpu.pramin.write64(a.start + 16, 0x1122334455667788n);
    assert.equal(gpu.bar1.physical.read64(a.start + 16), 0x1122334455667788n);
    const after = gpu.pramin.read32(a.start + 0x3000); // unscrubbed VRAM: not zero
    assert.notEqual(after, 0x5a5a5a5a);
    gpu.bar1.physical.fill(a.start + 0x1000, 0x2000, 0x5a);
    assert.ok(gpu.pramin.readBytes(a.start + 0x1000, 0x2000).every((b) => b === 0x5a));
    assert.equal(gpu.pramin.read32(a.start + 0x3000), after, "fill stops at its length");
    if (device === "sim:ga102") {
      // Outside the usable region: refused unless forced (and nothing was written).
      const zero = gpu.pramin.read32(0);
      throwsNova(() => gpu.bar1.physical.write32(0, 1), "EPERM", "outside the usable region");
      assert.equal(gpu.bar1.physical.forced.read32(0), zero);
    }
    throwsNova(() => gpu.bar1.physical.read32(gpu.bar1.size), "EINVAL", "past what physical BAR1");
    // Map: BAR1 is brought up first; the bind register is virtual and no bind is pending.
    const m = gpu.bar1.map(a, { writable: true });
    assert.equal(gpu.bar1.mode, "virtual");
    assert.equal(sim.bar1Mode, "virtual");
    assert.equal(bindRegister(gpu) >>> 0 !== 0, true);
    const status = gpu.chip.mmuVersion === 2
      ? sim.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS)
      : sim.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR) & 3;
    assert.equal(status, 0, "no bind pending");
    assert.equal(sim.bar1Pdb(), gpu.bar1.pdb, "the GPU latched novamm's root");
    assert.equal(m.read32(8), 0xc0ffee01, "the GPU's MMU translates novamm's tables");
    throwsNova(() => gpu.bar1.physical.read32(a.start), "EFAULT", "BAR1 is virtual");
    m.unmap();
    // Unbind: physical again.
    gpu.bar1.unbind();
    assert.equal(gpu.bar1.mode, "physical");
    assert.equal(sim.bar1Mode, "physical");
    assert.equal(bindRegister(gpu), 0);
    assert.equal(gpu.bar1.physical.read32(a.start + 8), 0xc0ffee01);
    a.free();
    assert.deepEqual(sim.errors(), [], `${device}: no driver errors`);
    gpu.close();
    assert.equal(sim.bar1Mode, "physical", "close leaves BAR1 as found");
  }
});

Deno.test("bare card: close() restores the bind registers after a bring-up", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    const a = gpu.mm.buddy.alloc(PAGE);
    gpu.bar1.map(a, { writable: true }); // left mapped on purpose
    assert.equal(sim.bar1Mode, "virtual");
    gpu.close();
    assert.equal(sim.bar1Mode, "physical");
    assert.equal(bindRegister(gpu) & ~3, 0);
    assert.deepEqual(sim.errors(), []);
  }
});

Deno.test("gsp card: firmware's binding adopted, 0x1704 reads zero, GSP's usable region used, layout shown", async () => {
  // Whether 0x1704 is 0xB80F40 seen twice is a CONFLICT (facts §14.1): under "separate"
  // the legacy register reads zero while GSP-RM's binding lives in the VF one.
  const shared = await openGpu({ device: "sim:ga102:gsp" });
  assert.equal(
    shared.sim!.bar0.read32(NV_PBUS_BAR1_BLOCK),
    shared.sim!.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK),
  );
  shared.close();
  const gpu = await openGpu({ device: "sim:ga102:gsp?bar1alias=separate" });
  const sim = gpu.sim!;
  assert.equal(gpu.device.spec, "sim:ga102:gsp?bar1alias=separate");
  assert.equal(sim.bar0.read32(NV_PBUS_BAR1_BLOCK), 0, "the legacy register reads zero");
  assert.equal(gpu.bar1AtOpen.via, "NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK");
  assert.equal(gpu.bar1.mode, "virtual");
  assert.equal(gpu.bar1.pdb, sim.firmware!.bar1Pdb);
  assert.deepEqual(gpu.vram.usable, sim.firmware!.usable);
  assert.equal(gpu.vram.usableSource, "GSP report");
  const wpr2 = gpu.vram.layout.find((r) => r.name === "wpr2")!;
  assert.deepEqual([wpr2.start, wpr2.end], [sim.firmware!.wpr2.start, sim.firmware!.wpr2.end]);
  assert.ok(gpu.vram.layout.some((r) => r.name === "bar1-tables"));
  // bringUp() on an adopted binding is a no-op; unbind then bringUp goes back to firmware's.
  gpu.bar1.bringUp();
  assert.equal(gpu.bar1.binding!.instanceBlock, sim.firmware!.instanceBlock);
  gpu.bar1.unbind();
  assert.equal(sim.bar1Mode, "physical");
  gpu.bar1.unbind();
  gpu.close();
  assert.equal(sim.bar1Mode, "virtual", "close rebinds firmware's instance block");
  assert.equal(sim.bar1Pdb(), sim.firmware!.bar1Pdb);
  assert.deepEqual(sim.errors(), []);
});

Deno.test("unloaded card: BAR1 physical, WPR2 still set and kept clear of, stale tables ignored", async () => {
  for (const device of ["sim:ga102:unloaded", "sim:gh100:unloaded"]) {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    assert.equal(gpu.bar1.mode, "physical");
    assert.equal(gpu.vram.usableSource, "layout");
    const wpr2 = gpu.vram.layout.find((r) => r.name === "wpr2");
    assert.ok(wpr2 !== undefined, "WPR2 is in the layout");
    const u = gpu.vram.usable;
    assert.ok(u.end <= wpr2.start || u.start >= wpr2.end, "usable does not touch WPR2");
    const a = gpu.mm.buddy.alloc(PAGE);
    using m = gpu.bar1.map(a, { writable: true });
    m.write32(0, 0x51a1e);
    assert.equal(gpu.pramin.read32(a.start), 0x51a1e);
    assert.notEqual(gpu.bar1.binding!.instanceBlock, sim.firmware!.instanceBlock, "our own");
    assert.deepEqual(sim.errors(), []);
    m.unmap();
    gpu.close();
  }
});

Deno.test("booting card: openGpu waits for GFW boot; a boot that never ends is ETIMEDOUT naming the register", async () => {
  const t0 = performance.now();
  const gpu = await openGpu({ device: "sim:ga102:booting" });
  assert.ok(gpu.device.gfw.waitedMs >= 100, `waited ${gpu.device.gfw.waitedMs} ms`);
  assert.ok(performance.now() - t0 < 2000);
  assert.equal(gpu.device.gfw.value, 0xff);
  assert.ok(gpu.device.gfw.polls > 10, "polled with a pause, not once");
  gpu.close();
  const gh = await openGpu({ device: "sim:gh100:booting" });
  assert.equal(gh.device.gfw.register, "NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE");
  gh.close();
  const e = await openGpu({ device: "sim:ga102:booting", gfwTimeoutMs: 20 }).catch((e) => e);
  assert.ok(e instanceof NovaError);
  assert.equal(e.code, "ETIMEDOUT");
  assert.match(e.message, /GFW boot did not complete in 20 ms: .*\(0x118128\) reads 0x00000000/);
  const b = await openGpu({ device: "sim:gb202:booting", gfwTimeoutMs: 20 }).catch((e) => e);
  assert.match(String(b), /NV_THERM_I2CS_SCRATCH_FSP_BOOT_COMPLETE \(0xad00bc\) reads 0x00000003/);
});

Deno.test("ga100 reads its VRAM size from NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE, as silicon has it", async () => {
  const gpu = await openGpu({ device: "sim:ga100" });
  const raw = gpu.sim!.bar0.read32(NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE);
  const mib = getField(raw, LOCAL_MEMORY_RANGE.LOWER_MAG) *
    2 ** getField(raw, LOCAL_MEMORY_RANGE.LOWER_SCALE);
  assert.equal(gpu.vram.size, mib * MiB);
  assert.equal(gpu.vram.size, 40 * 2 ** 30);
  assert.equal(gpu.chip.name, "GA100");
  assert.equal(gpu.sim!.bar0.read32(0x1183a4) >>> 20, 0xbad, "0x1183a4 is not there on GA100");
  gpu.close();
});

Deno.test("boot VGA device: map refuses to take the console's BAR1; bringUp({ force }) does", async () => {
  const gpu = await openGpu({ device: "sim:ga102:vga" });
  assert.equal(gpu.device.bootVga, true);
  const console = gpu.vram.layout.find((r) => r.name === "console")!;
  assert.equal(console.start, 0);
  assert.ok(gpu.vram.usable.start >= console.end, "usable starts above the console");
  const a = gpu.mm.buddy.alloc(PAGE);
  const before = gpu.stats().mmioWrites;
  throwsNova(() => gpu.bar1.map(a), "EPERM", "boot VGA");
  throwsNova(() => gpu.bar1.bringUp(), "EPERM", "boot VGA");
  assert.equal(gpu.stats().mmioWrites, before, "refused before any write");
  assert.equal(gpu.bar1.mode, "physical");
  gpu.bar1.bringUp({ force: true });
  using m = gpu.bar1.map(a, { writable: true });
  m.write32(0, 7);
  assert.equal(gpu.pramin.read32(a.start), 7);
  m.unmap();
  gpu.close();
  assert.equal(gpu.sim!.bar1Mode, "physical", "the console gets its physical BAR1 back");
});

Deno.test("sim: a CPU access to an unmapped BAR1 page in virtual mode loses the GPU; novamm says so", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const sim = gpu.sim!;
  gpu.bar1.bringUp();
  // novamm refuses it before it reaches the card...
  throwsNova(() => gpu.device.bar1.read32(0x5000), "EFAULT", "refused CPU read of BAR1 VA 0x5000");
  assert.equal(sim.lost, null);
  // ...the raw simulated BAR (below novamm) shows what silicon does.
  sim.bar1.read32(0x5000);
  assert.match(sim.lost!, /CPU read of BAR1 VA 0x5000 faulted \(invalid-pde/);
  assert.ok(sim.errors().some((e) => e.kind === "gpu-lost"));
  assert.equal(sim.bar0.read32(0), 0xffffffff, "BAR0 reads all ones");
  assert.equal(gpu.bar0.read32(0x1700), 0xffffffff);
  throwsNova(() => gpu.tlb.flush("all"), "ENODEV", "the GPU is gone");
  gpu.close(); // does not hang or throw on a lost GPU
  const again = await openGpu({ device: "sim:gh100" });
  assert.equal(again.sim!.lost, null, "reopening gives a fresh card");
  again.close();
});

Deno.test("sim: tables written through PRAMIN are not seen without an FB flush; a forgotten TLB flush shows stale data", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const sim = gpu.sim!;
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 32n });
    const [a, b] = [gpu.mm.buddy.alloc(PAGE), gpu.mm.buddy.alloc(PAGE)];
    gpu.pramin.write32(a.start, 0xaaaa0001);
    gpu.pramin.write32(b.start, 0xbbbb0002);
    const m = vmm.mapPages([a.start / PAGE], { va: 0x10000n, writable: true });
    assert.equal(simPa(sim, vmm.pdb), a.start, "map flushed: the GPU sees it");
    // A PTE rewritten through PRAMIN: the GPU walks the old one until an FB flush.
    const pte = vmm.walk(0x10000n).steps.at(-1)!.entryAddress;
    gpu.pramin.write64(pte, gpu.format.codec.vramPte(b.start, { writable: true }), { force: true });
    assert.equal(simPa(sim, vmm.pdb), a.start, "posted, not yet visible");
    if (device === "sim:ga102") {
      gpu.bar0.write32(NV_UFLUSH_FB_FLUSH, 1);
      assert.equal(simPa(sim, vmm.pdb), a.start, "flush started, not polled done");
      while (gpu.bar0.read32(NV_UFLUSH_FB_FLUSH) & 2);
    } else {
      // Hopper: the read of 0x10F800 injects the flush; 0x10F804 says when it is done.
      gpu.bar0.read32(NV_XAL_EP_ZB_UFLUSH_FB_FLUSH);
      assert.equal(simPa(sim, vmm.pdb), a.start, "flush started, not polled done");
      while (gpu.bar0.read32(NV_XAL_EP_ZB_UFLUSH_FB_FLUSH_COMPLETED) >>> 31);
    }
    assert.equal(simPa(sim, vmm.pdb), b.start, "visible after the FB flush");
    m.unmap();
    vmm.destroy();
    // BAR1: a TLB invalidate without the FB flush first walks stale tables.
    gpu.bar1.bringUp();
    const bm = gpu.bar1.map(a, { writable: true });
    const bpte = gpu.bar1.vmm.walk(bm.va).steps.at(-1)!.entryAddress;
    gpu.pramin.write64(bpte, gpu.format.codec.vramPte(b.start, { writable: true }), {
      force: true,
    });
    gpu.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, (gpu.bar1.pdb / PAGE) * 16);
    gpu.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, 0x80000005); // ALL_VA|HUB|TRIGGER
    while (gpu.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE) >>> 31);
    assert.equal(bm.read32(0), 0xaaaa0001, "missing FB flush: the MMU re-walked the old PTE");
    gpu.tlb.fbFlush();
    assert.equal(bm.read32(0), 0xaaaa0001, "FB flushed but not invalidated: the TLB is stale");
    gpu.tlb.flush(gpu.bar1.pdb, { hubOnly: true });
    assert.equal(bm.read32(0), 0xbbbb0002, "FB flush + invalidate: the new page");
    const last = sim.flushes.at(-1)!;
    assert.equal(getField(last.value, MMU_INVALIDATE.HUBTLB_ONLY), 1, "HUBTLB_ONLY for BAR1");
    bm.unmap();
    assert.equal(getField(sim.flushes.at(-1)!.value, MMU_INVALIDATE.HUBTLB_ONLY), 1);
    a.free();
    b.free();
    assert.deepEqual(sim.errors(), []);
    gpu.close();
  }
});

Deno.test("sim: Hopper binds on the HIGH write; LOW's PENDING/OUTSTANDING are read-only; overlapping binds are logged", () => {
  const sim = createSimGpu({ profile: "gh100" });
  const bar0 = new Mmio("bar0", sim.bar0);
  bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR, (1 << 9) | 0x5000 | 3);
  assert.equal(sim.bar1Mode, "physical", "LOW alone binds nothing");
  assert.ok(sim.errors().some((e) => e.kind === "read-only-field"));
  assert.equal(bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR) & 3, 0);
  bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, 0);
  assert.equal(sim.bar1Mode, "virtual", "the HIGH write starts the bind");
  assert.equal(sim.bar1Pdb(), null, "the instance block at 0x5000 is zeros: nothing valid bound");
  assert.ok(sim.errors().some((e) => e.kind === "bad-instance-block"));
  assert.equal(bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_LOW_ADDR) & 3, 3, "pending");
  bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_FUNC_BAR1_BLOCK_HIGH_ADDR, 0);
  assert.ok(sim.errors().some((e) => e.kind === "bind-overlap"), "bind while one is pending");
});

Deno.test("the BAR1 guard follows a raw bind-register poke; open and bringUp validate their options", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  gpu.bar1.bringUp();
  const a = gpu.mm.buddy.alloc(PAGE);
  const m = gpu.bar1.map(a, { writable: true });
  m.write32(0, 1);
  gpu.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_BAR1_BLOCK, 0); // a REPL user unbinds by hand
  assert.equal(gpu.bar1.mode, "physical");
  throwsNova(() => m.read32(0), "EFAULT", "in physical mode");
  assert.equal(gpu.bar1.physical.read32(a.start), 1);
  gpu.bar1.bringUp();
  assert.equal(m.read32(0), 1, "the mapping works again once its space is bound");
  m.unmap();
  throwsNova(() => gpu.bar1.bringUp({ forc: true } as never), "EINVAL", 'unknown key "forc"');
  throwsNova(
    () => gpu.bar1.map(a, { writeable: true } as never),
    "EINVAL",
    'unknown key "writeable"',
  );
  throwsNova(() => gpu.bar1.map(a, { writable: "false" } as never), "EINVAL", "must be a boolean");
  throwsNova(() => gpu.bar1.bind({} as never), "EINVAL", "is not a Vmm");
  a.free();
  gpu.close();
  const e = await openGpu({ readonly: true } as never).catch((e) => e);
  assert.match(
    String(e),
    /EINVAL: unknown key "readonly" in openGpu options; known: device, readOnly/,
  );
  const ro = await openGpu({ readOnly: true });
  throwsNova(() => ro.bar1.bringUp(), "EPERM", "read-only");
  ro.close();
});

Deno.test("device specs: states listed in the error; a bad state is refused", async () => {
  const e = await openGpu({ device: "sim:ga102:asleep" }).catch((e) => e);
  assert.match(
    String(e),
    /unknown simulator card state "asleep"; known: bare, gsp, unloaded, booting, vga/,
  );
  const f = await openGpu({ device: "sim:ga102:gsp:x" }).catch((e) => e);
  assert.match(String(f), /use sim, sim:PROFILE or sim:PROFILE:STATE/);
});

Deno.test("a bind that never completes: ETIMEDOUT naming the status register; BAR1 is then treated as virtual", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const sim = gpu.sim!;
  sim.knobs.bindHang = true;
  throwsNova(
    () => gpu.bar1.bringUp(),
    "ETIMEDOUT",
    "NV_VIRTUAL_FUNCTION_PRIV_BIND_STATUS",
    "BAR1 bind",
  );
  assert.equal(gpu.bar1.mode, "virtual", "the register was written: assume it took");
  throwsNova(() => gpu.device.bar1.read32(0), "EFAULT", "refused");
  assert.equal(sim.lost, null);
  sim.knobs.bindHang = false;
  gpu.close();
  assert.equal(sim.bar1Mode, "physical", "close still restores");
});
