/**
 * One GPU virtual address space (nova-core's `Vmm`): VA ranges, the Mapping
 * objects, two-phase mapping (prepare/execute) and the flush-then-free order.
 * The page-table engine it drives lives in `mm/pagetable/`: the shadow tree
 * and its cursor (`tree.ts`), extents and the page-size choice
 * (`extents.ts`), the formats and codecs, the walker.
 *
 * Invariants:
 * - The shadow mirrors what is in VRAM for every table the Vmm created or
 *   scanned, so mapping never re-reads PDEs through PRAMIN; {@linkcode
 *   Vmm.translate} walks the real tables (the hardware's truth).
 * - An entry the Vmm did not create is never rewritten. In a PD0 entry only
 *   the 64-bit word of the half that changes is written (big = low word,
 *   small = high word), so the other half is preserved bit for bit.
 * - A new table is written completely (the entries the mapping fills with
 *   their values, the rest with zeros, each once) before the PDE that points
 *   to it; one TLB flush follows a map or an unmap.
 * - Page-table pages that become empty on unmap are invalidated in their
 *   parent, the TLB is flushed, and only then are they returned to the
 *   buddy allocator.
 * - All or nothing: a prepare validates and allocates everything without an
 *   MMIO access; a failed write during execute rolls the shadow back (and
 *   clears what may have reached VRAM) so VA and tables go back; a failed
 *   write during unmap leaves the mappings live (unmap again); a failed flush
 *   keeps freed tables and unmap callbacks until a flush completes. User
 *   callbacks run after the bookkeeping and the flush.
 *
 * @module
 */

import { describe, fail, formatSize, hex } from "../hw/errors.ts";
import { checkOptions, checkUint } from "../hw/validate.ts";
import type { Allocation, BuddyAllocator } from "./buddy.ts";
import type { Pramin, PraminWindow } from "./pramin.ts";
import type { Tlb } from "./tlb.ts";
import type { MmuFormat } from "./pagetable/format.ts";
import { walk, type WalkResult } from "./pagetable/walk.ts";
import { choosePages, type Extent, ExtentList, PteRuns } from "./pagetable/extents.ts";
import {
  BIG_HALF,
  dualSlot,
  entryLive,
  type PtTable,
  setWord,
  ShadowTree,
  SMALL_HALF,
  splitVa,
  wordOf,
  wordZero,
} from "./pagetable/tree.ts";
import { virtualAddress } from "./types.ts";
import { type VaRange, VaRanges } from "./va_ranges.ts";

export type { Extent } from "./pagetable/extents.ts";

/**
 * Passed by `gpu.close()` (through `GpuMm.destroyVmm`) to tear down address
 * spaces users may not destroy themselves (BAR1's). Not exported from mod.ts.
 */
export const TEARDOWN: unique symbol = Symbol("novamm.teardown");

const PAGE = 4096;

/** What a Vmm needs from its GPU. */
export interface VmmDeps {
  /** PRAMIN, to write and read tables. */
  pramin: Pramin;
  /** The TLB, flushed once per map/unmap. */
  tlb: Tlb;
  /** Where page-table pages come from. */
  buddy: BuddyAllocator;
  /** Page-table format of this GPU. */
  format: MmuFormat;
  /** VRAM size (tables and pages must lie below it). */
  vramSize: number;
}

/** Options for a {@linkcode Vmm}. */
export interface VmmOptions {
  /** Root page directory (VRAM, 4 KiB aligned). */
  pdb: number;
  /** Bytes of VA this Vmm manages, from 0. */
  vaSize: bigint;
  /** The root's allocation when this Vmm created it (freed by {@linkcode Vmm.destroy}). */
  rootAllocation?: Allocation | null;
  /** Scan valid entries already in the tables and mark their VA taken (for firmware-built spaces). */
  scan?: boolean;
  /** A name for messages and dumps. */
  name?: string;
  /** A BAR address space: its TLB flushes invalidate only the hub TLB (HUBTLB_ONLY). */
  bar?: boolean;
}

/** Options for {@linkcode Vmm.mapPages} / {@linkcode Vmm.prepareMap}. */
export interface MapOptions {
  /** Fixed VA (must be free); default: the lowest free VA aligned for the largest usable page. */
  va?: bigint | number;
  /** Allow GPU writes (default false: read-only). */
  writable?: boolean;
  /** Force one page size (4 KiB, 64 KiB, 2 MiB, 512 MiB, 256 GiB where the chip has it). */
  pageSize?: number;
  /** Label for the VA range (messages, dumps). */
  label?: string;
}

/** A VA range with page tables ready, waiting for {@linkcode Vmm.executeMap}. */
export class PreparedMapping {
  /** The VA range reserved. */
  readonly range: VaRange;
  /** Bytes to map. */
  readonly size: number;
  /** @internal */ readonly runs: PteRuns;
  /** @internal */ readonly writable: boolean;
  /** @internal */ readonly newTables: PtTable[];
  /** @internal */ readonly pinned: PtTable[];
  /** @internal */ state: "prepared" | "executed" | "cancelled" = "prepared";
  /**
   * The mapping once its entries are in VRAM (set by {@linkcode Vmm.executeMap}
   * before its TLB flush, so a caller whose execute failed in the flush can
   * still reach, and unmap, what was mapped); null before.
   */
  mapping: Mapping | null = null;
  readonly #vmm: Vmm;

  /** Created by {@linkcode Vmm.prepareMap}. */
  constructor(vmm: Vmm, init: {
    range: VaRange;
    size: number;
    runs: PteRuns;
    writable: boolean;
    newTables: PtTable[];
    pinned: PtTable[];
  }) {
    this.#vmm = vmm;
    this.range = init.range;
    this.size = init.size;
    this.runs = init.runs;
    this.writable = init.writable;
    this.newTables = init.newTables;
    this.pinned = init.pinned;
  }

  /** The address space it was prepared in. */
  get vmm(): Vmm {
    return this.#vmm;
  }

  /** The VA the mapping will have. */
  get va(): bigint {
    return this.range.start;
  }

  /** Gives back the VA range and the page tables allocated for it (nothing was written). */
  cancel(): void {
    this.#vmm.cancelMap(this);
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `PreparedMapping ${hex(this.va)} +${
      formatSize(this.size)
    } (${this.newTables.length} new tables, ${this.state})`;
  }
}

/** A live mapping; `unmap()` or `using` releases it. */
export class Mapping {
  /** The address space. */
  readonly vmm: Vmm;
  /** First GPU virtual address. */
  readonly va: bigint;
  /** Bytes mapped. */
  readonly size: number;
  /** GPU writes allowed. */
  readonly writable: boolean;
  /** The VA range. */
  readonly range: VaRange;
  /** @internal */ readonly runs: PteRuns;
  #live = true;
  #onRetire: (() => void)[] = [];
  #pages: Record<string, number> | null = null;

  /** Created by {@linkcode Vmm.executeMap}. */
  constructor(vmm: Vmm, prepared: PreparedMapping) {
    this.vmm = vmm;
    this.va = prepared.range.start;
    this.size = prepared.size;
    this.writable = prepared.writable;
    this.range = prepared.range;
    this.runs = prepared.runs;
  }

  /** False once unmapped. */
  get live(): boolean {
    return this.#live;
  }

  /** Page counts by page size, e.g. `{ "4K": 3, "2M": 1 }`. */
  get pages(): Record<string, number> {
    if (this.#pages === null) {
      const out: Record<string, number> = {};
      const r = this.runs;
      for (let i = 0; i < r.length; i++) {
        const name = sizeName(r.pageSize(i));
        out[name] = (out[name] ?? 0) + r.count(i);
      }
      this.#pages = out;
    }
    return { ...this.#pages };
  }

  /** The physical extents behind the mapping, in VA order (contiguous pieces coalesced). */
  get extents(): Extent[] {
    return this.runs.extents().toArray();
  }

  /** The physical (VRAM) address behind byte `offset` of the mapping (O(log runs)). */
  physicalAddress(offset: number): number {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.size) {
      fail("EINVAL", `offset ${describe(offset)} is outside the ${hex(this.size)}-byte mapping`);
    }
    const i = this.runs.find(offset);
    return this.runs.pa(i) + (offset - this.runs.offset(i));
  }

  /** Runs `fn` once when the mapping goes away (unmap, destroy, GPU close). */
  whenUnmapped(fn: () => void): void {
    if (this.#live) this.#onRetire.push(fn);
    else fn();
  }

  /**
   * @internal Marks it unmapped and hands back its callbacks (the Vmm runs
   * them after the bookkeeping and the flush); null if it already was.
   */
  retire(): (() => void)[] | null {
    if (!this.#live) return null;
    this.#live = false;
    return this.#onRetire.splice(0);
  }

  /** Unmaps (PTEs invalidated, one TLB flush, VA released, empty tables reclaimed). */
  unmap(): void {
    if (this.#live) this.vmm.unmap(this);
  }

  /** Releases it at the end of a `using` scope (same as closing it explicitly). */
  [Symbol.dispose](): void {
    this.unmap();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    const by = new Map<number, number>();
    const r = this.runs;
    for (let i = 0; i < r.length; i++) {
      by.set(r.pageSize(i), (by.get(r.pageSize(i)) ?? 0) + r.count(i));
    }
    const pages = [...by].map(([size, n]) => `${n}×${formatSize(size)}`).join(" ");
    return `Mapping ${hex(this.va)} +${formatSize(this.size)} ${
      this.writable ? "rw" : "ro"
    } ${pages}${this.#live ? "" : " (unmapped)"}`;
  }
}

/** One node of {@linkcode Vmm.dump}. */
export interface DumpNode {
  /** Level name. */
  level: string;
  /** Index in the parent table (-1 for the root). */
  index: number;
  /** VRAM address of the entry (the PDB for the root). */
  address: number;
  /** First VA the entry covers. */
  va: bigint;
  /** Decoded entry (a PTE or PDE), or null for the root. */
  entry: unknown;
  /** Child nodes. */
  children: DumpNode[];
  /** True for tables this Vmm did not create. */
  foreign: boolean;
}

/** Options for {@linkcode Vmm.dump}. */
export interface DumpOptions {
  /** Stop after this many PTEs (default 256). */
  maxPtes?: number;
  /** Read the tables from VRAM through PRAMIN instead of printing the shadow. */
  fromHardware?: boolean;
}

function sizeName(n: number): string {
  if (n >= 2 ** 30) return `${n / 2 ** 30}G`;
  if (n >= 2 ** 20) return `${n / 2 ** 20}M`;
  return `${n / 1024}K`;
}

/** Words of a table as they were before a change (to put the shadow back). */
interface Saved {
  t: PtTable;
  /** First 32-bit word. */
  from: number;
  words: Uint32Array;
  live: number;
}

/** A range of 64-bit words of a written table that VRAM may not hold yet. */
type Unsynced = [t: PtTable, word: number, count: number];

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_32 = 2 ** 32;

function vaKind(value: unknown, key: string): void {
  if (typeof value !== "bigint" && typeof value !== "number") {
    fail("EINVAL", `map options.${key} must be a bigint or number, not ${describe(value)}`);
  }
}

const MAP_OPTIONS = {
  va: vaKind,
  writable: "boolean",
  pageSize: "number",
  label: "string",
} as const;

/**
 * Calls `fn(offset, pageSize, count, firstRun)` for each stretch of equal-size
 * pages of `runs` (consecutive runs of one size are consecutive in VA too).
 */
function vaRuns(
  runs: PteRuns,
  fn: (offset: number, pageSize: number, count: number, firstRun: number) => void,
): void {
  for (let r = 0; r < runs.length;) {
    const ps = runs.pageSize(r);
    let count = runs.count(r);
    let e = r + 1;
    while (e < runs.length && runs.pageSize(e) === ps) count += runs.count(e++);
    fn(runs.offset(r), ps, count, r);
    r = e;
  }
}

/** Runs every callback, then throws the first error one threw (after all ran). */
function runAll(callbacks: readonly (() => void)[]): void {
  let first: { error: unknown } | null = null;
  for (const fn of callbacks) {
    try {
      fn();
    } catch (e) {
      first ??= { error: e };
    }
  }
  if (first !== null) throw first.error;
}

/**
 * One GPU address space.
 *
 * @example
 * ```ts
 * const ch = gpu.mm.createVmm({ vaSize: 1n << 40n });
 * const m = ch.mapPages([0x1200, 0x1201], { writable: true });
 * ch.translate(m.va); // { pa: 0x1200000, pageSize: 4096, level: "PT", ... }
 * m.unmap();
 * ```
 */
export class Vmm {
  /** Root page directory (VRAM address). */
  readonly pdb: number;
  /** Page-table format. */
  readonly format: MmuFormat;
  /** VA bytes managed, from 0. */
  readonly vaSize: bigint;
  /** Name for messages. */
  readonly name: string;
  /** Taken VA ranges (mappings and, on a scanned space, firmware's). */
  readonly ranges: VaRanges;
  readonly #deps: VmmDeps;
  readonly #tree: ShadowTree;
  readonly #rootAllocation: Allocation | null;
  readonly #mappings = new Set<Mapping>();
  /** The live mapping behind each VA range a mapping holds (for {@linkcode Vmm.liveAt}). */
  readonly #byRange = new Map<VaRange, Mapping>();
  #protected: string | null = null;
  readonly #holds = new Map<number, string>();
  readonly #onDestroy: (() => void)[] = [];
  #holdId = 0;
  readonly #bar: boolean;
  readonly #pending = new Set<PreparedMapping>();
  /** Page sizes this chip can map, largest first. */
  readonly #sizes: number[];
  /** Words VRAM may not hold yet (a write failed): written before the next flush. */
  #unsynced: Unsynced[] = [];
  /** Unlinked tables and unmap callbacks waiting for a completed flush (one failed). */
  #deferredTables: PtTable[] = [];
  #deferredCallbacks: (() => void)[] = [];
  #destroyed = false;

  /** Constructs it (see the class documentation for who does and how). */
  constructor(deps: VmmDeps, options: VmmOptions) {
    const { format } = deps;
    if (!Number.isSafeInteger(options.pdb) || options.pdb < 0 || options.pdb % PAGE !== 0) {
      fail("EINVAL", `PDB ${describe(options.pdb)} is not a 4 KiB-aligned VRAM address`);
    }
    if (options.pdb + PAGE > deps.vramSize) {
      fail("EINVAL", `PDB ${hex(options.pdb)} is past the end of VRAM (${hex(deps.vramSize)})`);
    }
    const maxVa = 1n << BigInt(format.vaBits);
    if (typeof options.vaSize !== "bigint" || options.vaSize <= 0n || options.vaSize > maxVa) {
      fail(
        "EINVAL",
        `VA size ${describe(options.vaSize)} must be a bigint in 1..${
          hex(maxVa)
        } (${format.vaBits}-bit VA)`,
      );
    }
    if (options.vaSize % BigInt(PAGE) !== 0n) {
      fail("EINVAL", `VA size ${hex(options.vaSize)} is not a multiple of 4 KiB`);
    }
    this.#deps = deps;
    this.#bar = options.bar ?? false;
    this.format = format;
    this.pdb = options.pdb;
    this.vaSize = options.vaSize;
    this.name = options.name ?? `vmm@${hex(options.pdb)}`;
    this.ranges = new VaRanges(options.vaSize);
    this.#rootAllocation = options.rootAllocation ?? null;
    this.#tree = new ShadowTree(format, options.pdb, this.#rootAllocation);
    const sizes: number[] = [];
    for (const d of format.directories) if (d.hugePageSize !== null) sizes.push(d.hugePageSize);
    sizes.sort((a, b) => b - a);
    this.#sizes = [...sizes, format.bigPt.pageSize, format.smallPt.pageSize];
    if (options.scan) this.#scan();
  }

  /**
   * Writes what VRAM may still lack, flushes the TLB, then frees the tables
   * and hands back the callbacks that waited for a completed flush.
   */
  #flush(): (() => void)[] {
    if (this.#unsynced.length > 0) {
      using w = this.#deps.pramin.borrow();
      for (const [t, word, count] of this.#unsynced) this.#writeRange(w, t, word, count);
      this.#unsynced = [];
    }
    this.#deps.tlb.flush(this.pdb, { hubOnly: this.#bar });
    const tables = this.#deferredTables;
    this.#deferredTables = [];
    for (const t of tables) t.alloc!.free();
    return this.#deferredCallbacks.splice(0);
  }

  /** Writes 64-bit words [word, word + count) of `t` from the shadow. */
  #writeRange(w: PraminWindow, t: PtTable, word: number, count: number): void {
    w.writeWords(t.addr + word * 8, t.raw.subarray(2 * word, 2 * (word + count)));
  }

  /**
   * What a CPU access of [va, va + length) through an aperture bound to this
   * space would hit: the live mapping covering all of it, `"firmware"` for a
   * range firmware mapped (found by the scan), or null (it would fault).
   */
  liveAt(va: number, length: number): Mapping | "firmware" | null {
    checkUint(va, "BAR1 VA");
    checkUint(length, "access length");
    const r = this.ranges.find(BigInt(va));
    if (r === undefined || r.end < BigInt(va) + BigInt(length)) return null;
    if (r.owner === "firmware") return "firmware";
    const m = this.#byRange.get(r);
    return m !== undefined && m.live ? m : null;
  }

  /**
   * Refuses {@linkcode Vmm.destroy} from users from now on (EPERM naming
   * `reason`): for the BAR1 address space, which only `gpu.close()` tears down.
   */
  protect(reason: string): void {
    if (typeof reason !== "string") {
      fail("EINVAL", `protect reason ${describe(reason)} is not a string`);
    }
    this.#protected = reason;
  }

  /**
   * Keeps this space from being destroyed while something outside it (a BAR1
   * binding) uses its tables; call the returned function to let go.
   */
  hold(reason: string): () => void {
    if (typeof reason !== "string") {
      fail("EINVAL", `hold reason ${describe(reason)} is not a string`);
    }
    const id = ++this.#holdId;
    this.#holds.set(id, reason);
    return () => void this.#holds.delete(id);
  }

  /** Page sizes this address space can map, largest first. */
  get pageSizes(): readonly number[] {
    return this.#sizes;
  }

  /** Live mappings made through this Vmm. */
  mappings(): Mapping[] {
    return [...this.#mappings];
  }

  // --- shadow -----------------------------------------------------------------

  /** Reads the existing tables (through PRAMIN) into the shadow and marks mapped VA as taken. */
  #scan(): void {
    using w = this.#deps.pramin.borrow();
    const tree = this.#tree;
    const codec = this.format.codec;
    const dirs = this.format.directories;
    const pd0 = dirs.length - 1;
    const vramSize = this.#deps.vramSize;
    const taken: [bigint, bigint][] = [];
    const take = (va: bigint, size: bigint) => {
      taken.push([va, va + size > this.vaSize ? this.vaSize : va + size]);
    };
    const child = (t: PtTable, idx: number, slot: number, addr: number, va: bigint) => {
      const c = tree.newTable(tree.childDepth(t.depth, slot), addr, null);
      c.written = true;
      tree.attach(t, idx, slot, c);
      visit(c, va);
    };
    const visit = (t: PtTable, base: bigint) => {
      const level = t.level;
      const span = 1n << BigInt(level.vaLo);
      const count = Math.min(level.entries, Number((this.vaSize - base + span - 1n) / span));
      const perEntry = level.dual ? 4 : 2;
      // One bulk read of the entries this space can reach (the same 32-bit reads, in order).
      w.readWords(t.addr, count * perEntry, t.raw.subarray(0, count * perEntry));
      const entryVa = (i: number) => base + (BigInt(i) << BigInt(level.vaLo));
      if (t.depth > pd0) {
        for (let i = 0; i < count; i++) {
          if (wordZero(t, i)) continue;
          t.live++;
          // Any non-zero PTE (valid, sparse or marker) is firmware's: keep clear of it.
          take(entryVa(i), span);
        }
        return;
      }
      for (let i = 0; i < count; i++) {
        const va = entryVa(i);
        if (level.dual) {
          const lo = wordOf(t, dualSlot(i, BIG_HALF));
          const hi = wordOf(t, dualSlot(i, SMALL_HALF));
          if (lo === 0n && hi === 0n) continue;
          t.live++;
          const d = codec.decodeDualPde([lo, hi]);
          const ok = (h: { aperture: string; address: number | bigint }, size: number) =>
            h.aperture === "video" && typeof h.address === "number" &&
            h.address + size <= vramSize;
          // A half that is not a table we can follow (sysmem, out of range, or an
          // invalid but non-zero word such as a sparse marker) makes the whole
          // 2 MiB firmware's, so its word is never rewritten.
          const odd = (
            h: { aperture: string; address: number | bigint },
            word: bigint,
            size: number,
          ) => h.aperture === "invalid" ? word !== 0n : !ok(h, size);
          if (d.isPte || odd(d.big, lo, 256) || odd(d.small, hi, PAGE)) {
            take(va, span);
            continue;
          }
          if (d.big.aperture === "video") {
            child(t, i, dualSlot(i, BIG_HALF), d.big.address as number, va);
          }
          if (d.small.aperture === "video") {
            child(t, i, dualSlot(i, SMALL_HALF), d.small.address as number, va);
          }
          continue;
        }
        const raw = wordOf(t, i);
        if (raw === 0n) continue;
        t.live++;
        const d = codec.decodePde(raw);
        if (
          d.isPte || d.aperture !== "video" || typeof d.address !== "number" ||
          d.address + PAGE > vramSize
        ) {
          take(va, span);
          continue;
        }
        child(t, i, i, d.address, va);
      }
    };
    visit(tree.root, 0n);
    // Big and small pages may cover the same VA (the hardware allows it): merge first.
    taken.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: [bigint, bigint][] = [];
    for (const [start, end] of taken) {
      const last = merged.at(-1);
      if (last !== undefined && start <= last[1]) last[1] = end > last[1] ? end : last[1];
      else merged.push([start, end]);
    }
    for (const [start, end] of merged) this.ranges.claim(start, end - start, "firmware");
  }

  // --- mapping ----------------------------------------------------------------

  /**
   * Where a new mapping's VA may go, best first: for each page size larger
   * than 4 KiB whose aligned block fits inside the first physically
   * contiguous extent, a VA with the same offset modulo that size as the
   * physical address (so that block maps as one big page); 4 KiB last.
   */
  #vaPlacements(extents: ExtentList, forced: number | undefined): [bigint, bigint][] {
    if (forced !== undefined) return [[BigInt(forced), 0n]];
    const pa = extents.pa(0);
    const end = pa + extents.size(0);
    const out: [bigint, bigint][] = [];
    for (const s of this.#sizes) {
      if (s === PAGE) continue;
      const aligned = Math.ceil(pa / s) * s;
      if (aligned + s <= end) out.push([BigInt(s), BigInt(pa % s)]);
    }
    out.push([BigInt(PAGE), 0n]);
    return out;
  }

  /**
   * Reserves a VA range and allocates every page table the mapping will need
   * (in the shadow; nothing is written, no MMIO access). Fails with nothing
   * changed.
   */
  prepareMap(pfns: ArrayLike<number>, options: MapOptions = {}): PreparedMapping {
    this.#alive();
    checkOptions(options, MAP_OPTIONS, "map options");
    return this.#prepare(ExtentList.fromPfns(pfns, this.#deps.vramSize), options);
  }

  /**
   * {@linkcode Vmm.prepareMap} for physical extents (`{ pa, size }`, 4 KiB
   * aligned, in VA order): O(extents + PTEs), whatever the size.
   */
  prepareExtents(extents: readonly Extent[], options: MapOptions = {}): PreparedMapping {
    this.#alive();
    checkOptions(options, MAP_OPTIONS, "map options");
    if (!Array.isArray(extents) || extents.length === 0) {
      fail("EINVAL", `extents must be a non-empty array of { pa, size }, not ${describe(extents)}`);
    }
    const list = new ExtentList(extents.length);
    for (let i = 0; i < extents.length; i++) {
      const e = extents[i];
      if (e === null || typeof e !== "object") {
        fail("EINVAL", `extents[${i}] = ${describe(e)} is not a { pa, size } object`);
      }
      const one = ExtentList.range(e.pa, e.size, this.#deps.vramSize);
      list.push(one.pa(0), one.size(0));
    }
    return this.#prepare(list, options);
  }

  #prepare(extents: ExtentList, options: MapOptions): PreparedMapping {
    const forced = options.pageSize;
    if (forced !== undefined && !this.#sizes.includes(forced)) {
      fail(
        "EINVAL",
        `page size ${describe(forced)} is not one this chip maps (${
          this.#sizes.map(hex).join(", ")
        })`,
      );
    }
    const size = extents.bytes;
    const label = options.label ?? "mapping";
    let range: VaRange;
    if (options.va !== undefined) {
      const va = virtualAddress(options.va, this.format.vaBits);
      if (va % BigInt(PAGE) !== 0n) fail("EINVAL", `VA ${hex(va)} is not 4 KiB aligned`);
      range = this.ranges.claim(va, BigInt(size), label);
    } else {
      if (BigInt(size) > this.vaSize) {
        fail(
          "ENOSPC",
          `cannot map ${hex(size)} bytes into the ${
            hex(this.vaSize)
          }-byte address space of ${this.name}`,
        );
      }
      // Prefer a VA that lets big pages be used; fall back to any 4 KiB-aligned hole.
      const places = this.#vaPlacements(extents, forced);
      let found: VaRange | null = null;
      for (const [align, phase] of places.slice(0, -1)) {
        const start = this.ranges.findFree(BigInt(size), align, 0n, this.vaSize, phase);
        if (start !== null) {
          found = this.ranges.claim(start, BigInt(size), label);
          break;
        }
      }
      const [align, phase] = places[places.length - 1];
      range = found ?? this.ranges.allocate(BigInt(size), align, label, phase);
    }
    const newTables: PtTable[] = [];
    const pinned: PtTable[] = [];
    try {
      const tree = this.#tree;
      const [block, offset] = splitVa(range.start);
      const runs = choosePages(extents, {
        tree,
        sizes: this.#sizes,
        bigPageSize: this.format.bigPt.pageSize,
        block,
        offset,
        forced,
      });
      const seen = new Set<PtTable>();
      const create = (parent: PtTable, idx: number, slot: number, depth: number) => {
        const a = this.#deps.buddy.alloc(PAGE);
        const child = tree.newTable(depth, a.start, a);
        newTables.push(child);
        tree.link(parent, idx, slot, child);
        return child;
      };
      const onPath = (t: PtTable) => {
        if (seen.has(t)) return;
        seen.add(t);
        t.pins++;
        pinned.push(t);
      };
      const none = () => {};
      vaRuns(
        runs,
        (off, ps, count) => tree.runs(block, offset + off, ps, count, none, create, onPath),
      );
      const prepared = new PreparedMapping(this, {
        range,
        size,
        runs,
        writable: options.writable ?? false,
        newTables,
        pinned,
      });
      this.#pending.add(prepared);
      return prepared;
    } catch (e) {
      this.#abandon(range, newTables, pinned);
      throw e;
    }
  }

  /** Undoes a prepare: unpins, reclaims the tables it created (still unused), releases the VA. */
  #abandon(range: VaRange, newTables: PtTable[], pinned: PtTable[]): void {
    for (const t of pinned) t.pins--;
    const writes: [PtTable, number][] = [];
    const freed: PtTable[] = [];
    // Its own new tables, and any table an unmap emptied while this prepare pinned it.
    this.#tree.reclaim([...newTables, ...pinned].filter((t) => t.live === 0), writes, freed);
    this.ranges.release(range);
    if (writes.length > 0 || this.#unsynced.length > 0) {
      // Links in VRAM were cleared (tables an unmap emptied): flush before the pages go back.
      for (const [t, word] of writes) this.#unsynced.push([t, word, 1]);
      this.#deferredTables.push(...freed);
      runAll(this.#flush());
      return;
    }
    for (const t of freed) t.alloc!.free();
  }

  /**
   * Writes the prepared mapping: new tables complete (each entry once), then
   * the entries of existing tables, then one TLB flush. A write that fails
   * puts the shadow back, clears what may have reached VRAM and gives the VA
   * and tables back (the error is rethrown); a flush that fails leaves the
   * mapping in place (`prepared.mapping`, {@linkcode Vmm.mappings}).
   */
  executeMap(prepared: PreparedMapping): Mapping {
    this.#alive();
    this.#own(prepared);
    if (prepared.state !== "prepared") {
      fail("EINVAL", `this prepared mapping was already ${prepared.state}`);
    }
    const tree = this.#tree;
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
    for (const t of prepared.newTables) addFresh(t);
    // Set the PTEs in the shadow; remember the runs in tables already in VRAM.
    const saved: Saved[] = [];
    const touched: [PtTable, number, number][] = [];
    const runs = prepared.runs;
    const opts = { writable: prepared.writable };
    const [block, offset] = splitVa(prepared.range.start);
    vaRuns(runs, (off, ps, count, first) => {
      let ri = first;
      let rk = 0;
      let base = 0;
      let step = 0;
      const start = (r: number) => {
        const pa = runs.pa(r);
        base = Number(codec.vramPte(pa, opts));
        step = runs.count(r) > 1 ? Number(codec.vramPte(pa + ps, opts)) - base : 0;
      };
      start(ri);
      tree.runs(block, offset + off, ps, count, (t, index, n) => {
        const stride = t.level.dual ? 4 : 2;
        const raw = t.raw;
        const from = index * stride;
        saved.push({ t, from, words: raw.slice(from, from + n * stride), live: t.live });
        for (let j = 0; j < n; j++) {
          const at = from + j * stride;
          if (raw[at] === 0 && raw[at + 1] === 0 && (stride === 2 || entryFree(raw, at))) t.live++;
          const v = base + rk * step;
          if (v <= MAX_SAFE) {
            const lo = v % TWO_32;
            raw[at] = lo;
            raw[at + 1] = (v - lo) / TWO_32;
          } else {
            const big = codec.vramPte(runs.pa(ri) + rk * ps, opts);
            raw[at] = Number(big & 0xffffffffn);
            raw[at + 1] = Number(big >> 32n);
          }
          if (++rk === runs.count(ri) && ri + 1 < runs.length) {
            ri++;
            rk = 0;
            start(ri);
          }
        }
        if (t.written) touched.push([t, index, n]);
        else addFresh(t);
      });
    });
    // Deepest first, so every table is complete before the PDE pointing to it.
    const order = [...fresh].sort((a, b) => b.depth - a.depth);
    const wrote: PtTable[] = [];
    let linking = false;
    try {
      using w = this.#deps.pramin.borrow();
      for (const t of order) {
        this.#writeTable(w, t, fresh);
        t.written = true;
        wrote.push(t);
      }
      linking = true;
      for (const t of order) {
        const link = t.parentLink;
        if (link !== null && !fresh.has(link.parent)) {
          this.#writeRange(w, link.parent, link.parent.level.dual ? link.slot : link.idx, 1);
        }
      }
      for (const [t, index, n] of touched) this.#writePtes(w, t, index, n);
    } catch (e) {
      this.#rollBack(prepared, saved, wrote, linking ? order : [], touched);
      throw e;
    }
    // The PTEs are in VRAM: the mapping exists from here on, even if the flush
    // fails (the caller can still unmap it: prepared.mapping, vmm.mappings()).
    for (const t of prepared.pinned) t.pins--;
    prepared.state = "executed";
    this.#pending.delete(prepared);
    const m = new Mapping(this, prepared);
    prepared.mapping = m;
    this.#mappings.add(m);
    this.#byRange.set(prepared.range, m);
    runAll(this.#flush());
    return m;
  }

  /**
   * A write of executeMap failed: the shadow goes back to what it was, the
   * words that may have reached VRAM are cleared there (before the next
   * flush, which comes at once), and the prepare is abandoned (VA and its
   * tables back).
   */
  #rollBack(
    prepared: PreparedMapping,
    saved: Saved[],
    wrote: PtTable[],
    linked: PtTable[],
    touched: [PtTable, number, number][],
  ): void {
    for (const t of wrote) t.written = false;
    for (let i = saved.length - 1; i >= 0; i--) {
      const s = saved[i];
      s.t.raw.set(s.words, s.from);
      s.t.live = s.live;
    }
    const fresh = new Set(wrote);
    for (const t of linked) {
      const link = t.parentLink;
      if (link !== null && !fresh.has(link.parent) && link.parent.written) {
        // The link may be in VRAM: the abandon below zeroes it in the shadow, the flush in VRAM.
        this.#unsynced.push([link.parent, link.parent.level.dual ? link.slot : link.idx, 1]);
      }
    }
    for (const [t, index, n] of touched) {
      const perEntry = t.level.dual ? 2 : 1;
      this.#unsynced.push([t, index * perEntry, n * perEntry]);
    }
    prepared.state = "cancelled";
    this.#pending.delete(prepared);
    try {
      this.#abandon(prepared.range, prepared.newTables, prepared.pinned);
    } catch {
      // PRAMIN or the flush failed again: the words stay unsynced and the
      // tables deferred until a flush completes; the original error is what matters.
    }
  }

  /** Writes PTE entries [index, index + n) of `t` (at PD0 only the low words: 2 MiB PTEs). */
  #writePtes(w: PraminWindow, t: PtTable, index: number, n: number): void {
    if (!t.level.dual) {
      this.#writeRange(w, t, index, n);
      return;
    }
    for (let j = index; j < index + n; j++) this.#writeRange(w, t, dualSlot(j, BIG_HALF), 1);
  }

  /**
   * Writes a whole table. A link to a child that is not in VRAM yet (another
   * pending prepare's table) goes as zero: that prepare's execute writes the
   * link once the child is complete.
   */
  #writeTable(w: PraminWindow, t: PtTable, fresh: Set<PtTable>): void {
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

  /** Releases a prepared mapping's VA range and tables (before execute). */
  cancelMap(prepared: PreparedMapping): void {
    this.#own(prepared);
    if (prepared.state !== "prepared") return;
    prepared.state = "cancelled";
    this.#pending.delete(prepared);
    this.#abandon(prepared.range, prepared.newTables, prepared.pinned);
  }

  /**
   * Maps 4 KiB page frames (`pfns`, as nova-core's `map_pages`) at a free or
   * given VA, using the largest pages that alignment and contiguity allow.
   */
  mapPages(pfns: ArrayLike<number>, options: MapOptions = {}): Mapping {
    return this.executeMap(this.prepareMap(pfns, options));
  }

  /** Maps physical extents (`{ pa, size }`, in VA order) as one mapping. */
  mapExtents(extents: readonly Extent[], options: MapOptions = {}): Mapping {
    return this.executeMap(this.prepareExtents(extents, options));
  }

  /** Maps [pa, pa + size) of VRAM (4 KiB aligned) as one mapping: O(PTEs), not O(size). */
  mapRange(pa: number, size: number, options: MapOptions = {}): Mapping {
    this.#alive();
    checkOptions(options, MAP_OPTIONS, "map options");
    const extents = ExtentList.range(pa, size, this.#deps.vramSize);
    return this.executeMap(this.#prepare(extents, options));
  }

  /** Invalidates a mapping's PTEs, flushes once, frees its VA and any table left empty. */
  unmap(mapping: Mapping): void {
    this.#alive();
    if (!(mapping instanceof Mapping)) fail("EINVAL", `${describe(mapping)} is not a Mapping`);
    if (mapping.vmm !== this) {
      fail("EINVAL", `mapping ${hex(mapping.va)} belongs to ${mapping.vmm.name}, not ${this.name}`);
    }
    if (!mapping.live) fail("EINVAL", `mapping ${hex(mapping.va)} is already unmapped`);
    this.#unmapAll([mapping]);
  }

  /**
   * Unmaps live mappings of this Vmm with one TLB flush for all of them. The
   * bookkeeping always completes; a failed write leaves the words to be
   * written before the next flush, a failed flush keeps the freed tables and
   * the mappings' callbacks until a flush completes.
   */
  #unmapAll(mappings: Mapping[]): void {
    const tree = this.#tree;
    const emptied: PtTable[] = [];
    const writes: [PtTable, number, number][] = [];
    for (const mapping of mappings) {
      const [block, offset] = splitVa(mapping.va);
      vaRuns(mapping.runs, (off, ps, count) => {
        tree.runs(block, offset + off, ps, count, (t, index, n) => {
          if (t.level.dual) {
            for (let j = index; j < index + n; j++) {
              const word = dualSlot(j, BIG_HALF);
              setWord(t, word, 0n);
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
    {
      using w = this.#deps.pramin.borrow();
      for (let i = 0; i < writes.length; i++) {
        const [t, word, count] = writes[i];
        if (dead.has(t)) continue;
        if (failure !== null) {
          this.#unsynced.push(writes[i]);
          continue;
        }
        try {
          this.#writeRange(w, t, word, count);
        } catch (e) {
          failure = { error: e };
          this.#unsynced.push(writes[i]);
        }
      }
    }
    // The mappings are gone from the shadow whatever VRAM got: finish the bookkeeping.
    const callbacks: (() => void)[] = [];
    for (const mapping of mappings) {
      callbacks.push(...(mapping.retire() ?? []));
      this.#mappings.delete(mapping);
      this.#byRange.delete(mapping.range);
      this.ranges.release(mapping.range);
    }
    // Only after a completed flush can no walker reach the tables: then free them.
    this.#deferredTables.push(...freed);
    this.#deferredCallbacks.push(...callbacks);
    if (failure !== null) throw failure.error;
    runAll(this.#flush());
  }

  // --- inspection -------------------------------------------------------------

  /**
   * Translates a VA by walking the tables in VRAM (what the hardware holds),
   * or null when it does not translate.
   */
  translate(va: bigint | number): Translation | null {
    const r = this.walk(va);
    if (!r.mapped) return null;
    const info = this.format.codec.pteInfo(lastRaw(r));
    return {
      va: r.va,
      pa: r.pa,
      aperture: r.aperture,
      pageSize: r.pageSize,
      level: r.level,
      writable: info.writable,
      [Symbol.for("Deno.customInspect")]() {
        return `${hex(r.va)} -> ${r.aperture === "video" ? "VRAM" : r.aperture} ${hex(r.pa)} (${
          formatSize(r.pageSize)
        } page at ${r.level}, ${info.writable ? "rw" : "ro"})`;
      },
    };
  }

  /**
   * What the shadow says maps `va` (no MMIO): the PTE the cursor finds for
   * each page size, largest first, or null. It agrees with
   * {@linkcode Vmm.translate} for every VA this Vmm mapped.
   */
  lookup(va: bigint | number): { pte: bigint; pageSize: number; level: string } | null {
    const v = virtualAddress(va, this.format.vaBits);
    const [block, offset] = splitVa(v);
    for (const size of this.#sizes) {
      // Largest first, as the MMU decides: a huge PTE, then the big table, then the small.
      const leaf = this.#tree.leaf(block, offset, size);
      if (leaf === null) continue;
      const t = leaf.table;
      const pte = wordOf(t, t.level.dual ? dualSlot(leaf.index, BIG_HALF) : leaf.index);
      if (this.format.codec.pteInfo(pte).valid) return { pte, pageSize: size, level: t.level.name };
    }
    return null;
  }

  /** The full walk of a VA (every level visited) through PRAMIN. */
  walk(va: bigint | number): WalkResult {
    using w = this.#deps.pramin.borrow();
    return walk(w, { format: this.format, pdb: this.pdb, va, vramSize: this.#deps.vramSize });
  }

  /**
   * The page-table tree as the shadow knows it (or, with `fromHardware`, as
   * VRAM holds it): every non-zero entry with its level, index, VRAM address,
   * first VA and decoded value, children nested. Prints as an indented tree.
   */
  dump(options: DumpOptions = {}): DumpNode {
    checkOptions(options, { maxPtes: "number", fromHardware: "boolean" }, "dump options");
    if (options.fromHardware) {
      // A throw-away Vmm whose shadow is a fresh scan of VRAM: what the hardware holds.
      const scanned = new Vmm(this.#deps, {
        pdb: this.pdb,
        vaSize: this.vaSize,
        scan: true,
        name: `${this.name} (read from VRAM)`,
      });
      // Ownership comes from this Vmm: a table it allocated is not firmware's.
      const ours = new Set<number>();
      for (const t of this.#tree.tables()) if (t.alloc !== null) ours.add(t.addr);
      return scanned.#dumpTree(
        options.maxPtes ?? 256,
        (t) => !ours.has(t.addr),
        (va) => this.#firmwareVa(va),
      );
    }
    return this.#dumpTree(
      options.maxPtes ?? 256,
      (t) => t.alloc === null,
      (va) => this.#firmwareVa(va),
    );
  }

  /** True when `va` is in a range this Vmm found taken (firmware's), not one it mapped. */
  #firmwareVa(va: bigint): boolean {
    const r = this.ranges.find(va);
    return r === undefined || r.owner === "firmware";
  }

  /**
   * The tree behind {@linkcode Vmm.dump}. An entry is marked foreign when the
   * table it points to is (`tableForeign`) or, for a PTE, when its VA is
   * (`pteForeign`): a page mapped by this Vmm into firmware's table is ours.
   */
  #dumpTree(
    maxPtes: number,
    tableForeign: (t: PtTable) => boolean,
    pteForeign: (va: bigint) => boolean,
  ): DumpNode {
    let budget = maxPtes;
    const codec = this.format.codec;
    const dirs = this.format.directories.length;
    const visit = (t: PtTable, base: bigint): DumpNode[] => {
      const out: DumpNode[] = [];
      const span = 1n << BigInt(t.level.vaLo);
      for (let i = 0; i < t.level.entries && budget > 0; i++) {
        if (!entryLive(t, i)) continue;
        const va = base + BigInt(i) * span;
        if (t.level.dual) {
          const lo = wordOf(t, dualSlot(i, BIG_HALF));
          const hi = wordOf(t, dualSlot(i, SMALL_HALF));
          const d = codec.decodeDualPde([lo, hi]);
          const children: DumpNode[] = [];
          const big = t.children[dualSlot(i, BIG_HALF)];
          const small = t.children[dualSlot(i, SMALL_HALF)];
          if (big !== null) children.push(...visit(big, va));
          if (small !== null) children.push(...visit(small, va));
          if (d.isPte) budget--;
          out.push({
            level: t.level.name,
            index: i,
            address: t.addr + i * 16,
            va,
            entry: d.isPte ? codec.decodePte(lo) : d,
            children,
            foreign: d.isPte
              ? pteForeign(va)
              : [big, small].every((c) => c === null || tableForeign(c)),
          });
          continue;
        }
        const raw = wordOf(t, i);
        const child = t.depth < dirs ? t.children[i] : null;
        const isPte = t.depth >= dirs || (raw & 1n) === 1n;
        if (isPte) budget--;
        out.push({
          level: t.level.name,
          index: i,
          address: t.addr + i * 8,
          va,
          entry: isPte ? codec.decodePte(raw) : codec.decodePde(raw),
          children: child === null ? [] : visit(child, va),
          foreign: child === null ? pteForeign(va) : tableForeign(child),
        });
      }
      return out;
    };
    const root: DumpNode = {
      level: "PDB",
      index: -1,
      address: this.pdb,
      va: 0n,
      entry: null,
      children: visit(this.#tree.root, 0n),
      foreign: tableForeign(this.#tree.root),
    };
    const truncated = budget <= 0;
    Object.defineProperty(root, Symbol.for("Deno.customInspect"), {
      value: () => formatDump(this, root, truncated),
      enumerable: false,
    });
    return root;
  }

  /** Counts of tables in the shadow, by level name (root included). */
  tableCounts(): Record<string, number> {
    return this.#tree.counts();
  }

  /**
   * Cancels pending prepares, unmaps everything this Vmm mapped, settles
   * what a failed write or flush left (a flush), frees its root if it
   * allocated it. After a failure it can be called again.
   */
  destroy(teardown?: symbol): void {
    if (this.#destroyed) return;
    if (this.#protected !== null && teardown !== TEARDOWN) {
      // BAR1's address space: destroying it would leave BAR1 bound to freed tables.
      fail("EPERM", `${this.name} cannot be destroyed: ${this.#protected}`, "");
    }
    if (this.#holds.size > 0) {
      fail(
        "EBUSY",
        `${this.name} is in use: ${[...this.#holds.values()].join("; ")}`,
        "unbind it first (gpu.bar1.unbind())",
      );
    }
    for (const p of [...this.#pending]) this.cancelMap(p);
    if (this.#mappings.size > 0) this.#unmapAll([...this.#mappings]);
    else if (
      this.#unsynced.length > 0 || this.#deferredTables.length > 0 ||
      this.#deferredCallbacks.length > 0
    ) {
      runAll(this.#flush());
    }
    this.#destroyed = true;
    this.#rootAllocation?.free();
    runAll(this.#onDestroy.splice(0));
  }

  /** Runs `fn` once this space is destroyed (at once if it already is). */
  whenDestroyed(fn: () => void): void {
    if (typeof fn !== "function") {
      fail("EINVAL", `whenDestroyed takes a function, not ${describe(fn)}`);
    }
    if (this.#destroyed) fn();
    else this.#onDestroy.push(fn);
  }

  #own(prepared: PreparedMapping): void {
    if (!(prepared instanceof PreparedMapping) || prepared.vmm !== this) {
      fail("EINVAL", `${describe(prepared)} is not a mapping prepared by ${this.name}`);
    }
  }

  /** True once {@linkcode Vmm.destroy} ran. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  #alive(): void {
    if (this.#destroyed) fail("ENODEV", `${this.name} has been destroyed`);
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Vmm ${this.name} MMU v${this.format.version} PDB ${hex(this.pdb)} VA ${
      hex(this.vaSize)
    } (${this.#mappings.size} mappings, ${this.ranges.count} ranges taken)`;
  }
}

/** True when the small half (words at+2, at+3) of a PD0 entry at 32-bit word `at` is zero. */
function entryFree(raw: Uint32Array, at: number): boolean {
  return raw[at + 2] === 0 && raw[at + 3] === 0;
}

/** What {@linkcode Vmm.translate} returns. */
export interface Translation {
  /** The VA translated. */
  va: bigint;
  /** Physical address. */
  pa: number | bigint;
  /** Where pa lives. */
  aperture: string;
  /** Bytes of the page. */
  pageSize: number;
  /** Level that held the PTE. */
  level: string;
  /** GPU writes allowed. */
  writable: boolean;
}

function lastRaw(r: WalkResult): bigint {
  const s = r.steps.at(-1)!;
  if (typeof s.raw === "bigint") return s.raw;
  return s.raw[0];
}

function formatDump(vmm: Vmm, root: DumpNode, truncated: boolean): string {
  const lines = [
    `${vmm.name}: MMU v${vmm.format.version} PDB ${hex(root.address)} VA ${hex(vmm.vaSize)}`,
  ];
  const visit = (nodes: DumpNode[], indent: string) => {
    for (const n of nodes) {
      lines.push(
        `${indent}${n.level}[${n.index}] va ${hex(n.va)} @${hex(n.address)} ${String(n.entry)}${
          n.foreign ? "  (firmware)" : ""
        }`,
      );
      visit(n.children, indent + "  ");
    }
  };
  visit(root.children, "  ");
  if (truncated) lines.push("  … (more PTEs; dump({ maxPtes }) shows more)");
  return lines.join("\n");
}
