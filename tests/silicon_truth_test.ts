// Issue 14 ("Silicon truth, third pass"): novamm's per-family mechanics against NVIDIA's
// sources (facts §14) on the simulator, under every CONFLICT knob.
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import type { Gpu } from "../mm/gpu.ts";
import type { MmioAccess } from "../hw/mmio.ts";
import { Mmio } from "../hw/mmio.ts";
import { NovaError } from "../hw/errors.ts";
import { createSimGpu } from "../hw/sim/gpu.ts";
import { SIM_PROFILES } from "../hw/sim/profiles.ts";
import { chipFamily, instanceBlockWords, LOWHIGH_BIND, VF_BIND } from "../hw/family/mod.ts";
import { decodeChip, encodeBoot } from "../hw/chip.ts";
import { readRegister } from "../hw/device.ts";
import { readValid } from "../hw/regs.ts";
import { knobCombinations } from "./util.ts";
import {
  bindLowHigh,
  bindVf,
  FB_FLUSH_UFLUSH,
  FB_FLUSH_XAL,
  follows,
  invalidate,
  type RefStep,
  UNBIND_LOWHIGH,
  UNBIND_VF,
} from "./fixtures/rm_sequences.ts";

const MiB = 2 ** 20;

/** Opens `device` recording every BAR0 register access (PRAMIN and window moves left out). */
async function traced(device: string): Promise<{ gpu: Gpu; trace: MmioAccess[]; on: () => void }> {
  const trace: MmioAccess[] = [];
  let recording = false;
  let window = -1;
  const gpu = await openGpu({
    device,
    tracer: (a) => {
      if (!recording || a.bar !== "bar0") return;
      if (a.offset >= 0x700000 && a.offset < 0x800000) return; // PRAMIN: VRAM, not registers
      if (a.offset === window) return; // window moves
      trace.push({ ...a });
    },
  });
  window = gpu.pramin.register.offset;
  return {
    gpu,
    trace,
    on: () => {
      trace.length = 0;
      recording = true;
    },
  };
}

function readWords(gpu: Gpu, addr: number, n: number): Uint32Array {
  using w = gpu.pramin.window();
  return w.readWords(addr, n);
}

function flushSteps(name: string): RefStep[] {
  return chipFamily({ chipId: SIM_PROFILES[name].chipId, name }).fbFlush.mechanism === "xal"
    ? FB_FLUSH_XAL
    : FB_FLUSH_UFLUSH;
}

/** The BAR invalidate word RM writes (facts §14.1): TU10x 0x80000005, GA100 on 0x80010005. */
function barInvalidateWord(name: string): number {
  return SIM_PROFILES[name].architecture === "Turing" ? 0x80000005 : 0x80010005;
}

for (const name of Object.keys(SIM_PROFILES)) {
  const profile = SIM_PROFILES[name];
  const fam = chipFamily({ chipId: profile.chipId, name });
  if (fam.fbFlush.mechanism === "gsp") {
    Deno.test(`reference sequences: sim:${name} refuses a BAR1 bring-up (flush is a GSP call) with no MMIO`, async () => {
      const { gpu, trace, on } = await traced(`sim:${name}`);
      try {
        on();
        const before = gpu.stats();
        assert.throws(
          () => gpu.bar1.bringUp(),
          (e) => e instanceof NovaError && e.code === "ENOTSUP" && /GSP/.test(e.message),
        );
        assert.throws(
          () => gpu.bar1.map({ start: gpu.vram.usable.start, size: 4096 }),
          (e) => e instanceof NovaError && e.code === "ENOTSUP",
        );
        assert.deepEqual(trace, []);
        assert.deepEqual(gpu.stats(), before);
        assert.equal(gpu.bar1.mode, "physical");
        assert.deepEqual(gpu.sim!.errors(), []);
      } finally {
        gpu.close();
      }
    });
    continue;
  }
  for (const knobs of knobCombinations(profile.mmuVersion)) {
    const spec = `sim:${name}${knobs === "" ? "" : `?${knobs}`}`;
    Deno.test(`reference sequences: bringUp, map and unbind on ${spec} follow RM's HALs`, async () => {
      const { gpu, trace, on } = await traced(spec);
      try {
        const a = gpu.mm.buddy.alloc(64 * 1024);
        on();
        gpu.bar1.bringUp();
        const inst = gpu.bar1.binding!.instanceBlock;
        const pdb = gpu.bar1.pdb;
        const bind = profile.mmuVersion === 2 ? bindVf(inst) : bindLowHigh(inst);
        const ctl = barInvalidateWord(name);
        const expectBringUp = [...flushSteps(name), ...bind, ...invalidate(ctl, pdb)];
        assert.equal(follows(trace, expectBringUp), null, `bringUp on ${name}`);

        on();
        const m = gpu.bar1.map(a, { writable: true });
        assert.equal(follows(trace, [...flushSteps(name), ...invalidate(ctl, pdb)]), null, "map");
        m.write32(0, 0x600dcafe);
        assert.equal(gpu.pramin.read32(a.start), 0x600dcafe);

        on();
        m.unmap();
        // An unmap is a PTE downgrade: TU10x adds SYS_MEMBAR | ACK_GLOBALLY (0x800000C5).
        const down = profile.architecture === "Turing" ? 0x800000c5 : ctl;
        assert.equal(
          follows(trace, [...flushSteps(name), ...invalidate(down, pdb)]),
          null,
          "unmap",
        );

        on();
        gpu.bar1.unbind();
        const unbind = profile.mmuVersion === 2 ? UNBIND_VF : UNBIND_LOWHIGH;
        assert.equal(follows(trace, unbind), null, "unbind");
        assert.equal(gpu.sim!.bar1Mode, "physical");
        const flushes = trace.filter((t) => t.offset === 0x70000 || t.offset === 0x10f800);
        assert.deepEqual(flushes, [], "an unbind flushes nothing");
        assert.deepEqual(gpu.sim!.errors(), []);
      } finally {
        gpu.close();
      }
      assert.equal(gpu.sim!.bar1Mode, "physical", "close leaves BAR1 as found");
    });
  }
}

Deno.test("done when: GH100/GB202 flush by reading 0x10F800 and polling 0x10F804, never 0x70000; GA102 writes 0x70000", async () => {
  for (const name of ["gh100", "gb202", "ga102"]) {
    const { gpu, trace, on } = await traced(`sim:${name}`);
    try {
      on();
      gpu.bar1.bringUp();
      using _m = gpu.bar1.map(gpu.mm.buddy.alloc(4096));
      const at = (offset: number, op: "r" | "w") =>
        trace.filter((t) => t.offset === offset && t.op === op).length;
      if (name === "ga102") {
        assert.ok(at(0x70000, "w") >= 2 && at(0x70000, "r") >= 2, name);
        assert.equal(at(0x10f800, "r") + at(0x10f804, "r"), 0, name);
      } else {
        assert.ok(at(0x10f800, "r") >= 2 && at(0x10f804, "r") >= 2, name);
        assert.equal(at(0x10f800, "w") + at(0x10f804, "w"), 0, `${name}: XAL flush never written`);
        assert.equal(trace.filter((t) => t.offset === 0x70000).length, 0, `${name}: no 0x70000`);
      }
      assert.deepEqual(gpu.sim!.errors(), []);
    } finally {
      gpu.close();
    }
  }
});

Deno.test("done when: bar1.bind(mm.createVmm()) with the default VA size works on GH100 and GB202", async () => {
  for (const name of ["gh100", "gb202"]) {
    using gpu = await openGpu({ device: `sim:${name}` });
    const vmm = gpu.mm.createVmm();
    assert.equal(vmm.vaSize, 1n << 57n);
    gpu.bar1.bind(vmm);
    const a = gpu.mm.buddy.alloc(2 * MiB);
    const m = vmm.mapPages([a.start / 4096], { writable: true, va: 0x200000 });
    gpu.device.bar1.write32(0x200000 + 8, 0xfeedf00d);
    assert.equal(gpu.pramin.read32(a.start + 8), 0xfeedf00d, name);
    assert.equal(gpu.sim!.lost, null, name);
    assert.deepEqual(gpu.sim!.errors(), [], name);
    m.unmap();
    gpu.bar1.unbind();
  }
});

Deno.test("instance blocks: ADR_LIMIT only on TU10x, in 64-bit integers; bit 10 as RM writes it; the Blackwell magic", () => {
  for (const [name, p] of Object.entries(SIM_PROFILES)) {
    const fam = chipFamily({ chipId: p.chipId, name });
    const w = instanceBlockWords(fam.instanceBlock, { pdb: 0x1234_5000, vaSize: 1n << 57n });
    assert.equal(w.length, 1024);
    assert.equal((w[0x200 / 4] >>> 10) & 1, p.mmuVersion === 2 ? 1 : 0, `${name} bit 10`);
    assert.equal(w[0x200 / 4] >>> 12, 0x12345, name);
    if (p.architecture === "Turing") {
      // 2^57 - 1 would round to 2^57 as a double: here the limit is exact.
      assert.equal(w[0x208 / 4], 0xffffffff);
      assert.equal(w[0x20c / 4], 0x01ffffff);
    } else {
      assert.equal(w[0x208 / 4], 0, name);
      assert.equal(w[0x20c / 4], p.architecture === "Blackwell" ? 0xcafeca11 : 0, name);
    }
    // Nothing else: no subcontext table for BAR1 (RM writes only the base PDB).
    const others = [...w.entries()].filter(([i, v]) =>
      v !== 0 && ![0x80, 0x81, 0x82, 0x83].includes(i)
    );
    assert.deepEqual(others, [], name);
  }
  const tu = chipFamily({ chipId: 0x162, name: "TU102" });
  const small = instanceBlockWords(tu.instanceBlock, { pdb: 0, vaSize: 256n * 2n ** 20n });
  assert.equal(small[0x208 / 4], 0x0fffffff);
  assert.equal(small[0x20c / 4], 0);
  assert.throws(() => instanceBlockWords(tu.instanceBlock, { pdb: 0x1001, vaSize: 1n << 40n }));
});

Deno.test("done when: layout — WPR2 ends at HI << 12, mmu-lock only on GA100, no VGA on GA100/GH100", async () => {
  for (const name of Object.keys(SIM_PROFILES)) {
    for (const state of ["bare", "gsp", "unloaded"]) {
      using gpu = await openGpu({ device: `sim:${name}:${state}` });
      const names = gpu.vram.layout.map((r) => r.name);
      assert.equal(names.includes("mmu-lock"), name === "ga100", `${name}:${state} ${names}`);
      const display = SIM_PROFILES[name].display;
      assert.equal(names.includes("vga-workspace"), display, `${name}:${state} ${names}`);
      assert.equal(names.includes("vga-memory"), display, `${name}:${state}`);
      const wpr2 = gpu.vram.layout.filter((r) => r.name === "wpr2");
      if (state === "bare") {
        assert.deepEqual(wpr2, [], `${name}: WPR2 clear on a bare card`);
        // GH100's LO resets to 0xFFFFFFF0: start past end, HI 0 — still no region.
        if (name === "gh100") assert.equal(gpu.bar0.read32(0x1fa824), 0xfffffff0);
      } else {
        assert.equal(wpr2.length, 1, `${name}:${state}`);
        const hi = gpu.bar0.read32(0x1fa828);
        assert.equal(wpr2[0].end, (hi >>> 4) * 4096, `${name}:${state}: exclusive end`);
        assert.deepEqual({ start: wpr2[0].start, end: wpr2[0].end }, gpu.sim!.boot.wpr2);
      }
      assert.deepEqual(gpu.sim!.errors(), [], `${name}:${state}`);
    }
  }
  for (const name of ["ga100", "gh100", "gb100"]) {
    await assert.rejects(
      openGpu({ device: `sim:${name}:vga` }),
      (e) => e instanceof NovaError && e.code === "ENODEV" && /display/.test(e.message),
    );
  }
});

Deno.test("done when: a PRAMIN write into WPR2 on sim:ga102:unloaded is dropped and reported", async () => {
  using gpu = await openGpu({ device: "sim:ga102:unloaded" });
  const wpr2 = gpu.vram.layout.find((r) => r.name === "wpr2")!;
  const before = gpu.pramin.read32(wpr2.start);
  // novamm refuses it (the write policy) ...
  assert.throws(
    () => gpu.pramin.write32(wpr2.start, 0x12345678),
    (e) => e instanceof NovaError && e.code === "EPERM" && /wpr2/.test(e.message),
  );
  assert.deepEqual(gpu.sim!.errors(), []);
  // ... and forced through, the card drops it and the simulator reports it.
  gpu.pramin.write32(wpr2.start, 0x12345678, { force: true });
  assert.notEqual(gpu.pramin.read32(wpr2.start), 0x12345678);
  assert.equal(gpu.pramin.read32(wpr2.start), before);
  const events = gpu.sim!.errors().filter((e) => e.kind === "firmware-vram-write");
  assert.equal(events.length, 1);
  gpu.sim!.log.length = 0;
});

Deno.test("a bare card's VRAM is not zero: tables and instance blocks novamm builds are written whole", async () => {
  for (const name of ["ga102", "gh100", "tu102", "gb202"]) {
    for (const state of ["bare", "unloaded"]) {
      using gpu = await openGpu({ device: `sim:${name}:${state}` });
      const a = gpu.mm.buddy.alloc(MiB);
      // Memory nobody wrote reads a pattern, not zero.
      const words = readWords(gpu, a.start, 256);
      assert.ok(words.some((w) => w !== 0), `${name}:${state}`);
      using m = gpu.bar1.map(a, { writable: true });
      m.write32(0x1000, 0xabad1dea);
      assert.equal(gpu.pramin.read32(a.start + 0x1000), 0xabad1dea);
      const inst = gpu.bar1.binding!.instanceBlock;
      const page = readWords(gpu, inst, 1024);
      const fam = gpu.family;
      assert.deepEqual(
        [...page],
        [...instanceBlockWords(fam.instanceBlock, {
          pdb: gpu.bar1.pdb,
          vaSize: BigInt(gpu.bar1.size),
        })],
        `${name}:${state}: the whole instance block`,
      );
      assert.deepEqual(gpu.sim!.errors(), [], `${name}:${state}`);
    }
  }
});

Deno.test("CONFLICT bar1alias: novamm goes physical under both; RM's 0x1704-only teardown fails under 'separate'", async () => {
  for (const alias of ["shared", "separate"]) {
    const spec = `sim:ga102:gsp?bar1alias=${alias}`;
    {
      using gpu = await openGpu({ device: spec });
      assert.equal(gpu.bar1.mode, "virtual");
      gpu.bar1.unbind();
      assert.equal(gpu.sim!.bar1Mode, "physical", spec);
      assert.equal(gpu.bar1.mode, "physical");
      gpu.close();
      assert.equal(gpu.sim!.bar1Mode, "virtual", `${spec}: restored as found`);
    }
    // A driver that assumed one register (writes only 0x1704, as RM's unload) ...
    const sim = createSimGpu({
      profile: "ga102",
      state: "gsp",
      conflicts: { bar1alias: alias as "shared" },
    });
    sim.bar0.write32(0x1704, 0);
    sim.bar0.read32(0xb80f50);
    sim.bar0.read32(0xb80f50);
    sim.bar0.read32(0xb80f50);
    assert.equal(sim.bar1Mode, alias === "shared" ? "physical" : "virtual", spec);
  }
});

Deno.test("CONFLICT lowbind: novamm goes physical under both; a LOW-only write fails under 'high'", async () => {
  for (const low of ["immediate", "high"]) {
    const spec = `sim:gh100:gsp?lowbind=${low}`;
    {
      using gpu = await openGpu({ device: spec });
      gpu.bar1.unbind();
      assert.equal(gpu.sim!.bar1Mode, "physical", spec);
      gpu.close();
      assert.equal(gpu.sim!.bar1Mode, "virtual", `${spec}: restored`);
    }
    const sim = createSimGpu({
      profile: "gh100",
      state: "gsp",
      conflicts: { lowbind: low as "high" },
    });
    sim.bar0.write32(0xb80f60, 0); // RM's teardown: LOW only
    assert.equal(sim.bar1Mode, low === "immediate" ? "physical" : "virtual", spec);
  }
});

Deno.test("CONFLICT v3bit10: novamm writes RM's value and binds under both; nouveau's 1 fails under 'rm'", async () => {
  for (const bit of ["ignored", "rm"]) {
    using gpu = await openGpu({ device: `sim:gh100?v3bit10=${bit}` });
    const a = gpu.mm.buddy.alloc(64 * 1024);
    using m = gpu.bar1.map(a, { writable: true });
    m.write32(0, 1);
    assert.equal(gpu.pramin.read32(a.start), 1);
    assert.deepEqual(gpu.sim!.errors(), []);
    // The same block with bit 10 set (nouveau's gv100_vmm_join) ...
    const inst = gpu.bar1.binding!.instanceBlock;
    const word = gpu.pramin.read32(inst + 0x200);
    gpu.pramin.write32(inst + 0x200, (word | 0x400) >>> 0, { force: true });
    gpu.tlb.fbFlush();
    const sim = gpu.sim!;
    sim.bar0.write32(0xb80f60, gpu.bar0.read32(0xb80f60) & ~3);
    sim.bar0.write32(0xb80f64, 0);
    const bad = sim.errors().filter((e) => e.kind === "bad-instance-block");
    assert.equal(bad.length, bit === "rm" ? 1 : 0, bit);
    sim.log.length = 0;
    gpu.pramin.write32(inst + 0x200, word, { force: true });
    gpu.tlb.fbFlush();
    sim.bar0.write32(0xb80f64, 0);
  }
});

Deno.test("all ones is re-checked through BOOT_0 before the GPU is called lost", () => {
  const { boot0, boot42 } = encodeBoot(0x172);
  const regs = new Map<number, number>([[0, boot0], [0xa00, boot42], [0x1234, 0xffffffff]]);
  let gone = false;
  const bar0 = new Mmio("bar0", {
    size: 16 * MiB,
    read8: () => 0,
    read16: () => 0,
    read32: (o) => gone ? 0xffffffff : regs.get(o) ?? 0xbadf1100,
    write8: () => {},
    write16: () => {},
    write32: () => {},
  });
  assert.equal(readValid(bar0, 0x1234), 0xffffffff, "a register may read all ones");
  assert.equal(readRegister(bar0, 0x1234, "TEST"), 0xffffffff);
  gone = true;
  assert.equal(readValid(bar0, 0x1234), null);
  assert.throws(
    () => readRegister(bar0, 0x1234, "TEST"),
    (e) => e instanceof NovaError && e.code === "ENODEV",
  );
  assert.equal(decodeChip(boot0, boot42).name, "GA102");
});

Deno.test("physical BAR1 only with TARGET VID: physical mode into system memory is refused, naming the register", async () => {
  for (
    const [name, reg, value] of [["ga102", 0xb80f40, 0x20000000], [
      "gh100",
      0xb80f60,
      0x800,
    ]] as const
  ) {
    using gpu = await openGpu({ device: `sim:${name}` });
    const addr = gpu.vram.usable.start;
    assert.equal(gpu.bar1.physical.read32(addr) >>> 0, gpu.pramin.read32(addr) >>> 0);
    // A raw poke: physical mode, TARGET SYS_MEM_COHERENT.
    gpu.bar0.write32(reg, value);
    if (name === "gh100") gpu.bar0.write32(0xb80f64, 0);
    for (let i = 0; i < 4; i++) gpu.bar0.read32(name === "gh100" ? 0xb80f60 : 0xb80f50);
    const ops = name === "ga102" ? VF_BIND : LOWHIGH_BIND;
    const s = ops.read(gpu.bar0);
    assert.equal(s.mode, "physical");
    assert.match(s.problem ?? "", /TARGET 2 \(SYS_MEM_COHERENT\)/);
    const reads = gpu.stats().mmioReads;
    assert.throws(
      () => gpu.bar1.physical.read32(addr),
      (e) => e instanceof NovaError && e.code === "EFAULT" && /system memory/.test(e.message),
    );
    assert.throws(
      () => gpu.device.bar1.read32(0),
      (e) => e instanceof NovaError && e.code === "EFAULT" && /system memory/.test(e.message),
    );
    assert.equal(gpu.stats().mmioReads, reads, "refused before any access");
    gpu.bar1.unbind(); // back to physical, TARGET VID
    assert.equal(gpu.bar1.physical.read32(addr) >>> 0, gpu.pramin.read32(addr) >>> 0);
    assert.deepEqual(gpu.sim!.errors().filter((e) => e.kind !== "bar1-sysmem"), []);
  }
});

Deno.test("memory clear: a booting card is opened only after 0x100B20 reads 1", async () => {
  using gpu = await openGpu({ device: "sim:ga102:booting" });
  assert.equal(gpu.device.memClear.value, 1);
  using m = gpu.bar1.map(gpu.mm.buddy.alloc(4096), { writable: true });
  m.write32(0, 5);
  assert.deepEqual(gpu.sim!.errors(), []);
});
