/**
 * One GPU virtual address space (nova-core's `Vmm`): VA range tracking, a
 * host-side shadow of the page tables it knows, two-phase mapping
 * (prepare/execute) with the largest page sizes the chip and alignment allow,
 * unmapping with page-table reclaim, and translation through the walker.
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
 *
 * @module
 */

import { describe, fail, hex } from "../hw/errors.ts";
import type { Allocation, BuddyAllocator } from "./buddy.ts";
import type { Pramin, PraminWindow } from "./pramin.ts";
import type { Tlb } from "./tlb.ts";
import { type LevelFormat, levelIndex, type MmuFormat } from "./pagetable/format.ts";
import { walk, type WalkResult } from "./pagetable/walk.ts";
import { virtualAddress } from "./types.ts";
import { type VaRange, VaRanges } from "./va_ranges.ts";

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

/** A table in the shadow. */
interface Table {
  readonly level: LevelFormat;
  /** Index in format.directories; directories.length = small PT, +1 = big PT. */
  readonly depth: number;
  readonly addr: number;
  /** Our allocation; null for a table we did not create (firmware's, or a given root). */
  readonly alloc: Allocation | null;
  /** Entry words (2 per PD0 entry: low, high). */
  readonly raw: BigUint64Array;
  /** Child tables: one per entry, or two per PD0 entry (2i = big, 2i+1 = small). */
  readonly children: (Table | null)[];
  /** Entries (PD0: entries with either word non-zero) that are not zero. */
  live: number;
  /** False until its first complete write to VRAM. */
  written: boolean;
  /** Prepared-but-unexecuted mappings whose path runs through this table (keeps it from reclaim). */
  pins: number;
  /** Where the parent points at this table (null for the root). */
  parentLink: { parent: Table; idx: number; slot: number } | null;
}

/** A run of equal-size pages inside a mapping. */
interface Run {
  /** Byte offset of the first page from the mapping's VA. */
  offset: number;
  pageSize: number;
  count: number;
}

/** A VA range with page tables ready, waiting for {@linkcode Vmm.executeMap}. */
export class PreparedMapping {
  /** The VA range reserved. */
  readonly range: VaRange;
  /** Bytes to map. */
  readonly size: number;
  /** @internal */ readonly pfns: ArrayLike<number>;
  /** @internal */ readonly runs: Run[];
  /** @internal */ readonly writable: boolean;
  /** @internal */ readonly newTables: Table[];
  /** @internal */ readonly pinned: Table[];
  /** @internal */ state: "prepared" | "executed" | "cancelled" = "prepared";
  readonly #vmm: Vmm;

  /** Created by {@linkcode Vmm.prepareMap}. */
  constructor(vmm: Vmm, init: {
    range: VaRange;
    size: number;
    pfns: ArrayLike<number>;
    runs: Run[];
    writable: boolean;
    newTables: Table[];
    pinned: Table[];
  }) {
    this.#vmm = vmm;
    this.range = init.range;
    this.size = init.size;
    this.pfns = init.pfns;
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
      hex(this.size)
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
  /** @internal */ readonly runs: readonly Run[];
  /** @internal */ readonly pfns: ArrayLike<number>;
  #live = true;
  #onRetire: (() => void)[] = [];

  /** Created by {@linkcode Vmm.executeMap}. */
  constructor(vmm: Vmm, prepared: PreparedMapping) {
    this.vmm = vmm;
    this.va = prepared.range.start;
    this.size = prepared.size;
    this.writable = prepared.writable;
    this.range = prepared.range;
    this.runs = prepared.runs;
    this.pfns = prepared.pfns;
  }

  /** False once unmapped. */
  get live(): boolean {
    return this.#live;
  }

  /** Page counts by page size, e.g. `{ "4K": 3, "2M": 1 }`. */
  get pages(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.runs) {
      out[sizeName(r.pageSize)] = (out[sizeName(r.pageSize)] ?? 0) + r.count;
    }
    return out;
  }

  /** The physical (VRAM) address behind byte `offset` of the mapping. */
  physicalAddress(offset: number): number {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.size) {
      fail("EINVAL", `offset ${describe(offset)} is outside the ${hex(this.size)}-byte mapping`);
    }
    return this.pfns[Math.floor(offset / PAGE)] * PAGE + (offset % PAGE);
  }

  /** Runs `fn` once when the mapping goes away (unmap, destroy, GPU close). */
  whenUnmapped(fn: () => void): void {
    if (this.#live) this.#onRetire.push(fn);
    else fn();
  }

  /** @internal */
  retire(): boolean {
    const was = this.#live;
    this.#live = false;
    if (was) { for (const fn of this.#onRetire.splice(0)) fn(); }
    return was;
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
    const pages = Object.entries(this.pages).map(([k, v]) => `${v}×${k}`).join(" ");
    return `Mapping ${hex(this.va)} +${hex(this.size)} ${this.writable ? "rw" : "ro"} ${pages}${
      this.#live ? "" : " (unmapped)"
    }`;
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
  readonly #root: Table;
  readonly #rootAllocation: Allocation | null;
  readonly #mappings = new Set<Mapping>();
  /** The live mapping behind each VA range a mapping holds (for {@linkcode Vmm.liveAt}). */
  readonly #byRange = new Map<VaRange, Mapping>();
  readonly #holds = new Map<number, string>();
  readonly #onDestroy: (() => void)[] = [];
  #holdId = 0;
  readonly #bar: boolean;
  readonly #pending = new Set<PreparedMapping>();
  /** Page sizes this chip can map, largest first. */
  readonly #sizes: number[];
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
    this.#root = this.#newTable(0, options.pdb, this.#rootAllocation);
    this.#root.written = true;
    const sizes: number[] = [];
    for (const d of format.directories) if (d.hugePageSize !== null) sizes.push(d.hugePageSize);
    sizes.sort((a, b) => b - a);
    this.#sizes = [...sizes, format.bigPt.pageSize, format.smallPt.pageSize];
    if (options.scan) this.#scan();
  }

  #flush(): void {
    this.#deps.tlb.flush(this.pdb, { hubOnly: this.#bar });
  }

  /**
   * What a CPU access of [va, va + length) through an aperture bound to this
   * space would hit: the live mapping covering all of it, `"firmware"` for a
   * range firmware mapped (found by the scan), or null (it would fault).
   */
  liveAt(va: number, length: number): Mapping | "firmware" | null {
    const r = this.ranges.find(BigInt(va));
    if (r === undefined || r.end < BigInt(va) + BigInt(length)) return null;
    if (r.owner === "firmware") return "firmware";
    const m = this.#byRange.get(r);
    return m !== undefined && m.live ? m : null;
  }

  /**
   * Keeps this space from being destroyed while something outside it (a BAR1
   * binding) uses its tables; call the returned function to let go.
   */
  hold(reason: string): () => void {
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

  #levelAt(depth: number): LevelFormat {
    const dirs = this.format.directories;
    if (depth < dirs.length) return dirs[depth];
    return depth === dirs.length ? this.format.smallPt : this.format.bigPt;
  }

  #newTable(depth: number, addr: number, alloc: Allocation | null): Table {
    const level = this.#levelAt(depth);
    const words = level.dual ? level.entries * 2 : level.entries;
    const childSlots = depth < this.format.directories.length ? words : 0;
    return {
      level,
      depth,
      addr,
      alloc,
      raw: new BigUint64Array(words),
      children: new Array(childSlots).fill(null),
      live: 0,
      written: false,
      pins: 0,
      parentLink: null,
    };
  }

  /** Reads the existing tables (through PRAMIN) into the shadow and marks mapped VA as taken. */
  #scan(): void {
    using w = this.#deps.pramin.borrow();
    const codec = this.format.codec;
    const dirs = this.format.directories;
    const pd0 = dirs.length - 1;
    const taken: [bigint, bigint][] = [];
    const take = (va: bigint, size: bigint) => {
      taken.push([va, va + size > this.vaSize ? this.vaSize : va + size]);
    };
    const entryVa = (base: bigint, level: LevelFormat, i: number) =>
      base + (BigInt(i) << BigInt(level.vaLo));
    const visit = (t: Table, base: bigint) => {
      const level = t.level;
      const span = 1n << BigInt(level.vaLo);
      const count = Math.min(level.entries, Number((this.vaSize - base + span - 1n) / span));
      if (t.depth > pd0) {
        for (let i = 0; i < count; i++) {
          const raw = w.read64(t.addr + i * 8);
          t.raw[i] = raw;
          if (raw === 0n) continue;
          t.live++;
          // Any non-zero PTE (valid, sparse or marker) is firmware's: keep clear of it.
          take(entryVa(base, level, i), span);
        }
        return;
      }
      for (let i = 0; i < count; i++) {
        const va = entryVa(base, level, i);
        if (level.dual) {
          const lo = w.read64(t.addr + i * 16);
          const hi = w.read64(t.addr + i * 16 + 8);
          t.raw[2 * i] = lo;
          t.raw[2 * i + 1] = hi;
          if (lo === 0n && hi === 0n) continue;
          t.live++;
          const d = codec.decodeDualPde([lo, hi]);
          const ok = (h: { aperture: string; address: number | bigint }, size: number) =>
            h.aperture === "video" && typeof h.address === "number" &&
            h.address + size <= this.#deps.vramSize;
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
            const c = this.#newTable(dirs.length + 1, d.big.address as number, null);
            c.written = true;
            c.parentLink = { parent: t, idx: i, slot: 2 * i };
            t.children[2 * i] = c;
            visit(c, va);
          }
          if (d.small.aperture === "video") {
            const c = this.#newTable(dirs.length, d.small.address as number, null);
            c.written = true;
            c.parentLink = { parent: t, idx: i, slot: 2 * i + 1 };
            t.children[2 * i + 1] = c;
            visit(c, va);
          }
          continue;
        }
        const raw = w.read64(t.addr + i * 8);
        t.raw[i] = raw;
        if (raw === 0n) continue;
        t.live++;
        const d = codec.decodePde(raw);
        if (
          d.isPte || d.aperture !== "video" || typeof d.address !== "number" ||
          d.address + PAGE > this.#deps.vramSize
        ) {
          take(va, span);
          continue;
        }
        const c = this.#newTable(t.depth + 1, d.address, null);
        c.written = true;
        c.parentLink = { parent: t, idx: i, slot: i };
        t.children[i] = c;
        visit(c, va);
      }
    };
    visit(this.#root, 0n);
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

  #checkPfns(pfns: ArrayLike<number>): void {
    if (pfns === null || typeof pfns !== "object" || typeof pfns.length !== "number") {
      fail("EINVAL", "pfns must be an array of 4 KiB page frame numbers");
    }
    if (pfns.length === 0) fail("EINVAL", "pfns is empty: nothing to map");
    const maxPfn = this.#deps.vramSize / PAGE;
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
    }
  }

  /** Page size for the page at index i given VA alignment, contiguity and the shadow. */
  #chooseRuns(va: bigint, pfns: ArrayLike<number>, forced: number | undefined): Run[] {
    const n = pfns.length;
    // contiguous[i]: how many frames from i on are physically consecutive.
    const contiguous = new Float64Array(n);
    contiguous[n - 1] = 1;
    for (let i = n - 2; i >= 0; i--) {
      contiguous[i] = pfns[i + 1] === pfns[i] + 1 ? contiguous[i + 1] + 1 : 1;
    }
    const runs: Run[] = [];
    const sizes = forced === undefined ? this.#sizes : [forced];
    for (let i = 0; i < n;) {
      const offset = i * PAGE;
      const pva = va + BigInt(offset);
      let chosen = 0;
      for (const s of sizes) {
        const frames = s / PAGE;
        if (
          frames <= contiguous[i] && (pfns[i] * PAGE) % s === 0 && pva % BigInt(s) === 0n &&
          (s <= this.format.bigPt.pageSize || this.#hugeSlotFree(pva, s))
        ) {
          chosen = s;
          break;
        }
      }
      if (chosen === 0) {
        fail(
          "EINVAL",
          `cannot map page ${i} (VA ${hex(pva)}, PA ${hex(pfns[i] * PAGE)}) with ${
            sizeName(forced!)
          } pages: VA and PA must be ${hex(forced!)}-aligned and physically contiguous`,
        );
      }
      const frames = chosen / PAGE;
      const last = runs.at(-1);
      if (last !== undefined && last.pageSize === chosen) last.count++;
      else runs.push({ offset, pageSize: chosen, count: 1 });
      i += frames;
    }
    return runs;
  }

  /** A huge page needs its directory entry free of tables and entries. */
  #hugeSlotFree(va: bigint, size: number): boolean {
    const dirs = this.format.directories;
    let t: Table | null = this.#root;
    for (let d = 0; d < dirs.length && t !== null; d++) {
      const idx = levelIndex(dirs[d], va);
      if (dirs[d].pageSize === size) {
        return dirs[d].dual
          ? t.raw[2 * idx] === 0n && t.raw[2 * idx + 1] === 0n
          : t.raw[idx] === 0n;
      }
      if (dirs[d].dual) return false;
      t = t.children[idx];
    }
    return true; // the path does not exist yet
  }

  /**
   * Where a new mapping's VA may go, best first: for each page size larger
   * than 4 KiB whose aligned block fits inside the first physically
   * contiguous run, a VA with the same offset modulo that size as the
   * physical address (so that block maps as one big page); 4 KiB last.
   */
  #vaPlacements(pfns: ArrayLike<number>, forced: number | undefined): [bigint, bigint][] {
    if (forced !== undefined) return [[BigInt(forced), 0n]];
    let run = 1;
    while (run < pfns.length && pfns[run] === pfns[0] + run) run++;
    const pa = pfns[0] * PAGE;
    const out: [bigint, bigint][] = [];
    for (const s of this.#sizes) {
      if (s === PAGE) continue;
      const aligned = Math.ceil(pa / s) * s;
      if (aligned + s <= pa + run * PAGE) out.push([BigInt(s), BigInt(pa % s)]);
    }
    out.push([BigInt(PAGE), 0n]);
    return out;
  }

  /**
   * Reserves a VA range and allocates every page table the mapping will need
   * (in the shadow; nothing is written). Fails with nothing changed.
   */
  prepareMap(pfns: ArrayLike<number>, options: MapOptions = {}): PreparedMapping {
    this.#alive();
    this.#checkPfns(pfns);
    const forced = options.pageSize;
    if (forced !== undefined && !this.#sizes.includes(forced)) {
      fail(
        "EINVAL",
        `page size ${describe(forced)} is not one this chip maps (${
          this.#sizes.map(hex).join(", ")
        })`,
      );
    }
    const size = pfns.length * PAGE;
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
      const places = this.#vaPlacements(pfns, forced);
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
    const newTables: Table[] = [];
    const pinned: Table[] = [];
    try {
      const runs = this.#chooseRuns(range.start, pfns, forced);
      const seen = new Set<Table>();
      for (const run of runs) {
        for (let k = 0; k < run.count; k++) {
          const va = range.start + BigInt(run.offset + k * run.pageSize);
          this.#ensurePath(va, run.pageSize, newTables, (t) => {
            if (seen.has(t)) return;
            seen.add(t);
            t.pins++;
            pinned.push(t);
          });
        }
      }
      const prepared = new PreparedMapping(this, {
        range,
        size,
        pfns: Array.from(pfns),
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
  #abandon(range: VaRange, newTables: Table[], pinned: Table[]): void {
    for (const t of pinned) t.pins--;
    const writes: [Table, number][] = [];
    const freed: Table[] = [];
    // Its own new tables, and any table an unmap emptied while this prepare pinned it.
    this.#reclaim([...newTables, ...pinned].filter((t) => t.live === 0), writes, freed);
    this.ranges.release(range);
    if (writes.length > 0) {
      // Links in VRAM were cleared (tables an unmap emptied): flush before the pages go back.
      {
        using w = this.#deps.pramin.borrow();
        for (const [t, word] of writes) w.write64(t.addr + word * 8, t.raw[word]);
      }
      this.#flush();
    }
    for (const t of freed) t.alloc!.free();
  }

  /** Makes sure the tables above the PTE for (va, pageSize) exist in the shadow; pins them. */
  #ensurePath(va: bigint, pageSize: number, newTables: Table[], pin: (t: Table) => void): void {
    const dirs = this.format.directories;
    let t = this.#root;
    for (let d = 0; d < dirs.length; d++) {
      const level = dirs[d];
      if (level.pageSize === pageSize) return; // the PTE sits in this directory
      const idx = levelIndex(level, va);
      const small = pageSize === this.format.smallPt.pageSize;
      const slot = level.dual ? 2 * idx + (small ? 1 : 0) : idx;
      let child = t.children[slot];
      if (child === null) {
        const depth = level.dual ? (small ? dirs.length : dirs.length + 1) : d + 1;
        const a = this.#deps.buddy.alloc(PAGE);
        child = this.#newTable(depth, a.start, a);
        newTables.push(child);
        this.#link(t, idx, slot, child);
      }
      pin(child);
      t = child;
      if (level.dual) return;
    }
  }

  /** Points entry idx of `parent` at `child` in the shadow (written at execute). */
  #link(parent: Table, idx: number, slot: number, child: Table): void {
    const codec = this.format.codec;
    const wasLive = parent.level.dual
      ? parent.raw[2 * idx] !== 0n || parent.raw[2 * idx + 1] !== 0n
      : parent.raw[idx] !== 0n;
    if (parent.level.dual) {
      const big = slot === 2 * idx;
      const [lo, hi] = codec.vramDualPde(big ? { big: child.addr } : { small: child.addr });
      parent.raw[slot] = big ? lo : hi;
    } else {
      parent.raw[idx] = codec.vramPde(child.addr);
    }
    parent.children[slot] = child;
    child.parentLink = { parent, idx, slot };
    if (!wasLive) parent.live++;
  }

  /**
   * Unlinks tables that are empty, ours and unpinned, bottom-up (a parent
   * emptied this way goes too). Parent words to rewrite go to `writes`, the
   * tables to free (after the TLB flush) to `freed`.
   */
  #reclaim(candidates: Table[], writes: [Table, number][], freed: Table[]): void {
    const queue = [...new Set(candidates)];
    const dead = new Set<Table>();
    while (queue.length > 0) {
      const t = queue.shift()!;
      const link = t.parentLink;
      if (link === null || t.alloc === null || t.live !== 0 || t.pins !== 0 || dead.has(t)) {
        continue;
      }
      const { parent, idx, slot } = link;
      parent.children[slot] = null;
      t.parentLink = null;
      const word = parent.level.dual ? slot : idx;
      parent.raw[word] = 0n;
      if (parent.written) writes.push([parent, word]); // zero in VRAM whatever was there
      const nowEmpty = !parent.level.dual ||
        (parent.raw[2 * idx] === 0n && parent.raw[2 * idx + 1] === 0n);
      if (nowEmpty) {
        parent.live--;
        if (parent.live === 0) queue.push(parent);
      }
      dead.add(t);
      freed.push(t);
    }
  }

  /**
   * Writes the prepared mapping: new tables complete (each entry once), then
   * the entries of existing tables, then one TLB flush.
   */
  executeMap(prepared: PreparedMapping): Mapping {
    this.#alive();
    this.#own(prepared);
    if (prepared.state !== "prepared") {
      fail("EINVAL", `this prepared mapping was already ${prepared.state}`);
    }
    const codec = this.format.codec;
    // Tables not yet in VRAM on this mapping's paths (including ones another
    // pending prepare created), with their unwritten ancestors.
    const fresh = new Set<Table>();
    const addFresh = (t: Table | null) => {
      while (t !== null && !t.written && !fresh.has(t)) {
        fresh.add(t);
        t = t.parentLink?.parent ?? null;
      }
    };
    for (const t of prepared.newTables) addFresh(t);
    // Set the PTEs in the shadow; remember those in tables already in VRAM.
    const touched: [Table, number][] = [];
    for (const run of prepared.runs) {
      for (let k = 0; k < run.count; k++) {
        const offset = run.offset + k * run.pageSize;
        const va = prepared.range.start + BigInt(offset);
        const pa = prepared.pfns[offset / PAGE] * PAGE;
        const [t, word] = this.#pteSlot(va, run.pageSize);
        const wasLive = t.level.dual
          ? t.raw[word] !== 0n || t.raw[word + 1] !== 0n
          : t.raw[word] !== 0n;
        t.raw[word] = codec.vramPte(pa, { writable: prepared.writable });
        if (!wasLive) t.live++;
        if (t.written) touched.push([t, word]);
        else addFresh(t);
      }
    }
    {
      using w = this.#deps.pramin.borrow();
      // Deepest first, so every table is complete before the PDE pointing to it.
      const order = [...fresh].sort((a, b) => b.depth - a.depth);
      for (const t of order) {
        this.#writeTable(w, t, fresh);
        t.written = true;
      }
      for (const t of order) {
        const link = t.parentLink;
        if (link !== null && !fresh.has(link.parent)) {
          const word = link.parent.level.dual ? link.slot : link.idx;
          w.write64(link.parent.addr + word * 8, link.parent.raw[word]);
        }
      }
      for (const [t, word] of touched) w.write64(t.addr + word * 8, t.raw[word]);
    }
    // The PTEs are in VRAM: the mapping exists from here on, even if the flush
    // fails (the caller can still unmap it).
    for (const t of prepared.pinned) t.pins--;
    prepared.state = "executed";
    this.#pending.delete(prepared);
    const m = new Mapping(this, prepared);
    this.#mappings.add(m);
    this.#byRange.set(prepared.range, m);
    this.#flush();
    return m;
  }

  /**
   * Writes a whole table. A link to a child that is not in VRAM yet (another
   * pending prepare's table) goes as zero: that prepare's execute writes the
   * link once the child is complete.
   */
  #writeTable(w: PraminWindow, t: Table, fresh: Set<Table>): void {
    const words = t.level.tableBytes / 8;
    const links = t.children.length > 0;
    for (let i = 0; i < words; i++) {
      const child = links ? t.children[i] : null;
      const ready = child === null || child.written || fresh.has(child);
      w.write64(t.addr + i * 8, ready ? t.raw[i] : 0n);
    }
  }

  /** The table and word index holding the PTE for (va, pageSize). */
  #pteSlot(va: bigint, pageSize: number): [Table, number] {
    const dirs = this.format.directories;
    let t = this.#root;
    for (let d = 0; d < dirs.length; d++) {
      const level = dirs[d];
      const idx = levelIndex(level, va);
      if (level.pageSize === pageSize) return [t, level.dual ? 2 * idx : idx];
      if (level.dual) {
        const small = pageSize === this.format.smallPt.pageSize;
        const pt = t.children[2 * idx + (small ? 1 : 0)]!;
        return [pt, levelIndex(pt.level, va)];
      }
      t = t.children[idx]!;
    }
    fail("EIO", `no PTE slot for VA ${hex(va)}`);
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

  /** Maps [pa, pa + size) of VRAM (4 KiB aligned) as one mapping. */
  mapRange(pa: number, size: number, options: MapOptions = {}): Mapping {
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % PAGE !== 0) {
      fail("EINVAL", `physical address ${describe(pa)} is not 4 KiB aligned`);
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
      fail("EINVAL", `size ${describe(size)} is not a positive multiple of 4 KiB`);
    }
    const pfns = new Array<number>(size / PAGE);
    for (let i = 0; i < pfns.length; i++) pfns[i] = pa / PAGE + i;
    return this.mapPages(pfns, options);
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

  /** Unmaps live mappings of this Vmm with one TLB flush for all of them. */
  #unmapAll(mappings: Mapping[]): void {
    const emptied: Table[] = [];
    const writes: [Table, number][] = [];
    for (const mapping of mappings) {
      for (const run of mapping.runs) {
        for (let k = 0; k < run.count; k++) {
          const va = mapping.va + BigInt(run.offset + k * run.pageSize);
          const [t, word] = this.#pteSlot(va, run.pageSize);
          t.raw[word] = 0n;
          writes.push([t, word]);
          if (--t.live === 0) emptied.push(t);
        }
      }
    }
    const freed: Table[] = [];
    this.#reclaim(emptied, writes, freed);
    const dead = new Set(freed);
    {
      using w = this.#deps.pramin.borrow();
      for (const [t, word] of writes) if (!dead.has(t)) w.write64(t.addr + word * 8, t.raw[word]);
    }
    // The entries are cleared in VRAM: the mappings are gone whatever the flush does.
    for (const mapping of mappings) {
      mapping.retire();
      this.#mappings.delete(mapping);
      this.#byRange.delete(mapping.range);
      this.ranges.release(mapping.range);
    }
    this.#flush();
    // Only after a completed flush can no walker reach the tables: then free them.
    for (const t of freed) t.alloc!.free();
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
          sizeName(r.pageSize)
        } page at ${r.level}, ${info.writable ? "rw" : "ro"})`;
      },
    };
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
      const collect = (t: Table) => {
        if (t.alloc !== null) ours.add(t.addr);
        for (const c of t.children) if (c !== null) collect(c);
      };
      collect(this.#root);
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
    tableForeign: (t: Table) => boolean,
    pteForeign: (va: bigint) => boolean,
  ): DumpNode {
    let budget = maxPtes;
    const codec = this.format.codec;
    const dirs = this.format.directories.length;
    const visit = (t: Table, base: bigint): DumpNode[] => {
      const out: DumpNode[] = [];
      const span = 1n << BigInt(t.level.vaLo);
      for (let i = 0; i < t.level.entries && budget > 0; i++) {
        const va = base + BigInt(i) * span;
        if (t.level.dual) {
          const lo = t.raw[2 * i];
          const hi = t.raw[2 * i + 1];
          if (lo === 0n && hi === 0n) continue;
          const d = codec.decodeDualPde([lo, hi]);
          const children: DumpNode[] = [];
          const big = t.children[2 * i];
          const small = t.children[2 * i + 1];
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
        const raw = t.raw[i];
        if (raw === 0n) continue;
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
      children: visit(this.#root, 0n),
      foreign: tableForeign(this.#root),
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
    const out: Record<string, number> = {};
    const visit = (t: Table) => {
      out[t.level.name] = (out[t.level.name] ?? 0) + 1;
      for (const c of t.children) if (c !== null) visit(c);
    };
    visit(this.#root);
    return out;
  }

  /** Cancels pending prepares, unmaps everything this Vmm mapped, frees its root if it allocated it. */
  destroy(): void {
    if (this.#destroyed) return;
    if (this.#holds.size > 0) {
      fail(
        "EBUSY",
        `${this.name} is in use: ${[...this.#holds.values()].join("; ")}`,
        "unbind it first (gpu.bar1.unbind())",
      );
    }
    for (const p of [...this.#pending]) this.cancelMap(p);
    if (this.#mappings.size > 0) this.#unmapAll([...this.#mappings]);
    this.#destroyed = true;
    this.#rootAllocation?.free();
    for (const fn of this.#onDestroy.splice(0)) fn();
  }

  /** Runs `fn` once this space is destroyed (at once if it already is). */
  whenDestroyed(fn: () => void): void {
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
    } (${this.#mappings.size} mappings, ${this.ranges.list().length} ranges taken)`;
  }
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
