/**
 * GPU virtual-address range tracking for one address space: a sorted list
 * of taken ranges with first-fit allocation under an alignment, and fixed
 * claims that refuse overlap with EBUSY naming both ranges.
 *
 * nova-core v7 used a second buddy allocator here (and v12 a maple tree); a
 * sorted array with binary search is exact for any size and alignment and
 * costs O(log n) to find, O(n) to insert, with n = live ranges (small).
 *
 * @module
 */

import { fail, hex } from "../hw/errors.ts";

/** One taken VA range [start, end). */
export interface VaRange {
  /** First byte. */
  readonly start: bigint;
  /** One past the last byte. */
  readonly end: bigint;
  /** Who holds it (`firmware`, `mapping`, ...), for messages. */
  readonly owner: string;
}

function show(r: { start: bigint; end: bigint; owner?: string }): string {
  return `${r.owner ?? "range"} ${hex(r.start)}..${hex(r.end)}`;
}

/** The taken ranges of one address space of `size` bytes. */
export class VaRanges {
  /** Bytes of VA in the space. */
  readonly size: bigint;
  #ranges: VaRange[] = [];

  /** Constructs it (see the class documentation for who does and how). */
  constructor(size: bigint) {
    this.size = size;
  }

  /** Number of taken ranges. */
  get count(): number {
    return this.#ranges.length;
  }

  /** Taken ranges, ascending. */
  list(): readonly VaRange[] {
    return this.#ranges;
  }

  /** Index of the first range whose end is > va. */
  #firstEndingAfter(va: bigint): number {
    let lo = 0;
    let hi = this.#ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#ranges[mid].end > va) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The taken range containing `va`, if any. */
  find(va: bigint): VaRange | undefined {
    const r = this.#ranges[this.#firstEndingAfter(va)];
    return r !== undefined && r.start <= va ? r : undefined;
  }

  /** Checks [start, start + size) is free and inside the space; throws otherwise. */
  check(start: bigint, size: bigint, owner: string): void {
    const want = { start, end: start + size, owner };
    if (size <= 0n) fail("EINVAL", `VA range size ${hex(size)} must be positive`);
    if (start < 0n || want.end > this.size) {
      fail("ENOSPC", `${show(want)} is outside the ${hex(this.size)}-byte address space`);
    }
    const r = this.#ranges[this.#firstEndingAfter(start)];
    if (r !== undefined && r.start < want.end) {
      fail("EBUSY", `${show(want)} overlaps ${show(r)}`);
    }
  }

  /** Claims a fixed range (EBUSY on overlap, naming both). */
  claim(start: bigint, size: bigint, owner: string): VaRange {
    this.check(start, size, owner);
    const r: VaRange = Object.freeze({ start, end: start + size, owner });
    this.#ranges.splice(this.#firstEndingAfter(start), 0, r);
    return r;
  }

  /**
   * Finds the lowest free range of `size` bytes in [lo, hi) whose start is
   * `phase` modulo `align` (0: aligned); null if none.
   */
  findFree(size: bigint, align: bigint, lo = 0n, hi = this.size, phase = 0n): bigint | null {
    const up = (x: bigint) => x + ((phase - (x % align)) % align + align) % align;
    let cursor = up(lo);
    for (let i = this.#firstEndingAfter(cursor); i <= this.#ranges.length; i++) {
      const next = this.#ranges[i];
      const gapEnd = next === undefined ? hi : (next.start < hi ? next.start : hi);
      if (cursor + size <= gapEnd) return cursor;
      if (next === undefined || next.start >= hi) return null;
      cursor = up(next.end);
    }
    return null;
  }

  /**
   * Allocates the lowest free range starting at `phase` modulo `align` (ENOSPC
   * naming the size when none fits).
   */
  allocate(size: bigint, align: bigint, owner: string, phase = 0n): VaRange {
    const start = this.findFree(size, align, 0n, this.size, phase);
    if (start === null) {
      const free = this.size - this.#ranges.reduce((n, r) => n + (r.end - r.start), 0n);
      fail(
        "ENOSPC",
        `no free ${hex(size)}-byte VA range aligned to ${hex(align)} in the ${
          hex(this.size)
        }-byte address space (${hex(free)} bytes free in ${
          this.#ranges.length + 1
        } holes or fewer)`,
      );
    }
    return this.claim(start, size, owner);
  }

  /** Releases a range returned by claim/allocate. */
  release(range: VaRange): void {
    const i = this.#firstEndingAfter(range.start);
    if (this.#ranges[i] !== range) fail("EINVAL", `${show(range)} is not a live range here`);
    this.#ranges.splice(i, 1);
  }
}
