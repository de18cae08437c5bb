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
import { BLOCK, type ShadowTree, vaModulo } from "./tree.ts";

const PAGE = 4096;

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
  #data: Float64Array;
  #length = 0;
  #bytes = 0;

  /** An empty list with room for `capacity` extents. */
  constructor(capacity = 4) {
    this.#data = new Float64Array(Math.max(2, capacity * 2));
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
    return this.#data[2 * i];
  }

  /** Bytes of extent `i`. */
  size(i: number): number {
    return this.#data[2 * i + 1];
  }

  /** Appends [pa, pa + size), merging with the last extent when it continues it. */
  push(pa: number, size: number): void {
    const n = this.#length;
    this.#bytes += size;
    if (n > 0 && this.#data[2 * n - 2] + this.#data[2 * n - 1] === pa) {
      this.#data[2 * n - 1] += size;
      return;
    }
    if (2 * n + 2 > this.#data.length) {
      const grown = new Float64Array(this.#data.length * 2);
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[2 * n] = pa;
    this.#data[2 * n + 1] = size;
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
    for (let i = 0; i < pfns.length; i++) {
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
  #data: Float64Array = new Float64Array(16);
  #length = 0;

  /** Number of runs. */
  get length(): number {
    return this.#length;
  }

  /** Byte offset of run `i` from the mapping's VA. */
  offset(i: number): number {
    return this.#data[4 * i];
  }

  /** Page size of run `i`. */
  pageSize(i: number): number {
    return this.#data[4 * i + 1];
  }

  /** Pages in run `i`. */
  count(i: number): number {
    return this.#data[4 * i + 2];
  }

  /** VRAM address of the first page of run `i`. */
  pa(i: number): number {
    return this.#data[4 * i + 3];
  }

  /** Appends `count` pages of `pageSize` at `offset` to `pa` (merged with the last run when it continues it). */
  push(offset: number, pageSize: number, count: number, pa: number): void {
    const n = this.#length;
    const d = this.#data;
    if (n > 0) {
      const j = 4 * (n - 1);
      const bytes = d[j + 1] * d[j + 2];
      if (d[j + 1] === pageSize && d[j] + bytes === offset && d[j + 3] + bytes === pa) {
        d[j + 2] += count;
        return;
      }
    }
    if (4 * n + 4 > d.length) {
      const grown = new Float64Array(d.length * 2);
      grown.set(d);
      this.#data = grown;
    }
    const j = 4 * n;
    this.#data[j] = offset;
    this.#data[j + 1] = pageSize;
    this.#data[j + 2] = count;
    this.#data[j + 3] = pa;
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
  for (let e = 0; e < extents.length; e++) {
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
