/**
 * The words of a BAR instance block, as a whole 4 KiB page (unwritten VRAM
 * is not zero on a card nobody booted, so the page is always written whole).
 * Facts §13.3 item 2 and §14.1:
 *
 * - 0x200/0x204 NV_RAMIN_PAGE_DIR_BASE: TARGET VID, USE_VER2_PT_FORMAT
 *   (bit 10) as RM writes it — 1 for MMU v2, 0 for v3
 *   (`kgmmuInstBlkPageDirBaseGet_GP100`) — BIG_PAGE_SIZE 64 KiB, the root
 *   directory address;
 * - 0x208/0x20C NV_RAMIN_ADR_LIMIT only on TU10x (deprecated since
 *   subcontexts; RM's `kgmmuInstBlkVaLimitGet_GV100` is a no-op elsewhere),
 *   computed in 64-bit integers (VA sizes reach 2^57); on Blackwell word 131
 *   (0x20C) holds NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE 0xCAFECA11;
 * - 0x21C (NV_RAMIN_ENABLE_ATS / NV_RAMIN_PASID) zero: no ATS;
 * - no subcontext table: RM initialises a BAR1 instance block with the base
 *   PDB only (`kbusBar1InstBlkVasUpdate_GM107` → `kgmmuInstBlkInit` for
 *   FIFO_PDB_IDX_BASE), so the valid mask (0x298) and every subcontext entry
 *   stay zero. (Where subcontexts are written, RM and nouveau put 1 in both
 *   words of an invalid entry.)
 *
 * @module
 */

import { describe, fail } from "../errors.ts";
import { checkObject, checkOptions } from "../validate.ts";
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
import type { InstanceBlockRules } from "./types.ts";

/** Bytes of an instance block. */
export const INSTANCE_BLOCK_BYTES = 4096;

/** The PDB word (NV_RAMIN_PAGE_DIR_BASE_LO) for a root directory in VRAM. */
export function pdbWord(rules: InstanceBlockRules, pdb: number): number {
  let word = setField(0, RAMIN_PDB.TARGET, 0);
  word = setField(word, RAMIN_PDB.USE_VER2_PT_FORMAT, rules.ver2Bit);
  word = setField(word, RAMIN_PDB.BIG_PAGE_SIZE, 1);
  return setField(word, RAMIN_PDB.LO, Math.floor((pdb % 2 ** 32) / 4096));
}

/**
 * The 1024 words of an instance block for the root directory `pdb` (VRAM,
 * 4 KiB aligned) and an address space of `vaSize` bytes.
 *
 * @example
 * ```ts
 * import { chipFamily } from "./mod.ts";
 * import { decodeChip } from "../chip.ts";
 * const fam = chipFamily(decodeChip(0x162000a1, 0x162a1000)); // TU102
 * const words = instanceBlockWords(fam.instanceBlock, { pdb: 0x40000, vaSize: 1n << 28n });
 * words[0x208 / 4]; // 0x0fffffff: ADR_LIMIT low word on TU10x
 * ```
 */
export function instanceBlockWords(
  rules: InstanceBlockRules,
  target: { pdb: number; vaSize: bigint },
): Uint32Array {
  const r = checkObject(rules, "instance-block rules");
  if ((r.ver2Bit !== 0 && r.ver2Bit !== 1) || typeof r.adrLimit !== "boolean") {
    fail("EINVAL", `instance-block rules ${describe(rules)} are not a family's (hw/family)`);
  }
  checkOptions(target, { pdb: "number", vaSize: "bigint" }, "instanceBlockWords target");
  const { pdb, vaSize } = target;
  if (!Number.isSafeInteger(pdb) || pdb < 0 || pdb % 4096 !== 0) {
    fail("EINVAL", `PDB ${describe(pdb)} is not a 4 KiB-aligned VRAM address`);
  }
  if (typeof vaSize !== "bigint" || vaSize < 4096n || vaSize > 1n << 64n) {
    fail("EINVAL", `VA size ${describe(vaSize)} is not a bigint in [4 KiB, 2^64]`);
  }
  const w = new Uint32Array(INSTANCE_BLOCK_BYTES / 4);
  const lo = pdbWord(rules, pdb);
  const hi = Math.floor(pdb / 2 ** 32);
  w[NV_RAMIN_PAGE_DIR_BASE_LO / 4] = lo;
  w[NV_RAMIN_PAGE_DIR_BASE_HI / 4] = hi;
  if (rules.adrLimit) {
    // (VA limit - 1) | 0xFFF, in 64-bit integers: 2^57 - 1 is not a double.
    const limit = vaSize - 1n;
    w[NV_RAMIN_ADR_LIMIT_LO / 4] = Number((limit & 0xffff_f000n) | 0xfffn);
    w[NV_RAMIN_ADR_LIMIT_HI / 4] = Number((limit >> 32n) & 0xffff_ffffn);
  }
  if (rules.ctxswMagic) w[NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE / 4] = RAMIN_CTXSW_FW_MAGIC;
  return w;
}
