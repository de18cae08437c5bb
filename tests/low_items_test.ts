/**
 * The Low items of issue 15, one reproducer each: a bad argument is a
 * NovaError naming it, never a raw JavaScript error or a silent acceptance
 * (Tlb options, TraceWriter headers, whenUnmapped callbacks, vramPte
 * booleans, freeBlocks / dump / pin arguments); a comment never reads as a
 * trace's footer; `BuddyAllocator.stats()` costs the same with one free run
 * or a hundred thousand. (The unwritable lock directory is in
 * lock_race_test.ts.)
 */

import assert from "node:assert/strict";
import { BuddyAllocator } from "../mm/buddy.ts";
import { Tlb } from "../mm/tlb.ts";
import { parseTrace, replayTraceFile, TraceWriter } from "../hw/trace.ts";
import { createSimGpu } from "../hw/sim/gpu.ts";
import { mmu, openGpu } from "../mod.ts";
import { throwsNova } from "./util.ts";

Deno.test("low: a bad Tlb option is EINVAL naming it, not a TypeError at the first flush", async () => {
  using gpu = await openGpu();
  const before = gpu.stats();
  throwsNova(() => new Tlb(gpu.bar0, { vramSize: Symbol("x") as never }), "EINVAL", "Symbol(x)");
  throwsNova(() => new Tlb(gpu.bar0, { vramSize: "0x1000" as never }), "EINVAL", '"0x1000"');
  for (const bad of [0, -4096, 0x1001, 2 ** 41, NaN, 1.5]) {
    throwsNova(() => new Tlb(gpu.bar0, { vramSize: bad }), "EINVAL", "vramSize", "VRAM size");
  }
  throwsNova(() => new Tlb(gpu.bar0, { vramsize: 1 << 30 } as never), "EINVAL", '"vramsize"');
  throwsNova(() => new Tlb(gpu.bar0, { timeoutMs: "5" as never }), "EINVAL", '"5"');
  throwsNova(() => new Tlb(gpu.bar0, { family: 5 as never }), "EINVAL", "0x5");
  throwsNova(() => new Tlb(gpu.bar0, null as never), "EINVAL", "must be an object, not null");
  throwsNova(() => new Tlb(null as never), "EINVAL", "Tlb bar0");
  assert.deepEqual(gpu.stats(), before, "no MMIO access");
  // The good ones still work.
  new Tlb(gpu.bar0, { vramSize: gpu.vram.size, timeoutMs: 100 }).flush("all");
});

Deno.test("low: new TraceWriter(path, null) is EINVAL and creates nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.trace`;
    throwsNova(() => new TraceWriter(path, null as never), "EINVAL", "trace header null");
    throwsNova(() => new TraceWriter(path, {} as never), "EINVAL", "device undefined");
    throwsNova(
      () => new TraceWriter(path, { device: "sim", chip: 5 } as never),
      "EINVAL",
      '"chip" value 0x5 is not a string',
    );
    throwsNova(() => new TraceWriter(5 as never, { device: "sim" }), "EINVAL", "trace path 0x5");
    throwsNova(() => new TraceWriter("", { device: "sim" }), "EINVAL", 'trace path ""');
    throwsNova(
      () => new TraceWriter(path, { device: "sim" }, { maxBytes: 4096n as never }),
      "EINVAL",
      "maxBytes",
    );
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "no file made");
    using w = new TraceWriter(path, { device: "sim" });
    throwsNova(() => w.comment(5 as never), "EINVAL", "trace comment 0x5");
    throwsNova(() => w.record(null as never), "EINVAL", "null");
    throwsNova(
      () => w.record({ bar: "bar2", op: "r", width: 4, offset: 0, value: 0 } as never),
      "EINVAL",
      '"bar2"',
    );
    throwsNova(
      () => w.record({ bar: "bar0", op: "r", width: 1, offset: 0, value: 0x100 }),
      "EINVAL",
      "0x100",
    );
    assert.equal(w.accesses, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("low: a comment never reads as the footer; replay and parse keep its text", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.trace`;
    const w = new TraceWriter(path, { device: "sim:ga102" });
    w.comment("end accesses=0");
    const boot0 = createSimGpu({ profile: "ga102" }).bar0.read32(0);
    w.record({ bar: "bar0", op: "r", width: 4, offset: 0, value: boot0 });
    w.comment("end accesses=1 limit=4096");
    w.comment("a\rend accesses=1\r\nb");
    w.close();
    const text = Deno.readTextFileSync(path);
    const t = parseTrace(text);
    assert.deepEqual(t.footer, { accesses: 1, limit: null });
    assert.equal(t.entries.length, 1);
    assert.deepEqual([...t.comments.values()], [
      "end accesses=0",
      "end accesses=1 limit=4096",
      "a",
      "end accesses=1",
      "b",
    ]);
    const r = replayTraceFile(path, () => createSimGpu({ profile: "ga102" }));
    assert.deepEqual([r.reads, r.divergence], [1, undefined]);
    assert.deepEqual(r.footer, { accesses: 1, limit: null });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("low: whenUnmapped(non-function) is EINVAL, stores nothing; unmap and close still work", async () => {
  const gpu = await openGpu();
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 30n, name: "cb" });
  const a = gpu.mm.buddy.alloc(65536);
  const m = vmm.mapPages([a.start / 4096], { writable: true });
  for (const bad of [5, "fn", null, undefined, {}, Symbol("s")]) {
    throwsNova(() => m.whenUnmapped(bad as never), "EINVAL", "whenUnmapped takes a function");
  }
  let ran = 0;
  m.whenUnmapped(() => ran++);
  m.unmap();
  assert.equal(ran, 1);
  assert.equal(m.live, false);
  // After unmap: still checked (not called, not thrown raw).
  throwsNova(() => m.whenUnmapped(7 as never), "EINVAL", "0x7");
  const m2 = vmm.mapPages([a.start / 4096], { writable: false });
  throwsNova(() => m2.whenUnmapped("x" as never), "EINVAL", '"x"');
  gpu.close(); // unmaps m2 and runs its callbacks: nothing bad stored
  assert.equal(m2.live, false);
});

Deno.test('low: vramPte(pa, { writable: "false" }) is EINVAL, never a writable entry', () => {
  for (const codec of [mmu.v2, mmu.v3]) {
    for (const bad of ["false", 0, 1, null, undefined]) {
      throwsNova(
        () => codec.vramPte(0x1000, { writable: bad as never }),
        "EINVAL",
        "vramPte options.writable",
      );
    }
    throwsNova(() => codec.vramPte(0x1000, {} as never), "EINVAL", "writable");
    throwsNova(() => codec.vramPte(0x1000, undefined as never), "EINVAL", "writable");
    throwsNova(
      () => codec.vramPte(0x1000, { writable: true, kind: "1" as never }),
      "EINVAL",
      'kind must be a number, not "1"',
    );
    throwsNova(
      () => codec.vramPte(0x1000, { writable: true, writeable: false } as never),
      "EINVAL",
      '"writeable"',
    );
    assert.equal(codec.pteInfo(codec.vramPte(0x1000, { writable: false })).writable, false);
    assert.equal(codec.pteInfo(codec.vramPte(0x1000, { writable: true })).writable, true);
    throwsNova(() => codec.vramDualPde({ big: "0x1000" } as never), "EINVAL", '"0x1000"');
    throwsNova(() => codec.encodePte({ valid: "true" } as never), "EINVAL", '"true"');
  }
});

Deno.test("low: freeBlocks, dump({ maxPtes }) and pin validate their arguments", async () => {
  using gpu = await openGpu();
  const buddy = gpu.mm.buddy;
  const all = buddy.freeBlocks();
  assert.deepEqual(buddy.freeBlocks({}), all);
  for (
    const [bad, what] of [
      [5, "freeBlocks options 0x5"],
      [null, "freeBlocks options null"],
      [{ bogus: 1 }, '"bogus"'],
      [{ range: 5 }, "freeBlocks range 0x5"],
      [{ range: {} }, "range start undefined"],
      [{ range: { start: -1, end: 0 } }, "range start -1"],
      [{ range: { start: 0, end: "0x1000" } }, 'range end "0x1000"'],
      [{ range: { start: 0x2000, end: 0x1000 } }, "ends before it starts"],
      [{ range: { start: 0, end: 0x1000, step: 1 } }, '"step"'],
    ] as const
  ) {
    throwsNova(() => buddy.freeBlocks(bad as never), "EINVAL", what);
  }
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 30n, name: "d" });
  for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53, 2 ** 25]) {
    throwsNova(() => vmm.dump({ maxPtes: bad }), "EINVAL", "dump maxPtes");
  }
  throwsNova(() => vmm.dump({ maxPtes: "5" as never }), "EINVAL", '"5"');
  assert.equal(vmm.dump({ maxPtes: 0 }).level, "PDB");
  const a = buddy.alloc(4096);
  for (const bad of [5, null, undefined, {}, ""]) {
    throwsNova(() => a.pin(bad as never), "EINVAL", "pin takes a non-empty string");
  }
  assert.deepEqual(a.users, [], "nothing pinned by a refused call");
  a.free();
});

/** Free blocks per order recomputed from the block list (what stats() once walked). */
function ordersOf(buddy: BuddyAllocator): Record<number, number> {
  const out: Record<number, number> = {};
  for (const b of buddy.freeBlocks()) {
    const k = Math.log2(b.size / buddy.minChunk);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

Deno.test("low: BuddyAllocator.stats() keeps per-order counts: O(1) in free runs, same answers", () => {
  // Same answers under random allocs and frees, odd region bounds and scattered allocations.
  let seed = 0x1234567;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const b = new BuddyAllocator({ start: 0x3000, size: 0x3fd000 * 16 });
  const live = [];
  for (let i = 0; i < 3000; i++) {
    if (live.length === 0 || rnd() < 0.55) {
      try {
        const size = 4096 * (1 + Math.floor(rnd() * 40));
        live.push(b.alloc(size, { contiguous: rnd() < 0.8 }));
      } catch {
        // ENOMEM
      }
    } else {
      live.splice(Math.floor(rnd() * live.length), 1)[0].free();
    }
    if (i % 97 === 0) assert.deepEqual(b.stats().blocksPerOrder, ordersOf(b), `op ${i}`);
  }
  for (const a of live) a.free();
  assert.deepEqual(b.stats().blocksPerOrder, ordersOf(b));

  // 100,000 free runs: stats() does not walk them (it took tens of ms; 944 ms at 500k).
  const N = 200_000;
  const big = new BuddyAllocator({ start: 0, size: N * 4096 });
  const as = [];
  for (let i = 0; i < N; i++) as.push(big.alloc(4096));
  for (let i = 0; i < N; i += 2) as[i].free();
  const t0 = performance.now();
  let s = big.stats();
  for (let i = 0; i < 99; i++) s = big.stats();
  const ms = (performance.now() - t0) / 100;
  assert.equal(s.freeExtents, N / 2);
  assert.deepEqual(s.blocksPerOrder, { 0: N / 2 });
  assert.ok(ms < 1, `stats() took ${ms.toFixed(3)} ms with ${N / 2} free runs`);
});
