/**
 * Issue 20 ("Flat cost"), the 8 GiB step: the simulator's posted-write
 * snapshots grow by blocks and a bounded number stay for the next burst
 * (fresh memory made an 8 GiB remap cost up to 2x per page), and the PTE
 * fill of `Mapper.write` (its per-page loop runs on locals) still writes
 * every PTE right when runs cross page tables and addresses pass 4 GiB.
 */

import assert from "node:assert/strict";
import { openGpu } from "../mod.ts";
import { PostedWrites, SparseMemory } from "../hw/sim/vram.ts";
import { prng } from "../testing/prng.ts";

const PAGE = 4096;
const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** A word that differs per (page, generation). */
function word(page: number, gen: number): number {
  return (Math.imul(page + 1, 0x9e3779b1) ^ Math.imul(gen + 1, 0x85ebca6b)) >>> 0;
}

/** VRAM with `pages` pages written (generation 0): their chunks are touched. */
function written(pages: number): SparseMemory {
  const vram = new SparseMemory(GiB, { background: { seed: 7 } });
  for (let p = 0; p < pages; p++) {
    vram.write32(p * PAGE, word(p, 0));
    vram.write32(p * PAGE + PAGE - 4, word(p, 0));
  }
  return vram;
}

/** One posted burst: generation `gen` into every page (the CPU view changes at once). */
function burst(vram: SparseMemory, posted: PostedWrites, pages: number, gen: number): void {
  for (let p = 0; p < pages; p++) {
    posted.touch(p * PAGE);
    vram.write32(p * PAGE, word(p, gen));
    posted.touch(p * PAGE + PAGE - 4);
    vram.write32(p * PAGE + PAGE - 4, word(p, gen));
  }
}

Deno.test("flat8: posted snapshots span arena blocks; the GPU sees the old words until the drain", () => {
  const pages = 200; // more than 3 blocks of 64 snapshots
  const vram = written(pages);
  const posted = new PostedWrites(vram);
  burst(vram, posted, pages, 1);
  for (let p = 0; p < pages; p++) {
    assert.equal(posted.read32(p * PAGE), word(p, 0), `GPU view of page ${p} before the drain`);
    assert.equal(posted.read32(p * PAGE + PAGE - 4), word(p, 0));
    assert.equal(vram.read32(p * PAGE), word(p, 1), `CPU view of page ${p}`);
  }
  // Words no write reached read VRAM (which was never written there: its background).
  assert.equal(posted.read32(PAGE + 64), vram.background32(PAGE + 64));
  assert.equal(posted.retainedBytes, 4 * 64 * PAGE, "4 blocks of 64 snapshots");
  posted.drain();
  for (const p of [0, 63, 64, 199]) assert.equal(posted.read32(p * PAGE), word(p, 1));
  // Kept for the next burst: reused, and what they held before does not leak into it.
  assert.equal(posted.retainedBytes, 4 * 64 * PAGE);
  burst(vram, posted, pages, 2);
  for (let p = 0; p < pages; p++) {
    assert.equal(posted.read32(p * PAGE), word(p, 1), `page ${p}: the previous write, not gen 0`);
  }
  assert.equal(posted.retainedBytes, 4 * 64 * PAGE, "no new block");
  posted.drain();
  posted.trim();
  assert.equal(posted.retainedBytes, 0, "trim gives the kept blocks back");
  for (const p of [0, 100, 199]) assert.equal(posted.read32(p * PAGE), word(p, 2));
});

Deno.test("flat8: at most 16 MiB of snapshots stay after a drain; trim keeps what is in use", () => {
  const pages = 4096 + 130; // 67 blocks
  const vram = written(pages);
  const posted = new PostedWrites(vram);
  burst(vram, posted, pages, 1);
  assert.equal(posted.retainedBytes, 67 * 64 * PAGE);
  // In use: trim keeps every block a pending snapshot lives in.
  posted.trim();
  assert.equal(posted.retainedBytes, 67 * 64 * PAGE);
  assert.equal(posted.read32((pages - 1) * PAGE), word(pages - 1, 0));
  posted.drain();
  assert.equal(posted.retainedBytes, 16 * MiB, "capped at 4,096 snapshots");
  burst(vram, posted, 10, 2);
  posted.trim();
  assert.equal(posted.retainedBytes, 64 * PAGE, "one block for 10 pending snapshots");
  assert.equal(posted.read32(9 * PAGE), word(9, 1));
  posted.drain();
  assert.equal(posted.read32(9 * PAGE), word(9, 2));
});

Deno.test("flat8: an untouched chunk needs no snapshot (a new page table's chunk)", () => {
  const vram = new SparseMemory(GiB, { background: { seed: 3 } });
  const posted = new PostedWrites(vram);
  posted.touch(0x20000);
  vram.write32(0x20000, 5);
  posted.touch(0x21000); // same chunk, another page: still its background for the GPU
  vram.write32(0x21000, 6);
  assert.equal(posted.retainedBytes, 0);
  assert.equal(posted.read32(0x20000), vram.background32(0x20000));
  assert.equal(posted.read32(0x21000), vram.background32(0x21000));
  posted.drain();
  assert.equal(posted.read32(0x21000), 6);
});

Deno.test("flat8: runs that cross page tables, above 4 GiB, map every page (PTE fill on locals)", async () => {
  const gpu = await openGpu({ device: "sim:ga102" });
  // Frames above 4 GiB: PTE values past 2^32 (the first 64 MiB of a GiB block there).
  let pool = gpu.mm.buddy.alloc(GiB);
  while (pool.start < 4 * GiB) pool = gpu.mm.buddy.alloc(GiB);
  const base = pool.start / PAGE;
  const rnd = prng(0xf1a78);
  // Runs of 1..700 frames in a shuffled order of blocks: many runs continue across
  // the 512-entry page tables.
  const frames = 64 * MiB / PAGE;
  const starts: number[] = [];
  for (let f = 0; f < frames;) {
    const n = Math.min(frames - f, 1 + Math.floor(rnd() * 700));
    starts.push(f, n);
    f += n;
  }
  const order = [...Array(starts.length / 2).keys()];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const extents = order.map((k) => ({
    pa: (base + starts[2 * k]) * PAGE,
    size: starts[2 * k + 1] * PAGE,
  }));
  const pfns = extents.flatMap((e) =>
    Array.from({ length: e.size / PAGE }, (_, i) => e.pa / PAGE + i)
  );
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  for (
    const [how, m] of [
      ["mapExtents, 4 KiB pages", () => vmm.mapExtents(extents, { pageSize: PAGE })],
      ["mapPages, chosen sizes", () => vmm.mapPages(pfns, { writable: true })],
    ] as const
  ) {
    const mapping = m();
    for (let i = 0; i < pfns.length; i++) {
      const t = gpu.sim!.mmu.walk(vmm.pdb, mapping.va + BigInt(i * PAGE));
      assert.ok(!("fault" in t), `${how}: page ${i} faults`);
      assert.equal(t.pa, pfns[i] * PAGE, `${how}: page ${i}`);
    }
    mapping.unmap();
  }
  gpu.mm.destroyVmm(vmm);
});
