/**
 * VRAM buddy allocator over the usable VRAM region (nova-core's `GpuBuddy`,
 * itself a wrapper of the kernel's `drm_buddy`): every allocation is a set of
 * naturally aligned power-of-two blocks of at least `minChunk` bytes, freed
 * blocks coalesce with their buddies, and the region need not be a power of
 * two (it starts as its maximal naturally aligned blocks).
 *
 * How the free state is kept, and why no per-order free lists: in a buddy
 * allocator that coalesces eagerly, the free blocks are exactly the maximal
 * naturally aligned blocks of its maximal free runs (two free buddies would
 * have merged, so an aligned block inside a free run can never be split over
 * several free blocks). The allocator therefore stores only the free runs, in
 * a treap ordered by address, and derives the blocks from them. Coalescing a
 * freed block with its buddies is then merging one run with its neighbours,
 * and the block lists per order come out the same as with explicit lists.
 *
 * Each tree node also keeps, for every alignment level `a` (A = minChunk·2^a,
 * up to the 2^40 VRAM address space), the largest `end - roundUp(start, A)`
 * over its subtree. One descent then finds the lowest A-aligned hole of S
 * bytes, also inside a `range`, in O(log m) for m free runs, whatever the
 * alignment (a per-order list cannot find a small free block that happens to
 * sit on a 2 MiB boundary without scanning). An update re-pulls one root path
 * and stops at the first summary that did not change. Memory is O(free runs
 * + live allocations), never O(VRAM size), and the number of levels (29 for
 * 4 KiB chunks) is fixed by the address space, not the region, so an 80 GiB
 * Hopper costs what a 1 GiB region costs.
 *
 * Placement is first fit by lowest address, so layouts are predictable.
 *
 * @example
 * ```ts
 * const buddy = new BuddyAllocator({ start: 0x200000, size: 0x5e8e00000 });
 * const a = buddy.alloc(6 << 20); // 4 MiB + 2 MiB blocks, 8 MiB aligned while such a hole is free
 * using pt = buddy.alloc(4096, { align: 2 << 20 }); // freed at scope end
 * a.free();
 * ```
 *
 * @module
 */

import { describe, fail, hex, inspectable, VRAM_ADDRESS_LIMIT } from "./types.ts";
import { interruptPoint } from "../hw/mmio.ts";
import { formatSize } from "../hw/errors.ts";

const DENO_INSPECT = Symbol.for("Deno.customInspect");
const NODE_INSPECT = Symbol.for("nodejs.util.inspect.custom");
const TWO_32 = 2 ** 32;
const OPTION_KEYS = new Set(["align", "range", "contiguous", "label"]);
/** Smallest minChunk: the 4 KiB GPU page, which also keeps chunk indices below 2^28. */
const MIN_CHUNK = 4096;

/** One naturally aligned power-of-two block (absolute VRAM byte address and size). */
export interface Block {
  /** First byte (a multiple of `size`). */
  readonly start: number;
  /** Bytes, a power of two ≥ the allocator's `minChunk`. */
  readonly size: number;
}

/** Where a {@linkcode BuddyAllocator} lives. */
export interface BuddyOptions {
  /** First byte of the region (a multiple of `minChunk`). */
  start: number;
  /** Bytes in the region (a positive multiple of `minChunk`; need not be a power of two). */
  size: number;
  /** Smallest block, a power of two; default 4096. */
  minChunk?: number;
}

/** Constraints of one {@linkcode BuddyAllocator.alloc} call. */
export interface AllocOptions {
  /**
   * Power-of-two alignment of the start. Contiguous default: the natural
   * alignment of the smallest power of two ≥ size (the covering buddy block),
   * falling back, like drm_buddy's "try harder" path, to any `minChunk`
   * boundary when no such hole is free: pass `align` to guarantee it. For
   * `contiguous: false` it is the minimum block size (default `minChunk`),
   * and the size is rounded up to a multiple of it.
   */
  align?: number;
  /** Only use bytes in [start, end) (multiples of `minChunk`, inside the region). */
  range?: { start: number; end: number };
  /** One address range (default) or any set of blocks, largest first. */
  contiguous?: boolean;
  /** What the allocation holds, shown by `allocations()` (`"PD2 of bar1"`); see {@linkcode Allocation.label}. */
  label?: string;
}

/** What {@linkcode BuddyAllocator.stats} reports (numbers are bytes). */
export interface BuddyStats {
  /** Bytes in the region. */
  total: number;
  /** Bytes not allocated. */
  free: number;
  /** Bytes allocated (`total - free`). */
  used: number;
  /** Size of the largest free block (0 when full). */
  largestFree: number;
  /** Free blocks by order (order k = `minChunk`·2^k bytes); orders with no block are absent. */
  blocksPerOrder: Record<number, number>;
  /** Allocations not yet freed. */
  liveAllocations: number;
  /** Maximal free runs: the allocator's whole internal state is one node per run. */
  freeExtents: number;
  /** The allocator's smallest block, to read `blocksPerOrder`. */
  minChunk: number;
}

// ---------------------------------------------------------------------------
// Exact power-of-two arithmetic on safe integers above 2^32 (bit operators
// only see 32 bits).

function lowBit(x: number): number {
  const lo = x >>> 0;
  if (lo !== 0) return (lo & -lo) >>> 0;
  const hi = Math.floor(x / TWO_32) >>> 0;
  return ((hi & -hi) >>> 0) * TWO_32;
}

function floorPow2(x: number): number {
  if (x < TWO_32) return 2 ** (31 - Math.clz32(x));
  return 2 ** (63 - Math.clz32(Math.floor(x / TWO_32)));
}

function log2Exact(pow2: number): number {
  if (pow2 < TWO_32) return 31 - Math.clz32(pow2);
  return 63 - Math.clz32(Math.floor(pow2 / TWO_32));
}

function isPow2(x: number): boolean {
  return Number.isSafeInteger(x) && x > 0 && lowBit(x) === x;
}

function roundUp(x: number, pow2: number): number {
  return Math.ceil(x / pow2) * pow2;
}

/** Calls `visit` for each maximal naturally aligned block of [s, e), lowest first. */
function decompose(s: number, e: number, visit: (start: number, size: number) => void): void {
  while (s < e) {
    const fit = floorPow2(e - s);
    const size = s === 0 || lowBit(s) > fit ? fit : lowBit(s);
    visit(s, size);
    s += size;
  }
}

/**
 * Adds `sign` to `orders[k]` for each maximal naturally aligned block of
 * chunks [s, e) (2^k chunks each), the blocks {@linkcode decompose} yields, in
 * chunk units (indices below 2^28: 32-bit arithmetic is exact). With h the
 * highest bit where s and e differ and m = e rounded down to 2^h, [s, m) is
 * one block per set bit of m - s and [m, e) one per set bit of e - m.
 */
function tally(orders: Int32Array, s: number, e: number, sign: number): void {
  if (s >= e) return;
  const h = 31 - Math.clz32(s ^ e);
  const m = (e >>> h) << h;
  for (let x = m - s; x !== 0; x &= x - 1) orders[31 - Math.clz32(x & -x)] += sign;
  for (let x = e - m; x !== 0; x &= x - 1) orders[31 - Math.clz32(x & -x)] += sign;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------------------
// The free runs: a treap keyed by run start, augmented per alignment level.
// Everything in it counts chunks, not bytes: with minChunk ≥ 4 KiB and VRAM
// below 2^40 a chunk index is below 2^28, so the per-level arithmetic is
// 32-bit integer work (no float modulo on the hot path).

class Run {
  /** First chunk. */
  s = 0;
  /** One past the last chunk. */
  e = 0;
  pri = 0;
  l: Run | null = null;
  r: Run | null = null;
  /** best[a]: max over the subtree of `e - roundUp(s, 2^a)`, the longest 2^a-aligned hole. */
  readonly best: Int32Array;
  constructor(levels: number) {
    this.best = new Int32Array(levels);
  }
}

class RunTree {
  root: Run | null = null;
  count = 0;
  /** Alignment levels 0..levels-1: 2^a chunks, up to the 2^40-byte address space. */
  readonly levels: number;
  #seed = 0x2545f491;
  #pool: Run[] = [];

  constructor(levels: number) {
    this.levels = levels;
  }

  #priority(): number {
    // xorshift32: deterministic shapes, so timings repeat run to run.
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed;
  }

  /** Levels [changedLo, changedHi] that the last pull changed. */
  #changedLo = 0;
  #changedHi = 0;

  /** Recomputes n.best from n and its children; false when nothing changed. */
  pull(n: Run): boolean {
    return this.#pullLevels(n, 0, this.levels - 1);
  }

  /** Recomputes levels [from, to] of n.best; records which changed. */
  #pullLevels(n: Run, from: number, to: number): boolean {
    const best = n.best;
    const s = n.s;
    const e = n.e;
    let lo = -1;
    let hi = -1;
    if (n.l === null && n.r === null) {
      for (let a = from; a <= to; a++) {
        const v = e - ((s + (1 << a) - 1) & -(1 << a));
        if (best[a] !== v) {
          best[a] = v;
          if (lo < 0) lo = a;
          hi = a;
        }
      }
    } else {
      const lb = n.l !== null ? n.l.best : (n.r as Run).best;
      const rb = n.r !== null ? n.r.best : lb;
      for (let a = from; a <= to; a++) {
        let v = e - ((s + (1 << a) - 1) & -(1 << a));
        const l = lb[a];
        const r = rb[a];
        if (l > v) v = l;
        if (r > v) v = r;
        if (best[a] !== v) {
          best[a] = v;
          if (lo < 0) lo = a;
          hi = a;
        }
      }
    }
    this.#changedLo = lo;
    this.#changedHi = hi;
    return lo >= 0;
  }

  /** This run's own longest 2^a-aligned hole. */
  own(n: Run, a: number): number {
    return n.e - ((n.s + (1 << a) - 1) & -(1 << a));
  }

  // Updates are iterative over #path (root first) so that re-pulling can stop
  // at the first ancestor whose summary did not change: most updates touch a
  // few nodes, not the whole depth.
  #path: Run[] = [];

  /** Fills #path with the nodes from the root down to the run starting at `key`. */
  #walk(key: number): Run {
    const path = this.#path;
    path.length = 0;
    let t = this.root;
    while (t !== null) {
      path.push(t);
      if (key === t.s) return t;
      t = key < t.s ? t.l : t.r;
    }
    throw new Error(`buddy: no free run at chunk ${key}`); // internal invariant
  }

  /**
   * Re-pulls #path[top], #path[top - 1], ... until a summary comes out
   * unchanged. A parent's level a depends only on its children's level a, so
   * each ancestor recomputes only the levels its child changed.
   */
  #repull(top: number): void {
    const path = this.#path;
    let from = 0;
    let to = this.levels - 1;
    for (let i = top; i >= 0; i--) {
      if (!this.#pullLevels(path[i], from, to)) return;
      from = this.#changedLo;
      to = this.#changedHi;
    }
  }

  #link(parent: Run | null, old: Run, child: Run | null): void {
    if (parent === null) this.root = child;
    else if (parent.l === old) parent.l = child;
    else parent.r = child;
  }

  insert(s: number, e: number): void {
    const n = this.#pool.pop() ?? new Run(this.levels);
    n.s = s;
    n.e = e;
    n.l = null;
    n.r = null;
    n.pri = this.#priority();
    this.pull(n);
    this.count++;
    const path = this.#path;
    path.length = 0;
    if (this.root === null) {
      this.root = n;
      return;
    }
    let t: Run = this.root;
    for (;;) {
      path.push(t);
      const next: Run | null = s < t.s ? t.l : t.r;
      if (next === null) break;
      t = next;
    }
    if (s < t.s) t.l = n;
    else t.r = n;
    // Treap order: rotate n up past parents of lower priority.
    let i = path.length - 1;
    while (i >= 0 && path[i].pri < n.pri) {
      const p = path[i];
      if (p.l === n) {
        p.l = n.r;
        n.r = p;
      } else {
        p.r = n.l;
        n.l = p;
      }
      this.pull(p);
      this.#link(i > 0 ? path[i - 1] : null, p, n);
      i--;
    }
    if (i < path.length - 1) this.pull(n);
    this.#repull(i);
  }

  remove(key: number): void {
    const t = this.#walk(key);
    const path = this.#path;
    path.pop();
    const top = path.length - 1; // t's parent, if any
    let parent = top >= 0 ? path[top] : null;
    // Rotate t down until it has at most one child, then splice it out.
    while (t.l !== null && t.r !== null) {
      let c: Run;
      if (t.l.pri > t.r.pri) {
        c = t.l;
        t.l = c.r;
        c.r = t;
      } else {
        c = t.r;
        t.r = c.l;
        c.l = t;
      }
      this.#link(parent, t, c);
      path.push(c);
      parent = c;
    }
    this.#link(parent, t, t.l !== null ? t.l : t.r);
    t.l = null;
    t.r = null;
    this.#pool.push(t);
    this.count--;
    // Rotated nodes changed shape: pull them all; above them stop early.
    for (let i = path.length - 1; i > top; i--) this.pull(path[i]);
    this.#repull(top);
  }

  /** Re-pulls the path to the run now starting at `key` after it changed in place (order kept). */
  touch(key: number): void {
    this.#walk(key);
    this.#repull(this.#path.length - 1);
  }

  /** The run with the largest start ≤ x (or < x when `strict`). */
  floor(x: number, strict: boolean): Run | null {
    let t = this.root;
    let hit: Run | null = null;
    while (t !== null) {
      if (t.s < x || (!strict && t.s === x)) {
        hit = t;
        t = t.r;
      } else {
        t = t.l;
      }
    }
    return hit;
  }

  /** The run with the smallest start ≥ x. */
  ceil(x: number): Run | null {
    let t = this.root;
    let hit: Run | null = null;
    while (t !== null) {
      if (t.s >= x) {
        hit = t;
        t = t.l;
      } else {
        t = t.r;
      }
    }
    return hit;
  }

  /** Leftmost run of the subtree whose 2^a-aligned hole holds `need` chunks. */
  leftmost(t: Run | null, a: number, need: number): Run | null {
    if (t === null || t.best[a] < need) return null;
    for (;;) {
      if (t.l !== null && t.l.best[a] >= need) t = t.l;
      else if (this.own(t, a) >= need) return t;
      else t = t.r as Run; // best says the hole is here or right
    }
  }

  /** As {@linkcode leftmost}, among runs starting in [lo, hi). */
  leftmostIn(t: Run | null, a: number, need: number, lo: number, hi: number): Run | null {
    while (t !== null && (t.s < lo || t.s >= hi)) t = t.s < lo ? t.r : t.l;
    if (t === null) return null;
    return this.#leftmostFrom(t.l, a, need, lo) ??
      (this.own(t, a) >= need ? t : this.#leftmostBelow(t.r, a, need, hi));
  }

  // Runs starting ≥ lo (the upper bound is implied by the caller's split node).
  #leftmostFrom(t: Run | null, a: number, need: number, lo: number): Run | null {
    if (t === null || t.best[a] < need) return null;
    if (t.s < lo) return this.#leftmostFrom(t.r, a, need, lo);
    return this.#leftmostFrom(t.l, a, need, lo) ??
      (this.own(t, a) >= need ? t : this.leftmost(t.r, a, need));
  }

  // Runs starting < hi (the lower bound is implied by the caller's split node).
  #leftmostBelow(t: Run | null, a: number, need: number, hi: number): Run | null {
    while (t !== null && t.best[a] >= need) {
      if (t.s >= hi) {
        t = t.l;
        continue;
      }
      if (t.l !== null && t.l.best[a] >= need) return this.leftmost(t.l, a, need);
      if (this.own(t, a) >= need) return t;
      t = t.r;
    }
    return null;
  }

  /** In-order walk. */
  forEach(visit: (run: Run) => void): void {
    const stack: Run[] = [];
    let t = this.root;
    while (t !== null || stack.length > 0) {
      while (t !== null) {
        stack.push(t);
        t = t.l;
      }
      const n = stack.pop() as Run;
      visit(n);
      t = n.r;
    }
  }
}

// ---------------------------------------------------------------------------
// Allocations.

const ISSUE = Symbol("novamm.buddy.issue");
let ownerOf: (a: Allocation) => BuddyAllocator;
let runsOf: (a: Allocation) => readonly number[];
let retire: (a: Allocation) => boolean;

/**
 * What {@linkcode BuddyAllocator.alloc} returns: a reservation of `size`
 * bytes made of naturally aligned power-of-two `blocks`. Free it with
 * `free()`, or let a `using` declaration free it at scope end.
 *
 * @example
 * ```ts
 * const buddy = new BuddyAllocator({ start: 0x200000, size: 1 << 30 });
 * const a = buddy.alloc(12 << 10); // Allocation 0x200000 +12 KiB (2 blocks)
 * a.blocks; // [{ start: 0x200000, size: 0x2000 }, { start: 0x202000, size: 0x1000 }]
 * a.free();
 * ```
 */
export class Allocation {
  /** First byte; for a contiguous allocation the whole range is [start, start + size). */
  readonly start: number;
  /** Bytes reserved: the request rounded up to `minChunk` (to `align` when non-contiguous). */
  readonly size: number;
  /** Whether the blocks form one address range. */
  readonly contiguous: boolean;
  #owner: BuddyAllocator;
  #runs: readonly number[];
  #blocks: readonly Block[] | undefined;
  #live = true;
  #users: string[] = [];
  /**
   * What it holds, for people (`"PD2 of bar1"`, `"instance block of bar1"`),
   * or null: printed after the summary. Page tables, address-space roots and
   * instance blocks are labelled by who allocates them.
   */
  label: string | null = null;

  /** Allocations come from {@linkcode BuddyAllocator.alloc}; this constructor is not public API. */
  constructor(
    issue: symbol,
    owner: BuddyAllocator,
    runs: readonly number[],
    contiguous: boolean,
  ) {
    if (issue !== ISSUE) throw new TypeError("Allocation objects come from BuddyAllocator.alloc()");
    this.#owner = owner;
    this.#runs = runs;
    this.contiguous = contiguous;
    this.start = runs[0];
    let size = 0;
    for (let i = 0; i < runs.length; i += 2) size += runs[i + 1] - runs[i];
    this.size = size;
  }

  /**
   * Marks the allocation as in use by `what` (a BAR1 mapping of it, say):
   * `free()` refuses with EBUSY naming the users until every returned
   * release function has run.
   */
  pin(what: string): () => void {
    if (typeof what !== "string" || what === "") {
      fail("EINVAL", `pin takes a non-empty string naming the user, not ${describe(what)}`);
    }
    if (!this.live) fail("EINVAL", `${String(this)} has been freed: nothing to pin`);
    this.#users.push(what);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#users.splice(this.#users.indexOf(what), 1);
    };
  }

  /** What pinned it and has not released it. */
  get users(): readonly string[] {
    return this.#users;
  }

  static {
    ownerOf = (a) => a.#owner;
    runsOf = (a) => a.#runs;
    retire = (a) => {
      const was = a.#live;
      a.#live = false;
      return was;
    };
  }

  /** The naturally aligned power-of-two blocks, in allocation order (largest first). */
  get blocks(): readonly Block[] {
    if (this.#blocks === undefined) {
      const out: Block[] = [];
      const runs = this.#runs;
      for (let i = 0; i < runs.length; i += 2) {
        decompose(runs[i], runs[i + 1], (start, size) => out.push(Object.freeze({ start, size })));
      }
      this.#blocks = Object.freeze(out);
    }
    return this.#blocks;
  }

  /** False once freed. */
  get live(): boolean {
    return this.#live;
  }

  /** Returns the blocks to the allocator; a second call is a double free (EINVAL). */
  free(): void {
    this.#owner.free(this);
  }

  /** Frees unless already freed, so `using a = buddy.alloc(...)` is safe after `a.free()`. */
  [Symbol.dispose](): void {
    if (this.#live) this.#owner.free(this);
  }

  /** `Allocation 0x12340000 +4 MiB (1 block)`. */
  toString(): string {
    // A scattered allocation's runs are single blocks; a contiguous one is decomposed.
    const n = this.contiguous ? this.blocks.length : this.#runs.length / 2;
    const notes = [plural(n, "block")];
    if (!this.contiguous) notes.push("non-contiguous");
    if (!this.#live) notes.push("freed");
    return `Allocation ${hex(this.start)} +${formatSize(this.size)} (${notes.join(", ")})${
      this.label === null ? "" : ` ${this.label}`
    }`;
  }

  /** The one-line summary in Deno's REPL and `console.log`. */
  [DENO_INSPECT](): string {
    return this.toString();
  }

  /** The one-line summary in `node:util` inspect. */
  [NODE_INSPECT](): string {
    return this.toString();
  }
}

function summarizeStats(s: BuddyStats): string {
  const blocks = Object.entries(s.blocksPerOrder)
    .map(([order, n]) => `${formatSize(s.minChunk * 2 ** Number(order))}×${n}`)
    .join(" ");
  return `BuddyStats ${formatSize(s.total)} total, ${formatSize(s.free)} free, ` +
    `${formatSize(s.used)} used, largest free block ${formatSize(s.largestFree)}, ` +
    `${plural(s.liveAllocations, "live allocation")}, ${plural(s.freeExtents, "free run")}` +
    (blocks === "" ? "" : `; free blocks ${blocks}`);
}

// ---------------------------------------------------------------------------

/**
 * A buddy allocator over [start, start + size) of VRAM: O(log n) per
 * operation, memory proportional to live blocks (see the module notes).
 *
 * @example
 * ```ts
 * const buddy = new BuddyAllocator({ start: 0x200000, size: 24 << 20 });
 * const pt = buddy.alloc(4096);                      // lowest free 4 KiB: 0x200000
 * const big = buddy.alloc(6 << 20);                  // 0x800000: 4 MiB + 2 MiB
 * const a = buddy.alloc(4096, { align: 2 << 20 });   // 0x400000
 * const s = buddy.alloc(64 << 10, { contiguous: false, range: { start: 0x200000, end: 0x400000 } });
 * buddy.stats(); // BuddyStats 24 MiB total, ...
 * ```
 */
export class BuddyAllocator {
  /** First byte of the region. */
  readonly start: number;
  /** Bytes in the region. */
  readonly size: number;
  /** One past the last byte of the region. */
  readonly end: number;
  /** Smallest block. */
  readonly minChunk: number;
  #runs: RunTree;
  /** Free bytes. */
  #free: number;
  /** Free blocks per order (2^k chunks), kept as runs change so stats() never walks the runs. */
  #orders: Int32Array;
  readonly #allocations = new Set<Allocation>();
  /** The run the last successful #find landed in. */
  #hit: Run | null = null;

  /**
   * Covers [start, start + size) with its maximal naturally aligned blocks,
   * all free. O(1): nothing is allocated per chunk or per block.
   */
  constructor(options: BuddyOptions) {
    if (typeof options !== "object" || options === null) {
      fail("EINVAL", `BuddyAllocator options ${describe(options)} is not an object`);
    }
    const { start, size, minChunk = 4096 } = options;
    if (!isPow2(minChunk) || minChunk < MIN_CHUNK) {
      fail(
        "EINVAL",
        `buddy minChunk ${describe(minChunk)} is not a power of two ≥ ${hex(MIN_CHUNK)} ` +
          `(the smallest GPU page)`,
      );
    }
    if (typeof start !== "number" || !Number.isSafeInteger(start) || start < 0) {
      fail("EINVAL", `buddy start ${describe(start)} is not a non-negative integer`);
    }
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
      fail("EINVAL", `buddy size ${describe(size)} is not a positive integer`);
    }
    if (start % minChunk !== 0 || size % minChunk !== 0) {
      fail(
        "EINVAL",
        `buddy region [${hex(start)}, +${hex(size)}) is not aligned to minChunk ${hex(minChunk)}`,
      );
    }
    if (start + size > VRAM_ADDRESS_LIMIT) {
      fail(
        "EOVERFLOW",
        `buddy region end ${hex(start + size)} is beyond the VRAM limit ${hex(VRAM_ADDRESS_LIMIT)}`,
      );
    }
    this.start = start;
    this.size = size;
    this.end = start + size;
    this.minChunk = minChunk;
    this.#runs = new RunTree(log2Exact(VRAM_ADDRESS_LIMIT / minChunk) + 1);
    this.#runs.insert(start / minChunk, this.end / minChunk);
    this.#orders = new Int32Array(this.#runs.levels);
    tally(this.#orders, start / minChunk, this.end / minChunk, 1);
    this.#free = size;
  }

  /**
   * Reserves `size` bytes (rounded up to `minChunk`): the lowest suitable
   * address wins. Throws EINVAL for a bad size, align or range (or one that
   * can never fit) and ENOMEM when the free space cannot hold it now; either
   * way nothing changes.
   *
   * @example
   * ```ts
   * const buddy = new BuddyAllocator({ start: 0, size: 4 * 2 ** 30 });
   * buddy.alloc(2 << 20);                                // 2 MiB, 2 MiB aligned
   * buddy.alloc(4096, { align: 64 << 10 });              // one 4 KiB block on a 64 KiB boundary
   * buddy.alloc(3 * 4096, { range: { start: 0x203000, end: 0x206000 } }); // exactly there
   * buddy.alloc(1 << 30, { contiguous: false });         // several blocks, largest first
   * ```
   */
  alloc(size: number, options?: AllocOptions): Allocation {
    const label = options?.label;
    if (label !== undefined && typeof label !== "string") {
      fail("EINVAL", `alloc label ${describe(label)} is not a string`);
    }
    const a = this.#alloc(size, options);
    if (label !== undefined) a.label = label;
    return a;
  }

  #alloc(size: number, options?: AllocOptions): Allocation {
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
      fail("EINVAL", `alloc size ${describe(size)} is not a positive integer number of bytes`);
    }
    if (size > this.size) {
      fail("EINVAL", `alloc size ${hex(size)} exceeds the allocator's total ${hex(this.size)}`);
    }
    let align: number | undefined;
    let contiguous = true;
    let lo = this.start;
    let hi = this.end;
    let ranged = false;
    if (options !== undefined) {
      if (typeof options !== "object" || options === null) {
        fail("EINVAL", `alloc options ${describe(options)} is not an object`);
      }
      for (const key in options) {
        if (!OPTION_KEYS.has(key)) {
          fail(
            "EINVAL",
            `unknown alloc option ${JSON.stringify(key)} (align, range, contiguous, label)`,
          );
        }
      }
      if (options.contiguous !== undefined) {
        if (typeof options.contiguous !== "boolean") {
          fail("EINVAL", `alloc contiguous ${describe(options.contiguous)} is not a boolean`);
        }
        contiguous = options.contiguous;
      }
      if (options.align !== undefined) {
        align = options.align;
        if (!isPow2(align)) fail("EINVAL", `alloc align ${describe(align)} is not a power of two`);
        if (align < this.minChunk) align = this.minChunk; // every block start already is
      }
      if (options.range !== undefined) {
        [lo, hi] = this.#checkRange(options.range);
        ranged = lo !== this.start || hi !== this.end;
      }
    }
    return contiguous
      ? this.#allocContiguous(size, align, lo, hi, ranged)
      : this.#allocScattered(size, align ?? this.minChunk, lo, hi, ranged);
  }

  #checkRange(range: { start: number; end: number }): [number, number] {
    if (typeof range !== "object" || range === null) {
      fail("EINVAL", `alloc range ${describe(range)} is not a { start, end } object`);
    }
    const { start, end } = range;
    for (const [what, v] of [["start", start], ["end", end]] as const) {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
        fail("EINVAL", `alloc range ${what} ${describe(v)} is not a non-negative integer`);
      }
      if (v % this.minChunk !== 0) {
        fail("EINVAL", `alloc range ${what} ${hex(v)} is not a multiple of ${hex(this.minChunk)}`);
      }
    }
    if (start >= end) fail("EINVAL", `alloc range [${hex(start)}, ${hex(end)}) is empty`);
    if (start < this.start || end > this.end) {
      fail(
        "EINVAL",
        `alloc range [${hex(start)}, ${hex(end)}) is outside the region [${hex(this.start)}, ${
          hex(this.end)
        })`,
      );
    }
    return [start, end];
  }

  /** Alignment level (2^level chunks) of a power of two ≥ minChunk; ≥ 2^40 acts as 2^40. */
  #levelOf(pow2: number): number {
    if (pow2 >= VRAM_ADDRESS_LIMIT) return this.#runs.levels - 1;
    return log2Exact(pow2 / this.minChunk);
  }

  #allocContiguous(
    size: number,
    align: number | undefined,
    lo: number,
    hi: number,
    ranged: boolean,
  ): Allocation {
    const unit = this.minChunk;
    const need = roundUp(size, unit);
    if (hi - lo < need) {
      fail("EINVAL", `alloc size ${hex(need)} does not fit in range [${hex(lo)}, ${hex(hi)})`);
    }
    const n = need / unit;
    const l = lo / unit;
    const h = hi / unit;
    let p = -1;
    if (align !== undefined) {
      if (roundUp(lo, align) + need > hi) {
        fail(
          "EINVAL",
          `no ${hex(align)}-aligned position in [${hex(lo)}, ${hex(hi)}) fits ${hex(need)} bytes`,
        );
      }
      p = this.#find(n, this.#levelOf(align), l, h, ranged);
    } else {
      // The covering buddy block's alignment first (drm_buddy's round-up and
      // trim, without keeping the tail), then any chunk boundary (its "try
      // harder" path).
      const cover = floorPow2(need) === need ? need : floorPow2(need) * 2;
      if (roundUp(lo, cover) + need <= hi) p = this.#find(n, this.#levelOf(cover), l, h, ranged);
      if (p < 0 && cover > unit) p = this.#find(n, 0, l, h, ranged);
    }
    if (p < 0) this.#noMemory(size, "contiguous", align, ranged ? [lo, hi] : undefined, need);
    this.#carve(this.#hit as Run, p, p + n);
    return this.#track(new Allocation(ISSUE, this, [p * unit, (p + n) * unit], true));
  }

  #allocScattered(
    size: number,
    minBlock: number,
    lo: number,
    hi: number,
    ranged: boolean,
  ): Allocation {
    const need = roundUp(size, minBlock);
    if (need > this.size) {
      fail(
        "EINVAL",
        `alloc size ${hex(size)} rounded to blocks of ${hex(minBlock)} is ${hex(need)}, ` +
          `more than the allocator's total ${hex(this.size)}`,
      );
    }
    if (Math.floor(hi / minBlock) - Math.ceil(lo / minBlock) < need / minBlock) {
      fail(
        "EINVAL",
        `range [${hex(lo)}, ${hex(hi)}) holds fewer than ${hex(need)} bytes ` +
          `of ${hex(minBlock)}-aligned blocks`,
      );
    }
    const where = ranged ? [lo, hi] as [number, number] : undefined;
    const align = minBlock === this.minChunk ? undefined : minBlock;
    if (this.#free < need) this.#noMemory(size, "non-contiguous", align, where, need);
    const unit = this.minChunk;
    const l = lo / unit;
    const h = hi / unit;
    const minLevel = this.#levelOf(minBlock);
    const taken: number[] = []; // chunk indices until the end
    let left = need / unit;
    let level = this.#levelOf(floorPow2(need));
    while (left > 0) {
      const block = 1 << level;
      const p = block <= left ? this.#find(block, level, l, h, ranged) : -1;
      if (p < 0) {
        if (level === minLevel) {
          for (let i = taken.length - 2; i >= 0; i -= 2) this.#release(taken[i], taken[i + 1]);
          this.#noMemory(size, "non-contiguous", align, where, need);
        }
        level--;
        continue;
      }
      this.#carve(this.#hit as Run, p, p + block);
      taken.push(p, p + block);
      left -= block;
    }
    for (let i = 0; i < taken.length; i++) taken[i] *= unit;
    return this.#track(new Allocation(ISSUE, this, taken, false));
  }

  /**
   * Lowest p (in chunks), a multiple of 2^level, with [p, p + need) free and
   * inside [lo, hi); -1 if none. The runs crossing lo or hi are checked by
   * hand, the runs strictly inside by one augmented descent: O(log runs).
   */
  #find(need: number, level: number, lo: number, hi: number, ranged: boolean): number {
    const runs = this.#runs;
    const mask = (1 << level) - 1;
    if (!ranged) {
      const n = runs.leftmost(runs.root, level, need);
      if (n === null) return -1;
      this.#hit = n;
      return (n.s + mask) & ~mask;
    }
    let innerLo = lo;
    const first = runs.floor(lo, false);
    if (first !== null && first.e > lo) {
      const p = (lo + mask) & ~mask;
      if (p + need <= Math.min(first.e, hi)) {
        this.#hit = first;
        return p;
      }
      if (first.e >= hi) return -1;
      innerLo = first.e;
    }
    let innerHi = hi;
    let last = runs.floor(hi, true);
    if (last !== null && last.e > hi && last.s >= innerLo) innerHi = last.s;
    else last = null;
    const n = runs.leftmostIn(runs.root, level, need, innerLo, innerHi);
    if (n !== null) {
      this.#hit = n;
      return (n.s + mask) & ~mask;
    }
    if (last !== null) {
      const p = (last.s + mask) & ~mask;
      if (p + need <= hi) {
        this.#hit = last;
        return p;
      }
    }
    return -1;
  }

  /** Takes chunks [p, q) out of free run `run`. */
  #carve(run: Run, p: number, q: number): void {
    const runs = this.#runs;
    const s = run.s;
    const e = run.e;
    const orders = this.#orders;
    tally(orders, s, e, -1);
    if (p > s) tally(orders, s, p, 1);
    if (q < e) tally(orders, q, e, 1);
    if (p === s) {
      if (q === e) {
        runs.remove(s);
      } else {
        run.s = q;
        runs.touch(q);
      }
    } else {
      run.e = p;
      runs.touch(s);
      if (q < e) runs.insert(q, e);
    }
    this.#free -= (q - p) * this.minChunk;
  }

  /** Returns chunks [b0, b1) to the free runs, merging with the neighbours (buddy coalescing). */
  #release(b0: number, b1: number): void {
    const runs = this.#runs;
    const before = runs.floor(b0, true);
    const after = runs.ceil(b1);
    const joinBefore = before !== null && before.e === b0;
    const joinAfter = after !== null && after.s === b1;
    const orders = this.#orders;
    let s = b0;
    let e = b1;
    if (joinBefore) {
      tally(orders, before.s, before.e, -1);
      s = before.s;
    }
    if (joinAfter) {
      tally(orders, after.s, after.e, -1);
      e = after.e;
    }
    tally(orders, s, e, 1);
    if (joinBefore && joinAfter) {
      const e = after.e;
      runs.remove(b1);
      before.e = e;
      runs.touch(before.s);
    } else if (joinBefore) {
      before.e = b1;
      runs.touch(before.s);
    } else if (joinAfter) {
      after.s = b0;
      runs.touch(b0);
    } else {
      runs.insert(b0, b1);
    }
    this.#free += (b1 - b0) * this.minChunk;
  }

  #noMemory(
    size: number,
    kind: string,
    align: number | undefined,
    range: [number, number] | undefined,
    need: number,
  ): never {
    let what = kind;
    if (align !== undefined) what += `, align ${hex(align)}`;
    if (range !== undefined) what += `, in [${hex(range[0])}, ${hex(range[1])})`;
    const hint = kind === "contiguous" && this.#free >= need
      ? "contiguous: false can use scattered blocks"
      : undefined;
    fail(
      "ENOMEM",
      `cannot allocate ${hex(size)} bytes (${what}): largest free block is ${
        hex(this.#largestFree())
      } of ${hex(this.#free)} free`,
      hint,
    );
  }

  #largestFree(): number {
    const runs = this.#runs;
    const root = runs.root;
    if (root === null) return 0;
    for (let a = runs.levels - 1; a >= 0; a--) {
      if (root.best[a] >= 1 << a) return this.minChunk * 2 ** a;
    }
    return 0;
  }

  /**
   * Returns an allocation's blocks; they coalesce with free buddies. EINVAL
   * for a double free, an allocation of another allocator, or a non-allocation.
   */
  free(allocation: Allocation): void {
    this.#checkFree(allocation, "buddy free");
    retire(allocation);
    this.#allocations.delete(allocation);
    const runs = runsOf(allocation);
    const unit = this.minChunk;
    for (let i = 0; i < runs.length; i += 2) this.#release(runs[i] / unit, runs[i + 1] / unit);
  }

  /** EINVAL/EBUSY unless `allocation` is a live, unpinned allocation of this allocator. */
  #checkFree(allocation: unknown, what: string): asserts allocation is Allocation {
    if (!(allocation instanceof Allocation)) {
      fail("EINVAL", `${what}: ${describe(allocation)} is not an Allocation`);
    }
    const owner = ownerOf(allocation);
    if (owner !== this) {
      fail(
        "EINVAL",
        `${what}: allocation ${hex(allocation.start)} +${hex(allocation.size)} belongs to ` +
          `the allocator of [${hex(owner.start)}, ${hex(owner.end)}), not this one of [${
            hex(this.start)
          }, ${hex(this.end)})`,
      );
    }
    if (!allocation.live) {
      fail(
        "EINVAL",
        `${what}: double free of allocation ${hex(allocation.start)} +${hex(allocation.size)}`,
      );
    }
    if (allocation.users.length > 0) {
      fail(
        "EBUSY",
        `${what}: allocation ${hex(allocation.start)} +${hex(allocation.size)} is in use by ${
          allocation.users.join(", ")
        }; release that first`,
      );
    }
  }

  /**
   * Frees many allocations at once, as {@linkcode BuddyAllocator.free} of
   * each would (the same free blocks, stats and live allocations after),
   * but coalescing once: their blocks are sorted by address and adjacent
   * ones joined before they go back, so the ~16,400 page tables of a
   * Ctrl-C'd 32 GiB map of 4 KiB pages (mostly neighbours) are a few tree
   * updates, not 16,400. All are checked first: one that is not a live, unpinned
   * allocation of this allocator, or one listed twice, fails (EINVAL, EBUSY
   * for a pinned one, naming its index) and nothing is freed. O(n log n)
   * for n blocks; not interruptible (half a free would be worse than a
   * wait), so callers pass what they must free now.
   *
   * @example
   * ```ts
   * const buddy = new BuddyAllocator({ start: 0, size: 1 << 30 });
   * const tables = Array.from({ length: 512 }, () => buddy.alloc(4096));
   * buddy.freeMany(tables);
   * buddy.stats().freeExtents; // 1
   * ```
   */
  freeMany(allocations: readonly Allocation[]): void {
    if (!Array.isArray(allocations)) {
      fail("EINVAL", `buddy freeMany takes an array of Allocations, not ${describe(allocations)}`);
    }
    const n = allocations.length;
    let count = 0;
    for (let i = 0; i < n; i++) {
      const a = allocations[i];
      this.#checkFree(a, `buddy freeMany: allocations[${i}]`);
      count += runsOf(a).length / 2;
    }
    // Every block as chunk indices (below 2^28) and the index of its allocation.
    const unit = this.minChunk;
    const s = new Int32Array(count);
    const e = new Int32Array(count);
    const of = new Int32Array(count);
    let k = 0;
    let ascending = true;
    let descending = true;
    for (let i = 0; i < n; i++) {
      const runs = runsOf(allocations[i]);
      for (let j = 0; j < runs.length; j += 2, k++) {
        s[k] = runs[j] / unit;
        e[k] = runs[j + 1] / unit;
        of[k] = i;
        if (k > 0) {
          if (s[k] <= s[k - 1]) ascending = false;
          if (s[k] >= s[k - 1]) descending = false;
        }
      }
    }
    // Address order: as given, reversed (a rollback meets tables last first), or sorted
    // natively on keys start·2^25 + block (exact below 2^53), a comparator sort past 2^25 blocks.
    const order = new Int32Array(count);
    if (ascending) { for (let i = 0; i < count; i++) order[i] = i; }
    else if (descending) { for (let i = 0; i < count; i++) order[i] = count - 1 - i; }
    else if (count < 2 ** 25) {
      const keys = new Float64Array(count);
      for (let i = 0; i < count; i++) keys[i] = s[i] * 2 ** 25 + i;
      keys.sort();
      for (let i = 0; i < count; i++) order[i] = keys[i] % 2 ** 25;
    } else {
      for (let i = 0; i < count; i++) order[i] = i;
      order.sort((x, y) => s[x] - s[y]);
    }
    // Live allocations never overlap: the same start twice is one allocation listed twice.
    for (let i = 1; i < count; i++) {
      if (s[order[i]] === s[order[i - 1]]) {
        const at = Math.max(of[order[i]], of[order[i - 1]]);
        const a = allocations[at];
        fail(
          "EINVAL",
          `buddy freeMany: allocations[${at}] (${hex(a.start)} +${
            hex(a.size)
          }) is listed twice: a double free`,
        );
      }
    }
    for (let i = 0; i < n; i++) {
      const a = allocations[i];
      retire(a);
      this.#allocations.delete(a);
    }
    // A block that ends where the next starts joins it: one release per joined stretch.
    let i = 0;
    while (i < count) {
      const first = order[i++];
      const b0 = s[first];
      let b1 = e[first];
      while (i < count && s[order[i]] === b1) b1 = e[order[i++]];
      this.#release(b0, b1);
    }
  }

  #track(a: Allocation): Allocation {
    this.#allocations.add(a);
    return a;
  }

  /**
   * The live allocations, lowest address first — also those a REPL input
   * made without keeping (`mm.buddy.alloc(4096)` unassigned), so none is lost.
   * Prints one per line.
   */
  allocations(): Allocation[] {
    const list = [...this.#allocations].sort((a, b) => a.start - b.start);
    return Object.defineProperty(list, DENO_INSPECT, {
      value: () =>
        list.length === 0 ? "no live allocations" : list.map((a, i) => {
          if ((i & 4095) === 4095) interruptPoint(); // millions of lines: Ctrl-C is heard
          return `${String(a)}${a.users.length === 0 ? "" : `  in use by ${a.users.join(", ")}`}`;
        }).join("\n"),
    });
  }

  /**
   * Totals, the largest free block and the free blocks per order. O(orders):
   * the per-order counts are kept up to date as blocks are taken and
   * returned (a few steps per change), so it costs the same with one free
   * run or millions.
   *
   * @example
   * ```ts
   * import { openGpu } from "../mod.ts";
   * using gpu = await openGpu({ device: "sim" });
   * const buddy = gpu.mm.buddy;
   * buddy.stats().largestFree; // 0x200000000
   * ```
   */
  stats(): BuddyStats {
    const blocksPerOrder: Record<number, number> = {};
    this.#orders.forEach((n, order) => {
      if (n) blocksPerOrder[order] = n;
    });
    return inspectable({
      total: this.size,
      free: this.#free,
      used: this.size - this.#free,
      largestFree: this.#largestFree(),
      blocksPerOrder,
      liveAllocations: this.#allocations.size,
      freeExtents: this.#runs.count,
      minChunk: this.minChunk,
    }, summarizeStats);
  }

  /**
   * Every free block, lowest address first, optionally only those
   * intersecting [range.start, range.end). O(free runs).
   *
   * @example
   * ```ts
   * new BuddyAllocator({ start: 0x3000, size: 0xd000 }).freeBlocks();
   * // [{ start: 0x3000, size: 0x1000 }, { start: 0x4000, size: 0x4000 }, { start: 0x8000, size: 0x8000 }]
   * ```
   */
  freeBlocks(options?: { range?: { start: number; end: number } }): Block[] {
    let lo = -Infinity;
    let hi = Infinity;
    if (options !== undefined) {
      if (typeof options !== "object" || options === null || Array.isArray(options)) {
        fail("EINVAL", `freeBlocks options ${describe(options)} is not an object`);
      }
      for (const key in options) {
        if (key !== "range") {
          fail("EINVAL", `unknown freeBlocks option ${JSON.stringify(key)} (range)`);
        }
      }
      const range = options.range;
      if (range !== undefined) {
        if (typeof range !== "object" || range === null || Array.isArray(range)) {
          fail("EINVAL", `freeBlocks range ${describe(range)} is not a { start, end } object`);
        }
        for (const key in range) {
          if (key !== "start" && key !== "end") {
            fail("EINVAL", `unknown freeBlocks range key ${JSON.stringify(key)} (start, end)`);
          }
        }
        for (const [what, v] of [["start", range.start], ["end", range.end]] as const) {
          if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
            fail("EINVAL", `freeBlocks range ${what} ${describe(v)} is not a non-negative integer`);
          }
        }
        if (range.start > range.end) {
          fail(
            "EINVAL",
            `freeBlocks range [${hex(range.start)}, ${hex(range.end)}) ends before it starts`,
          );
        }
        lo = range.start;
        hi = range.end;
      }
    }
    const out: Block[] = [];
    const unit = this.minChunk;
    let n = 0;
    this.#runs.forEach((run) => {
      if ((++n & 4095) === 0) interruptPoint(); // millions of free runs: Ctrl-C is heard
      const s = run.s * unit;
      const e = run.e * unit;
      if (e <= lo || s >= hi) return;
      decompose(s, e, (start, size) => {
        if (start + size > lo && start < hi) out.push({ start, size });
      });
    });
    return out;
  }

  /** `BuddyAllocator [0x200000, 0x5c0200000) 23 GiB: 22.5 GiB free, ...`. */
  toString(): string {
    return `BuddyAllocator [${hex(this.start)}, ${hex(this.end)}) ${formatSize(this.size)}: ` +
      `${formatSize(this.#free)} free, largest free block ${formatSize(this.#largestFree())}, ` +
      `${plural(this.#allocations.size, "live allocation")}`;
  }

  /** The one-line summary in Deno's REPL and `console.log`. */
  [DENO_INSPECT](): string {
    return this.toString();
  }

  /** The one-line summary in `node:util` inspect. */
  [NODE_INSPECT](): string {
    return this.toString();
  }
}
