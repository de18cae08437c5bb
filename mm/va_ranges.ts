/**
 * GPU virtual-address range tracking for one address space: the taken
 * ranges in a balanced search tree (a treap keyed by start), each node also
 * holding the free gap before it and, per power-of-two alignment class
 * (4 KiB .. 4 GiB, as the buddy keeps a free list per order), the largest
 * aligned range that fits in a gap of its subtree, so that lookup, claim,
 * release and first-fit placement under an alignment all cost O(log n), with
 * n = live ranges, even when many holes are large enough unaligned but not
 * aligned. Fixed claims refuse overlap with EBUSY naming both ranges.
 *
 * nova-core v7 used a second buddy allocator here (and v12 a maple tree); the
 * gap-augmented tree is exact for any size and alignment.
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import { checkVa } from "../hw/validate.ts";

/** One taken VA range [start, end). */
export interface VaRange {
  /** First byte. */
  readonly start: bigint;
  /** One past the last byte. */
  readonly end: bigint;
  /** Who holds it (`firmware`, `mapping`, ...), for messages. */
  readonly owner: string;
}

/** Ranges the inspect output lists before it says how many more. */
const VIEW_LIMIT = 16;

function show(r: { start: bigint; end: bigint; owner?: string }): string {
  return `${r.owner ?? "range"} [${hex(r.start)}, ${hex(r.end)})`;
}

/**
 * Alignment classes the tree keeps maxima for: class 0 is the raw gap (any
 * alignment up to the granularity of the ranges' ends), class c >= 1 the
 * largest range aligned to 2^(11 + c) that fits: 4 KiB (c = 1) up to 4 GiB
 * (c = {@linkcode CLASSES} - 1), which covers every GPU page size (4 KiB,
 * 64 KiB, 2 MiB, 512 MiB). A larger alignment filters by the 4 GiB class.
 */
const CLASSES = 22;
const MIN_CLASS_SHIFT = 12;
const MAX_CLASS_SHIFT = MIN_CLASS_SHIFT + CLASSES - 2;
/** Below this, addresses are exact as numbers. */
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

interface Node {
  readonly r: VaRange;
  /** End of the previous range (0 for the first): the free gap before this one is [gapLo, r.start). */
  gapLo: bigint;
  /**
   * [0, CLASSES): per alignment class, the size of the largest aligned range
   * that fits in this node's gap (negative when none), as a number: exact
   * below 2^53, else rounded to nearest, which keeps `fit >= need` whenever
   * the exact values compare so (rounding is monotone), so pruning by it is
   * sound. [CLASSES, 2 * CLASSES): the same, the maximum over this subtree.
   */
  readonly fit: number[];
  readonly prio: number;
  left: Node | null;
  right: Node | null;
}

/**
 * What a node's {@linkcode Node.fit} starts as (copied): doubles, so that
 * every node's array has one element kind and `pull` stays monomorphic.
 */
const FIT_TEMPLATE: readonly number[] = (() => {
  const out: number[] = [];
  for (let c = 0; c < 2 * CLASSES; c++) out.push(0.5);
  return out;
})();

/** Recomputes the node's own fits from its gap [gapLo, r.start). */
function measureGap(n: Node): void {
  const own = n.fit;
  const lo = n.gapLo;
  const hi = n.r.start;
  if (hi <= SAFE) {
    const l = Number(lo);
    const h = Number(hi);
    own[0] = h - l;
    // Multiples of 2^k below 2^(53 + k) are exact doubles: no rounding here.
    let c = 1;
    for (let a = 2 ** MIN_CLASS_SHIFT; c < CLASSES; c++, a *= 2) {
      const fit = h - Math.ceil(l / a) * a;
      own[c] = fit;
      if (fit < 0) break; // no multiple of a in the gap, so none of any larger power of two
    }
    for (c++; c < CLASSES; c++) own[c] = -1;
    return;
  }
  own[0] = Number(hi - lo);
  for (let c = 1; c < CLASSES; c++) {
    const a = 1n << BigInt(MIN_CLASS_SHIFT - 1 + c);
    own[c] = Number(hi - (lo + a - 1n) / a * a);
  }
}

function pull(n: Node): Node {
  const f = n.fit;
  const l = n.left === null ? null : n.left.fit;
  const r = n.right === null ? null : n.right.fit;
  for (let c = 0, m = CLASSES; c < CLASSES; c++, m++) {
    let v = f[c];
    if (l !== null && l[m] > v) v = l[m];
    if (r !== null && r[m] > v) v = r[m];
    f[m] = v;
  }
  return n;
}

/** Splits into (start < key, start >= key). */
function split(n: Node | null, key: bigint): [Node | null, Node | null] {
  if (n === null) return [null, null];
  if (n.r.start < key) {
    const [a, b] = split(n.right, key);
    n.right = a;
    return [pull(n), b];
  }
  const [a, b] = split(n.left, key);
  n.left = b;
  return [a, pull(n)];
}

function merge(a: Node | null, b: Node | null): Node | null {
  if (a === null) return b;
  if (b === null) return a;
  if (a.prio > b.prio) {
    a.right = merge(a.right, b);
    return pull(a);
  }
  b.left = merge(a, b.left);
  return pull(b);
}

/** Sets the gapLo of the leftmost node of `n` (its minimum) and re-pulls that spine. */
function setMinGap(n: Node, gapLo: bigint): void {
  if (n.left === null) {
    n.gapLo = gapLo;
    measureGap(n);
  } else setMinGap(n.left, gapLo);
  pull(n);
}

function maxNode(n: Node | null): Node | null {
  while (n !== null && n.right !== null) n = n.right;
  return n;
}

/**
 * The leftmost node with start > key whose gap holds `need` bytes in
 * alignment class `c` (a necessary condition the caller then checks exactly).
 */
function firstGap(n: Node | null, key: bigint, c: number, need: number): Node | null {
  while (n !== null) {
    if (n.fit[CLASSES + c] < need) return null;
    if (n.r.start > key) {
      const l = firstGap(n.left, key, c, need);
      if (l !== null) return l;
      if (n.fit[c] >= need) return n;
    }
    n = n.right;
  }
  return null;
}

/**
 * The alignment class whose maxima filter a request for a start that is
 * `phase` modulo `align` (phase < align): such a start is a multiple of
 * `align` (phase 0) or of the lowest set bit of `phase`, so it fits only
 * where an equally aligned range of the size fits. Exact for phase 0 and
 * alignments of 4 KiB to 4 GiB.
 */
function classFor(align: bigint, phase: bigint): number {
  // A power of two: exact as a double (up to 2^1023; past that it reads as Infinity).
  const shift = Math.log2(Number(phase === 0n ? align : phase & -phase));
  if (shift < MIN_CLASS_SHIFT) return 0;
  return (Math.min(shift, MAX_CLASS_SHIFT) - MIN_CLASS_SHIFT + 1) | 0;
}

/** A small deterministic PRNG for treap priorities (placement does not depend on it). */
function priorities(): () => number {
  let s = 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** The taken ranges of one address space of `size` bytes. */
export class VaRanges {
  /** Bytes of VA in the space. */
  readonly size: bigint;
  #root: Node | null = null;
  #count = 0;
  /** Bytes taken by all ranges. */
  #taken = 0n;
  readonly #prio = priorities();

  /** Constructs it (see the class documentation for who does and how). */
  constructor(size: bigint) {
    this.size = size;
  }

  /** Number of taken ranges. */
  get count(): number {
    return this.#count;
  }

  /**
   * Counts in O(1): ranges taken, bytes taken, bytes free (in however many
   * holes; `count + 1` at most).
   *
   * @example
   * ```ts
   * import { VaRanges } from "./va_ranges.ts";
   * const space = new VaRanges(1n << 30n);
   * space.claim(0x10000n, 0x2000n, "mapping");
   * space.stats(); // { count: 1, taken: 0x2000n, free: 0x3fffe000n }
   * ```
   */
  stats(): { count: number; taken: bigint; free: bigint } {
    return { count: this.#count, taken: this.#taken, free: this.size - this.#taken };
  }

  /** Taken ranges, ascending (O(n)). */
  list(): readonly VaRange[] {
    const out: VaRange[] = [];
    const stack: Node[] = [];
    let n = this.#root;
    while (n !== null || stack.length > 0) {
      while (n !== null) {
        stack.push(n);
        n = n.left;
      }
      n = stack.pop()!;
      out.push(n.r);
      n = n.right;
    }
    return out;
  }

  /** The node with the largest start <= va. */
  #floor(va: bigint): Node | null {
    let n = this.#root;
    let best: Node | null = null;
    while (n !== null) {
      if (n.r.start <= va) {
        best = n;
        n = n.right;
      } else n = n.left;
    }
    return best;
  }

  /** The node with the smallest start > va. */
  #above(va: bigint): Node | null {
    let n = this.#root;
    let best: Node | null = null;
    while (n !== null) {
      if (n.r.start > va) {
        best = n;
        n = n.left;
      } else n = n.right;
    }
    return best;
  }

  /** The taken range containing `va`, if any (O(log n)). */
  find(va: bigint): VaRange | undefined {
    va = checkVa(va, "VA");
    const f = this.#floor(va);
    return f !== null && f.r.end > va ? f.r : undefined;
  }

  /** Checks [start, start + size) is free and inside the space; throws otherwise. */
  check(start: bigint, size: bigint, owner: string): void {
    start = checkVa(start, "VA range start");
    size = checkVa(size, "VA range size");
    if (typeof owner !== "string") {
      fail("EINVAL", `VA range owner ${describe(owner)} is not a string`);
    }
    const want = { start, end: start + size, owner };
    if (size <= 0n) fail("EINVAL", `VA range size ${hex(size)} must be positive`);
    if (start < 0n || want.end > this.size) {
      fail("ENOSPC", `${show(want)} is outside the ${hex(this.size)}-byte address space`);
    }
    const before = this.#floor(start);
    if (before !== null && before.r.end > start) {
      fail("EBUSY", `${show(want)} overlaps ${show(before.r)}`);
    }
    const after = this.#above(start);
    if (after !== null && after.r.start < want.end) {
      fail("EBUSY", `${show(want)} overlaps ${show(after.r)}`);
    }
  }

  /** Claims a fixed range (EBUSY on overlap, naming both). */
  claim(start: bigint, size: bigint, owner: string): VaRange {
    this.check(start, size, owner);
    start = BigInt(start);
    size = BigInt(size);
    const r: VaRange = Object.freeze({ start, end: start + size, owner });
    const [a, b] = split(this.#root, start);
    const prev = maxNode(a);
    const node: Node = {
      r,
      gapLo: prev === null ? 0n : prev.r.end,
      fit: FIT_TEMPLATE.slice(),
      prio: this.#prio(),
      left: null,
      right: null,
    };
    measureGap(node);
    pull(node);
    if (b !== null) setMinGap(b, r.end);
    this.#root = merge(merge(a, node), b);
    this.#count++;
    this.#taken += size;
    return r;
  }

  /**
   * Finds the lowest free range of `size` bytes in [lo, hi) whose start is
   * `phase` modulo `align` (0: aligned); null if none. O(log n) for phase 0
   * and alignments of 4 KiB to 4 GiB, however many holes are too small once
   * aligned: the tree keeps per-alignment maxima, so only a gap that fits is
   * visited (and the ones holding lo and hi). With a phase, gaps are
   * filtered by the alignment the phase implies (its lowest set bit).
   */
  findFree(size: bigint, align: bigint, lo = 0n, hi = this.size, phase = 0n): bigint | null {
    size = checkVa(size, "VA size");
    align = checkVa(align, "VA alignment");
    lo = checkVa(lo, "VA lower bound");
    hi = checkVa(hi, "VA upper bound");
    phase = checkVa(phase, "VA phase");
    if (size === 0n) fail("EINVAL", "VA range size 0x0 must be positive");
    if (align === 0n || (align & (align - 1n)) !== 0n) {
      fail("EINVAL", `VA alignment ${hex(align)} is not a power of two`);
    }
    const up = (x: bigint) => x + ((phase - (x % align)) % align + align) % align;
    const fits = (gapLo: bigint, gapHi: bigint): bigint | null => {
      const cursor = up(gapLo > lo ? gapLo : lo);
      const end = gapHi < hi ? gapHi : hi;
      return cursor + size <= end ? cursor : null;
    };
    // Gaps before each range, lowest first, skipping those that cannot hold it aligned.
    const c = classFor(align, phase % align);
    const need = Number(size);
    let key = lo;
    for (;;) {
      const n = firstGap(this.#root, key, c, need);
      if (n === null) break;
      if (n.gapLo >= hi) return null;
      const at = fits(n.gapLo, n.r.start);
      if (at !== null) return at;
      key = n.r.start;
    }
    // The gap after the last range.
    const last = maxNode(this.#root);
    const tail = last === null ? 0n : last.r.end;
    if (tail >= hi) return null;
    return fits(tail, this.size);
  }

  /**
   * Allocates the lowest free range starting at `phase` modulo `align` (ENOSPC
   * naming the size when none fits).
   */
  allocate(size: bigint, align: bigint, owner: string, phase = 0n): VaRange {
    if (typeof owner !== "string") {
      fail("EINVAL", `VA range owner ${describe(owner)} is not a string`);
    }
    const start = this.findFree(size, align, 0n, this.size, phase);
    if (start === null) {
      const free = this.size - this.#taken;
      fail(
        "ENOSPC",
        `no free ${hex(size)}-byte VA range aligned to ${hex(align)} in the ${
          hex(this.size)
        }-byte address space (${hex(free)} bytes free in ${this.#count + 1} holes or fewer)`,
      );
    }
    return this.claim(start, size, owner);
  }

  /** Releases a range returned by claim/allocate. */
  release(range: VaRange): void {
    if (range === null || typeof range !== "object" || typeof range.start !== "bigint") {
      fail("EINVAL", `${describe(range)} is not a VA range of this address space`);
    }
    const f = this.#floor(range.start);
    if (f === null || f.r !== range) fail("EINVAL", `${show(range)} is not a live range here`);
    const [a, b] = split(this.#root, range.start);
    const [, c] = split(b, range.start + 1n);
    if (c !== null) setMinGap(c, f.gapLo);
    this.#root = merge(a, c);
    this.#count--;
    this.#taken -= range.end - range.start;
  }
}

/**
 * What an address space shows of its VA ranges: queries only. Claims and
 * releases go through the {@linkcode Vmm} that owns them (the BAR1 guard and
 * the mapper trust the ranges: claiming one as "firmware" from outside would
 * switch the guard off; releasing a live mapping's would let another mapping
 * overwrite its entries).
 */
export class VaRangesView {
  readonly #r: VaRanges;

  /** Made by the Vmm over its own ranges. */
  constructor(ranges: VaRanges) {
    if (!(ranges instanceof VaRanges)) {
      fail("EINVAL", `VaRangesView takes a VaRanges, not ${describe(ranges)}`);
    }
    this.#r = ranges;
  }

  /** Bytes of VA in the space. */
  get size(): bigint {
    return this.#r.size;
  }

  /** Number of taken ranges. */
  get count(): number {
    return this.#r.count;
  }

  /** Counts in O(1): ranges taken, bytes taken, bytes free. */
  stats(): { count: number; taken: bigint; free: bigint } {
    return this.#r.stats();
  }

  /** Taken ranges, ascending (O(n)). */
  list(): readonly VaRange[] {
    return this.#r.list();
  }

  /** The taken range containing `va`, if any (O(log n)). */
  find(va: bigint): VaRange | undefined {
    return this.#r.find(va);
  }

  /** The lowest free, `align`-aligned start for `size` bytes in [lo, hi), or null (no change made). */
  findFree(size: bigint, align: bigint, lo?: bigint, hi?: bigint, phase?: bigint): bigint | null {
    return this.#r.findFree(size, align, lo, hi, phase);
  }

  /**
   * The summary the REPL and `Deno.inspect` print: the count, then one line a
   * taken range (`mapping [0x0, 0x200000)`), the first 16, then how many more.
   */
  [Symbol.for("Deno.customInspect")](): string {
    const head = `VaRanges ${this.count} taken of ${
      hex(this.size)
    } (read-only: claims go through the Vmm)`;
    const shown: string[] = [];
    for (const r of this.#r.list()) {
      if (shown.length === VIEW_LIMIT) break;
      shown.push(`  ${show(r)}`);
    }
    const more = this.count - shown.length;
    return [head, ...shown, ...(more > 0 ? [`  ... ${more} more (.list() has all)`] : [])].join(
      "\n",
    );
  }

  /** The same text as the REPL prints (`${vmm.ranges}`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }
}
