/**
 * The page-table walker: translates one GPU virtual address by reading the
 * tables in VRAM, level by level, exactly as the MMU would, and reports every
 * entry it read. One walker serves MMU v2 and v3 (the format is data).
 *
 * Rules (shared with the simulator's MMU, which is written separately from
 * the same facts; a test compares them on random tables):
 * - Start at the PDB (a VRAM table). At each directory level the VA bits of
 *   that level index the table; PD0 entries are 16 bytes (low word at +0,
 *   high word at +8).
 * - Non-dual level, bit 0 set: a huge PTE if the chip allows one at this level
 *   (pa = PTE address + VA mod the huge page size), else "pte-at-non-leaf".
 *   Otherwise aperture invalid → "invalid-pde", system memory →
 *   "sysmem-table", video → the next table (checked against VRAM size first:
 *   "table-out-of-range").
 * - PD0, low-word bit 0 set: a 2 MiB PTE. Otherwise the big half is consulted
 *   first: system memory → "sysmem-table"; video → the big PTE (VA 20:16):
 *   valid maps 64 KiB, invalid with the "no small pages" marker (v2 VALID=0
 *   PRIVILEGE=1; v3 VALID=0 PCF=3) → "invalid-pte" at PT64K. Then the small
 *   half: video → the small PTE (VA 20:12), valid maps 4 KiB, invalid →
 *   "invalid-pte" at PT; system memory → "sysmem-table"; invalid →
 *   "invalid-pte" at PT64K when the big half led to an (invalid) big PTE, else
 *   "invalid-pde".
 * - The stop level is the level whose entry ended the walk; a pointer to a
 *   table beyond VRAM is blamed on the entry holding it ("table-out-of-range";
 *   a bad PDB on the root level).
 * - A valid PTE with a non-video aperture is still mapped (the aperture says
 *   where `pa` lives).
 *
 * A walk reads one word per directory level, two at PD0 and at most two PTEs,
 * so it always terminates whatever the tables contain (garbage or tables that
 * point at themselves); it never throws on table contents.
 *
 * {@linkcode translation} turns a walk that translated into the brief
 * `Translation` that `Vmm.translate` returns.
 *
 * @module
 */

import { describe, formatSize } from "../../hw/errors.ts";
import { checkObject, checkOptions, checkUint, checkVa } from "../../hw/validate.ts";
import {
  fail,
  hex,
  inspectable,
  PAGE_4K,
  type PteAperture,
  virtualAddress,
  VRAM_ADDRESS_LIMIT,
  vramAddress,
} from "../types.ts";
import {
  type DecodedDualPde,
  type DecodedPde,
  type DecodedPte,
  type LevelFormat,
  levelIndex,
  type MmuFormat,
} from "./format.ts";

/** Source of 64-bit VRAM words (a PRAMIN window provides this). */
export interface EntryReader {
  /** Reads the little-endian 64-bit word at a VRAM byte address. */
  read64(address: number): bigint;
}

/** Why a walk found no mapping. */
export type WalkStopReason =
  | "invalid-pde"
  | "invalid-pte"
  | "sysmem-table"
  | "table-out-of-range"
  | "pte-at-non-leaf"
  /** A 64 KiB or huge PTE whose address is not aligned to its page size. */
  | "misaligned-pte";

/** One entry the walk read. */
export interface WalkStep {
  /** Level name ("PD3", "PD0", "PT64K", "PT", …). */
  level: string;
  /** Index in that level's table. */
  index: number;
  /** VRAM byte address of the entry. */
  entryAddress: number;
  /** Raw entry: one word, or `[low, high]` for a PD0 dual PDE. */
  raw: bigint | readonly [bigint, bigint];
  /** The decoded entry (a PTE where the entry acted as one). */
  entry: DecodedPte | DecodedPde | DecodedDualPde;
}

/** A VA that translates. */
export interface WalkMapped {
  /** Discriminant: the VA translates. */
  mapped: true;
  /** The virtual address walked. */
  va: bigint;
  /** Translated address in `aperture` (a number when safe). */
  pa: number | bigint;
  /** Where `pa` lives. */
  aperture: PteAperture;
  /** Bytes mapped by the PTE (4 KiB, 64 KiB, 2 MiB, 512 MiB or 256 GiB). */
  pageSize: number;
  /** Level that held the PTE: "PT", "PT64K", "PD0", "PD1" or "PD2". */
  level: string;
  /** The decoded PTE. */
  pte: DecodedPte;
  /** Every entry read, root first. */
  steps: WalkStep[];
}

/** A VA that does not translate. */
export interface WalkUnmapped {
  /** Discriminant: the VA does not translate. */
  mapped: false;
  /** The virtual address walked. */
  va: bigint;
  /** Level where the walk stopped. */
  level: string;
  /** Why it stopped. */
  reason: WalkStopReason;
  /** Every entry read, root first. */
  steps: WalkStep[];
}

/** The result of {@linkcode walk}. */
export type WalkResult = WalkMapped | WalkUnmapped;

/** Options of {@linkcode walk}. */
export interface WalkOptions {
  /** Page-table format (version, architecture) of the address space. */
  format: MmuFormat;
  /** VRAM address of the root table (4 KiB aligned, as the instance block stores it). */
  pdb: number;
  /** Virtual address to translate. */
  va: bigint | number;
  /** VRAM size: tables that do not lie wholly below it are not read. Default 2^40. */
  vramSize?: number;
}

function rawText(raw: bigint | readonly [bigint, bigint]): string {
  return typeof raw === "bigint" ? hex(raw, 16) : `${hex(raw[0], 16)} ${hex(raw[1], 16)}`;
}

/** One step as the walk result prints it: level, index, entry address, raw word(s), decoded entry. */
export function formatStep(s: WalkStep): string {
  return `${s.level.padEnd(5)} [${String(s.index).padStart(3)}] @${hex(s.entryAddress)} ${
    rawText(s.raw)
  }  ${String(s.entry)}`;
}

function showResult(r: WalkResult): string {
  const head = r.mapped
    ? `walk ${hex(r.va)} -> ${hex(r.pa)} ${r.aperture} (${
      formatSize(r.pageSize)
    } page at ${r.level})`
    : `walk ${hex(r.va)} -> unmapped: ${r.reason} at ${r.level}`;
  return [head, ...r.steps.map((s) => `  ${formatStep(s)}`)].join("\n");
}

function step(
  level: string,
  index: number,
  entryAddress: number,
  raw: bigint | readonly [bigint, bigint],
  entry: DecodedPte | DecodedPde | DecodedDualPde,
): WalkStep {
  // Plain object (no inspect hooks: defining them costs ~1.5 µs per step); the
  // result's own printer formats every step.
  return { level, index, entryAddress, raw, entry };
}

function mapped(
  va: bigint,
  pte: DecodedPte,
  pageSize: number,
  level: string,
  steps: WalkStep[],
): WalkResult {
  const offset = Number(va % BigInt(pageSize));
  const address = pte.address;
  // The hardware's handling of address bits below a big or huge page is not
  // documented; refusing them keeps a mapper bug from hiding behind "it adds".
  if (pageSize > PAGE_4K && BigInt(address) % BigInt(pageSize) !== 0n) {
    return stop(va, level, "misaligned-pte", steps);
  }
  let pa: number | bigint;
  if (typeof address === "number" && Number.isSafeInteger(address + offset)) {
    pa = address + offset;
  } else {
    pa = BigInt(address) + BigInt(offset);
  }
  return inspectable<WalkResult>(
    { mapped: true, va, pa, aperture: pte.aperture, pageSize, level, pte, steps },
    showResult,
  ) as WalkMapped;
}

function stop(va: bigint, level: string, reason: WalkStopReason, steps: WalkStep[]): WalkUnmapped {
  return inspectable<WalkResult>(
    { mapped: false, va, level, reason, steps },
    showResult,
  ) as WalkUnmapped;
}

/** Whether a table of `bytes` at `address` lies wholly inside VRAM. */
export function tableFits(
  address: number | bigint,
  bytes: number,
  limit: number,
): address is number {
  return typeof address === "number" && address + bytes <= limit;
}

/**
 * Translates `va` by walking the page tables rooted at `pdb`.
 *
 * @example
 * ```ts
 * import { hex, openGpu } from "../../mod.ts";
 * import { mmuFormat } from "./mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * using w = gpu.pramin.window();
 * const r = walk(w, { format: mmuFormat({ version: 2 }), pdb: 0x200000, va: 0x10000n });
 * if (r.mapped) console.log(hex(r.pa), r.pageSize, r.level);
 * console.log(r); // one line per level: index, entry address, raw word, decoded entry
 * ```
 */
export function walk(reader: EntryReader, options: WalkOptions): WalkResult {
  if (reader === null || typeof reader !== "object" || typeof reader.read64 !== "function") {
    fail(
      "EINVAL",
      `walk reads entries through something with read64 (a PRAMIN window), not ${describe(reader)}`,
    );
  }
  checkObject(options, "walk options");
  checkOptions(
    options,
    {
      format: "object",
      pdb: (v, k) => void checkUint(v, k),
      va: (v, k) => void checkVa(v, k),
      vramSize: "number",
    },
    "walk options",
  );
  const { format } = options;
  if (format === null || typeof format !== "object" || format.codec === undefined) {
    fail(
      "EINVAL",
      `walk options.format is not an MMU format (mmuFormat()), not ${describe(format)}`,
    );
  }
  const codec = format.codec;
  const va = virtualAddress(options.va, format.vaBits);
  let limit = VRAM_ADDRESS_LIMIT;
  if (options.vramSize !== undefined) {
    const size = options.vramSize;
    if (!Number.isSafeInteger(size) || size <= 0 || size > VRAM_ADDRESS_LIMIT) {
      fail("EINVAL", `vramSize ${hex(size)} is not in (0, ${hex(VRAM_ADDRESS_LIMIT)}]`);
    }
    limit = size;
  }
  const pdb = vramAddress(options.pdb, "pdb");
  if (pdb % PAGE_4K !== 0) fail("EINVAL", `pdb ${hex(pdb)} is not 4 KiB aligned`);

  const steps: WalkStep[] = [];
  const dirs = format.directories;
  if (!tableFits(pdb, dirs[0].tableBytes, limit)) {
    return stop(va, dirs[0].name, "table-out-of-range", steps);
  }
  let table = pdb;
  for (let i = 0; i < dirs.length; i++) {
    const lvl = dirs[i];
    const index = levelIndex(lvl, va);
    const at = table + index * lvl.entrySize;
    const lo = reader.read64(at);
    if (lvl.dual) return walkDual(reader, format, va, lvl, index, at, lo, limit, steps);

    if ((lo & 1n) !== 0n) {
      if (lvl.hugePageSize === null) {
        steps.push(step(lvl.name, index, at, lo, codec.decodePde(lo)));
        return stop(va, lvl.name, "pte-at-non-leaf", steps);
      }
      const pte = codec.decodePte(lo);
      steps.push(step(lvl.name, index, at, lo, pte));
      return mapped(va, pte, lvl.hugePageSize, lvl.name, steps);
    }
    const pde = codec.decodePde(lo);
    steps.push(step(lvl.name, index, at, lo, pde));
    if (pde.aperture === "invalid") return stop(va, lvl.name, "invalid-pde", steps);
    if (pde.aperture !== "video") return stop(va, lvl.name, "sysmem-table", steps);
    if (!tableFits(pde.address, dirs[i + 1].tableBytes, limit)) {
      return stop(va, lvl.name, "table-out-of-range", steps);
    }
    table = pde.address;
  }
  // Unreachable: the last directory level is always the dual PD0.
  return fail("EINVAL", `format v${format.version} has no dual PD0 level`);
}

function walkDual(
  reader: EntryReader,
  format: MmuFormat,
  va: bigint,
  lvl: LevelFormat,
  index: number,
  at: number,
  lo: bigint,
  limit: number,
  steps: WalkStep[],
): WalkResult {
  const codec = format.codec;
  if ((lo & 1n) !== 0n) {
    // A 2 MiB PTE lives in the low word; the high word is not needed.
    const pte = codec.decodePte(lo);
    steps.push(step(lvl.name, index, at, lo, pte));
    return mapped(va, pte, lvl.hugePageSize ?? 0, lvl.name, steps);
  }
  const hi = reader.read64(at + 8);
  const dual = codec.decodeDualPde([lo, hi]);
  steps.push(step(lvl.name, index, at, [lo, hi], dual));

  const { big, small } = dual;
  // The MMU consults the big table first; one in system memory cannot be followed.
  if (big.aperture === "sysCoherent" || big.aperture === "sysNonCoherent") {
    return stop(va, lvl.name, "sysmem-table", steps);
  }
  const bigPt = format.bigPt;
  if (big.aperture === "video") {
    if (!tableFits(big.address, bigPt.tableBytes, limit)) {
      return stop(va, lvl.name, "table-out-of-range", steps);
    }
    const i = levelIndex(bigPt, va);
    const pteAt = big.address + i * 8;
    const raw = reader.read64(pteAt);
    const pte = codec.decodePte(raw);
    steps.push(step(bigPt.name, i, pteAt, raw, pte));
    if (pte.valid) return mapped(va, pte, bigPt.pageSize, bigPt.name, steps);
    if (codec.isNoSmallPte(raw)) return stop(va, bigPt.name, "invalid-pte", steps);
  }
  if (small.aperture === "invalid") {
    // When the big half led to an (invalid, unmarked) big PTE, the walk ends there.
    return big.aperture === "video"
      ? stop(va, bigPt.name, "invalid-pte", steps)
      : stop(va, lvl.name, "invalid-pde", steps);
  }
  if (small.aperture !== "video") return stop(va, lvl.name, "sysmem-table", steps);
  const pt = format.smallPt;
  if (!tableFits(small.address, pt.tableBytes, limit)) {
    return stop(va, lvl.name, "table-out-of-range", steps);
  }
  const i = levelIndex(pt, va);
  const pteAt = small.address + i * 8;
  const raw = reader.read64(pteAt);
  const pte = codec.decodePte(raw);
  steps.push(step(pt.name, i, pteAt, raw, pte));
  if (pte.valid) return mapped(va, pte, pt.pageSize, pt.name, steps);
  return stop(va, pt.name, "invalid-pte", steps);
}

/** What `Vmm.translate` returns: a VA that translates, in brief. */
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

/**
 * The {@linkcode Translation} of a walk that translated, its writability
 * read from the last entry with `format`'s codec; prints as one line.
 *
 * @example
 * ```ts
 * import { openGpu } from "../../mod.ts";
 * import { mmuFormat } from "./mod.ts";
 * using gpu = await openGpu({ device: "sim" });
 * using w = gpu.pramin.window();
 * const format = mmuFormat({ version: 2 });
 * const r = walk(w, { format, pdb: 0x200000, va: 0x1000n });
 * if (r.mapped) translation(r, format); // 0x1000 -> VRAM 0x1200000 (4 KiB page at PT, rw)
 * ```
 */
export function translation(r: WalkMapped, format: MmuFormat): Translation {
  const s = r.steps.at(-1)!;
  const info = format.codec.pteInfo(typeof s.raw === "bigint" ? s.raw : s.raw[0]);
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
