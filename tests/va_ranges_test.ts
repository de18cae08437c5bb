/**
 * VA range tracking (mm/va_ranges.ts) against a plain model: a sorted list
 * of taken ranges searched front to back. Random claim / allocate / release
 * / findFree sequences (sizes of any granularity, alignments 1 B to 16 GiB
 * — past the tree's largest alignment class —, phases, [lo, hi) windows),
 * the misaligned-holes layout the per-alignment maxima exist for, a 2^57
 * space whose addresses are past 2^53, and the error paths.
 */

import assert from "node:assert/strict";
import { NovaError } from "../mod.ts";
import { type VaRange, VaRanges, VaRangesView } from "../mm/va_ranges.ts";
import { prng } from "../testing/prng.ts";

const KiB = 1024n;
const PAGE = 4n * KiB;

function code(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof NovaError) return e.code;
    throw e;
  }
}

/** The reference: taken ranges sorted by start, placement by a front-to-back scan. */
class Model {
  ranges: { start: bigint; end: bigint }[] = [];
  constructor(readonly size: bigint) {}

  findFree(size: bigint, align: bigint, lo: bigint, hi: bigint, phase: bigint): bigint | null {
    const p = phase % align;
    const up = (x: bigint) => x + ((p - (x % align)) % align + align) % align;
    const limit = hi < this.size ? hi : this.size;
    let cursor = up(lo);
    for (const r of this.ranges) {
      if (r.end <= cursor) continue;
      if (cursor + size <= r.start) break;
      cursor = up(r.end);
    }
    return cursor + size <= limit ? cursor : null;
  }

  overlaps(start: bigint, size: bigint): boolean {
    return this.ranges.some((r) => r.start < start + size && start < r.end);
  }

  add(start: bigint, size: bigint): void {
    this.ranges.push({ start, end: start + size });
    this.ranges.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  remove(start: bigint): void {
    this.ranges = this.ranges.filter((r) => r.start !== start);
  }

  taken(): bigint {
    return this.ranges.reduce((n, r) => n + (r.end - r.start), 0n);
  }

  find(va: bigint): bigint | undefined {
    return this.ranges.find((r) => r.start <= va && va < r.end)?.start;
  }
}

function agree(tree: VaRanges, model: Model, what: string): void {
  assert.equal(tree.count, model.ranges.length, `count ${what}`);
  const s = tree.stats();
  assert.equal(s.count, model.ranges.length, `stats.count ${what}`);
  assert.equal(s.taken, model.taken(), `stats.taken ${what}`);
  assert.equal(s.free, model.size - model.taken(), `stats.free ${what}`);
}

/** A random run of `ops` operations on a space of `size` bytes from `base` on. */
function randomRun(seed: number, size: bigint, base: bigint, ops: number, span: bigint): void {
  const rnd = prng(seed);
  const big = (n: bigint) => BigInt(Math.floor(rnd() * Number(n)));
  const tree = new VaRanges(size);
  const model = new Model(size);
  const live: VaRange[] = [];
  const randomSize = () => {
    const r = rnd();
    if (r < 0.1) return 1n + big(3n * PAGE); // byte granularity
    if (r < 0.85) return PAGE * (1n + big(32n));
    return 64n * KiB * (1n + big(40n));
  };
  const randomAlign = () => {
    const r = rnd();
    if (r < 0.1) return 1n << big(12n); // below 4 KiB
    if (r < 0.9) return 1n << (12n + big(10n)); // 4 KiB .. 2 MiB
    return 1n << (22n + big(13n)); // 4 MiB .. 16 GiB (past the largest class)
  };
  const randomPhase = (align: bigint) => {
    const r = rnd();
    if (r < 0.6) return 0n;
    if (r < 0.9) return align <= PAGE ? 0n : PAGE * big(align / PAGE);
    return big(align * 2n); // any value, also past the alignment
  };
  for (let op = 0; op < ops; op++) {
    const r = rnd();
    if (r < 0.5 || live.length === 0) {
      const len = randomSize();
      const align = randomAlign();
      const phase = randomPhase(align);
      const windowed = rnd() < 0.3;
      const lo = windowed ? base + big(span) : 0n;
      const hi = windowed ? lo + big(span / 4n) : size;
      const want = model.findFree(len, align, lo, hi, phase);
      assert.equal(
        tree.findFree(len, align, lo, hi, phase),
        want,
        `op ${op}: findFree(${len}, ${align}, ${lo}, ${hi}, ${phase})`,
      );
      if (windowed) continue;
      if (want === null) {
        assert.equal(code(() => tree.allocate(len, align, "m", phase)), "ENOSPC", `op ${op}`);
        continue;
      }
      const got = tree.allocate(len, align, "m", phase);
      assert.equal(got.start, want, `op ${op}: allocate`);
      live.push(got);
      model.add(want, len);
    } else if (r < 0.62) {
      const start = base + big(span / PAGE) * PAGE;
      const len = PAGE * (1n + big(8n));
      const bad = start + len > size ? "ENOSPC" : model.overlaps(start, len) ? "EBUSY" : null;
      assert.equal(code(() => live.push(tree.claim(start, len, "fixed"))), bad, `op ${op}`);
      if (bad === null) model.add(start, len);
    } else {
      const i = Math.floor(rnd() * live.length);
      const [gone] = live.splice(i, 1);
      tree.release(gone);
      model.remove(gone.start);
      assert.equal(code(() => tree.release(gone)), "EINVAL", `op ${op}: released twice`);
    }
    const probe = base + big(span);
    assert.equal(tree.find(probe)?.start, model.find(probe), `op ${op}: find(${probe})`);
    agree(tree, model, `after op ${op}`);
  }
  assert.deepEqual(tree.list().map((r) => r.start), model.ranges.map((r) => r.start));
  for (const r of live.splice(0)) tree.release(r);
  model.ranges = [];
  agree(tree, model, "after releasing everything");
  assert.equal(tree.findFree(size, 1n), 0n, "empty again: the whole space is one hole");
}

Deno.test("va ranges: random allocate / claim / release / findFree agree with a sorted list", () => {
  for (const seed of [1, 2, 3, 4]) randomRun(0xa11c + seed, 1n << 32n, 0n, 2500, 1n << 28n);
});

Deno.test("va ranges: a 2^57-byte space with its ranges past 2^53 agrees with the model", () => {
  const size = 1n << 57n;
  const base = size - (1n << 30n);
  // Fixed claims fill the top gigabyte; placement runs from 0, so anchor low ranges first.
  const rnd = prng(0x57);
  const tree = new VaRanges(size);
  const model = new Model(size);
  // Holes past 2^53 that are too small once aligned, and one that fits, near the top.
  const period = 128n * KiB;
  for (let i = 0n; i < 64n; i++) {
    const p = base + i * period;
    tree.claim(p, PAGE, "low");
    tree.claim(p + PAGE + 64n * KiB, period - PAGE - 64n * KiB, "high");
    model.add(p, PAGE);
    model.add(p + PAGE + 64n * KiB, period - PAGE - 64n * KiB);
  }
  // Everything below is taken, so the search has to go through the high holes.
  tree.claim(0n, base, "below");
  model.add(0n, base);
  for (let i = 0; i < 400; i++) {
    const len = PAGE * BigInt(1 + Math.floor(rnd() * 20));
    const align = PAGE << BigInt(Math.floor(rnd() * 6));
    const phase = rnd() < 0.5 ? 0n : PAGE * BigInt(Math.floor(rnd() * Number(align / PAGE)));
    const want = model.findFree(len, align, 0n, size, phase);
    assert.equal(tree.findFree(len, align, 0n, size, phase), want, `request ${i}`);
    if (want !== null && rnd() < 0.3) {
      tree.allocate(len, align, "m", phase);
      model.add(want, len);
    }
    agree(tree, model, `request ${i}`);
  }
  randomRun(0x5753, size, base, 800, 1n << 28n);
});

Deno.test("va ranges: 64 KiB holes at 4 KiB mod 64 KiB never fit a 64 KiB-aligned 64 KiB", () => {
  const holes = 4000n;
  const period = 128n * KiB;
  const size = 1n << 40n;
  const tree = new VaRanges(size);
  const model = new Model(size);
  const lows: VaRange[] = [];
  for (let i = 0n; i < holes; i++) {
    const p = i * period;
    // [p, p + 4K) taken, [p + 4K, p + 68K) free (64 KiB, misaligned), then taken to p + 128K.
    lows.push(tree.claim(p, PAGE, "low"));
    tree.claim(p + PAGE + 64n * KiB, period - PAGE - 64n * KiB, "high");
    model.add(p, PAGE);
    model.add(p + PAGE + 64n * KiB, period - PAGE - 64n * KiB);
  }
  const tail = holes * period;
  const big = 64n * KiB;
  assert.equal(tree.findFree(big, big), tail, "aligned: only past the last hole");
  assert.equal(model.findFree(big, big, 0n, size, 0n), tail);
  assert.equal(tree.findFree(big, big, 0n, size, PAGE), PAGE, "with a 4 KiB phase: the first hole");
  assert.equal(tree.findFree(big, PAGE), PAGE, "4 KiB-aligned: the first hole");
  assert.equal(tree.findFree(big + 1n, PAGE), tail, "one byte more: no hole holds it");
  assert.equal(tree.findFree(big, big, 0n, tail), null, "nothing fits below the tail");
  // Freeing one low range makes its hole [p, p + 68K): 64 KiB-aligned at p.
  const at = 2345n;
  tree.release(lows[Number(at)]);
  model.remove(at * period);
  assert.equal(tree.findFree(big, big), at * period);
  assert.equal(tree.findFree(big, big, at * period + 1n, size), tail, "lo past that start");
  assert.equal(tree.findFree(big, 2n * big), model.findFree(big, 2n * big, 0n, size, 0n));
  assert.equal(
    tree.findFree(big, 2n * big, 0n, size, big),
    model.findFree(big, 2n * big, 0n, size, big),
  );
  const got = tree.allocate(big, big, "mapping");
  assert.equal(got.start, at * period);
  model.add(at * period, big);
  agree(tree, model, "after the allocation");
  assert.equal(tree.findFree(big, big), tail);
});

Deno.test("va ranges: bad arguments change nothing; ENOSPC names the free bytes", () => {
  const tree = new VaRanges(1n << 24n);
  const a = tree.claim(0x10000n, 0x3000n, "firmware");
  tree.allocate(0x1000n, 0x1000n, "m");
  const before = JSON.stringify(tree.stats(), (_, v) => typeof v === "bigint" ? `${v}` : v);
  const view = new VaRangesView(tree);
  assert.deepEqual(view.stats(), tree.stats());
  assert.equal(code(() => tree.findFree(0x1000n, 3n)), "EINVAL");
  assert.equal(code(() => tree.findFree(0x1000n, 0n)), "EINVAL");
  assert.equal(code(() => tree.findFree(0n, 0x1000n)), "EINVAL");
  assert.equal(code(() => tree.allocate(0x1000n, 0x1000n, 7 as unknown as string)), "EINVAL");
  assert.equal(code(() => tree.claim(0x11000n, 0x1000n, "x")), "EBUSY");
  assert.equal(code(() => tree.claim(0xfff000n, 0x2000n, "x")), "ENOSPC");
  assert.equal(code(() => tree.release({ ...a })), "EINVAL", "a copy is not the live range");
  let message = "";
  try {
    tree.allocate(1n << 24n, 0x1000n, "m");
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /\(0xffc000 bytes free in 3 holes or fewer\)/);
  assert.equal(
    JSON.stringify(tree.stats(), (_, v) => typeof v === "bigint" ? `${v}` : v),
    before,
  );
  assert.equal(tree.count, 2);
});
