/**
 * One GPU virtual address space (nova-core's `Vmm`). What stays here is the
 * address space: the VA ranges (placement, firmware's ranges, `liveAt`), the
 * `Mapping` and `PreparedMapping` objects, the two-phase API
 * (prepare/execute/cancel/unmap), the TLB flush and the flush-then-free
 * order, `hold`/`protect`/`whenDestroyed`, and the entry points of
 * translate, lookup, walk and dump.
 *
 * The page-table engine it drives lives in `mm/pagetable/`: the writes
 * (`mapper.ts`: the tables a mapping needs, the PRAMIN write order, the
 * rollback of a failed write, reclaim of emptied tables), the firmware scan
 * (`scan.ts`), the dump (`dump.ts`), the shadow tree and its cursor
 * (`tree.ts`), extents and the page-size choice (`extents.ts`), the formats
 * and codecs, the walker.
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

import { describe, fail, formatSize, hex, NovaError } from "../hw/errors.ts";
import { bigintOrNumber, checkOptions, checkUint } from "../hw/validate.ts";
import type { Allocation, BuddyAllocator } from "./buddy.ts";
import type { Pramin } from "./pramin.ts";
import type { Tlb } from "./tlb.ts";
import type { MmuFormat } from "./pagetable/format.ts";
import { type Translation, translation, walk, type WalkResult } from "./pagetable/walk.ts";

export type { Translation } from "./pagetable/walk.ts";
import { Mapper, type TableHold } from "./pagetable/mapper.ts";
import { type DumpNode, dumpTree } from "./pagetable/dump.ts";
import { type VerifyOptions, type VerifyReport, verifyShadow } from "./pagetable/verify.ts";

export type { VerifyOptions, VerifyReport } from "./pagetable/verify.ts";
import {
  type Extent,
  ExtentList,
  type Extents,
  type PageStretches,
  PfnExtents,
  type PteRuns,
  sizeName,
  vaPlacements,
} from "./pagetable/extents.ts";
import { type PtTable, recycleTable } from "./pagetable/tree.ts";
import { virtualAddress } from "./types.ts";
import { type VaRange, VaRanges, VaRangesView } from "./va_ranges.ts";

export type { Extent } from "./pagetable/extents.ts";

/**
 * Passed by `gpu.close()` (through `GpuMm.destroyVmm`) to tear down address
 * spaces users may not destroy themselves (BAR1's). Not exported from mod.ts.
 */
export const TEARDOWN: unique symbol = Symbol("novamm.teardown");

const PAGE = 4096;

/** Each address space's page-table engine, for its mappings to read their pages back. */
const MAPPERS = new WeakMap<Vmm, Mapper>();

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
  /** Called when tables may have been made or freed (the write policy re-reads them). */
  tablesChanged?: () => void;
  /**
   * Whether a table this space did not make (at VRAM `addr`, in the tree
   * rooted at `pdb`) is firmware's rather than merely not this session's
   * (what dumps print); without it every such table is firmware's.
   */
  firmwareTable?: (addr: number, pdb: number) => boolean;
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

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
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
  /**
   * @internal Its layout: stretches of one page size (the physical side is
   * read back from its PTEs, so it keeps O(stretches), not O(pages)).
   */
  readonly stretches: PageStretches;
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
    this.stretches = prepared.runs.stretches;
  }

  /** False once unmapped. */
  get live(): boolean {
    return this.#live;
  }

  #flushed = false;

  /**
   * True once a flush completed after its entries were written: only then has
   * the GPU seen them, and only then does the BAR1 guard let the CPU touch it.
   * A mapping whose flush failed stays in place, untrusted, until a later
   * flush ({@linkcode Vmm.flush}, another map or unmap) completes.
   */
  get flushed(): boolean {
    return this.#flushed;
  }

  /** @internal A flush completed after this mapping's entries were written. */
  markFlushed(): void {
    this.#flushed = true;
  }

  /** Page counts by page size, e.g. `{ "4K": 3, "2M": 1 }`. */
  get pages(): Record<string, number> {
    if (this.#pages === null) {
      const out: Record<string, number> = {};
      for (const [size, n] of this.stretches.pageCounts()) out[sizeName(size)] = n;
      this.#pages = out;
    }
    return { ...this.#pages };
  }

  /**
   * The physical extents behind the mapping, in VA order (contiguous pieces
   * coalesced), read back from its PTEs (O(pages), no MMIO). EINVAL once
   * unmapped (its pages may belong to someone else by then).
   */
  get extents(): Extent[] {
    this.#readable("extents");
    return MAPPERS.get(this.vmm)!.extentsOf(this).toArray();
  }

  /**
   * The physical (VRAM) address behind byte `offset` of the mapping, read
   * back from its PTE (O(log stretches + levels), no MMIO). EINVAL for an
   * offset outside it, or once unmapped.
   */
  physicalAddress(offset: number): number {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.size) {
      fail("EINVAL", `offset ${describe(offset)} is outside the ${hex(this.size)}-byte mapping`);
    }
    this.#readable("physicalAddress");
    const s = this.stretches;
    const i = s.find(offset);
    const ps = s.pageSize(i);
    const within = (offset - s.offset(i)) % ps;
    const page = this.va + BigInt(offset - within);
    const pa = MAPPERS.get(this.vmm)!.pageAddress(page, ps);
    if (pa === null) {
      fail("EIO", `the PTE of VA ${hex(page)} of mapping ${hex(this.va)} is not in the shadow`);
    }
    return pa + within;
  }

  /** EINVAL once unmapped: its PTEs, which hold its pages, are gone. */
  #readable(what: string): void {
    if (!this.#live) {
      fail(
        "EINVAL",
        `${what}: mapping ${hex(this.va)} +${
          hex(this.size)
        } is unmapped, so its pages are no longer known`,
        "read them before unmap()",
      );
    }
  }

  /**
   * Runs `fn` once when the mapping goes away (unmap, destroy, GPU close); at
   * once if it already has. EINVAL, storing nothing, when `fn` is not a function.
   */
  whenUnmapped(fn: () => void): void {
    if (typeof fn !== "function") {
      fail("EINVAL", `whenUnmapped takes a function, not ${describe(fn)}`);
    }
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

  /**
   * Unmaps (PTEs invalidated, one TLB flush, VA released, empty tables
   * reclaimed); a second call is a double unmap (EINVAL), as a second
   * `free()` of an Allocation is.
   */
  unmap(): void {
    this.vmm.unmap(this);
  }

  /** Unmaps unless already unmapped, so `using m = vmm.mapRange(...)` is safe after `m.unmap()`. */
  [Symbol.dispose](): void {
    if (this.#live) this.vmm.unmap(this);
  }

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    const counts = [...this.stretches.pageCounts()];
    const pages = counts.map(([size, n]) => `${n}×${formatSize(size)}`).join(" ");
    return `Mapping ${hex(this.va)} +${formatSize(this.size)} ${
      this.writable ? "rw" : "ro"
    } ${pages}${this.#live ? (this.#flushed ? "" : " (not flushed: untrusted)") : " (unmapped)"}`;
  }
}

export type { DumpNode } from "./pagetable/dump.ts";

/** Options for {@linkcode Vmm.dump}. */
export interface DumpOptions {
  /** Stop after this many PTEs (default 256; an integer in 0..2^24). */
  maxPtes?: number;
  /** Read the tables from VRAM through PRAMIN instead of printing the shadow. */
  fromHardware?: boolean;
}

/** The most PTEs one `Vmm.dump` lists (each is an object in the result). */
const MAX_DUMP_PTES = 2 ** 24;

const MAP_OPTIONS = {
  va: bigintOrNumber("map options"),
  writable: "boolean",
  pageSize: "number",
  label: "string",
} as const;

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
 * import { openGpu } from "../mod.ts";
 * using gpu = await openGpu({ device: "sim" });
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
  /** Taken VA ranges (mappings and, on a scanned space, firmware's): a read-only view. */
  readonly ranges: VaRangesView;
  readonly #ranges: VaRanges;
  readonly #deps: VmmDeps;
  /** The page-table engine (the shadow tree and every write to it or VRAM). */
  readonly #mapper: Mapper;
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
  /** Mappings written since the last completed flush (untrusted until one completes). */
  #unflushed = new Set<Mapping>();
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
    this.#ranges = new VaRanges(options.vaSize);
    this.ranges = new VaRangesView(this.#ranges);
    this.#rootAllocation = options.rootAllocation ?? null;
    this.#mapper = new Mapper(format, options.pdb, this.#rootAllocation, deps);
    MAPPERS.set(this, this.#mapper);
    this.#mapper.owner = this.name;
    if (this.#rootAllocation !== null) {
      this.#rootAllocation.label = `${format.directories[0].name} of ${this.name}`;
    }
    if (options.scan) {
      // Firmware's tables into the shadow, and the VA their entries take.
      for (const [start, end] of this.#mapper.scan(this.vaSize)) {
        this.#ranges.claim(start, end - start, "firmware");
      }
    }
  }

  /**
   * Writes what VRAM may still lack, flushes the TLB, then frees the tables
   * and hands back the callbacks that waited for a completed flush. Anything
   * but a map that followed only completed flushes is a downgrade (entries
   * went away), which TU10x's invalidate marks (facts §14.1).
   */
  #flush(downgrade = true): (() => void)[] {
    this.#deps.tablesChanged?.();
    this.#mapper.sync();
    this.#deps.tlb.flush(this.pdb, {
      hubOnly: this.#bar,
      downgrade: downgrade || this.#deferredTables.length > 0 ||
        this.#deferredCallbacks.length > 0,
    });
    // The GPU has seen every entry written so far: those mappings may be touched now.
    for (const m of this.#unflushed) m.markFlushed();
    this.#unflushed.clear();
    const tables = this.#deferredTables;
    this.#deferredTables = [];
    this.#freeTables(tables);
    return this.#deferredCallbacks.splice(0);
  }

  /**
   * Frees tables that are gone for good: their VRAM in one batch (an
   * abandoned 8 GiB map gives back ~4,100 tables, a Ctrl-C'd 32 GiB one
   * ~16,400: one coalescing pass, not one tree update each), their words to
   * the spares. A table whose VRAM someone pinned (a BAR1 mapping of it)
   * fails the batch: the others are freed one by one and the error is
   * rethrown.
   */
  #freeTables(tables: readonly PtTable[]): void {
    if (tables.length === 0) return;
    const allocations = tables.map((t) => t.alloc!);
    try {
      this.#deps.buddy.freeMany(allocations);
    } catch (e) {
      for (const a of allocations) if (a.live && a.users.length === 0) a.free();
      throw e;
    } finally {
      for (const t of tables) recycleTable(t);
    }
  }

  /**
   * @internal The VRAM of every table in this space's tree (novamm's and, on a
   * scanned space, firmware's), for the write policy.
   */
  *tableRanges(): Generator<{ name: string; start: number; end: number }> {
    for (const t of this.#mapper.tree.tables()) {
      const a = t.alloc;
      yield a === null
        ? { name: `a page table of ${this.name}`, start: t.addr, end: t.addr + t.level.tableBytes }
        : { name: `a page table of ${this.name}`, start: a.start, end: a.start + a.size };
    }
  }

  /**
   * Writes what VRAM may still lack and flushes (FB flush, TLB invalidate):
   * retries a flush that failed, after which mappings it left untrusted are
   * trusted and deferred tables freed.
   */
  flush(): void {
    this.#alive();
    runAll(this.#flush());
  }

  /**
   * What a CPU access of [va, va + length) through an aperture bound to this
   * space would hit: the live mapping covering all of it, `"firmware"` for a
   * range firmware mapped (found by the scan), or null (it would fault).
   */
  liveAt(va: number, length: number): Mapping | "firmware" | null {
    // (A mapping whose flush failed is returned too: callers check `flushed`.)
    checkUint(va, "BAR1 VA");
    checkUint(length, "access length");
    const r = this.#ranges.find(BigInt(va));
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
    return this.#mapper.pageSizes;
  }

  /** Live mappings made through this Vmm. */
  mappings(): Mapping[] {
    return [...this.#mappings];
  }

  // --- mapping ----------------------------------------------------------------

  /**
   * Reserves a VA range and allocates every page table the mapping will need
   * (in the shadow; nothing is written, no MMIO access). Fails with nothing
   * changed.
   */
  prepareMap(pfns: ArrayLike<number>, options: MapOptions = {}): PreparedMapping {
    this.#alive();
    checkOptions(options, MAP_OPTIONS, "map options");
    // Extents shorter than the second-smallest page map with small pages wherever they go:
    // the check makes their runs as it reads the frames (scattered frames are read once).
    const sizes = this.#mapper.pageSizes;
    const short = options.pageSize === undefined ? sizes[sizes.length - 2] / PAGE : 0;
    const extents = new PfnExtents(pfns, this.#deps.vramSize, short);
    try {
      return this.#prepare(extents, options);
    } finally {
      extents.release(); // runs no choice took (the prepare failed before choosing)
    }
  }

  /**
   * {@linkcode Vmm.prepareMap} for physical extents (`{ pa, size }`, 4 KiB
   * aligned, in VA order): O(extents + PTEs), whatever the size.
   */
  prepareExtents(extents: readonly Extent[], options: MapOptions = {}): PreparedMapping {
    this.#alive();
    checkOptions(options, MAP_OPTIONS, "map options");
    return this.#prepare(ExtentList.fromExtents(extents, this.#deps.vramSize), options);
  }

  #prepare(extents: Extents, options: MapOptions): PreparedMapping {
    this.#deps.tablesChanged?.();
    const forced = options.pageSize;
    this.#mapper.checkPageSize(forced);
    const size = extents.bytes;
    const label = options.label ?? "mapping";
    let range: VaRange;
    if (options.va !== undefined) {
      const va = virtualAddress(options.va, this.format.vaBits);
      if (va % BigInt(PAGE) !== 0n) fail("EINVAL", `VA ${hex(va)} is not 4 KiB aligned`);
      range = this.#ranges.claim(va, BigInt(size), label);
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
      const places = vaPlacements(extents, this.#mapper.pageSizes, forced);
      let found: VaRange | null = null;
      for (const [align, phase] of places.slice(0, -1)) {
        const start = this.#ranges.findFree(BigInt(size), align, 0n, this.vaSize, phase);
        if (start !== null) {
          found = this.#ranges.claim(start, BigInt(size), label);
          break;
        }
      }
      const [align, phase] = places[places.length - 1];
      range = found ?? this.#ranges.allocate(BigInt(size), align, label, phase);
    }
    const hold: TableHold = { newTables: [], pinned: [] };
    try {
      const runs = this.#mapper.prepare(extents, range.start, forced, hold);
      const prepared = new PreparedMapping(this, {
        range,
        size,
        runs,
        writable: options.writable ?? false,
        newTables: hold.newTables,
        pinned: hold.pinned,
      });
      this.#pending.add(prepared);
      return prepared;
    } catch (e) {
      this.#abandon(range, hold);
      throw e;
    }
  }

  /** Undoes a prepare: the engine reclaims its tables (still unused), the VA goes back. */
  #abandon(range: VaRange, hold: TableHold): void {
    const freed = this.#mapper.abandon(hold);
    this.#ranges.release(range);
    if (this.#mapper.unsynced) {
      // Links in VRAM were cleared (tables an unmap emptied): flush before the pages go back.
      this.#deferredTables.push(...freed);
      runAll(this.#flush());
      return;
    }
    this.#freeTables(freed);
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
    this.#mapper.write(prepared, () => {
      prepared.state = "cancelled";
      this.#pending.delete(prepared);
      this.#abandon(prepared.range, prepared);
    });
    // The PTEs are in VRAM: the mapping exists from here on, even if the flush
    // fails (the caller can still unmap it: prepared.mapping, vmm.mappings()).
    // The runs are in the PTEs now: the mapping keeps only their stretches.
    prepared.runs.release();
    prepared.state = "executed";
    this.#pending.delete(prepared);
    const m = new Mapping(this, prepared);
    prepared.mapping = m;
    this.#mappings.add(m);
    this.#byRange.set(prepared.range, m);
    this.#unflushed.add(m);
    try {
      runAll(this.#flush(false));
    } catch (e) {
      if (m.flushed) throw e; // the flush completed; a callback failed
      throw new NovaError(
        e instanceof NovaError ? e.code : "EIO",
        `the mapping at VA ${hex(m.va)} (+${
          formatSize(m.size)
        }) is written but its flush failed, so the GPU may not have seen it: it stays in place, untrusted (BAR1 refuses to touch it) until a flush completes — ${
          e instanceof Error ? e.message.replace(/^E[A-Z]+: /, "") : String(e)
        }`,
        { hint: `${this.name}.flush() retries; unmap() gives it up`, cause: e },
      );
    }
    return m;
  }

  /** Releases a prepared mapping's VA range and tables (before execute). */
  cancelMap(prepared: PreparedMapping): void {
    this.#own(prepared);
    if (prepared.state !== "prepared") return;
    prepared.state = "cancelled";
    this.#pending.delete(prepared);
    this.#abandon(prepared.range, prepared);
    prepared.runs.release();
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
    if (!(mapping instanceof Mapping)) fail("EINVAL", `${describe(mapping)} is not a Mapping`);
    if (mapping.vmm !== this) {
      fail("EINVAL", `mapping ${hex(mapping.va)} belongs to ${mapping.vmm.name}, not ${this.name}`);
    }
    if (!mapping.live) {
      fail(
        "EINVAL",
        `${this.name} unmap: double unmap of mapping ${hex(mapping.va)} +${hex(mapping.size)}${
          this.#destroyed ? ` (${this.name} has been destroyed)` : ""
        }`,
      );
    }
    this.#alive();
    this.#unmapAll([mapping]);
  }

  /**
   * Unmaps live mappings of this Vmm with one TLB flush for all of them. The
   * bookkeeping always completes; a failed write leaves the words to be
   * written before the next flush, a failed flush keeps the freed tables and
   * the mappings' callbacks until a flush completes.
   */
  #unmapAll(mappings: Mapping[]): void {
    const { freed, failure } = this.#mapper.unmap(mappings);
    // The mappings are gone from the shadow whatever VRAM got: finish the bookkeeping.
    const callbacks: (() => void)[] = [];
    for (const mapping of mappings) {
      callbacks.push(...(mapping.retire() ?? []));
      this.#mappings.delete(mapping);
      this.#byRange.delete(mapping.range);
      this.#ranges.release(mapping.range);
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
    return r.mapped ? translation(r, this.format) : null;
  }

  /**
   * What the shadow says maps `va` (no MMIO): the PTE the cursor finds for
   * each page size, largest first, or null. It agrees with
   * {@linkcode Vmm.translate} for every VA this Vmm mapped.
   */
  lookup(va: bigint | number): { pte: bigint; pageSize: number; level: string } | null {
    return this.#mapper.lookup(virtualAddress(va, this.format.vaBits));
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
    const maxPtes = options.maxPtes ?? 256;
    if (!Number.isSafeInteger(maxPtes) || maxPtes < 0 || maxPtes > MAX_DUMP_PTES) {
      fail(
        "EINVAL",
        `dump maxPtes ${describe(maxPtes)} is not an integer in 0..${hex(MAX_DUMP_PTES)}`,
      );
    }
    const pteForeign = (va: bigint) => this.#firmwareVa(va);
    const tableFirmware = (t: PtTable) => this.#deps.firmwareTable?.(t.addr, this.pdb) ?? true;
    if (options.fromHardware) {
      // A throw-away shadow, a fresh scan of VRAM: what the hardware holds.
      const scanned = new Mapper(this.format, this.pdb, null, this.#deps);
      scanned.scan(this.vaSize);
      // Ownership comes from this Vmm: a table it allocated is not firmware's.
      const ours = new Set<number>();
      for (const t of this.#mapper.tree.tables()) if (t.alloc !== null) ours.add(t.addr);
      return dumpTree(scanned.tree, {
        maxPtes,
        tableForeign: (t) => !ours.has(t.addr),
        pteForeign,
        tableFirmware,
        header: this.#dumpHeader(`${this.name} (read from VRAM)`),
      });
    }
    return dumpTree(this.#mapper.tree, {
      maxPtes,
      tableForeign: (t) => t.alloc === null,
      pteForeign,
      tableFirmware,
      header: this.#dumpHeader(this.name),
    });
  }

  #dumpHeader(name: string): string {
    return `${name}: MMU v${this.format.version} PDB ${hex(this.pdb)} VA ${hex(this.vaSize)}`;
  }

  /** True when `va` is in a range this Vmm found taken (firmware's), not one it mapped. */
  #firmwareVa(va: bigint): boolean {
    const r = this.#ranges.find(va);
    return r === undefined || r.owner === "firmware";
  }

  /**
   * Compares the shadow (what this Vmm wrote or scanned) with the tables in
   * VRAM and lists every 64-bit word that differs: level, index, table
   * address, the VA the entry covers, expected and found, decoded (see
   * `mm/pagetable/verify.ts`). One bulk PRAMIN read per table; nothing is
   * written. `instanceBlock` also checks that the instance block there points
   * at this space's root (`gpu.bar1.verify()` passes BAR1's).
   */
  verify(options: VerifyOptions = {}): VerifyReport {
    this.#alive();
    return verifyShadow(this.#mapper.tree, this.#deps.pramin, {
      name: this.name,
      vaSize: this.vaSize,
      vramSize: this.#deps.vramSize,
      unsynced: this.#mapper.unsynced,
    }, options);
  }

  /** Counts of tables in the shadow, by level name (root included). */
  tableCounts(): Record<string, number> {
    return this.#mapper.tree.counts();
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
      this.#mapper.unsynced || this.#deferredTables.length > 0 ||
      this.#deferredCallbacks.length > 0
    ) {
      runAll(this.#flush());
    }
    this.#destroyed = true;
    this.#deps.tablesChanged?.();
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

  /** The one-line summary as text (`${x}` prints it, not `[object Object]`). */
  toString(): string {
    return (this as unknown as Record<symbol, () => string>)[Symbol.for("Deno.customInspect")]();
  }

  /** The one-line summary the REPL and `Deno.inspect` print. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Vmm ${this.name} MMU v${this.format.version} PDB ${hex(this.pdb)} VA ${
      hex(this.vaSize)
    } (${this.#mappings.size} mappings, ${this.#ranges.count} ranges taken)`;
  }
}
