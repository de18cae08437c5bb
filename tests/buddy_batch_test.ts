/**
 * `BuddyAllocator.freeMany`: the same state as freeing one by one (free
 * blocks, stats, live allocations, and the placements that follow), all
 * checked before anything is freed, and the Vmm's rollback and teardown
 * paths giving every table back through it.
 */

import assert from "node:assert/strict";
import { type Allocation, type Block, BuddyAllocator, type BuddyStats } from "../mm/buddy.ts";
import { openGpu } from "../mod.ts";
import { setInterruptWord } from "../hw/mmio.ts";
import { setWorkProgress } from "../mm/pagetable/tree.ts";
import { prng } from "../testing/prng.ts";
import { throwsNova } from "./util.ts";

const K = 1024;
const M = 1024 * K;
const PAGE = 4096;

function snapshot(b: BuddyAllocator): { stats: BuddyStats; blocks: Block[]; live: string[] } {
  return {
    stats: b.stats(),
    blocks: b.freeBlocks(),
    live: b.allocations().map((a) => `${a.start}+${a.size}`),
  };
}

/** Two allocators driven by the same random operations: twins while they agree. */
function twins(seed: number, ops: number): {
  a: BuddyAllocator;
  b: BuddyAllocator;
  liveA: Allocation[];
  liveB: Allocation[];
  rnd: () => number;
} {
  const rnd = prng(seed);
  const size = (8 + Math.floor(rnd() * 56)) * M + Math.floor(rnd() * 64) * 4 * K;
  const a = new BuddyAllocator({ start: 0x200000, size });
  const b = new BuddyAllocator({ start: 0x200000, size });
  const liveA: Allocation[] = [];
  const liveB: Allocation[] = [];
  for (let i = 0; i < ops; i++) {
    if (liveA.length > 0 && rnd() < 0.3) {
      const j = Math.floor(rnd() * liveA.length);
      liveA.splice(j, 1)[0].free();
      liveB.splice(j, 1)[0].free();
      continue;
    }
    const bytes = 4 * K * (1 + Math.floor(rnd() * (rnd() < 0.9 ? 4 : 300)));
    const options = rnd() < 0.2 ? { contiguous: false } : rnd() < 0.1 ? { align: 64 * K } : {};
    let x: Allocation | null = null;
    try {
      x = a.alloc(bytes, options);
    } catch {
      // ENOMEM: the twin must fail too
    }
    let y: Allocation | null = null;
    try {
      y = b.alloc(bytes, options);
    } catch {
      // as above
    }
    assert.equal(x?.start, y?.start, `op ${i}: twins place alike`);
    if (x !== null && y !== null) {
      liveA.push(x);
      liveB.push(y);
    }
  }
  return { a, b, liveA, liveB, rnd };
}

Deno.test("buddy batch: freeMany leaves exactly what freeing one by one leaves (property)", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const { a, b, liveA, liveB, rnd } = twins(seed * 7919, 200 + (seed % 7) * 60);
    // A random subset, in random order (sometimes all, sometimes in address order).
    const picks: number[] = [];
    for (let i = 0; i < liveA.length; i++) if (seed % 5 === 0 || rnd() < 0.6) picks.push(i);
    if (seed % 3 === 0) picks.sort((x, y) => liveA[x].start - liveA[y].start);
    else {
      for (let i = picks.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [picks[i], picks[j]] = [picks[j], picks[i]];
      }
    }
    for (const i of picks) liveA[i].free();
    b.freeMany(picks.map((i) => liveB[i]));
    assert.deepEqual(snapshot(b), snapshot(a), `seed ${seed}: same state`);
    for (const i of picks) assert.equal(liveB[i].live, false);
    // The summaries behind placement agree too: the next allocations land alike.
    for (let k = 0; k < 40; k++) {
      const bytes = 4 * K * (1 + Math.floor(rnd() * 64));
      const align = rnd() < 0.3 ? 2 * M : undefined;
      const opts = align === undefined ? {} : { align };
      let x: number | string;
      let y: number | string;
      try {
        x = a.alloc(bytes, opts).start;
      } catch (e) {
        x = String(e);
      }
      try {
        y = b.alloc(bytes, opts).start;
      } catch (e) {
        y = String(e);
      }
      assert.equal(y, x, `seed ${seed}: allocation ${k} after the batch`);
    }
    assert.deepEqual(snapshot(b), snapshot(a));
  }
});

Deno.test("buddy batch: neighbours coalesce into one run; the region comes back whole", () => {
  const b = new BuddyAllocator({ start: 0, size: 64 * M });
  const initial = snapshot(b);
  const keep = b.alloc(4 * K); // at 0: the tables after it are neighbours of each other
  const tables = Array.from({ length: 4096 }, () => b.alloc(4 * K));
  const scattered = b.alloc(12 * M, { contiguous: false });
  assert.equal(b.stats().liveAllocations, 4098);
  b.freeMany([...tables].reverse()); // descending: the sort path
  assert.equal(b.stats().liveAllocations, 2);
  assert.deepEqual(b.freeBlocks({ range: { start: 4 * K, end: 16 * M + 4 * K } })[0], {
    start: 4 * K,
    size: 4 * K,
  });
  b.freeMany([scattered, keep]);
  assert.deepEqual(snapshot(b), initial);
  b.freeMany([]); // nothing to do
  assert.deepEqual(snapshot(b), initial);
});

Deno.test("buddy batch: a bad entry fails naming its index and frees nothing", () => {
  const b = new BuddyAllocator({ start: 0x200000, size: 16 * M });
  const other = new BuddyAllocator({ start: 0x200000, size: 16 * M });
  const xs = Array.from({ length: 8 }, () => b.alloc(64 * K));
  const freed = b.alloc(4 * K);
  freed.free();
  const before = snapshot(b);
  const unchanged = (what: string) => {
    assert.deepEqual(snapshot(b), before, `${what}: nothing changed`);
    assert.ok(xs.every((x) => x.live), `${what}: all still live`);
  };
  throwsNova(() => b.freeMany([xs[0], freed, xs[1]]), "EINVAL", "allocations[1]", "double free");
  unchanged("a freed one");
  throwsNova(
    () => b.freeMany([xs[0], xs[1], other.alloc(4 * K)]),
    "EINVAL",
    "allocations[2]",
    "belongs to",
  );
  unchanged("a foreign one");
  throwsNova(
    () => b.freeMany([xs[2], { start: 0 } as unknown as Allocation]),
    "EINVAL",
    "allocations[1]",
    "is not an Allocation",
  );
  unchanged("a forged one");
  throwsNova(() => b.freeMany([xs[3], xs[4], xs[3]]), "EINVAL", "allocations[2]", "listed twice");
  unchanged("one listed twice");
  const release = xs[5].pin("a BAR1 mapping");
  throwsNova(() => b.freeMany([xs[4], xs[5]]), "EBUSY", "allocations[1]", "a BAR1 mapping");
  unchanged("a pinned one");
  release();
  throwsNova(() => b.freeMany(xs[0] as unknown as Allocation[]), "EINVAL", "array");
  unchanged("not an array");
  b.freeMany(xs);
  assert.equal(b.stats().free, 16 * M);
});

Deno.test("buddy batch: an interrupted 1 GiB map and a cancelled prepare give every table back", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const buddy = gpu.mm.buddy;
  const pool = buddy.alloc(1024 * M);
  const n = 1024 * M / PAGE;
  const pfns = Array.from({ length: n }, (_, i) => pool.start / PAGE + ((i * 40503) % n));
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const before = snapshot(buddy);
  const word = new Int32Array(new SharedArrayBuffer(4));
  setInterruptWord(word);
  try {
    // Ctrl-C while the PTEs are written: hundreds of tables exist by then.
    setWorkProgress((done, total, what) => {
      if (what === "PTEs" && done > total / 2) Atomics.store(word, 0, 1);
    });
    throwsNova(() => vmm.mapPages(pfns, { writable: true }), "EINTR");
  } finally {
    setWorkProgress(null);
    setInterruptWord(null);
  }
  assert.deepEqual(snapshot(buddy), before, "the rollback freed every table");
  const p = vmm.prepareMap(pfns, { writable: true });
  assert.ok(buddy.stats().liveAllocations > before.stats.liveAllocations + 500, "tables exist");
  vmm.cancelMap(p);
  assert.deepEqual(snapshot(buddy), before, "the cancel freed every table");
  const m = vmm.mapPages(pfns, { writable: true });
  m.unmap();
  assert.deepEqual(snapshot(buddy), before, "the unmap's deferred tables are freed");
  gpu.mm.destroyVmm(vmm);
});

Deno.test("buddy batch: a pinned table fails the unmap's batch; the other tables are freed", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const buddy = gpu.mm.buddy;
  const pool = buddy.alloc(64 * M);
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n, name: "pinned" });
  const pfns = Array.from({ length: 4096 }, (_, i) => pool.start / PAGE + ((i * 7) % 16384));
  const ours = () => buddy.allocations().filter((a) => a.label?.endsWith("of pinned"));
  const kept = ours().length; // the root (and nothing else) outlives a mapping
  const m = vmm.mapPages(pfns, { writable: true });
  const tables = ours();
  assert.ok(tables.length >= kept + 8, `${tables.length} tables`);
  const pinned = tables[tables.length - 1];
  const release = pinned.pin("a test");
  throwsNova(() => m.unmap(), "EBUSY", "a test");
  assert.equal(pinned.live, true);
  assert.ok(ours().includes(pinned));
  assert.equal(ours().length, kept + 1, "every other table was freed");
  release();
  pinned.free();
  assert.equal(ours().length, kept);
});
