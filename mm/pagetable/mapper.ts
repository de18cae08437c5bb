/**
 * The page-table write engine of one address space: it owns the shadow
 * tree ({@linkcode ShadowTree}) and everything that changes it or VRAM.
 *
 * - **Prepare**: the page sizes of a mapping ({@linkcode choosePages}) and
 *   the tables it needs, allocated and linked in the shadow and pinned
 *   against reclaim; no MMIO access.
 * - **Write** (execute): the PTEs into the shadow, then through PRAMIN the
 *   new tables complete, deepest first (each entry once), the links to them,
 *   then the entries of tables already in VRAM. A PTE is number arithmetic
 *   (its constant part once per run, {@linkcode vramPteLine}), not a bigint
 *   per page. A write that fails puts the shadow back and records what may
 *   have reached VRAM as unsynced.
 * - **Read back**: a mapping keeps its stretches of one page size, not a
 *   frame per page; its physical pages are read from the PTEs it wrote
 *   ({@linkcode Mapper.pageAddress}, {@linkcode Mapper.extentsOf}).
 * - **Abandon** (cancel, a failed prepare or write): unpins and reclaims the
 *   tables the prepare made.
 * - **Unmap**: invalidates the PTEs, reclaims the tables left empty (their
 *   parent links cleared) and hands the tables to free back to the caller.
 * - **Sync**: writes the unsynced words (before every TLB flush).
 * - The firmware scan ({@linkcode scanTables}) and the shadow lookup.
 *
 * What it does not own is the address space's: VA ranges, the mapping
 * objects, the TLB flush and the order "flush, then free the tables, then
 * run the callbacks" (`mm/vmm.ts`). It never flushes and never frees a
 * table; the caller does both, in that order.
 *
 * @module
 */

import type { Allocation, BuddyAllocator } from "../buddy.ts";
import { describe, fail, hex } from "../../hw/errors.ts";
import type { Pramin, PraminWindow } from "../pramin.ts";
import type { MmuFormat } from "./format.ts";
import {
  choosePages,
  ExtentList,
  type Extents,
  type PageStretches,
  type PteRuns,
} from "./extents.ts";
import { vramPteLine } from "./codec.ts";
import type { VramLine } from "./fields.ts";
import { scanTables } from "./scan.ts";
import {
  entryLive,
  pteWord,
  type PtTable,
  ShadowTree,
  splitVa,
  wordOf,
  wordsPerEntry,
  WORK_STEP,
  workDone,
  workStep,
} from "./tree.ts";
import { interruptPoint } from "../../hw/mmio.ts";

const PAGE = 4096;
const TWO_32 = 2 ** 32;
/** Tables written between two progress reports (a mask): a few milliseconds of PRAMIN writes. */
const TABLE_STEP = 255;
/** A run word at or above this starts a counted run ({@linkcode PteRuns.encoded}). */
const MULTI = 2 ** 31;

/** What a {@linkcode Mapper} needs from its GPU. */
export interface MapperDeps {
  /** PRAMIN, to write and read tables. */
  pramin: Pramin;
  /** Where page-table pages come from. */
  buddy: BuddyAllocator;
  /** VRAM size (tables must lie below it). */
  vramSize: number;
}

/**
 * The tables a prepare made and pinned; filled as it goes, so a prepare that
 * fails midway can still be abandoned ({@linkcode Mapper.abandon}).
 */
export interface TableHold {
  /** Tables allocated for the mapping (unwritten until its write). */
  readonly newTables: PtTable[];
  /** Tables on the mapping's paths, pinned against reclaim until its write. */
  readonly pinned: PtTable[];
}

/** One mapping as the engine unmaps or reads it back. */
export interface MapJob {
  /** First VA. */
  readonly va: bigint;
  /** Its stretches of one page size (`runs.stretches` of its {@linkcode Mapper.prepare}). */
  readonly stretches: PageStretches;
}

/** A prepared mapping as the engine writes it. */
export interface WriteJob extends TableHold {
  /** First VA. */
  readonly va: bigint;
  /** Its PTE runs (from {@linkcode Mapper.prepare}). */
  readonly runs: PteRuns;
  /** GPU writes allowed. */
  readonly writable: boolean;
}

/** Words of a table as they were before a change (to put the shadow back). */
interface Saved {
  t: PtTable;
  /** First 32-bit word. */
  from: number;
  /** 32-bit words. */
  n: number;
  /** Their values, or null for zeros (the table was empty). */
  words: Uint32Array | null;
  live: number;
}

/** A range of 64-bit words of a written table that VRAM may not hold yet. */
type Unsynced = [t: PtTable, word: number, count: number];

/** Calls `fn(offset, pageSize, count)` for each stretch of equal-size pages. */
function eachStretch(
  stretches: PageStretches,
  fn: (offset: number, pageSize: number, count: number) => void,
): void {
  for (let i = 0; i < stretches.length; i++) {
    fn(stretches.offset(i), stretches.pageSize(i), stretches.count(i));
  }
}

/** Writes 64-bit words [word, word + count) of `t` from the shadow. */
function writeRange(w: PraminWindow, t: PtTable, word: number, count: number): void {
  w.writeWords(t.addr + word * 8, t.raw.subarray(2 * word, 2 * (word + count)));
}

/** Writes PTE entries [index, index + n) of `t` (at PD0 only the low words: 2 MiB PTEs). */
function writePtes(w: PraminWindow, t: PtTable, index: number, n: number): void {
  if (!t.level.dual) {
    writeRange(w, t, index, n);
    return;
  }
  for (let j = index; j < index + n; j++) writeRange(w, t, pteWord(t, j), 1);
}

/**
 * Writes a whole table. A link to a child that is not in VRAM yet (another
 * pending prepare's table) goes as zero: that prepare's write puts the link
 * in once the child is complete.
 */
function writeTable(w: PraminWindow, t: PtTable, fresh: Set<PtTable>): void {
  let image = t.raw;
  for (let i = 0; i < t.children.length; i++) {
    const child = t.children[i];
    if (child === null || child.written || fresh.has(child)) continue;
    if (image === t.raw) image = t.raw.slice();
    image[2 * i] = 0;
    image[2 * i + 1] = 0;
  }
  w.writeWords(t.addr, image);
}

/**
 * Writes the PTEs of a prepared mapping's runs into shadow tables, table by
 * table ({@linkcode Mapper.write}); the run being written carries over from
 * one table to the next, the run words from one stretch to the next. The
 * run words are decoded inline: a word below 2^31 is a one-page run (its
 * frame), else frame + 2^31 followed by the count ({@linkcode PteRuns.encoded}).
 *
 * A class of its own rather than a closure in `write`: its per-page loop
 * keeps its doubles (PTE values, VRAM addresses past 2 GiB) in locals, and
 * its code stays optimized from map to map. Captured `let` variables
 * holding doubles are heap boxes that every assignment reallocates (2 per
 * page: ~75 MiB of garbage for 8 GiB of scattered pages, whose collection
 * made the cost per page grow with the size of the map), and a closure
 * made anew by every `write` started out unoptimized on each map.
 */
class PteFill {
  /** Pages left in the current run. */
  #left = 0;
  /** The next PTE in number form, or -1: bigints (a PTE the number form does not hold). */
  #v = 0;
  /** What the number form grows by per page. */
  #step = 0;
  /** VRAM address of the next page. */
  #pa = 0;
  /** Page size of the current stretch. */
  #ps = 0;
  /** The next run word. */
  #wi = 0;
  readonly #words: Uint32Array;
  readonly #used: number;
  readonly #codec: MmuFormat["codec"];
  readonly #opts: { writable: boolean };
  /** Below this VRAM address the number form holds the PTE (-1: never). */
  readonly #lineLimit: number;
  readonly #lineBase: number;
  readonly #lineScale: number;

  /** A fill of the runs `words[0, used)` with PTEs of `codec` (`line`: its number form). */
  constructor(
    words: Uint32Array,
    used: number,
    codec: MmuFormat["codec"],
    writable: boolean,
    line: VramLine | null,
  ) {
    this.#words = words;
    this.#used = used;
    this.#codec = codec;
    this.#opts = { writable };
    // Runs start 4 KiB aligned: the address field's alignment needs no check per run.
    this.#lineLimit = line === null || 2 ** line.target.alignBits > PAGE
      ? -1
      : 2 ** line.target.limitBits;
    this.#lineBase = line?.base ?? 0;
    this.#lineScale = line?.scale ?? 0;
  }

  /** The next stretch, of `ps`-byte pages: a new run starts. */
  stretch(ps: number): void {
    this.#ps = ps;
    this.#left = 0;
    this.#v = 0;
    this.#step = 0;
    this.#pa = 0;
  }

  /**
   * Sets entries [index, index + n) of `t` to the next `n` pages' PTEs and
   * counts the entries that become live (`empty`: the table had none, so
   * all `n` do).
   */
  fill(t: PtTable, index: number, n: number, empty: boolean): void {
    const words = this.#words;
    const used = this.#used;
    const ps = this.#ps;
    const lineLimit = this.#lineLimit;
    const lineBase = this.#lineBase;
    const lineScale = this.#lineScale;
    const stride = 2 * wordsPerEntry(t);
    const raw = t.raw;
    if (empty) t.live = n;
    let left = this.#left;
    let v = this.#v;
    let pa = this.#pa;
    let step = this.#step;
    let k = this.#wi;
    let at = index * stride;
    for (let j = 0; j < n; j++, at += stride) {
      if (!empty && !entryLive(t, index + j)) t.live++;
      if (left === 0) {
        if (k >= used) fail("EIO", "the PTE runs end before their stretches");
        const w = words[k++];
        if (w >= MULTI) {
          pa = (w - MULTI) * PAGE;
          left = words[k++];
        } else {
          pa = w * PAGE;
          left = 1;
        }
        if (pa + (left - 1) * ps < lineLimit) {
          v = lineBase + pa * lineScale;
          step = ps * lineScale;
        } else {
          // Outside what the PTE holds: vramPte throws the error naming the address.
          this.#codec.vramPte(pa, this.#opts);
          this.#codec.vramPte(pa + (left - 1) * ps, this.#opts);
          v = -1;
        }
      }
      left--;
      if (v >= 0) {
        const lo = v >>> 0;
        raw[at] = lo;
        raw[at + 1] = (v - lo) / TWO_32;
        v += step;
      } else {
        const big = this.#codec.vramPte(pa, this.#opts);
        raw[at] = Number(big & 0xffffffffn);
        raw[at + 1] = Number(big >> 32n);
      }
      pa += ps;
    }
    this.#left = left;
    this.#v = v;
    this.#pa = pa;
    this.#step = step;
    this.#wi = k;
  }
}

/**
 * The write engine over one shadow tree (see the module documentation).
 *
 * @example
 * ```ts
 * import { openGpu } from "../../mod.ts";
 * import { ExtentList } from "./extents.ts";
 * import { mmuFormat } from "./mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * const { pramin, buddy, vramSize, tlb } = gpu.mm;
 * const root = buddy.alloc(4096);
 * const mapper = new Mapper(mmuFormat({ version: 2 }), root.start, root, {
 *   pramin,
 *   buddy,
 *   vramSize,
 * });
 * const data = buddy.alloc(64 << 10);
 * const extents = ExtentList.fromExtents([{ pa: data.start, size: data.size }], vramSize);
 * const hold: TableHold = { newTables: [], pinned: [] };
 * const runs = mapper.prepare(extents, 0x10000n, undefined, hold);
 * mapper.write({ va: 0x10000n, runs, writable: true, ...hold }, () => mapper.abandon(hold));
 * mapper.sync();
 * tlb.flush(root.start); // then free what an unmap handed back
 * ```
 */
export class Mapper {
  /** The shadow tables. */
  readonly tree: ShadowTree;
  /** The page-table format. */
  readonly format: MmuFormat;
  /** Page sizes this chip can map, largest first. */
  readonly pageSizes: readonly number[];
  readonly #deps: MapperDeps;
  /** Whose tables these are, for the labels of the page-table allocations (`PD2 of bar1`). */
  owner = "an address space";
  /** Words VRAM may not hold yet (a write failed): written by the next {@linkcode Mapper.sync}. */
  #unsynced: Unsynced[] = [];
  /** The number forms of a writable and a read-only VRAM PTE (those the codec has). */
  readonly #lines: VramLine[];

  /** An engine over a tree of only the root at `pdb` (`rootAlloc` when the caller allocated it). */
  constructor(format: MmuFormat, pdb: number, rootAlloc: Allocation | null, deps: MapperDeps) {
    this.format = format;
    this.#deps = deps;
    this.tree = new ShadowTree(format, pdb, rootAlloc);
    const sizes: number[] = [];
    for (const d of format.directories) if (d.hugePageSize !== null) sizes.push(d.hugePageSize);
    sizes.sort((a, b) => b - a);
    this.pageSizes = [...sizes, format.bigPt.pageSize, format.smallPt.pageSize];
    this.#lines = [true, false].map((w) => vramPteLine(format.codec, w)).filter((l) => l !== null);
  }

  /** True when some words may be missing from VRAM (a write failed): sync before a flush. */
  get unsynced(): boolean {
    return this.#unsynced.length > 0;
  }

  /**
   * Writes the words a failed write left out (all of them again, in order).
   * On a failure they stay unsynced.
   */
  sync(): void {
    if (this.#unsynced.length === 0) return;
    using w = this.#deps.pramin.borrow();
    for (const [t, word, count] of this.#unsynced) writeRange(w, t, word, count);
    this.#unsynced = [];
  }

  /**
   * Reads the tables in VRAM into the shadow (a firmware-built space); the
   * VA ranges `[start, end)` their entries take, merged ({@linkcode scanTables}).
   */
  scan(vaSize: bigint): [bigint, bigint][] {
    using w = this.#deps.pramin.borrow();
    return scanTables(this.tree, w, vaSize, this.#deps.vramSize);
  }

  /** EINVAL unless `forced` is undefined or a page size this chip maps. */
  checkPageSize(forced: number | undefined): void {
    if (forced !== undefined && !this.pageSizes.includes(forced)) {
      fail(
        "EINVAL",
        `page size ${describe(forced)} is not one this chip maps (${
          this.pageSizes.map(hex).join(", ")
        })`,
      );
    }
  }

  /**
   * Chooses the page sizes for `extents` at `va` and allocates, links (in the
   * shadow) and pins every table they need, recording them in `hold`. No
   * MMIO access. On a failure `hold` has what was made: abandon it.
   */
  prepare(
    extents: Extents,
    va: bigint,
    forced: number | undefined,
    hold: TableHold,
  ): PteRuns {
    const tree = this.tree;
    const [block, offset] = splitVa(va);
    const runs = choosePages(extents, {
      tree,
      sizes: this.pageSizes,
      bigPageSize: this.format.bigPt.pageSize,
      block,
      offset,
      forced,
    });
    const seen = new Set<PtTable>();
    const create = (parent: PtTable, idx: number, slot: number, depth: number) => {
      const a = this.#deps.buddy.alloc(PAGE, {
        label: `${tree.levelAt(depth).name} of ${this.owner}`,
      });
      const child = tree.newTable(depth, a.start, a);
      hold.newTables.push(child);
      tree.link(parent, idx, slot, child);
      return child;
    };
    const onPath = (t: PtTable) => {
      if (seen.has(t)) return;
      seen.add(t);
      t.pins++;
      hold.pinned.push(t);
    };
    // Once per table: Ctrl-C is heard (the hold has what was made, for the abandon), and
    // a terminal shows progress.
    let pages = 0;
    let reported = 0;
    const check = (_t: PtTable, _index: number, n: number) => {
      interruptPoint();
      pages += n;
      if (pages - reported > WORK_STEP) {
        reported = pages;
        workStep(pages, runs.pages, "page tables");
      }
    };
    eachStretch(
      runs.stretches,
      (off, ps, count) => tree.runs(block, offset + off, ps, count, check, create, onPath),
    );
    workDone(runs.pages, "page tables");
    return runs;
  }

  /**
   * Undoes a prepare: unpins, and reclaims the tables it created (still
   * unused) and any table an unmap emptied while it was pinned. Parent links
   * cleared in VRAM become unsynced words; the returned tables are to be
   * freed after the next flush (at once when nothing is unsynced).
   */
  abandon(hold: TableHold): PtTable[] {
    for (const t of hold.pinned) t.pins--;
    const writes: [PtTable, number][] = [];
    const freed: PtTable[] = [];
    this.tree.reclaim([...hold.newTables, ...hold.pinned], writes, freed);
    for (const [t, word] of writes) this.#unsynced.push([t, word, 1]);
    return freed;
  }

  /**
   * Writes a prepared mapping: its PTEs into the shadow, then new tables
   * complete (each entry once, deepest first), the links to them, then the
   * entries of existing tables. On success the prepare's pins go. A write
   * that fails puts the shadow back, marks what may have reached VRAM as
   * unsynced (it is cleared there by the next sync), calls `onWriteFailed`
   * (errors from it are dropped: the write's error is what matters) and
   * rethrows.
   */
  write(job: WriteJob, onWriteFailed: () => void): void {
    const tree = this.tree;
    const codec = this.format.codec;
    // Tables not yet in VRAM on this mapping's paths (including ones another
    // pending prepare created), with their unwritten ancestors.
    const fresh = new Set<PtTable>();
    const addFresh = (t: PtTable | null) => {
      while (t !== null && !t.written && !fresh.has(t)) {
        fresh.add(t);
        t = t.parentLink?.parent ?? null;
      }
    };
    for (const t of job.newTables) addFresh(t);
    // Set the PTEs in the shadow; remember the runs in tables already in VRAM.
    const saved: Saved[] = [];
    const touched: [PtTable, number, number][] = [];
    const runs = job.runs;
    // The PTE as number arithmetic: its constant part once per run, + pageSize * scale per page.
    const line = vramPteLine(codec, job.writable);
    const [block, offset] = splitVa(job.va);
    let pages = 0;
    let reported = 0;
    const totalPages = runs.pages;
    const { words, used } = runs.encoded();
    const fill = new PteFill(words, used, codec, job.writable, line);
    try {
      eachStretch(runs.stretches, (off, ps, count) => {
        fill.stretch(ps);
        tree.runs(block, offset + off, ps, count, (t, index, n) => {
          // Once per table, before any VRAM write: Ctrl-C is heard (the shadow goes back).
          interruptPoint();
          pages += n;
          if (pages - reported > WORK_STEP) {
            reported = pages;
            workStep(pages, totalPages, "PTEs");
          }
          const stride = 2 * wordsPerEntry(t);
          const from = index * stride;
          const empty = t.live === 0;
          // An empty table's words are zeros: nothing to copy to put it back.
          saved.push({
            t,
            from,
            n: n * stride,
            words: empty ? null : t.raw.slice(from, from + n * stride),
            live: t.live,
          });
          fill.fill(t, index, n, empty);
          if (t.written) touched.push([t, index, n]);
          else addFresh(t);
        });
      });
    } catch (e) {
      // Nothing reached VRAM yet: the shadow goes back, the prepare is abandoned.
      this.#rollBack(saved, [], [], []);
      try {
        onWriteFailed();
      } catch {
        // the original error is what matters
      }
      throw e;
    }
    workDone(totalPages, "PTEs");
    // Deepest first, so every table is complete before the PDE pointing to it.
    const order = [...fresh].sort((a, b) => b.depth - a.depth);
    const wrote: PtTable[] = [];
    let linking = false;
    try {
      using w = this.#deps.pramin.borrow();
      // Thousands of small transfers draw no PRAMIN progress line: this loop draws its own
      // (its accesses hear Ctrl-C; the step between tables hears it too, the same way).
      for (let i = 0; i < order.length; i++) {
        if ((i & TABLE_STEP) === 0 && i > 0) workStep(i, order.length, "writing tables");
        const t = order[i];
        writeTable(w, t, fresh);
        t.written = true;
        wrote.push(t);
      }
      if (order.length > TABLE_STEP) workDone(order.length, "writing tables");
      linking = true;
      for (const t of order) {
        const link = t.parentLink;
        if (link !== null && !fresh.has(link.parent)) {
          writeRange(w, link.parent, link.slot, 1);
        }
      }
      for (const [t, index, n] of touched) writePtes(w, t, index, n);
    } catch (e) {
      this.#rollBack(saved, wrote, linking ? order : [], touched);
      try {
        onWriteFailed();
      } catch {
        // PRAMIN or the flush failed again: the words stay unsynced and the
        // tables deferred until a flush completes; the original error is what matters.
      }
      throw e;
    }
    for (const t of job.pinned) t.pins--;
  }

  /**
   * A write failed: the shadow goes back to what it was and the words that
   * may have reached VRAM are marked unsynced (the abandon that follows
   * zeroes the links in the shadow, the next sync in VRAM).
   */
  #rollBack(
    saved: Saved[],
    wrote: PtTable[],
    linked: PtTable[],
    touched: [PtTable, number, number][],
  ): void {
    for (const t of wrote) t.written = false;
    for (let i = saved.length - 1; i >= 0; i--) {
      const s = saved[i];
      if (s.words === null) s.t.raw.fill(0, s.from, s.from + s.n);
      else s.t.raw.set(s.words, s.from);
      s.t.live = s.live;
    }
    const fresh = new Set(wrote);
    for (const t of linked) {
      const link = t.parentLink;
      if (link !== null && !fresh.has(link.parent) && link.parent.written) {
        this.#unsynced.push([link.parent, link.slot, 1]);
      }
    }
    for (const [t, index, n] of touched) {
      const perEntry = wordsPerEntry(t);
      this.#unsynced.push([t, index * perEntry, n * perEntry]);
    }
  }

  /**
   * Invalidates the PTEs of `jobs` in the shadow and reclaims the tables left
   * empty (unlinked in their parents), then writes the changed words through
   * PRAMIN. The shadow is updated whatever VRAM got: after a failed write the
   * rest become unsynced and the error is returned (not thrown), so the
   * caller can finish its bookkeeping. `freed` are the tables to free after
   * the next completed flush.
   */
  unmap(jobs: readonly MapJob[]): { freed: PtTable[]; failure: { error: unknown } | null } {
    const tree = this.tree;
    const emptied: PtTable[] = [];
    const writes: [PtTable, number, number][] = [];
    for (const job of jobs) {
      const [block, offset] = splitVa(job.va);
      eachStretch(job.stretches, (off, ps, count) => {
        tree.runs(block, offset + off, ps, count, (t, index, n) => {
          if (t.level.dual) {
            for (let j = index; j < index + n; j++) {
              const word = pteWord(t, j);
              t.raw.fill(0, 2 * word, 2 * word + 2);
              writes.push([t, word, 1]);
            }
          } else {
            t.raw.fill(0, 2 * index, 2 * (index + n));
            writes.push([t, index, n]);
          }
          t.live -= n;
          if (t.live === 0) emptied.push(t);
        });
      });
    }
    const links: [PtTable, number][] = [];
    const freed: PtTable[] = [];
    tree.reclaim(emptied, links, freed);
    for (const [t, word] of links) writes.push([t, word, 1]);
    const dead = new Set(freed);
    let failure: { error: unknown } | null = null;
    using w = this.#deps.pramin.borrow();
    for (let i = 0; i < writes.length; i++) {
      const [t, word, count] = writes[i];
      if (dead.has(t)) continue;
      if (failure !== null) {
        this.#unsynced.push(writes[i]);
        continue;
      }
      try {
        writeRange(w, t, word, count);
      } catch (e) {
        failure = { error: e };
        this.#unsynced.push(writes[i]);
      }
    }
    return { freed, failure };
  }

  /**
   * The VRAM address of the page of `pageSize` at `va` that a live mapping
   * wrote (its PTE read back from the shadow), or null when that PTE is not
   * a valid VRAM PTE.
   */
  pageAddress(va: bigint, pageSize: number): number | null {
    const [block, offset] = splitVa(va);
    const leaf = this.tree.leaf(block, offset, pageSize);
    if (leaf === null) return null;
    const t = leaf.table;
    const w = pteWord(t, leaf.index);
    return this.#pteAddress(t.raw[2 * w], t.raw[2 * w + 1]);
  }

  /**
   * The physical extents behind a live mapping, in VA order and coalesced,
   * read back from the PTEs it wrote in the shadow (O(PTEs), no MMIO, no
   * bigint per PTE): a mapping keeps its stretches, not a frame per page.
   * EIO when a PTE is not a valid VRAM PTE (the shadow lost it).
   */
  extentsOf(job: MapJob): ExtentList {
    const [block, offset] = splitVa(job.va);
    const out = new ExtentList(Math.min(job.stretches.pages, 65536));
    eachStretch(job.stretches, (off, ps, count) => {
      this.tree.runs(block, offset + off, ps, count, (t, index, n, k) => {
        interruptPoint();
        const raw = t.raw;
        for (let j = 0; j < n; j++) {
          const at = 2 * pteWord(t, index + j);
          const pa = this.#pteAddress(raw[at], raw[at + 1]);
          if (pa === null) {
            fail(
              "EIO",
              `the PTE of page ${k + j} of the ${hex(ps)}-byte stretch at VA ${
                hex(job.va + BigInt(off))
              } is not a valid VRAM PTE in the shadow`,
            );
          }
          out.push(pa, ps);
        }
      });
    });
    return out;
  }

  /** The VRAM address a PTE (as its two 32-bit words) points to, or null when it is not a valid VRAM PTE. */
  #pteAddress(lo: number, hi: number): number | null {
    const v = hi * TWO_32 + lo;
    // Entries this engine wrote are on one of the two lines: no bigint.
    for (const line of this.#lines) {
      if (!Number.isSafeInteger(v)) break;
      const pa = (v - line.base) / line.scale;
      if (
        Number.isSafeInteger(pa) && pa >= 0 && pa % 2 ** line.target.alignBits === 0 &&
        pa < 2 ** line.target.limitBits && line.base + pa * line.scale === v
      ) {
        return pa;
      }
    }
    const info = this.format.codec.pteInfo(
      hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo),
    );
    if (!info.valid || info.aperture !== "video") return null;
    return Number(info.address);
  }

  /**
   * What the shadow says maps `va`: the valid PTE the
   * cursor finds for each page size, largest first (as the MMU decides), or null.
   */
  lookup(va: bigint): { pte: bigint; pageSize: number; level: string } | null {
    const [block, offset] = splitVa(va);
    for (const size of this.pageSizes) {
      const leaf = this.tree.leaf(block, offset, size);
      if (leaf === null) continue;
      const t = leaf.table;
      const pte = wordOf(t, pteWord(t, leaf.index));
      if (this.format.codec.pteInfo(pte).valid) return { pte, pageSize: size, level: t.level.name };
    }
    return null;
  }
}
