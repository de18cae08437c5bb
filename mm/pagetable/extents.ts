/**
 * Mappings as physical extents, and the page-size choice over them.
 *
 * A mapping is a list of extents (physically contiguous VRAM runs, in VA
 * order), not a frame number per 4 KiB page: `mapRange(pa, 1 GiB)` is one
 * extent. {@linkcode choosePages} turns extents into {@linkcode PteRuns} —
 * runs of equal-size pages, each physically contiguous — in O(extents +
 * PTEs) time and memory: a 1 GiB extent that maps as two 512 MiB pages costs
 * two steps, not 262,144.
 *
 * @module
 */

import { describe, fail, hex } from "../types.ts";
import { BLOCK, type ShadowTree, vaModulo, WORK_STEP, workDone, workStep } from "./tree.ts";

const PAGE = 4096;

const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK - 1;

/**
 * Numbers in chunks of 64 Ki (512 KiB): a list of millions grows without
 * ever copying (a 256 MiB typed array takes most of a second to allocate
 * and copy, and no Ctrl-C is heard meanwhile). The first chunk starts small
 * and doubles up to a full chunk.
 */
class Doubles {
  #chunks: Float64Array[];

  constructor(capacity: number) {
    this.#chunks = [new Float64Array(Math.min(CHUNK, Math.max(8, capacity)))];
  }

  get(i: number): number {
    return this.#chunks[i >>> CHUNK_BITS][i & CHUNK_MASK];
  }

  set(i: number, v: number): void {
    this.#chunks[i >>> CHUNK_BITS][i & CHUNK_MASK] = v;
  }

  /** Makes room for indices below `n`. */
  reserve(n: number): void {
    const chunks = this.#chunks;
    if (chunks.length === 1 && chunks[0].length < CHUNK && n > chunks[0].length) {
      let size = chunks[0].length;
      while (size < n && size < CHUNK) size *= 2;
      const grown = new Float64Array(size);
      grown.set(chunks[0]);
      chunks[0] = grown;
    }
    while (chunks.length * CHUNK < n && chunks[0].length === CHUNK) {
      chunks.push(new Float64Array(CHUNK));
    }
  }
}

/** One physically contiguous piece of a mapping. */
export interface Extent {
  /** VRAM address (4 KiB aligned). */
  readonly pa: number;
  /** Bytes (a positive multiple of 4 KiB). */
  readonly size: number;
}

/**
 * Extents as a flat list `[pa0, size0, pa1, size1, …]` (no object per extent).
 *
 * @example
 * ```ts
 * const e = ExtentList.fromPfns([0x100, 0x101, 0x200], 2 ** 30);
 * e.length; // 2
 * e.size(0); // 0x2000
 * ```
 */
export class ExtentList {
  #data: Doubles;
  #length = 0;
  #bytes = 0;

  /** An empty list with room for `capacity` extents. */
  constructor(capacity = 4) {
    this.#data = new Doubles(capacity * 2);
  }

  /** Number of extents. */
  get length(): number {
    return this.#length;
  }

  /** Total bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Physical address of extent `i`. */
  pa(i: number): number {
    return this.#data.get(2 * i);
  }

  /** Bytes of extent `i`. */
  size(i: number): number {
    return this.#data.get(2 * i + 1);
  }

  /** Appends [pa, pa + size), merging with the last extent when it continues it. */
  push(pa: number, size: number): void {
    const n = this.#length;
    this.#bytes += size;
    const d = this.#data;
    if (n > 0 && d.get(2 * n - 2) + d.get(2 * n - 1) === pa) {
      d.set(2 * n - 1, d.get(2 * n - 1) + size);
      return;
    }
    d.reserve(2 * n + 2);
    d.set(2 * n, pa);
    d.set(2 * n + 1, size);
    this.#length = n + 1;
  }

  /** The extents as objects (for callers; O(extents)). */
  toArray(): Extent[] {
    const out: Extent[] = [];
    for (let i = 0; i < this.#length; i++) out.push({ pa: this.pa(i), size: this.size(i) });
    return out;
  }

  /**
   * Checks 4 KiB frame numbers (each below `vramSize`) and coalesces
   * consecutive ones; EINVAL naming the first bad one.
   */
  static fromPfns(pfns: ArrayLike<number>, vramSize: number): ExtentList {
    if (pfns === null || typeof pfns !== "object" || typeof pfns.length !== "number") {
      fail("EINVAL", "pfns must be an array of 4 KiB page frame numbers");
    }
    if (pfns.length === 0) fail("EINVAL", "pfns is empty: nothing to map");
    const maxPfn = vramSize / PAGE;
    const out = new ExtentList();
    let start = -1;
    let run = 0;
    const n = pfns.length;
    for (let i = 0; i < n; i++) {
      // A long list: Ctrl-C is heard, and a terminal shows progress.
      if ((i & WORK_STEP) === 0) workStep(i, n, "checking pfns");
      const p = pfns[i];
      if (!Number.isSafeInteger(p) || p < 0 || p >= maxPfn) {
        fail(
          "EINVAL",
          `pfns[${i}] = ${describe(p)} is not a VRAM page frame number (VRAM has ${
            hex(maxPfn)
          } frames)`,
        );
      }
      if (run > 0 && p === start + run) {
        run++;
        continue;
      }
      if (run > 0) out.push(start * PAGE, run * PAGE);
      start = p;
      run = 1;
    }
    out.push(start * PAGE, run * PAGE);
    workDone(n, "checking pfns");
    return out;
  }

  /**
   * Checks extents (`{ pa, size }`, 4 KiB aligned, below `vramSize`, in VA
   * order; a non-empty array) and coalesces touching ones; EINVAL naming the
   * first bad one.
   */
  static fromExtents(extents: readonly Extent[], vramSize: number): ExtentList {
    if (!Array.isArray(extents) || extents.length === 0) {
      fail("EINVAL", `extents must be a non-empty array of { pa, size }, not ${describe(extents)}`);
    }
    const list = new ExtentList(extents.length);
    for (let i = 0; i < extents.length; i++) {
      const e = extents[i];
      if (e === null || typeof e !== "object") {
        fail("EINVAL", `extents[${i}] = ${describe(e)} is not a { pa, size } object`);
      }
      const one = ExtentList.range(e.pa, e.size, vramSize);
      list.push(one.pa(0), one.size(0));
    }
    return list;
  }

  /** One extent [pa, pa + size), checked against `vramSize`. */
  static range(pa: number, size: number, vramSize: number): ExtentList {
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % PAGE !== 0) {
      fail("EINVAL", `physical address ${describe(pa)} is not 4 KiB aligned`);
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
      fail("EINVAL", `size ${describe(size)} is not a positive multiple of 4 KiB`);
    }
    if (pa + size > vramSize) {
      fail(
        "EINVAL",
        `VRAM range ${hex(pa)} +${hex(size)} is past the end of VRAM (${hex(vramSize)})`,
      );
    }
    const out = new ExtentList(1);
    out.push(pa, size);
    return out;
  }
}

/**
 * Runs of equal-size, physically contiguous pages that tile a mapping in VA
 * order: run `i` maps `count(i)` pages of `pageSize(i)` from byte
 * `offset(i)` of the mapping to VRAM from `pa(i)`.
 */
export class PteRuns {
  #data: Doubles = new Doubles(16);
  #length = 0;
  #pages = 0;

  /** Pages in all runs. */
  get pages(): number {
    return this.#pages;
  }

  /** Number of runs. */
  get length(): number {
    return this.#length;
  }

  /** Byte offset of run `i` from the mapping's VA. */
  offset(i: number): number {
    return this.#data.get(4 * i);
  }

  /** Page size of run `i`. */
  pageSize(i: number): number {
    return this.#data.get(4 * i + 1);
  }

  /** Pages in run `i`. */
  count(i: number): number {
    return this.#data.get(4 * i + 2);
  }

  /** VRAM address of the first page of run `i`. */
  pa(i: number): number {
    return this.#data.get(4 * i + 3);
  }

  /** Appends `count` pages of `pageSize` at `offset` to `pa` (merged with the last run when it continues it). */
  push(offset: number, pageSize: number, count: number, pa: number): void {
    const n = this.#length;
    const d = this.#data;
    this.#pages += count;
    if (n > 0) {
      const j = 4 * (n - 1);
      const bytes = d.get(j + 1) * d.get(j + 2);
      if (
        d.get(j + 1) === pageSize && d.get(j) + bytes === offset && d.get(j + 3) + bytes === pa
      ) {
        d.set(j + 2, d.get(j + 2) + count);
        return;
      }
    }
    const j = 4 * n;
    d.reserve(j + 4);
    d.set(j, offset);
    d.set(j + 1, pageSize);
    d.set(j + 2, count);
    d.set(j + 3, pa);
    this.#length = n + 1;
  }

  /** The run holding byte `offset` of the mapping (binary search). */
  find(offset: number): number {
    let lo = 0;
    let hi = this.#length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offset(mid) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Pages by page size (sizes in the order they first appear; O(runs)). */
  pageCounts(): Map<number, number> {
    const by = new Map<number, number>();
    for (let i = 0; i < this.#length; i++) {
      by.set(this.pageSize(i), (by.get(this.pageSize(i)) ?? 0) + this.count(i));
    }
    return by;
  }

  /** The extents the runs map, coalesced (O(runs)). */
  extents(): ExtentList {
    const out = new ExtentList();
    for (let i = 0; i < this.#length; i++) out.push(this.pa(i), this.pageSize(i) * this.count(i));
    return out;
  }
}

/** What {@linkcode choosePages} needs besides the extents. */
export interface PageChoice {
  /** The shadow (huge pages need their directory entry free). */
  tree: ShadowTree;
  /** Page sizes the chip maps, largest first. */
  sizes: readonly number[];
  /** Largest size that needs no free directory entry (the big-page size). */
  bigPageSize: number;
  /** The mapping's VA as (2 MiB block, offset). */
  block: number;
  /** Offset of the VA inside its block. */
  offset: number;
  /** One forced page size, or undefined for the largest that fits. */
  forced: number | undefined;
}

/** A page size as a mapping's page counts name it: "4K", "2M", "1G". */
export function sizeName(n: number): string {
  if (n >= 2 ** 30) return `${n / 2 ** 30}G`;
  if (n >= 2 ** 20) return `${n / 2 ** 20}M`;
  return `${n / 1024}K`;
}

/**
 * Chooses page sizes: at each point the largest size the VA and PA are both
 * aligned to, that the rest of the extent covers and (for huge pages) whose
 * directory entry is free; then as many pages of it as fit before a larger
 * size could start. O(extents + PTEs). A forced size that does not fit
 * fails with EINVAL naming the 4 KiB page, its VA and PA.
 */
export function choosePages(extents: ExtentList, c: PageChoice): PteRuns {
  const runs = new PteRuns();
  const sizes = c.forced === undefined ? c.sizes : [c.forced];
  let offset = 0;
  const total = extents.length;
  for (let e = 0; e < total; e++) {
    if ((e & WORK_STEP) === 0) workStep(e, total, "choosing page sizes");
    const pa0 = extents.pa(e);
    const size = extents.size(e);
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
      if (chosen === 0) {
        const va = (BigInt(block) << 21n) + BigInt(off);
        fail(
          "EINVAL",
          `cannot map page ${(offset + pos) / PAGE} (VA ${hex(va)}, PA ${hex(pa)}) with ${
            sizeName(c.forced!)
          } pages: VA and PA must be ${hex(c.forced!)}-aligned and physically contiguous`,
        );
      }
      let n = 1;
      if (chosen <= c.bigPageSize) {
        n = Math.floor(rem / chosen);
        // Stop where a larger size (same VA/PA phase) could start and still fit.
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
      runs.push(offset + pos, chosen, n, pa);
      pos += n * chosen;
    }
    offset += size;
  }
  workDone(total, "choosing page sizes");
  return runs;
}

/**
 * Where a new mapping's VA may go, best first, as `[alignment, phase]`
 * pairs (a VA with `va % alignment === phase`): for each page size larger
 * than 4 KiB (of `sizes`, largest first) whose aligned block fits inside the
 * first physically contiguous extent, that size with the physical address's
 * offset modulo it (so that block maps as one big page); 4 KiB last. A
 * forced page size is the only choice.
 *
 * @example
 * ```ts
 * vaPlacements(ExtentList.range(0x200000, 0x400000, 2 ** 30), [2 ** 21, 65536, 4096], undefined);
 * // [[0x200000n, 0n], [0x10000n, 0n], [0x1000n, 0n]]
 * ```
 */
export function vaPlacements(
  extents: ExtentList,
  sizes: readonly number[],
  forced: number | undefined,
): [bigint, bigint][] {
  if (forced !== undefined) return [[BigInt(forced), 0n]];
  const pa = extents.pa(0);
  const end = pa + extents.size(0);
  const out: [bigint, bigint][] = [];
  for (const s of sizes) {
    if (s === PAGE) continue;
    const aligned = Math.ceil(pa / s) * s;
    if (aligned + s <= end) out.push([BigInt(s), BigInt(pa % s)]);
  }
  out.push([BigInt(PAGE), 0n]);
  return out;
}
