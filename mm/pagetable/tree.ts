/**
 * The host-side shadow of one page-table tree and the one cursor over it.
 *
 * Every table the address space created or scanned is a {@linkcode PtTable}:
 * its entries as 32-bit words exactly as VRAM holds them (two per 64-bit
 * word, low half first, so a run of entries is written to VRAM in one bulk
 * call), its child tables, a count of non-zero entries and the pins of
 * prepared mappings whose path runs through it.
 *
 * The dual PD0 convention lives here and nowhere else: a PD0 entry `i` is
 * two 64-bit words, `2i` (the big-page half, low word) and `2i + 1` (the
 * small-page half, high word); its child slots are numbered the same way
 * ({@linkcode dualSlot}), and the big-page table sits one depth below the
 * small one ({@linkcode ShadowTree.halfDepth}).
 *
 * VA arithmetic inside the loops uses numbers: a VA is split into its 2 MiB
 * block (`va >> 21`, below 2^36 for a 57-bit VA) and the offset inside the
 * block; directory indices come from the block, page-table indices from the
 * offset. No bigint is made per page.
 *
 * @module
 */

import type { Allocation } from "../buddy.ts";
import { interruptPoint } from "../../hw/mmio.ts";
import { fail, hex } from "../types.ts";
import type { LevelFormat, MmuFormat } from "./format.ts";

/**
 * Progress of long page-table work that makes no MMIO access (checking a
 * pfn list, choosing page sizes, filling the shadow, dumps): `done` of
 * `total` units of `what`, reported every few thousand steps and once with
 * `done === total` at the end. The REPL sets it to draw the same progress
 * line bulk PRAMIN transfers draw (on a terminal); null for none.
 */
export type WorkProgress = (done: number, total: number, what: string) => void;

let workProgress: WorkProgress | null = null;

/** Installs (or with null removes) the {@linkcode WorkProgress} reporter. */
export function setWorkProgress(fn: WorkProgress | null): void {
  workProgress = fn;
}

/** Steps between two Ctrl-C checks (and progress reports) in a long loop: a mask. */
export const WORK_STEP = 4095;

/**
 * A step of a long loop without MMIO, called when `(done & WORK_STEP) === 0`:
 * EINTR when Ctrl-C was pressed ({@linkcode interruptPoint}), else a
 * progress report. Call it only where stopping leaves state consistent.
 */
export function workStep(done: number, total: number, what: string): void {
  interruptPoint();
  workProgress?.(done, total, what);
}

/** The end of a long loop that reported with {@linkcode workStep} (clears the line). */
export function workDone(total: number, what: string): void {
  workProgress?.(total, total, what);
}

/** Bytes of VA one 2 MiB block covers (a PD0 entry). */
export const BLOCK = 2 ** 21;
const BLOCK_BITS = 21;

/** PD0 halves: 0 = the big-page table (low word), 1 = the small-page table (high word). */
export type DualHalf = 0 | 1;
/** The big-page half of a PD0 entry. */
export const BIG_HALF: DualHalf = 0;
/** The small-page half of a PD0 entry. */
export const SMALL_HALF: DualHalf = 1;

/**
 * The child slot (and 64-bit word) of half `half` of PD0 entry `idx`.
 *
 * @example
 * ```ts
 * dualSlot(3, SMALL_HALF); // 7
 * ```
 */
export function dualSlot(idx: number, half: DualHalf): number {
  return 2 * idx + half;
}

/** Where a parent points at a table. */
export interface PtLink {
  /** The parent table. */
  readonly parent: PtTable;
  /** The entry index in the parent. */
  readonly idx: number;
  /** The child slot (= the 64-bit word): `idx`, or {@linkcode dualSlot} at PD0. */
  readonly slot: number;
}

/** One table in the shadow. */
export interface PtTable {
  /** Its level. */
  readonly level: LevelFormat;
  /** Index in format.directories; directories.length = small PT, +1 = big PT. */
  readonly depth: number;
  /** VRAM address. */
  readonly addr: number;
  /** Our allocation; null for a table we did not create (firmware's, or a given root). */
  readonly alloc: Allocation | null;
  /**
   * Entries as 32-bit words (two per 64-bit word, low first; PD0: four per
   * entry). Empty once the table is recycled ({@linkcode recycleTable}).
   */
  raw: Uint32Array;
  /** Child tables: one per entry, or two per PD0 entry (`2i` = big, `2i + 1` = small). */
  readonly children: (PtTable | null)[];
  /** Entries (PD0: entries with either word non-zero) that are not zero. */
  live: number;
  /** False until its first complete write to VRAM. */
  written: boolean;
  /** Prepared-but-unexecuted mappings whose path runs through this table (keeps it from reclaim). */
  pins: number;
  /** Where the parent points at this table (null for the root). */
  parentLink: PtLink | null;
}

/** The 64-bit word `w` of a table (bigint). */
export function wordOf(t: PtTable, w: number): bigint {
  const lo = t.raw[2 * w];
  const hi = t.raw[2 * w + 1];
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** Sets the 64-bit word `w` of a table. */
export function setWord(t: PtTable, w: number, value: bigint): void {
  t.raw[2 * w] = Number(value & 0xffffffffn);
  t.raw[2 * w + 1] = Number(value >> 32n);
}

/** True when the 64-bit word `w` is zero. */
export function wordZero(t: PtTable, w: number): boolean {
  return t.raw[2 * w] === 0 && t.raw[2 * w + 1] === 0;
}

/** True when entry `idx` is non-zero (at PD0: either half). */
export function entryLive(t: PtTable, idx: number): boolean {
  if (t.level.dual) return !wordZero(t, 2 * idx) || !wordZero(t, 2 * idx + 1);
  return !wordZero(t, idx);
}

/** 64-bit words per entry: 2 at PD0, else 1. */
export function wordsPerEntry(t: PtTable): 1 | 2 {
  return t.level.dual ? 2 : 1;
}

/** The 64-bit word of `t` that holds the PTE of entry `idx` (at PD0 a 2 MiB PTE: the big half). */
export function pteWord(t: PtTable, idx: number): number {
  return t.level.dual ? dualSlot(idx, BIG_HALF) : idx;
}

/** Zeroed word arrays of freed tables, by length (fresh memory is slow to touch the first time). */
const spares = new Map<number, Uint32Array[]>();
/**
 * Bytes the spares may hold: 4,096 tables of 4 KiB, the page tables of 8
 * GiB of 4 KiB pages (fresh memory costs such a map ~50 ms of page faults
 * on a VM, every time; this is what stays allocated after it is unmapped).
 */
const SPARE_BYTES = 16 * 2 ** 20;
let spareBytes = 0;
const NO_WORDS = new Uint32Array(0);

/** A zeroed array of `n` words: a spare one if there is one. */
function spareWords(n: number): Uint32Array {
  const list = spares.get(n);
  const w = list?.pop();
  if (w === undefined) return new Uint32Array(n);
  spareBytes -= w.byteLength;
  return w;
}

/**
 * Gives the words of a table that is gone for good (unlinked, its
 * allocation freed after the TLB flush) to the next new table; the table's
 * `raw` becomes empty, so a stale reference reads nothing rather than
 * another table's entries.
 */
export function recycleTable(t: PtTable): void {
  const w = t.raw;
  t.raw = NO_WORDS;
  if (w.length === 0 || spareBytes + w.byteLength > SPARE_BYTES) return;
  w.fill(0);
  let list = spares.get(w.length);
  if (list === undefined) spares.set(w.length, list = []);
  list.push(w);
  spareBytes += w.byteLength;
}

/** What the cursor found for one VA: the table holding its entry and the entry index. */
export interface PtLeaf {
  /** The table holding the PTE (a page table, or a directory for a huge page). */
  table: PtTable;
  /** Entry index in it. */
  index: number;
}

/** Makes a child table when the cursor descends through a missing one (prepare). */
export type PtCreate = (parent: PtTable, idx: number, slot: number, depth: number) => PtTable;

/**
 * The shadow tables of one address space.
 *
 * @example
 * ```ts
 * import { mmuFormat } from "./mod.ts";
 * const tree = new ShadowTree(mmuFormat({ version: 2 }), 0x200000, null);
 * tree.leaf(0, 0x1000, 4096); // null: no page table there yet
 * ```
 */
export class ShadowTree {
  /** The page-table format. */
  readonly format: MmuFormat;
  /** The root table (the PDB). */
  readonly root: PtTable;
  /** Per directory level: 2 MiB blocks per entry (2^(vaLo - 21)). */
  readonly #blocksPerEntry: number[];
  readonly #dirs: readonly LevelFormat[];
  readonly #small: number;

  /** A tree of only the root at `pdb` (`rootAlloc` when the caller allocated it). */
  constructor(format: MmuFormat, pdb: number, rootAlloc: Allocation | null) {
    this.format = format;
    this.#dirs = format.directories;
    this.#blocksPerEntry = this.#dirs.map((l) => 2 ** (l.vaLo - BLOCK_BITS));
    this.#small = format.smallPt.pageSize;
    this.root = this.newTable(0, pdb, rootAlloc);
    this.root.written = true;
  }

  /** The level at `depth` (directories, then the small PT, then the big PT). */
  levelAt(depth: number): LevelFormat {
    const dirs = this.#dirs;
    if (depth < dirs.length) return dirs[depth];
    return depth === dirs.length ? this.format.smallPt : this.format.bigPt;
  }

  /** The depth of the page table behind half `half` of a PD0 entry. */
  halfDepth(half: DualHalf): number {
    return half === SMALL_HALF ? this.#dirs.length : this.#dirs.length + 1;
  }

  /** The depth of the child behind `slot` of a table at `depth`. */
  childDepth(depth: number, slot: number): number {
    return this.#dirs[depth].dual ? this.halfDepth((slot % 2) as DualHalf) : depth + 1;
  }

  /** A new, unlinked, all-zero table. */
  newTable(depth: number, addr: number, alloc: Allocation | null): PtTable {
    const level = this.levelAt(depth);
    const words = level.dual ? level.entries * 2 : level.entries;
    const childSlots = depth < this.#dirs.length ? words : 0;
    return {
      level,
      depth,
      addr,
      alloc,
      raw: spareWords(words * 2),
      children: new Array(childSlots).fill(null),
      live: 0,
      written: false,
      pins: 0,
      parentLink: null,
    };
  }

  /** Hangs an existing (scanned) table under `parent` without changing any entry. */
  attach(parent: PtTable, idx: number, slot: number, child: PtTable): void {
    parent.children[slot] = child;
    child.parentLink = { parent, idx, slot };
  }

  /** Points entry `idx` (`slot` at PD0) of `parent` at `child` in the shadow (written later). */
  link(parent: PtTable, idx: number, slot: number, child: PtTable): void {
    const codec = this.format.codec;
    const wasLive = entryLive(parent, idx);
    if (parent.level.dual) {
      const big = slot === dualSlot(idx, BIG_HALF);
      const [lo, hi] = codec.vramDualPde(big ? { big: child.addr } : { small: child.addr });
      setWord(parent, slot, big ? lo : hi);
    } else {
      setWord(parent, idx, codec.vramPde(child.addr));
    }
    this.attach(parent, idx, slot, child);
    if (!wasLive) parent.live++;
  }

  /**
   * Unlinks tables that are empty, ours and unpinned, bottom-up (a parent
   * emptied this way goes too). Parent words to rewrite go to `writes`, the
   * tables to free (after the TLB flush) to `freed`.
   */
  reclaim(candidates: Iterable<PtTable>, writes: [PtTable, number][], freed: PtTable[]): void {
    // After a large map is abandoned (Ctrl-C waits for this) these are tens of thousands of
    // tables: read by index, not shift() (which moves a large array every time), and no set
    // (a table listed twice is skipped the second time: it has no parent link any more, or
    // still cannot go).
    const queue = [...candidates];
    for (let q = 0; q < queue.length; q++) {
      const t = queue[q];
      const link = t.parentLink;
      // A reclaimed table has no parent link, so one queued twice is skipped.
      if (link === null || t.alloc === null || t.live !== 0 || t.pins !== 0) continue;
      const { parent, idx, slot } = link;
      parent.children[slot] = null;
      t.parentLink = null;
      parent.raw[2 * slot] = 0;
      parent.raw[2 * slot + 1] = 0;
      // A link reaches VRAM only once its table is written: clear it there too.
      if (parent.written && t.written) writes.push([parent, slot]);
      if (!entryLive(parent, idx)) {
        parent.live--;
        if (parent.live === 0) queue.push(parent);
      }
      freed.push(t);
    }
  }

  /**
   * The cursor's one descent: the table holding the PTE of `pageSize` for
   * the VA (`block`, `offset`) and its index. Missing tables are made with
   * `create` (or the result is null without it); `onPath` sees every table
   * below the root on the way.
   */
  leaf(
    block: number,
    offset: number,
    pageSize: number,
    create?: PtCreate,
    onPath?: (t: PtTable) => void,
  ): PtLeaf | null {
    const dirs = this.#dirs;
    let t = this.root;
    for (let d = 0; d < dirs.length; d++) {
      const level = dirs[d];
      const idx = Math.floor(block / this.#blocksPerEntry[d]) % level.entries;
      if (level.pageSize === pageSize) return { table: t, index: idx };
      let slot = idx;
      let small = false;
      if (level.dual) {
        small = pageSize === this.#small;
        slot = dualSlot(idx, small ? SMALL_HALF : BIG_HALF);
      }
      let child = t.children[slot];
      if (child === null) {
        if (create === undefined) return null;
        child = create(t, idx, slot, this.childDepth(d, slot));
      }
      onPath?.(child);
      if (level.dual) {
        return { table: child, index: small ? offset >>> 12 : offset >>> 16 };
      }
      t = child;
    }
    return fail("EIO", `no PTE slot for ${hex(pageSize)}-byte pages at block ${hex(block)}`);
  }

  /**
   * Walks `count` consecutive PTEs of `pageSize` from the VA (`block`,
   * `offset`), descending once per table: `fn(table, firstIndex, n, k)` gets
   * each run of `n` entries, `k` being the page number (from 0) of its
   * first. Tables missing on the way are made with `create`; without it a
   * missing table is an EIO (the shadow lost a table it mapped through).
   */
  runs(
    block: number,
    offset: number,
    pageSize: number,
    count: number,
    fn: (t: PtTable, index: number, n: number, k: number) => void,
    create?: PtCreate,
    onPath?: (t: PtTable) => void,
  ): void {
    for (let k = 0; k < count;) {
      const total = offset + k * pageSize;
      const b = block + Math.floor(total / BLOCK);
      const leaf = this.leaf(b, total % BLOCK, pageSize, create, onPath);
      if (leaf === null) {
        fail("EIO", `the shadow has no table for ${hex(pageSize)}-byte pages at block ${hex(b)}`);
      }
      const n = Math.min(count - k, leaf.table.level.entries - leaf.index);
      fn(leaf.table, leaf.index, n, k);
      k += n;
    }
  }

  /**
   * True when a huge page of `size` may go at the VA (`block`, `offset`):
   * its directory entry has no table and no entry (or its path does not exist yet).
   */
  hugeSlotFree(block: number, size: number): boolean {
    const dirs = this.#dirs;
    let t: PtTable | null = this.root;
    for (let d = 0; d < dirs.length && t !== null; d++) {
      const idx = Math.floor(block / this.#blocksPerEntry[d]) % dirs[d].entries;
      if (dirs[d].pageSize === size) return !entryLive(t, idx);
      if (dirs[d].dual) return false;
      t = t.children[idx];
    }
    return true;
  }

  /** Every table, root first (depth-first). */
  *tables(): Generator<PtTable> {
    const stack: PtTable[] = [this.root];
    while (stack.length > 0) {
      const t = stack.pop()!;
      yield t;
      for (let i = t.children.length - 1; i >= 0; i--) {
        const c = t.children[i];
        if (c !== null) stack.push(c);
      }
    }
  }

  /** Counts of tables by level name (root included). */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of this.tables()) out[t.level.name] = (out[t.level.name] ?? 0) + 1;
    return out;
  }
}

/**
 * A VA as the cursor takes it: its 2 MiB block and the offset inside it.
 *
 * @example
 * ```ts
 * splitVa(0x40_0000_1000n); // [0x20000, 0x1000]
 * ```
 */
export function splitVa(va: bigint): [number, number] {
  return [Number(va >> 21n), Number(va & 0x1fffffn)];
}

/**
 * The VA (`block`, `offset`) modulo a power-of-two page size `size`, in numbers.
 *
 * @example
 * ```ts
 * vaModulo(0x101, 0x1000, 2 ** 29); // 0x201000
 * ```
 */
export function vaModulo(block: number, offset: number, size: number): number {
  if (size <= BLOCK) return offset % size;
  const blocks = size / BLOCK;
  return (block % blocks) * BLOCK + offset;
}
