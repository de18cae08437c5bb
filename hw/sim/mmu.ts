/**
 * The simulator's MMU: a page walker over simulated VRAM, a TLB, and the
 * translating BAR1 aperture built on them. It is the oracle `mm/` is tested
 * against, so it is written from the hardware facts only (facts §1.2 huge-page
 * levels, §4.1 VA layouts, §5 entry formats), never from `mm/`.
 *
 * Walk rules (both versions):
 *
 * - VA bits above the format's width (49 on v2, 57 on v3) → `va-out-of-range`.
 * - Directory level (not PD0): bit 0 set → a PTE if the level may hold one on
 *   this chip (PD1: not Turing; PD2: Blackwell only), else `pte-at-non-leaf`.
 *   Bit 0 clear → PDE aperture 0 `invalid-pde`, 2/3 `sysmem-table`, 1 → the
 *   next table, which must end inside VRAM (`table-out-of-range`).
 * - PD0 (dual, 16 B): low-word bit 0 → 2 MiB PTE. Else the big half first
 *   (sys aperture → `sysmem-table`; video → the big PTE for VA 20:16: valid →
 *   64 KiB page, invalid with the "no small page" marker → `invalid-pte`),
 *   then the small half (aperture 0 → `invalid-pte` at PT64K if the big half
 *   pointed somewhere, else `invalid-pde`; sys → `sysmem-table`; video → the
 *   small PTE for VA 20:12, invalid → `invalid-pte`).
 * - The fault level is the level whose entry stopped the walk (a pointer to an
 *   out-of-range table is blamed on the entry holding it; a bad PDB on the
 *   root level).
 *
 * @module
 */

import { describe, fail, hex } from "../errors.ts";
import type { MmioBackend } from "../mmio.ts";
import type { SparseMemory } from "./vram.ts";

/** GPU families the simulator knows (facts §1.2). */
export type SimArchitecture = "Turing" | "Ampere" | "Ada" | "Hopper" | "Blackwell";

/** Options for {@linkcode SimMmu}. */
export interface SimMmuOptions {
  /** The VRAM the page tables live in. */
  vram: SparseMemory;
  /** Bytes of VRAM (tables and pages past this fault). */
  vramSize: number;
  /** Page-table format: 2 (Turing/Ampere/Ada) or 3 (Hopper/Blackwell). */
  version: 2 | 3;
  /** Decides which directory levels may hold huge PTEs. */
  architecture: SimArchitecture;
  /**
   * How the MMU reads table words (default: `vram`). The simulated GPU passes
   * its posted-write view, so tables written without an FB flush are not seen.
   */
  tables?: { read32(addr: number): number };
}

/** Direction of a CPU access. */
export type SimAccess = "read" | "write";

/** One faulting access, as recorded in {@linkcode SimMmu.faults}. */
export interface SimFault {
  /** The virtual address accessed. */
  va: bigint;
  /** Read or write. */
  access: SimAccess;
  /** Why it faulted (`invalid-pte`, `read-only`, `bar1-unbound`, ...). */
  reason: string;
  /** The PDB the access went through; -1 when none was bound. */
  pdb: number;
  /** Access width in bytes. */
  width: number;
}

/** Where a PTE points. */
export type SimAperture = "video" | "peer" | "sysCoherent" | "sysNonCoherent";

/** A successful walk. */
export interface SimTranslation {
  /** Physical address of the byte at the VA (bigint only when past 2^53). */
  pa: number | bigint;
  /** The PTE's aperture. */
  aperture: SimAperture;
  /** Bytes mapped by the PTE. */
  pageSize: number;
  /** Level the PTE was found at: "PT", "PT64K", "PD0", "PD1" or "PD2". */
  level: string;
  /** The PTE forbids writes. */
  readOnly: boolean;
  /** The PTE word. */
  raw: bigint;
}

/** A walk that found no page: `fault` says why, `level` where. */
export interface SimWalkFault {
  /** Reason code. */
  fault: string;
  /** Level whose entry stopped the walk. */
  level: string;
}

/** TLB counters. */
export interface SimTlbStats {
  /** Cached 4 KiB translations now held. */
  entries: number;
  /** Accesses served from the cache. */
  hits: number;
  /** Accesses that walked the tables. */
  misses: number;
  /** Calls of {@linkcode SimMmu.invalidate}. */
  invalidations: number;
}

interface Level {
  name: string;
  /** VA bit the index starts at. */
  shift: number;
  /** Entries in the table. */
  entries: number;
  /** Bytes of the table (entries × entry size). */
  bytes: number;
  /** May hold a huge PTE on this chip (directory levels only). */
  leaf: boolean;
}

const APERTURES: readonly SimAperture[] = ["video", "peer", "sysCoherent", "sysNonCoherent"];
const TWO24 = 2 ** 24;
const TWO20 = 2 ** 20;
const PAGE = 4096;
const FAULT_KEEP = 10_000;
const FAULT_SLACK = 1_024;
/** The TLB is dropped wholesale past this many entries (a real TLB evicts too). */
const TLB_CAPACITY = 1 << 21;
/** Cached entry for a sys/peer page (the simulator has no system memory); -3 when read-only. */
const NOT_VRAM = -2;

const ARCHITECTURES: readonly SimArchitecture[] = [
  "Turing",
  "Ampere",
  "Ada",
  "Hopper",
  "Blackwell",
];

/** Directory levels down to PD0 (PD0 last), with the chip's huge-page levels flagged. */
function directoryLevels(version: 2 | 3, arch: SimArchitecture): Level[] {
  const pd1Leaf = arch !== "Turing";
  const pd2Leaf = arch === "Blackwell";
  const levels: Level[] = version === 2
    ? [{ name: "PD3", shift: 47, entries: 4, bytes: 32, leaf: false }]
    : [
      { name: "PD4", shift: 56, entries: 2, bytes: 16, leaf: false },
      { name: "PD3", shift: 47, entries: 512, bytes: 4096, leaf: false },
    ];
  levels.push(
    { name: "PD2", shift: 38, entries: 512, bytes: 4096, leaf: pd2Leaf },
    { name: "PD1", shift: 29, entries: 512, bytes: 4096, leaf: pd1Leaf },
    { name: "PD0", shift: 21, entries: 256, bytes: 4096, leaf: true },
  );
  return levels;
}

/**
 * The simulated MMU of one GPU: walks page tables in VRAM and caches the
 * results per (PDB, 4 KiB virtual page) like a TLB.
 *
 * @example
 * ```ts
 * import { SparseMemory } from "./vram.ts";
 * const vram = new SparseMemory(1 << 30);
 * const mmu = new SimMmu({ vram, vramSize: 1 << 30, version: 2, architecture: "Ampere" });
 * const t = mmu.walk(0x10000, 0x1234n);          // uncached: SimTranslation or { fault, level }
 * const r = mmu.access(0x10000, 0x1234n, "write", 4); // { pa } or { fault } (recorded)
 * mmu.invalidate(0x10000);                        // what a TLB flush naming the PDB does
 * ```
 */
export class SimMmu {
  /** The VRAM walked. */
  readonly vram: SparseMemory;
  /** Bytes of VRAM. */
  readonly vramSize: number;
  /** Page-table format. */
  readonly version: 2 | 3;
  /** The chip family. */
  readonly architecture: SimArchitecture;
  /** VA width in bits (49 or 57). */
  readonly vaBits: number;
  /** The most recent faulting accesses, oldest first (keeps at least the last 10,000). */
  readonly faults: SimFault[] = [];
  /** Faulting accesses since creation (also those dropped from {@linkcode faults}). */
  faultCount = 0;
  /** Reason of the last fault {@linkcode resolve} returned -1 for. */
  lastFault = "";

  #levels: Level[];
  #vaLimit: bigint;
  #tables: { read32(addr: number): number };
  #tlb = new Map<number, Map<number, number>>();
  /** Directory entries (32-bit words by VRAM address) each PDB's walks have read: a PDE cache. */
  #pdes = new Map<number, Map<number, number>>();
  #lastPdb = -1;
  #lastMap: Map<number, number> | undefined = undefined;
  #entries = 0;
  #hits = 0;
  #misses = 0;
  #invalidations = 0;

  /** Checks the options (EINVAL on a version/architecture mismatch or a bad size). */
  constructor(options: SimMmuOptions) {
    const { vram, vramSize, version, architecture } = options;
    if (version !== 2 && version !== 3) {
      fail("EINVAL", `MMU version ${describe(version)} is not 2 or 3`);
    }
    if (!ARCHITECTURES.includes(architecture)) {
      fail("EINVAL", `architecture ${describe(architecture)} is not one of ${ARCHITECTURES}`);
    }
    const v3 = architecture === "Hopper" || architecture === "Blackwell";
    if ((version === 3) !== v3) {
      fail(
        "EINVAL",
        `${architecture} uses MMU v${v3 ? 3 : 2}, not v${version} (facts §1.2)`,
      );
    }
    if (!Number.isSafeInteger(vramSize) || vramSize <= 0 || vramSize > 2 ** 40) {
      fail("EINVAL", `VRAM size ${describe(vramSize)} is not in (0, ${hex(2 ** 40)}]`);
    }
    if (vramSize > vram.size) {
      fail("EINVAL", `VRAM size ${hex(vramSize)} exceeds the backing memory (${hex(vram.size)})`);
    }
    this.vram = vram;
    this.vramSize = vramSize;
    this.version = version;
    this.architecture = architecture;
    this.vaBits = version === 2 ? 49 : 57;
    this.#vaLimit = 1n << BigInt(this.vaBits);
    this.#levels = directoryLevels(version, architecture);
    this.#tables = options.tables ?? vram;
  }

  /**
   * Walks the tables rooted at `pdb` for `va`, straight from VRAM (no TLB).
   *
   * @example
   * ```ts
   * import { createSimGpu } from "./gpu.ts";
   * const { mmu, firmware } = createSimGpu({ state: "gsp" });
   * const pdb = firmware!.bar1Pdb; // the BAR1 tables GSP built
   * const t = mmu.walk(pdb, 0x10000n);
   * if ("fault" in t) console.log(t.fault, t.level); else console.log(t.pa, t.pageSize, t.level);
   * ```
   */
  walk(pdb: number, va: bigint | number): SimTranslation | SimWalkFault {
    checkPdb(pdb);
    const v = toVa(va);
    const root = this.#levels[0];
    if (v < 0n || v >= this.#vaLimit) return { fault: "va-out-of-range", level: root.name };
    if (pdb + root.bytes > this.vramSize) return { fault: "table-out-of-range", level: root.name };
    return this.#walk(pdb, v);
  }

  #walk(pdb: number, va: bigint, pdes?: Map<number, number>): SimTranslation | SimWalkFault {
    const mem = this.#tables;
    // Directory words come from the PDE cache when given (as a real MMU's do):
    // a PDE changed without a flush keeps its old value for later walks.
    const dir = pdes === undefined ? (a: number) => mem.read32(a) : (a: number) => {
      let w = pdes.get(a);
      if (w === undefined) {
        w = mem.read32(a);
        pdes.set(a, w);
      }
      return w;
    };
    const v2 = this.version === 2;
    const levels = this.#levels;
    const last = levels.length - 1;
    let table = pdb;
    for (let i = 0; i < last; i++) {
      const level = levels[i];
      const slot = table + this.#index(va, level) * 8;
      const lo = dir(slot);
      const hi = dir(slot + 4);
      if (lo & 1) {
        if (!level.leaf) return { fault: "pte-at-non-leaf", level: level.name };
        return this.#pte(lo, hi, va, 2 ** level.shift, level.name);
      }
      const aperture = (lo >>> 1) & 3;
      if (aperture === 0) return { fault: "invalid-pde", level: level.name };
      if (aperture !== 1) return { fault: "sysmem-table", level: level.name };
      // v2 ADDRESS_VID 32:8 (>> 12); v3 ADDRESS 51:12 in place.
      const next = v2
        ? ((lo >>> 8) + (hi & 1) * TWO24) * PAGE
        : ((lo >>> 12) + (hi & 0xfffff) * TWO20) * PAGE;
      if (next + levels[i + 1].bytes > this.vramSize) {
        return { fault: "table-out-of-range", level: level.name };
      }
      table = next;
    }

    // PD0: dual entry, big half in the low word, small half in the high word.
    const pd0 = levels[last];
    const slot = table + this.#index(va, pd0) * 16;
    const lo = dir(slot);
    const hi = dir(slot + 4);
    if (lo & 1) return this.#pte(lo, hi, va, 2 ** 21, pd0.name);
    const sub = Number(va & 0x1fffffn);
    const bigAperture = (lo >>> 1) & 3;
    if (bigAperture >= 2) return { fault: "sysmem-table", level: pd0.name };
    if (bigAperture === 1) {
      // v2 ADDRESS_BIG_VID 32:4 (>> 8); v3 ADDRESS_BIG 51:8 in place.
      const bigPt = v2
        ? ((lo >>> 4) + (hi & 1) * 2 ** 28) * 256
        : ((lo >>> 8) + (hi & 0xfffff) * TWO24) * 256;
      if (bigPt + 256 > this.vramSize) return { fault: "table-out-of-range", level: pd0.name };
      const pteAddr = bigPt + (sub >>> 16) * 8;
      const plo = mem.read32(pteAddr);
      const phi = mem.read32(pteAddr + 4);
      if (plo & 1) return this.#pte(plo, phi, va, 0x10000, "PT64K");
      // "No valid 4 KiB page" marker: v2 VALID=0 + PRIVILEGE; v3 VALID=0 + PCF 3.
      const noSmall = v2 ? (plo & 0x20) !== 0 : ((plo >>> 3) & 0x1f) === 3;
      if (noSmall) return { fault: "invalid-pte", level: "PT64K" };
    }
    const slo = dir(slot + 8);
    const shi = dir(slot + 12);
    const smallAperture = (slo >>> 1) & 3;
    if (smallAperture === 0) {
      return bigAperture === 1
        ? { fault: "invalid-pte", level: "PT64K" }
        : { fault: "invalid-pde", level: pd0.name };
    }
    if (smallAperture !== 1) return { fault: "sysmem-table", level: pd0.name };
    const smallPt = v2
      ? ((slo >>> 8) + (shi & 1) * TWO24) * PAGE
      : ((slo >>> 12) + (shi & 0xfffff) * TWO20) * PAGE;
    if (smallPt + PAGE > this.vramSize) return { fault: "table-out-of-range", level: pd0.name };
    const pteAddr = smallPt + (sub >>> 12) * 8;
    const plo = mem.read32(pteAddr);
    const phi = mem.read32(pteAddr + 4);
    if (plo & 1) return this.#pte(plo, phi, va, PAGE, "PT");
    return { fault: "invalid-pte", level: "PT" };
  }

  #index(va: bigint, level: Level): number {
    return Number((va >> BigInt(level.shift)) & BigInt(level.entries - 1));
  }

  /** Decodes a valid PTE word (lo has bit 0 set) into a translation for `va`. */
  #pte(
    lo: number,
    hi: number,
    va: bigint,
    pageSize: number,
    level: string,
  ): SimTranslation | SimWalkFault {
    const aperture = (lo >>> 1) & 3;
    let base: number | bigint;
    let readOnly: boolean;
    if (this.version === 2) {
      readOnly = (lo & 0x40) !== 0;
      // ADDRESS_VID 32:8 for video and peer (35:33 is the peer index); ADDRESS_SYS 53:8.
      const frame = aperture >= 2
        ? (lo >>> 8) + (hi & 0x3fffff) * TWO24
        : (lo >>> 8) + (hi & 1) * TWO24;
      base = frame * PAGE;
      if (!Number.isSafeInteger(base)) base = BigInt(frame) * BigInt(PAGE);
    } else {
      readOnly = (lo & 0x20) !== 0; // PCF bit 2
      // ADDRESS_VID 39:12; SYS and PEER 51:12.
      const frame = aperture === 0
        ? (lo >>> 12) + (hi & 0xff) * TWO20
        : (lo >>> 12) + (hi & 0xfffff) * TWO20;
      base = frame * PAGE;
    }
    // Stricter than documented silicon: a big or huge page must be aligned to its size.
    if (pageSize > PAGE && BigInt(base) % BigInt(pageSize) !== 0n) {
      return { fault: "misaligned-pte", level };
    }
    const offset = Number(va % BigInt(pageSize));
    // A safe base plus the offset can still pass 2^53 (v2 sysmem huge pages): go bigint then.
    const pa = typeof base === "bigint" || !Number.isSafeInteger(base + offset)
      ? BigInt(base) + BigInt(offset)
      : base + offset;
    return {
      pa: typeof pa === "bigint" && pa <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(pa) : pa,
      aperture: APERTURES[aperture],
      pageSize,
      level,
      readOnly,
      raw: (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0),
    };
  }

  /**
   * What a CPU access through an aperture bound to `pdb` does: TLB lookup,
   * walk and fill on a miss, then the permission and aperture checks. A
   * fault is recorded in {@linkcode faults} and nothing is cached for it.
   *
   * @example
   * ```ts
   * import { createSimGpu } from "./gpu.ts";
   * const { mmu, vram, firmware } = createSimGpu({ state: "gsp" });
   * const pdb = firmware!.bar1Pdb; // the BAR1 tables GSP built
   * const r = mmu.access(pdb, 0x2000n, "read", 4);
   * if ("pa" in r) vram.read32(r.pa);
   * ```
   */
  access(
    pdb: number,
    va: bigint | number,
    access: SimAccess,
    width: number,
  ): { pa: number } | { fault: string } {
    checkPdb(pdb);
    const v = toVa(va);
    if (access !== "read" && access !== "write") {
      fail("EINVAL", `access ${describe(access)} is not "read" or "write"`);
    }
    if (width !== 1 && width !== 2 && width !== 4 && width !== 8) {
      fail("EINVAL", `access width ${describe(width)} is not 1, 2, 4 or 8 bytes`);
    }
    if (v % BigInt(width) !== 0n) {
      fail("EINVAL", `VA ${hex(v)} is not aligned to the ${width}-byte access width`);
    }
    const write = access === "write";
    if (v < 0n || v >= this.#vaLimit) {
      this.#record(pdb, v, write, width, "va-out-of-range");
      return { fault: "va-out-of-range" };
    }
    const pa = this.#resolve(pdb, Number(v >> 12n), Number(v & 0xfffn), write, width);
    return pa < 0 ? { fault: this.lastFault } : { pa };
  }

  /**
   * The allocation-free form of {@linkcode access} for apertures (BAR1):
   * `va` is a non-negative safe integer, the result the physical address or
   * -1 after recording the fault (its reason is then in {@linkcode lastFault}).
   * A `null` PDB means the aperture is not bound: fault `bar1-unbound`.
   * Arguments are trusted (the aperture checked them).
   */
  resolve(pdb: number | null, va: number, access: SimAccess, width: number): number {
    const write = access === "write";
    if (pdb === null) {
      this.#record(-1, BigInt(va), write, width, "bar1-unbound");
      return -1;
    }
    // `& 0xfff` is exact for any safe integer (ToInt32 keeps the low bits).
    const offset = va & 0xfff;
    return this.#resolve(pdb, (va - offset) / PAGE, offset, write, width);
  }

  #resolve(pdb: number, vpn: number, offset: number, write: boolean, width: number): number {
    let map = this.#lastMap;
    if (pdb !== this.#lastPdb || map === undefined) {
      map = this.#tlb.get(pdb);
      if (map === undefined) {
        map = new Map();
        this.#tlb.set(pdb, map);
      }
      this.#lastPdb = pdb;
      this.#lastMap = map;
    }
    let entry = map.get(vpn);
    if (entry === undefined) {
      this.#misses++;
      const va = BigInt(vpn) * BigInt(PAGE);
      const root = this.#levels[0];
      const t: SimTranslation | SimWalkFault = va >= this.#vaLimit
        ? { fault: "va-out-of-range", level: root.name }
        : pdb + root.bytes > this.vramSize
        ? { fault: "table-out-of-range", level: root.name }
        : this.#walk(pdb, va, this.#pdeCache(pdb));
      if ("fault" in t) {
        this.#record(pdb, va + BigInt(offset), write, width, t.fault);
        return -1;
      }
      // Cache the 4 KiB page base (+1 when read-only), or NOT_VRAM (-1 more when read-only).
      entry = t.aperture === "video" && typeof t.pa === "number"
        ? t.pa + (t.readOnly ? 1 : 0)
        : NOT_VRAM - (t.readOnly ? 1 : 0);
      if (this.#entries >= TLB_CAPACITY) this.#drop();
      map.set(vpn, entry);
      this.#entries++;
    } else {
      this.#hits++;
    }
    let fault: string;
    if (entry >= 0) {
      const readOnly = entry % 2;
      if (write && readOnly) {
        fault = "read-only";
      } else {
        const pa = entry - readOnly + offset;
        if (pa + width <= this.vramSize) return pa;
        fault = "pa-out-of-range";
      }
    } else {
      fault = write && entry !== NOT_VRAM ? "read-only" : "not-vram";
    }
    this.#record(pdb, BigInt(vpn) * BigInt(PAGE) + BigInt(offset), write, width, fault);
    return -1;
  }

  #record(pdb: number, va: bigint, write: boolean, width: number, reason: string): void {
    this.lastFault = reason;
    this.faultCount++;
    const faults = this.faults;
    faults.push({ va, access: write ? "write" : "read", reason, pdb, width });
    // Trim in batches so a fault storm costs amortised O(1) per fault.
    if (faults.length > FAULT_KEEP + FAULT_SLACK) faults.splice(0, faults.length - FAULT_KEEP);
  }

  #drop(): void {
    this.#tlb.clear();
    this.#pdes.clear();
    this.#lastPdb = -1;
    this.#lastMap = undefined;
    this.#entries = 0;
  }

  #pdeCache(pdb: number): Map<number, number> {
    let m = this.#pdes.get(pdb);
    if (m === undefined) {
      m = new Map();
      this.#pdes.set(pdb, m);
    }
    return m;
  }

  /**
   * Drops the cached translations and directory entries of one PDB, or of
   * all PDBs: what a TLB invalidate naming that PDB (or ALL_PDB) does.
   */
  invalidate(pdb: number | "all"): void {
    // Any number is accepted: a flush naming a PDB nothing is cached for is a no-op.
    if (pdb !== "all" && typeof pdb !== "number") {
      fail("EINVAL", `PDB ${describe(pdb)} is not a number or "all"`);
    }
    this.#invalidations++;
    if (pdb === "all") {
      this.#drop();
      return;
    }
    this.#pdes.delete(pdb);
    const map = this.#tlb.get(pdb);
    if (map !== undefined) {
      this.#entries -= map.size;
      this.#tlb.delete(pdb);
    }
    if (pdb === this.#lastPdb) {
      this.#lastPdb = -1;
      this.#lastMap = undefined;
    }
  }

  /** Forgets the recorded faults (the total in {@linkcode faultCount} too). */
  clearFaults(): void {
    this.faults.length = 0;
    this.faultCount = 0;
    this.lastFault = "";
  }

  /** TLB occupancy and counters. */
  tlbStats(): SimTlbStats {
    return {
      entries: this.#entries,
      hits: this.#hits,
      misses: this.#misses,
      invalidations: this.#invalidations,
    };
  }
}

function checkPdb(pdb: number): void {
  if (!Number.isSafeInteger(pdb) || pdb < 0 || pdb % PAGE !== 0) {
    fail("EINVAL", `PDB ${describe(pdb)} is not a 4 KiB-aligned VRAM address`);
  }
}

function toVa(va: bigint | number): bigint {
  if (typeof va === "bigint") return va;
  if (!Number.isSafeInteger(va)) {
    fail("EINVAL", `VA ${describe(va)} is not an integer (pass a bigint past 2^53)`);
  }
  return BigInt(va);
}

/** Options for {@linkcode createBar1Backend}. */
export interface Bar1BackendOptions {
  /** Bytes of the BAR1 aperture (= its VA space: BAR offset o is VA o). */
  size: number;
  /** The PDB BAR1 is bound to now (read on every access), or null when unbound. */
  pdb: () => number | null;
}

/** What a faulting BAR1 read returns (truncated to the low bits for 8/16-bit reads). */
export const BAR1_FAULT_VALUE = 0xbad1fa17;

/**
 * The translating BAR1 aperture: every access at offset `o` is a CPU access
 * of VA `o` through {@linkcode SimMmu.resolve}. Faulting accesses are
 * recorded in `mmu.faults`, never touch VRAM, and reads of them return
 * `faultValue` (0xBAD1FA17, truncated for narrower reads).
 *
 * @example
 * ```ts
 * import { Mmio } from "../mmio.ts";
 * import { createSimGpu } from "./gpu.ts";
 * const { mmu, firmware } = createSimGpu({ state: "gsp" });
 * const pdb = firmware!.bar1Pdb;
 * const bar1 = new Mmio("bar1", createBar1Backend(mmu, { size: 256 << 20, pdb: () => pdb }));
 * bar1.write32(0x1000, 0xcafe); // lands at the PA the tables give VA 0x1000
 * ```
 */
export function createBar1Backend(
  mmu: SimMmu,
  options: Bar1BackendOptions,
): MmioBackend & { faultValue: number } {
  const { size, pdb } = options;
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
    fail("EINVAL", `BAR1 size ${describe(size)} is not a positive multiple of 4 KiB`);
  }
  if (size > 2 ** mmu.vaBits) {
    fail("EINVAL", `BAR1 size ${hex(size)} exceeds the ${mmu.vaBits}-bit VA space`);
  }
  if (typeof pdb !== "function") fail("EINVAL", "BAR1 needs a pdb() callback");
  const vram = mmu.vram;
  const fault = BAR1_FAULT_VALUE;
  return {
    size,
    faultValue: fault,
    read8(offset: number): number {
      const pa = mmu.resolve(pdb(), offset, "read", 1);
      return pa < 0 ? fault & 0xff : vram.read8(pa);
    },
    read16(offset: number): number {
      const pa = mmu.resolve(pdb(), offset, "read", 2);
      return pa < 0 ? fault & 0xffff : vram.read16(pa);
    },
    read32(offset: number): number {
      const pa = mmu.resolve(pdb(), offset, "read", 4);
      return pa < 0 ? fault : vram.read32(pa);
    },
    write8(offset: number, value: number): void {
      const pa = mmu.resolve(pdb(), offset, "write", 1);
      if (pa >= 0) vram.write8(pa, value);
    },
    write16(offset: number, value: number): void {
      const pa = mmu.resolve(pdb(), offset, "write", 2);
      if (pa >= 0) vram.write16(pa, value);
    },
    write32(offset: number, value: number): void {
      const pa = mmu.resolve(pdb(), offset, "write", 4);
      if (pa >= 0) vram.write32(pa, value);
    },
  };
}
