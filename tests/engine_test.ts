/**
 * The page-table engine: VA placement against a plain model, extents and the
 * cursor (shadow lookups agree with the hardware walk), and the
 * all-or-nothing error paths under injected faults — a PRAMIN write that
 * throws at the k-th access during map and unmap, a TLB flush that hangs in
 * bar1.map, a throwing unmap callback — plus "a failed map makes no MMIO
 * access".
 */

import assert from "node:assert/strict";
import { type Gpu, NovaError, openGpu, type Vmm } from "../mod.ts";
import { fail } from "../hw/errors.ts";
import { NV_PRAMIN, PRAMIN_SIZE } from "../hw/regs.ts";
import { type VaRange, VaRanges } from "../mm/va_ranges.ts";
import { prng } from "../testing/prng.ts";

const PAGE = 4096;
const MiB = 2 ** 20;

function simPa(gpu: Gpu, pdb: number, va: bigint): number | null {
  const r = gpu.sim!.mmu.walk(pdb, va);
  return "fault" in r ? null : Number(r.pa);
}

function code(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof NovaError) return e.code;
    throw e;
  }
}

/** Makes the k-th PRAMIN write from now on throw EIO (after it reached VRAM); returns a remover. */
function failPraminWrite(gpu: Gpu, k: number): () => void {
  let n = 0;
  gpu.bar0.tracer = (a) => {
    if (a.op === "w" && a.offset >= NV_PRAMIN && a.offset < NV_PRAMIN + PRAMIN_SIZE && ++n === k) {
      fail("EIO", `injected PRAMIN write fault at access ${k}`);
    }
  };
  return () => {
    gpu.bar0.tracer = undefined;
  };
}

/** PRAMIN writes `fn` makes. */
function praminWrites(gpu: Gpu, fn: () => void): number {
  let n = 0;
  gpu.bar0.tracer = (a) => {
    if (a.op === "w" && a.offset >= NV_PRAMIN && a.offset < NV_PRAMIN + PRAMIN_SIZE) n++;
  };
  try {
    fn();
  } finally {
    gpu.bar0.tracer = undefined;
  }
  return n;
}

function state(gpu: Gpu, vmm: Vmm) {
  return JSON.stringify({
    tables: vmm.tableCounts(),
    ranges: vmm.ranges.count,
    mappings: vmm.mappings().length,
    free: gpu.mm.buddy.stats().free,
  });
}

Deno.test("va ranges: placement, claims and lookups agree with a plain sorted list", () => {
  const rnd = prng(0x7a11);
  const size = 1n << 30n;
  const tree = new VaRanges(size);
  let model: { start: bigint; end: bigint }[] = [];
  const modelFree = (len: bigint, align: bigint, phase: bigint): bigint | null => {
    const up = (x: bigint) => x + ((phase - (x % align)) % align + align) % align;
    let cursor = up(0n);
    for (const r of [...model, { start: size, end: size }]) {
      if (cursor + len <= r.start) return cursor;
      if (r.end > cursor) cursor = up(r.end);
    }
    return null;
  };
  const live: VaRange[] = [];
  for (let op = 0; op < 4000; op++) {
    const r = rnd();
    if (r < 0.55 || live.length === 0) {
      const len = BigInt((1 + Math.floor(rnd() * 64)) * PAGE);
      const align = BigInt(PAGE * 2 ** Math.floor(rnd() * 6));
      const phase = rnd() < 0.3 ? BigInt(PAGE * Math.floor(rnd() * Number(align / 4096n))) : 0n;
      const want = modelFree(len, align, phase);
      assert.equal(tree.findFree(len, align, 0n, size, phase), want, `op ${op}`);
      if (want === null) continue;
      live.push(tree.claim(want, len, "m"));
      model.push({ start: want, end: want + len });
      model.sort((a, b) => (a.start < b.start ? -1 : 1));
    } else if (r < 0.65) {
      const start = BigInt(Math.floor(rnd() * Number(size / 4096n))) * 4096n;
      const len = BigInt(PAGE * (1 + Math.floor(rnd() * 8)));
      const overlaps = start + len > size ||
        model.some((m) => m.start < start + len && start < m.end);
      const got = code(() => live.push(tree.claim(start, len, "fixed")));
      assert.equal(got, overlaps ? (start + len > size ? "ENOSPC" : "EBUSY") : null, `op ${op}`);
      if (!overlaps) {
        model.push({ start, end: start + len });
        model.sort((a, b) => (a.start < b.start ? -1 : 1));
      }
    } else {
      const i = Math.floor(rnd() * live.length);
      const [gone] = live.splice(i, 1);
      tree.release(gone);
      model = model.filter((m) => m.start !== gone.start);
    }
    const probe = BigInt(Math.floor(rnd() * Number(size / 4096n))) * 4096n;
    const hit = model.find((m) => m.start <= probe && probe < m.end);
    assert.equal(tree.find(probe)?.start, hit?.start, `find at op ${op}`);
    assert.equal(tree.count, model.length);
  }
  assert.deepEqual(tree.list().map((r) => r.start), model.map((m) => m.start));
  assert.equal(
    code(() => tree.release({ start: 0n, end: 4096n, owner: "never" })),
    "EINVAL",
  );
});

Deno.test("extents: a 1 GiB range is a few PTE runs, physicalAddress and extents follow them", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const a = gpu.mm.buddy.alloc(2 ** 30, { align: 2 ** 29 });
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const m = vmm.mapRange(a.start, 2 ** 30 - 3 * PAGE);
  assert.deepEqual(m.extents, [{ pa: a.start, size: 2 ** 30 - 3 * PAGE }]);
  // 512M + 255×2M + 15×64K + 13×4K: the largest pages, in order.
  assert.deepEqual(m.pages, { "512M": 1, "2M": 255, "64K": 31, "4K": 13 });
  for (const off of [0, 2 ** 29, 2 ** 29 + 5 * 2 ** 21 + 17, 2 ** 30 - 3 * PAGE - 1]) {
    assert.equal(m.physicalAddress(off), a.start + off);
    const va = m.va + BigInt(off);
    assert.equal(simPa(gpu, vmm.pdb, va), a.start + off);
    const t = vmm.translate(va)!;
    assert.equal(vmm.lookup(va)?.pageSize, t.pageSize);
  }
  m.unmap();
  const b = gpu.mm.buddy.alloc(8 * PAGE);
  const scattered = [7, 3, 4, 5, 0, 1].map((i) => b.start / PAGE + i);
  const s = vmm.mapPages(scattered, { writable: true });
  assert.deepEqual(s.extents.map((e) => e.size / PAGE), [1, 3, 2]);
  for (let i = 0; i < scattered.length; i++) {
    assert.equal(s.physicalAddress(i * PAGE + 8), scattered[i] * PAGE + 8);
    assert.equal(vmm.lookup(s.va + BigInt(i * PAGE))?.pageSize, PAGE);
  }
  assert.equal(vmm.lookup(s.va + BigInt(scattered.length * PAGE)), null);
  const e = vmm.mapExtents([{ pa: b.start, size: PAGE }, { pa: b.start + 4 * PAGE, size: PAGE }]);
  assert.equal(simPa(gpu, vmm.pdb, e.va + BigInt(PAGE)), b.start + 4 * PAGE);
  assert.equal(code(() => vmm.mapExtents([{ pa: 1, size: PAGE }])), "EINVAL");
  assert.equal(code(() => vmm.mapExtents([])), "EINVAL");
  gpu.close();
});

Deno.test("fault: a PRAMIN write failing at any access in a map leaves nothing behind", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
    const keep = gpu.mm.buddy.alloc(PAGE);
    vmm.mapPages([keep.start / PAGE], { va: 0n }); // keeps the directories at VA 0 alive
    const a = gpu.mm.buddy.alloc(4 * MiB);
    // Scattered frames across two 2 MiB blocks: new tables, links into existing ones, PTEs.
    const pfns: number[] = [];
    for (let i = 0; i < 600; i++) pfns.push(a.start / PAGE + ((i * 7) % 1024));
    const before = state(gpu, vmm);
    const va = 0x7fe00000n;
    let made = vmm.mapPages(pfns, { va }); // JIT and placement check
    made.unmap();
    const mapWrites = praminWrites(gpu, () => made = vmm.mapPages(pfns, { va }));
    made.unmap();
    assert.equal(state(gpu, vmm), before);
    const w = mapWrites;
    for (const k of [1, 2, 3, 17, w >> 2, w >> 1, (3 * w) >> 2, w - 2, w - 1, w]) {
      const remove = failPraminWrite(gpu, k);
      let err: string | null;
      try {
        err = code(() => vmm.mapPages(pfns, { va }));
      } finally {
        remove();
      }
      assert.equal(err, "EIO", `${device} k=${k}`);
      assert.equal(state(gpu, vmm), before, `${device} k=${k}: VA, tables or pages leaked`);
      for (const i of [0, 1, 599]) {
        assert.equal(
          simPa(gpu, vmm.pdb, va + BigInt(i * PAGE)),
          null,
          `${device} k=${k} page ${i}`,
        );
      }
      assert.equal(simPa(gpu, vmm.pdb, 0n), keep.start, "the anchor still maps");
      // The space still works afterwards.
      const m = vmm.mapPages(pfns, { va });
      assert.equal(simPa(gpu, vmm.pdb, va + BigInt(5 * PAGE)), pfns[5] * PAGE);
      m.unmap();
      assert.equal(state(gpu, vmm), before);
    }
    const free = gpu.mm.buddy.stats().free;
    gpu.mm.destroyVmm(vmm);
    assert.ok(gpu.mm.buddy.stats().free > free, "destroy() freed the tables");
    gpu.close();
  }
});

Deno.test("fault: a PRAMIN write failing during unmap completes at the next flush", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const start = gpu.mm.buddy.stats().free;
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(2 * MiB);
  const pfns = Array.from({ length: 300 }, (_, i) => a.start / PAGE + ((i * 5) % 512));
  const m = vmm.mapPages(pfns);
  let ran = 0;
  m.whenUnmapped(() => ran++);
  const remove = failPraminWrite(gpu, 1);
  try {
    assert.equal(code(() => m.unmap()), "EIO");
  } finally {
    remove();
  }
  assert.equal(m.live, false, "the bookkeeping completed");
  assert.equal(vmm.ranges.count, 0);
  assert.equal(ran, 0, "callbacks wait for a completed flush");
  assert.equal(code(() => a.free()), null);
  // The next flush writes what VRAM lacks first: destroy settles it.
  gpu.mm.destroyVmm(vmm);
  assert.equal(ran, 1);
  assert.equal(simPa(gpu, vmm.pdb, m.va), null);
  assert.equal(gpu.mm.buddy.stats().free, start, "every table and the root went back");
  gpu.close();
});

Deno.test("fault: a throwing unmap callback runs after the flush and the bookkeeping", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const before = state(gpu, vmm);
  const a = gpu.mm.buddy.alloc(PAGE);
  const m = vmm.mapPages([a.start / PAGE]);
  const order: string[] = [];
  m.whenUnmapped(() => {
    order.push(`first ${simPa(gpu, vmm.pdb, m.va)}`);
    throw new Error("boom");
  });
  m.whenUnmapped(() => order.push("second"));
  const flushes = gpu.sim!.flushes.length;
  assert.throws(() => m.unmap(), /boom/);
  assert.deepEqual(order, ["first null", "second"], "both ran, after the PTE was gone");
  assert.equal(gpu.sim!.flushes.length, flushes + 1, "the TLB was flushed");
  assert.equal(m.live, false);
  a.free();
  assert.equal(
    state(gpu, vmm),
    JSON.stringify({ ...JSON.parse(before), free: JSON.parse(state(gpu, vmm)).free }),
  );
  assert.equal(vmm.ranges.count, 0);
  gpu.close();
});

Deno.test("fault: a TLB flush that hangs in bar1.map keeps the allocation pinned under its PTEs", async () => {
  const gpu = await openGpu({ device: "sim:gh100" });
  const start = gpu.mm.buddy.stats().free;
  gpu.bar1.map(gpu.mm.buddy.alloc(PAGE)).unmap(); // brings BAR1 up
  const a = gpu.mm.buddy.alloc(64 * 1024);
  gpu.sim!.knobs.tlbHang = true;
  assert.equal(code(() => gpu.bar1.map(a)), "ETIMEDOUT");
  gpu.sim!.knobs.tlbHang = false;
  const left = gpu.bar1.vmm.mappings();
  assert.equal(left.length, 1, "the PTEs are in VRAM: the mapping stays reachable");
  assert.equal(code(() => a.free()), "EBUSY", "pinned while BAR1 points at it");
  left[0].unmap();
  a.free();
  gpu.close();
  assert.ok(start > 0);
});

Deno.test("fault: gpu.close() succeeds after a map whose flush hung", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const a = gpu.mm.buddy.alloc(PAGE);
  gpu.sim!.knobs.fbFlushHang = true;
  assert.equal(code(() => vmm.mapPages([a.start / PAGE])), "ETIMEDOUT");
  gpu.sim!.knobs.fbFlushHang = false;
  assert.equal(vmm.mappings().length, 1);
  gpu.close();
  assert.equal(vmm.destroyed, true);
});

Deno.test("a failed map makes no MMIO access and changes nothing", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    const gpu = await openGpu({ device });
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
    const a = gpu.mm.buddy.alloc(4 * MiB, { align: 2 * MiB });
    const m = vmm.mapPages([a.start / PAGE], { va: 0x200000n });
    gpu.bar1.map([a.start / PAGE]).unmap(); // BAR1 up
    const before = state(gpu, vmm);
    gpu.resetStats();
    const cases: [string, () => unknown][] = [
      ["EINVAL", () => vmm.mapPages([])],
      ["EINVAL", () => vmm.mapPages([2 ** 40])],
      ["EINVAL", () => vmm.mapPages([a.start / PAGE + 1], { pageSize: 2 * MiB })],
      ["EINVAL", () => vmm.mapRange(a.start + 1, PAGE)],
      ["EINVAL", () => vmm.mapPages([a.start / PAGE], { writeable: true } as never)],
      ["EBUSY", () => vmm.mapPages([a.start / PAGE], { va: 0x200000n })],
      ["ENOSPC", () => vmm.mapRange(a.start, 4 * MiB, { va: (1n << 40n) - 4096n })],
      ["EINVAL", () => gpu.bar1.map(a, { pageSize: 3 })],
      ["ENOSPC", () => gpu.bar1.map(a, { va: BigInt(gpu.bar1.size) - 4096n })],
    ];
    for (const [want, fn] of cases) assert.equal(code(fn), want, `${device} ${fn}`);
    // Out of table pages: the allocator runs dry half way through a new path.
    const hog = [];
    for (let size = 2 ** 36; size >= PAGE; size /= 2) {
      for (;;) {
        try {
          hog.push(gpu.mm.buddy.alloc(size));
        } catch {
          break;
        }
      }
    }
    // Give back one block and take all of it again but one page: not enough for a new path.
    const last = hog.pop()!;
    last.free();
    for (let size = last.size / 2; size >= PAGE; size /= 2) hog.push(gpu.mm.buddy.alloc(size));
    assert.equal(gpu.mm.buddy.stats().free, PAGE);
    const free = gpu.mm.buddy.stats().free;
    assert.equal(code(() => vmm.mapPages([a.start / PAGE], { va: 1n << 39n })), "ENOMEM");
    assert.equal(gpu.mm.buddy.stats().free, free);
    const s = gpu.stats();
    assert.equal(s.mmioReads + s.mmioWrites, 0, `${device}: ${JSON.stringify(s)}`);
    for (const h of hog) h.free();
    assert.equal(state(gpu, vmm), before);
    m.unmap();
    gpu.close();
  }
});
