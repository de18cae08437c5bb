/**
 * The map path of issue 20 ("Flat cost"): frame lists read in place
 * (PfnExtents), PTE runs as one or two 32-bit words each (PteRuns), the
 * page-size choice against the previous per-position algorithm on random
 * extents (a differential test, huge slots taken at random), the PTE in
 * number form against `vramPte`, and mappings that keep their stretches, not
 * a frame per page (physicalAddress and extents read back from the PTEs).
 */

import assert from "node:assert/strict";
import { hex, type MmuFormat, openGpu } from "../mod.ts";
import { fail } from "../hw/errors.ts";
import {
  choosePages,
  type Extent,
  ExtentList,
  PageStretches,
  PfnExtents,
  PteRuns,
  sizeName,
} from "../mm/pagetable/extents.ts";
import { vramPteLine } from "../mm/pagetable/codec.ts";
import { v2, v3 } from "../mm/pagetable/mod.ts";
import { mmuFormat } from "../mm/pagetable/format.ts";
import {
  BLOCK,
  recycleTable,
  setWorkProgress,
  ShadowTree,
  vaModulo,
} from "../mm/pagetable/tree.ts";
import { setInterruptWord } from "../hw/mmio.ts";
import { Mapper, type TableHold } from "../mm/pagetable/mapper.ts";
import { prng } from "../testing/prng.ts";
import { throwsNova } from "./util.ts";

const PAGE = 4096;
const MiB = 2 ** 20;

/** The runs as `[offset, pageSize, count, pa]`, read back through the stretches and a cursor. */
function runList(runs: PteRuns): number[][] {
  const out: number[][] = [];
  const c = runs.cursor();
  const s = runs.stretches;
  for (let i = 0; i < s.length; i++) {
    let offset = s.offset(i);
    let pages = 0;
    for (let r = 0; r < s.runs(i); r++) {
      assert.ok(c.next(), "the cursor ends before the stretches");
      out.push([offset, s.pageSize(i), c.count, c.pa]);
      offset += c.count * s.pageSize(i);
      pages += c.count;
    }
    assert.equal(pages, s.count(i), `stretch ${i} pages`);
  }
  assert.equal(c.next(), false, "runs left after the stretches");
  return out;
}

Deno.test("map cost: PfnExtents counts extents and one-frame extents, reads the list in place", () => {
  const e = new PfnExtents([5, 6, 7, 9, 20, 21, 3], 2 ** 30);
  assert.equal(e.length, 4);
  assert.equal(e.singles, 2);
  assert.equal(e.bytes, 7 * PAGE);
  assert.equal(e.firstPa, 5 * PAGE);
  assert.equal(e.firstSize, 3 * PAGE);
  const seen: number[][] = [];
  e.forEach((pa, size) => seen.push([pa / PAGE, size / PAGE]));
  assert.deepEqual(seen, [[5, 3], [9, 1], [20, 2], [3, 1]]);
  // Typed arrays are read in place too.
  const t = new PfnExtents(new Uint32Array([1, 2, 4]), 2 ** 30);
  assert.deepEqual([t.length, t.singles, t.firstSize], [2, 1, 2 * PAGE]);
});

Deno.test("map cost: PfnExtents refuses bad frames naming the first, and a list that changed", () => {
  throwsNova(() => new PfnExtents([1, 2, 2 ** 18], 2 ** 30), "EINVAL", "pfns[2] = 0x40000");
  throwsNova(() => new PfnExtents([1, 1.5], 2 ** 30), "EINVAL", "pfns[1] = 1.5");
  throwsNova(() => new PfnExtents([1, -1], 2 ** 30), "EINVAL", "pfns[1] = -1");
  throwsNova(
    () => new PfnExtents([1, "2" as unknown as number], 2 ** 30),
    "EINVAL",
    "pfns[1]",
  );
  throwsNova(() => new PfnExtents([], 2 ** 30), "EINVAL", "empty");
  // No user code runs to check a frame (an object's valueOf is never called).
  const hostile = {
    valueOf(): number {
      throw new Error("valueOf called");
    },
  };
  throwsNova(() => new PfnExtents([1, hostile as unknown as number], 2 ** 30), "EINVAL", "pfns[1]");
  throwsNova(() => new PfnExtents(null as unknown as number[], 2 ** 30), "EINVAL", "pfns");
  // An array-like whose getter answers differently the second time is checked again.
  let reads = 0;
  const fickle = {
    length: 2,
    get 0() {
      return 1;
    },
    get 1() {
      return reads++ === 0 ? 2 : 2 ** 40;
    },
  };
  const e = new PfnExtents(fickle, 2 ** 30);
  throwsNova(() => e.forEach(() => {}), "EINVAL", "pfns[1]");
  const list = [1, 2, 3];
  const shrinking = new PfnExtents(list, 2 ** 30);
  list.pop();
  throwsNova(() => shrinking.forEach(() => {}), "EINVAL", "changed length");
});

Deno.test("map cost: PteRuns takes one word per one-page run, two per longer run, and merges", () => {
  const runs = new PteRuns(2);
  runs.push(PAGE, 1, 0x10_0000);
  runs.push(PAGE, 1, 0x10_1000); // continues: a counted run now
  runs.push(PAGE, 1, 0x50_0000);
  runs.pushNew(PAGE, 3, 0x60); // frame 0x60
  runs.push(65536, 2, 0x100_0000);
  runs.push(65536, 1, 0x102_0000); // continues
  runs.push(PAGE, 1, 0x7000);
  assert.equal(runs.length, 5);
  assert.equal(runs.pages, 2 + 1 + 3 + 3 + 1);
  assert.equal(runs.bytes, 7 * PAGE + 3 * 65536);
  const { words, used } = runs.encoded();
  // [0x100 + 2^31, 2], [0x500], [0x60 + 2^31, 3], [0x1000 + 2^31, 3], [0x7]
  assert.deepEqual([...words.subarray(0, used)], [
    0x100 + 2 ** 31,
    2,
    0x500,
    0x60 + 2 ** 31,
    3,
    0x1000 + 2 ** 31,
    3,
    0x7,
  ]);
  assert.deepEqual(runList(runs), [
    [0, PAGE, 2, 0x10_0000],
    [2 * PAGE, PAGE, 1, 0x50_0000],
    [3 * PAGE, PAGE, 3, 0x60 * PAGE],
    [6 * PAGE, 65536, 3, 0x100_0000],
    [6 * PAGE + 3 * 65536, PAGE, 1, 0x7000],
  ]);
  const s = runs.stretches;
  assert.deepEqual(
    Array.from({ length: s.length }, (_, i) => [s.offset(i), s.pageSize(i), s.count(i), s.runs(i)]),
    [[0, PAGE, 6, 3], [6 * PAGE, 65536, 3, 1], [6 * PAGE + 3 * 65536, PAGE, 1, 1]],
  );
  assert.deepEqual([...s.pageCounts()], [[PAGE, 7], [65536, 3]]);
  assert.equal(s.find(0), 0);
  assert.equal(s.find(6 * PAGE - 1), 0);
  assert.equal(s.find(6 * PAGE), 1);
  assert.equal(s.find(6 * PAGE + 3 * 65536 + 5), 2);
  runs.release();
  assert.equal(runs.length, 0);
  assert.equal(runs.cursor().next(), false);
  assert.equal(runs.stretches.length, 3, "the stretches stay");
  throwsNova(() => new PteRuns(2).push(PAGE, 1, 2 ** 43), "EINVAL", "8 TiB");
});

Deno.test("map cost: PageStretches merges equal sizes and finds offsets by binary search", () => {
  const s = new PageStretches();
  for (let i = 0; i < 100; i++) s.add(i % 2 === 0 ? PAGE : 65536, 1 + i, 1);
  assert.equal(s.length, 100);
  assert.equal(s.pages, (100 * 101) / 2);
  for (let i = 0; i < 100; i++) {
    assert.equal(s.find(s.offset(i)), i);
    assert.equal(s.find(s.offset(i) + s.pageSize(i) * s.count(i) - 1), i);
  }
});

// --- choosePages against the previous algorithm -----------------------------------------

interface Choice {
  sizes: readonly number[];
  bigPageSize: number;
  block: number;
  offset: number;
  forced: number | undefined;
  tree: ShadowTree;
}

/**
 * The page-size choice as it was before issue 20 (every position tries
 * every size): the reference. Runs `[offset, pageSize, count, pa]`, merged
 * as PteRuns merges them.
 */
function referenceChoice(extents: readonly Extent[], c: Choice): number[][] {
  const out: number[][] = [];
  const push = (offset: number, size: number, n: number, pa: number) => {
    const last = out[out.length - 1];
    if (
      last !== undefined && last[1] === size && last[0] + last[1] * last[2] === offset &&
      last[3] + last[1] * last[2] === pa
    ) {
      last[2] += n;
    } else {
      out.push([offset, size, n, pa]);
    }
  };
  const sizes = c.forced === undefined ? c.sizes : [c.forced];
  let offset = 0;
  for (const { pa: pa0, size } of extents) {
    for (let pos = 0; pos < size;) {
      const rem = size - pos;
      const total = c.offset + offset + pos;
      const block = c.block + Math.floor(total / BLOCK);
      const off = total % BLOCK;
      const pa = pa0 + pos;
      let chosen = 0;
      for (const s of sizes) {
        if (
          s <= rem && pa % s === 0 && vaModulo(block, off, s) === 0 &&
          (s <= c.bigPageSize || c.tree.hugeSlotFree(block, s))
        ) {
          chosen = s;
          break;
        }
      }
      if (chosen === 0) fail("EINVAL", `cannot map page ${(offset + pos) / PAGE}`);
      let n = 1;
      if (chosen <= c.bigPageSize) {
        n = Math.floor(rem / chosen);
        if (c.forced === undefined) {
          for (const s of c.sizes) {
            if (s <= chosen) break;
            const vaMod = vaModulo(block, off, s);
            if (vaMod !== pa % s) continue;
            const d = vaMod === 0 ? s : s - vaMod;
            if (rem - d >= s) n = Math.min(n, d / chosen);
          }
        }
      }
      push(offset + pos, chosen, n, pa);
      pos += n * chosen;
    }
    offset += size;
  }
  return out;
}

function pageSizesOf(format: MmuFormat): number[] {
  const sizes: number[] = [];
  for (const d of format.directories) if (d.hugePageSize !== null) sizes.push(d.hugePageSize);
  sizes.sort((a, b) => b - a);
  return [...sizes, format.bigPt.pageSize, format.smallPt.pageSize];
}

/** A shadow with the path to a small-page table made at random blocks (their huge slots taken). */
function treeWithTables(format: MmuFormat, rnd: () => number, blocks: number[]): ShadowTree {
  const tree = new ShadowTree(format, 0x10_0000, null);
  let addr = 0x20_0000;
  for (const b of blocks) {
    if (rnd() < 0.5) continue;
    tree.leaf(b, 0, PAGE, (parent, idx, slot, depth) => {
      const child = tree.newTable(depth, addr += PAGE, null);
      tree.link(parent, idx, slot, child);
      return child;
    });
  }
  return tree;
}

/** Random extents that sometimes line up with large pages. */
function randomExtents(rnd: () => number, sizes: readonly number[]): Extent[] {
  const out: Extent[] = [];
  const n = 1 + Math.floor(rnd() * 12);
  for (let i = 0; i < n; i++) {
    const align = sizes[Math.floor(rnd() * sizes.length)];
    const big = Math.min(align, 64 * MiB);
    const pa = Math.floor(rnd() * 64) * big + (rnd() < 0.5 ? 0 : Math.floor(rnd() * 32) * PAGE);
    const pages = rnd() < 0.4
      ? 1 + Math.floor(rnd() * 20)
      : 1 + Math.floor(rnd() * (big / PAGE) * 3);
    out.push({ pa, size: pages * PAGE });
  }
  return out;
}

for (
  const [name, format] of [
    ["v2 (Ampere)", mmuFormat({ version: 2 })],
    ["v3 (Hopper)", mmuFormat({ version: 3 })],
  ] as const
) {
  Deno.test(`map cost: choosePages equals the per-position choice on random extents, ${name}`, () => {
    const rnd = prng(0xc0ffee + format.version);
    const sizes = pageSizesOf(format);
    const vramSize = 2 ** 40;
    let compared = 0;
    for (let round = 0; round < 400; round++) {
      const raw = randomExtents(rnd, sizes);
      const extents = ExtentList.fromExtents(raw, vramSize);
      const coalesced = extents.toArray();
      const vaAlign = sizes[Math.floor(rnd() * sizes.length)];
      const va = Math.floor(rnd() * 8) * vaAlign +
        (rnd() < 0.3 ? Math.floor(rnd() * 64) * PAGE : 0);
      const block = Math.floor(va / BLOCK);
      const offset = va % BLOCK;
      const blocks = Array.from({ length: 6 }, () => block + Math.floor(rnd() * 600));
      const tree = treeWithTables(format, rnd, blocks);
      const forcedPick = rnd() < 0.25 ? sizes[Math.floor(rnd() * sizes.length)] : undefined;
      const c = {
        sizes,
        bigPageSize: format.bigPt.pageSize,
        block,
        offset,
        forced: forcedPick,
        tree,
      };
      let want: number[][] | string;
      try {
        want = referenceChoice(coalesced, c);
      } catch (e) {
        want = (e as Error).message.split(" (")[0];
      }
      let got: number[][] | string;
      try {
        got = runList(choosePages(extents, c));
      } catch (e) {
        got = (e as Error).message.split(" (")[0];
      }
      assert.deepEqual(got, want, `round ${round} at VA ${hex(va)} ${sizeName(forcedPick ?? 0)}`);
      // The same frames as a pfn list choose the same runs.
      if (forcedPick === undefined && extents.bytes <= 64 * MiB) {
        const pfns: number[] = [];
        for (const e of coalesced) {
          for (let p = 0; p < e.size; p += PAGE) pfns.push((e.pa + p) / PAGE);
        }
        assert.deepEqual(runList(choosePages(new PfnExtents(pfns, vramSize), c)), want);
        // With the runs of the leading short extents made while checking.
        const short = format.bigPt.pageSize / PAGE;
        const pre = new PfnExtents(pfns, vramSize, short);
        assert.deepEqual(runList(choosePages(pre, c)), want);
      }
      compared++;
    }
    assert.equal(compared, 400);
  });
}

Deno.test("map cost: the check makes the runs of the leading short extents, the chooser the rest", () => {
  // Two short extents, a long one (64 KiB aligned), a short one: the prefix stops at the long one.
  const pfns = [7, 9, 10, ...Array.from({ length: 40 }, (_, i) => 0x103 + i), 3];
  const e = new PfnExtents(pfns, 2 ** 30, 16);
  const format = mmuFormat({ version: 2 });
  const c = {
    sizes: pageSizesOf(format),
    bigPageSize: format.bigPt.pageSize,
    block: 0,
    offset: 0,
    forced: undefined,
    tree: new ShadowTree(format, 0x10_0000, null),
  };
  const extents: Extent[] = [];
  new PfnExtents(pfns, 2 ** 30).forEach((pa, size) => extents.push({ pa, size }));
  const want = referenceChoice(extents, c);
  assert.deepEqual(runList(choosePages(e, c)), want);
  assert.equal(e.takePrefix(16), null, "taken once");
  // 4 KiB up to the 64 KiB boundary of the VA (same phase as the PA), one 64 KiB page, 4 KiB.
  assert.deepEqual(want.map((r) => [r[1], r[2]]), [
    [PAGE, 1],
    [PAGE, 2],
    [PAGE, 13],
    [65536, 1],
    [PAGE, 11],
    [PAGE, 1],
  ]);
  // A prefix made for another choice (a forced size) is not used.
  const forced = new PfnExtents([1, 5, 6], 2 ** 30, 16);
  assert.deepEqual(runList(choosePages(forced, { ...c, forced: PAGE })), [
    [0, PAGE, 1, PAGE],
    [PAGE, PAGE, 2, 5 * PAGE],
  ]);
});

Deno.test("map cost: choosePages makes one run per one-page extent in scattered frames", () => {
  const format = mmuFormat({ version: 2 });
  const pfns = Array.from({ length: 5000 }, (_, i) => (i * 7919) % 65521);
  const runs = choosePages(new PfnExtents(pfns, 2 ** 30), {
    sizes: pageSizesOf(format),
    bigPageSize: format.bigPt.pageSize,
    block: 3,
    offset: 0x10000,
    forced: undefined,
    tree: new ShadowTree(format, 0x10_0000, null),
  });
  assert.equal(runs.length, 5000);
  assert.equal(runs.encoded().used, 5000, "one word per run");
  assert.equal(runs.stretches.length, 1);
});

// --- the PTE in number form ---------------------------------------------------------------

Deno.test("map cost: the number form of vramPte equals vramPte for both versions and permissions", () => {
  const rnd = prng(0x11fe);
  for (const [codec, limit] of [[v2, 2 ** 37], [v3, 2 ** 40]] as const) {
    for (const writable of [true, false]) {
      const line = vramPteLine(codec, writable)!;
      assert.ok(line !== null, `v${codec.version} has a number form`);
      assert.equal(2 ** line.target.limitBits, limit);
      for (let i = 0; i < 2000; i++) {
        const pa = Math.floor(rnd() * (limit / PAGE)) * PAGE;
        assert.equal(BigInt(line.base + pa * line.scale), codec.vramPte(pa, { writable }));
      }
    }
  }
});

Deno.test("map cost: a PTE address past the format's field fails in the write, the shadow goes back", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const { pramin, buddy } = gpu.mm;
  const root = buddy.alloc(PAGE);
  pramin.writeBytes(root.start, new Uint8Array(PAGE), { force: true });
  // A VRAM size past what a v2 PTE holds (2^37): the line refuses, vramPte names the address.
  const mapper = new Mapper(gpu.format, root.start, root, { pramin, buddy, vramSize: 2 ** 40 });
  const hold: TableHold = { newTables: [], pinned: [] };
  const runs = mapper.prepare(new PfnExtents([5, 2 ** 25], 2 ** 40), 0x20_0000n, undefined, hold);
  gpu.resetStats();
  let failed = false;
  throwsNova(
    () => mapper.write({ va: 0x20_0000n, runs, writable: true, ...hold }, () => failed = true),
    "EINVAL",
    "v2 PTE address",
  );
  assert.ok(failed, "onWriteFailed ran");
  const s = gpu.stats();
  assert.equal(s.mmioReads + s.mmioWrites, 0, "no MMIO access");
  const pts = hold.newTables.filter((t) => t.level === gpu.format.smallPt);
  assert.equal(pts.length, 1);
  assert.ok(pts[0].raw.every((w) => w === 0), "the shadow went back");
  assert.equal(pts[0].live, 0);
  mapper.abandon(hold);
});

// --- mappings keep their stretches --------------------------------------------------------

Deno.test("map cost: a scattered mapping keeps one stretch; physicalAddress and extents read its PTEs", async () => {
  for (const device of ["sim:ga102", "sim:gh100"]) {
    using gpu = await openGpu({ device });
    const pool = gpu.mm.buddy.alloc(16 * MiB, { align: 2 * MiB });
    const rnd = prng(0xabc);
    const pfns = Array.from({ length: 4096 }, (_, i) => pool.start / PAGE + i);
    for (let i = pfns.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [pfns[i], pfns[j]] = [pfns[j], pfns[i]];
    }
    const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
    const m = vmm.mapPages(pfns, { writable: true });
    assert.equal(m.stretches.length, 1, device);
    for (const i of [0, 1, 2047, 4095]) {
      assert.equal(m.physicalAddress(i * PAGE + 12), pfns[i] * PAGE + 12);
    }
    const ext = m.extents;
    let k = 0;
    for (const e of ext) {
      for (let p = 0; p < e.size; p += PAGE) assert.equal(e.pa + p, pfns[k++] * PAGE);
    }
    assert.equal(k, pfns.length);
    // A mixed mapping: read-only, huge and small pages.
    const r = vmm.mapRange(pool.start + 2 * MiB - 3 * PAGE, 4 * MiB + 5 * PAGE);
    assert.deepEqual(r.extents, [{
      pa: pool.start + 2 * MiB - 3 * PAGE,
      size: 4 * MiB + 5 * PAGE,
    }]);
    for (const off of [0, 3 * PAGE, 3 * PAGE + 2 * MiB + 17, 4 * MiB + 5 * PAGE - 1]) {
      assert.equal(r.physicalAddress(off), pool.start + 2 * MiB - 3 * PAGE + off);
    }
    m.unmap();
    throwsNova(() => m.physicalAddress(0), "EINVAL", "unmapped");
    throwsNova(() => m.extents, "EINVAL", "unmapped");
    assert.deepEqual(m.pages, { "4K": 4096 }, "its page counts stay");
    r.unmap();
  }
});

Deno.test("map cost: a recycled table's words go, zeroed, to the next table; the old table reads nothing", () => {
  const format = mmuFormat({ version: 2 });
  const tree = new ShadowTree(format, 0x10_0000, null);
  const depth = format.directories.length; // the small-page table
  const old = tree.newTable(depth, 0x20_0000, null);
  const words = old.raw;
  words.fill(0xdead);
  recycleTable(old);
  assert.equal(old.raw.length, 0, "a stale reference reads nothing");
  const next = tree.newTable(depth, 0x20_1000, null);
  assert.equal(next.raw, words, "the words are reused");
  assert.ok(next.raw.every((w) => w === 0), "zeroed");
  recycleTable(old); // twice: nothing to give
  assert.notEqual(tree.newTable(depth, 0x20_2000, null).raw, words);
});

Deno.test("map cost: Ctrl-C while checking, choosing or writing a large map changes nothing", async () => {
  using gpu = await openGpu({ device: "sim:ga102" });
  const pool = gpu.mm.buddy.alloc(256 * MiB);
  const pfns = Array.from({ length: 65536 }, (_, i) => pool.start / PAGE + ((i * 40503) % 65536));
  const vmm = gpu.mm.createVmm({ vaSize: 1n << 40n });
  const before = JSON.stringify(vmm.tableCounts());
  const word = new Int32Array(new SharedArrayBuffer(4));
  setInterruptWord(word);
  try {
    // Ctrl-C arrives while the loop named `what` reports progress (past its first step).
    for (const what of ["checking pfns", "page tables", "PTEs"]) {
      setWorkProgress((done, total, w) => {
        if (w === what && done > 0 && done < total) Atomics.store(word, 0, 1);
      });
      gpu.resetStats();
      throwsNova(() => vmm.mapPages(pfns, { writable: true }), "EINTR");
      const s = gpu.stats();
      assert.equal(s.mmioWrites, 0, `${what}: no MMIO write`);
      assert.equal(JSON.stringify(vmm.tableCounts()), before, `${what}: no table left`);
      assert.equal(vmm.mappings().length, 0);
      assert.equal(vmm.ranges.count, 0, `${what}: the VA went back`);
    }
  } finally {
    setWorkProgress(null);
    setInterruptWord(null);
  }
  const m = vmm.mapPages(pfns, { writable: true });
  assert.equal(m.physicalAddress(5 * PAGE), pfns[5] * PAGE);
  m.unmap();
});
