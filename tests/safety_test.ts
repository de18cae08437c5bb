// Issue 15: nothing reaches the card that would fault it, and close() puts back everything the
// session found. One reproducer per item of the issue (each failed on the code before it), then a
// random sequence of public calls and raw pokes on every profile × state.
import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import type { Gpu } from "../mm/gpu.ts";
import { NovaError } from "../hw/errors.ts";
import { SIM_PROFILES, SIM_STATES } from "../hw/sim/profiles.ts";
import { windowRegister } from "../hw/regs.ts";
import { Mmio } from "../hw/mmio.ts";
import { prng } from "../testing/prng.ts";

const PAGE = 4096;
const MiB = 2 ** 20;

function nova(code: string, pattern?: RegExp): (e: unknown) => boolean {
  return (e) =>
    e instanceof NovaError && e.code === code && (pattern === undefined || pattern.test(e.message));
}

/** The bind registers and the window register, raw from the simulator (no novamm code). */
function cardRegisters(gpu: Gpu): number[] {
  const sim = gpu.sim!;
  const offs = gpu.chip.mmuVersion === 2 ? [0xb80f40, 0x1704] : [0xb80f60, 0xb80f64];
  const win = windowRegister(gpu.chip.architecture).offset;
  return [...offs.map((o) => sim.bar0.read32(o) & (o === 0xb80f60 ? ~3 : ~0)), sim.bar0.read32(win)]
    .map((v) => v >>> 0);
}

Deno.test("item 1: on a card bound at open, raw BAR1 accesses are guarded before gpu.bar1 is touched", async () => {
  for (const device of ["sim:ga102:gsp", "sim:gh100:gsp"]) {
    using gpu = await openGpu({ device, pollTimeoutMs: 50 });
    // Firmware's own page at VA 0 may be read; an unmapped VA is refused before the card.
    assert.equal(gpu.device.bar1.read32(0), gpu.sim!.firmware!.mappings[0].pattern);
    assert.throws(() => gpu.device.bar1.read32(0x50000), nova("EFAULT"));
    assert.equal(gpu.sim!.lost, null, device);
  }
});

Deno.test("item 2: a raw bind-register write before gpu.bar1 exists is followed", async () => {
  // A bare card bound by hand to an instance block of garbage: novamm must see BAR1 virtual.
  using gpu = await openGpu({ device: "sim:ga102" });
  const inst = gpu.vram.usable.start + 16 * MiB;
  gpu.bar0.write32(0xb80f40, (0x80000000 | inst / PAGE) >>> 0);
  for (let i = 0; i < 4; i++) gpu.bar0.read32(0xb80f50);
  assert.equal(gpu.sim!.bar1Mode, "virtual");
  assert.equal(gpu.bar1.mode, "virtual");
  assert.throws(() => gpu.bar1.physical.read32(gpu.vram.usable.start), nova("EFAULT"));
  assert.throws(() => gpu.device.bar1.read32(0), nova("EFAULT"));
  assert.equal(gpu.sim!.lost, null);
  // And back: novamm's unbind works from there, close() leaves it as found.
  gpu.bar1.unbind();
  assert.equal(gpu.sim!.bar1Mode, "physical");
});

Deno.test("item 3: a mapping whose FB flush timed out is not trusted until a flush completes", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    using gpu = await openGpu({ device, pollTimeoutMs: 50 });
    gpu.bar1.bringUp();
    const a = gpu.mm.buddy.alloc(64 * 1024);
    const sim = gpu.sim!;
    sim.knobs.fbFlushHang = true;
    let err: unknown = null;
    try {
      gpu.bar1.map(a, { writable: true });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof NovaError && /untrusted/.test(err.message), String(err));
    const m = gpu.bar1.vmm.mappings().find((x) => x.size === 64 * 1024)!;
    assert.equal(m.flushed, false);
    assert.throws(() => gpu.device.bar1.read32(Number(m.va)), nova("EFAULT", /never flushed/));
    assert.equal(sim.lost, null, `${device}: nothing reached the card`);
    // Same for a space bound with bar1.bind and mapped with mapPages.
    sim.knobs.fbFlushHang = false;
    const ch = gpu.mm.createVmm({ vaSize: 1n << 32n });
    gpu.bar1.bind(ch);
    sim.knobs.fbFlushHang = true;
    assert.throws(() => ch.mapPages([a.start / PAGE], { writable: true, va: 0x10000 }));
    assert.throws(() => gpu.device.bar1.read32(0x10000), nova("EFAULT"));
    assert.equal(sim.lost, null);
    sim.knobs.fbFlushHang = false;
    ch.flush(); // the retry: now trusted
    assert.equal(ch.mappings()[0].flushed, true);
    gpu.device.bar1.write32(0x10000, 0x1234);
    assert.equal(gpu.pramin.read32(a.start), 0x1234);
    assert.equal(sim.lost, null);
  }
});

Deno.test("item 4: after a failed unbind or bind BAR1 is not trusted; nothing lands at VRAM = VA", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    using gpu = await openGpu({ device, pollTimeoutMs: 50 });
    const sim = gpu.sim!;
    const a = gpu.mm.buddy.alloc(PAGE);
    gpu.bar1.bringUp();
    sim.knobs.bindHang = true;
    assert.throws(() => gpu.bar1.unbind(), nova("ETIMEDOUT"));
    const zero = sim.vram.read32(0);
    assert.throws(() => gpu.bar1.map(a, { writable: true }), (e) => e instanceof NovaError);
    assert.throws(() => gpu.bar1.physical.write32(a.start, 1), nova("EFAULT"));
    assert.throws(() => gpu.device.bar1.write32(0, 0xdead), nova("EFAULT"));
    assert.equal(sim.vram.read32(0), zero, "VRAM 0 untouched");
    assert.equal(sim.lost, null);
    // The bind settles; a retry works and the state follows the card.
    sim.knobs.bindHang = false;
    gpu.bar1.unbind();
    assert.equal(gpu.bar1.mode, "physical");
    assert.equal(sim.bar1Mode, "physical");
    // A bind that hangs during bringUp: not trusted either.
    sim.knobs.bindHang = true;
    assert.throws(() => gpu.bar1.bringUp(), nova("ETIMEDOUT"));
    assert.throws(() => gpu.device.bar1.read32(0), nova("EFAULT"));
    sim.knobs.bindHang = false;
    gpu.bar1.bringUp();
    assert.equal(gpu.bar1.mode, "virtual");
    assert.deepEqual(sim.errors().filter((e) => e.kind === "gpu-lost"), []);
  }
});

Deno.test("item 5: a PraminView refuses use after the window moved", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const a = gpu.mm.buddy.alloc(2 * MiB, { align: MiB });
  const v = gpu.pramin.view(a.start);
  v.write32(a.start + 16, 0x11111111);
  {
    using w = gpu.pramin.window();
    const other = w.read32(a.start + MiB + 16); // the window moves (and stays while w is open)
    assert.throws(() => v.write32(a.start + 16, 0x22222222), nova("EFAULT", /now points/));
    assert.throws(() => v.read32(a.start + 16), nova("EFAULT"));
    assert.equal(w.read32(a.start + MiB + 16), other, "nothing written elsewhere");
  }
  // A raw write of the window register moves it too.
  const reg = windowRegister(gpu.chip.architecture).offset;
  gpu.bar0.write32(reg, (a.start + MiB) / (64 * 1024));
  assert.throws(() => v.write32(a.start + 16, 0x22222222), nova("EFAULT"));
  assert.equal(gpu.pramin.read32(a.start + 16), 0x11111111);
  // A fresh view works again.
  gpu.pramin.view(a.start).write32(a.start + 16, 0x33333333);
  assert.equal(gpu.pramin.read32(a.start + 16), 0x33333333);
});

Deno.test("medium: close() restores the window after a raw write and after a view", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device, pollTimeoutMs: 50 });
    const before = cardRegisters(gpu);
    const win = windowRegister(gpu.chip.architecture).offset;
    gpu.bar0.write32(win, 0x40); // raw: 4 MiB
    gpu.close();
    assert.deepEqual(cardRegisters(gpu), before, `${device}: raw window write undone`);
    const g2 = await openGpu({ device, pollTimeoutMs: 50 });
    const b2 = cardRegisters(g2);
    g2.pramin.view(64 * MiB);
    g2.close();
    assert.deepEqual(cardRegisters(g2), b2, `${device}: view's move undone`);
  }
});

Deno.test("medium: close() restores bind registers a raw write changed, novamm never having bound", async () => {
  for (const device of ["sim:ga102:gsp", "sim:gh100:gsp", "sim:ga102", "sim:tu102:unloaded"]) {
    const gpu = await openGpu({ device, pollTimeoutMs: 50 });
    const before = cardRegisters(gpu);
    const mode = gpu.sim!.bar1Mode;
    if (gpu.chip.mmuVersion === 2) {
      gpu.bar0.write32(0xb80f40, 0);
      gpu.bar0.write32(0x1704, 0);
    } else {
      gpu.bar0.write32(0xb80f60, 0);
      gpu.bar0.write32(0xb80f64, 0);
    }
    for (let i = 0; i < 4; i++) gpu.bar0.read32(gpu.chip.mmuVersion === 2 ? 0xb80f50 : 0xb80f60);
    gpu.close();
    assert.deepEqual(cardRegisters(gpu), before, device);
    assert.equal(gpu.sim!.bar1Mode, mode, device);
  }
});

Deno.test("medium: a LOW-only poke on Hopper (lowbind=high) neither skips the restore nor frees a bound block", async () => {
  const gpu = await openGpu({ device: "sim:gh100?lowbind=high", pollTimeoutMs: 50 });
  const sim = gpu.sim!;
  const before = cardRegisters(gpu);
  gpu.bar1.bringUp();
  const inst = gpu.bar1.binding!.instanceBlock;
  gpu.bar0.write32(0xb80f60, 0); // LOW says physical; without HIGH the card stays bound
  assert.equal(sim.bar1Mode, "virtual");
  gpu.close();
  assert.deepEqual(cardRegisters(gpu), before);
  assert.equal(sim.bar1Mode, "physical", "restored with LOW then HIGH");
  assert.deepEqual(sim.errors(), []);
  void inst;
});

Deno.test("medium: bar1.bind on the boot VGA device needs force", async () => {
  using gpu = await openGpu({ device: "sim:ga102:vga" });
  const ch = gpu.mm.createVmm({ vaSize: 1n << 32n });
  assert.throws(() => gpu.bar1.bind(ch), nova("EPERM", /boot VGA/));
  assert.equal(gpu.sim!.bar1Mode, "physical");
  gpu.bar1.bind(ch, { force: true });
  assert.equal(gpu.sim!.bar1Mode, "virtual");
  gpu.bar1.unbind();
});

Deno.test("medium: vmm.ranges is read-only; the guard and mapper cannot be fooled through it", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  gpu.bar1.bringUp();
  const r = gpu.bar1.vmm.ranges as unknown as Record<string, unknown>;
  for (const k of ["claim", "release", "allocate"]) assert.equal(typeof r[k], "undefined", k);
  assert.equal(gpu.bar1.vmm.ranges.count, 0);
});

Deno.test("medium: one write policy — firmware's VRAM and novamm's tables need { force: true }", async () => {
  {
    using gpu = await openGpu({ device: "sim:ga102:gsp" });
    const sim = gpu.sim!;
    const wpr2 = gpu.vram.layout.find((r) => r.name === "wpr2")!;
    const tables = gpu.vram.layout.find((r) => r.name === "bar1-tables")!;
    // PRAMIN into WPR2, the VGA workspace and GSP's live tables: refused, naming the region.
    assert.throws(() => gpu.pramin.write32(wpr2.start, 1), nova("EPERM", /wpr2/));
    const vga = gpu.vram.layout.find((r) => r.name === "vga-workspace")!;
    assert.throws(() => gpu.pramin.write32(vga.start, 1), nova("EPERM", /vga-workspace/));
    assert.throws(() => gpu.pramin.write32(gpu.bar1.pdb, 1), nova("EPERM"));
    {
      using w = gpu.pramin.window();
      assert.throws(() => w.write64(tables.start + 0x200, 1n), nova("EPERM", /bar1-tables/));
      w.read32(tables.start); // reads are fine
    }
    // A writable BAR1 mapping of firmware's VRAM: refused before anything is written.
    const mmio = gpu.stats().mmioWrites;
    assert.throws(
      () => gpu.bar1.map({ start: wpr2.start, size: PAGE }, { writable: true }),
      nova("EPERM", /wpr2/),
    );
    assert.equal(gpu.stats().mmioWrites, mmio);
    // Read-only is fine.
    using ro = gpu.bar1.map({ start: wpr2.start - PAGE, size: PAGE });
    ro.read32(0);
    assert.deepEqual(sim.errors(), []);
  }
  {
    using gpu = await openGpu({ device: "sim:ga102" });
    // bar1.physical: reads outside the usable region allowed, writes refused unless forced.
    gpu.bar1.physical.read32(0);
    assert.throws(() => gpu.bar1.physical.write32(0, 1), nova("EPERM", /vga-memory/));
    gpu.bar1.physical.forced.write32(0x100, 1);
    // novamm's own page tables: not through a writable mapping, not through PRAMIN.
    gpu.bar1.bringUp();
    const pdb = gpu.bar1.pdb;
    assert.throws(
      () => gpu.bar1.map({ start: pdb, size: PAGE }, { writable: true }),
      nova("EPERM"),
    );
    assert.throws(() => gpu.pramin.write32(pdb, 0), nova("EPERM", /page table of bar1/));
    const inst = gpu.bar1.binding!.instanceBlock;
    assert.throws(() => gpu.pramin.write32(inst, 0), nova("EPERM", /instance block/));
    using forced = gpu.bar1.map({ start: pdb, size: PAGE }, { writable: true, force: true });
    assert.equal(forced.read32(0), gpu.pramin.read32(pdb));
    assert.deepEqual(gpu.sim!.errors(), []);
  }
});

Deno.test("low: the BAR1 guard cannot be switched off from the public API", async () => {
  using gpu = await openGpu({ device: "sim:ga102:gsp" });
  const bar1 = gpu.device.bar1 as unknown as Record<string, unknown>;
  assert.equal(typeof bar1.setGuard, "undefined");
  const { installGuard } = await import("../hw/mmio.ts");
  assert.throws(() => installGuard(gpu.device.bar1 as Mmio, () => {}), nova("EBUSY"));
  assert.throws(() => gpu.device.bar1.read32(0x50000), nova("EFAULT"));
});

Deno.test("random public calls and raw pokes on every profile × state: no BAR fault, close() restores", async () => {
  const r = prng(0x15);
  const rng = { int: (n: number) => Math.floor(r() * n) };
  for (const [name, profile] of Object.entries(SIM_PROFILES)) {
    for (const state of SIM_STATES) {
      if (state === "vga" && !profile.display) continue;
      const device = `sim:${name}:${state}`;
      const gpu = await openGpu({ device, pollTimeoutMs: 50 });
      const sim = gpu.sim!;
      const before = cardRegisters(gpu);
      const mode = sim.bar1Mode;
      const free0 = gpu.mm.buddy.stats().free;
      const allocs = [gpu.mm.buddy.alloc(64 * 1024), gpu.mm.buddy.alloc(64 * 1024)];
      const mappings: { unmap(): void }[] = [];
      const v2 = gpu.chip.mmuVersion === 2;
      const win = windowRegister(gpu.chip.architecture).offset;
      const ops: (() => void)[] = [
        () => mappings.push(gpu.bar1.map(allocs[rng.int(2)], { writable: rng.int(2) === 0 })),
        () => mappings.splice(rng.int(Math.max(1, mappings.length)), 1)[0]?.unmap(),
        () => gpu.bar1.unbind(),
        () => gpu.bar1.bringUp({ force: true }),
        () => gpu.device.bar1.read32(rng.int(64) * PAGE),
        () => gpu.device.bar1.write32(rng.int(64) * PAGE, 1),
        () => gpu.bar1.physical.write32(allocs[0].start, 2),
        () => gpu.bar1.physical.read32(rng.int(gpu.bar1.physical.reach / PAGE) * PAGE),
        () => gpu.bar0.write32(win, rng.int(64)),
        () =>
          gpu.pramin.view(allocs[1].start - (allocs[1].start % (64 * 1024))).write32(
            allocs[1].start,
            3,
          ),
        () => gpu.pramin.write32(rng.int(gpu.vram.size / PAGE) * PAGE, 4),
        // Raw bind pokes: physical (what a REPL user types to "unbind by hand").
        () =>
          v2 ? gpu.bar0.write32(rng.int(2) ? 0xb80f40 : 0x1704, 0) : gpu.bar0.write32(0xb80f60, 0),
        () => v2 ? undefined : gpu.bar0.write32(0xb80f64, 0),
        () => {
          sim.knobs.fbFlushHang = rng.int(4) === 0;
        },
        () => {
          sim.knobs.bindHang = rng.int(5) === 0;
        },
        () => {
          for (let i = 0; i < 3; i++) gpu.bar0.read32(v2 ? 0xb80f50 : 0xb80f60); // let binds settle
        },
      ];
      for (let i = 0; i < 120; i++) {
        try {
          ops[rng.int(ops.length)]();
        } catch (e) {
          if (!(e instanceof NovaError)) throw e;
        }
        assert.equal(sim.lost, null, `${device}: op ${i} lost the GPU`);
      }
      sim.knobs.fbFlushHang = false;
      sim.knobs.bindHang = false;
      for (let i = 0; i < 3; i++) gpu.bar0.read32(v2 ? 0xb80f50 : 0xb80f60);
      for (const m of mappings) {
        try {
          m.unmap();
        } catch { /* an unmap whose flush hung: retried by close */ }
      }
      for (const a of allocs) {
        try {
          a.free();
        } catch { /* pinned by a mapping left in place: close unmaps it */ }
      }
      try {
        gpu.close();
      } catch (e) {
        if (!(e instanceof NovaError)) throw e;
      }
      assert.equal(sim.lost, null, device);
      assert.deepEqual(sim.errors().filter((e) => e.kind === "gpu-lost"), [], device);
      assert.deepEqual(cardRegisters(gpu), before, `${device}: window and bind registers as found`);
      assert.equal(sim.bar1Mode, mode, device);
      // Everything the session took from the allocator went back (what close() unmapped, too).
      for (const a of allocs) if (a.live) a.free();
      assert.equal(gpu.mm.buddy.stats().free, free0, `${device}: the buddy is back to its start`);
    }
  }
});
