import assert from "node:assert/strict";
import { SIM_PROFILES } from "../hw/sim/profiles.ts";
import { openGpu } from "../mod.ts";
import { createSimGpu, PRAMIN_FAULT, PRI_ERROR } from "../hw/sim/gpu.ts";
import { readVramSize } from "../hw/device.ts";
import {
  NV_PBUS_BAR0_WINDOW,
  NV_PMC_BOOT_0,
  NV_PMC_BOOT_42,
  NV_PRAMIN,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE,
  NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB,
} from "../hw/regs.ts";

Deno.test("sim: BOOT registers identify each profile", async () => {
  const expected = {
    "sim": ["GA102", "Ampere", 2, 24],
    "sim:gh100": ["GH100", "Hopper", 3, 80],
    "sim:tu102": ["TU102", "Turing", 2, 11],
    "sim:ad102": ["AD102", "Ada", 2, 24],
    "sim:gb202": ["GB202", "Blackwell", 3, 32],
  } as const;
  for (const [device, [name, arch, mmu, gib]] of Object.entries(expected)) {
    const gpu = await openGpu({ device });
    assert.equal(gpu.chip.name, name);
    assert.equal(gpu.chip.architecture, arch);
    assert.equal(gpu.chip.mmuVersion, mmu);
    assert.equal(gpu.vram.size, gib * 2 ** 30, `${device} VRAM size from the FB register`);
    assert.equal(readVramSize(gpu.bar0, gpu.chip), gpu.vram.size);
    assert.ok(gpu.vram.usable.end <= gpu.vram.size && gpu.vram.usable.start < gpu.vram.usable.end);
    gpu.close();
  }
  const ga = createSimGpu();
  assert.equal(ga.bar0.read32(NV_PMC_BOOT_0), 0x172000a1);
  assert.equal(ga.bar0.read32(NV_PMC_BOOT_42), 0x172a1000);
});

Deno.test("sim: unknown registers read as a PRI error and are logged", () => {
  const sim = createSimGpu();
  assert.equal(sim.bar0.read32(0x123450), PRI_ERROR);
  sim.bar0.write32(0x123450, 1);
  const kinds = sim.errors().map((e) => e.kind);
  assert.deepEqual(kinds, ["unknown-register", "unknown-register"]);
  assert.match(sim.errors()[0].message, /0x123450/);
});

Deno.test("sim: narrow and misaligned register accesses are logged as errors", () => {
  const sim = createSimGpu();
  sim.bar0.read8(NV_PBUS_BAR0_WINDOW);
  sim.bar0.write16(NV_PBUS_BAR0_WINDOW, 1);
  sim.bar0.read32(NV_PBUS_BAR0_WINDOW + 2);
  assert.deepEqual(sim.errors().map((e) => e.kind), [
    "register-width",
    "register-width",
    "misaligned",
  ]);
  assert.equal(sim.bar0.read32(NV_PBUS_BAR0_WINDOW), 0, "the narrow write changed nothing");
  sim.bar0.write32(NV_PMC_BOOT_0, 0);
  assert.equal(sim.bar0.read32(NV_PMC_BOOT_0), 0x172000a1, "BOOT_0 is read-only");
});

Deno.test("sim: PRAMIN past the end of VRAM reads a fault pattern, drops writes, logs", () => {
  const sim = createSimGpu();
  const last = sim.profile.vramSize / 65536 - 1; // the last 64 KiB block
  sim.bar0.write32(NV_PBUS_BAR0_WINDOW, last);
  assert.equal(sim.praminBase, sim.profile.vramSize - 65536);
  sim.bar0.write32(NV_PRAMIN + 0xfffc, 0x55);
  assert.equal(sim.bar0.read32(NV_PRAMIN + 0xfffc), 0x55, "last word of VRAM is fine");
  sim.bar0.write32(NV_PRAMIN + 0x10000, 0x66);
  assert.equal(sim.bar0.read32(NV_PRAMIN + 0x10000), PRAMIN_FAULT);
  assert.deepEqual(sim.errors().map((e) => e.kind), ["pramin-past-vram", "pramin-past-vram"]);
  sim.bar0.write32(NV_PBUS_BAR0_WINDOW, 0x02000000); // TARGET = SYS_MEM_COHERENT
  assert.equal(sim.errors().at(-1)!.kind, "pramin-target");
});

Deno.test("sim: TLB invalidate completes after polling and is recorded with its PDB", () => {
  const sim = createSimGpu();
  sim.knobs.tlbLatencyReads = 2;
  sim.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB, (0x5000000 / 4096) << 4);
  sim.bar0.write32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE, 0x80000081);
  const polls = [1, 2, 3].map(() =>
    sim.bar0.read32(NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE) >>> 31
  );
  assert.deepEqual(polls, [1, 1, 0]);
  assert.deepEqual(sim.flushes, [{ pdb: 0x5000000, aperture: 0, value: 0x80000081 }]);
});

Deno.test("tlb: flush programs the PDB, polls, and times out with the register state", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const r = gpu.tlb.flush(0x12345000);
  assert.equal(r.polls, 2);
  const last = gpu.sim!.flushes.at(-1)!;
  assert.deepEqual([last.pdb, last.aperture], [0x12345000, 0]);
  assert.equal((last.value & 0x80000001) >>> 0, 0x80000001, "TRIGGER | ALL_VA");
  assert.deepEqual(gpu.sim!.errors(), [], "the simulator saw nothing wrong with it");
  gpu.tlb.flush("all");
  assert.equal(gpu.sim!.flushes.at(-1)!.pdb, "all");
  assert.throws(() => gpu.tlb.flush(0x1001), /PDB 0x1001 is not a 4 KiB-aligned/);
  assert.throws(() => gpu.tlb.flush(2 ** 39), /past the end of VRAM/);
  gpu.sim!.knobs.tlbHang = true;
  const { Tlb } = await import("../mm/tlb.ts");
  const fast = new Tlb(gpu.bar0, { timeoutMs: 20 });
  assert.throws(() => fast.flush(0x1000), (e: Error) => {
    assert.match(e.message, /^ETIMEDOUT: TLB invalidate of PDB 0x1000 did not complete in 20 ms/);
    assert.match(e.message, /still reads 0x8\w{7} after \d+ polls \(INVALIDATE_PDB=0x00000010/);
    return true;
  });
  gpu.close();
});

Deno.test("device: counters count every BAR access, for both BARs", async () => {
  const gpu = await openGpu();
  gpu.resetStats();
  gpu.bar0.read32(0);
  gpu.bar0.write32(NV_PBUS_BAR0_WINDOW, 0);
  gpu.device.bar1.read32(0);
  assert.deepEqual(gpu.stats(), { mmioReads: 2, mmioWrites: 1, windowMoves: 0 });
  gpu.close();
  assert.throws(() => gpu.bar0.read32(0), /ENODEV: bar0 is closed/);
});

Deno.test("regs(): every register novamm uses, one read each, decoded; PRI errors flagged", async () => {
  const { readRegisters } = await import("../hw/reg_dump.ts");
  for (const name of Object.keys(SIM_PROFILES)) {
    const gpu = await openGpu({ device: `sim:${name}` });
    gpu.resetStats();
    const rs = readRegisters(gpu.bar0, gpu.chip.architecture, gpu.chip.chipId);
    assert.equal(gpu.stats().mmioReads, rs.length, "one read per register");
    // The dump reads only registers the chip has (the simulator says which exist), and never
    // 0x10F800, whose read injects an FB flush.
    assert.deepEqual(gpu.sim!.errors(), [], name);
    assert.ok(!rs.some((r) => r.offset === 0x10f800), name);
    assert.equal(gpu.sim!.fbFlushes, 0, name);
    const boot42 = rs.find((r) => r.name === "NV_PMC_BOOT_42")!;
    assert.equal(boot42.decoded!.CHIP_ID, gpu.chip.chipId);
    assert.match(Deno.inspect(rs), /NV_PMC_BOOT_0 +0x/);
    gpu.close();
  }
  const gpu = await openGpu();
  const { knownRegisters } = await import("../hw/reg_dump.ts");
  const wrongChip = knownRegisters("Hopper"); // Hopper's registers read on an Ampere board
  gpu.bar0.read32(0); // (the sim logs each unknown one)
  assert.ok(wrongChip.some((r) => r.offset === 0x10fd40));
  assert.match(Deno.inspect(readRegisters(gpu.bar0, "Hopper")), /PRI error/);
  gpu.close();
});

Deno.test("sim: PRAMIN bulk words land exactly as single accesses would (and stay posted until an FB flush)", async () => {
  const { Mmio } = await import("../hw/mmio.ts");
  const bulk = createSimGpu({ profile: "ga102" });
  const single = createSimGpu({ profile: "ga102" });
  const words = new Uint32Array(70_000).map((_, i) =>
    (i % 7 === 0 ? 0 : Math.imul(i, 0x9e3779b1)) >>> 0
  );
  const b0 = new Mmio("bar0", bulk.bar0);
  const s0 = new Mmio("bar0", single.bar0);
  for (const m of [b0, s0]) m.write32(0x1700, 0x10); // window at 1 MiB
  b0.writeWords(0x700000 + 0x40, words.subarray(0, 60_000)); // inside the aperture, crossing chunks
  for (let i = 0; i < 60_000; i++) s0.write32(0x700000 + 0x40 + i * 4, words[i]);
  const back = b0.readWords(0x700000 + 0x40, new Uint32Array(60_000));
  assert.deepEqual(back, words.subarray(0, 60_000));
  for (const a of [0x100040, 0x110000, 0x13a97c]) {
    assert.equal(bulk.vram.read32(a), single.vram.read32(a), `VRAM ${a.toString(16)}`);
  }
  // The GPU's view: not yet visible to the MMU until the flush completes (it sees what
  // unscrubbed VRAM held there before).
  assert.notEqual(bulk.vram.background32(0x100044), 0);
  assert.equal(bulk.posted.read32(0x100044), bulk.vram.background32(0x100044));
  assert.equal(single.posted.read32(0x100044), single.vram.background32(0x100044));
  // Past the aperture end: the bulk path falls back to single accesses (registers there).
  b0.writeWords(0x7ffffc, new Uint32Array([1, 2]));
  s0.write32(0x7ffffc, 1);
  s0.write32(0x800000, 2);
  assert.deepEqual(
    bulk.errors().map((e) => e.kind),
    single.errors().map((e) => e.kind),
  );
});
