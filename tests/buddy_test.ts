/**
 * Tests of the VRAM buddy allocator: exact layouts, coalescing, alignment and
 * ranges, scattered allocations, errors that leave the state untouched, and a
 * randomized run against a brute-force interval model.
 */

import assert from "node:assert/strict";
import { NovaError } from "../hw/errors.ts";
import { Allocation, type Block, BuddyAllocator, type BuddyStats } from "../mm/buddy.ts";
import { prng } from "../testing/prng.ts";
import { throwsNova } from "./util.ts";

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;

/** Maximal naturally aligned blocks of [s, e), written independently of mm/buddy.ts. */
function maximalBlocks(s: number, e: number, chunk: number): Block[] {
  const out: Block[] = [];
  while (s < e) {
    let size = chunk;
    while (s % (size * 2) === 0 && s + size * 2 <= e) size *= 2;
    out.push({ start: s, size });
    s += size;
  }
  return out;
}

function roundUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

function nextPow2(x: number): number {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}

function snapshot(b: BuddyAllocator): { stats: BuddyStats; blocks: Block[] } {
  return { stats: b.stats(), blocks: b.freeBlocks() };
}

function checkBlocks(a: Allocation, chunk: number): void {
  let sum = 0;
  for (const blk of a.blocks) {
    assert.ok(blk.size >= chunk && Number.isInteger(Math.log2(blk.size)), `block size ${blk.size}`);
    assert.equal(blk.start % blk.size, 0, `block ${blk.start} not aligned to ${blk.size}`);
    sum += blk.size;
  }
  assert.equal(sum, a.size);
  assert.equal(a.start, a.blocks[0].start);
  if (a.contiguous) {
    for (let i = 1; i < a.blocks.length; i++) {
      assert.equal(a.blocks[i].start, a.blocks[i - 1].start + a.blocks[i - 1].size);
    }
  }
}

Deno.test("buddy: region decomposes into maximal naturally aligned blocks", () => {
  const small = new BuddyAllocator({ start: 0x3000, size: 0xd000 });
  assert.deepEqual(small.freeBlocks(), [
    { start: 0x3000, size: 0x1000 },
    { start: 0x4000, size: 0x4000 },
    { start: 0x8000, size: 0x8000 },
  ]);
  const b = new BuddyAllocator({ start: 0x200000, size: 24 * M });
  assert.deepEqual(b.freeBlocks(), [
    { start: 2 * M, size: 2 * M },
    { start: 4 * M, size: 4 * M },
    { start: 8 * M, size: 8 * M },
    { start: 16 * M, size: 8 * M },
    { start: 24 * M, size: 2 * M },
  ]);
  assert.deepEqual(b.stats().blocksPerOrder, { 9: 2, 10: 1, 11: 2 });

  // A GA102-like usable region: ~23.7 GiB from 2 MiB.
  const ga = new BuddyAllocator({ start: 0x200000, size: 0x5e8e00000 });
  const blocks = ga.freeBlocks();
  assert.deepEqual(blocks, maximalBlocks(0x200000, 0x200000 + 0x5e8e00000, 4096));
  for (const blk of blocks) {
    // Maximal: the parent block never lies inside the region.
    const parent = Math.floor(blk.start / (2 * blk.size)) * 2 * blk.size;
    assert.ok(parent < ga.start || parent + 2 * blk.size > ga.end);
  }
  assert.deepEqual(
    ga.freeBlocks({ range: { start: 0x300000, end: 0x500000 } }),
    [{ start: 0x200000, size: 0x200000 }, { start: 0x400000, size: 0x400000 }],
  );
  const s = ga.stats();
  assert.equal(s.total, 0x5e8e00000);
  assert.equal(s.free, s.total);
  assert.equal(s.used, 0);
  assert.equal(s.largestFree, 8 * G); // [8G, 16G): the region ends below 32 GiB
  assert.equal(s.liveAllocations, 0);
  assert.equal(s.freeExtents, 1);
});

Deno.test("buddy: exact layout on a 64 KiB region, coalescing back", () => {
  const b = new BuddyAllocator({ start: 0, size: 64 * K });
  const initial = snapshot(b);
  const a = b.alloc(4096);
  assert.equal(a.start, 0);
  assert.deepEqual(a.blocks, [{ start: 0, size: 4 * K }]);
  assert.deepEqual(b.freeBlocks(), [
    { start: 4 * K, size: 4 * K },
    { start: 8 * K, size: 8 * K },
    { start: 16 * K, size: 16 * K },
    { start: 32 * K, size: 32 * K },
  ]);
  const c8 = b.alloc(8 * K);
  assert.equal(c8.start, 8 * K);
  const c4 = b.alloc(4 * K);
  assert.equal(c4.start, 4 * K);
  const d = b.alloc(12 * K - 100);
  assert.equal(d.start, 16 * K);
  assert.equal(d.size, 12 * K, "no rounding to 16 KiB");
  assert.deepEqual(d.blocks, [{ start: 16 * K, size: 8 * K }, { start: 24 * K, size: 4 * K }]);
  assert.deepEqual(b.freeBlocks(), [
    { start: 28 * K, size: 4 * K },
    { start: 32 * K, size: 32 * K },
  ]);
  assert.equal(b.stats().used, 28 * K);
  c8.free();
  assert.deepEqual(b.freeBlocks(), [
    { start: 8 * K, size: 8 * K },
    { start: 28 * K, size: 4 * K },
    { start: 32 * K, size: 32 * K },
  ]);
  b.free(a);
  c4.free();
  assert.deepEqual(b.freeBlocks(), [
    { start: 0, size: 16 * K },
    { start: 28 * K, size: 4 * K },
    { start: 32 * K, size: 32 * K },
  ]);
  d.free();
  assert.deepEqual(snapshot(b), initial);
});

Deno.test("buddy: non-power-of-two contiguous sizes give back the tail", () => {
  const b = new BuddyAllocator({ start: 0x200000, size: 24 * M });
  const a = b.alloc(6 * M);
  assert.equal(a.start, 8 * M, "the covering 8 MiB block's alignment");
  assert.equal(a.size, 6 * M);
  assert.deepEqual(a.blocks, [{ start: 8 * M, size: 4 * M }, { start: 12 * M, size: 2 * M }]);
  assert.ok(b.freeBlocks().some((x) => x.start === 14 * M && x.size === 2 * M));
  assert.equal(b.stats().free, 18 * M);
  const odd = b.alloc(5000);
  assert.equal(odd.size, 8 * K);
  assert.equal(odd.start, 2 * M);
  const three = b.alloc(3 * 4096);
  assert.equal(three.start, 2 * M + 16 * K);
  assert.equal(three.size, 12 * K);
  assert.equal(Deno.inspect(three), "Allocation 0x204000 +12 KiB (2 blocks)");
});

Deno.test("buddy: contiguous falls back to any chunk boundary, explicit align does not", () => {
  const b = new BuddyAllocator({ start: 0, size: 32 * K });
  b.alloc(4 * K); // 0
  const hi = b.alloc(16 * K);
  assert.equal(hi.start, 16 * K);
  // [4K, 16K) is free, but no 16 KiB-aligned 12 KiB hole is.
  const before = snapshot(b);
  throwsNova(() => b.alloc(12 * K, { align: 16 * K }), "ENOMEM", /align 0x4000/);
  assert.deepEqual(snapshot(b), before);
  const a = b.alloc(12 * K);
  assert.equal(a.start, 4 * K);
  assert.deepEqual(a.blocks, [{ start: 4 * K, size: 4 * K }, { start: 8 * K, size: 8 * K }]);
  assert.equal(b.stats().free, 0);
});

Deno.test("buddy: align larger than the size, lowest aligned address wins", () => {
  const b = new BuddyAllocator({ start: 0x1000, size: 8 * M });
  const a = b.alloc(4096, { align: 2 * M });
  assert.equal(a.start, 2 * M);
  assert.equal(a.size, 4 * K);
  assert.deepEqual(a.blocks, [{ start: 2 * M, size: 4 * K }]);
  assert.equal(b.stats().free, 8 * M - 4 * K);
  a.free();
  assert.deepEqual(b.freeBlocks(), maximalBlocks(0x1000, 0x1000 + 8 * M, 4096));

  // A lone 4 KiB free block at a 4 MiB boundary qualifies, though no 4 MiB block is free.
  const r = new BuddyAllocator({ start: 0, size: 8 * M });
  r.alloc(2 * M); // 0
  r.alloc(2 * M); // 2 MiB
  const c = r.alloc(4 * K);
  const d = r.alloc(4 * K);
  assert.deepEqual([c.start, d.start], [4 * M, 4 * M + 4 * K]);
  r.alloc(4 * M - 8 * K, { contiguous: false }); // the rest of [4M, 8M)
  c.free();
  assert.equal(r.stats().largestFree, 4 * K);
  const e = r.alloc(4 * K, { align: 4 * M });
  assert.equal(e.start, 4 * M);

  // Alignment beyond the region's own blocks: only address 0 qualifies.
  const z = new BuddyAllocator({ start: 0, size: 3 * M });
  assert.equal(z.alloc(4 * K, { align: 2 ** 40 }).start, 0);
  throwsNova(() => z.alloc(4 * K, { align: 2 ** 40 }), "ENOMEM", /align 0x10000000000/);
  throwsNova(
    () => z.alloc(4 * K, { align: 2 ** 45, range: { start: 4096, end: 3 * M } }),
    "EINVAL",
    /aligned/,
  );
  // Smaller than minChunk is every block start already.
  assert.equal(z.alloc(100, { align: 16 }).start, 4 * K);
});

Deno.test("buddy: range restricts placement, exact ranges need no natural alignment", () => {
  const b = new BuddyAllocator({ start: 0x200000, size: 1 * M });
  const exact = b.alloc(3 * 4096, { range: { start: 0x203000, end: 0x206000 } });
  assert.equal(exact.start, 0x203000);
  assert.deepEqual(exact.blocks, [
    { start: 0x203000, size: 0x1000 },
    { start: 0x204000, size: 0x2000 },
  ]);
  const before = snapshot(b);
  throwsNova(
    () => b.alloc(3 * 4096, { range: { start: 0x203000, end: 0x206000 } }),
    "ENOMEM",
    /in \[0x203000, 0x206000\)/,
  );
  assert.deepEqual(snapshot(b), before);
  const low = b.alloc(4096, { range: { start: 0x200000, end: 0x210000 } });
  assert.equal(low.start, 0x200000);
  const mid = b.alloc(4096, { range: { start: 0x250000, end: 0x260000 } });
  assert.equal(mid.start, 0x250000);
  const aligned = b.alloc(64 * K, { align: 64 * K, range: { start: 0x201000, end: 0x300000 } });
  assert.equal(aligned.start, 0x210000);
  // A range ending inside a free run: only the part below the end counts.
  const tail = b.alloc(8 * K, { range: { start: 0x2f0000, end: 0x2f3000 } });
  assert.equal(tail.start, 0x2f0000);
  const cross = b.alloc(12 * K, { range: { start: 0x2f1000, end: 0x2fe000 } });
  assert.equal(cross.start, 0x2f4000, "the 16 KiB-aligned position comes first");
  for (const a of [exact, low, mid, aligned, tail, cross]) checkBlocks(a, 4096);
  for (const a of [exact, low, mid, aligned, tail, cross]) a.free();
  assert.deepEqual(b.freeBlocks(), maximalBlocks(0x200000, 0x300000, 4096));
});

Deno.test("buddy: non-contiguous allocations take the largest blocks first, never more", () => {
  const b = new BuddyAllocator({ start: 0, size: 64 * K });
  const whole = b.alloc(28 * K, { contiguous: false });
  assert.deepEqual(whole.blocks, [
    { start: 0, size: 16 * K },
    { start: 16 * K, size: 8 * K },
    { start: 24 * K, size: 4 * K },
  ]);
  assert.equal(whole.size, 28 * K);
  assert.equal(Deno.inspect(whole), "Allocation 0x0 +28 KiB (3 blocks, non-contiguous)");
  whole.free();

  // Fragment: 16 pages, every other one freed.
  const pages = Array.from({ length: 16 }, () => b.alloc(4 * K));
  pages.forEach((p, i) => assert.equal(p.start, i * 4 * K));
  for (let i = 0; i < 16; i += 2) pages[i].free();
  const before = snapshot(b);
  throwsNova(
    () => b.alloc(8 * K),
    "ENOMEM",
    /^ENOMEM: cannot allocate 0x2000 bytes \(contiguous\): largest free block is 0x1000 of 0x8000 free$/,
  );
  assert.deepEqual(snapshot(b), before);
  const scattered = b.alloc(20 * K, { contiguous: false });
  assert.equal(scattered.start, 0);
  assert.deepEqual(scattered.blocks.map((x) => x.start), [0, 8 * K, 16 * K, 24 * K, 32 * K]);
  assert.equal(scattered.size, 20 * K);

  // 8 KiB fits in the free total (12 KiB) but the range holds one free page: rolled back.
  const mid = snapshot(b);
  throwsNova(
    () => b.alloc(8 * K, { contiguous: false, range: { start: 32 * K, end: 48 * K } }),
    "ENOMEM",
    /non-contiguous, in \[0x8000, 0xc000\)/,
  );
  assert.deepEqual(snapshot(b), mid);
  throwsNova(() => b.alloc(16 * K, { contiguous: false }), "ENOMEM", / of 0x3000 free$/);
  assert.deepEqual(snapshot(b), mid);

  // align = minimum block size; the size rounds up to it.
  const c = new BuddyAllocator({ start: 0, size: 64 * K });
  c.alloc(4 * K);
  const big = c.alloc(5000, { contiguous: false, align: 8 * K });
  assert.equal(big.size, 8 * K);
  assert.deepEqual(big.blocks, [{ start: 8 * K, size: 8 * K }]);
  const mixed = c.alloc(24 * K, { contiguous: false, align: 8 * K });
  assert.deepEqual(mixed.blocks, [{ start: 16 * K, size: 16 * K }, { start: 32 * K, size: 8 * K }]);
  for (const a of [big, mixed]) checkBlocks(a, 8 * K);
});

Deno.test("buddy: every error names the value and leaves the state untouched", () => {
  const b = new BuddyAllocator({ start: 0x200000, size: 0x5e8e00000 });
  const keep = [b.alloc(4096), b.alloc(3 * M), b.alloc(64 * K, { contiguous: false })];
  const before = snapshot(b);
  const cases: [() => unknown, string, RegExp][] = [
    [() => b.alloc(0), "EINVAL", /size 0x0 /],
    [() => b.alloc(-4096), "EINVAL", /size -4096 /],
    [() => b.alloc(4096.5), "EINVAL", /size 4096\.5 /],
    [() => b.alloc(NaN), "EINVAL", /size NaN /],
    [() => b.alloc("4096" as unknown as number), "EINVAL", /size "4096" /],
    [() => b.alloc(0x5e8e01000), "EINVAL", /0x5e8e01000 exceeds .* 0x5e8e00000/],
    [() => b.alloc(4096, { align: 3 * 4096 }), "EINVAL", /align 0x3000 is not a power of two/],
    [() => b.alloc(4096, { align: 0 }), "EINVAL", /align 0x0 /],
    [() => b.alloc(4096, { align: -4096 }), "EINVAL", /align -4096 /],
    [() => b.alloc(4096, { range: { start: 0, end: 0x400000 } }), "EINVAL", /outside the region/],
    [
      () => b.alloc(4096, { range: { start: 0x200000, end: 0x200000 + 0x5e8e01000 } }),
      "EINVAL",
      /outside the region/,
    ],
    [() => b.alloc(4096, { range: { start: 0x300000, end: 0x300000 } }), "EINVAL", /empty/],
    [() => b.alloc(4096, { range: { start: 0x300001, end: 0x400000 } }), "EINVAL", /0x300001/],
    [() => b.alloc(8192, { range: { start: 0x300000, end: 0x301000 } }), "EINVAL", /does not fit/],
    [
      () => b.alloc(8192, { align: 8192, range: { start: 0x301000, end: 0x303000 } }),
      "EINVAL",
      /no 0x2000-aligned position/,
    ],
    [
      () =>
        b.alloc(8192, {
          contiguous: false,
          align: 8192,
          range: { start: 0x301000, end: 0x303000 },
        }),
      "EINVAL",
      /fewer than 0x2000 bytes/,
    ],
    [() => b.alloc(4096, { contigous: false } as unknown as object), "EINVAL", /"contigous"/],
    [() => b.alloc(4096, { contiguous: 0 as unknown as boolean }), "EINVAL", /contiguous 0x0/],
    [() => b.alloc(32 * G), "EINVAL", /exceeds/],
    // Bigger than the largest free run [0x700000, end), though below the total.
    [() => b.alloc(0x5e8a00000), "ENOMEM", /cannot allocate 0x5e8a00000 bytes \(contiguous\)/],
    [
      () => b.alloc(20 * G, { contiguous: false, align: 32 * G }),
      "EINVAL",
      /rounded to blocks of 0x800000000/,
    ],
    [() => b.alloc(0x5e8e00000 - 3 * M, { contiguous: false }), "ENOMEM", /non-contiguous/],
    [() => b.free({ start: 0x200000, size: 4096 } as Allocation), "EINVAL", /not an Allocation/],
  ];
  for (const [fn, code, re] of cases) {
    throwsNova(fn, code, re);
    assert.deepEqual(snapshot(b), before, `state changed by ${fn}`);
  }
  throwsNova(() => new BuddyAllocator({ start: 0x1800, size: 0x10000 }), "EINVAL", /0x1800/);
  throwsNova(() => new BuddyAllocator({ start: 0, size: 0 }), "EINVAL", /size 0x0/);
  throwsNova(
    () => new BuddyAllocator({ start: 0, size: 4096, minChunk: 3000 }),
    "EINVAL",
    /3000|0xbb8/,
  );
  throwsNova(() => new BuddyAllocator({ start: 2 ** 40 - 4096, size: 8192 }), "EOVERFLOW", /limit/);
  for (const a of keep) a.free();
  assert.equal(b.stats().free, b.size);
});

Deno.test("buddy: ENOMEM reports the request and the largest free block", () => {
  const b = new BuddyAllocator({ start: 0, size: 0x60000000 }); // 1 GiB + 512 MiB
  b.alloc(4096);
  b.alloc(4096, { range: { start: 0x40000000, end: 0x40001000 } });
  throwsNova(
    () => b.alloc(0x40000000),
    "ENOMEM",
    /^ENOMEM: cannot allocate 0x40000000 bytes \(contiguous\): largest free block is 0x20000000 of 0x5fffe000 free$/,
  );
  const err = (() => {
    try {
      b.alloc(0x40000000);
    } catch (e) {
      return e as NovaError;
    }
  })();
  assert.match(err?.hint ?? "", /contiguous: false/);
  const s = b.alloc(0x40000000, { contiguous: false });
  assert.equal(s.size, 0x40000000);
  assert.equal(s.blocks[0].size, 0x20000000, "largest first");
});

Deno.test("buddy: double free, foreign free and disposal", () => {
  const b = new BuddyAllocator({ start: 0x200000, size: 16 * M });
  const other = new BuddyAllocator({ start: 0x200000, size: 16 * M });
  const a = b.alloc(4 * M);
  assert.equal(Deno.inspect(a), "Allocation 0x400000 +4 MiB (1 block)");
  assert.equal(`${a}`, "Allocation 0x400000 +4 MiB (1 block)");
  const foreign = other.alloc(4 * M);
  const before = snapshot(b);
  throwsNova(() => b.free(foreign), "EINVAL", /belongs to .*not this one/);
  assert.deepEqual(snapshot(b), before);
  assert.ok(foreign.live);
  a.free();
  assert.equal(a.live, false);
  assert.equal(Deno.inspect(a), "Allocation 0x400000 +4 MiB (1 block, freed)");
  const freed = snapshot(b);
  throwsNova(() => a.free(), "EINVAL", /double free of allocation 0x400000 \+0x400000/);
  throwsNova(() => b.free(a), "EINVAL", /double free/);
  assert.deepEqual(snapshot(b), freed);
  a[Symbol.dispose](); // after an explicit free: a no-op
  assert.deepEqual(snapshot(b), freed);
  assert.throws(
    () => new Allocation(Symbol("forged"), b, [0x200000, 0x201000], true),
    TypeError,
  );

  {
    using scoped = b.alloc(8 * K);
    assert.ok(scoped.live);
    assert.equal(b.stats().liveAllocations, 1);
  }
  assert.equal(b.stats().liveAllocations, 0);
  {
    using early = b.alloc(8 * K);
    early.free(); // the dispose at scope end must not throw
  }
  assert.throws(() => {
    using inner = b.alloc(2 * M);
    assert.equal(inner.start, 2 * M);
    throw new Error("boom");
  }, /boom/);
  assert.deepEqual(snapshot(b), freed);
  assert.equal(b.stats().free, 16 * M);
});

Deno.test("buddy: stats inspect and shape", () => {
  const b = new BuddyAllocator({ start: 0x200000, size: 24 * M });
  const a = b.alloc(6 * M);
  const s = b.stats();
  assert.deepEqual(s, {
    total: 24 * M,
    free: 18 * M,
    used: 6 * M,
    largestFree: 8 * M,
    blocksPerOrder: { 9: 3, 10: 1, 11: 1 },
    liveAllocations: 1,
    freeExtents: 2,
    minChunk: 4096,
  });
  assert.equal(
    Deno.inspect(s),
    "BuddyStats 24 MiB total, 18 MiB free, 6 MiB used, largest free block 8 MiB, " +
      "1 live allocation, 2 free runs; free blocks 2 MiB×3 4 MiB×1 8 MiB×1",
  );
  assert.match(Deno.inspect(b), /^BuddyAllocator \[0x200000, 0x1a00000\) 24 MiB: 18 MiB free/);
  a.free();
});

Deno.test("buddy: freeing in random order restores the initial block set", () => {
  const rnd = prng(7);
  const b = new BuddyAllocator({ start: 0x7000, size: 0x3f39000 });
  const initial = snapshot(b);
  const live: Allocation[] = [];
  for (let i = 0; i < 600; i++) {
    const size = 4096 * (1 + Math.floor(rnd() * 64)) - Math.floor(rnd() * 4096);
    try {
      live.push(b.alloc(size, { contiguous: rnd() < 0.8 }));
    } catch (e) {
      assert.equal((e as NovaError).code, "ENOMEM");
    }
  }
  assert.ok(live.length > 300);
  for (let i = live.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [live[i], live[j]] = [live[j], live[i]];
  }
  for (const a of live) a.free();
  assert.deepEqual(snapshot(b), initial);
});

/** Brute-force oracle: a sorted list of allocated intervals. */
class Model {
  ints: [number, number][] = [];
  constructor(readonly start: number, readonly end: number, readonly chunk: number) {}

  gaps(): [number, number][] {
    const out: [number, number][] = [];
    let p = this.start;
    for (const [s, e] of this.ints) {
      if (s > p) out.push([p, s]);
      p = e;
    }
    if (p < this.end) out.push([p, this.end]);
    return out;
  }

  lowest(need: number, align: number, lo: number, hi: number): number {
    for (const [g0, g1] of this.gaps()) {
      if (g0 >= hi) break;
      const p = roundUp(Math.max(g0, lo), align);
      if (p + need <= Math.min(g1, hi)) return p;
    }
    return -1;
  }

  add(s: number, e: number): void {
    let i = 0;
    while (i < this.ints.length && this.ints[i][0] < s) i++;
    assert.ok(i === 0 || this.ints[i - 1][1] <= s, `overlap below ${s}`);
    assert.ok(i === this.ints.length || this.ints[i][0] >= e, `overlap above ${s}`);
    assert.ok(s >= this.start && e <= this.end, "outside the region");
    this.ints.splice(i, 0, [s, e]);
  }

  remove(s: number, e: number): void {
    const i = this.ints.findIndex(([a, b]) => a === s && b === e);
    assert.ok(i >= 0);
    this.ints.splice(i, 1);
  }

  freeBlocks(): Block[] {
    return this.gaps().flatMap(([s, e]) => maximalBlocks(s, e, this.chunk));
  }
}

Deno.test("buddy: 20,000 random operations agree with an interval model", () => {
  const rnd = prng(0xb0dd7);
  const chunk = 4096;
  const start = 0x7000;
  const size = 0x2a3d000; // ~42 MiB, odd start, not a power of two
  const b = new BuddyAllocator({ start, size });
  const model = new Model(start, start + size, chunk);
  const initial = snapshot(b);
  const live: Allocation[] = [];
  let ok = 0;
  let nomem = 0;
  let inval = 0;
  const pick = (n: number) => Math.floor(rnd() * n);

  for (let op = 0; op < 20000; op++) {
    if (live.length > 0 && (rnd() < 0.45 || live.length > 400)) {
      const i = pick(live.length);
      const a = live[i];
      live[i] = live[live.length - 1];
      live.pop();
      for (const blk of a.blocks) model.remove(blk.start, blk.start + blk.size);
      if (rnd() < 0.5) a.free();
      else b.free(a);
    } else {
      const exp = pick(11);
      const requested = 1 + pick(chunk << exp);
      const kind = rnd();
      const contiguous = kind < 0.8;
      let align: number | undefined;
      if (kind >= 0.6 && kind < 0.7) align = chunk << pick(10);
      if (kind >= 0.9 && rnd() < 0.5) align = chunk << pick(3);
      let lo = start;
      let hi = start + size;
      let range: { start: number; end: number } | undefined;
      if ((kind >= 0.7 && kind < 0.8) || (kind >= 0.9 && rnd() < 0.3)) {
        lo = start + chunk * pick(size / chunk);
        hi = Math.min(start + size, lo + chunk * (1 + pick(4096)));
        range = { start: lo, end: hi };
      }
      // Expected outcome, by brute force.
      let expected: Block[] | "EINVAL" | "ENOMEM";
      let need: number;
      if (contiguous) {
        need = roundUp(requested, chunk);
        let p = -1;
        if (hi - lo < need) expected = "EINVAL";
        else if (align !== undefined && roundUp(lo, align) + need > hi) expected = "EINVAL";
        else {
          if (align !== undefined) p = model.lowest(need, align, lo, hi);
          else {
            const cover = nextPow2(need);
            if (roundUp(lo, cover) + need <= hi) p = model.lowest(need, cover, lo, hi);
            if (p < 0) p = model.lowest(need, chunk, lo, hi);
          }
          expected = p < 0 ? "ENOMEM" : maximalBlocks(p, p + need, chunk);
        }
      } else {
        const minBlock = align ?? chunk;
        need = roundUp(requested, minBlock);
        if (Math.floor(hi / minBlock) - Math.ceil(lo / minBlock) < need / minBlock) {
          expected = "EINVAL";
        } else {
          const scratch = new Model(start, start + size, chunk);
          scratch.ints = model.ints.map(([s, e]) => [s, e]);
          const taken: Block[] = [];
          let left = need;
          let blk = 2 ** Math.floor(Math.log2(left));
          while (left > 0) {
            if (blk > left) {
              blk /= 2;
              continue;
            }
            const p = scratch.lowest(blk, blk, lo, hi);
            if (p < 0) {
              if (blk === minBlock) break;
              blk /= 2;
              continue;
            }
            scratch.add(p, p + blk);
            taken.push({ start: p, size: blk });
            left -= blk;
          }
          expected = left > 0 ? "ENOMEM" : taken;
        }
      }
      const opts = { contiguous, ...(align !== undefined && { align }), ...(range && { range }) };
      if (typeof expected === "string") {
        const before = op % 10 === 0 ? snapshot(b) : undefined;
        throwsNova(() => b.alloc(requested, opts), expected, /./);
        if (before) assert.deepEqual(snapshot(b), before);
        if (expected === "ENOMEM") nomem++;
        else inval++;
      } else {
        const a = b.alloc(requested, opts);
        assert.equal(a.size, need, `size of ${requested} ${JSON.stringify(opts)}`);
        assert.deepEqual(a.blocks, expected, `placement at op ${op} ${JSON.stringify(opts)}`);
        checkBlocks(a, chunk);
        for (const x of a.blocks) {
          assert.ok(x.start >= lo && x.start + x.size <= hi, "outside the range");
          if (align !== undefined) {
            assert.equal((contiguous ? a.start : x.start) % align, 0, "alignment");
          }
          model.add(x.start, x.start + x.size);
        }
        live.push(a);
        ok++;
      }
    }
    if (op % 100 === 0) {
      assert.deepEqual(b.freeBlocks(), model.freeBlocks(), `free blocks at op ${op}`);
      const s = b.stats();
      assert.equal(s.liveAllocations, live.length);
      assert.equal(s.free, model.gaps().reduce((n, [g0, g1]) => n + g1 - g0, 0));
      assert.equal(
        s.largestFree,
        Math.max(0, ...model.freeBlocks().map((x) => x.size)),
      );
    }
  }
  assert.ok(ok > 8000 && nomem > 500 && inval > 20, `ok ${ok} ENOMEM ${nomem} EINVAL ${inval}`);
  for (const a of live) a.free();
  assert.deepEqual(snapshot(b), initial);
});

Deno.test("buddy: 80 GiB region, 10,000 allocations stay cheap", () => {
  const rnd = prng(80);
  const t0 = performance.now();
  const b = new BuddyAllocator({ start: 0x200000, size: 80 * G - 0x200000 });
  const initial = snapshot(b);
  const live: Allocation[] = [];
  for (let i = 0; i < 10000; i++) {
    live.push(b.alloc(4096 * (1 + Math.floor(rnd() * 512)), { contiguous: rnd() < 0.9 }));
    if (i % 3 === 2) live.splice(Math.floor(rnd() * live.length), 1)[0].free();
  }
  const s = b.stats();
  // ~20 million 4 KiB chunks, yet the state is a few thousand free runs.
  assert.ok(s.freeExtents <= live.length + 1, `${s.freeExtents} free runs`);
  assert.equal(s.liveAllocations, live.length);
  const blocks = Object.values(s.blocksPerOrder).reduce((n, c) => n + c, 0);
  assert.ok(blocks < 40 * (s.freeExtents + 1), `${blocks} free blocks`);
  for (const a of live) a.free();
  assert.deepEqual(snapshot(b), initial);
  const ms = performance.now() - t0;
  assert.ok(ms < 10000, `took ${ms} ms`); // a per-chunk structure alone would cost seconds
});
