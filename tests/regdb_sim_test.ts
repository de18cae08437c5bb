// Issue 16 item 5: the simulator checked against NVIDIA's headers, not against novamm. Every
// register the simulator models must be one the chip's published headers define, at the same
// offset, holding the header's reset value on a card nobody booted — except the deliberate
// exceptions below, each with its reason.
import assert from "node:assert/strict";
import { createSimGpu } from "../hw/sim/gpu.ts";
import { SIM_PROFILES } from "../hw/sim/profiles.ts";
import { loadRegisterDb, lookup } from "../hw/regdb/mod.ts";
import { openGpu } from "../mod.ts";

/** Offsets the simulator models that the headers novamm reads do not define, and why. */
const NOT_IN_HEADERS: Record<number, { chips: string[]; why: string }> = {
  0x100b20: {
    chips: ["tu102", "ga100", "ga102", "ad102", "gh100"],
    why:
      "MEM_CLEAR_STATUS: in no published header; NVIDIA's gpu-admin-tools polls it (facts §14.2)",
  },
  0x8a004c: {
    chips: ["gb100", "gb202"],
    why: "MEM_CLEAR_STATUS on Blackwell: gpu-admin-tools only (facts §14.2)",
  },
  0x100ce0: {
    chips: ["tu102", "ga100"],
    why:
      "NV_PFB_PRI_MMU_LOCAL_MEMORY_RANGE: not in the published tu102/ga100 headers; nova-core and RM's HAL read the VRAM size there (facts §13.1)",
  },
  0x1183a4: {
    chips: ["gh100", "gb100", "gb202"],
    why:
      "NV_USABLE_FB_SIZE_IN_MB is published for GA102 only; nova-core reads it on Hopper/Blackwell too (facts §13.1)",
  },
  0x820c04: {
    chips: ["gh100"],
    why:
      "the display fuse is not in gh100's headers; GH100 has no display and RM never reads it — the simulator answers DISABLE",
  },
  0x21c04: {
    chips: ["tu102"],
    why:
      "NV_FUSE_STATUS_OPT_DISPLAY of TU10x lives in gm107/dev_fuse.h, which RM uses there (gpuFuseSupportsDisplay_GM107)",
  },
  0xb830a0: {
    chips: ["gh100"],
    why:
      "gh100 publishes no TLB-invalidate registers; nouveau and RM use the Turing offsets (facts §3.1)",
  },
  0xb830a4: { chips: ["gh100"], why: "as 0xb830a0" },
  0xb830b0: { chips: ["gh100"], why: "as 0xb830a0" },
};

for (const [name, profile] of Object.entries(SIM_PROFILES)) {
  Deno.test(`sim:${name} models only registers NVIDIA's headers define, with their reset values`, async () => {
    const db = await loadRegisterDb(profile.chipId);
    const sim = createSimGpu({ profile: name });
    const missing: string[] = [];
    const wrong: string[] = [];
    for (const { offset, value } of sim.modeledRegisters) {
      const hit = lookup(db, offset, { limit: 1 })[0];
      if (hit === undefined) {
        if (!NOT_IN_HEADERS[offset]?.chips.includes(name)) missing.push(offset.toString(16));
        continue;
      }
      const r = hit.register.reset;
      const m = hit.register.resetMask;
      if (r !== null && ((value & m) >>> 0) !== ((r & m) >>> 0)) {
        wrong.push(
          `${hit.name} (${offset.toString(16)}): ${value.toString(16)}, header ${r.toString(16)}`,
        );
      }
    }
    assert.deepEqual(missing, [], "modeled registers the headers do not define");
    assert.deepEqual(wrong, [], "reset values that differ from the header's");
    // Each exception is still needed (the list must not go stale).
    for (const [off, e] of Object.entries(NOT_IN_HEADERS)) {
      if (!e.chips.includes(name)) continue;
      assert.equal(lookup(db, Number(off), { limit: 1 }).length, 0, `${off} is in the headers now`);
    }
  });
}

Deno.test("registers the headers define but the simulator does not model read their reset value, reported once", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const sim = gpu.sim!;
  // NV_PFB_PRI_MMU_CTRL (0x100C80): defined for GA10x, not modelled.
  const v = gpu.bar0.read32(0x100c80);
  assert.equal(v >>> 20 === 0xbad, false, "not a PRI error");
  gpu.bar0.read32(0x100c80);
  gpu.bar0.write32(0x100c80, v ^ 1);
  assert.equal(gpu.bar0.read32(0x100c80), v, "a write changes nothing");
  const events = sim.log.filter((e) => e.kind === "unmodeled");
  assert.equal(events.length, 1, "reported once");
  assert.equal(events[0].severity, "info");
  assert.deepEqual(sim.errors(), []);
  // An offset no header defines stays a PRI error.
  assert.equal(gpu.bar0.read32(0x123450) >>> 20, 0xbad);
  assert.equal(sim.errors().filter((e) => e.kind === "unknown-register").length, 1);
  sim.log.length = 0;
});
