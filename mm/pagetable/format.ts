/**
 * MMU v2 and v3 page-table formats as data: levels, the VA bits each decodes,
 * entry sizes, the dual PDE level and which levels may hold huge PTEs on a
 * given architecture. One walker and one mapper serve both formats.
 *
 * VA layouts are NVIDIA's hardware bit ranges (open-gpu-kernel-modules
 * `kern_gmmu_fmt_gp10x.c` / `kern_gmmu_fmt_gh10x.c`, facts §4.1), not nova v7's
 * uniform 9-bit split (facts D1). Huge-page levels per architecture: facts §1.2
 * (`kgmmuFmtInitLevels_GP10X` / `_GA10X` / `_GH10X` / `_GB10X`).
 *
 * A new MMU version of the same shape (PTE, PDE, a 128-bit dual PD0, the same
 * page sizes) adds one row here: its directory levels in `build`, the
 * architectures that use it (like `V2_ARCHS`), its codec in `CODECS` and its
 * number in `MmuVersion`; plus a codec file `verN.ts` whose field tables
 * `makeCodec` turns into the codec (see `codec.ts`). The tree, the cursor,
 * the mapper, the walker and `vmm.ts` read only these formats and the
 * `EntryCodec` interface, and do not change.
 *
 * @module
 */

import type { Architecture } from "../../hw/chip.ts";
import { describe, fail, PAGE_256G, PAGE_2M, PAGE_512M } from "../types.ts";
import { checkObject, checkOptions } from "../../hw/validate.ts";
import type { EntryCodec, MmuVersion } from "./codec.ts";
import { v2 } from "./ver2.ts";
import { v3 } from "./ver3.ts";

export type { Architecture } from "../../hw/chip.ts";
export type {
  DecodedDualHalf,
  DecodedDualPde,
  DecodedPde,
  DecodedPte,
  EntryCodec,
  EntryTables,
  MmuVersion,
} from "./codec.ts";

/** One level of the page-table tree. */
export interface LevelFormat {
  /** NVIDIA's name: v2 "PD3", "PD2", "PD1", "PD0", "PT" / "PT64K"; v3 "PD4" … "PD0", "PT" / "PT64K". */
  readonly name: string;
  /** Highest VA bit this level decodes (inclusive). */
  readonly vaHi: number;
  /** Lowest VA bit this level decodes (inclusive). */
  readonly vaLo: number;
  /** Entries in one table of this level. */
  readonly entries: number;
  /** Bytes per entry: 16 only at the dual PD0 level. */
  readonly entrySize: 8 | 16;
  /** Bytes of one table: entries × entrySize (v2 PD3 32, v3 PD4 16, big PT 256). */
  readonly tableBytes: number;
  /** True at PD0, whose entries point to a big-page and a small-page table. */
  readonly dual: boolean;
  /** Bytes a PTE at this directory level maps if this chip allows one here, else null. */
  readonly hugePageSize: number | null;
  /** Bytes of VA one entry covers (PD1: 512 MiB). */
  readonly pageSize: number;
}

/** A complete page-table format: levels plus the entry codec. */
export interface MmuFormat {
  /** Format version. */
  readonly version: MmuVersion;
  /** The architecture whose huge-page levels this describes. */
  readonly architecture: Architecture;
  /** VA width: 49 (v2) or 57 (v3). */
  readonly vaBits: 49 | 57;
  /** Directory levels, root first, ending with the dual PD0. */
  readonly directories: readonly LevelFormat[];
  /** The 4 KiB-page table: VA 20:12, 512 entries. */
  readonly smallPt: LevelFormat;
  /** The 64 KiB-page table: VA 20:16, 32 entries, 256 bytes. */
  readonly bigPt: LevelFormat;
  /** The entry codec of this version. */
  readonly codec: EntryCodec;
}

const V2_ARCHS: readonly Architecture[] = ["Turing", "Ampere", "Ada"];
const V3_ARCHS: readonly Architecture[] = ["Hopper", "Blackwell"];

// V2Codec and V3Codec extend the generic codec, so each fits the either-version type.
const CODECS: { 2: EntryCodec; 3: EntryCodec } = { 2: v2, 3: v3 };

function level(
  name: string,
  vaHi: number,
  vaLo: number,
  options: { dual?: boolean; huge?: number | null } = {},
): LevelFormat {
  const entries = 2 ** (vaHi - vaLo + 1);
  const entrySize = options.dual ? 16 : 8;
  return Object.freeze({
    name,
    vaHi,
    vaLo,
    entries,
    entrySize,
    tableBytes: entries * entrySize,
    dual: options.dual ?? false,
    hugePageSize: options.huge ?? null,
    pageSize: 2 ** vaLo,
  });
}

function build(version: MmuVersion, architecture: Architecture): MmuFormat {
  const pd1Huge = architecture === "Turing" ? null : PAGE_512M;
  const pd2Huge = architecture === "Blackwell" ? PAGE_256G : null;
  const common = [
    level("PD2", 46, 38, { huge: pd2Huge }),
    level("PD1", 37, 29, { huge: pd1Huge }),
    level("PD0", 28, 21, { dual: true, huge: PAGE_2M }),
  ];
  const directories = version === 2
    ? [level("PD3", 48, 47), ...common]
    : [level("PD4", 56, 56), level("PD3", 55, 47), ...common];
  return Object.freeze({
    version,
    architecture,
    vaBits: version === 2 ? 49 : 57,
    directories: Object.freeze(directories),
    smallPt: level("PT", 20, 12),
    bigPt: level("PT64K", 20, 16),
    codec: CODECS[version],
  });
}

const cache = new Map<string, MmuFormat>();

/**
 * The page-table format of an MMU version on an architecture (default: Ampere
 * for v2, Hopper for v3). Formats are frozen and cached, one per pair.
 *
 * @example
 * ```ts
 * const f = mmuFormat({ version: 2, architecture: "Turing" });
 * f.directories.map((l) => l.name); // ["PD3", "PD2", "PD1", "PD0"]
 * f.directories[2].hugePageSize; // null: Turing has no 512 MiB pages
 * mmuFormat({ version: 3, architecture: "Blackwell" }).directories[2].hugePageSize; // 2 ** 38
 * ```
 */
export function mmuFormat(
  options: { version: MmuVersion; architecture?: Architecture },
): MmuFormat {
  checkObject(options, "mmuFormat options");
  checkOptions(options, { version: "number", architecture: "string" }, "mmuFormat options");
  const { version } = options;
  if (version !== 2 && version !== 3) {
    fail("EINVAL", `MMU version ${describe(version)} is not supported (2 or 3)`);
  }
  const architecture = options.architecture ?? (version === 2 ? "Ampere" : "Hopper");
  const allowed = version === 2 ? V2_ARCHS : V3_ARCHS;
  if (!allowed.includes(architecture)) {
    fail(
      "EINVAL",
      `architecture ${JSON.stringify(architecture)} does not use MMU v${version} (v${version}: ${
        allowed.join(", ")
      })`,
    );
  }
  const key = `${version}:${architecture}`;
  let format = cache.get(key);
  if (format === undefined) {
    format = build(version, architecture);
    cache.set(key, format);
  }
  return format;
}

/**
 * The index a VA selects in a table of `level`: VA bits vaHi..vaLo.
 *
 * @example
 * ```ts
 * const pd1 = mmuFormat({ version: 2 }).directories[2];
 * levelIndex(pd1, 0x2000_0000n); // 1 (VA bit 29)
 * ```
 */
export function levelIndex(level: LevelFormat, va: bigint): number {
  if (va < 0n) fail("EINVAL", `virtual address ${va} is negative`);
  if (va <= 0x1f_ffff_ffff_ffffn) {
    // Safe range: number arithmetic avoids bigint allocation on the hot path.
    return Math.floor(Number(va) / 2 ** level.vaLo) % level.entries;
  }
  return Number((va >> BigInt(level.vaLo)) & BigInt(level.entries - 1));
}
