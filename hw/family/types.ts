/**
 * What differs between chip families in the memory-management mechanics, as
 * one table of operations per family (the shape of nouveau's `bar/` and `fb/`
 * chip files and of RM's per-chip HALs): the FB flush, the BAR1 bind
 * registers, the instance-block words, the registers that say which VRAM
 * firmware owns, and the boot waits. Each family file (`tu102.ts`,
 * `gh100.ts`, ...) holds only what differs from the family it derives from;
 * {@linkcode chipFamily} in `mod.ts` picks the table for a chip.
 *
 * Sources: facts §13 and §14 (RM's HAL tables `g_*_nvoc.c` say which
 * function each chip runs).
 *
 * @module
 */

import type { Mmio } from "../mmio.ts";
import type { GfwBootRegisters } from "../regs.ts";
import type { FbFlushOps } from "./fb_flush.ts";
import type { Bar1BindOps } from "./bar1_bind.ts";

/** The instance-block words a family's RM writes (facts §13.3 item 2, §14.1). */
export interface InstanceBlockRules {
  /** NV_RAMIN_USE_VER2_PT_FORMAT (PDB word bit 10): 1 for MMU v2 only (RM `kgmmuInstBlkPageDirBaseGet_GP100`). */
  readonly ver2Bit: 0 | 1;
  /** NV_RAMIN_ADR_LIMIT is written (TU10x only: `kgmmuInstBlkVaLimitGet_GV100`). */
  readonly adrLimit: boolean;
  /** Word 131 holds NV_RAMIN_ENGINE_CTXSW_FW_MAGIC_VALUE (GB1xx, GB20x). */
  readonly ctxswMagic: boolean;
}

/** Which registers say what VRAM firmware owns on a family (facts §13.2 item 4, §14.1). */
export interface LayoutRegisters {
  /**
   * NV_FUSE_STATUS_OPT_DISPLAY offset, read to learn whether the chip has a
   * display (and so a VGA workspace); null when the family has none at all
   * (GA100, GH100, GB10x: `kdispGetVgaWorkspaceBase` is a stub there).
   */
  readonly displayFuse: number | null;
  /** NV_PFB_PRI_MMU_LOCK_ADDR exists (GA100 only: `memmgrReadMmuLock_GA100`). */
  readonly mmuLock: boolean;
  /** The WPR2 LO/HI register pairs to read; a region either reports is reserved. */
  readonly wpr2: readonly { lo: number; hi: number; name: string }[];
}

/** What to wait for at open, before VRAM or the FB registers are used (facts §13.2, §14.2). */
export interface BootWaits {
  /** The GFW-boot (devinit) status registers. */
  readonly gfw: GfwBootRegisters;
  /** Default GFW timeout in ms (RM 4 s; gpu-admin-tools allows 10 s on Blackwell). */
  readonly gfwTimeoutMs: number;
  /** The memory-clear status register gpu-admin-tools polls for 1 (facts §14.2 item 2). */
  readonly memClear: number;
  /** Poll the PCIe BAR firewall (NVIDIA DVSEC + 0x8 bit 20) before the first BAR0 access. */
  readonly barFirewall: boolean;
}

/** TLB-invalidate rules (facts §14.1, RM `kern_gmmu_gm107.c`, `kern_gmmu_tu102.c`). */
export interface InvalidateRules {
  /** PTE downgrades (unmap) add SYS_MEMBAR | ACK_GLOBALLY (TU10x only: `kgmmuSetTlbInvalidateMembarWarParameters_TU102`). */
  readonly membarOnDowngrade: boolean;
  /** INVAL_SCOPE (16:15) RM sets for an address-space invalidate: NON_LINK_TLBS (2) from GA100 on, none on TU10x. */
  readonly scope: number | null;
}

/** One chip family's mechanics. */
export interface ChipFamily {
  /** Family name, e.g. `"GA10x"`. */
  readonly name: string;
  /** BOOT_42 chip ids of its chips. */
  readonly chipIds: readonly number[];
  /** Page-table format. */
  readonly mmuVersion: 2 | 3;
  /** How CPU writes to VRAM are made visible to the GPU. */
  readonly fbFlush: FbFlushOps;
  /** The BAR1 bind registers and their sequences. */
  readonly bar1: Bar1BindOps;
  /** The instance-block words. */
  readonly instanceBlock: InstanceBlockRules;
  /** TLB invalidate rules. */
  readonly invalidate: InvalidateRules;
  /** Registers of firmware-owned VRAM. */
  readonly layout: LayoutRegisters;
  /** Waits at open. */
  readonly boot: BootWaits;
}

/** A register access the family tables make, for messages (`name (offset)`). */
export type Bar0 = Mmio;
