/**
 * Mappings as physical extents, and the page-size choice over them.
 *
 * A mapping is a list of extents (physically contiguous VRAM runs, in VA
 * order), not a frame number per 4 KiB page: `mapRange(pa, 1 GiB)` is one
 * extent. {@linkcode choosePages} turns extents into {@linkcode PteRuns} —
 * runs of equal-size, physically contiguous pages, grouped into
 * {@linkcode PageStretches} of one page size each — in O(extents + runs)
 * time and memory: a 1 GiB extent that maps as two 512 MiB pages costs two
 * steps, not 262,144, and a one-page extent costs O(1).
 *
 * Every per-map array is sized once from the input (a pfn list is read in
 * place, never copied into an intermediate list): first-touching fresh
 * memory is what made the first maps of a session and the largest maps
 * slow, and doubling a multi-megabyte array copies it (no Ctrl-C is heard
 * during the copy).
 *
 * @module
 */

import { describe, fail, hex } from "../types.ts";
import { BLOCK, type ShadowTree, vaModulo, WORK_STEP, workDone, workStep } from "./tree.ts";

const PAGE = 4096;
/** Frame numbers and page counts are stored as 32-bit integers. */
const U32_MAX = 0xffff_ffff;

/** One physically contiguous piece of a mapping. */
export interface Extent {
  /** VRAM address (4 KiB aligned). */
  readonly pa: number;
  /** Bytes (a positive multiple of 4 KiB). */
  readonly size: number;
}

/**
 * The physically contiguous pieces of a mapping, checked, in VA order:
 * what {@linkcode choosePages} and {@linkcode vaPlacements} read.
 */
export interface Extents {
  /** Number of extents (touching ones coalesced). */
  readonly length: number;
  /** Total bytes. */
  readonly bytes: number;
  /** VRAM address of the first extent. */
  readonly firstPa: number;
  /** Bytes of the first extent. */
  readonly firstSize: number;
  /** Extents known to be one 4 KiB page (0 when not counted). */
  readonly singles: number;
  /** Calls `fn(pa, size)` for each extent, in VA order. */
  forEach(fn: (pa: number, size: number) => void): void;
}

/**
 * Extents as a flat list `[pa0, size0, pa1, size1, …]` (no object per
 * extent), sized once from the capacity its maker knows.
 *
 * @example
 * ```ts
 * const e = ExtentList.fromExtents([{ pa: 0x100000, size: 0x2000 }, { pa: 0x102000, size: 0x1000 }], 2 ** 30);
 * e.length; // 1
 * e.size(0); // 0x3000
 * ```
 */
export class ExtentList implements Extents {
  #data: Float64Array;
  #length = 0;
  #bytes = 0;

  /** An empty list with room for `capacity` extents (it grows past that, by copying). */
  constructor(capacity = 4) {
    this.#data = new Float64Array(2 * Math.max(1, capacity));
  }

  /** Number of extents. */
  get length(): number {
    return this.#length;
  }

  /** Total bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** VRAM address of the first extent. */
  get firstPa(): number {
    return this.#data[0];
  }

  /** Bytes of the first extent. */
  get firstSize(): number {
    return this.#data[1];
  }

  /** Not counted: 0. */
  get singles(): number {
    return 0;
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
    let d = this.#data;
    if (n > 0 && d[2 * n - 2] + d[2 * n - 1] === pa) {
      d[2 * n - 1] += size;
      return;
    }
    if (2 * n + 2 > d.length) {
      // Past the capacity the maker gave (it knew only a bound): double once.
      const grown = new Float64Array(2 * d.length);
      grown.set(d);
      this.#data = d = grown;
    }
    d[2 * n] = pa;
    d[2 * n + 1] = size;
    this.#length = n + 1;
  }

  /** Calls `fn(pa, size)` for each extent, in order. */
  forEach(fn: (pa: number, size: number) => void): void {
    const d = this.#data;
    for (let i = 0; i < this.#length; i++) fn(d[2 * i], d[2 * i + 1]);
  }

  /** The extents as objects (for callers; O(extents)). */
  toArray(): Extent[] {
    const out: Extent[] = [];
    for (let i = 0; i < this.#length; i++) out.push({ pa: this.pa(i), size: this.size(i) });
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
      const { pa, size } = e;
      checkRange(pa, size, vramSize);
      list.push(pa, size);
    }
    return list;
  }

  /** One extent [pa, pa + size), checked against `vramSize`. */
  static range(pa: number, size: number, vramSize: number): ExtentList {
    checkRange(pa, size, vramSize);
    const out = new ExtentList(1);
    out.push(pa, size);
    return out;
  }
}

/** EINVAL unless [pa, pa + size) is 4 KiB aligned, non-empty and below `vramSize`. */
function checkRange(pa: number, size: number, vramSize: number): void {
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
}

/** EINVAL naming `pfns[i]`, which is not a frame number below `maxPfn`. */
function badPfn(i: number, p: unknown, maxPfn: number): never {
  fail(
    "EINVAL",
    `pfns[${i}] = ${describe(p)} is not a VRAM page frame number (VRAM has ${hex(maxPfn)} frames)`,
  );
}

/**
 * A list of 4 KiB frame numbers read as extents in place: the constructor
 * checks every frame (each below `vramSize`; EINVAL naming the first bad
 * one) and counts the extents; {@linkcode PfnExtents.forEach} reads the
 * list again, coalescing consecutive frames. No copy of the list is made
 * (for 8 GiB of scattered pages an intermediate list was 32 MiB).
 *
 * @example
 * ```ts
 * const e = new PfnExtents([0x100, 0x101, 0x200], 2 ** 30);
 * e.length; // 2
 * e.firstSize; // 0x2000
 * ```
 */
export class PfnExtents implements Extents {
  readonly #pfns: ArrayLike<number>;
  readonly #maxPfn: number;
  /** Number of extents. */
  readonly length: number;
  /** Total bytes. */
  readonly bytes: number;
  /** VRAM address of the first extent. */
  readonly firstPa: number;
  /** Bytes of the first extent. */
  readonly firstSize: number;
  /** Extents of one frame. */
  readonly singles: number;
  /** Extents shorter than this many frames were made runs while checking (0: none). */
  readonly short: number;
  /** Those runs (of the leading short extents), and the frames they cover. */
  #prefix: PteRuns | null;
  #prefixFrames: number;

  /**
   * Checks `pfns` (a non-empty array-like of frame numbers below
   * `vramSize / 4 KiB`). With `short` > 1, the leading extents shorter than
   * `short` frames (which map with 4 KiB pages whatever their VA: no larger
   * page fits them) become PTE runs in the same pass, so scattered frames
   * are read once ({@linkcode PfnExtents.takePrefix}).
   */
  constructor(pfns: ArrayLike<number>, vramSize: number, short = 0) {
    if (pfns === null || typeof pfns !== "object" || typeof pfns.length !== "number") {
      fail("EINVAL", "pfns must be an array of 4 KiB page frame numbers");
    }
    const n = pfns.length;
    if (n === 0) fail("EINVAL", "pfns is empty: nothing to map");
    const maxPfn = vramSize / PAGE;
    let extents = 0;
    let singles = 0;
    let firstRun = 0;
    let start = -2;
    let run = 0;
    let building = short > 1;
    let prefix: PteRuns | null = null;
    let covered = 0;
    try {
      for (let i = 0; i < n; i++) {
        // A long list: Ctrl-C is heard, and a terminal shows progress.
        if ((i & WORK_STEP) === 0) workStep(i, n, "checking pfns");
        const p = pfns[i];
        if (!Number.isSafeInteger(p) || p < 0 || p >= maxPfn) badPfn(i, p, maxPfn);
        if (p === start + run) {
          run++;
          continue;
        }
        if (run > 0) {
          // The extent [start, start + run) ends.
          if (run === 1) singles++;
          if (extents === 1) firstRun = run;
          if (building) {
            if (run < short) {
              prefix ??= new PteRuns(2 * n);
              prefix.pushNew(PAGE, run, start);
              covered += run;
            } else {
              building = false;
            }
          }
        }
        extents++;
        start = p;
        run = 1;
      }
      if (run === 1) singles++;
      if (extents === 1) firstRun = run;
      if (building && run < short) {
        prefix ??= new PteRuns(2 * n);
        prefix.pushNew(PAGE, run, start);
        covered += run;
      }
    } catch (e) {
      prefix?.release();
      throw e;
    }
    workDone(n, "checking pfns");
    this.singles = singles;
    this.#pfns = pfns;
    this.#maxPfn = maxPfn;
    this.length = extents;
    this.bytes = n * PAGE;
    this.firstPa = pfns[0] * PAGE;
    this.firstSize = firstRun * PAGE;
    this.short = short;
    this.#prefix = prefix;
    this.#prefixFrames = covered;
  }

  /**
   * The runs the check made of the leading extents shorter than `short`
   * frames and the frames they cover (taken: a second call gets null), or
   * null when it made none for that `short`.
   */
  takePrefix(short: number): { runs: PteRuns; frames: number } | null {
    const runs = this.#prefix;
    this.#prefix = null;
    if (runs === null) return null;
    if (short !== this.short) {
      runs.release();
      return null;
    }
    return { runs, frames: this.#prefixFrames };
  }

  /** Gives back the runs the check made if no choice took them (a prepare that failed early). */
  release(): void {
    this.#prefix?.release();
    this.#prefix = null;
  }

  /**
   * Calls `fn(pa, size)` for each run of consecutive frames, in order. The
   * frames are checked again as they are read (an array-like with getters
   * could answer differently the second time); EINVAL as the constructor.
   */
  forEach(fn: (pa: number, size: number) => void): void {
    this.scan(0, null, fn, 0);
  }

  /**
   * {@linkcode PfnExtents.forEach} from frame `from` (the start of an
   * extent) with a fast path for the chooser: an extent of fewer than
   * `short` frames goes straight into `runs` as one run of 4 KiB pages (it
   * continues no run: extents are maximal), the others to `fn`. Ctrl-C is
   * heard every few thousand frames.
   */
  scan(
    short: number,
    runs: PteRuns | null,
    fn: (pa: number, size: number) => void,
    from: number,
  ): void {
    const pfns = this.#pfns;
    const maxPfn = this.#maxPfn;
    const n = pfns.length;
    if (n * PAGE !== this.bytes) {
      fail("EINVAL", `pfns changed length while being mapped (${this.bytes / PAGE} -> ${n})`);
    }
    if (from >= n) return;
    let start = pfns[from];
    let run = 0;
    for (let i = from; i < n; i++) {
      const p = pfns[i];
      if ((i & WORK_STEP) === 0) workStep(i, n, "choosing page sizes");
      if (!Number.isSafeInteger(p) || p < 0 || p >= maxPfn) badPfn(i, p, maxPfn);
      if (p === start + run) {
        run++;
        continue;
      }
      if (run < short) runs!.pushNew(PAGE, run, start);
      else fn(start * PAGE, run * PAGE);
      start = p;
      run = 1;
    }
    if (run < short) runs!.pushNew(PAGE, run, start);
    else fn(start * PAGE, run * PAGE);
    workDone(n, "choosing page sizes");
  }
}

/**
 * Stretches of equal-size pages that tile a mapping in VA order: stretch
 * `i` maps `count(i)` pages of `pageSize(i)` from byte `offset(i)` of the
 * mapping, with `runs(i)` of its {@linkcode PteRuns}. This is all a live
 * mapping keeps of its layout (1 GiB of scattered 4 KiB pages is one
 * stretch); the physical side is in its page tables.
 *
 * @example
 * ```ts
 * const s = new PageStretches();
 * s.add(4096, 3, 3);
 * s.add(4096, 1, 1);
 * s.add(65536, 2, 1);
 * s.length; // 2
 * s.offset(1); // 0x4000
 * s.find(0x5000); // 1
 * ```
 */
export class PageStretches {
  /** `[offset, pageSize, count, runs]` per stretch. */
  readonly #data: number[] = [];
  #bytes = 0;
  #pages = 0;

  /** Number of stretches. */
  get length(): number {
    return this.#data.length / 4;
  }

  /** Pages in all stretches. */
  get pages(): number {
    return this.#pages;
  }

  /** Bytes in all stretches. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Byte offset of stretch `i` from the mapping's VA. */
  offset(i: number): number {
    return this.#data[4 * i];
  }

  /** Page size of stretch `i`. */
  pageSize(i: number): number {
    return this.#data[4 * i + 1];
  }

  /** Pages in stretch `i`. */
  count(i: number): number {
    return this.#data[4 * i + 2];
  }

  /** PTE runs in stretch `i` (consecutive in its {@linkcode PteRuns}). */
  runs(i: number): number {
    return this.#data[4 * i + 3];
  }

  /** Appends `count` pages of `pageSize` in `runs` runs (merged into the last stretch of that size). */
  add(pageSize: number, count: number, runs: number): void {
    const d = this.#data;
    const n = d.length;
    this.#pages += count;
    if (n > 0 && d[n - 3] === pageSize) {
      d[n - 2] += count;
      d[n - 1] += runs;
    } else {
      d.push(this.#bytes, pageSize, count, runs);
    }
    this.#bytes += pageSize * count;
  }

  /** The stretch holding byte `offset` of the mapping (binary search). */
  find(offset: number): number {
    let lo = 0;
    let hi = this.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offset(mid) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Pages by page size (sizes in the order they first appear; O(stretches)). */
  pageCounts(): Map<number, number> {
    const by = new Map<number, number>();
    for (let i = 0; i < this.length; i++) {
      by.set(this.pageSize(i), (by.get(this.pageSize(i)) ?? 0) + this.count(i));
    }
    return by;
  }
}

/** A run word at or above this starts a run of several pages: frame `w - MULTI`, count next. */
const MULTI = 2 ** 31;
/** Frames of 8 TiB and more do not fit a run word (no page-table format maps them anyway). */
const MAX_RUN_PFN = MULTI - 1;

/**
 * Runs of equal-size, physically contiguous pages that tile a mapping in VA
 * order (what a prepare chose and its write writes), read in order with a
 * {@linkcode PteRunCursor}; their page size is that of their stretch
 * ({@linkcode PteRuns.stretches}). A one-page run is one 32-bit word (its
 * frame number), a longer run two (frame + 2^31, count): 1 GiB of
 * scattered 4 KiB pages is 1 MiB. The words are sized once from a bound on
 * the runs (memory past what is written is never touched), growing past it
 * by copying only when huge pages alternate with smaller ones;
 * {@linkcode PteRuns.release} drops them once the runs are written.
 *
 * @example
 * ```ts
 * const runs = new PteRuns(4);
 * runs.push(4096, 1, 0x5000);
 * runs.push(4096, 1, 0x6000); // continues the run
 * runs.push(4096, 1, 0x1000);
 * runs.length; // 2
 * const c = runs.cursor();
 * c.next(); // true
 * [c.pa, c.count]; // [0x5000, 2]
 * runs.stretches.length; // 1
 * ```
 */
export class PteRuns {
  readonly #stretches: PageStretches = new PageStretches();
  #words: Uint32Array;
  /** Words used. */
  #used = 0;
  /** Where the last run starts (-1: none). */
  #last = -1;
  /** First frame and pages of the last run. */
  #lastPfn = 0;
  #lastCount = 0;
  #length = 0;
  /** Page size of the last run (0: none yet). */
  #size = 0;
  /** Pages and runs pushed since the last stretch update (all of page size `#size`). */
  #pendingPages = 0;
  #pendingRuns = 0;

  /** Room for `words` words (a one-page run takes one, a longer run two). */
  constructor(words: number) {
    const n = Math.max(2, words);
    this.#words = (n >= POOL_MIN_WORDS && n <= POOL_MAX_WORDS ? takePooled(n) : null) ??
      new Uint32Array(n);
  }

  /** The stretches of one page size the runs fall into. */
  get stretches(): PageStretches {
    this.#settle();
    return this.#stretches;
  }

  /** Pages in all runs. */
  get pages(): number {
    return this.#stretches.pages + this.#pendingPages;
  }

  /** Bytes in all runs. */
  get bytes(): number {
    return this.#stretches.bytes + this.#pendingPages * this.#size;
  }

  /** Number of runs. */
  get length(): number {
    return this.#length;
  }

  /** A cursor over the runs, from the first. */
  cursor(): PteRunCursor {
    return new PteRunCursor(this.#words, this.#used);
  }

  /** Appends `count` pages of `pageSize` from `pa` (merged with the last run when it continues it). */
  push(pageSize: number, count: number, pa: number): void {
    const pfn = pa / PAGE;
    if (this.#size === pageSize) {
      const c = this.#lastCount;
      if (this.#lastPfn * PAGE + c * pageSize === pa && c + count <= U32_MAX) {
        this.#lastCount = c + count;
        this.#pendingPages += count;
        if (c === 1) {
          // A one-page run becomes a counted one: it takes a second word.
          this.#room(1);
          this.#words[this.#last] = this.#lastPfn + MULTI;
          this.#used++;
        }
        this.#words[this.#last + 1] = c + count;
        return;
      }
    } else {
      this.#settle();
      this.#size = pageSize;
    }
    this.#append(count, pfn);
  }

  /**
   * Appends `count` pages of `pageSize` from frame `pfn` as a new run: the
   * caller knows it continues no run (a new extent). The chooser's fast path.
   */
  pushNew(pageSize: number, count: number, pfn: number): void {
    if (this.#size !== pageSize) {
      this.#settle();
      this.#size = pageSize;
    }
    this.#append(count, pfn);
  }

  /** Encodes a new run of `count` pages from frame `pfn` (of the current page size). */
  #append(count: number, pfn: number): void {
    if (pfn > MAX_RUN_PFN || count > U32_MAX) tooFar(pfn * PAGE, count);
    const at = this.#used;
    if (at + 2 > this.#words.length) this.#room(2);
    const w = this.#words;
    if (count === 1) {
      w[at] = pfn;
      this.#used = at + 1;
    } else {
      w[at] = pfn + MULTI;
      w[at + 1] = count;
      this.#used = at + 2;
    }
    this.#last = at;
    this.#lastPfn = pfn;
    this.#lastCount = count;
    this.#length++;
    this.#pendingPages += count;
    this.#pendingRuns++;
  }

  /**
   * The encoded runs, for a reader that decodes them inline (the mapper's
   * hot loop): `words[0, used)`, a one-page run one word (its frame), a
   * longer one two (frame + 2^31, count). {@linkcode PteRunCursor} reads the
   * same.
   */
  encoded(): { words: Uint32Array; used: number } {
    return { words: this.#words, used: this.#used };
  }

  /** Makes room for `n` more words (doubling past the bound the chooser estimated: rare). */
  #room(n: number): void {
    const w = this.#words;
    if (this.#used + n <= w.length) return;
    const grown = new Uint32Array(Math.max(2 * w.length, this.#used + n));
    grown.set(w.subarray(0, this.#used));
    this.#words = grown;
  }

  /** Moves the pending pages and runs into the stretches. */
  #settle(): void {
    if (this.#pendingRuns === 0 && this.#pendingPages === 0) return;
    this.#stretches.add(this.#size, this.#pendingPages, this.#pendingRuns);
    this.#pendingPages = 0;
    this.#pendingRuns = 0;
  }

  /**
   * Drops the run words (the runs were written; their stretches stay): what
   * a mapping remembers is proportional to its stretches, not its runs.
   * Words of up to {@linkcode POOL_MAX_WORDS} go back to a pool for the
   * next prepare (fresh memory is slow to touch the first time).
   */
  release(): void {
    this.#settle();
    if (this.#words.length > 0) givePooled(this.#words);
    this.#words = EMPTY;
    this.#used = 0;
    this.#length = 0;
    this.#last = -1;
  }
}

/**
 * Reads {@linkcode PteRuns} in order: after each {@linkcode PteRunCursor.next}
 * that returns true, `pa` and `count` are the next run's.
 */
export class PteRunCursor {
  /** VRAM address of the first page of the current run. */
  pa = 0;
  /** Pages in the current run. */
  count = 0;
  readonly #words: Uint32Array;
  readonly #end: number;
  #at = 0;

  /** A cursor over `words[0, end)` (from {@linkcode PteRuns.cursor}). */
  constructor(words: Uint32Array, end: number) {
    this.#words = words;
    this.#end = end;
  }

  /** Moves to the next run; false after the last. */
  next(): boolean {
    const at = this.#at;
    if (at >= this.#end) return false;
    const w = this.#words[at];
    if (w >= MULTI) {
      this.pa = (w - MULTI) * PAGE;
      this.count = this.#words[at + 1];
      this.#at = at + 2;
    } else {
      this.pa = w * PAGE;
      this.count = 1;
      this.#at = at + 1;
    }
    return true;
  }
}

const EMPTY = new Uint32Array(0);

/** EINVAL for a run no run word holds (past 8 TiB, or 2^32 pages and more). */
function tooFar(pa: number, count: number): never {
  fail(
    "EINVAL",
    `${count} pages from VRAM ${
      hex(pa)
    }: past 8 TiB or 2^32 pages in one run (no page-table format maps that)`,
  );
}

/**
 * The largest run words kept for reuse (16 MiB of address space, of which
 * only what a map wrote is memory: 8 MiB for 8 GiB of scattered 4 KiB
 * pages). A fresh 8 MiB array costs an 8 GiB map ~30 ms of page faults on
 * a VM, every time.
 */
const POOL_MAX_WORDS = 2 ** 22;
/** Fewer words are fresh arrays (small, and no large array stays behind a small mapping). */
const POOL_MIN_WORDS = 8192;
/** Released run words, for the next prepare (one array at most). */
let pooled: Uint32Array | null = null;

/** The pooled words if there are at least `n` (taken out of the pool), else null. */
function takePooled(n: number): Uint32Array | null {
  const p = pooled;
  if (p === null || p.length < n) return null;
  pooled = null;
  return p;
}

/** Keeps released run words for reuse (the larger array, up to {@linkcode POOL_MAX_WORDS}). */
function givePooled(words: Uint32Array): void {
  if (words.length > POOL_MAX_WORDS || (pooled !== null && pooled.length >= words.length)) return;
  pooled = words;
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
 * size could start. Work is per run, and only where a larger page could
 * start: an extent shorter than the second-smallest page size is one run of
 * small pages in O(1). The runs' arrays are sized once from the extents
 * (at most one run per small page, and a few per extent). A forced size
 * that does not fit fails with EINVAL naming the 4 KiB page, its VA and PA.
 */
export function choosePages(extents: Extents, c: PageChoice): PteRuns {
  const forced = c.forced;
  const sizes = forced === undefined ? c.sizes : [forced];
  const smallest = sizes[sizes.length - 1];
  // Words: a one-page extent is one run of one word; a longer one (but for huge pages
  // alternating with smaller ones where a directory entry is taken) at most 2 runs per
  // size, of two words each; and never more than two words per smallest page.
  const singles = extents.singles;
  const bound = Math.min(
    2 * Math.ceil(extents.bytes / smallest),
    singles + (extents.length - singles) * 4 * sizes.length,
  );
  // An extent shorter than this maps only with the smallest pages (none: a forced size checks).
  const second = forced === undefined && sizes.length > 1 ? sizes[sizes.length - 2] : 0;
  const fast = extents instanceof PfnExtents && second > 0 && smallest === PAGE;
  // Scattered frames: the check already made runs of the leading short extents.
  // (Taken either way: one made for another choice goes back to the pool.)
  const prefix = extents instanceof PfnExtents
    ? extents.takePrefix(fast ? second / PAGE : -1)
    : null;
  const runs = prefix?.runs ?? new PteRuns(bound);
  const big = c.bigPageSize;
  const total = extents.length;
  let e = 0;
  const place = (pa0: number, size: number) => {
    if ((e & WORK_STEP) === 0) workStep(e, total, "choosing page sizes");
    e++;
    if (size < second) {
      runs.push(smallest, size / smallest, pa0);
      return;
    }
    // Bytes of the mapping before this extent.
    const offset = runs.bytes;
    for (let pos = 0; pos < size;) {
      const rem = size - pos;
      const at = c.offset + offset + pos;
      const block = c.block + Math.floor(at / BLOCK);
      const off = at % BLOCK;
      const pa = pa0 + pos;
      let chosen = 0;
      for (let i = 0; i < sizes.length; i++) {
        const s = sizes[i];
        if (
          s <= rem && pa % s === 0 && vaModulo(block, off, s) === 0 &&
          (s <= big || c.tree.hugeSlotFree(block, s))
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
            sizeName(forced!)
          } pages: VA and PA must be ${hex(forced!)}-aligned and physically contiguous`,
        );
      }
      let n = 1;
      if (chosen <= big) {
        n = Math.floor(rem / chosen);
        // Stop where a larger size (same VA/PA phase) could start and still fit.
        if (forced === undefined) {
          for (let i = 0; i < sizes.length; i++) {
            const s = sizes[i];
            if (s <= chosen) break;
            if (s > rem) continue;
            const vaMod = vaModulo(block, off, s);
            if (vaMod !== pa % s) continue;
            const d = vaMod === 0 ? s : s - vaMod;
            if (rem - d >= s) n = Math.min(n, d / chosen);
          }
        }
      }
      runs.push(chosen, n, pa);
      pos += n * chosen;
    }
  };
  if (fast) {
    // Scattered frames: a short extent is one run of small pages, with no call per extent.
    (extents as PfnExtents).scan(second / PAGE, runs, place, prefix?.frames ?? 0);
  } else {
    extents.forEach(place);
    workDone(total, "choosing page sizes");
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
  extents: Extents,
  sizes: readonly number[],
  forced: number | undefined,
): [bigint, bigint][] {
  if (forced !== undefined) return [[BigInt(forced), 0n]];
  const pa = extents.firstPa;
  const end = pa + extents.firstSize;
  const out: [bigint, bigint][] = [];
  for (const s of sizes) {
    if (s === PAGE) continue;
    const aligned = Math.ceil(pa / s) * s;
    if (aligned + s <= end) out.push([BigInt(s), BigInt(pa % s)]);
  }
  out.push([BigInt(PAGE), 0n]);
  return out;
}
