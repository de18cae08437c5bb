/**
 * What GSP-RM leaves behind at boot, for the simulator: the top of VRAM is
 * reserved, the BAR1 instance block and page tables live there, and the
 * firmware has a few BAR1 mappings of its own (facts §7.4, §9).
 *
 * Layout chosen here (the real numbers depend on the board and firmware):
 *
 * - Reserved: the top 512 MiB on boards with 64 GiB or more, 256 MiB from
 *   4 GiB, else an eighth of VRAM (whole MiB, at least 1 MiB).
 * - Usable (what GSP reports): from 1 MiB, like the low VRAM kept for the
 *   VGA workspace and boot, up to the reserved area.
 * - In the reserved area, from its start: the instance block, the root
 *   directory, one table per level down to PD0, the small PT, the big PT
 *   (at +0x100 of its page: big PTs only need 256 B alignment), four 4 KiB
 *   firmware pages, and in the next 64 KiB block one 64 KiB firmware page.
 *   That is two 64 KiB VRAM chunks in all.
 * - BAR1 VA 0x0000–0x3FFF: four 4 KiB pages through the small PT; VA
 *   0x10000–0x1FFFF: one 64 KiB page through the big PT of the SAME PD0
 *   entry, so code that rewrites one half of a dual PDE and loses the other
 *   is caught. Every 32-bit word of a mapping holds its `pattern`.
 *
 * The instance block is written as RM writes it (`kgmmuInstBlkInit`, facts
 * §14.1): the page is zeroed, then the PDB word with USE_VER2_PT_FORMAT (bit
 * 10) set only for MMU v2 (`kgmmuInstBlkPageDirBaseGet_GP100`), ADR_LIMIT only
 * on Turing (TU10x, `kgmmuInstBlkVaLimitGet_GV100`; 64-bit arithmetic), and
 * NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE 0xcafeca11 in word 131 (0x20C) on
 * Blackwell. No subcontext table (valid mask 0).
 *
 * Entries carry the optional bits real drivers set (v2 PTE KIND 6; v3 PDE
 * PCF 2 "cached, ATS not allowed", v3 PTE PCF 0x10 and KIND 6), so a decoder
 * that forgets to mask a field is caught too. All PTEs are read-write VRAM.
 *
 * @module
 */

import { describe, fail, hex } from "../errors.ts";
import {
  NV_RAMIN_ADR_LIMIT_HI,
  NV_RAMIN_ADR_LIMIT_LO,
  NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE,
  NV_RAMIN_PAGE_DIR_BASE_HI,
  NV_RAMIN_PAGE_DIR_BASE_LO,
  RAMIN_CTXSW_FW_MAGIC,
  RAMIN_PDB,
  setField,
} from "../regs.ts";
import type { SimArchitecture } from "./mmu.ts";
import type { SparseMemory } from "./vram.ts";

/** What the simulated firmware reports (GSP static info) and built at boot. */
export interface SimFirmwareInfo {
  /** Start of the firmware-reserved top of VRAM (reserved up to the VRAM size). */
  reservedStart: number;
  /** The usable region GSP reports for drivers (end exclusive). */
  usable: { start: number; end: number };
  /** BAR1 instance block (4 KiB aligned, in the reserved area). */
  instanceBlock: number;
  /** BAR1 root page directory, GSP's `bar1PdeBase` (4 KiB aligned, reserved area). */
  bar1Pdb: number;
  /** The firmware's own BAR1 mappings; every 32-bit word of one holds its `pattern`. */
  mappings: { va: bigint; pa: number; size: number; pageSize: number; pattern: number }[];
  /** GSP's write-protected region (WPR2) in the reserved area: [start, end). */
  wpr2: { start: number; end: number };
}

/** Options for {@linkcode bootFirmware}. */
export interface BootFirmwareOptions {
  /** Bytes of VRAM (a multiple of 1 MiB, at least 16 MiB). */
  vramSize: number;
  /** Page-table format of the chip. */
  version: 2 | 3;
  /** The chip family (must match the version). */
  architecture: SimArchitecture;
  /** BAR1 aperture bytes (a multiple of 64 KiB, at least 128 KiB). */
  bar1Size: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** Where the usable region starts (low VRAM kept for VGA/boot). */
const USABLE_START = 1 * MiB;
/** Number of 4 KiB firmware pages mapped at BAR1 VA 0. */
const SMALL_PAGES = 4;
/** BAR1 VA of the firmware's 64 KiB page (big-PT index 1 of PD0 entry 0). */
const BIG_PAGE_VA = 0x10000;
/** Pattern of firmware mapping i is PATTERN_BASE + i. */
const PATTERN_BASE = 0xf1a50000;

/** Bytes of VRAM the firmware keeps at the top (see the module doc). */
function reservedBytes(vramSize: number): number {
  if (vramSize >= 64 * GiB) return 512 * MiB;
  if (vramSize >= 4 * GiB) return 256 * MiB;
  return Math.max(MiB, Math.floor(vramSize / 8 / MiB) * MiB);
}

// Local encoders from facts §5 (hw/sim must not import mm/).

/** v2 PDE (§5.1) or v3 PDE (§5.4, PCF 2) pointing at a video-memory table. */
function encodePde(version: 2 | 3, table: number): bigint {
  return version === 2
    ? (BigInt(table / 4096) << 8n) | 2n // ADDRESS_VID 32:8 (>> 12), APERTURE 1 video
    : BigInt(table) | (2n << 3n) | 2n; // ADDRESS 51:12 in place, PCF 2, APERTURE 1
}

/** Low word of a dual PDE: the big half pointing at a video big PT (256 B aligned). */
function encodeBigHalf(version: 2 | 3, bigPt: number): bigint {
  return version === 2
    ? (BigInt(bigPt / 256) << 4n) | 2n // ADDRESS_BIG_VID 32:4 (>> 8), APERTURE_BIG 1
    : BigInt(bigPt) | (2n << 3n) | 2n; // ADDRESS_BIG 51:8 in place, PCF_BIG 2, APERTURE_BIG 1
}

/** A valid read-write PTE for a video page. */
function encodePte(version: 2 | 3, pa: number): bigint {
  return version === 2
    ? (6n << 56n) | (BigInt(pa / 4096) << 8n) | 1n // KIND 6, ADDRESS_VID 32:8, VALID
    : BigInt(pa) | (6n << 8n) | (0x10n << 3n) | 1n; // ADDRESS_VID 39:12, KIND 6, PCF 0x10, VALID
}

function zeroPage(vram: SparseMemory, addr: number): void {
  for (let a = addr; a < addr + 4096; a += 4) vram.write32(a, 0);
}

function fill(vram: SparseMemory, addr: number, size: number, pattern: number): void {
  for (let a = addr; a < addr + size; a += 4) vram.write32(a, pattern);
}

/**
 * Plays GSP-RM's boot for the simulator: reserves the top of VRAM, builds the
 * BAR1 instance block and page tables there and maps the firmware's own BAR1
 * pages. Returns what GSP would report.
 *
 * @example
 * ```ts
 * import { SparseMemory } from "./vram.ts";
 * const vram = new SparseMemory(24 * 2 ** 30);
 * const fw = bootFirmware(vram, {
 *   vramSize: 24 * 2 ** 30, version: 2, architecture: "Ampere", bar1Size: 256 * 2 ** 20,
 * });
 * fw.bar1Pdb;       // root of the BAR1 tables
 * fw.usable;        // { start: 0x100000, end: fw.reservedStart }
 * ```
 */
export function bootFirmware(vram: SparseMemory, options: BootFirmwareOptions): SimFirmwareInfo {
  const { vramSize, version, architecture, bar1Size } = options;
  if (version !== 2 && version !== 3) {
    fail("EINVAL", `MMU version ${describe(version)} is not 2 or 3`);
  }
  const v3Arch = architecture === "Hopper" || architecture === "Blackwell";
  const v2Arch = architecture === "Turing" || architecture === "Ampere" || architecture === "Ada";
  if (!(version === 3 ? v3Arch : v2Arch)) {
    fail("EINVAL", `architecture ${describe(architecture)} does not use MMU v${version}`);
  }
  if (
    !Number.isSafeInteger(vramSize) || vramSize < 16 * MiB || vramSize > 2 ** 40 ||
    vramSize % MiB !== 0
  ) {
    fail(
      "EINVAL",
      `VRAM size ${describe(vramSize)} is not a multiple of 1 MiB in [${hex(16 * MiB)}, ${
        hex(2 ** 40)
      }]`,
    );
  }
  if (vramSize > vram.size) {
    fail("EINVAL", `VRAM size ${hex(vramSize)} exceeds the backing memory (${hex(vram.size)})`);
  }
  if (version === 2 && vramSize > 2 ** 37) {
    fail(
      "EINVAL",
      `VRAM size ${hex(vramSize)} is past the ${hex(2 ** 37)} MMU v2 tables can address`,
    );
  }
  const vaBits = version === 2 ? 49 : 57;
  if (
    !Number.isSafeInteger(bar1Size) || bar1Size < 2 * BIG_PAGE_VA || bar1Size % 0x10000 !== 0 ||
    bar1Size > 2 ** vaBits
  ) {
    fail(
      "EINVAL",
      `BAR1 size ${describe(bar1Size)} is not a multiple of 64 KiB in [${hex(2 * BIG_PAGE_VA)}, ${
        hex(2 ** vaBits)
      }]`,
    );
  }

  const reservedStart = vramSize - reservedBytes(vramSize);
  // Page-granular layout of the first reserved 64 KiB block (see the module doc).
  const instanceBlock = reservedStart;
  const bar1Pdb = reservedStart + 0x1000;
  const directories = version === 2 ? 3 : 4; // tables below the root, down to PD0
  const tables: number[] = [bar1Pdb];
  for (let i = 1; i <= directories; i++) tables.push(bar1Pdb + i * 0x1000);
  const smallPt = tables[tables.length - 1] + 0x1000;
  const bigPtPage = smallPt + 0x1000;
  const bigPt = bigPtPage + 0x100;
  const smallData = reservedStart + 0x8000;
  const bigData = reservedStart + 0x10000;

  for (let a = instanceBlock; a <= bigPtPage; a += 0x1000) zeroPage(vram, a);

  // Instance block as RM writes it: PDB word (TARGET 0 video, 64 KiB big pages, VER2 only on v2).
  let pdbWord = setField(0, RAMIN_PDB.TARGET, 0);
  pdbWord = setField(pdbWord, RAMIN_PDB.USE_VER2_PT_FORMAT, version === 2 ? 1 : 0);
  pdbWord = setField(pdbWord, RAMIN_PDB.BIG_PAGE_SIZE, 1);
  pdbWord = setField(pdbWord, RAMIN_PDB.LO, Math.floor((bar1Pdb % 2 ** 32) / 4096));
  vram.write32(instanceBlock + NV_RAMIN_PAGE_DIR_BASE_LO, pdbWord);
  vram.write32(instanceBlock + NV_RAMIN_PAGE_DIR_BASE_HI, Math.floor(bar1Pdb / 2 ** 32));
  if (architecture === "Turing") {
    // ADR_LIMIT (TU10x only): the last byte of the BAR1 VA space, low 12 bits all ones.
    const limit = (BigInt(bar1Size) - 1n) | 0xfffn;
    vram.write32(instanceBlock + NV_RAMIN_ADR_LIMIT_LO, Number(limit & 0xffffffffn));
    vram.write32(instanceBlock + NV_RAMIN_ADR_LIMIT_HI, Number(limit >> 32n));
  } else if (architecture === "Blackwell") {
    vram.write32(instanceBlock + NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE, RAMIN_CTXSW_FW_MAGIC);
  }

  // VA 0 uses index 0 at every directory level; the last table is PD0 (16-byte entries).
  for (let i = 0; i < directories; i++) vram.write64(tables[i], encodePde(version, tables[i + 1]));
  const pd0 = tables[directories];
  vram.write64(pd0, encodeBigHalf(version, bigPt));
  vram.write64(pd0 + 8, encodePde(version, smallPt));

  const mappings: SimFirmwareInfo["mappings"] = [];
  for (let i = 0; i < SMALL_PAGES; i++) {
    const pa = smallData + i * 0x1000;
    const pattern = (PATTERN_BASE + i) >>> 0;
    vram.write64(smallPt + i * 8, encodePte(version, pa));
    fill(vram, pa, 0x1000, pattern);
    mappings.push({ va: BigInt(i * 0x1000), pa, size: 0x1000, pageSize: 0x1000, pattern });
  }
  const bigPattern = (PATTERN_BASE + SMALL_PAGES) >>> 0;
  vram.write64(bigPt + (BIG_PAGE_VA >>> 16) * 8, encodePte(version, bigData));
  fill(vram, bigData, 0x10000, bigPattern);
  mappings.push({
    va: BigInt(BIG_PAGE_VA),
    pa: bigData,
    size: 0x10000,
    pageSize: 0x10000,
    pattern: bigPattern,
  });

  const reserved = vramSize - reservedStart;
  return {
    reservedStart,
    usable: { start: USABLE_START, end: reservedStart },
    instanceBlock,
    bar1Pdb,
    mappings,
    wpr2: { start: reservedStart + reserved / 2, end: vramSize - reserved / 4 },
  };
}
